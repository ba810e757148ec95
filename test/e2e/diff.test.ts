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

function wgit(cwd: string, ...args: string[]): { status: number; json: any; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd, env: ENV, encoding: 'utf8' });
  let json: unknown = null;
  if (args.includes('--json')) json = JSON.parse(r.stdout);
  return { status: r.status ?? -1, json, stdout: r.stdout, stderr: r.stderr };
}

/** bf16 bits → value, written out here rather than taken from core. */
function bf16(bytes: Uint8Array): Float64Array {
  const out = new Float64Array(bytes.length / 2);
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  for (let i = 0; i < out.length; i++) {
    u[0] = (bytes[2 * i] | (bytes[2 * i + 1] << 8)) << 16;
    out[i] = f[0];
  }
  return out;
}

/** The figures `wgit diff` reports for one tensor, by plain loops in f64. */
function expected(a: Uint8Array, b: Uint8Array) {
  const x = bf16(a);
  const y = bf16(b);
  let dd = 0;
  let aa = 0;
  let bb = 0;
  let ab = 0;
  let same = 0;
  let max = 0;
  for (let i = 0; i < x.length; i++) {
    // The delta is an f32 subtraction, as on the device.
    const d = Math.fround(y[i] - x[i]);
    dd += d * d;
    aa += x[i] * x[i];
    bb += y[i] * y[i];
    ab += x[i] * y[i];
    if (a[2 * i] === b[2 * i] && a[2 * i + 1] === b[2 * i + 1]) same++;
    max = Math.max(max, Math.abs(d));
  }
  return {
    normDelta: Math.sqrt(dd),
    rel: Math.sqrt(dd) / Math.sqrt(aa),
    cosine: ab / Math.sqrt(aa * bb),
    same: same / x.length,
    max,
  };
}

const close = (got: number, want: number, what: string) =>
  assert.ok(Math.abs(got - want) <= 1e-9 * Math.max(1, Math.abs(want)), `${what}: ${got} vs ${want}`);

describe('wgit diff (CLI)', () => {
  let dir: string;
  let repo: string;
  const base: RawTensor[] = [];
  const ft: RawTensor[] = [];

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-diff-'));
    repo = path.join(dir, 'repo');
    fs.mkdirSync(repo);
    const names = [
      'model.embed_tokens.weight',
      'model.layers.0.self_attn.q_proj.weight',
      'model.layers.0.mlp.up_proj.weight',
      'model.layers.1.self_attn.q_proj.weight',
      'model.layers.1.mlp.up_proj.weight',
      'model.norm.weight',
    ];
    names.forEach((name, i) => {
      const data = bf16Weights(32 * 48, 10 + i);
      base.push({ name, dtype: 'BF16', shape: [32, 48], data });
      // Layer 1 changes more than layer 0; the final norm does not change.
      const changed =
        name === 'model.norm.weight' ? data : fineTune(data, name.includes('layers.1') ? 0.5 : 0.05, 100 + i);
      ft.push({ name, dtype: 'BF16', shape: [32, 48], data: changed });
    });
    writeShardedFolder(path.join(dir, 'base'), [base.slice(0, 3), base.slice(3)], { 'config.json': '{"v":1}' });
    writeShardedFolder(path.join(dir, 'ft'), [ft.slice(0, 3), ft.slice(3)], {
      'config.json': '{"v":1}',
      'generation_config.json': '{}',
    });
    assert.equal(wgit(repo, 'init', '--json').status, 0);
    assert.equal(wgit(repo, 'commit', path.join(dir, 'base'), '-m', 'base', '--json').status, 0);
    assert.equal(wgit(repo, 'tag', 'base', '--json').status, 0);
    assert.equal(wgit(repo, 'commit', path.join(dir, 'ft'), '-m', 'ft', '--json').status, 0);
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('reports each tensor as plain f64 loops over the committed bytes do', () => {
    const r = wgit(repo, 'diff', 'base', 'HEAD', '--json');
    assert.equal(r.status, 0, r.stderr);
    const byName = new Map<string, any>(r.json.tensors.map((t: any) => [t.name, t]));
    for (let i = 0; i < base.length; i++) {
      const t = byName.get(base[i].name);
      if (base[i].name === 'model.norm.weight') {
        assert.equal(t.status, 'identical');
        assert.equal(t.bytesRead, 0, 'an unchanged tensor is answered from its record');
        continue;
      }
      const e = expected(base[i].data, ft[i].data);
      assert.equal(t.status, 'changed', base[i].name);
      close(t.normDelta, e.normDelta, `${base[i].name} ‖Δ‖`);
      close(t.relChange, e.rel, `${base[i].name} rel`);
      close(t.cosine, e.cosine, `${base[i].name} cos`);
      close(t.identicalFraction, e.same, `${base[i].name} same`);
      close(t.maxAbsDelta, e.max, `${base[i].name} max`);
    }
    const layers = new Map<number | null, any>(r.json.layers.map((l: any) => [l.layer, l]));
    assert.deepEqual([...layers.keys()], [0, 1, null]);
    assert.ok(layers.get(1).relChange > layers.get(0).relChange, 'the more changed layer ranks higher');
    assert.deepEqual(r.json.sideFiles, { added: ['generation_config.json'], removed: [], changed: [], unchanged: 1 });
    assert.equal(r.json.a.rev, 'base');
  });

  it('answers a diff of two identical commits from records alone', () => {
    const r = wgit(repo, 'diff', 'HEAD', 'HEAD', '--json');
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.json.bytesRead, 0);
    assert.equal(r.json.totals.identical, base.length);
    assert.equal(r.json.totals.relChange, 0);
  });

  it('compares model folders outside any repository, and prints a table', () => {
    const r = wgit(dir, 'diff', './base', './ft');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /5 changed, 1 identical/);
    assert.match(r.stdout, /most changed layers: 1 /);
    assert.match(r.stdout, /side file added: "?generation_config\.json/);
  });

  it('log --stat gives each commit its diff against the first parent', () => {
    const r = wgit(repo, 'log', '--stat', '--json');
    assert.equal(r.status, 0, r.stderr);
    const [top, first] = r.json.commits;
    const d = wgit(repo, 'diff', 'HEAD~1', 'HEAD', '--json').json;
    assert.deepEqual(top.stat, { against: first.commit, tensors: 6, changed: 5, relChange: d.totals.relChange });
    assert.equal(first.stat, undefined, 'a root commit has nothing to compare with');
  });

  it('saves Δ as a diff-vector commit, and apply onto the base gives the fine-tune back', async () => {
    const { openModel } = await import('../../packages/core/src/safetensors/index.js');
    const saved = wgit(repo, 'diff', 'base', 'HEAD', '--save', 'ft-delta', '--json');
    assert.equal(saved.status, 0, saved.stderr);
    assert.equal(saved.json.saved.branch, 'ft-delta');
    const show = wgit(repo, 'show', 'ft-delta', '--json').json;
    assert.equal(show.object.kind, 'diff-vector');
    assert.deepEqual(show.recipe.kind, 'diff-vector');
    assert.ok(
      show.tensors.every((t: any) => t.dtype === 'F32'),
      'the differences are f32',
    );
    assert.equal(wgit(repo, 'diff', 'base', 'HEAD', '--save', 'ft-delta', '--json').json.error.code, 'E_BRANCH_EXISTS');

    const applied = wgit(repo, 'apply', 'ft-delta', '--onto', 'base', '--json');
    assert.equal(applied.status, 0, applied.stderr);
    assert.deepEqual(applied.json.tensors, { changed: 6, replaced: 0, removed: 0, kept: 0 });
    const out = path.join(dir, 'applied');
    assert.equal(wgit(repo, 'checkout', applied.json.commit, '--out', out, '--json').status, 0);
    const m = await openModel(out);
    for (const t of ft) assert.deepEqual(Buffer.from(await m.readTensor(t.name)), Buffer.from(t.data), t.name);
    await m.close();

    // Half of the update: bf16(base + f32(0.5·f32(ft − base))), by hand, for one tensor.
    const half = wgit(repo, 'apply', 'ft-delta', '--onto', 'base', '--scale', '0.5', '--json');
    assert.equal(half.status, 0, half.stderr);
    const out2 = path.join(dir, 'applied-half');
    assert.equal(wgit(repo, 'checkout', half.json.commit, '--out', out2, '--json').status, 0);
    const h = await openModel(out2);
    const got = new Uint16Array((await h.readTensor(base[1].name)).slice().buffer);
    await h.close();
    const x = bf16(base[1].data);
    const y = bf16(ft[1].data);
    const f = new Float32Array(1);
    const u = new Uint32Array(f.buffer);
    for (let i = 0; i < x.length; i++) {
      f[0] = Math.fround(x[i] + Math.fround(0.5 * Math.fround(y[i] - x[i])));
      // round to nearest even bf16, as the writer does (no NaN here)
      const want = (u[0] + 0x7fff + ((u[0] >>> 16) & 1)) >>> 16;
      assert.equal(got[i], want, `element ${i}`);
    }

    const notDelta = wgit(repo, 'apply', 'base', '--onto', 'base', '--json');
    assert.equal(notDelta.json.error.code, 'E_NOT_AN_OBJECT');
  });

  it('refuses what is neither a revision nor a model', () => {
    const r = wgit(repo, 'diff', 'base', 'no-such-thing', '--json');
    assert.notEqual(r.status, 0);
    assert.equal(r.json.error.code, 'E_UNKNOWN_REVISION');
  });
});
