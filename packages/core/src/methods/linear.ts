/** Model soup (Wortsman et al. 2022): θ = Σ wᵢθᵢ / Σ wᵢ. */
import { WgitError } from '../errors.js';
import { defineMethod, normalizeParam, seedParam, weightsParam } from './params.js';
import type { MergeMethod, TensorParams } from './types.js';

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

export const linear: MergeMethod = defineMethod({
  name: 'linear',
  description: 'weighted average of the models (model soup); weights are divided by their sum',
  reference:
    'Wortsman et al. 2022, "Model soups: averaging weights of multiple fine-tuned models improves accuracy without increasing inference time"',
  params: [
    weightsParam({ help: 'per input model; default 1 each (uniform soup)' }),
    normalizeParam({
      default: true,
      help: 'divide by the sum of the weights',
      mergekit: { key: 'normalize', default: true },
    }),
    seedParam({ help: 'recorded in the recipe; linear draws nothing at random' }),
  ],
  needsBase: false,
  minInputs: 1,
  mergekitName: 'linear',
  build(tp: TensorParams) {
    linearCoefficients(tp.weights, tp.normalize);
    return (inputs, _base, _ctx, out) => linearTensor(tp, inputs, out);
  },
});
