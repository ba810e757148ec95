/**
 * Registry entry of the reversible merge. Its plain checkout is the task
 * arithmetic merge with weights normalised by their sum (the mean of the task
 * updates by default); the basis and coefficients that make every input
 * recoverable are written by reversibleMerge (rmm.ts) as a group.
 */
import { WgitError } from '../errors.js';
import { defineMethod, lambdaParam, normalizeParam, rankParam, weightsParam } from './params.js';
import { sparseConsensusTensor } from './sparse-consensus.js';
import type { MergeMethod, SparseConsensusConfig, TensorParams } from './types.js';

export const RMM_MERGED_CONFIG: SparseConsensusConfig = { sparsify: 'none', consensus: 'none', defaultNormalize: true };
export const RMM_MAX_INPUTS = 16;

export const rmm: MergeMethod = defineMethod({
  name: 'rmm',
  description:
    'reversible merge: the task-arithmetic mean plus a per-tensor basis from which every input can be recovered',
  reference: 'after Alipour & Amiri 2025, "Towards reversible model merging for low-rank weights"',
  params: [
    weightsParam({ help: 'merged model: weights of the task updates (normalised by their sum)' }),
    lambdaParam({ help: 'merged model: scale of the merged update' }),
    normalizeParam({ default: true, help: 'merged model: divide by the sum of the weights' }),
    rankParam(),
  ],
  needsBase: true,
  minInputs: 1,
  config: RMM_MERGED_CONFIG,
  checkInputs(nInputs: number) {
    if (nInputs > RMM_MAX_INPUTS)
      throw new WgitError('E_BAD_PARAM', `rmm takes at most ${RMM_MAX_INPUTS} models, got ${nInputs}`, {
        param: 'inputs',
      });
  },
  build(tp: TensorParams) {
    return (inputs, base, ctx, out) => {
      if (!base) throw new WgitError('E_BASE_REQUIRED', 'rmm needs a base model', { method: 'rmm' });
      sparseConsensusTensor(RMM_MERGED_CONFIG, tp, inputs, base, ctx, out);
    };
  },
});
