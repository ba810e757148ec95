/** Model soup (Wortsman et al. 2022): θ = Σ wᵢθᵢ / Σ wᵢ. */
import { WgitError } from '../errors.js';
import { resolveCommon } from './params.js';
import type { MergeMethod, MergeParams, TensorParams } from './types.js';

const fr = Math.fround;

/** The f32 coefficients each input is multiplied by (normalised by the weight sum unless normalize is off). */
export function linearCoefficients(weights: number[], normalize: boolean): number[] {
  let sum = 0;
  for (const w of weights) sum += w;
  if (!normalize) return weights.map(fr);
  if (Math.abs(sum) < 1e-12)
    throw new WgitError('E_BAD_PARAM', 'linear: the weights sum to zero', { param: 'weights', weights });
  return weights.map((w) => fr(w / sum));
}

export function linearTensor(p: TensorParams, inputs: Float32Array[], out: Float32Array): void {
  const c = linearCoefficients(p.weights, p.normalize);
  for (let j = 0; j < out.length; j++) {
    let s = 0;
    for (let i = 0; i < inputs.length; i++) s = fr(s + fr(c[i] * inputs[i][j]));
    out[j] = s;
  }
}

export const linear: MergeMethod = {
  name: 'linear',
  description: 'weighted average of the models (model soup); weights are divided by their sum',
  reference:
    'Wortsman et al. 2022, "Model soups: averaging weights of multiple fine-tuned models improves accuracy without increasing inference time"',
  params: [
    {
      name: 'weights',
      type: 'number[]',
      default: 1,
      required: false,
      help: 'per input model; default 1 each (uniform soup)',
    },
    { name: 'normalize', type: 'boolean', default: true, required: false, help: 'divide by the sum of the weights' },
  ],
  needsBase: false,
  minInputs: 1,
  resolve(p: MergeParams, nInputs: number) {
    for (const k of ['lambda', 'density', 'drop', 'trim', 'rank', 'lines'] as const) {
      if (p[k] !== undefined && p[k] !== null)
        throw new WgitError('E_BAD_PARAM', `linear takes no ${k}`, { param: k, method: 'linear' });
    }
    const r = resolveCommon(p, nInputs, true);
    r.density = r.density.map(() => 1);
    return r;
  },
  build(tp: TensorParams) {
    linearCoefficients(tp.weights, tp.normalize);
    return (inputs, _base, _ctx, out) => linearTensor(tp, inputs, out);
  },
};
