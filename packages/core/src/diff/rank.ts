/**
 * `wgit diff --rank`: the smallest rank r whose r largest singular values of
 * Δ = B − A hold a fraction E (default 0.9) of its energy ‖Δ‖²_F — how
 * low-rank a fine-tune's change to a matrix is (a LoRA of that rank would
 * keep that much of it). Randomized SVD (linalg/rsvd.ts) at a rank that
 * doubles from 16 until the energy is reached or the matrix is full.
 */
import type { Device } from '../device/index.js';
import { randomizedSvd } from '../linalg/index.js';

/** The energy rank of the m×n matrix `delta` (row-major f32) whose squared Frobenius norm is `total`. */
export async function energyRank(
  device: Device,
  delta: Float32Array,
  m: number,
  n: number,
  total: number,
  energy: number,
  stream: number,
): Promise<number> {
  const full = Math.min(m, n);
  if (!(total > 0) || full === 0) return 0;
  for (let want = Math.min(16, full); ; want = Math.min(2 * want, full)) {
    const svd = await randomizedSvd(device, delta, m, n, { rank: want, stream });
    let acc = 0;
    for (let r = 0; r < want; r++) {
      acc += svd.s[r] * svd.s[r];
      if (acc >= energy * total) return r + 1;
    }
    if (want === full) return full;
  }
}
