import * as fs from 'node:fs';
import * as path from 'node:path';
import type { DType } from '@wgit/core';
import { WgitError } from '@wgit/core/errors';
import {
  type ChunkHeader,
  corrupt,
  encodeChunkHeader,
  MAX_CHUNK_HEADER,
  openChunkSync,
  openExistingChunkSync,
  parseChunkHeader,
  sha256hex,
} from './chunkstore.js';
import { type ChunkEncoding, decodeChunk, encodeChunk } from './codec/index.js';
import { checkFault, tempName } from './fsutil.js';

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

/** Checkout: read, verify and decode one chunk and write it at `position` of the open file `fd`. */
export interface GetJob {
  op: 'get';
  id: string;
  rawLength: number;
  fd: number;
  position: number;
}

export type ChunkJob = PutJob | GetJob;
export type JobResult<J extends ChunkJob> = J extends PutJob ? PutDone : number;

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
  // Existing chunks this operation read back and found intact: reused without
  // a second check. Forgotten at close, since gc may delete an unreferenced
  // chunk between two operations.
  private readonly verified = new Set<string>();

  constructor(
    readonly chunksDir: string,
    readonly tmpDir: string,
  ) {}

  pathOf(id: string): string {
    return path.join(this.chunksDir, id.slice(0, 2), id.slice(2));
  }

  run<J extends ChunkJob>(job: J): JobResult<J> {
    if (job.op === 'put') return this.put(job) as JobResult<J>;
    return this.get(job) as JobResult<J>;
  }

  /** Closes the model files opened by put jobs and forgets this operation's chunks. */
  close(): void {
    for (const fd of this.inputs.values()) fs.closeSync(fd);
    this.inputs.clear();
    this.made.clear();
    this.verified.clear();
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
   * The header of an existing chunk file of `rawLength` bytes, or null when
   * there is none. A file that is there but unusable (not a regular file, a
   * damaged header, another length) throws E_CORRUPT_CHUNK.
   */
  private existing(id: string, rawLength: number): ChunkHeader | null {
    const file = this.pathOf(id);
    const opened = openExistingChunkSync(id, file, rawLength);
    if (!opened) return null;
    try {
      const head = this.header.subarray(0, Math.min(opened.size, MAX_CHUNK_HEADER));
      readFully(opened.fd, head, 0, file);
      const h = parseChunkHeader(id, head, opened.size);
      if (h.rawLength !== rawLength) throw corrupt(id, `has ${h.rawLength} bytes, expected ${rawLength}`);
      return h;
    } finally {
      fs.closeSync(opened.fd);
    }
  }

  /** Whether anything at all (even a damaged file or a link) sits at the chunk's path. */
  private present(id: string): boolean {
    try {
      fs.lstatSync(this.pathOf(id));
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Whether the chunk file already stored under `id` really holds `raw`: its
   * whole delta chain is read back and hashed (a raw chunk is compared byte
   * for byte). Content addressing only says what a file should hold; a
   * damaged file must not be trusted because its name matches.
   */
  private intact(id: string, raw: Uint8Array): ChunkHeader | null {
    if (this.verified.has(id)) return this.existing(id, raw.length);
    try {
      const h = this.existing(id, raw.length);
      if (!h) return null;
      if (h.encoding === 'raw') {
        const { fd, size } = openChunkSync(id, this.pathOf(id), raw.length);
        try {
          this.files[0] = grow(this.files[0] ?? new Uint8Array(0), size);
          const file = this.files[0].subarray(0, size);
          readFully(fd, file, 0, this.pathOf(id));
          if (Buffer.compare(file.subarray(h.headerLength), raw) !== 0) return null;
        } finally {
          fs.closeSync(fd);
        }
      } else this.read(id, raw.length, 255, 0);
      this.verified.add(id);
      return h;
    } catch {
      return null;
    }
  }

  /**
   * Reads a chunk through its delta chain into this level's output buffer and
   * checks its sha256. `rawLength` comes from the caller (the record, or the
   * delta that needs this base), so a damaged header cannot make us allocate
   * or read more than a chunk; `wantDepth` makes each base exactly one level
   * shallower, so a hostile chain cannot loop.
   */
  private read(id: string, rawLength: number, maxDepth: number, level: number, wantDepth?: number): Uint8Array {
    const { fd, size } = openChunkSync(id, this.pathOf(id), rawLength);
    let h: ChunkHeader;
    let file: Uint8Array;
    try {
      const head = this.header.subarray(0, Math.min(size, MAX_CHUNK_HEADER));
      readFully(fd, head, 0, this.pathOf(id));
      h = parseChunkHeader(id, head, size);
      if (h.rawLength !== rawLength) throw corrupt(id, `has ${h.rawLength} bytes, expected ${rawLength}`);
      // The codec never stores a payload longer than the raw bytes.
      if (h.payloadLength > rawLength) throw corrupt(id, 'payload longer than the raw chunk');
      if (h.depth > maxDepth) throw corrupt(id, `delta chain deeper (${h.depth}) than allowed (${maxDepth})`);
      if (wantDepth !== undefined && h.depth !== wantDepth) throw corrupt(id, 'inconsistent delta depth');
      this.files[level] = grow(this.files[level] ?? new Uint8Array(0), size);
      file = this.files[level].subarray(0, size);
      readFully(fd, file, 0, this.pathOf(id));
    } finally {
      fs.closeSync(fd);
    }
    let base: Uint8Array | undefined;
    if (h.base) {
      // A depth byte that does not follow the base's is this chunk's damage, not the base's.
      let bh: ChunkHeader | null = null;
      try {
        bh = this.existing(h.base, rawLength);
      } catch {
        // Reported below, as an unreadable base.
      }
      if (bh && bh.depth !== h.depth - 1)
        throw corrupt(id, `its delta depth ${h.depth} does not follow its base's depth ${bh.depth}`);
      try {
        base = this.read(h.base, rawLength, h.depth - 1, level + 1, h.depth - 1);
      } catch (e) {
        throw new WgitError(
          'E_CORRUPT_CHUNK',
          `chunk ${id.slice(0, 12)}: its delta base is unreadable (${(e as Error).message})`,
          { chunk: id, base: h.base },
        );
      }
    }
    this.outs[level] = grow(this.outs[level] ?? new Uint8Array(0), rawLength);
    const out = this.outs[level].subarray(0, rawLength);
    try {
      decodeChunk({ encoding: h.encoding, payload: file.subarray(h.headerLength) }, h.dtype, rawLength, base, out);
    } catch (e) {
      throw corrupt(id, `cannot decode (${(e as Error).message})`);
    }
    if (sha256hex(out) !== id) throw corrupt(id, 'content does not match its hash');
    return out;
  }

  private put(job: PutJob): PutDone {
    this.raw = grow(this.raw, job.length);
    const raw = this.raw.subarray(0, job.length);
    readFully(this.input(job.file), raw, job.position, job.file);
    const id = sha256hex(raw);
    const mine = this.made.get(id);
    if (mine) return { ...mine, tmp: null };
    // An existing chunk is reused only when it reads back intact; a damaged
    // one is written afresh and the new file replaces it (flushChunks).
    const have = this.intact(id, raw);
    if (have) return { id, encoding: have.encoding, depth: have.depth, stored: have.fileSize, tmp: null };
    const replaces = this.present(id);

    let base: Uint8Array | undefined;
    let baseDepth = 0;
    if (job.base && job.base !== id && job.maxDepth >= 1) {
      try {
        const h = this.existing(job.base, raw.length);
        if (h && h.depth + 1 <= job.maxDepth) {
          base = this.read(job.base, raw.length, job.maxDepth - 1, 0);
          baseDepth = h.depth;
        }
      } catch {
        // A damaged parent chunk only costs compression here; fsck reports it.
        base = undefined;
      }
    }
    this.encoded = grow(this.encoded, raw.length);
    let enc = encodeChunk(raw, job.dtype, base, { into: this.encoded });
    if (enc.encoding === 'xor-zipnn' && !base) throw new Error('codec returned a delta without a base');
    if (enc.payload.length > raw.length) enc = { encoding: 'raw', payload: raw };
    const isDelta = enc.encoding === 'xor-zipnn';
    const depth = isDelta ? baseDepth + 1 : 0;
    const head = encodeChunkHeader(
      enc.encoding,
      depth,
      job.dtype,
      raw.length,
      isDelta ? job.base : null,
      enc.payload.length,
    );
    const stored = head.length + enc.payload.length;
    const tmp = path.join(this.tmpDir, tempName('chunk'));
    checkFault(this.pathOf(id), stored);
    const fd = fs.openSync(tmp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o644);
    try {
      writeFully(fd, head, null);
      writeFully(fd, enc.payload, null);
    } catch (e) {
      fs.closeSync(fd);
      fs.rmSync(tmp, { force: true });
      throw e;
    }
    fs.closeSync(fd);
    const done: PutDone = { id, encoding: enc.encoding, depth, stored, tmp, ...(replaces ? { replaces } : {}) };
    this.made.set(id, done);
    return done;
  }

  private get(job: GetJob): number {
    const raw = this.read(job.id, job.rawLength, 255, 0);
    writeFully(job.fd, raw, job.position);
    return raw.length;
  }
}
