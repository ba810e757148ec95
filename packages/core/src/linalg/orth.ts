/**
 * Orthonormal bases of tall-skinny f32 matrices for the randomized SVD.
 * CholeskyQR2 first: R from the Cholesky factor of the Gram YᵀY (a device
 * matmul, factored in f64), Q = Y·R⁻¹ (a device matmul), done twice so Q is
 * orthonormal to f32 rounding (once when the first Q already is). When the Cholesky
 * factor breaks down or the result is not orthonormal (Y near rank
 * deficient: a planted low-rank Δ, a fast-decaying spectrum), it falls back
 * to Householder QR in f64, which handles any Y.
 */
import type { Device } from '../device/index.js';
import { householderQR, type QR } from './qr.js';

/** Largest |QᵀQ − I| entry accepted from CholeskyQR2. */
const ORTHO_TOL = 1e-4;
/** … and from its first pass alone (Y well conditioned: the second pass is skipped). */
const ONE_PASS_TOL = 2e-5;

/** Upper Cholesky factor of the symmetric k×k `g` (f32 sums, factored in f64); null when it breaks down. */
function cholesky(g: Float32Array, k: number): Float64Array | null {
  const r = new Float64Array(k * k);
  let maxPivot = 0;
  for (let j = 0; j < k; j++) {
    let s = g[j * k + j];
    for (let p = 0; p < j; p++) s -= r[p * k + j] * r[p * k + j];
    // A pivot lost to rounding means Y is too close to rank deficient for this route.
    if (!(s > 1e-10 * maxPivot) || !Number.isFinite(s)) return null;
    const d = Math.sqrt(s);
    maxPivot = Math.max(maxPivot, s);
    r[j * k + j] = d;
    for (let c = j + 1; c < k; c++) {
      let t = 0.5 * (g[j * k + c] + g[c * k + j]);
      for (let p = 0; p < j; p++) t -= r[p * k + j] * r[p * k + c];
      r[j * k + c] = t / d;
    }
  }
  return r;
}

/** Inverse of the upper-triangular k×k `r` (f64), rounded to f32. */
function upperInverse(r: Float64Array, k: number): Float32Array {
  const inv = new Float64Array(k * k);
  for (let j = 0; j < k; j++) {
    inv[j * k + j] = 1 / r[j * k + j];
    for (let i = j - 1; i >= 0; i--) {
      let s = 0;
      for (let p = i + 1; p <= j; p++) s += r[i * k + p] * inv[p * k + j];
      inv[i * k + j] = -s / r[i * k + i];
    }
  }
  return Float32Array.from(inv);
}

function upperProduct(a: Float64Array, b: Float64Array, k: number): Float64Array {
  const c = new Float64Array(k * k);
  for (let i = 0; i < k; i++)
    for (let j = i; j < k; j++) {
      let s = 0;
      for (let p = i; p <= j; p++) s += a[i * k + p] * b[p * k + j];
      c[i * k + j] = s;
    }
  return c;
}

/** Y (m×k, m ≥ k) = Q·R with Q orthonormal; CholeskyQR2 on the device, else Householder. */
export async function orthonormalize(device: Device, y: Float32Array, m: number, k: number): Promise<QR> {
  const g = new Float32Array(k * k);
  const q1 = new Float32Array(m * k);
  const q2 = new Float32Array(m * k);
  const offIdentity = () => {
    let worst = 0;
    for (let i = 0; i < k; i++)
      for (let j = 0; j < k; j++) worst = Math.max(worst, Math.abs(g[i * k + j] - (i === j ? 1 : 0)));
    return worst;
  };
  await device.matmul(y, y, g, k, m, k, true);
  const r1 = cholesky(g, k);
  if (r1) {
    await device.matmul(y, upperInverse(r1, k), q1, m, k, k);
    // The Gram of Q₁ checks the first pass and starts the second.
    await device.matmul(q1, q1, g, k, m, k, true);
    if (offIdentity() <= ONE_PASS_TOL) return { q: q1, r: r1 };
    const r2 = cholesky(g, k);
    if (r2) {
      await device.matmul(q1, upperInverse(r2, k), q2, m, k, k);
      await device.matmul(q2, q2, g, k, m, k, true);
      if (offIdentity() <= ORTHO_TOL) return { q: q2, r: upperProduct(r2, r1, k) };
    }
  }
  return householderQR(y, m, k);
}
