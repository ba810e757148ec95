export { BufferPool, convertIn, convertOut, isKernelDType, toF32Into } from './buffers.js';
export { checkOutDtype, copySideFiles, discardOutDir, prepareOutDir } from './output.js';
export { type PipelineOptions, type PipelineReport, type PipelineTensor, runTensorPipeline } from './run.js';
export { isTokenizerFile, mixSideFiles, type SideFilePlan, transferSideFiles } from './side-files.js';
export {
  FolderSink,
  type FolderSinkOptions,
  fillGroups,
  fillSink,
  type GroupHeader,
  type GroupPlan,
  type SideFileSource,
  type Sink,
  type SinkPlan,
} from './sink.js';
export { forEachFloatTensor, type LoadedTensor, prefetched, streamTensors, validateModels } from './sources.js';
