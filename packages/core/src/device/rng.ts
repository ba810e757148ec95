/**
 * The counter-based random numbers behind DARE. A mask entry depends only on
 * (seed, stream, index), never on how the tensor was split into chunks or
 * threads, and uses 32-bit integer operations only so that a WGSL port gives
 * the same bits. This file is the definition; assembly/kernels.ts and
 * docs/kernels.md repeat it and must stay in step.
 *
 *   fmix32(h)   = MurmurHash3's finalizer:
 *                 h ^= h >>> 16; h *= 0x85ebca6b; h ^= h >>> 13; h *= 0xc2b2ae35; h ^= h >>> 16
 *   k1          = fmix32(fmix32(seed ^ 0x243f6a88) ^ stream ^ 0x85a308d3)
 *   k2          = fmix32(k1 ^ indexHi ^ 0x13198a2e)      indexHi = floor(index / 2^32)
 *   hash        = fmix32(fmix32(indexLo ^ k2) ^ k1)      indexLo = index mod 2^32
 *   u           = (hash >>> 8) / 2^24                    uniform on [0, 1) in steps of 2^-24
 *   keep        ⇔ u ≥ p                                  ⇔ (hash >>> 8) ≥ ceil(p · 2^24)
 *   kept value  = f32(x · f32(1 / (1 − p)))              dropped value = +0
 */

/** MurmurHash3 32-bit finalizer (a bijection on u32). */
export function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The per-(seed, stream, index high word) keys; k2 changes only every 2^32 elements. */
export function dareKeys(seed: number, stream: number, indexHi: number): { k1: number; k2: number } {
  const k1 = fmix32(fmix32((seed ^ 0x243f6a88) >>> 0) ^ stream ^ 0x85a308d3);
  const k2 = fmix32((k1 ^ indexHi ^ 0x13198a2e) >>> 0);
  return { k1, k2 };
}

/** hash(seed, stream, index) for an element index below 2^53. */
export function dareHash(seed: number, stream: number, index: number): number {
  const hi = Math.floor(index / 2 ** 32);
  const lo = index - hi * 2 ** 32;
  const { k1, k2 } = dareKeys(seed >>> 0, stream >>> 0, hi >>> 0);
  return fmix32((fmix32((lo ^ k2) >>> 0) ^ k1) >>> 0);
}

/** Integer form of "u ≥ p": an element is kept when (hash >>> 8) ≥ dareCut(p). */
export function dareCut(p: number): number {
  return Math.ceil(p * 2 ** 24);
}

/** The survivors' rescale factor 1/(1−p), computed in f64 and rounded once to f32. */
export function dareScale(p: number): number {
  return Math.fround(1 / (1 - p));
}

/**
 * A 32-bit stream id for one tensor of one input model: FNV-1a over the
 * UTF-8 bytes of the name, then mixed with the input index, so each
 * (tensor, model) pair gets its own independent mask.
 */
export function streamId(name: string, input: number): number {
  const bytes = new TextEncoder().encode(name);
  let h = 0x811c9dc5;
  for (const b of bytes) h = Math.imul(h ^ b, 0x01000193);
  return fmix32((h ^ Math.imul((input >>> 0) + 1, 0x9e3779b1)) >>> 0);
}
