/**
 * Reversible merge (after Alipour & Amiri 2025). Per tensor, with task updates
 * Δᵢ = θᵢ − θ₀, keep a small basis M_k and coefficients c_ik with
 * Δᵢ ≈ Σ_k c_ik M_k, so each input can be checked out again.
 *
 * The first basis element is the direction u of the merged update
 * m = λ Σ wᵢΔᵢ (the plain checkout); the others are the top eigenvectors of
 * the Gram matrix of the updates' residuals after projecting out u:
 *   G = [⟨Δᵢ,Δⱼ⟩] (f64),  aᵢ = ⟨Δᵢ,u⟩,  G' = G − a aᵀ = QΛQᵀ,
 *   M_0 = u,  M_k = Σᵢ Q_ik (Δᵢ − aᵢu)/√λ_k,  c_i = (aᵢ, Q_{i,k}√λ_k).
 * Every Δᵢ is then projected onto a subspace that contains m, so each input's
 * recovery error is at most its error against the merged model, for any rank;
 * with the full basis the projection is exact. Recovery rounds
 * θ₀ + Σ_k c_Nk M_k to the model dtype; where that rounding misses the input
 * by an ulp, the exact input values are stored as sparse fixes, so a full
 * basis recovers every input byte for byte.
 *
 * The merge runs on the tensor pipeline (pipeline/run.ts): the Gram pass is
 * its first pass, then one streaming pass writes the merged model to the
 * output and the basis to the output's `rmm` group (a folder, or the store
 * commit's group). Every tensor operation is a device kernel, on blocks of
 * elements so scratch memory stays small whatever the tensor size; the sums
 * run in a fixed order whatever the thread count (see `RMM_SUM_PIECE`).
 */
export {
  basisTensor,
  type Decomposition,
  decompose,
  gramMatrix,
  RMM_EIGEN_EPS,
  RMM_GROUP,
  RMM_MAX_INPUTS,
  RMM_MERGED_CONFIG,
  RMM_SUM_PIECE,
  reconstruct,
} from './rmm/math.js';
export { type ReversibleMergeOptions, type RmmReport, reversibleMerge, rmm } from './rmm/merge.js';
export { type RecoverOptions, type RecoverReport, recoverModel } from './rmm/recover.js';
