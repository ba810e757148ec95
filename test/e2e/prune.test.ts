// wgit prune through the built CLI: a commit with its recipe and parent, the
// pruned tensors against a pairwise-rank oracle written here, the rest bit for
// bit; a linear merge of models sharing the mask reports it kept.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { bf16Weights, type RawTensor, writeShardedFolder } from '../../packages/store/test/helpers.js';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const BIN = path.join(ROOT, 'packages', 'cli', 'bin', 'run.js');
const ENV = {
  ...process.env,
  WGIT_AUTHOR_DATE: '1700000000',
  WGIT_AUTHOR_NAME: 'T',
  WGIT_AUTHOR_EMAIL: 't@example.com',
};

function wgit(cwd: string, ...args: string[]): { status: number; json: any; stderr: string; stdout: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd, env: ENV, encoding: 'utf8' });
  let json: any = null;
  try {
    json = JSON.parse(r.stdout);
  } catch {}
  return { status: r.status ?? -1, json, stderr: r.stderr, stdout: r.stdout };
}

const f = new Float32Array(1);
const u = new Uint32Array(f.buffer);
function bf16(bytes: Uint8Array): number[] {
  return Array.from(new Uint16Array(bytes.slice().buffer), (x) => {
    u[0] = x << 16;
    return f[0];
  });
}

function pruneOracle(x: number[], s: number): number[] {
  const keep = x.length - Math.round(s * x.length);
  return x.map((v, j) => {
    let above = 0;
    for (let k = 0; k < x.length; k++)
      if (Math.abs(x[k]) > Math.abs(v) || (Math.abs(x[k]) === Math.abs(v) && k < j)) above++;
    return above < keep ? v : 0;
  });
}

describe('wgit prune (CLI)', () => {
  let dir: string;
  let repo: string;
  const model: RawTensor[] = [];
  let mCommit = '';

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-prune-'));
    repo = path.join(dir, 'repo');
    fs.mkdirSync(repo);
    ['model.embed_tokens.weight', 'model.layers.0.mlp.up_proj.weight', 'model.layers.1.mlp.up_proj.weight'].forEach(
      (name, i) => {
        model.push({ name, dtype: 'BF16', shape: [32, 24], data: bf16Weights(32 * 24, 70 + i) });
      },
    );
    writeShardedFolder(path.join(dir, 'm'), [model], { 'config.json': '{"v":1}' });
    assert.equal(wgit(repo, 'init', '--json').status, 0);
    const c = wgit(repo, 'commit', path.join(dir, 'm'), '-m', 'm', '--json');
    assert.equal(c.status, 0, c.stderr);
    mCommit = c.json.commit;
    assert.equal(wgit(repo, 'tag', 'm', '--json').status, 0);
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

  it('--sparsity: the layers pruned exactly, the embedding kept; committed with REV as parent and the recipe', async () => {
    const r = wgit(repo, 'prune', 'm', '--sparsity', '0.7', '--json');
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.json.branch, 'prune/m');
    assert.match(mCommit, /^[0-9a-f]{40,}$/);
    assert.deepEqual(r.json.parents, [mCommit]);
    assert.equal(r.json.tensors.length, 2);
    assert.equal(r.json.zeros, 2 * Math.round(0.7 * 32 * 24));
    const got = await checkout(r.json.commit, 'pruned');
    for (const t of model) {
      const b = got.get(t.name) as Uint8Array;
      if (t.name.includes('embed')) assert.deepEqual(Buffer.from(b), Buffer.from(t.data), t.name);
      else assert.deepEqual(bf16(b), pruneOracle(bf16(t.data), 0.7), t.name);
    }
    const show = wgit(repo, 'show', r.json.commit, '--json');
    assert.equal(show.status, 0, show.stderr);
    const recipe = show.json.recipe;
    assert.equal(recipe.method, 'prune');
    assert.equal(recipe.sparsity, 0.7);
    assert.equal(recipe.model.rev, 'm');
  });

  it('--structured 2:4, and a linear merge of two copies reports the mask kept', async () => {
    const r = wgit(repo, 'prune', 'm', '--structured', '2:4', '--branch', 'p24', '--json');
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.json.sparsity, 0.5);
    assert.equal(r.json.zeros, 2 * 32 * 24 * 0.5);
    const mg = wgit(repo, 'merge', 'p24', 'p24', '--method', 'linear', '--json');
    assert.equal(mg.status, 0, mg.stderr);
    // the embedding is dense: a third of the float entries
    const share = (2 * 32 * 24 * 0.5) / (3 * 32 * 24);
    assert.ok(Math.abs(mg.json.sparsity.output - share) < 1e-12, JSON.stringify(mg.json.sparsity));
    assert.deepEqual(mg.json.sparsity.inputs, [mg.json.sparsity.output, mg.json.sparsity.output]);
  });

  it('refuses a malformed N:M, a contradiction, and no amount', () => {
    for (const [args, want] of [
      [['--structured', '2-4'], 'E_USAGE'],
      [['--structured', '2:4', '--sparsity', '0.3'], 'E_BAD_PARAM'],
      [[], 'E_USAGE'],
      [['--sparsity', '1.5'], 'E_BAD_PARAM'],
    ] as const) {
      const r = wgit(repo, 'prune', 'm', ...args, '--json');
      assert.notEqual(r.status, 0);
      assert.match(r.stdout + r.stderr, new RegExp(want), `${args.join(' ')}: ${r.stdout} ${r.stderr}`);
    }
  });
});
