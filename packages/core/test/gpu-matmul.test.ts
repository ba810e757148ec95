// matmul on the GPU backend (lavapipe in CI) against plain f64 loops written here: every transpose
// combination, sizes that are not multiples of the 16-wide tile, and a slice small enough that the
// output is computed in several row and column blocks.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { gpuUnderTest } from './gpu-device.js';

function loops(a: Float32Array, b: Float32Array, m: number, k: number, n: number, ta: boolean, tb: boolean) {
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) s += (ta ? a[p * m + i] : a[i * k + p]) * (tb ? b[j * k + p] : b[p * n + j]);
      out[i * n + j] = s;
    }
  return out;
}

function values(n: number, seed: number): Float32Array {
  const x = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    x[i] = s / 2 ** 32 - 0.5;
  }
  return x;
}

describe('GPU matmul', () => {
  for (const [m, k, n] of [
    [1, 1, 1],
    [17, 33, 5],
    [64, 40, 70],
    [3, 200, 2],
  ])
    for (const ta of [false, true])
      for (const tb of [false, true])
        it(`${m}×${k}·${k}×${n}${ta ? ' Aᵀ' : ''}${tb ? ' Bᵀ' : ''}`, async (t) => {
          const dev = await gpuUnderTest(1024);
          if (!dev) return t.skip('no GPU adapter');
          const a = values(m * k, m + 7 * k);
          const b = values(k * n, n + 3 * k);
          const out = new Float32Array(m * n).fill(Number.NaN);
          await dev.matmul(a, b, out, m, k, n, ta, tb);
          const want = loops(a, b, m, k, n, ta, tb);
          // f32 accumulation of k products of |x| ≤ 0.5: each within k·2⁻²⁴·Σ|aᵢbᵢ| ≤ k²·2⁻²⁶.
          const tol = k * k * 2 ** -26 + 1e-7;
          for (let i = 0; i < out.length; i++)
            assert.ok(Math.abs(out[i] - want[i]) <= tol, `[${i}] ${out[i]} vs ${want[i]}`);
        });
});
