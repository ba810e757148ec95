import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { bf16Weights, fineTune, type RawTensor, writeShardedFolder } from '../../packages/store/test/helpers.js';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const BIN = path.join(ROOT, 'packages', 'cli', 'bin', 'run.js');
const ENV = {
  ...process.env,
  WGIT_AUTHOR_DATE: '1700000000',
  WGIT_AUTHOR_NAME: 'T',
  WGIT_AUTHOR_EMAIL: 't@example.com',
};

function wgit(cwd: string, ...args: string[]): { status: number; json: any; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd, env: ENV, encoding: 'utf8' });
  return { status: r.status ?? -1, json: args.includes('--json') ? JSON.parse(r.stdout) : null, stderr: r.stderr };
}

/** bf16 bits → values, and f32 → bf16 bits (round to nearest even), written here rather than taken from core. */
const f = new Float32Array(1);
const u = new Uint32Array(f.buffer);
function bf16(bytes: Uint8Array): number[] {
  const h = new Uint16Array(bytes.slice().buffer);
  return Array.from(h, (x) => {
    u[0] = x << 16;
    return f[0];
  });
}
function toBf16(x: number): number {
  f[0] = x;
  return (u[0] + 0x7fff + ((u[0] >>> 16) & 1)) >>> 16;
}

describe('wgit sparsify (CLI)', () => {
  let dir: string;
  let repo: string;
  const base: RawTensor[] = [];
  const ft: RawTensor[] = [];

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-sparsify-'));
    repo = path.join(dir, 'repo');
    fs.mkdirSync(repo);
    ['model.embed_tokens.weight', 'model.layers.0.mlp.up_proj.weight', 'model.layers.1.mlp.up_proj.weight'].forEach(
      (name, i) => {
        const data = bf16Weights(64 * 48, 30 + i);
        base.push({ name, dtype: 'BF16', shape: [64, 48], data });
        ft.push({ name, dtype: 'BF16', shape: [64, 48], data: fineTune(data, 0.05, 300 + i) });
      },
    );
    writeShardedFolder(path.join(dir, 'base'), [base], { 'config.json': '{"v":1}' });
    writeShardedFolder(path.join(dir, 'ft'), [ft], { 'config.json': '{"v":1}' });
    assert.equal(wgit(repo, 'init', '--json').status, 0);
    assert.equal(wgit(repo, 'commit', path.join(dir, 'base'), '-m', 'base', '--json').status, 0);
    assert.equal(wgit(repo, 'tag', 'base', '--json').status, 0);
    assert.equal(wgit(repo, 'commit', path.join(dir, 'ft'), '-m', 'ft', '--json').status, 0);
    assert.equal(wgit(repo, 'tag', 'ft', '--json').status, 0);
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  const checkout = async (rev: string, name: string) => {
    const { openModel } = await import('../../packages/core/src/safetensors/index.js');
    const out = path.join(dir, name);
    const r = wgit(repo, 'checkout', rev, '--out', out, '--json');
    assert.equal(r.status, 0, r.stderr);
    const m = await openModel(out);
    const tensors = new Map<string, Uint8Array>();
    for (const t of m.tensors) tensors.set(t.name, await m.readTensor(t.name));
    await m.close();
    return tensors;
  };

  it('--exact: every changed entry, a commit with parents FT and BASE, smaller than the diff vector; apply gives FT', async () => {
    const r = wgit(repo, 'sparsify', 'ft', '--base', 'base', '--exact', '--json');
    assert.equal(r.status, 0, r.stderr);
    let changed = 0;
    base.forEach((t, i) => {
      for (let j = 0; j < t.data.length; j += 2)
        if (t.data[j] !== ft[i].data[j] || t.data[j + 1] !== ft[i].data[j + 1]) changed++;
    });
    assert.equal(r.json.kept, changed);
    assert.equal(r.json.elements, 3 * 64 * 48);
    assert.equal(r.json.relError, 0);
    assert.equal(r.json.branch, 'sparsify/ft');
    const ids = (rev: string) => wgit(repo, 'log', rev, '--json').json.commits[0].commit;
    assert.deepEqual(r.json.parents, [ids('ft'), ids('base')]);
    const show = wgit(repo, 'show', r.json.commit, '--json').json;
    assert.equal(show.object.kind, 'sparse-delta');
    assert.equal(show.recipe.kind, 'sparse-delta');
    assert.equal(show.recipe.base.rev, 'base');
    assert.equal(show.recipe.mode, 'exact');

    const dv = wgit(repo, 'diff', 'base', 'ft', '--save', 'ft-dv', '--json');
    assert.ok(r.json.storedBytes < dv.json.saved.storedBytes, `${r.json.storedBytes} vs ${dv.json.saved.storedBytes}`);

    const applied = wgit(repo, 'apply', r.json.commit, '--onto', 'base', '--json');
    assert.equal(applied.status, 0, applied.stderr);
    const got = await checkout(applied.json.commit, 'exact-applied');
    for (const t of ft) assert.deepEqual(Buffer.from(got.get(t.name) as Uint8Array), Buffer.from(t.data), t.name);
  });

  it('--density: exactly round(D·n) entries per tensor by |Δ|; the applied model by a hand-written scatter-add', async () => {
    const r = wgit(repo, 'sparsify', 'ft', '--base', 'base', '--density', '0.01', '--json');
    assert.equal(r.status, 0, r.stderr);
    const k = Math.round(0.01 * 64 * 48);
    assert.deepEqual(
      r.json.tensors.map((t: any) => t.kept),
      [k, k, k],
    );
    assert.ok(r.json.relError > 0 && r.json.relError < 1, `error ${r.json.relError}`);
    const applied = wgit(repo, 'apply', r.json.commit, '--onto', 'base', '--json');
    const got = await checkout(applied.json.commit, 'density-applied');
    base.forEach((t, i) => {
      const b = bf16(t.data);
      const d = bf16(ft[i].data).map((x, j) => Math.fround(x - b[j]));
      const keep = new Set(
        d
          .map((_, j) => j)
          .sort((x, y) => Math.abs(d[y]) - Math.abs(d[x]) || x - y)
          .slice(0, k),
      );
      const want = b.map((x, j) => (keep.has(j) ? toBf16(Math.fround(x + d[j])) : toBf16(x)));
      assert.deepEqual(Array.from(new Uint16Array((got.get(t.name) as Uint8Array).slice().buffer)), want, t.name);
    });
  });

  it('refuses bad flags, mismatched models and NaN with a code, and commits nothing', () => {
    const branches = () => wgit(repo, 'branch', '--json').json;
    const before = JSON.stringify(branches());
    const code = (...args: string[]) => wgit(repo, 'sparsify', ...args, '--json').json.error.code;
    assert.equal(code('ft', '--base', 'base', '--density', '0'), 'E_BAD_PARAM');
    assert.equal(code('ft', '--base', 'base', '--density', '1.5'), 'E_BAD_PARAM');
    assert.equal(code('ft', '--base', 'base'), 'E_USAGE');
    assert.equal(code('ft', '--base', 'base', '--exact', '--density', '0.5'), 'E_USAGE');
    const reshaped = ft.map((t, i) => (i === 1 ? { ...t, shape: [48, 64] } : t));
    writeShardedFolder(path.join(dir, 'reshaped'), [reshaped], {});
    const shape = wgit(repo, 'sparsify', path.join(dir, 'reshaped'), '--base', 'base', '--exact', '--json').json.error;
    assert.equal(shape.code, 'E_SHAPE_MISMATCH');
    assert.match(shape.message, /model\.layers\.0\.mlp\.up_proj\.weight/);
    const nan = ft.map((t, i) => {
      if (i !== 2) return t;
      const data = new Uint8Array(t.data);
      data[10] = 0xc0;
      data[11] = 0x7f;
      return { ...t, data };
    });
    writeShardedFolder(path.join(dir, 'nan'), [nan], {});
    const bad = wgit(repo, 'sparsify', path.join(dir, 'nan'), '--base', 'base', '--density', '0.5', '--json').json
      .error;
    assert.equal(bad.code, 'E_NAN_DELTA');
    assert.match(bad.message, /model\.layers\.1\.mlp\.up_proj\.weight/);
    assert.equal(JSON.stringify(branches()), before, 'no branch was made');
  });
});
