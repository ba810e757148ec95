/**
 * The general sparsify + consensus method (mergekit's "generalized task
 * arithmetic"). Task arithmetic, TIES, DARE-linear and DARE-TIES are
 * configurations of this one function, not copies of it:
 *
 *   τᵢ = θᵢ − θ₀
 *   τ̂ᵢ = sparsify(τᵢ)          none | magnitude (top-k by |τ|) | random (DARE drop + rescale)
 *   consensus none:  τ = Σ wᵢ τ̂ᵢ,                        divisor Σ wᵢ
 *   consensus sum:   γ = sign(Σ wᵢ τ̂ᵢ) (0 counts as +),
 *                    τ = Σ_{τ̂ᵢ≠0, sign τ̂ᵢ = γ} wᵢ τ̂ᵢ,    divisor Σ of the same wᵢ
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

/** Trims a task vector in place to the entries with |τ| ≥ threshold. */
export function trimInPlace(tau: Float32Array, threshold: number): void {
  if (threshold <= 0) return;
  for (let j = 0; j < tau.length; j++) if (!(Math.abs(tau[j]) >= threshold)) tau[j] = 0;
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
    for (let i = 0; i < n; i++) {
      const t = taus[i][j];
      if (positive ? t > 0 : t < 0) {
        num = fr(num + fr(w[i] * t));
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
    for (let i = 0; i < taus.length; i++) trimInPlace(taus[i], thr[i]);
  } else if (config.sparsify === 'random') {
    for (let i = 0; i < taus.length; i++) dareInPlace(taus[i], p.density[i], p.seed, streamId(ctx.name, i));
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
  if (config.sparsify === 'random') params.push(dropParam());
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
