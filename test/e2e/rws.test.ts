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

const f = new Float32Array(1);
const u = new Uint32Array(f.buffer);
/** bf16 bits → values, written here rather than taken from core. */
function bf16(bytes: Uint8Array): number[] {
  return Array.from(new Uint16Array(bytes.slice().buffer), (x) => {
    u[0] = x << 16;
    return f[0];
  });
}
const fr = Math.fround;

/** The signature of one tensor and its 8-bit quantization, by plain loops. */
function oracle(r: number[], c: number[], i: number[]): { sig: number[]; deq: number[]; step: number } {
  const a = c.map((x, j) => fr(x - i[j]));
  const d = r.map((x, j) => fr(x - i[j]));
  let da = 0;
  let aa = 0;
  a.forEach((x, j) => {
    da += d[j] * x;
    aa += x * x;
  });
  const coef = fr(-(da / aa));
  const sig = d.map((x, j) => fr(x + fr(coef * a[j])));
  const lo = Math.min(...sig);
  const step = fr((Math.max(...sig) - lo) / 255);
  const deq = sig.map((x) => fr(lo + fr(Math.min(255, Math.max(0, Math.round((x - lo) / step))) * step)));
  return { sig, deq, step };
}

describe('wgit rws (CLI)', () => {
  let dir: string;
  let repo: string;
  const names = [
    'model.embed_tokens.weight',
    'model.layers.0.mlp.up_proj.weight',
    'model.layers.1.mlp.up_proj.weight',
    'model.layers.2.mlp.up_proj.weight',
  ];
  const models: Record<'init' | 'clean' | 'robust', RawTensor[]> = { init: [], clean: [], robust: [] };

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-rws-'));
    repo = path.join(dir, 'repo');
    fs.mkdirSync(repo);
    names.forEach((name, k) => {
      const data = bf16Weights(32 * 40, 50 + k);
      const t = (d: Uint8Array) => ({ name, dtype: 'BF16', shape: [32, 40], data: d });
      models.init.push(t(data));
      models.clean.push(t(fineTune(data, 0.4, 500 + k)));
      models.robust.push(t(fineTune(data, 0.4, 600 + k)));
    });
    assert.equal(wgit(repo, 'init', '--json').status, 0);
    for (const m of ['init', 'clean', 'robust'] as const) {
      writeShardedFolder(path.join(dir, m), [models[m]], { 'config.json': `{"m":"${m}"}` });
      assert.equal(wgit(repo, 'commit', path.join(dir, m), '-m', m, '--json').status, 0);
      assert.equal(wgit(repo, 'tag', m, '--json').status, 0);
    }
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

  it('extracts an 8-bit signature of the first half of the blocks; apply then remove', async () => {
    const r = wgit(repo, 'rws', 'extract', 'robust', '--clean', 'clean', '--init', 'init', '--json');
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.json.bits, 8);
    assert.deepEqual([r.json.layers, r.json.blocks], [2, 3]);
    assert.deepEqual(
      r.json.tensors.map((t: any) => t.name),
      names.slice(1, 3),
    );
    assert.ok(r.json.relError > 0 && r.json.relError < 0.05, `error ${r.json.relError}`);
    assert.equal(r.json.fullCopyBytes, 4 * 32 * 40 * 2);
    assert.ok(r.json.storedBytes < r.json.fullCopyBytes / 2, `${r.json.storedBytes} stored`);
    const ids = (rev: string) => wgit(repo, 'log', rev, '--json').json.commits[0].commit;
    assert.deepEqual(r.json.parents, [ids('robust'), ids('init')]);
    const show = wgit(repo, 'show', r.json.commit, '--json').json;
    assert.equal(show.object.kind, 'rws');
    assert.deepEqual([show.recipe.kind, show.recipe.base.rev, show.recipe.clean.rev], ['rws', 'init', 'clean']);

    const patched = wgit(repo, 'rws', 'apply', 'clean', '--sig', r.json.commit, '--json');
    assert.equal(patched.status, 0, patched.stderr);
    assert.deepEqual(patched.json.tensors, { changed: 2, replaced: 0, removed: 0, kept: 2 });
    const got = await checkout(patched.json.commit, 'patched');
    names.forEach((name, k) => {
      const c = bf16(models.clean[k].data);
      const g = bf16(got.get(name) as Uint8Array);
      if (k === 0 || k === 3) {
        assert.deepEqual(g, c, `${name} is outside the signature`);
        return;
      }
      const o = oracle(bf16(models.robust[k].data), c, bf16(models.init[k].data));
      // One code either side where the sums' order moves a value across a step, plus bf16 rounding.
      g.forEach((x, j) => {
        const want = c[j] + o.deq[j];
        assert.ok(Math.abs(x - want) <= o.step + 2 ** -8 * Math.abs(want), `${name}[${j}]: ${x} vs ${want}`);
      });
    });

    const removed = wgit(repo, 'rws', 'remove', patched.json.commit, '--sig', r.json.commit, '--json');
    assert.equal(removed.status, 0, removed.stderr);
    assert.equal(removed.json.scale, -1);
    const back = await checkout(removed.json.commit, 'removed');
    names.forEach((name, k) => {
      const c = bf16(models.clean[k].data);
      const p = bf16(got.get(name) as Uint8Array);
      bf16(back.get(name) as Uint8Array).forEach((x, j) => {
        assert.ok(Math.abs(x - c[j]) <= 2 ** -8 * (Math.abs(c[j]) + 2 * Math.abs(p[j])), `${name}[${j}]`);
      });
    });
  });

  it('--bits 32 keeps the signature in f32; --bits 4 is smaller than 8', () => {
    const full = wgit(repo, 'rws', 'extract', 'robust', '--clean', 'clean', '--init', 'init', '--bits', '32', '--json');
    assert.equal(full.status, 0, full.stderr);
    assert.equal(full.json.relError, 0);
    assert.equal(full.json.objectBytes, 2 * 32 * 40 * 4);
    const four = wgit(
      repo,
      'rws',
      'extract',
      'robust',
      '--clean',
      'clean',
      '--init',
      'init',
      '--bits',
      '4',
      '--layers',
      '3',
      '--json',
    );
    assert.equal(four.status, 0, four.stderr);
    assert.equal(four.json.tensors.length, 3);
    assert.equal(four.json.objectBytes, 3 * (8 + (32 * 40) / 2));
    assert.ok(four.json.relError > 0 && four.json.relError < 0.5);
  });

  it('refuses bad flags, another architecture and what is not a signature, and commits nothing', () => {
    const sig = wgit(repo, 'rws', 'extract', 'robust', '--clean', 'clean', '--init', 'init', '--json').json.commit;
    const branches = JSON.stringify(wgit(repo, 'branch', '--json').json);
    const code = (...args: string[]) => wgit(repo, 'rws', ...args, '--json').json.error;
    assert.equal(code('extract', 'robust', '--clean', 'clean', '--init', 'init', '--bits', '5').code, 'E_BAD_PARAM');
    assert.equal(code('extract', 'robust', '--clean', 'clean', '--init', 'init', '--layers', '4').code, 'E_BAD_PARAM');
    assert.equal(code('apply', 'clean', '--sig', 'init').code, 'E_NOT_AN_OBJECT');
    writeShardedFolder(path.join(dir, 'smaller'), [models.clean.filter((t) => !t.name.includes('layers.1.'))], {});
    const arch = code('apply', path.join(dir, 'smaller'), '--sig', sig);
    assert.equal(arch.code, 'E_SHAPE_MISMATCH');
    assert.match(arch.message, /model\.layers\.1\.mlp\.up_proj\.weight/);
    const f16 = models.clean.map((t, k) => (k === 2 ? { ...t, dtype: 'F16' } : t));
    writeShardedFolder(path.join(dir, 'f16'), [f16], {});
    const dtype = code('extract', 'robust', '--clean', path.join(dir, 'f16'), '--init', 'init');
    assert.equal(dtype.code, 'E_DTYPE_MISMATCH');
    assert.match(dtype.message, /model\.layers\.1\.mlp\.up_proj\.weight/);
    assert.equal(JSON.stringify(wgit(repo, 'branch', '--json').json), branches, 'no branch was made');
  });
});
