/**
 * Weight-space methods: the merge registry, the streaming engine, LiNeS,
 * reversible merge, fine-tuning transfer and mergekit YAML configs.
 *
 *   mergeModels({ inputs, base?, method, params?, outDir | sink, outDtype?, onProgress?, groupDir? }) → MergeReport
 *   transferModel({ ft, from, onto, scale?, copyMissing?, outDir, … })                          → TransferReport
 *   linesEdit({ model, base, alpha?, beta?, outDir, … })                                         → LinesReport
 *   reversibleMerge({ inputs, base, params?, outDir + groupDir | sink, … }) / recoverModel({ group, model, outDir })
 *   parseMergekitYaml(text) → MergekitRecipe   (feed recipe.method / recipe.params to mergeModels)
 *   mergeTensor(method, params, inputs, base?, ctx?) → Float32Array   (one tensor, plain TypeScript)
 *   defineMethod({ name, params: [weightsParam(), …], build, … }) + a line in registry.ts → a new method
 */

// The stored form of the basis belongs to the rmm-basis object kind.
export { RMM_META_TENSOR, type RmmMeta, type RmmTensorMeta } from '../objects/rmm-format.js';
export {
  BufferPool,
  copySideFiles,
  FolderSink,
  type FolderSinkOptions,
  fillGroups,
  fillSink,
  type GroupHeader,
  type GroupPlan,
  type PipelineOptions,
  type PipelineTensor,
  runTensorPipeline,
  type SideFileSource,
  type Sink,
  type SinkPlan,
  validateModels,
} from '../pipeline/index.js';
export { dareLinear, dareTies } from './dare.js';
export { type Eigen, symmetricEigen } from './eigen.js';
export { type MergeModelsOptions, mergeModels, modelWideThresholds, modelWideTrim } from './engine.js';
export { defineGramMethod, gramOf, taskGram } from './gram.js';
export { linear, linearCoefficients } from './linear.js';
export {
  BLOCK_PATTERN,
  blockIndex,
  countBlocks,
  DEFAULT_LINES_ALPHA,
  type LinesEditOptions,
  type LinesReport,
  linesEdit,
  linesMergeAlpha,
  linesScale,
} from './lines.js';
export { MERGEKIT_DEFAULT_DENSITY, type MergekitRecipe, normalizeMergekit, parseMergekitYaml } from './mergekit.js';
export type { RecipeSlice } from './mergekit-slices.js';
export { modelStock, modelStockT } from './model-stock.js';
export { nuslerp, nuslerpCoefficients, nuslerpT } from './nuslerp.js';
export { isPerTensorText, parsePerTensorList, parsePerTensorText } from './param-text.js';
export {
  DEFAULT_DENSITY,
  defineMethod,
  densityParam,
  dropParam,
  filterMatches,
  gradientAt,
  gradientPosition,
  isGradient,
  lambdaParam,
  linesParam,
  type MethodSpec,
  normalizeParam,
  paramOwners,
  rankParam,
  rescaleParam,
  resolveParams,
  seedParam,
  tensorParams,
  trimParam,
  valueFor,
  weightsParam,
} from './params.js';
export { passthrough } from './passthrough.js';
export { type MergePlan, type MergePlanOptions, mergePlan, type PlanGroup } from './plan.js';
export {
  type PruneOptions,
  type PruneReport,
  type PruneTensorReport,
  pruneModel,
  pruneNM,
  pruneUnstructured,
} from './prune.js';
export { getMethod, METHODS, registerMethod } from './registry.js';
export {
  basisTensor,
  decompose,
  gramMatrix,
  type RecoverOptions,
  type RecoverReport,
  type ReversibleMergeOptions,
  RMM_GROUP,
  RMM_SUM_PIECE,
  type RmmReport,
  reconstruct,
  recoverModel,
  reversibleMerge,
  rmm,
} from './rmm.js';
export { AbsSelector, keepCount, kthLargestAbs } from './select.js';
export { SLERP_DOT_THRESHOLD, slerp, slerpCoefficients } from './slerp.js';
export { renumber, type SliceDef, type SlicedInputs, type SliceSource, slicedInputs } from './slices.js';
export { type GreedySoupResult, greedySoup, type SoupTrial } from './soup.js';
export {
  combine,
  dareInPlace,
  magnitudeThresholds,
  magnitudeTieQuotas,
  sparseConsensusTensor,
  trimInPlace,
} from './sparse-consensus.js';
export { taskArithmetic } from './task-arithmetic.js';
export { mergeTensor } from './tensor.js';
export { ties } from './ties.js';
export { type TensorCloseness, type TransferOptions, type TransferReport, transferModel } from './transfer.js';
export type * from './types.js';
