import type { DType } from '@wgit/core';
import { chunkFileLimit, FolderChunks } from './backend/fs/chunks.js';
import type { ChunkBackend } from './backend/types.js';
import {
  type ChunkFiles,
  type ChunkHeader,
  checkChunkBounds,
  chunkHolds,
  corrupt,
  decodeChunkChain,
  encodeChunkFor,
  type LoadedChunk,
  MAX_CHUNK_HEADER,
  MAX_RAW,
  missing,
  parseChunkHeader,
} from './chunk-file.js';
import type { ChunkEncoding } from './codec/index.js';

export type { ChunkHeader } from './chunk-file.js';

export interface PutResult {
  id: string;
  encoding: ChunkEncoding;
  depth: number;
  stored: number;
  created: boolean;
}

/**
 * Verified chunk reads and writes over any ChunkBackend: every read decodes
 * the delta chain and re-hashes (chunk-file.ts holds the rules), every write
 * reuses an existing chunk only when it reads back intact. The async side of
 * the chunk pipeline (fsck, StoreModel, remotes); commit and checkout run the
 * same rules synchronously on worker threads (chunkio.ts).
 */
export class ChunkStore<B extends ChunkBackend = ChunkBackend> {
  private readonly cache = new Map<string, Uint8Array>();
  private cachedBytes = 0;

  /**
   * `cacheBytes` > 0 keeps recently verified chunks in memory (LRU), which
   * makes walking whole histories (fsck) decode each delta base once instead
   * of once per descendant. Only short-lived stores should cache: a cached
   * chunk is not re-read from the backend.
   */
  constructor(
    readonly backend: B,
    private readonly cacheBytes = 0,
  ) {}

  /** A store over a local chunk folder, `dir/ab/cdef…`, with temp files in `tmpDir`. */
  static inFolder(dir: string, tmpDir: string, cacheBytes = 0): ChunkStore<FolderChunks> {
    return new ChunkStore(new FolderChunks(dir, tmpDir), cacheBytes);
  }

  /** Where a chunk file lives, for stores over a local folder. */
  pathOf(this: ChunkStore<FolderChunks>, id: string): string {
    return this.backend.pathOf(id);
  }

  private remember(id: string, raw: Uint8Array): void {
    if (this.cacheBytes <= 0 || raw.length > this.cacheBytes / 4 || this.cache.has(id)) return;
    this.cache.set(id, raw);
    this.cachedBytes += raw.length;
    for (const [k, v] of this.cache) {
      if (this.cachedBytes <= this.cacheBytes) break;
      this.cache.delete(k);
      this.cachedBytes -= v.length;
    }
  }

  has(id: string): Promise<boolean> {
    return this.backend.hasChunk(id);
  }

  /** Every chunk id present, sorted. */
  list(): Promise<string[]> {
    return this.backend.listChunks();
  }

  /** A chunk file's header, parsed but not checked against any expectation (status, reachability). */
  async readHeader(id: string): Promise<ChunkHeader> {
    const got = await this.backend.getChunkHead(id, MAX_CHUNK_HEADER);
    if (!got) throw missing(id);
    return parseChunkHeader(id, got.head, got.size);
  }

  private async load(id: string, rawLength: number | undefined): Promise<LoadedChunk> {
    const file = await this.backend.getChunk(id, chunkFileLimit(rawLength ?? MAX_RAW));
    if (!file) throw missing(id);
    const header = parseChunkHeader(id, file.subarray(0, Math.min(file.length, MAX_CHUNK_HEADER)), file.length);
    checkChunkBounds(id, header, rawLength);
    return { header, file };
  }

  /**
   * Fetches the files of a chunk's delta chain (a cached base ends it), so
   * that decodeChunkChain, which is synchronous, can walk them. A failure is
   * kept and raised where the walk reaches it, so errors name the same chunk
   * as the worker-thread reader's would.
   */
  private async loadChain(id: string, rawLength: number | undefined): Promise<ChunkFiles> {
    const loaded = new Map<string, LoadedChunk | { error: unknown }>();
    let cur = id;
    let want = rawLength;
    // Depth is a byte and drops by one per base, so no valid chain has more files.
    for (let level = 0; level <= 256 && !loaded.has(cur); level++) {
      let c: LoadedChunk;
      try {
        const hit = level > 0 ? this.cache.get(cur) : undefined;
        if (hit) {
          const header = await this.readHeader(cur);
          checkChunkBounds(cur, header, want);
          c = { header, file: null, raw: hit };
        } else c = await this.load(cur, want);
      } catch (e) {
        loaded.set(cur, { error: e });
        break;
      }
      loaded.set(cur, c);
      if (!c.header.base || c.raw) break;
      want = c.header.rawLength;
      cur = c.header.base;
    }
    return {
      load: (x) => {
        const c = loaded.get(x);
        if (!c) throw corrupt(x, 'delta chain too long');
        if ('error' in c) throw c.error;
        return c;
      },
      decoded: (x, raw) => this.remember(x, raw),
    };
  }

  /** The raw bytes of a chunk, decoded through its delta chain and checked against its id. Callers must not modify them. */
  async get(id: string, maxDepth = 255, rawLength?: number): Promise<Uint8Array> {
    const hit = this.cache.get(id);
    if (hit) {
      this.cache.delete(id);
      this.cache.set(id, hit);
      return hit;
    }
    return decodeChunkChain(await this.loadChain(id, rawLength), id, rawLength, maxDepth);
  }

  /**
   * Stores a chunk unless an intact one with the same raw bytes exists (a
   * damaged one is replaced). `base` is the parent's chunk at the same
   * position; it is offered to the codec only when the resulting chain stays
   * within maxDepth.
   */
  async put(
    id: string,
    raw: Uint8Array,
    dtype: DType,
    base: { id: string; raw: Uint8Array; depth: number } | null,
    maxDepth: number,
  ): Promise<PutResult> {
    const present = await this.backend.hasChunk(id);
    if (present) {
      const h = await this.loadChain(id, raw.length).then(
        (files) => chunkHolds(files, id, raw),
        () => null,
      );
      if (h) return { id, encoding: h.encoding, depth: h.depth, stored: h.fileSize, created: false };
      this.cache.delete(id);
    }
    const enc = encodeChunkFor(id, raw, dtype, base, maxDepth);
    const bytes = Buffer.concat([enc.head, enc.payload]);
    if (present) await this.backend.replaceChunk(id, bytes);
    else if (!(await this.backend.putChunkIfAbsent(id, bytes))) {
      // Another writer stored it first; its file is the one that counts.
      const h = await this.readHeader(id);
      return { id, encoding: h.encoding, depth: h.depth, stored: h.fileSize, created: false };
    }
    return { id, encoding: enc.encoding, depth: enc.depth, stored: enc.stored, created: true };
  }
}
