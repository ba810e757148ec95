/**
 * SCE (Wan et al. 2024, FuseChat), mergekit's `sce`: select, calculate, erase.
 * With task vectors τᵢ = θᵢ − θ₀ (n of them), per tensor:
 *
 *   select:    where select_topk < 1, σ²ⱼ = the variance over i of τᵢⱼ (population);
 *              k = ⌊select_topk · #{j: σ²ⱼ ≠ 0}⌋ positions with the largest σ² are kept
 *              in every τᵢ (equal variances: the earlier index first), the rest zeroed
 *   calculate: cᵢ = mean_j τᵢⱼ² / Σₖ mean_j τₖⱼ² (each 1/n when that sum is below 1e-6)
 *   erase:     γⱼ = sign(Σᵢ τᵢⱼ) (0 counts as +); mᵢⱼ = [sign τᵢⱼ = γⱼ]
 *   θⱼ = θ₀ⱼ + Σᵢ cᵢ mᵢⱼ τᵢⱼ / max(Σᵢ cᵢ mᵢⱼ, 1e-6)
 *
 * Sums over i are in f32 in input order, the means and coefficients in f64.
 */
import { WgitError } from '../errors.js';
import { defineMethod, seedParam } from './params.js';
import type { MergeMethod, TensorParams } from './types.js';

const fr = Math.fround;

/** The positions select keeps: 1 kept, 0 zeroed. */
export function sceSelectMask(taus: Float32Array[], topk: number): Uint8Array {
  const len = taus[0].length;
  const n = taus.length;
  const mask = new Uint8Array(len);
  if (topk >= 1) return mask.fill(1);
  if (topk <= 0) return mask;
  const v = new Float64Array(len);
  let nonzero = 0;
  for (let j = 0; j < len; j++) {
    let mean = 0;
    for (let i = 0; i < n; i++) mean += taus[i][j];
    mean /= n;
    let s = 0;
    for (let i = 0; i < n; i++) s += (taus[i][j] - mean) ** 2;
    v[j] = s / n;
    if (v[j] !== 0) nonzero++;
  }
  const k = Math.floor(nonzero * topk);
  if (k === 0) return mask;
  const idx = Array.from({ length: len }, (_, j) => j);
  idx.sort((a, b) => v[b] - v[a] || a - b);
  for (let r = 0; r < k; r++) mask[idx[r]] = 1;
  return mask;
}

/** The calculate step: each task vector's share of the mean squared entries. */
export function sceCoefficients(taus: Float32Array[]): number[] {
  const w = taus.map((t) => {
    let s = 0;
    for (let j = 0; j < t.length; j++) s += t[j] * t[j];
    return t.length > 0 ? s / t.length : 0;
  });
  const sum = w.reduce((a, b) => a + b, 0);
  return Math.abs(sum) < 1e-6 ? w.map(() => 1 / w.length) : w.map((x) => x / sum);
}

function sceTensor(topk: number, inputs: Float32Array[], base: Float32Array, out: Float32Array): void {
  const len = base.length;
  const taus = inputs.map((x) => {
    const t = new Float32Array(len);
    for (let j = 0; j < len; j++) t[j] = fr(x[j] - base[j]);
    return t;
  });
  if (topk < 1) {
    const mask = sceSelectMask(taus, topk);
    for (const t of taus) for (let j = 0; j < len; j++) if (!mask[j]) t[j] = 0;
  }
  const c = sceCoefficients(taus).map(fr);
  for (let j = 0; j < len; j++) {
    let s = 0;
    for (const t of taus) s = fr(s + t[j]);
    const positive = s >= 0;
    let num = 0;
    let den = 0;
    for (let i = 0; i < taus.length; i++) {
      const t = taus[i][j];
      if (positive ? t > 0 : t < 0) {
        num = fr(num + fr(c[i] * t));
        den = fr(den + c[i]);
      }
    }
    out[j] = fr(base[j] + fr(num / Math.max(den, 1e-6)));
  }
}

export const sce: MergeMethod = defineMethod({
  name: 'sce',
  description:
    'keeps the positions where the fine-tunes disagree most, weights each by its energy, averages the entries that agree in sign',
  reference: 'Wan et al. 2024, "FuseChat: knowledge fusion of chat models" (SCE merging)',
  params: [
    {
      name: 'select_topk',
      type: 'number',
      scope: 'global',
      perTensor: true,
      min: 0,
      max: 1,
      default: 1,
      required: false,
      help: 'fraction of positions kept, those with the largest variance across the task vectors',
      cli: { flag: 'select-topk', description: 'sce: fraction of highest-variance positions kept' },
      mergekit: { key: 'select_topk', default: 1 },
    },
    seedParam({ help: 'recorded in the recipe; sce draws nothing at random' }),
  ],
  needsBase: true,
  minInputs: 1,
  mergekitName: 'sce',
  build(tp: TensorParams) {
    const topk = (tp.extra?.select_topk as number | undefined) ?? 1;
    return (inputs, base, _ctx, out) => {
      if (!base) throw new WgitError('E_BASE_REQUIRED', 'sce needs a base model', { method: 'sce' });
      sceTensor(topk, inputs, base, out);
    };
  },
});
