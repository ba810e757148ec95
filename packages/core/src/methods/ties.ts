/** TIES (Yadav et al. 2023): magnitude trim, sign election, disjoint mean. */
import { makeSparseConsensusMethod } from './sparse-consensus.js';

export const ties = makeSparseConsensusMethod(
  'ties',
  'trims each task vector to its largest entries, elects a sign per entry, averages the agreeing entries',
  'Yadav et al. 2023, "TIES-Merging: Resolving interference when merging models"',
  { sparsify: 'magnitude', consensus: 'sum', defaultNormalize: true },
  'ties',
);
