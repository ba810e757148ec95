/** `wgit status`: where HEAD is, what the repository holds, and what a crash left behind. */
import type { FolderChunks } from '../backend/fs/chunks.js';
import type { FolderRefs } from '../backend/fs/refs.js';
import { staleCheckoutTemps } from '../checkout-temps.js';
import type { ChunkStore } from '../chunkstore.js';
import type { RepoConfig } from '../config.js';

export interface StatusResult {
  root: string;
  branch: string;
  head: string | null;
  branches: number;
  tags: number;
  chunks: { count: number; rawBytes: number; storedBytes: number };
  config: RepoConfig;
  tempFiles: string[];
  staleLocks: string[];
  /** Temp folders (absolute paths) of checkouts whose process died; gc removes them. */
  staleCheckouts: string[];
}

/** What status reads of a repository. */
export interface StatusContext {
  readonly root: string;
  readonly config: RepoConfig;
  readonly tmpDir: string;
  readonly refs: FolderRefs;
  readonly chunks: ChunkStore<FolderChunks>;
  currentBranch(): Promise<string>;
  staleTemps(): Promise<string[]>;
  staleLocks(): Promise<string[]>;
}

export async function repoStatus(repo: StatusContext): Promise<StatusResult> {
  const branch = await repo.currentBranch();
  const head = await repo.refs.readRef(`refs/heads/${branch}`);
  let rawBytes = 0;
  let storedBytes = 0;
  const ids = await repo.chunks.list();
  for (const id of ids) {
    try {
      const h = await repo.chunks.readHeader(id);
      rawBytes += h.rawLength;
      storedBytes += h.fileSize;
    } catch {
      // fsck reports damaged chunks; status only counts.
    }
  }
  return {
    root: repo.root,
    branch,
    head,
    branches: (await repo.refs.listRefs('refs/heads/')).size,
    tags: (await repo.refs.listRefs('refs/tags/')).size,
    chunks: { count: ids.length, rawBytes, storedBytes },
    config: repo.config,
    tempFiles: await repo.staleTemps(),
    staleLocks: await repo.staleLocks(),
    staleCheckouts: (await staleCheckoutTemps(repo.tmpDir)).map((t) => t.path),
  };
}
