import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { dareHash, getDevice, referenceDevice } from '../src/device/index.js';
import {
  gaussianFill,
  householderQR,
  jacobiSVD,
  orthonormalize,
  randomizedSvd,
  rankForEnergy,
} from '../src/linalg/index.js';

/** Deterministic uniform numbers in [−1, 1) (an LCG, independent of the code under test). */
function rand(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return x / 2 ** 31 - 1;
  };
}

function randomMatrix(rows: number, cols: number, seed: number): Float32Array {
  const r = rand(seed);
  return Float32Array.from({ length: rows * cols }, r);
}

/** Plain triple loop in f64: C = A·B, A rows×inner, B inner×cols. */
function mul(a: ArrayLike<number>, b: ArrayLike<number>, rows: number, inner: number, cols: number): Float64Array {
  const c = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++)
    for (let j = 0; j < cols; j++) {
      let s = 0;
      for (let p = 0; p < inner; p++) s += a[i * inner + p] * b[p * cols + j];
      c[i * cols + j] = s;
    }
  return c;
}

function transpose(a: ArrayLike<number>, rows: number, cols: number): Float64Array {
  const t = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) t[j * rows + i] = a[i * cols + j];
  return t;
}

/**
 * Singular values of A (rows×cols) as the square roots of the eigenvalues
 * of AᵀA, by the classical two-sided Jacobi eigenvalue method: the oracle.
 */
function singularValues(a: ArrayLike<number>, rows: number, cols: number): number[] {
  const g = mul(transpose(a, rows, cols), a, cols, rows, cols);
  const n = cols;
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += g[p * n + q] ** 2;
    if (off < 1e-30) break;
    for (let p = 0; p < n; p++)
      for (let q = p + 1; q < n; q++) {
        const apq = g[p * n + q];
        if (Math.abs(apq) < 1e-300) continue;
        const theta = (g[q * n + q] - g[p * n + p]) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < n; k++) {
          const gkp = g[k * n + p];
          const gkq = g[k * n + q];
          g[k * n + p] = c * gkp - s * gkq;
          g[k * n + q] = s * gkp + c * gkq;
        }
        for (let k = 0; k < n; k++) {
          const gpk = g[p * n + k];
          const gqk = g[q * n + k];
          g[p * n + k] = c * gpk - s * gqk;
          g[q * n + k] = s * gpk + c * gqk;
        }
      }
  }
  return Array.from({ length: n }, (_, i) => Math.sqrt(Math.max(0, g[i * n + i]))).sort((x, y) => y - x);
}

function frob(a: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * a[i];
  return Math.sqrt(s);
}

/** ‖A − U·diag(s)·Vᵀ‖_F over the first r triplets. */
function residual(
  a: Float32Array,
  m: number,
  n: number,
  u: ArrayLike<number>,
  s: ArrayLike<number>,
  v: ArrayLike<number>,
  k: number,
  r: number,
): number {
  let e = 0;
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let x = 0;
      for (let t = 0; t < r; t++) x += u[i * k + t] * s[t] * v[j * k + t];
      e += (a[i * n + j] - x) ** 2;
    }
  return Math.sqrt(e);
}

const devices = [
  ['reference', async () => referenceDevice()],
  ['wasm', () => getDevice({ device: 'cpu', threads: 2, parallelMin: 1 })],
] as const;

describe('matmul kernel', () => {
  for (const [label, open] of devices)
    for (const [m, k, n] of [
      [1, 1, 1],
      [7, 300, 13],
      [64, 300, 100],
      [5, 600, 9],
      [130, 17, 520],
      // Rows shared by the workers in chunks of 128 (the last one short).
      [300, 40, 20],
    ])
      for (const [ta, tb] of [
        [false, false],
        [true, false],
        [false, true],
        [true, true],
      ])
        it(`${label}: ${m}×${k}×${n}${ta ? ' Aᵀ' : ''}${tb ? ' Bᵀ' : ''} agrees with a plain loop`, async () => {
          const device = await open();
          const a = randomMatrix(m, k, 1 + m);
          const b = randomMatrix(k, n, 2 + n);
          const aa = ta ? Float32Array.from(transpose(a, m, k)) : a;
          const bb = tb ? Float32Array.from(transpose(b, k, n)) : b;
          const out = new Float32Array(m * n).fill(Number.NaN);
          await device.matmul(aa, bb, out, m, k, n, ta, tb);
          const want = mul(a, b, m, k, n);
          for (let i = 0; i < want.length; i++)
            assert.ok(Math.abs(out[i] - want[i]) <= 1e-5 * Math.sqrt(k), `element ${i}: ${out[i]} vs ${want[i]}`);
        });

  it('refuses wrong lengths and an output overlapping an input', async () => {
    const device = await getDevice({ device: 'cpu', threads: 2, parallelMin: 1 });
    const a = new Float32Array(6);
    await assert.rejects(device.matmul(a, new Float32Array(6), new Float32Array(4), 2, 3, 3), {
      code: 'E_KERNEL_LENGTH',
    });
    await assert.rejects(device.matmul(a, new Float32Array(6), new Float32Array(4), 2, 0, 2), { code: 'E_KERNEL_ARG' });
    const big = new Float32Array(12);
    await assert.rejects(device.matmul(big.subarray(0, 4), big.subarray(4, 8), big.subarray(0, 4), 2, 2, 2), {
      code: 'E_KERNEL_ALIAS',
    });
  });
});

describe('orthonormal bases', () => {
  for (const route of ['householder', 'orthonormalize'] as const)
    it(`${route}: orthonormal Q, upper-triangular R, Q·R = Y, also for a rank-deficient Y`, async () => {
      const device = await getDevice({ device: 'cpu', threads: 2, parallelMin: 1 });
      for (const deficient of [false, true]) {
        const m = 50;
        const k = 8;
        const y = randomMatrix(m, k, 9);
        if (deficient)
          for (let i = 0; i < m; i++) {
            y[i * k + 3] = 2 * y[i * k + 1];
            y[i * k + 5] = 0;
          }
        const { q, r } = route === 'householder' ? householderQR(y, m, k) : await orthonormalize(device, y, m, k);
        const qtq = mul(transpose(q, m, k), q, k, m, k);
        for (let i = 0; i < k; i++)
          for (let j = 0; j < k; j++) assert.ok(Math.abs(qtq[i * k + j] - (i === j ? 1 : 0)) < 1e-5, `QᵀQ[${i},${j}]`);
        for (let i = 0; i < k; i++) for (let j = 0; j < i; j++) assert.equal(r[i * k + j], 0);
        const qr = mul(q, r, m, k, k);
        for (let i = 0; i < m * k; i++) assert.ok(Math.abs(qr[i] - y[i]) < 1e-5, `QR[${i}]`);
      }
    });
});

describe('small SVD (one-sided Jacobi)', () => {
  it('matches the singular values of the eigenvalue oracle and reconstructs A', () => {
    const m = 12;
    const n = 9;
    const a = Float64Array.from(randomMatrix(m, n, 4));
    const { u, s, v } = jacobiSVD(a, m, n);
    const want = singularValues(a, m, n);
    for (let i = 0; i < n; i++) assert.ok(Math.abs(s[i] - want[i]) < 1e-10 * want[0], `σ${i}: ${s[i]} vs ${want[i]}`);
    assert.ok(residual(Float32Array.from(a), m, n, u, s, v, n, n) < 1e-5);
  });
});

describe('randomized SVD', () => {
  for (const [label, open] of devices) {
    it(`${label}: recovers a planted rank-3 matrix exactly (to f32 rounding)`, async () => {
      const device = await open();
      const m = 60;
      const n = 40;
      const x = randomMatrix(m, 3, 5);
      const y = randomMatrix(3, n, 6);
      const a = Float32Array.from(mul(x, y, m, 3, n));
      const r = await randomizedSvd(device, a, m, n, { rank: 3, oversample: 5, powerIters: 1, seed: 7 });
      assert.equal(r.k, 8);
      assert.ok(r.s[3] < 1e-5 * r.s[0], `σ4 = ${r.s[3]} should vanish`);
      assert.ok(residual(a, m, n, r.u, r.s, r.v, r.k, 3) < 1e-5 * frob(a));
    });

    it(`${label}: top singular values and error match the full SVD oracle on a decaying spectrum`, async () => {
      const device = await open();
      const m = 70;
      const n = 50;
      // A = X·diag(0.7^i)·Y with random X, Y: a smoothly decaying spectrum.
      const x = randomMatrix(m, n, 11);
      const y = randomMatrix(n, n, 12);
      for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) x[i * n + j] *= 0.7 ** j;
      const a = Float32Array.from(mul(x, y, m, n, n));
      const want = singularValues(a, m, n);
      const rank = 8;
      const r = await randomizedSvd(device, a, m, n, { rank, seed: 3 });
      for (let i = 0; i < rank; i++)
        assert.ok(Math.abs(r.s[i] - want[i]) < 1e-4 * want[0], `σ${i}: ${r.s[i]} vs ${want[i]}`);
      const optimal = Math.sqrt(want.slice(rank).reduce((acc, s) => acc + s * s, 0));
      const err = residual(a, m, n, r.u, r.s, r.v, r.k, rank);
      assert.ok(err <= 1.01 * optimal, `error ${err} vs optimal ${optimal}`);
      // The same seed gives the same factors; another seed, other test vectors.
      const again = await randomizedSvd(device, a, m, n, { rank, seed: 3 });
      assert.deepEqual(again.u, r.u);
    });

    it(`${label}: works on a wide matrix and at full rank`, async () => {
      const device = await open();
      const m = 6;
      const n = 30;
      const a = randomMatrix(m, n, 21);
      const want = singularValues(transpose(a, m, n), n, m);
      const r = await randomizedSvd(device, a, m, n, { rank: 6 });
      assert.equal(r.k, 6);
      for (let i = 0; i < 6; i++) assert.ok(Math.abs(r.s[i] - want[i]) < 1e-5 * want[0]);
      assert.ok(residual(a, m, n, r.u, r.s, r.v, r.k, 6) < 1e-5 * frob(a));
      await assert.rejects(randomizedSvd(device, a, m, n, { rank: 7 }), RangeError);
    });
  }

  it('picks the smallest rank reaching an energy fraction', () => {
    const s = Float64Array.from([3, 2, 1, 0]);
    assert.equal(rankForEnergy(s, 14, 9 / 14), 1);
    assert.equal(rankForEnergy(s, 14, 0.9), 2);
    assert.equal(rankForEnergy(s, 14, 1), 3);
  });
});

describe('seeded Gaussian test vectors', () => {
  it('follow the Box–Muller definition over the DARE counter hash, with mean 0 and variance 1', () => {
    const x = new Float32Array(200001);
    gaussianFill(x, 5, 9);
    for (const t of [0, 17, 99999]) {
      const u1 = ((dareHash(5, 9, 2 * t) >>> 8) + 1) / 2 ** 24;
      const u2 = (dareHash(5, 9, 2 * t + 1) >>> 8) / 2 ** 24;
      const r = Math.sqrt(-2 * Math.log(u1));
      assert.equal(x[2 * t], Math.fround(r * Math.cos(2 * Math.PI * u2)));
      assert.equal(x[2 * t + 1], Math.fround(r * Math.sin(2 * Math.PI * u2)));
    }
    let s = 0;
    let s2 = 0;
    for (const v of x) {
      s += v;
      s2 += v * v;
    }
    assert.ok(Math.abs(s / x.length) < 0.01);
    assert.ok(Math.abs(s2 / x.length - 1) < 0.01);
    const y = new Float32Array(10);
    gaussianFill(y, 5, 10);
    assert.notEqual(y[0], x[0], 'another stream, other values');
  });
});
