export {
  countIdenticalElements,
  type DiffOptions,
  type DiffReport,
  type DiffTotals,
  diffModels,
  type LayerDiff,
  type SideFileDiff,
  type TensorDiff,
  type TensorDiffStatus,
} from './compute.js';
export { type DiffHtmlOptions, diffHtml } from './html.js';
export { layerOf, TENSOR_KINDS, type TensorKind, tensorKind } from './layers.js';
