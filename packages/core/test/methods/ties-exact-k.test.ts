// TIES keeps exactly k = ⌊density·N⌋ entries per task vector, also when many
// entries tie with the k-th largest |τ| (bf16 data): every entry above the
// threshold, then the ties by flat index (model-wide: tensor order, then flat
// index). Checked against a plain loop written here (a stable sort), on the
// plain path, the reference device and the WASM pool on 1 and 2 threads.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type Device, getDevice, mergeModels, openModel } from '../../src/index.js';
import { decode, readAll, type T, tmpDir, writeModel } from './helpers.js';

const fr = Math.fround;
const WEIGHTS = [1, 0.5];
const DENSITY = 0.3;

let dir: string;
let base: T[];
let fts: T[][];
let paths: { base: string; ft: string[] };

/** bf16-exact values 1 + d, d from a handful of steps: |τ| takes a few values, so ties are everywhere. */
function tieful(n: number, seed: number): number[] {
  const steps = [0, 1 / 16, -1 / 16, 1 / 8, -1 / 8, 1 / 4, -1 / 4, 1 / 2];
  let s = seed;
  return Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return 1 + steps[s >>> 29];
  });
}

before(async () => {
  dir = tmpDir();
  const shapes: [string, number][] = [
    ['a', 3000],
    ['b', 2500],
    ['c', 37],
  ];
  base = shapes.map(([name, n]) => ({ name, dtype: 'BF16', shape: [n], values: Array.from({ length: n }, () => 1) }));
  fts = [1, 2].map((seed) =>
    shapes.map(([name, n]) => ({ name, dtype: 'BF16', shape: [n], values: tieful(n, seed * 97 + n) })),
  );
  paths = {
    base: await writeModel(path.join(dir, 'base'), base),
    ft: await Promise.all(fts.map((t, i) => writeModel(path.join(dir, `ft${i}`), t))),
  };
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

let outN = 0;
async function merge(trim: 'tensor' | 'model', extra: object) {
  const ins = await Promise.all(paths.ft.map((p) => openModel(p)));
  const b = await openModel(paths.base);
  const o = path.join(dir, `out${outN++}`);
  try {
    await mergeModels({
      inputs: ins,
      base: b,
      method: 'ties',
      params: { weights: WEIGHTS, density: DENSITY, trim },
      outDir: o,
      outDtype: 'F32',
      ...extra,
    });
    return await readAll(o);
  } finally {
    await Promise.all([...ins, b].map((m) => m.close()));
  }
}

const tau = (model: T[], name: string) => {
  const x = model.find((t) => t.name === name)?.values as number[];
  const b = base.find((t) => t.name === name)?.values as number[];
  return Float32Array.from(x, (v, j) => fr(v - b[j]));
};

/** The kept mask of one task vector (or the concatenation of a model's): the top k by |τ|, ties by position. */
function topK(t: Float32Array, k: number): boolean[] {
  const order = [...t.keys()].filter((j) => t[j] !== 0).sort((p, q) => Math.abs(t[q]) - Math.abs(t[p]));
  const keep = Array.from(t, () => false);
  for (const j of order.slice(0, k)) keep[j] = true;
  return keep;
}

/** Plain TIES of one tensor from the kept masks (normalize on). */
function plainTies(name: string, kept: boolean[][]): Float32Array {
  const taus = fts.map((m) => tau(m, name));
  const n = taus[0].length;
  const w = WEIGHTS.map(fr);
  const out = new Float32Array(n);
  for (let j = 0; j < n; j++) {
    const wt = taus.map((t, i) => (kept[i][j] ? fr(w[i] * t[j]) : 0));
    let s = 0;
    for (const v of wt) s = fr(s + v);
    let num = 0;
    let den = 0;
    wt.forEach((v, i) => {
      if (s >= 0 ? v > 0 : v < 0) {
        num = fr(num + v);
        den = fr(den + w[i]);
      }
    });
    out[j] = fr(1 + (den === 0 ? num : fr(num / den)));
  }
  return out;
}

function expected(trim: 'tensor' | 'model'): Map<string, Float32Array> {
  const names = base.map((t) => t.name);
  const masks = new Map<string, boolean[][]>(names.map((nm) => [nm, []]));
  for (let i = 0; i < fts.length; i++) {
    if (trim === 'tensor') {
      for (const nm of names) {
        const t = tau(fts[i], nm);
        const keep = topK(t, Math.floor(DENSITY * t.length));
        assert.equal(keep.filter(Boolean).length, Math.floor(DENSITY * t.length));
        masks.get(nm)?.push(keep);
      }
    } else {
      const all = names.map((nm) => tau(fts[i], nm));
      const flat = Float32Array.from(all.flatMap((t) => [...t]));
      const keep = topK(flat, Math.floor(DENSITY * flat.length));
      let at = 0;
      for (const [x, nm] of names.entries()) {
        masks.get(nm)?.push(keep.slice(at, at + all[x].length));
        at += all[x].length;
      }
    }
  }
  return new Map(names.map((nm) => [nm, plainTies(nm, masks.get(nm) as boolean[][])]));
}

describe('TIES keeps exactly k under ties', () => {
  let pool2: Device;
  let pool1: Device;
  before(async () => {
    pool1 = await getDevice({ device: 'cpu', threads: 1 });
    pool2 = await getDevice({ device: 'cpu', threads: 2, parallelMin: 1024 });
  });
  after(async () => {
    await pool2.close();
  });
  for (const trim of ['tensor', 'model'] as const) {
    for (const [label, extra] of [
      ['plain path', () => ({ kernels: false, kernelMinElements: Number.POSITIVE_INFINITY })],
      ['reference device', () => ({ kernels: false, kernelMinElements: 0 })],
      ['WASM, 1 thread', () => ({ device: pool1, kernelMinElements: 0 })],
      ['WASM, 2 threads, split ranges', () => ({ device: pool2, kernelMinElements: 0 })],
    ] as const) {
      it(`trim ${trim}, ${label}: matches the plain top-k loop`, async () => {
        const want = expected(trim);
        const got = await merge(trim, extra());
        for (const [name, w] of want) {
          const g = decode(got.get(name)?.bytes as Uint8Array, 'F32');
          let diff = 0;
          for (let j = 0; j < w.length; j++) if (!Object.is(g[j], w[j])) diff++;
          assert.equal(diff, 0, `${name}: ${diff} of ${w.length} entries differ`);
        }
      });
    }
  }
});
