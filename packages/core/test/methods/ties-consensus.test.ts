// TIES sign consensus against plain loops written here: agreement compares the
// sign of each weighted entry wᵢτᵢ with the elected sign (a negative weight
// flips an input's vote, as in mergekit), on the plain path, the reference
// device and the WASM pool alike.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type MergeParams, mergeModels, openModel } from '../../src/index.js';
import { decode, randomValues, readAll, rng, type T, tmpDir, writeModel } from './helpers.js';

const fr = Math.fround;

let dir: string;
let base: T[];
let fts: T[][];
let paths: { base: string; ft: string[] };

before(async () => {
  dir = tmpDir();
  const r = rng(7);
  base = [
    { name: 'a', dtype: 'F32', shape: [40, 25], values: randomValues(1000, r) },
    { name: 'b', dtype: 'F32', shape: [4099], values: randomValues(4099, r) },
  ];
  fts = [0, 1].map(() => base.map((t) => ({ ...t, values: Float32Array.from(t.values, (v) => v + r() * 0.1) })));
  paths = {
    base: await writeModel(path.join(dir, 'base'), base),
    ft: await Promise.all(fts.map((t, i) => writeModel(path.join(dir, `ft${i}`), t))),
  };
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

let outN = 0;
async function merge(params: MergeParams, extra: object = {}) {
  const ins = await Promise.all(paths.ft.map((p) => openModel(p)));
  const b = await openModel(paths.base);
  const o = path.join(dir, `out${outN++}`);
  try {
    await mergeModels({ inputs: ins, base: b, method: 'ties', params, outDir: o, ...extra });
    return await readAll(o);
  } finally {
    await Promise.all([...ins, b].map((m) => m.close()));
  }
}

/** Plain TIES over one tensor: per-input top-k by |τ| (k = ⌊density·N⌋, no ties in this data), weighted election, disjoint mean. */
function plainTies(name: string, weights: number[], density: number, lambda: number): Float32Array {
  const b = Float32Array.from(base.find((t) => t.name === name)?.values as Float32Array);
  const taus = fts.map((m) => {
    const x = Float32Array.from(m.find((t) => t.name === name)?.values as Float32Array);
    return Float32Array.from(x, (v, j) => fr(v - b[j]));
  });
  const n = b.length;
  const kept = taus.map((t) => {
    if (density >= 1) return t;
    const k = Math.floor(density * n);
    const order = [...t.keys()].sort((p, q) => Math.abs(t[q]) - Math.abs(t[p]));
    const out = new Float32Array(n);
    for (const j of order.slice(0, k)) out[j] = t[j];
    return out;
  });
  const w = weights.map(fr);
  const out = new Float32Array(n);
  for (let j = 0; j < n; j++) {
    let s = 0;
    for (let i = 0; i < w.length; i++) s = fr(s + fr(w[i] * kept[i][j]));
    const gamma = s >= 0 ? 1 : -1;
    let num = 0;
    let den = 0;
    for (let i = 0; i < w.length; i++) {
      const wt = fr(w[i] * kept[i][j]);
      if (Math.sign(wt) === gamma) {
        num = fr(num + wt);
        den = fr(den + w[i]);
      }
    }
    const merged = den === 0 ? num : fr(num / den);
    out[j] = fr(b[j] + fr(fr(lambda) * merged));
  }
  return out;
}

describe('TIES with a negative weight', () => {
  for (const density of [1, 0.5]) {
    for (const [label, extra] of [
      ['plain path', { kernels: false, kernelMinElements: Number.POSITIVE_INFINITY }],
      ['reference device', { kernels: false, kernelMinElements: 0 }],
      ['WASM pool', { kernels: true, kernelMinElements: 0 }],
    ] as const) {
      it(`weights [1, -0.5], density ${density}: ${label} matches the plain loop`, async () => {
        const got = await merge({ weights: [1, -0.5], density }, extra);
        for (const name of ['a', 'b']) {
          const want = plainTies(name, [1, -0.5], density, 1);
          const g = decode(got.get(name)?.bytes as Uint8Array, 'F32');
          let diff = 0;
          for (let j = 0; j < want.length; j++) if (!Object.is(g[j], want[j])) diff++;
          assert.equal(diff, 0, `${name}: ${diff} of ${want.length} entries differ`);
        }
      });
    }
  }
});
