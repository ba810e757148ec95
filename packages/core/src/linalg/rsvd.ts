/**
 * Randomized truncated SVD (Halko, Martinsson & Tropp 2011, algorithms 4.4
 * and 5.1): with k = rank + oversampling test vectors Ω (n×k, Gaussian,
 * seeded), Q = orth(A·Ω); each power iteration re-orthonormalises,
 * Q = orth(A·orth(Aᵀ·Q)); then Bᵀ = Aᵀ·Q (n×k) = Q₂·R by QR, R = U_R·Σ·V_Rᵀ
 * by one-sided Jacobi (orthonormalisation: orth.ts), and A ≈ (Q·V_R)·Σ·(Q₂·U_R)ᵀ. The large products run
 * on the device (`matmul`); QR and the small SVD run in f64 here.
 */
import type { Device } from '../device/index.js';
import { gaussianFill } from './gaussian.js';
import { jacobiSVD } from './jacobi.js';
import { orthonormalize } from './orth.js';

export interface RsvdOptions {
  /** Singular triplets wanted (1 ≤ rank ≤ min(m, n)). */
  rank: number;
  /** Extra test vectors beyond the rank (default 10). */
  oversample?: number;
  /** Power iterations (default 2). */
  powerIters?: number;
  seed?: number;
  /** Independent test matrices per stream (e.g. one per tensor). */
  stream?: number;
}

export interface Rsvd {
  /** Triplets computed: min(rank + oversample, m, n), of which the first `rank` are the answer. */
  k: number;
  /** m×k row-major, orthonormal columns. */
  u: Float32Array;
  /** k singular values, descending. */
  s: Float64Array;
  /** n×k row-major, orthonormal columns (a column for σ = 0 is zero). */
  v: Float32Array;
}

export const RSVD_DEFAULTS = { oversample: 10, powerIters: 2, seed: 0 } as const;

function toF32(x: Float64Array): Float32Array {
  return Float32Array.from(x);
}

/** Truncated SVD of a (m×n, row-major f32); `a` is best a buffer of `device` (no staging copy). */
export async function randomizedSvd(
  device: Device,
  a: Float32Array,
  m: number,
  n: number,
  opts: RsvdOptions,
): Promise<Rsvd> {
  const oversample = opts.oversample ?? RSVD_DEFAULTS.oversample;
  const powerIters = opts.powerIters ?? RSVD_DEFAULTS.powerIters;
  if (!Number.isInteger(opts.rank) || opts.rank < 1 || opts.rank > Math.min(m, n))
    throw new RangeError(`rank must be an integer from 1 to ${Math.min(m, n)}, got ${opts.rank}`);
  const k = Math.min(opts.rank + oversample, m, n);
  const buffers = [device.alloc('F32', n * k), device.alloc('F32', m * k), device.alloc('F32', n * k)];
  try {
    const [omega, y, z] = buffers.map((b) => device.hostView(b) as Float32Array);
    gaussianFill(omega, opts.seed ?? RSVD_DEFAULTS.seed, opts.stream ?? 0);
    await device.matmul(a, omega, y, m, n, k);
    let q = (await orthonormalize(device, y, m, k)).q;
    for (let it = 0; it < powerIters; it++) {
      await device.matmul(a, q, z, n, m, k, true);
      const qz = (await orthonormalize(device, z, n, k)).q;
      await device.matmul(a, qz, y, m, n, k);
      q = (await orthonormalize(device, y, m, k)).q;
    }
    await device.matmul(a, q, z, n, m, k, true);
    const { q: q2, r } = await orthonormalize(device, z, n, k);
    const small = jacobiSVD(r, k, k);
    const u = new Float32Array(m * k);
    const v = new Float32Array(n * k);
    await device.matmul(q, toF32(small.v), u, m, k, k);
    await device.matmul(q2, toF32(small.u), v, n, k, k);
    return { k, u, s: small.s, v };
  } finally {
    for (const b of buffers) device.free(b);
  }
}

/** The smallest r whose Σ_{i≤r} σᵢ² reaches `energy`·total (at most s.length). */
export function rankForEnergy(s: Float64Array, total: number, energy: number): number {
  let acc = 0;
  for (let i = 0; i < s.length; i++) {
    acc += s[i] * s[i];
    if (acc >= energy * total) return i + 1;
  }
  return s.length;
}
