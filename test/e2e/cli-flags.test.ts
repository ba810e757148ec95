/**
 * Method flags and branch rules through the built CLI, each result checked
 * against a plain computation written here (../../packages/core/test/oracles.ts
 * for TIES and DARE): merge --density per input, --trim, --no-normalize,
 * --drop, --out-dtype, --lines/--lines-beta (α of a TIES merge); lines
 * --alpha/--beta; transfer --scale, --copy-missing (copy and drop), integer
 * copying, the untied-embedding warning; linear weights summing to zero;
 * default branch names when taken, an existing --branch as first parent, a
 * revision winning over a folder of the same name and ./name forcing the folder.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { dareKeeps, dareStream, tiesMerged, topKMask, topKMaskAcross } from '../../packages/core/test/oracles.js';
import { Repository } from '../../packages/store/src/index.js';
import { buildSafetensors, type RawTensor } from '../../packages/store/test/helpers.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const BIN = path.join(ROOT, 'packages/cli/bin/run.js');
const fr = Math.fround;

let tmp: string;
let repoDir: string;
const commits: Record<string, string> = {};

function wgit(...args: string[]): { status: number; json: any; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args, '--json'], { cwd: repoDir, encoding: 'utf8' });
  let json = null;
  try {
    json = JSON.parse(r.stdout);
  } catch {}
  return { status: r.status ?? -1, json, stderr: r.stderr };
}
function ok(...args: string[]) {
  const r = wgit(...args);
  assert.equal(r.status, 0, `wgit ${args.join(' ')}: ${JSON.stringify(r.json)} ${r.stderr}`);
  return r.json;
}

/** Deterministic values: a small LCG, in f32. */
function values(n: number, seed: number, scale: number): Float32Array {
  let s = seed >>> 0 || 1;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s / 2 ** 32 - 0.5) * scale;
  });
}

type Model = Map<string, Float32Array | bigint>;
const SHAPES: Record<string, number[]> = {
  'model.embed_tokens.weight': [8, 4],
  'model.layers.0.mlp.weight': [6, 4],
  'model.layers.1.mlp.weight': [6, 4],
  'model.layers.2.mlp.weight': [6, 4],
  'lm_head.weight': [8, 4],
};
const FLOATS = Object.keys(SHAPES);

function writeModel(dir: string, m: Model): string {
  fs.mkdirSync(dir, { recursive: true });
  const ts: RawTensor[] = [];
  for (const [name, v] of m) {
    if (typeof v === 'bigint')
      ts.push({ name, dtype: 'I64', shape: [1], data: new Uint8Array(new BigInt64Array([v]).buffer) });
    else ts.push({ name, dtype: 'F32', shape: SHAPES[name] ?? [v.length], data: new Uint8Array(v.slice().buffer) });
  }
  fs.writeFileSync(path.join(dir, 'model.safetensors'), buildSafetensors(ts));
  fs.writeFileSync(path.join(dir, 'config.json'), '{"model_type":"toy"}');
  return dir;
}

/** base: tied embeddings (lm_head equal to embed_tokens); fine-tunes: base + a per-model update. */
const base: Model = new Map();
const fts: Model[] = [];
before(() => {
  for (const [i, name] of FLOATS.entries()) base.set(name, values(SHAPES[name][0] * 4, 10 + i, 0.2));
  base.set('lm_head.weight', (base.get('model.embed_tokens.weight') as Float32Array).slice());
  base.set('model.step', 7n);
  for (let k = 0; k < 2; k++) {
    const ft: Model = new Map();
    for (const [i, name] of FLOATS.entries()) {
      const b = base.get(name) as Float32Array;
      const d = values(b.length, 100 * (k + 1) + i, 0.02);
      ft.set(
        name,
        Float32Array.from(b, (v, j) => fr(v + d[j])),
      );
    }
    ft.set('model.step', BigInt(100 + k));
    fts.push(ft);
  }
});

async function tensorsOf(rev: string): Promise<Map<string, { dtype: string; bytes: Uint8Array }>> {
  const repo = await Repository.open(repoDir);
  const m = await repo.openModel(rev);
  const out = new Map<string, { dtype: string; bytes: Uint8Array }>();
  try {
    for (const t of m.tensors) out.set(t.name, { dtype: t.dtype, bytes: (await m.readTensor(t.name)).slice() });
  } finally {
    await m.close();
  }
  return out;
}
const f32 = (b: Uint8Array) => new Float32Array(b.slice().buffer);
async function recipeOf(commit: string) {
  return (await (await Repository.open(repoDir)).readCommit(commit)).recipe as Record<string, unknown>;
}
const tau = (m: Model, name: string) =>
  Float32Array.from(m.get(name) as Float32Array, (v, j) => fr(v - (base.get(name) as Float32Array)[j]));
const blockOf = (name: string) => {
  const m = /\.layers\.(\d+)\./.exec(name);
  return m ? Number(m[1]) : null;
};

function assertClose(got: Float32Array, want: ArrayLike<number>, tol: number, what: string) {
  assert.equal(got.length, want.length, what);
  for (let j = 0; j < want.length; j++)
    assert.ok(
      Math.abs(got[j] - want[j]) <= tol * Math.max(1e-3, Math.abs(want[j])),
      `${what}[${j}]: ${got[j]} vs ${want[j]}`,
    );
}

before(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-flags-'));
  repoDir = path.join(tmp, 'repo');
  fs.mkdirSync(repoDir);
  ok('init', '.');
  commits.base = ok('commit', writeModel(path.join(tmp, 'm', 'base'), base), '-m', 'base').commit;
  commits.ft0 = ok('commit', writeModel(path.join(tmp, 'm', 'ft0'), fts[0]), '-m', 'ft0', '--branch', 'ft0').commit;
  commits.ft1 = ok('commit', writeModel(path.join(tmp, 'm', 'ft1'), fts[1]), '-m', 'ft1', '--branch', 'ft1').commit;
});
after(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

describe('merge flags', () => {
  test('--density per input and --trim model: the top k of each input (k from its own density)', async () => {
    for (const trim of ['tensor', 'model'] as const) {
      const r = ok(
        'merge',
        'ft0',
        'ft1',
        '--method',
        'ties',
        '--base',
        'main',
        '--density',
        '0.5,0.25',
        '--trim',
        trim,
      );
      const rec = await recipeOf(r.commit);
      assert.deepEqual((rec.params as { density: number[] }).density, [0.5, 0.25]);
      assert.equal((rec.params as { trim: string }).trim, trim);
      const out = await tensorsOf(r.commit);
      const taus = fts.map((m) => FLOATS.map((n) => tau(m, n)));
      const n = FLOATS.reduce((s, name) => s + (base.get(name) as Float32Array).length, 0);
      const kept =
        trim === 'model'
          ? taus.map((ts, i) => topKMaskAcross(ts, Math.floor([0.5, 0.25][i] * n)))
          : taus.map((ts, i) => ts.map((t) => topKMask(t, Math.floor([0.5, 0.25][i] * t.length))));
      for (const [x, name] of FLOATS.entries()) {
        const merged = tiesMerged(
          taus.map((ts) => ts[x]),
          kept.map((k) => k[x]),
          [1, 1],
        );
        const b = base.get(name) as Float32Array;
        assert.deepEqual(
          f32(out.get(name)!.bytes),
          Float32Array.from(b, (v, j) => fr(v + merged[j])),
          `${trim} ${name}`,
        );
      }
      // integers come from the first input
      assert.deepEqual(out.get('model.step')?.bytes, new Uint8Array(new BigInt64Array([100n]).buffer));
    }
  });

  test('--no-normalize sums the agreeing entries instead of averaging them', async () => {
    const r = ok('merge', 'ft0', 'ft1', '--method', 'ties', '--base', 'main', '--density', '0.5', '--no-normalize');
    assert.equal(((await recipeOf(r.commit)).params as { normalize: boolean }).normalize, false);
    const out = await tensorsOf(r.commit);
    for (const name of FLOATS) {
      const taus = fts.map((m) => tau(m, name));
      const merged = tiesMerged(
        taus,
        taus.map((t) => topKMask(t, Math.floor(0.5 * t.length))),
        [1, 1],
        false,
      );
      const b = base.get(name) as Float32Array;
      assert.deepEqual(
        f32(out.get(name)!.bytes),
        Float32Array.from(b, (v, j) => fr(v + merged[j])),
        name,
      );
    }
  });

  test('--drop and --seed: DARE keeps what the documented hash keeps, survivors × 1/(1−p)', async () => {
    const r = ok('merge', 'ft0', 'ft1', '--method', 'dare-linear', '--base', 'main', '--drop', '0.3', '--seed', '5');
    const rec = await recipeOf(r.commit);
    assert.equal(rec.seed, 5);
    const out = await tensorsOf(r.commit);
    const s = fr(1 / 0.7);
    for (const name of FLOATS) {
      const b = base.get(name) as Float32Array;
      const want = Float32Array.from(b, (bj, j) => {
        let acc = 0;
        fts.forEach((m, i) => {
          if (dareKeeps(5, dareStream(name, i), j, 0.3)) acc += fr(tau(m, name)[j] * s);
        });
        return bj + acc;
      });
      assertClose(f32(out.get(name)!.bytes), want, 1e-6, name);
    }
  });

  test('--out-dtype BF16 stores the float tensors as bf16, integers as they were', async () => {
    const r = ok('merge', 'ft0', 'ft1', '--method', 'task-arithmetic', '--base', 'main', '--out-dtype', 'BF16');
    const out = await tensorsOf(r.commit);
    for (const name of FLOATS) {
      const t = out.get(name)!;
      assert.equal(t.dtype, 'BF16', name);
      const b = base.get(name) as Float32Array;
      const got = Float32Array.from(
        new Uint16Array(t.bytes.slice().buffer),
        (h) => f32(new Uint8Array(new Uint32Array([h << 16]).buffer))[0],
      );
      const want = Float32Array.from(b, (bj, j) => bj + tau(fts[0], name)[j] + tau(fts[1], name)[j]);
      assertClose(got, want, 2 ** -8, name);
    }
    assert.equal(out.get('model.step')?.dtype, 'I64');
  });

  test('--lines --lines-beta on a TIES merge: α = ‖Σ τᵢ‖₁ / (T·‖τ_merged‖₁), each block scaled by α + β·ℓ/(L−1)', async () => {
    const r = ok(
      'merge',
      'ft0',
      'ft1',
      '--method',
      'ties',
      '--base',
      'main',
      '--density',
      '0.5',
      '--lines',
      '--lines-beta',
      '0.5',
    );
    const merged = new Map<string, Float32Array>();
    let sumL1 = 0;
    let mergedL1 = 0;
    for (const name of FLOATS) {
      const taus = fts.map((m) => tau(m, name));
      const m = tiesMerged(
        taus,
        taus.map((t) => topKMask(t, Math.floor(0.5 * t.length))),
        [1, 1],
      );
      merged.set(name, m);
      for (let j = 0; j < m.length; j++) {
        sumL1 += Math.abs(taus[0][j] + taus[1][j]);
        mergedL1 += Math.abs(m[j]);
      }
    }
    const alpha = sumL1 / mergedL1 / 2;
    assert.ok(Math.abs(r.lines.alpha - alpha) <= 1e-6 * alpha, `α ${r.lines.alpha} vs ${alpha}`);
    assert.equal(r.lines.beta, 0.5);
    assert.equal(r.lines.blocks, 3);
    assert.ok(alpha > 0.5 && alpha < 1, `α ${alpha}: TIES keeps less than the sum of the task vectors`);
    const out = await tensorsOf(r.commit);
    for (const name of FLOATS) {
      const l = blockOf(name);
      const s = l === null ? alpha : alpha + (0.5 * l) / 2;
      const b = base.get(name) as Float32Array;
      const m = merged.get(name) as Float32Array;
      assertClose(
        f32(out.get(name)!.bytes),
        Float32Array.from(b, (v, j) => v + s * m[j]),
        1e-5,
        name,
      );
    }
  });

  test('linear weights summing to zero are refused before anything is written', async () => {
    const before = (await (await Repository.open(repoDir)).branches()).length;
    const r = wgit('merge', 'ft0', 'ft1', '--method', 'linear', '--weights', '1,-1');
    assert.equal(r.status, 1);
    assert.equal(r.json.error.code, 'E_BAD_PARAM');
    assert.match(r.json.error.message, /sum to zero/);
    assert.equal((await (await Repository.open(repoDir)).branches()).length, before);
  });
});

describe('lines flags', () => {
  test('--alpha 0.3 --beta 0.2: blocks scaled by 0.3 + 0.2·ℓ/2, other tensors by 0.3', async () => {
    const r = ok('lines', 'ft0', '--base', 'main', '--alpha', '0.3', '--beta', '0.2');
    assert.equal(r.alpha, 0.3);
    assert.equal(r.beta, 0.2);
    const out = await tensorsOf(r.commit);
    for (const name of FLOATS) {
      const l = blockOf(name);
      const s = l === null ? 0.3 : 0.3 + (0.2 * l) / 2;
      const b = base.get(name) as Float32Array;
      const t = tau(fts[0], name);
      assertClose(
        f32(out.get(name)!.bytes),
        Float32Array.from(b, (v, j) => v + s * t[j]),
        1e-6,
        name,
      );
    }
  });
});

describe('transfer flags and branch rules', () => {
  // onto: a new release (base + its own change), with one tensor the old versions lack
  let onto: Model;
  before(() => {
    onto = new Map();
    for (const [i, name] of FLOATS.entries()) {
      const b = base.get(name) as Float32Array;
      const d = values(b.length, 900 + i, 0.05);
      onto.set(
        name,
        Float32Array.from(b, (v, j) => fr(v + d[j])),
      );
    }
    // still tied in the new release
    onto.set('lm_head.weight', (onto.get('model.embed_tokens.weight') as Float32Array).slice());
    onto.set('model.step', 300n);
    commits.onto = ok('commit', writeModel(path.join(tmp, 'm', 'onto'), onto), '-m', 'v2', '--branch', 'v2').commit;
  });

  test('--scale 0.5: onto + 0.5·(ft − from); integers from the target; the untied embeddings are named', async () => {
    const r = ok('transfer', 'ft0', '--from', 'main', '--onto', 'v2', '--scale', '0.5');
    assert.deepEqual(r.parents, [commits.onto, commits.ft0, commits.base]);
    assert.equal((await recipeOf(r.commit)).scale, 0.5);
    const out = await tensorsOf(r.commit);
    for (const name of FLOATS) {
      const c = onto.get(name) as Float32Array;
      const t = tau(fts[0], name);
      assertClose(
        f32(out.get(name)!.bytes),
        Float32Array.from(c, (v, j) => v + 0.5 * t[j]),
        1e-6,
        name,
      );
    }
    assert.deepEqual(out.get('model.step')?.bytes, new Uint8Array(new BigInt64Array([300n]).buffer));
    // the fine-tune moved embed_tokens and lm_head apart: the output cannot keep them tied
    assert.ok(
      r.warnings.some((w: string) => /model\.embed_tokens\.weight and lm_head\.weight.*untied/.test(w)),
      JSON.stringify(r.warnings),
    );
  });

  test('the default branch is transfer/<FT>, then transfer/<FT>-2 when taken', async () => {
    const a = ok('transfer', 'ft1', '--from', 'main', '--onto', 'v2');
    const b = ok('transfer', 'ft1', '--from', 'main', '--onto', 'v2', '--scale', '0.25');
    assert.equal(a.branch, 'transfer/ft1');
    assert.equal(b.branch, 'transfer/ft1-2');
    assert.notEqual(a.commit, b.commit);
  });

  test('an existing --branch keeps its history: its head becomes the first parent', async () => {
    ok('branch', 'keep', 'ft1');
    const r = ok('transfer', 'ft0', '--from', 'main', '--onto', 'v2', '--branch', 'keep');
    assert.equal(r.branch, 'keep');
    assert.deepEqual(r.parents, [commits.ft1, commits.onto, commits.ft0, commits.base]);
    const repo = await Repository.open(repoDir);
    assert.equal(await repo.resolve('keep'), r.commit);
  });

  test('--copy-missing copies what only the target has and drops what the target lacks', async () => {
    const extra = new Map(onto);
    extra.set('model.extra.weight', values(16, 77, 1));
    const ontoX = ok('commit', writeModel(path.join(tmp, 'm', 'ontoX'), extra), '-m', 'v2x', '--branch', 'v2x').commit;
    const ftX = new Map(fts[0]);
    const fromX = new Map(base);
    ftX.set('model.old.weight', values(16, 78, 1));
    fromX.set('model.old.weight', values(16, 79, 1));
    const ftC = ok('commit', writeModel(path.join(tmp, 'm', 'ftX'), ftX), '-m', 'ftX', '--branch', 'ftX').commit;
    const fromC = ok(
      'commit',
      writeModel(path.join(tmp, 'm', 'fromX'), fromX),
      '-m',
      'fromX',
      '--branch',
      'fromX',
    ).commit;
    const refused = wgit('transfer', ftC, '--from', fromC, '--onto', ontoX);
    assert.equal(refused.status, 1);
    assert.equal(refused.json.error.code, 'E_TENSOR_MISMATCH');
    const r = ok('transfer', ftC, '--from', fromC, '--onto', ontoX, '--copy-missing');
    assert.deepEqual(r.missing, { copied: ['model.extra.weight'], dropped: ['model.old.weight'] });
    const out = await tensorsOf(r.commit);
    assert.deepEqual(f32(out.get('model.extra.weight')!.bytes), extra.get('model.extra.weight'));
    assert.equal(out.has('model.old.weight'), false);
    assert.equal(
      (await recipeOf(r.commit)).copyMissing ??
        ((await recipeOf(r.commit)).params as { copyMissing?: boolean })?.copyMissing,
      true,
    );
  });

  test('a revision wins over a folder of the same name; ./name forces the folder', async () => {
    // a folder named like the branch ft0, holding another model (ft1's weights)
    writeModel(path.join(repoDir, 'ft0'), fts[1]);
    const byRev = ok('transfer', 'ft0', '--from', 'main', '--onto', 'v2', '--branch', 'rev-wins');
    assert.deepEqual(byRev.parents, [commits.onto, commits.ft0, commits.base]);
    const byPath = ok('transfer', './ft0', '--from', 'main', '--onto', 'v2', '--branch', 'path-forced');
    assert.deepEqual(byPath.parents, [commits.onto, commits.base], 'a folder input is no parent');
    const rec = await recipeOf(byPath.commit);
    assert.equal((rec.ft as { path: string }).path, path.join(repoDir, 'ft0'));
    const out = await tensorsOf(byPath.commit);
    const name = 'model.layers.1.mlp.weight';
    const c = onto.get(name) as Float32Array;
    const t = tau(fts[1], name);
    assertClose(
      f32(out.get(name)!.bytes),
      Float32Array.from(c, (v, j) => v + t[j]),
      1e-6,
      name,
    );
    fs.rmSync(path.join(repoDir, 'ft0'), { recursive: true });
  });
});
