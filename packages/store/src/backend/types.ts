import type { ErrorCode } from '@wgit/core';
import type { Identity } from '../identity.js';

/**
 * Where a repository keeps its bytes: tensor chunks, git objects and refs.
 * Byte-oriented and async, so that a folder on this disk, a folder on a
 * shared disk and an object store (S3) can all implement it; the rules for
 * what the bytes mean (chunk-file.ts, isomorphic-git's object format) stay
 * out of it. Reads are never trusted: every reader re-hashes what it gets,
 * so a backend needs to be durable and atomic, not honest.
 *
 * What every implementation must guarantee:
 *
 * - **Put-if-absent is atomic.** `putChunkIfAbsent` / `putObjectIfAbsent`
 *   either store the complete bytes under the name or find a file already
 *   there and leave it untouched; a reader never sees a partial file under
 *   a final name, even after a crash (local: temp file, fsync, hard link,
 *   fsync the folder; S3: a single PUT with `If-None-Match: *`). Chunks
 *   and objects are immutable and content-addressed, so two writers putting
 *   the same name put the same content, and the loser may drop its copy.
 * - **Durable before visible.** Once a put returns, the bytes survive a
 *   crash: commits are written after their chunks and objects, refs after
 *   their commits, and a ref must never name what a crash can lose.
 * - **Refs move by compare-and-swap.** `compareAndSwapRef` changes a ref
 *   only when it still holds `expected` (null: the ref must not exist), as
 *   one atomic step with respect to every other writer of the same backend,
 *   and records the move in the ref's reflog (local: `ref.lock` created
 *   with O_EXCL; S3: a conditional PUT on the ref object's ETag). A failed
 *   comparison throws `E_BRANCH_MOVED` (or the code the caller names), with
 *   `expected` and `found` in its data.
 * - **Listing may lag, reading may not.** `list*` may miss very recent puts
 *   (gc's grace period covers that); `get*` after a put that returned must
 *   find the bytes.
 */
export interface StorageBackend {
  readonly chunks: ChunkBackend;
  readonly objects: ObjectBackend;
  readonly refs: RefBackend;
}

/** Chunk files (chunk-file.ts format) by chunk id: 64 lower-case hex, the sha256 of the raw chunk. */
export interface ChunkBackend {
  hasChunk(id: string): Promise<boolean>;
  /**
   * The whole chunk file, or null when there is none. `maxBytes` bounds what
   * is read: a larger file (or anything but a plain file) is E_CORRUPT_CHUNK,
   * so a damaged or hostile store cannot make a reader allocate more than a
   * chunk.
   */
  getChunk(id: string, maxBytes: number): Promise<Uint8Array | null>;
  /** The first `n` bytes of a chunk file (fewer when it is shorter) and its size, or null when there is none. */
  getChunkHead(id: string, n: number): Promise<{ head: Uint8Array; size: number } | null>;
  /** Stores the file unless one exists under `id`; true when this call stored it. */
  putChunkIfAbsent(id: string, bytes: Uint8Array): Promise<boolean>;
  /**
   * Replaces the file under `id`. Only for a file a reader found damaged:
   * an intact chunk may be another chunk's delta base and must keep its
   * exact encoding.
   */
  replaceChunk(id: string, bytes: Uint8Array): Promise<void>;
  /** Every chunk id present, sorted. */
  listChunks(): Promise<string[]>;
  /** Size and last-modified time (ms) of a chunk file, or null when there is none (gc's grace period). */
  chunkInfo(id: string): Promise<{ size: number; mtimeMs: number } | null>;
  /** Removes a chunk file; no error when it is already gone. Only gc, under its lock, calls this. */
  deleteChunk(id: string): Promise<void>;
}

/**
 * Git objects (commits, trees, blobs) by object id (40 hex, sha1), as loose
 * object bytes: zlib-deflated `<type> <size>\0<content>`, exactly what git
 * keeps in `objects/ab/cdef…`.
 */
export interface ObjectBackend {
  hasObject(oid: string): Promise<boolean>;
  getObject(oid: string): Promise<Uint8Array | null>;
  /** Stores a loose object unless one exists; refuses (E_CORRUPT) bytes that do not inflate to `oid`. */
  putObjectIfAbsent(oid: string, bytes: Uint8Array): Promise<boolean>;
  /** Every object id present, sorted. */
  listObjects(): Promise<string[]>;
}

export interface ReflogEntry {
  old: string;
  new: string;
  name: string;
  email: string;
  timestamp: number;
  tz: string;
  message: string;
}

/** What a ref move records in the reflog. */
export interface RefLogLine {
  message: string;
  identity: Identity;
}

/** Branches (`refs/heads/…`) and tags (`refs/tags/…`), full names. */
export interface RefBackend {
  /** The full name of the branch HEAD points to (`refs/heads/main`); a remote's default branch. */
  readHead(): Promise<string>;
  /** The commit a ref names, or null when it does not exist. */
  readRef(name: string): Promise<string | null>;
  listRefs(prefix: 'refs/heads/' | 'refs/tags/'): Promise<Map<string, string>>;
  /**
   * Moves `name` from `expected` to `next` (null `expected`: create; null
   * `next`: delete, with its reflog) if and only if it still holds
   * `expected`. Returns the previous value.
   */
  compareAndSwapRef(
    name: string,
    expected: string | null,
    next: string | null,
    log: RefLogLine,
    opts?: { movedCode?: ErrorCode },
  ): Promise<string | null>;
  readReflog(name: string): Promise<ReflogEntry[]>;
  /** Full names of the refs that have a reflog. */
  listReflogs(): Promise<string[]>;
}
