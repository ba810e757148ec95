export { checkpoint } from './checkpoint.js';
export {
  applyDelta,
  type DeltaCounts,
  type DeltaIO,
  type DeltaView,
  elementsOf,
  planApply,
  sameShape,
  writeTensors,
} from './delta.js';
export {
  applyDiffVector,
  computeDiffVector,
  DIFF_VECTOR_KIND,
  type DiffVector,
  type DiffVectorIO,
  type DiffVectorMeta,
  diffVector,
  diffVectorView,
  liveDiffView,
  planDiffVector,
} from './diff-vector.js';
export type {
  ApplyOptions,
  ApplyReport,
  ComputeOptions,
  ObjectHeader,
  ObjectKind,
  ObjectSummary,
  ObjectValue,
} from './kind.js';
export {
  applyLowRank,
  factorNames,
  LOW_RANK_KIND,
  type LowRank,
  type LowRankMeta,
  lowRank,
  lowRankView,
  ranksOf,
} from './low-rank.js';
export {
  computeLowRank,
  type LowRankParams,
  type LowRankReport,
  type LowRankTensorReport,
  lowRankParams,
  planLowRank,
} from './lowrank/compute.js';
export { getObjectKind, listObjectKinds, OBJECT_KINDS, type ResolvedObject, resolveObject } from './registry.js';
export { RMM_BASIS_KIND, type RmmBasis, rmmBasis } from './rmm-basis.js';
export {
  codeBytes,
  decodeRws,
  dequantize,
  type QuantRange,
  quantize,
  quantRange,
  RWS_BITS,
  RWS_KIND,
  type Rws,
  type RwsBits,
  type RwsMeta,
  rws,
  rwsCodesName,
  rwsRangeName,
  rwsValueName,
  rwsView,
} from './rws.js';
export {
  computeRws,
  planRws,
  type RwsParams,
  type RwsPlan,
  type RwsReport,
  type RwsTensorReport,
} from './rws-extract.js';
export {
  computeSparseDelta,
  planSparseDelta,
  type SparseDeltaParams,
  type SparseDeltaPlan,
  type SparseDeltaReport,
  type SparseTensorReport,
} from './sparse-compute.js';
export {
  decodeSparseDelta,
  SPARSE_DELTA_KIND,
  type SparseDelta,
  type SparseDeltaMeta,
  sparseDelta,
  sparseDeltaView,
  sparseIndexName,
  sparseValueName,
} from './sparse-delta.js';
