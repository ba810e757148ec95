/**
 * Seeded standard normal numbers for randomized test matrices: element i of
 * stream s under seed x depends only on (x, s, i), from the same counter hash
 * as DARE (device/rng.ts) and the Box–Muller transform, so a result does not
 * depend on threads or on how a matrix is split.
 */
import { dareHash, dareKeys, fmix32 } from '../device/rng.js';

const TWO_PI = 2 * Math.PI;

/** Fills `out` with N(0, 1) values: pair (2t, 2t + 1) from two uniforms of index t. */
export function gaussianFill(out: Float32Array, seed: number, stream: number): void {
  // dareHash(seed, stream, i) for i < 2³², with the keys computed once.
  const { k1, k2 } = dareKeys(seed >>> 0, stream >>> 0, 0);
  const hash = (i: number) => (i < 2 ** 32 ? fmix32((fmix32((i ^ k2) >>> 0) ^ k1) >>> 0) : dareHash(seed, stream, i));
  for (let t = 0; 2 * t < out.length; t++) {
    // u1 in (0, 1] so the logarithm is finite; 24-bit uniforms.
    const u1 = ((hash(2 * t) >>> 8) + 1) / 2 ** 24;
    const u2 = (hash(2 * t + 1) >>> 8) / 2 ** 24;
    const r = Math.sqrt(-2 * Math.log(u1));
    out[2 * t] = r * Math.cos(TWO_PI * u2);
    if (2 * t + 1 < out.length) out[2 * t + 1] = r * Math.sin(TWO_PI * u2);
  }
}
