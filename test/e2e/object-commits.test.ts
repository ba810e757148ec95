/**
 * Object commits as models: checkout of a diff vector gives base + Δ (the
 * fine-tune again), `--object` gives Δ's own f32 tensors; a transfer commit
 * records its diff vector (FT and FROM are its parents) and `wgit apply` of
 * it moves the same fine-tune onto the next base release. Expected values are
 * computed here from the raw bf16 bits.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { bf16Weights, fineTune, type RawTensor, writeShardedFolder } from '../../packages/store/test/helpers.js';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const BIN = path.join(ROOT, 'packages', 'cli', 'bin', 'run.js');
const ENV = { ...process.env, WGIT_AUTHOR_DATE: '1700000000', WGIT_AUTHOR_NAME: 'T', WGIT_AUTHOR_EMAIL: 't@x' };

function wgit(cwd: string, ...args: string[]): { status: number; json: any; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args, '--json'], { cwd, env: ENV, encoding: 'utf8' });
  return { status: r.status ?? -1, json: JSON.parse(r.stdout), stderr: r.stderr };
}

/** bf16 bits → f32 value and back (round to nearest even; no NaN in these inputs), written here. */
const f = new Float32Array(1);
const u = new Uint32Array(f.buffer);
function bf16At(b: Uint8Array, i: number): number {
  u[0] = (b[2 * i] | (b[2 * i + 1] << 8)) << 16;
  return f[0];
}
function toBf16(x: number): number {
  f[0] = x;
  return (u[0] + 0x7fff + ((u[0] >>> 16) & 1)) >>> 16;
}

/** bf16(new + f32(s·f32(ft − old))) element by element: what transfer and apply compute. */
function transferred(nu: Uint8Array, ft: Uint8Array, old: Uint8Array, s: number): Uint16Array {
  const out = new Uint16Array(nu.length / 2);
  for (let i = 0; i < out.length; i++) {
    const d = Math.fround(bf16At(ft, i) - bf16At(old, i));
    out[i] = toBf16(Math.fround(bf16At(nu, i) + Math.fround(Math.fround(s) * d)));
  }
  return out;
}

async function tensors(dir: string): Promise<Map<string, Buffer>> {
  const { openModel } = await import('../../packages/core/src/safetensors/index.js');
  const m = await openModel(dir);
  const out = new Map<string, Buffer>();
  for (const t of m.tensors) out.set(t.name, Buffer.from(await m.readTensor(t.name)));
  await m.close();
  return out;
}

describe('object commits as models', () => {
  let dir: string;
  let repo: string;
  const names = ['model.layers.0.self_attn.q_proj.weight', 'model.layers.0.mlp.up_proj.weight', 'model.norm.weight'];
  const v1: RawTensor[] = [];
  const ft: RawTensor[] = [];
  const v2: RawTensor[] = [];
  const v3: RawTensor[] = [];

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-objc-'));
    repo = path.join(dir, 'repo');
    fs.mkdirSync(repo);
    names.forEach((name, i) => {
      const data = bf16Weights(24 * 40, 50 + i);
      v1.push({ name, dtype: 'BF16', shape: [24, 40], data });
      ft.push({ name, dtype: 'BF16', shape: [24, 40], data: fineTune(data, 0.1, 60 + i) });
      v2.push({ name, dtype: 'BF16', shape: [24, 40], data: fineTune(data, 0.02, 70 + i) });
      v3.push({ name, dtype: 'BF16', shape: [24, 40], data: fineTune(data, 0.03, 80 + i) });
    });
    const side = (v: string) => ({ 'config.json': `{"v":"${v}"}` });
    writeShardedFolder(path.join(dir, 'v1'), [v1], side('v1'));
    writeShardedFolder(path.join(dir, 'ft'), [ft], { ...side('v1'), 'tokenizer_config.json': '{"chat":1}' });
    writeShardedFolder(path.join(dir, 'v2'), [v2], side('v2'));
    writeShardedFolder(path.join(dir, 'v3'), [v3], side('v3'));
    assert.equal(wgit(repo, 'init').status, 0);
    for (const [b, d] of [
      ['v1', 'v1'],
      ['ft', 'ft'],
      ['v2', 'v2'],
      ['v3', 'v3'],
    ])
      assert.equal(wgit(repo, 'commit', path.join(dir, d), '--branch', b, '-m', b).status, 0);
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('checks out a diff vector as base + Δ, and --object as Δ itself', async () => {
    assert.equal(wgit(repo, 'diff', 'v1', 'ft', '--save', 'ft-delta').status, 0);
    const out = path.join(dir, 'as-model');
    const r = wgit(repo, 'checkout', 'ft-delta', '--out', out);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.json.object, 'diff-vector');
    const got = await tensors(out);
    for (const t of ft) assert.deepEqual(got.get(t.name), Buffer.from(t.data), `${t.name}: v1 + (ft − v1) is ft`);
    assert.equal(fs.readFileSync(path.join(out, 'tokenizer_config.json'), 'utf8'), '{"chat":1}', "ft's side files");

    const own = path.join(dir, 'as-object');
    assert.equal(wgit(repo, 'checkout', 'ft-delta', '--out', own, '--object').status, 0);
    const d = await tensors(own);
    const q = new Float32Array(new Uint8Array(d.get(names[0]) as Buffer).buffer);
    for (let i = 0; i < q.length; i++)
      assert.equal(q[i], Math.fround(bf16At(ft[0].data, i) - bf16At(v1[0].data, i)), `Δ element ${i}`);
  });

  it('refuses to make the model of a diff vector whose base is a file, and --object still works', () => {
    const r0 = wgit(repo, 'diff', path.join(dir, 'v1'), 'ft', '--save', 'file-delta');
    assert.equal(r0.status, 0, r0.stderr);
    const r = wgit(repo, 'checkout', 'file-delta', '--out', path.join(dir, 'no'));
    assert.equal(r.json.error.code, 'E_OBJECT_BASE_MISSING');
    assert.equal(fs.existsSync(path.join(dir, 'no')), false, 'nothing written');
    assert.equal(wgit(repo, 'checkout', 'file-delta', '--out', path.join(dir, 'own2'), '--object').status, 0);
  });

  it('a transfer records FT − FROM; apply of it onto the next release equals a transfer there', async () => {
    const t = wgit(repo, 'transfer', 'ft', '--from', 'v1', '--onto', 'v2', '--scale', '0.75', '--branch', 'ft-v2');
    assert.equal(t.status, 0, t.stderr);
    const ids = Object.fromEntries(['v1', 'ft', 'v2'].map((b) => [b, wgit(repo, 'show', b).json.commit]));
    assert.deepEqual(t.json.parents, [ids.v2, ids.ft, ids.v1], 'FT and FROM stay reachable from the transfer');

    const a = wgit(repo, 'apply', 'ft-v2', '--onto', 'v3', '--branch', 'ft-v3');
    assert.equal(a.status, 0, a.stderr);
    assert.equal(a.json.scale, 0.75, "the transfer's own scale");
    const out = path.join(dir, 'ft-v3');
    assert.equal(wgit(repo, 'checkout', 'ft-v3', '--out', out).status, 0);
    const got = await tensors(out);
    for (let i = 0; i < names.length; i++) {
      const want = transferred(v3[i].data, ft[i].data, v1[i].data, 0.75);
      assert.deepEqual(new Uint16Array(new Uint8Array(got.get(names[i]) as Buffer).buffer), want, names[i]);
    }

    // The same transfer made directly gives the same tensors.
    const direct = wgit(repo, 'transfer', 'ft', '--from', 'v1', '--onto', 'v3', '--scale', '0.75', '--branch', 'd');
    assert.equal(direct.status, 0, direct.stderr);
    const out2 = path.join(dir, 'direct');
    assert.equal(wgit(repo, 'checkout', 'd', '--out', out2).status, 0);
    assert.deepEqual(await tensors(out2), got);
  });

  it('a transfer of files records no diff vector, and apply says so', () => {
    const t = wgit(dir, 'transfer', './ft', '--from', './v1', '--onto', 'v2', '--repo', repo, '--branch', 'from-files');
    assert.equal(t.status, 0, t.stderr);
    const r = wgit(repo, 'apply', 'from-files', '--onto', 'v3');
    assert.equal(r.json.error.code, 'E_NOT_AN_OBJECT');
    assert.match(r.json.error.message, /made from files/);
  });
});
