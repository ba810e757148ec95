import * as path from 'node:path';
import type { StorageBackend } from '../types.js';
import { FolderChunks } from './chunks.js';
import { FolderObjects } from './objects.js';
import { FolderRefs } from './refs.js';

/**
 * A repository's own `.wgit` folder as a storage backend: chunks in
 * `wgit/chunks/`, loose git objects in `objects/`, refs and reflogs in
 * `refs/` and `logs/`, temp files in `wgit/tmp/` (on the same file system,
 * so every placement is a rename or a hard link).
 */
export class FolderBackend implements StorageBackend {
  readonly tmpDir: string;
  readonly chunks: FolderChunks;
  readonly objects: FolderObjects;
  readonly refs: FolderRefs;

  constructor(readonly gitdir: string) {
    const wgitDir = path.join(gitdir, 'wgit');
    this.tmpDir = path.join(wgitDir, 'tmp');
    this.chunks = new FolderChunks(path.join(wgitDir, 'chunks'), this.tmpDir);
    this.objects = new FolderObjects(path.join(gitdir, 'objects'), this.tmpDir);
    this.refs = new FolderRefs({ gitdir, tmpDir: this.tmpDir });
  }
}

export { FolderChunks } from './chunks.js';
export { FolderObjects } from './objects.js';
export { FolderRefs } from './refs.js';
