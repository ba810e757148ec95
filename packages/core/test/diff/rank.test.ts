// diff --rank: the energy rank of Δ against the rank computed here from a planted spectrum.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { referenceDevice } from '../../src/device/index.js';
import { energyRank } from '../../src/diff/rank.js';

/** k orthonormal columns of length m (Gram–Schmidt on seeded values), column-major. */
function orthonormal(m: number, k: number, seed: number): Float64Array[] {
  let s = seed;
  const rnd = () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
  const cols: Float64Array[] = [];
  while (cols.length < k) {
    const v = Float64Array.from({ length: m }, rnd);
    for (const c of cols) {
      let d = 0;
      for (let i = 0; i < m; i++) d += v[i] * c[i];
      for (let i = 0; i < m; i++) v[i] -= d * c[i];
    }
    const norm = Math.hypot(...v);
    for (let i = 0; i < m; i++) v[i] /= norm;
    cols.push(v);
  }
  return cols;
}

function planted(m: number, n: number, sigma: number[]): Float32Array {
  const u = orthonormal(m, sigma.length, 1);
  const v = orthonormal(n, sigma.length, 2);
  const a = new Float32Array(m * n);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let x = 0;
      for (let r = 0; r < sigma.length; r++) x += u[r][i] * sigma[r] * v[r][j];
      a[i * n + j] = x;
    }
  return a;
}

/** The smallest r with Σ_{≤r} σ² ≥ E·Σ σ², from the spectrum itself. */
function expectedRank(sigma: number[], e: number): number {
  const total = sigma.reduce((a, x) => a + x * x, 0);
  let acc = 0;
  for (let r = 0; r < sigma.length; r++) {
    acc += sigma[r] ** 2;
    if (acc >= e * total) return r + 1;
  }
  return sigma.length;
}

describe('energy rank of Δ', () => {
  const device = referenceDevice();
  for (const [label, m, n, sigma, e] of [
    ['a steep spectrum', 48, 40, [10, 4, 2, 1, 0.5, 0.25], 0.9],
    ['a flat spectrum past the first doubling', 60, 50, Array.from({ length: 30 }, (_, i) => 1 - i / 40), 0.9],
    ['a higher energy', 48, 40, [10, 4, 2, 1, 0.5, 0.25], 0.99],
  ] as const) {
    it(label, async () => {
      const a = planted(m, n, [...sigma]);
      let total = 0;
      for (const x of a) total += x * x;
      assert.equal(await energyRank(device, a, m, n, total, e, 0), expectedRank([...sigma], e));
    });
  }
  it('a zero Δ has rank 0', async () => {
    assert.equal(await energyRank(device, new Float32Array(12), 3, 4, 0, 0.9, 0), 0);
  });
});
