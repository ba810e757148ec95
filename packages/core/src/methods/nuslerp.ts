/**
 * nuslerp: slerp by weights. t = w₁/(w₀ + w₁) (0.5 when |w₀ + w₁| < 1e-6).
 * Without a base it interpolates the two models; with one, their task vectors
 * τᵢ = θᵢ − θ₀, and adds θ₀. Each vector is normalized by max(‖v‖, 1e-7);
 * cos θ = ⟨u₀, u₁⟩ clamped to [−1, 1]; where |sin θ| < 1e-8 the result is
 * (1 − t)·v₀ + t·v₁, else (sin((1 − t)θ)·v₀ + sin(tθ)·v₁)/sin θ. The whole
 * tensor is one vector (mergekit's `nuslerp_flatten`, its default).
 */
import { defineGramMethod, taskGram } from './gram.js';
import { seedParam, weightsParam } from './params.js';
import type { MergeMethod } from './types.js';

/** Coefficients on (v0, v1) from their Gram entries, mergekit's nuslerp in f64. */
export function nuslerpCoefficients(a: number, b: number, c: number, t: number): [number, number] {
  const n0 = Math.max(Math.sqrt(a), 1e-7);
  const n1 = Math.max(Math.sqrt(b), 1e-7);
  const cos = Math.min(1, Math.max(-1, c / (n0 * n1)));
  const theta = Math.acos(cos);
  const s = Math.sin(theta);
  if (Math.abs(s) < 1e-8) return [1 - t, t];
  return [Math.sin((1 - t) * theta) / s, Math.sin(t * theta) / s];
}

export function nuslerpT(w: number[]): number {
  const sum = w[0] + w[1];
  return Math.abs(sum) < 1e-6 ? 0.5 : w[1] / sum;
}

export const nuslerp: MergeMethod = defineGramMethod({
  name: 'nuslerp',
  description: 'slerp of two models (or of their task vectors, with a base) at t = w₁/(w₀ + w₁)',
  reference: "mergekit's nuslerp",
  params: [
    weightsParam({ help: 'per input; t = w₁/(w₀ + w₁)', mergekit: { key: 'weight' } }),
    seedParam({ help: 'recorded in the recipe; nuslerp draws nothing at random' }),
  ],
  needsBase: false,
  optionalBase: true,
  minInputs: 2,
  maxInputs: 2,
  mergekitName: 'nuslerp',
  // row-wise interpolation is not supported: mergekit's defaults only
  mergekitFixed: { nuslerp_row_wise: false, nuslerp_flatten: true },
  coefficients(g, tp) {
    const t = nuslerpT(tp.weights);
    if (g.length === 2) return nuslerpCoefficients(g[0][0], g[1][1], g[0][1], t);
    const tg = taskGram(g);
    const [c0, c1] = nuslerpCoefficients(tg[0][0], tg[1][1], tg[0][1], t);
    return [c0, c1, 1 - c0 - c1];
  },
});
