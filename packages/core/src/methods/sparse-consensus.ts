/**
 * The general sparsify + consensus method (mergekit's "generalized task
 * arithmetic"). Task arithmetic, TIES, DARE-linear and DARE-TIES are
 * configurations of this one function, not copies of it:
 *
 *   τᵢ = θᵢ − θ₀
 *   τ̂ᵢ = sparsify(τᵢ)          none | magnitude (top-k by |τ|) | random (DARE drop + rescale)
 *   consensus none:  τ = Σ wᵢ τ̂ᵢ,                        divisor Σ wᵢ
 *   consensus sum:   γ = sign(Σ wᵢ τ̂ᵢ) (0 counts as +),
 *                    τ = Σ_{wᵢτ̂ᵢ≠0, sign wᵢτ̂ᵢ = γ} wᵢ τ̂ᵢ,  divisor Σ of the same wᵢ
 *   normalize:       τ /= divisor (a zero divisor counts as 1)
 *   θ = θ₀ + λ τ
 */

import { dareCut, dareHash, dareScale, streamId } from '../device/rng.js';
import { WgitError } from '../errors.js';
import {
  defineMethod,
  densityParam,
  dropParam,
  lambdaParam,
  linesParam,
  normalizeParam,
  rescaleParam,
  seedParam,
  trimParam,
  weightsParam,
} from './params.js';
import { keepCount, kthLargestAbs } from './select.js';
import type { MergeMethod, ParamDecl, SparseConsensusConfig, TensorContext, TensorParams } from './types.js';

const fr = Math.fround;

/** Per-input magnitude thresholds for one tensor's task vectors. */
export function magnitudeThresholds(taus: Float32Array[], density: number[]): number[] {
  return taus.map((t, i) => {
    if (density[i] >= 1) return 0;
    return kthLargestAbs([t], keepCount(density[i], t.length));
  });
}

/**
 * DARE on one task vector, in place: drop each entry with probability
 * p = 1 − density, scale survivors by 1/(1 − p) in f32. The draw for entry j
 * depends only on (seed, tensor name, input index, j), so chunked, threaded
 * and GPU runs draw the same mask.
 */
export function dareInPlace(tau: Float32Array, density: number, seed: number, stream: number, offset = 0): void {
  const p = 1 - density;
  if (p <= 0) return;
  const scale = dareScale(p);
  const cut = dareCut(p);
  for (let j = 0; j < tau.length; j++) {
    tau[j] = dareHash(seed, stream, offset + j) >>> 8 >= cut ? fr(tau[j] * scale) : 0;
  }
}

/**
 * Σ|x| in f64 in element order, NaN entries skipped (they are never ranked or
 * measured; a surviving NaN stays NaN).
 */
export function l1Norm(x: Float32Array): number {
  let s = 0;
  for (let j = 0; j < x.length; j++) {
    if (!Number.isNaN(x[j])) s += Math.abs(x[j]);
  }
  return s;
}

/**
 * DARE's L1 rescale, in place, after the drop: multiplies the survivors by
 * r = f32(before / Σ|τ̂|), so Σ|τ'| equals `before`, Σ|τ| of the undropped
 * task vector (the 1/(1−p) factor the drop applied cancels in r). A zero or
 * non-finite sum on either side leaves the task vector as the drop left it.
 */
export function l1RescaleInPlace(tau: Float32Array, before: number): void {
  const after = l1Norm(tau);
  if (!(after > 0 && before > 0 && Number.isFinite(after) && Number.isFinite(before))) return;
  const r = fr(before / after);
  for (let j = 0; j < tau.length; j++) tau[j] = fr(tau[j] * r);
}

/** DARE's rescale of the survivors: 'inverse' (× 1/(1−p)) or 'l1' (keep Σ|τ| per tensor). */
export function dareRescale(p: TensorParams): 'inverse' | 'l1' {
  return p.extra?.rescale === 'l1' ? 'l1' : 'inverse';
}

/**
 * Per-input tie quotas that make a per-tensor trim keep exactly
 * k = ⌊density·N⌋ entries: k − #{|τ| > threshold} of the entries equal to the
 * threshold; -1 (every tie) where the threshold is 0 (nothing to break).
 */
export function magnitudeTieQuotas(taus: Float32Array[], density: number[], thresholds: number[]): number[] {
  return taus.map((t, i) => {
    const thr = fr(thresholds[i]);
    if (!(thr > 0)) return -1;
    let above = 0;
    for (let j = 0; j < t.length; j++) if (Math.abs(t[j]) > thr) above++;
    return Math.max(0, keepCount(density[i], t.length) - above);
  });
}

/**
 * Trims a task vector in place to the entries with |τ| ≥ threshold; with a
 * quota ≥ 0 only the first `quota` entries equal to the threshold (by index)
 * survive, so exactly k do.
 */
export function trimInPlace(tau: Float32Array, threshold: number, quota = -1): void {
  if (threshold <= 0) return;
  const thr = fr(threshold);
  let left = quota;
  for (let j = 0; j < tau.length; j++) {
    const a = Math.abs(tau[j]);
    if (!(a >= thr)) tau[j] = 0;
    else if (a === thr && left >= 0) {
      if (left > 0) left--;
      else tau[j] = 0;
    }
  }
}

/**
 * Combines sparsified task vectors into the merged task vector (no λ, no base).
 * Accumulation is in f32 in input order, the same operations in the same
 * order as the WASM kernels (weightedSum, ties), so both paths give the same bits.
 */
export function combine(
  config: SparseConsensusConfig,
  taus: Float32Array[],
  weights: number[],
  normalize: boolean,
  out: Float32Array,
): void {
  const n = taus.length;
  const w = weights.map(fr);
  if (config.consensus === 'none') {
    const c = combineCoefficients(weights, normalize);
    for (let j = 0; j < out.length; j++) {
      let s = 0;
      for (let i = 0; i < n; i++) s = fr(s + fr(c[i] * taus[i][j]));
      out[j] = s;
    }
    return;
  }
  for (let j = 0; j < out.length; j++) {
    let s = 0;
    // A NaN entry counts as 0: it never votes and never joins the mean (NaN policy, docs/kernels.md).
    for (let i = 0; i < n; i++) {
      const t = taus[i][j];
      if (!Number.isNaN(t)) s = fr(s + fr(w[i] * t));
    }
    const positive = s >= 0;
    let num = 0;
    let den = 0;
    let any = false;
    // an input agrees where its weighted entry wᵢτ̂ᵢ has the elected sign (a negative weight flips its vote)
    for (let i = 0; i < n; i++) {
      const wt = fr(w[i] * taus[i][j]);
      if (positive ? wt > 0 : wt < 0) {
        num = fr(num + wt);
        den = fr(den + w[i]);
        any = true;
      }
    }
    // a zero divisor (weights cancelling) counts as 1, as in mergekit
    out[j] = !any ? 0 : normalize && den !== 0 ? fr(num / den) : num;
  }
}

/** f32 coefficients of the weighted sum without consensus: wᵢ, or wᵢ/Σw when normalizing (a near-zero sum counts as 1). */
export function combineCoefficients(weights: number[], normalize: boolean): number[] {
  let div = 0;
  for (const x of weights) div += x;
  return normalize && Math.abs(div) >= 1e-8 ? weights.map((x) => fr(x / div)) : weights.map(fr);
}

/** Plain (reference) per-tensor merge; `taus` scratch may be passed to avoid allocation. */
export function sparseConsensusTensor(
  config: SparseConsensusConfig,
  p: TensorParams,
  inputs: Float32Array[],
  base: Float32Array,
  ctx: TensorContext,
  out: Float32Array,
  scratch?: Float32Array[],
): void {
  const len = base.length;
  const taus = inputs.map((x, i) => {
    const t = scratch?.[i]?.length === len ? scratch[i] : new Float32Array(len);
    for (let j = 0; j < len; j++) t[j] = fr(x[j] - base[j]);
    return t;
  });
  if (config.sparsify === 'magnitude') {
    const thr = ctx.thresholds ?? magnitudeThresholds(taus, p.density);
    const quotas = ctx.thresholds ? ctx.tieQuotas : magnitudeTieQuotas(taus, p.density, thr);
    for (let i = 0; i < taus.length; i++) trimInPlace(taus[i], thr[i], quotas?.[i] ?? -1);
  } else if (config.sparsify === 'random') {
    const l1 = dareRescale(p) === 'l1';
    for (let i = 0; i < taus.length; i++) {
      if (l1 && p.density[i] >= 1) continue;
      const before = l1 ? l1Norm(taus[i]) : 0;
      dareInPlace(taus[i], p.density[i], p.seed, streamId(ctx.name, i));
      if (l1) l1RescaleInPlace(taus[i], before);
    }
  }
  combine(config, taus, p.weights, p.normalize, out);
  const lambda = fr(p.lambda);
  for (let j = 0; j < len; j++) out[j] = fr(base[j] + fr(lambda * out[j]));
}

/**
 * A configured instance of the general method. Its parameters follow from the
 * configuration: density only where something is sparsified, drop and its
 * seed only for the random drop, the trimming scope only for magnitude.
 */
export function makeSparseConsensusMethod(
  name: string,
  description: string,
  reference: string,
  config: SparseConsensusConfig,
  mergekitName?: string,
): MergeMethod {
  const params: ParamDecl[] = [weightsParam(), lambdaParam()];
  if (config.sparsify !== 'none') {
    params.push(
      densityParam({
        help:
          config.sparsify === 'magnitude'
            ? 'fraction of each task vector kept (largest |τ|)'
            : 'keep probability (1 − drop)',
      }),
    );
  }
  if (config.sparsify === 'random') params.push(dropParam(), rescaleParam());
  params.push(seedParam(config.sparsify === 'random' ? { help: 'seed of the drop masks' } : {}));
  if (config.sparsify === 'magnitude') params.push(trimParam());
  params.push(normalizeParam({ default: config.defaultNormalize }));
  params.push(linesParam());
  return defineMethod({
    name,
    description,
    reference,
    params,
    needsBase: true,
    minInputs: 1,
    mergekitName,
    config,
    build(tp: TensorParams) {
      return (inputs, base, ctx, out) => {
        if (!base) throw new WgitError('E_BASE_REQUIRED', `${name} needs a base model`, { method: name });
        sparseConsensusTensor(config, tp, inputs, base, ctx, out);
      };
    },
  });
}
