/**
 * Registry entry of the reversible merge. Its plain checkout is the task
 * arithmetic merge with weights normalised by their sum (the mean of the task
 * updates by default); the basis and coefficients that make every input
 * recoverable are written by reversibleMerge (rmm.ts) as a group.
 */
import { WgitError } from '../errors.js';
import { resolveCommon } from './params.js';
import { sparseConsensusTensor } from './sparse-consensus.js';
import type { MergeMethod, MergeParams, SparseConsensusConfig, TensorParams } from './types.js';

export const RMM_MERGED_CONFIG: SparseConsensusConfig = { sparsify: 'none', consensus: 'none', defaultNormalize: true };
export const RMM_MAX_INPUTS = 16;

export const rmm: MergeMethod = {
  name: 'rmm',
  description:
    'reversible merge: the task-arithmetic mean plus a per-tensor basis from which every input can be recovered',
  reference: 'after Alipour & Amiri 2025, "Towards reversible model merging for low-rank weights"',
  params: [
    {
      name: 'weights',
      type: 'number[]',
      default: 1,
      required: false,
      help: 'merged model: weights of the task updates (normalised by their sum)',
    },
    { name: 'lambda', type: 'number', default: 1, required: false, help: 'merged model: scale of the merged update' },
    {
      name: 'rank',
      type: 'integer',
      default: 'n',
      required: false,
      help: 'basis tensors kept per tensor, 1..n (n = exact recovery)',
    },
  ],
  needsBase: true,
  minInputs: 1,
  config: RMM_MERGED_CONFIG,
  resolve(p: MergeParams, nInputs: number) {
    if (nInputs > RMM_MAX_INPUTS)
      throw new WgitError('E_BAD_PARAM', `rmm takes at most ${RMM_MAX_INPUTS} models, got ${nInputs}`, {
        param: 'inputs',
      });
    for (const k of ['density', 'drop', 'seed', 'trim', 'lines'] as const) {
      if (p[k] !== undefined && p[k] !== null)
        throw new WgitError('E_BAD_PARAM', `rmm takes no ${k}`, { param: k, method: 'rmm' });
    }
    const r = resolveCommon(p, nInputs, true);
    r.density = r.density.map(() => 1);
    return r;
  },
  build(tp: TensorParams) {
    return (inputs, base, ctx, out) => {
      if (!base) throw new WgitError('E_BASE_REQUIRED', 'rmm needs a base model', { method: 'rmm' });
      sparseConsensusTensor(RMM_MERGED_CONFIG, tp, inputs, base, ctx, out);
    };
  },
};
