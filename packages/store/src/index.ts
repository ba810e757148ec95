export { FolderBackend, FolderChunks, FolderObjects, FolderRefs } from './backend/fs/index.js';
export { checkLooseObject } from './backend/fs/objects.js';
export type {
  ChunkBackend,
  ObjectBackend,
  RefBackend,
  RefLogLine,
  ReflogEntry,
  StorageBackend,
} from './backend/types.js';
export { decodeChunkChain, encodeChunkFor } from './chunk-file.js';
export { type ChunkHeader, ChunkStore } from './chunkstore.js';
export * from './codec/index.js';
export {
  StoreSink,
  type StreamCommitOptions,
  type StreamCommitResult,
} from './commit-stream.js';
export { DEFAULT_CONFIG, type RepoConfig } from './config.js';
export {
  setWriteBudget,
  setWriteFaultHook,
  type WriteBudgetState,
  type WriteFaultHook,
  writeBudgetState,
} from './fsutil.js';
export {
  DEFAULT_AUTHOR,
  parseUserSection,
  readUserConfig,
  USER_KEYS,
  type UserConfig,
  type UserKey,
  writeUserConfig,
} from './identity.js';
export { DEFAULT_GC_GRACE_SECONDS, type FsckProblem, type FsckResult, type GcResult } from './maintenance.js';
export { StoreModel } from './model.js';
export { checkRefName, escapeName, unescapeName } from './names.js';
export {
  type ReachabilitySource,
  type Reachable,
  reachable,
  reachableChunks,
  reachableObjects,
  walkCommits,
} from './ops/reachability.js';
export type { ChunkRef, Manifest, TensorRecord } from './records.js';
export * as remotes from './remote/index.js';
export {
  type CommitInfo,
  type CommitOptions,
  type CommitResult,
  type InitOptions,
  type LogEntry,
  Repository,
  type ShowResult,
  type ShowTensor,
  type StatusResult,
} from './repository.js';
export { parseRevision } from './revparse.js';
