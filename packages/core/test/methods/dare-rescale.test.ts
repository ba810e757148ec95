// DARE's rescale option against plain computations written here: 'l1' scales
// each tensor's dropped task vector so Σ|τ'| equals Σ|τ| of the undropped one;
// 'inverse' (the default) multiplies survivors by 1/(1−p). Every path (plain,
// reference device, WASM pool) gives the same bytes.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isWgitError, type MergeParams, mergeModels, openModel } from '../../src/index.js';
import { dareKeeps, dareStream } from '../oracles.js';
import { decode, randomValues, readAll, rng, type T, tmpDir, writeModel } from './helpers.js';

const fr = Math.fround;

let dir: string;
let base: T[];
let ft: T[];
let paths: { base: string; ft: string };

before(async () => {
  dir = tmpDir();
  const r = rng(11);
  base = [
    { name: 'a', dtype: 'F32', shape: [30, 31], values: randomValues(930, r) },
    { name: 'b', dtype: 'F32', shape: [4099], values: randomValues(4099, r) },
  ];
  ft = base.map((t) => ({ ...t, values: Float32Array.from(t.values, (v) => v + r() * 0.1) }));
  paths = { base: await writeModel(path.join(dir, 'base'), base), ft: await writeModel(path.join(dir, 'ft'), ft) };
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

let outN = 0;
async function merge(method: string, params: MergeParams, extra: object = {}) {
  const ins = [await openModel(paths.ft)];
  const b = await openModel(paths.base);
  const o = path.join(dir, `out${outN++}`);
  try {
    const report = await mergeModels({ inputs: ins, base: b, method, params, outDir: o, ...extra });
    return { report, tensors: await readAll(o) };
  } finally {
    await Promise.all([...ins, b].map((m) => m.close()));
  }
}

const tauOf = (name: string) => {
  const b = base.find((t) => t.name === name)?.values as Float32Array;
  const x = ft.find((t) => t.name === name)?.values as Float32Array;
  return Float32Array.from(x, (v, j) => fr(v - fr(b[j])));
};
const l1 = (x: ArrayLike<number>) => {
  let s = 0;
  for (let j = 0; j < x.length; j++) s += Math.abs(x[j]);
  return s;
};

const paths3 = [
  ['plain path', { kernels: false, kernelMinElements: Number.POSITIVE_INFINITY }],
  ['reference device', { kernels: false, kernelMinElements: 0 }],
  ['WASM pool', { kernels: true, kernelMinElements: 0 }],
] as const;

describe('DARE rescale', () => {
  const seed = 5;
  const density = 0.3;
  for (const method of ['dare-linear', 'dare-ties']) {
    for (const [label, extra] of paths3) {
      it(`${method} rescale l1 on the ${label}: Σ|τ'| = Σ|τ| per tensor, survivors scaled alike`, async () => {
        const { report, tensors } = await merge(method, { density, seed, rescale: 'l1' }, extra);
        assert.equal((report.params as Record<string, unknown>).rescale, 'l1', 'recorded in the recipe');
        for (const name of ['a', 'b']) {
          const tau = tauOf(name);
          const b = base.find((t) => t.name === name)?.values as Float32Array;
          const out = decode(tensors.get(name)?.bytes as Uint8Array, 'F32');
          const got = Float32Array.from(out, (v, j) => v - fr(b[j]));
          // the mask written here from docs/kernels.md; the scale: Σ|τ| / Σ|kept τ|
          const keep = Array.from(tau, (_v, j) => dareKeeps(seed, dareStream(name, 0), j, 1 - density));
          const keptL1 = l1(tau.filter((_v, j) => keep[j]));
          const c = l1(tau) / keptL1;
          for (let j = 0; j < tau.length; j++) {
            const want = keep[j] ? tau[j] * c : 0;
            assert.ok(Math.abs(got[j] - want) <= 1e-5 * (Math.abs(want) + 1), `${name}[${j}]: ${got[j]} vs ${want}`);
          }
          const rel = Math.abs(l1(got) - l1(tau)) / l1(tau);
          assert.ok(rel < 1e-5, `${name}: Σ|τ'| ${l1(got)} vs Σ|τ| ${l1(tau)}`);
        }
      });
    }
  }

  it('the default is inverse (survivors × 1/(1−p)), recorded in the recipe', async () => {
    const { report, tensors } = await merge('dare-linear', { density, seed });
    assert.equal((report.params as Record<string, unknown>).rescale, 'inverse');
    const tau = tauOf('a');
    const b = base.find((t) => t.name === 'a')?.values as Float32Array;
    const out = decode(tensors.get('a')?.bytes as Uint8Array, 'F32');
    const s = fr(1 / density);
    let kept = 0;
    for (let j = 0; j < tau.length; j++) {
      const keep = dareKeeps(seed, dareStream('a', 0), j, 1 - density);
      if (keep) kept++;
      assert.equal(out[j], fr(fr(b[j]) + (keep ? fr(tau[j] * s) : 0)), `a[${j}]`);
    }
    // about density of the entries survive (6 standard deviations of a binomial proportion)
    const sd = Math.sqrt((density * (1 - density)) / tau.length);
    assert.ok(Math.abs(kept / tau.length - density) < 6 * sd, `kept ${kept} of ${tau.length}`);
  });

  it('every path gives the same bytes with rescale l1', async () => {
    const runs = [];
    for (const [, extra] of paths3) runs.push(await merge('dare-ties', { density, seed, rescale: 'l1' }, extra));
    for (const name of ['a', 'b']) {
      const want: Uint8Array | undefined = runs[0].tensors.get(name)?.bytes;
      for (const r of runs.slice(1)) assert.deepEqual(r.tensors.get(name)?.bytes, want, name);
    }
  });

  it('refuses another rescale value and takes it only for DARE', async () => {
    await assert.rejects(
      merge('dare-linear', { rescale: 'l2' as never }),
      (e) => isWgitError(e) && e.code === 'E_BAD_PARAM',
    );
    await assert.rejects(
      merge('ties', { rescale: 'l1' } as MergeParams),
      (e) => isWgitError(e) && e.code === 'E_BAD_PARAM',
    );
  });
});
