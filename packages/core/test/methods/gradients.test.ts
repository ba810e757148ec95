// mergekit's gradients: a list of numbers is interpolated over the layers
// (t = i/(L−1), t = 0 outside the layers). The expected values per layer are
// worked out by hand below; the merge is checked against a TIES written here
// with plain loops.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isWgitError, mergeModels, mergeTensor, openModel, parseMergekitYaml } from '../../src/index.js';
import { decode, rng, type T, tmpDir, writeModel } from './helpers.js';

const code = (e: unknown) => (isWgitError(e) ? e.code : String(e));

// mergekit's published TIES example (examples/ties.yml), model names kept.
export const PUBLISHED_TIES = `models:
  - model: psmathur/orca_mini_v3_13b
    parameters:
      density: [1, 0.7, 0.1] # density gradient
      weight: 1.0
  - model: garage-bAInd/Platypus2-13B
    parameters:
      density: 0.5
      weight: [0, 0.3, 0.7, 1] # weight gradient
  - model: WizardLM/WizardMath-13B-V1.0
    parameters:
      density: 0.33
      weight:
        - filter: mlp
          value: 0.5
        - value: 0
merge_method: ties
base_model: TheBloke/Llama-2-13B-fp16
parameters:
  normalize: true
  int8_mask: true
dtype: float16
`;

const L = 5;
// By hand, t = i/4: density [1, 0.7, 0.1] at 2t = 0, 0.5, 1, 1.5, 2 → 1, 0.85, 0.7, 0.4, 0.1; outside the
// layers 1. Written as mergekit's f64 sums (1 − f)·a + f·b: 0.5·0.7 + 0.5·0.1 is 0.39999999999999997, so
// layer 3 keeps ⌊0.4·20⌋ − 1 = 7 entries in mergekit, and must here too.
const DENSITY0 = [1, 0.5 * 1 + 0.5 * 0.7, 0.7, 0.5 * 0.7 + 0.5 * 0.1, 0.1];
// weight [0, 0.3, 0.7, 1] at 3t = 0, 0.75, 1.5, 2.25, 3 → 0, 0.225, 0.5, 0.775, 1; outside 0.
const WEIGHT1 = [0, 0.25 * 0 + 0.75 * 0.3, 0.5 * 0.3 + 0.5 * 0.7, 0.75 * 0.7 + 0.25 * 1, 1];

function names(): string[] {
  const out = ['model.embed_tokens.weight'];
  for (let l = 0; l < L; l++)
    out.push(`model.layers.${l}.self_attn.q_proj.weight`, `model.layers.${l}.mlp.up_proj.weight`);
  out.push('model.norm.weight');
  return out;
}

function model(r: () => number, scale: number, from?: T[]): T[] {
  return names().map((name, k) => ({
    name,
    dtype: 'F32',
    shape: [5, 4],
    values: Array.from({ length: 20 }, (_, j) => (from ? Number(from[k].values[j]) : 0) + r() * scale),
  }));
}

/** TIES with plain loops in f64: top-k by |τ| (first index wins ties), weighted sign election, disjoint mean. */
function tiesOracle(base: number[], fts: number[][], density: number[], weights: number[]): number[] {
  const n = base.length;
  const taus = fts.map((ft, i) => {
    const tau = ft.map((x, j) => x - base[j]);
    const k = Math.floor(density[i] * n);
    const order = tau.map((_, j) => j).sort((a, b) => Math.abs(tau[b]) - Math.abs(tau[a]) || a - b);
    const keep = new Set(order.slice(0, k));
    return tau.map((x, j) => (keep.has(j) ? x : 0));
  });
  return base.map((b, j) => {
    let s = 0;
    for (let i = 0; i < fts.length; i++) s += weights[i] * taus[i][j];
    const pos = s >= 0;
    let num = 0;
    let den = 0;
    for (let i = 0; i < fts.length; i++) {
      const wt = weights[i] * taus[i][j];
      if (pos ? wt > 0 : wt < 0) {
        num += wt;
        den += weights[i];
      }
    }
    return b + (Math.abs(den) < 1e-8 ? num : num / den);
  });
}

describe('gradients', () => {
  let dir: string;
  let base: T[];
  let fts: T[][];
  const paths: string[] = [];
  before(async () => {
    dir = tmpDir();
    const r = rng(11);
    base = model(r, 1);
    fts = [0, 1, 2].map(() => model(r, 0.1, base));
    paths.push(await writeModel(path.join(dir, 'base'), base));
    for (const [i, ft] of fts.entries()) paths.push(await writeModel(path.join(dir, `ft${i}`), ft));
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('parses the published TIES example unchanged', () => {
    const r = parseMergekitYaml(PUBLISHED_TIES);
    assert.equal(r.method, 'ties');
    assert.equal(r.base, 'TheBloke/Llama-2-13B-fp16');
    assert.equal(r.outDtype, 'F16');
    assert.deepEqual(r.params.density, [[1, 0.7, 0.1], 0.5, 0.33]);
    assert.deepEqual(r.params.weights, [1, [0, 0.3, 0.7, 1], [{ filter: 'mlp', value: 0.5 }, { value: 0 }]]);
    assert.equal(r.params.normalize, true);
    assert.ok(r.warnings.some((w) => /int8_mask/.test(w)));
  });

  it('merges it with per-layer density and weight as worked out by hand', async () => {
    const recipe = parseMergekitYaml(PUBLISHED_TIES.replace('dtype: float16', 'dtype: float32'));
    const models = await Promise.all(paths.map((p) => openModel(p)));
    const out = path.join(dir, 'out');
    try {
      await mergeModels({
        inputs: models.slice(1),
        base: models[0],
        method: recipe.method,
        params: recipe.params,
        outDir: out,
        outDtype: 'F32',
      });
    } finally {
      await Promise.all(models.map((m) => m.close()));
    }
    const merged = await openModel(out);
    try {
      for (const [k, name] of names().entries()) {
        const layer = /layers\.(\d+)\./.exec(name);
        const li = layer ? Number(layer[1]) : -1;
        const density = [li < 0 ? 1 : DENSITY0[li], 0.5, 0.33];
        const weights = [1, li < 0 ? 0 : WEIGHT1[li], name.includes('mlp') ? 0.5 : 0];
        const expect = tiesOracle(
          Array.from(base[k].values, Number),
          fts.map((f) => Array.from(f[k].values, Number)),
          density,
          weights,
        );
        const got = decode(await merged.readTensor(name), 'F32');
        for (let j = 0; j < expect.length; j++)
          assert.ok(Math.abs(got[j] - expect[j]) <= 1e-5 * (1 + Math.abs(expect[j])), `${name}[${j}]`);
      }
    } finally {
      await merged.close();
    }
  });

  it('interpolates a gradient at the tensor layer, 0 outside the layers, and "*" matches every tensor', () => {
    const x = [new Float32Array([2]), new Float32Array([4])];
    const lin = (name: string, w: unknown) =>
      mergeTensor('linear', { weights: [w as number, 1], normalize: false }, x, undefined, { name, layers: 5 })[0];
    // weight [0, 1] at t = 3/4: 0.75·2 + 4
    assert.equal(lin('model.layers.3.mlp.w', [0, 1]), 5.5);
    assert.equal(lin('model.embed_tokens.weight', [0.5, 1]), 5);
    assert.equal(
      lin('lm_head.weight', [
        { filter: 'mlp', value: 9 },
        { filter: '*', value: [1, 3] },
      ]),
      6,
    );
    assert.equal(lin('model.layers.4.mlp.w', [{ filter: 'mlp', value: [1, 3] }, { value: 0 }]), 10);
    // one layer: mergekit takes t = 1
    const one = mergeTensor('linear', { weights: [[0, 2], 1], normalize: false }, x, undefined, {
      name: 'model.layers.0.a',
      layers: 1,
    });
    assert.equal(one[0], 8);
  });

  it('checks every anchor of a gradient against the bounds', () => {
    assert.throws(
      () => mergeTensor('ties', { density: [[0.5, 1.5]] }, [new Float32Array(2)], new Float32Array(2)),
      (e) => code(e) === 'E_BAD_PARAM' && /density\[0\]\[1\]/.test((e as Error).message),
    );
    assert.throws(
      () => parseMergekitYaml('merge_method: ties\nbase_model: a\nmodels: [{model: b, parameters: {density: [0, 2]}}]'),
      (e) => code(e) === 'E_MERGEKIT_INVALID',
    );
  });
});
