/**
 * slerp: spherical interpolation between two models, per tensor (mergekit's
 * most used recipe). v0, v1 the two tensors flattened (v0 the first input,
 * mergekit's `base_model`), n0, n1 their unit vectors (a vector of norm ≤ 1e-8
 * is left as it is), d = ⟨n0, n1⟩:
 *   |d| > 0.9995: (1 − t)·v0 + t·v1
 *   else θ = arccos d:  sin((1 − t)θ)/sin θ · v0 + sin(tθ)/sin θ · v1
 * t = 0 gives the first model; `t` may vary per tensor and by layer (gradients).
 */
import { defineGramMethod } from './gram.js';
import { seedParam } from './params.js';
import type { MergeMethod, ParamDecl } from './types.js';

export const SLERP_DOT_THRESHOLD = 0.9995;
export const SLERP_EPS = 1e-8;

export function tParam(o: Partial<ParamDecl> = {}): ParamDecl {
  return {
    name: 't',
    type: 'number',
    scope: 'global',
    perTensor: true,
    default: null,
    required: true,
    help: 'interpolation factor: 0 gives the first model, 1 the second; per tensor and by layer',
    cli: {
      flag: 't',
      description: 'slerp: interpolation factor (0: first model, 1: second); gradients and filters allowed',
    },
    mergekit: { key: 't' },
    ...o,
  };
}

/** slerp coefficients on (v0, v1) from ⟨v0,v0⟩, ⟨v1,v1⟩, ⟨v0,v1⟩, in f64. */
export function slerpCoefficients(a: number, b: number, c: number, t: number): [number, number] {
  const n0 = Math.sqrt(a);
  const n1 = Math.sqrt(b);
  const k0 = n0 > SLERP_EPS ? 1 / n0 : 1;
  const k1 = n1 > SLERP_EPS ? 1 / n1 : 1;
  const dot = c * k0 * k1;
  if (Math.abs(dot) > SLERP_DOT_THRESHOLD) return [1 - t, t];
  const theta = Math.acos(dot);
  const s = Math.sin(theta);
  return [Math.sin(theta - theta * t) / s, Math.sin(theta * t) / s];
}

export const slerp: MergeMethod = defineGramMethod({
  name: 'slerp',
  description: 'spherical interpolation between two models, per tensor, by t (0: the first model)',
  reference: 'Shoemake 1985, "Animating rotation with quaternion curves"; mergekit\'s slerp',
  params: [tParam(), seedParam({ help: 'recorded in the recipe; slerp draws nothing at random' })],
  needsBase: false,
  mergekitBaseIsInput: true,
  minInputs: 2,
  maxInputs: 2,
  mergekitName: 'slerp',
  coefficients(g, tp) {
    return slerpCoefficients(g[0][0], g[1][1], g[0][1], tp.extra?.t as number);
  },
});
