/** The stored form's names and header of a low-rank basis (low-rank.ts), shared with its compute. */
export const LOW_RANK_KIND = 'low-rank';
export const LOW_RANK_VERSION = 1;

export interface LowRankMeta {
  /** Model tensors held as factors `<name>.lora_B` (out × r) and `<name>.lora_A` (r × in). */
  lowRank: string[];
  /** Δ = scale·B·A for the tensors named here; 1 for the rest. */
  scales: Record<string, number>;
  /** Float tensors held as dense f32 differences under their own name. */
  dense: string[];
  /** Float tensors whose change was left out (the model keeps its own values). */
  dropped: string[];
  /** Tensors held whole: new in the fine-tune, or not float. */
  replaced: string[];
  /** Tensors of the base the fine-tune does not have. */
  removed: string[];
  /** How it was made: the rank or energy and the SVD's parameters, or the adapter it was read from. */
  params: Record<string, unknown>;
}

/** The stored names of a tensor's factors. */
export function factorNames(name: string): { a: string; b: string } {
  return { a: `${name}.lora_A`, b: `${name}.lora_B` };
}
