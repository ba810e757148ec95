export { writeFileAtomic } from './atomic.js';
export { SAFETENSORS_ERROR_CODES, type SafetensorsErrorCode } from './codes.js';
export {
  type ByteReader,
  encodeSafetensorsHeader,
  MAX_HEADER_BYTES,
  parseSafetensorsHeader,
  readSafetensorsHeader,
  readSafetensorsHeaderFrom,
  type SafetensorsHeader,
  type TensorInfo,
  type TensorSpec,
} from './header.js';
export { type LocalModel, type ModelSource, type ModelTensor, openModel, type SafetensorsIndex } from './model.js';
export {
  DEFAULT_MAX_SHARD_BYTES,
  formatIndex,
  INDEX_FILE_NAME,
  ModelWriter,
  planShards,
  SINGLE_FILE_NAME,
  shardFileName,
} from './model-writer.js';
export { SafetensorsWriter, writeSafetensors } from './writer.js';
