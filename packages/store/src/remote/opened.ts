/** What opening a remote gives (open.ts for folders, s3-open.ts for S3), kept apart so the two need not import each other. */
import type { StorageBackend } from '../backend/types.js';
import type { RepoConfig } from '../config.js';

export interface OpenedRemote {
  backend: StorageBackend;
  url: string;
  /** Creates an empty repository there when there is none (push to a new remote). */
  ensureExists(config: RepoConfig): Promise<void>;
  /** Whether a repository is there at all. */
  exists(): Promise<boolean>;
  /** S3: aborts multipart uploads that earlier, killed pushes from this repository left in progress. */
  abortStaleUploads?(): Promise<number>;
}

/** Where the local repository keeps what an S3 remote needs between runs (its multipart upload journal). */
export interface LocalState {
  uploadJournal: string;
  tmpDir: string;
}
