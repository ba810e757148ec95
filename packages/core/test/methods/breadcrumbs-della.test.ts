// breadcrumbs, breadcrumbs_ties, della and della_linear against plain loops
// written here (ranks counted pairwise, the drop draw from oracles.ts) and a
// hand-worked case; the engine hands della each tensor's shape.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isWgitError, mergeModels, mergeTensor, openModel, parseMergekitYaml } from '../../src/index.js';
import { dareKeeps, dareStream, tiesMerged } from '../oracles.js';
import { decode, randomValues, rng, tmpDir, writeModel } from './helpers.js';

const fr = Math.fround;
const f32 = (xs: number[]) => Float32Array.from(xs);
const code = (e: unknown) => (isWgitError(e) ? e.code : String(e));

/** Entries "above" j: larger |τ|, or equal |τ| at an earlier index. */
function rankDesc(t: ArrayLike<number>, j: number, from = 0, to = t.length): number {
  let r = 0;
  for (let k = from; k < to; k++) {
    const a = Math.abs(t[k]);
    const b = Math.abs(t[j]);
    if (a > b || (a === b && k < j)) r++;
  }
  return r;
}

function breadcrumbsKept(t: ArrayLike<number>, density: number, gamma: number): boolean[] {
  const n = t.length;
  if (density >= 1) return Array.from({ length: n }, () => true);
  const k = Math.floor(density * n);
  let top = Math.floor(gamma * n);
  const bot = n - k - top;
  if (bot < 0) top += bot;
  return Array.from({ length: n }, (_, j) => {
    const r = rankDesc(t, j);
    return r >= top && r < top + k;
  });
}

function weightedSum(taus: ArrayLike<number>[], kept: boolean[][], w: number[]): Float32Array {
  const out = new Float32Array(taus[0].length);
  for (let j = 0; j < out.length; j++) {
    let s = 0;
    for (let i = 0; i < taus.length; i++) s = fr(s + (kept[i][j] ? fr(fr(w[i]) * taus[i][j]) : 0));
    out[j] = s;
  }
  return out;
}

const addBase = (base: Float32Array, tau: Float32Array, lambda = 1) => base.map((b, j) => fr(b + fr(lambda * tau[j])));

describe('breadcrumbs', () => {
  it('hand-worked: drops the outlier and the smallest, keeps density', () => {
    const tau = f32([0.1, -5, 0.3, 2, -0.2, 0.05, 1, 0.4, -0.6, 0.7]);
    const base = new Float32Array(10);
    const got = mergeTensor('breadcrumbs', { density: 0.5, gamma: 0.1 }, [tau], base);
    assert.deepEqual(Array.from(got), Array.from(f32([0, 0, 0, 2, 0, 0, 1, 0.4, -0.6, 0.7])));
  });

  it('against the pairwise-rank oracle, weighted sum and TIES, ties in |τ| by index', () => {
    const r = rng(7);
    const n = 97;
    const base = f32(randomValues(n, r));
    const inputs = [0, 1, 2].map(() => f32(Array.from(base, (b) => b + Math.round(r() * 8) / 16)));
    const taus = inputs.map((x) => x.map((v, j) => fr(v - base[j])));
    const density = [0.3, 0.5, 0.7];
    const gamma = [0.05, 0.2, 0.5];
    const weights = [1, 0.5, 2];
    const kept = taus.map((t, i) => breadcrumbsKept(t, density[i], gamma[i]));
    for (const [i, k] of kept.entries()) {
      const want = Math.min(Math.floor(density[i] * n), n);
      assert.equal(k.filter(Boolean).length, want, 'exactly ⌊density·N⌋ kept');
    }
    const lin = mergeTensor('breadcrumbs', { density, gamma, weights, lambda: 0.8 }, inputs, base);
    assert.deepEqual(lin, addBase(base, weightedSum(taus, kept, weights), fr(0.8)));
    const ties = mergeTensor('breadcrumbs-ties', { density, gamma, weights }, inputs, base);
    assert.deepEqual(ties, addBase(base, tiesMerged(taus, kept, weights, false)));
    const tiesN = mergeTensor('breadcrumbs-ties', { density, gamma, weights, normalize: true }, inputs, base);
    assert.deepEqual(tiesN, addBase(base, tiesMerged(taus, kept, weights, true)));
  });

  it('gamma 0 is TIES; density 1 keeps everything; the L1 rescale keeps Σ|τ|', () => {
    const r = rng(3);
    const base = f32(randomValues(64, r));
    const inputs = [0, 1].map(() => f32(Array.from(base, (b) => b + r())));
    assert.deepEqual(
      mergeTensor('breadcrumbs-ties', { density: 0.4, gamma: 0, normalize: true }, inputs, base),
      mergeTensor('ties', { density: 0.4 }, inputs, base),
    );
    assert.deepEqual(
      mergeTensor('breadcrumbs', { density: 1, gamma: 0.3 }, inputs, base),
      mergeTensor('task-arithmetic', {}, inputs, base),
    );
    const one = mergeTensor('breadcrumbs', { density: 0.3, gamma: 0.1, rescale: 'l1' }, [inputs[0]], base);
    const l1 = (a: Float32Array) => a.reduce((s, x, j) => s + Math.abs(x - base[j]), 0);
    assert.ok(Math.abs(l1(one) - l1(inputs[0])) < 1e-3 * l1(inputs[0]));
  });
});

/** DELLA's keep probability of entry j of a row [from, to): ascending rank by pairwise count. */
function dellaP(t: ArrayLike<number>, j: number, from: number, to: number, d: number, e: number): number {
  const m = to - from;
  const r = m - 1 - rankDesc(t, j, from, to);
  return d - e + (m > 1 ? (2 * e * r) / (m - 1) : 0);
}

function dellaOracle(
  name: string,
  taus: Float32Array[],
  rows: number,
  d: number,
  e: number,
  seed: number,
): { vals: Float32Array[]; kept: boolean[][] } {
  const vals: Float32Array[] = [];
  const kept: boolean[][] = [];
  for (const [i, t] of taus.entries()) {
    const m = t.length / rows;
    const v = new Float32Array(t.length);
    const k: boolean[] = [];
    for (let j = 0; j < t.length; j++) {
      const row = Math.floor(j / m);
      const p = dellaP(t, j, row * m, row * m + m, d, e);
      const keep = dareKeeps(seed, dareStream(name, i), j, 1 - p);
      k.push(keep);
      v[j] = keep ? fr(t[j] * fr(1 / p)) : 0;
    }
    vals.push(v);
    kept.push(k);
  }
  return { vals, kept };
}

describe('della', () => {
  const r = rng(11);
  const base = f32(randomValues(6 * 10, r));
  const inputs = [0, 1, 2].map(() => f32(Array.from(base, (b) => b + r())));
  const taus = inputs.map((x) => x.map((v, j) => fr(v - base[j])));

  it('against the oracle: per row of a 2-D tensor, TIES (normalized) and linear', () => {
    const ctx = { name: 'model.layers.0.w', shape: [6, 10] };
    const p = { density: 0.4, epsilon: 0.2, seed: 5 };
    const o = dellaOracle(ctx.name, taus, 6, 0.4, 0.2, 5);
    assert.deepEqual(
      mergeTensor('della', p, inputs, base, ctx),
      addBase(base, tiesMerged(o.vals, o.kept, [1, 1, 1], true)),
    );
    assert.deepEqual(
      mergeTensor('della-linear', { ...p, weights: [1, 2, 0.5] }, inputs, base, ctx),
      addBase(base, weightedSum(o.vals, o.kept, [1, 2, 0.5])),
    );
    // one row when no shape is known (and for 1-D tensors)
    const flat = dellaOracle('v', taus, 1, 0.4, 0.2, 5);
    assert.deepEqual(
      mergeTensor('della-linear', p, inputs, base, { name: 'v' }),
      addBase(base, weightedSum(flat.vals, flat.kept, [1, 1, 1])),
    );
  });

  it('deterministic with the seed; another seed draws another mask; larger |τ| kept more often', () => {
    const p = { density: 0.5, epsilon: 0.4, seed: 1 };
    const a = mergeTensor('della-linear', p, inputs, base);
    assert.deepEqual(mergeTensor('della-linear', p, inputs, base), a);
    assert.notDeepEqual(mergeTensor('della-linear', { ...p, seed: 2 }, inputs, base), a);
    const n = 20000;
    const t = f32(Array.from({ length: n }, (_, j) => (j + 1) / n));
    const out = mergeTensor('della-linear', { ...p, rescale: 'none' }, [t], new Float32Array(n));
    const rate = (lo: number, hi: number) => {
      let c = 0;
      for (let j = lo; j < hi; j++) if (out[j] !== 0) c++;
      return c / (hi - lo);
    };
    assert.ok(Math.abs(rate(0, n) - 0.5) < 0.02, `overall ${rate(0, n)}`);
    assert.ok(Math.abs(rate(0, n / 10) - 0.14) < 0.03, `smallest tenth ${rate(0, n / 10)}`);
    assert.ok(Math.abs(rate(n - n / 10, n) - 0.86) < 0.03, `largest tenth ${rate(n - n / 10, n)}`);
  });

  it('refuses density ± epsilon outside (0, 1); density 1 keeps all', () => {
    assert.throws(
      () => mergeTensor('della', { density: 0.9, epsilon: 0.15 }, inputs, base),
      (e) => code(e) === 'E_BAD_PARAM',
    );
    assert.deepEqual(
      mergeTensor('della-linear', { density: 1 }, inputs, base),
      mergeTensor('task-arithmetic', {}, inputs, base),
    );
  });

  describe('engine', () => {
    let dir: string;
    before(async () => {
      dir = tmpDir();
      await writeModel(path.join(dir, 'b'), [{ name: 'model.layers.0.w', dtype: 'F32', shape: [6, 10], values: base }]);
      for (const [i, x] of inputs.entries())
        await writeModel(path.join(dir, `m${i}`), [
          { name: 'model.layers.0.w', dtype: 'F32', shape: [6, 10], values: x },
        ]);
    });
    after(() => fs.rmSync(dir, { recursive: true, force: true }));

    it("merges per row with the tensor's shape", async () => {
      const ms = await Promise.all(['m0', 'm1', 'm2', 'b'].map((p) => openModel(path.join(dir, p))));
      const params = { density: 0.4, epsilon: 0.2, seed: 9 };
      try {
        await mergeModels({
          inputs: ms.slice(0, 3),
          base: ms[3],
          method: 'della',
          params,
          outDir: path.join(dir, 'o'),
        });
      } finally {
        await Promise.all(ms.map((m) => m.close()));
      }
      const m = await openModel(path.join(dir, 'o'));
      const got = decode(await m.readTensor('model.layers.0.w'), 'F32');
      await m.close();
      const o = dellaOracle('model.layers.0.w', taus, 6, 0.4, 0.2, 9);
      assert.deepEqual(got, addBase(base, tiesMerged(o.vals, o.kept, [1, 1, 1], true)));
    });
  });
});

describe('mergekit YAML', () => {
  it('breadcrumbs gamma, della epsilon and rescale (mergekit rescales by L1 by default)', () => {
    const b = parseMergekitYaml(
      'merge_method: breadcrumbs_ties\nbase_model: z\nparameters: {weight: 1, density: 0.8, gamma: 0.02}\nmodels:\n  - model: a\n  - model: b\n    parameters: {gamma: 0.05}\n',
    );
    assert.equal(b.method, 'breadcrumbs-ties');
    assert.deepEqual(b.params.gamma, [0.02, 0.05]);
    const d = parseMergekitYaml(
      'merge_method: della\nbase_model: z\nparameters: {weight: 1, density: 0.5, epsilon: 0.1}\nmodels:\n  - model: a\n',
    );
    assert.equal(d.method, 'della');
    assert.equal(d.params.rescale, 'l1');
    assert.deepEqual(d.params.epsilon, [0.1]);
    const dl = parseMergekitYaml(
      'merge_method: della_linear\nbase_model: z\nparameters: {weight: 1, rescale: false}\nmodels:\n  - model: a\n',
    );
    assert.equal(dl.params.rescale, 'none');
    assert.deepEqual(dl.params.epsilon, [0.15]);
  });
});
