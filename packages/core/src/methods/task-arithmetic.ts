/** Task arithmetic (Ilharco et al. 2023): θ = θ₀ + λ Σ wᵢ τᵢ — the general method with nothing sparsified. */
import { makeSparseConsensusMethod } from './sparse-consensus.js';

export const taskArithmetic = makeSparseConsensusMethod(
  'task-arithmetic',
  'adds the weighted task vectors (θᵢ − θ₀) to the base, scaled by lambda; a negative weight forgets a task',
  'Ilharco et al. 2023, "Editing models with task arithmetic"',
  { sparsify: 'none', consensus: 'none', defaultNormalize: false },
  'task_arithmetic',
);
