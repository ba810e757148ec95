import * as fs from 'node:fs';
import * as path from 'node:path';
import type { DType } from '@wgit/core';
import { isWgitError, WgitError, type WgitErrorCode } from '@wgit/core/errors';
import { chunkFileLimit, FolderChunks, readChunkFullySync } from './backend/fs/chunks.js';
import {
  type ChunkFiles,
  type ChunkHeader,
  checkChunkBounds,
  chunkHolds,
  decodeChunkChain,
  decodeChunkShared,
  encodeChunkFor,
  type LoadedChunk,
  MAX_CHUNK_HEADER,
  MAX_RAW,
  parseChunkHeader,
  sha256hex,
} from './chunk-file.js';
import type { ChunkEncoding } from './codec/index.js';
import { checkFault, tempName, writeBudgetSlotsOf } from './fsutil.js';

/**
 * The per-chunk work of commit and checkout, synchronous so that it runs the
 * same way on the calling thread (small models) and inside worker threads
 * (large ones, see pool.ts). Every buffer is kept and reused between chunks:
 * on the machines this was measured on, the page faults of a fresh 4 MiB
 * array cost more than decoding into it.
 */

/** Commit: read `length` bytes of a model file, hash, encode and write a chunk temp file unless the chunk exists. */
export interface PutJob {
  op: 'put';
  file: string;
  position: number;
  length: number;
  dtype: DType;
  /** The parent's chunk at the same position, offered to the codec as XOR base. */
  base: string | null;
  maxDepth: number;
}

/**
 * `tmp` is the temp file holding a chunk this job created: it is not yet
 * durable nor under its final name; the committer fsyncs and renames all of
 * them before it writes the commit (commit.ts, flushChunks).
 */
export interface PutDone {
  id: string;
  encoding: ChunkEncoding;
  depth: number;
  stored: number;
  tmp: string | null;
  /** The chunk file already under this id was damaged: `tmp` is to replace it. */
  replaces?: boolean;
}

/**
 * Commit from a stream: the same work as PutJob on bytes the caller hands
 * over (a view of a SharedArrayBuffer for worker threads, so nothing is
 * copied on the way; the caller does not touch it until the job is done).
 */
export interface PutBytesJob {
  op: 'put-bytes';
  bytes: Uint8Array;
  dtype: DType;
  base: string | null;
  maxDepth: number;
}

/** Checkout: read, verify and decode one chunk and write it at `position` of the open file `fd`. */
export interface GetJob {
  op: 'get';
  id: string;
  rawLength: number;
  fd: number;
  position: number;
  /** The file behind `fd`, for fault injection and messages. */
  file?: string;
}

/**
 * Reading a tensor (StoreModel): read, verify and decode one chunk into
 * `buffer` at `offset`. On worker threads the buffer must be a
 * SharedArrayBuffer, so the bytes land where the caller reads them.
 */
export interface ReadJob {
  op: 'read';
  id: string;
  rawLength: number;
  maxDepth: number;
  buffer: ArrayBufferLike;
  offset: number;
}

/**
 * Reading the chunks at one position (same tensor, same chunk index) of
 * several revisions at once, as a merge does (shared-reads.ts): one job, so
 * that a chunk that is another's delta base (a fine-tune's chunk under the
 * next fine-tune's, the base model's under both) is decoded once and serves
 * every read that needs it. Each chunk handed out is hashed once; a base that
 * is not itself read is not hashed (the chunk decoded from it is). `reads`
 * go in the order given: bases first (the records' delta depths) saves
 * copies. Buffers as in ReadJob.
 */
export interface ReadGroupJob {
  op: 'read-group';
  maxDepth: number;
  reads: { id: string; rawLength: number; buffer: ArrayBufferLike; offset: number }[];
}

/** An error as it crosses the thread boundary inside a result: WgitErrors keep code and data. */
export interface ReadError {
  wgit: boolean;
  code?: string;
  message: string;
  data?: Record<string, unknown>;
}

export interface ReadGroupDone {
  /** Per read, in job order: null, or why it failed (the other reads still count). */
  errors: (ReadError | null)[];
  /** Chunk payloads decoded (each level of each chain counts; a shared one once). */
  decoded: number;
  /** Decoded chunks hashed. */
  hashed: number;
  /** Times a chunk decoded earlier in the job served again, as a base or as a read. */
  reused: number;
  /** Most bytes of decoded bases this job held at once beside the readers' own buffers. */
  peakBaseBytes: number;
}

/**
 * Fetch: the chunk file `bytes` (not yet in the store) decoded through its
 * delta chain, its bases read from the store, and hashed against `id`.
 * Answers its raw length; a mismatch throws E_CORRUPT_CHUNK.
 */
export interface VerifyJob {
  op: 'verify';
  id: string;
  bytes: Uint8Array;
  maxDepth: number;
}

export type ChunkJob = PutJob | PutBytesJob | GetJob | ReadJob | ReadGroupJob | VerifyJob;
export type JobResult<J extends ChunkJob> = J extends PutJob | PutBytesJob
  ? PutDone
  : J extends ReadGroupJob
    ? ReadGroupDone
    : number;

/**
 * Decoded bases a read-group job keeps for the next reads of the group, beside
 * the ones the chain being decoded needs (at most its depth): a fine-tune two
 * deltas deep needs one (the base model, when it is not read itself).
 */
export const KEPT_BASES = 4;

function toReadError(e: unknown): ReadError {
  if (isWgitError(e)) return { wgit: true, code: e.code, message: e.message, data: e.data };
  const x = e as NodeJS.ErrnoException;
  return { wgit: false, code: typeof x?.code === 'string' ? x.code : undefined, message: String(x?.message ?? e) };
}

export function fromReadError(r: ReadError): Error {
  if (r.wgit) return new WgitError((r.code ?? 'E_INTERNAL') as WgitErrorCode, r.message, r.data);
  return Object.assign(new Error(r.message), r.code ? { code: r.code } : {});
}

/** A decoded chunk a read-group job can use again: in a reader's buffer, or in one of the job's base buffers. */
interface Held {
  header: ChunkHeader;
  raw: Uint8Array;
  checked: boolean;
  /** The base buffer holding it; null when `raw` is a reader's buffer (kept by the reader until the job ends). */
  buf: Uint8Array | null;
}

function grow(buf: Uint8Array, n: number): Uint8Array {
  return buf.length >= n ? buf : new Uint8Array(Math.max(n, Math.min(buf.length * 2, 1 << 30)));
}

function readFully(fd: number, buf: Uint8Array, position: number, file: string): void {
  let off = 0;
  while (off < buf.length) {
    const n = fs.readSync(fd, buf, off, buf.length - off, position + off);
    if (n === 0) {
      throw new WgitError('E_SAFETENSORS_TRUNCATED', `${file} shrank while being read`, { path: file });
    }
    off += n;
  }
}

function writeFully(fd: number, buf: Uint8Array, position: number | null): void {
  let off = 0;
  while (off < buf.length) {
    off += fs.writeSync(fd, buf, off, buf.length - off, position === null ? null : position + off);
  }
}

export class ChunkIO {
  private readonly inputs = new Map<string, number>();
  private raw: Uint8Array = new Uint8Array(0);
  private encoded: Uint8Array = new Uint8Array(0);
  private readonly header = new Uint8Array(MAX_CHUNK_HEADER);
  // One file buffer and one output buffer per delta-chain level.
  private readonly files: Uint8Array[] = [];
  private readonly outs: Uint8Array[] = [];
  // Chunks this thread wrote during the operation: a repeat (identical norm
  // weights in every layer) is neither encoded nor written twice.
  private readonly made = new Map<string, PutDone>();
  // Buffers for the delta bases of read-group jobs, reused from job to job.
  private spareBases: Uint8Array[] = [];
  // Existing chunks this operation read back and found intact: reused without
  // a second check. Forgotten at close, since gc may delete an unreferenced
  // chunk between two operations.
  private readonly verified = new Set<string>();
  private readonly folder: FolderChunks;
  /** The local chunk folder as chunk-file.ts's reader sees it, reading into this thread's buffers. */
  private readonly chain: ChunkFiles;
  /** Where a read job's chunk decodes to (the chain's level 0 output), while it runs. */
  private target: Uint8Array | null = null;

  /** The test-only write budget (fsutil.ts) this thread charges; null when none is set. */
  private readonly budget: BigInt64Array | null;

  constructor(
    readonly chunksDir: string,
    readonly tmpDir: string,
    budget: SharedArrayBuffer | null = null,
  ) {
    this.budget = writeBudgetSlotsOf(budget);
    this.folder = new FolderChunks(chunksDir, tmpDir);
    this.chain = {
      load: (id, rawLength, level) => this.load(id, rawLength, level),
      output: (level, rawLength) => {
        if (level === 0 && this.target?.length === rawLength) return this.target;
        this.outs[level] = grow(this.outs[level] ?? new Uint8Array(0), rawLength);
        return this.outs[level].subarray(0, rawLength);
      },
    };
  }

  pathOf(id: string): string {
    return this.folder.pathOf(id);
  }

  run<J extends ChunkJob>(job: J): JobResult<J> {
    if (job.op === 'put') return this.put(job) as JobResult<J>;
    if (job.op === 'read') return this.read(job) as JobResult<J>;
    if (job.op === 'read-group') return this.readGroup(job) as JobResult<J>;
    if (job.op === 'put-bytes') return this.store(job.bytes, job.dtype, job.base, job.maxDepth) as JobResult<J>;
    if (job.op === 'verify') return this.verifyFile(job) as JobResult<J>;
    return this.get(job) as JobResult<J>;
  }

  /**
   * Bases come from the store, whose chunks were verified when they entered,
   * and are not hashed again; the chunk itself is (decodeChunkChain level 0).
   */
  private verifyFile(job: VerifyJob): number {
    const header = parseChunkHeader(job.id, job.bytes.subarray(0, MAX_CHUNK_HEADER), job.bytes.length);
    const files: ChunkFiles = {
      load: (id, rawLength, level) => (level === 0 ? { header, file: job.bytes } : this.load(id, rawLength, level)),
      output: (level, rawLength) => this.chain.output!(level, rawLength),
    };
    return decodeChunkChain(files, job.id, undefined, job.maxDepth, { checkBases: false }).length;
  }

  /** Closes the model files opened by put jobs and forgets this operation's chunks. */
  close(): void {
    for (const fd of this.inputs.values()) fs.closeSync(fd);
    this.inputs.clear();
    this.made.clear();
    this.verified.clear();
    this.spareBases = [];
  }

  private input(file: string): number {
    let fd = this.inputs.get(file);
    if (fd === undefined) {
      fd = fs.openSync(file, 'r');
      this.inputs.set(file, fd);
    }
    return fd;
  }

  /**
   * Loads a chunk file into this level's buffer. The header is read and
   * checked first: nothing larger than one chunk is ever read.
   */
  private load(id: string, rawLength: number | undefined, level: number): LoadedChunk {
    const { fd, size } = this.folder.openSync(id, chunkFileLimit(rawLength ?? MAX_RAW));
    try {
      const head = this.header.subarray(0, Math.min(size, MAX_CHUNK_HEADER));
      readChunkFullySync(fd, head, id);
      const header = parseChunkHeader(id, head, size);
      checkChunkBounds(id, header, rawLength);
      this.files[level] = grow(this.files[level] ?? new Uint8Array(0), size);
      const file = this.files[level].subarray(0, size);
      readChunkFullySync(fd, file, id);
      return { header, file };
    } finally {
      fs.closeSync(fd);
    }
  }

  /**
   * The header of an existing chunk file of `rawLength` bytes, or null when
   * there is none. A file that is there but unusable (not a regular file, a
   * damaged header, another length) throws E_CORRUPT_CHUNK.
   */
  private existing(id: string, rawLength: number): ChunkHeader | null {
    let opened: { fd: number; size: number };
    try {
      opened = this.folder.openSync(id, chunkFileLimit(rawLength));
    } catch (e) {
      if ((e as WgitError).code === 'E_MISSING_CHUNK') return null;
      throw e;
    }
    try {
      const head = this.header.subarray(0, Math.min(opened.size, MAX_CHUNK_HEADER));
      readChunkFullySync(opened.fd, head, id);
      const h = parseChunkHeader(id, head, opened.size);
      checkChunkBounds(id, h, rawLength);
      return h;
    } finally {
      fs.closeSync(opened.fd);
    }
  }

  /** The header of the intact chunk file holding `raw`, or null (see chunkHolds). */
  private intact(id: string, raw: Uint8Array): ChunkHeader | null {
    try {
      if (this.verified.has(id)) return this.existing(id, raw.length);
      const h = chunkHolds(this.chain, id, raw);
      if (h) this.verified.add(id);
      return h;
    } catch {
      return null;
    }
  }

  private put(job: PutJob): PutDone {
    this.raw = grow(this.raw, job.length);
    const raw = this.raw.subarray(0, job.length);
    readFully(this.input(job.file), raw, job.position, job.file);
    return this.store(raw, job.dtype, job.base, job.maxDepth);
  }

  /** Hashes, encodes and writes a chunk temp file for `raw` unless the chunk exists. */
  private store(raw: Uint8Array, dtype: DType, baseId: string | null, maxDepth: number): PutDone {
    const job = { dtype, base: baseId, maxDepth };
    const id = sha256hex(raw);
    const mine = this.made.get(id);
    if (mine) return { ...mine, tmp: null };
    // An existing chunk is reused only when it reads back intact; a damaged
    // one is written afresh and the new file replaces it (flushChunks).
    const have = this.intact(id, raw);
    if (have) return { id, encoding: have.encoding, depth: have.depth, stored: have.fileSize, tmp: null };
    const replaces = this.folder.presentSync(id);

    let base: { id: string; raw: Uint8Array; depth: number } | null = null;
    if (job.base && job.base !== id && job.maxDepth >= 1) {
      try {
        const h = this.existing(job.base, raw.length);
        if (h && h.depth + 1 <= job.maxDepth)
          base = {
            id: job.base,
            raw: decodeChunkChain(this.chain, job.base, raw.length, job.maxDepth - 1),
            depth: h.depth,
          };
      } catch {
        // A damaged parent chunk only costs compression here; fsck reports it.
        base = null;
      }
    }
    this.encoded = grow(this.encoded, raw.length);
    const enc = encodeChunkFor(id, raw, job.dtype, base, job.maxDepth, this.encoded);
    const tmp = path.join(this.tmpDir, tempName('chunk'));
    checkFault(this.pathOf(id), enc.stored, this.budget);
    const fd = fs.openSync(tmp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o644);
    try {
      writeFully(fd, enc.head, null);
      writeFully(fd, enc.payload, null);
    } catch (e) {
      fs.closeSync(fd);
      fs.rmSync(tmp, { force: true });
      throw e;
    }
    fs.closeSync(fd);
    const done: PutDone = {
      id,
      encoding: enc.encoding,
      depth: enc.depth,
      stored: enc.stored,
      tmp,
      ...(replaces ? { replaces } : {}),
    };
    this.made.set(id, done);
    return done;
  }

  private get(job: GetJob): number {
    const raw = decodeChunkChain(this.chain, job.id, job.rawLength, 255);
    checkFault(job.file ?? `fd ${job.fd}`, raw.length, this.budget);
    writeFully(job.fd, raw, job.position);
    return raw.length;
  }

  /**
   * The reads of one read-group job, in order. Every chunk decoded is kept
   * for the rest of the job: a read's own bytes in its buffer, a base no read
   * asked for in a buffer of its own (the chain being decoded needs up to
   * its depth of them; after each read at most KEPT_BASES stay, oldest
   * dropped first). A later read whose chunk, or some base of it, is kept
   * starts there. Bases are not hashed; each read's chunk is, once
   * (decodeChunkShared), and any failure is decoded again from the files
   * with every level checked, so errors are the plain reader's.
   */
  private readGroup(job: ReadGroupJob): ReadGroupDone {
    const done: ReadGroupDone = { errors: [], decoded: 0, hashed: 0, reused: 0, peakBaseBytes: 0 };
    const held = new Map<string, Held>();
    const kept: string[] = []; // ids of held bases, oldest first
    let inUse: Uint8Array[] = []; // base buffers handed out for the read being decoded
    let baseBytes = 0;
    const takeBase = (rawLength: number): Uint8Array => {
      let i = this.spareBases.findIndex((b) => b.length >= rawLength);
      if (i < 0) {
        this.spareBases.push(new Uint8Array(rawLength));
        i = this.spareBases.length - 1;
      }
      const buf = this.spareBases.splice(i, 1)[0];
      inUse.push(buf);
      baseBytes += buf.length;
      done.peakBaseBytes = Math.max(done.peakBaseBytes, baseBytes);
      return buf.subarray(0, rawLength);
    };
    const dropBase = (buf: Uint8Array): void => {
      this.spareBases.push(buf);
      baseBytes -= buf.length;
    };
    let target: Uint8Array | null = null;
    const files: ChunkFiles = {
      load: (id, rawLength, level) => {
        const h = held.get(id);
        if (h && (rawLength === undefined || h.header.rawLength === rawLength)) {
          done.reused++;
          return { header: h.header, file: null, raw: h.raw, unchecked: !h.checked };
        }
        return this.load(id, rawLength, level);
      },
      output: (level, rawLength) => {
        done.decoded++;
        return level === 0 && target?.length === rawLength ? target : takeBase(rawLength);
      },
      decoded: (id, raw, header) => {
        done.hashed++;
        const h = held.get(id);
        if (!h) held.set(id, { header, raw, checked: true, buf: this.bufferOf(raw, inUse) });
        else if (h.raw === raw) h.checked = true;
      },
      decodedUnchecked: (id, raw, header) => {
        if (!held.has(id)) held.set(id, { header, raw, checked: false, buf: this.bufferOf(raw, inUse) });
      },
    };
    for (const r of job.reads) {
      target = new Uint8Array(r.buffer, r.offset, r.rawLength);
      const before = new Set(held.keys());
      // What a failed attempt kept may be what is damaged: later reads decode it afresh.
      const forget = () => {
        for (const id of held.keys()) if (!before.has(id)) held.delete(id);
      };
      try {
        this.target = target;
        const raw = decodeChunkShared(files, this.chain, r.id, r.rawLength, job.maxDepth, forget);
        if (raw.buffer !== target.buffer || raw.byteOffset !== target.byteOffset) target.set(raw);
        done.errors.push(null);
      } catch (e) {
        done.errors.push(toReadError(e));
      } finally {
        this.target = null;
      }
      // Base buffers of this read that hold nothing kept go back; the kept ones are trimmed.
      for (const buf of inUse) {
        const id = [...held.entries()].find(([, h]) => h.buf === buf)?.[0];
        if (id === undefined) dropBase(buf);
        else kept.push(id);
      }
      inUse = [];
      while (kept.length > KEPT_BASES) {
        const id = kept.shift()!;
        dropBase(held.get(id)!.buf!);
        held.delete(id);
      }
    }
    for (const id of kept) dropBase(held.get(id)!.buf!);
    return done;
  }

  /** The base buffer among `bufs` that `raw` is a view of, or null (a reader's buffer). */
  private bufferOf(raw: Uint8Array, bufs: Uint8Array[]): Uint8Array | null {
    return bufs.find((b) => b.buffer === raw.buffer && b.byteOffset === raw.byteOffset) ?? null;
  }

  private read(job: ReadJob): number {
    const target = new Uint8Array(job.buffer, job.offset, job.rawLength);
    this.target = target;
    try {
      const raw = decodeChunkChain(this.chain, job.id, job.rawLength, job.maxDepth);
      // The codec may hand back its own bytes (a raw chunk): then they are copied.
      if (raw.buffer !== target.buffer || raw.byteOffset !== target.byteOffset) target.set(raw);
      return raw.length;
    } finally {
      this.target = null;
    }
  }
}
