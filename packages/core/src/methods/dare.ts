/** DARE (Yu et al. 2024): random drop with rescale, then task arithmetic or TIES sign election. */
import { makeSparseConsensusMethod } from './sparse-consensus.js';

const reference =
  'Yu et al. 2024, "Language models are Super Mario: absorbing abilities from homologous models as a free lunch"';

export const dareLinear = makeSparseConsensusMethod(
  'dare-linear',
  'drops task-vector entries at random (rescaling survivors), then adds them as in task arithmetic',
  reference,
  { sparsify: 'random', consensus: 'none', defaultNormalize: false },
  'dare_linear',
);

export const dareTies = makeSparseConsensusMethod(
  'dare-ties',
  'drops task-vector entries at random (rescaling survivors), then merges them with TIES sign election',
  reference,
  { sparsify: 'random', consensus: 'sum', defaultNormalize: false },
  'dare_ties',
);
