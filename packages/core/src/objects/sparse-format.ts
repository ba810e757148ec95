/** The stored form's names and header of a sparse delta (sparse-delta.ts), shared with its compute. */
export const SPARSE_DELTA_KIND = 'sparse-delta';
export const SPARSE_DELTA_VERSION = 1;

export const sparseIndexName = (name: string) => `${name}::sparse.index`;
export const sparseValueName = (name: string) => `${name}::sparse.value`;
export const INDEX_SUFFIX = '::sparse.index';
export const VALUE_SUFFIX = '::sparse.value';
/** Tensors above this many elements store their gaps as U64. */
export const U32_GAP_LIMIT = 2 ** 32;

export interface SparseDeltaMeta {
  mode: 'exact' | 'density';
  /** The kept fraction per tensor (density mode), else null. */
  density: number | null;
  /** Model shape of every float tensor the object may change, by name. */
  shapes: [string, number[]][];
}
