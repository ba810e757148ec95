import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import type { DType } from '@wgit/core';
import { WgitError } from '@wgit/core/errors';
import { layoutFor } from './codec/format.js';
import { type ChunkEncoding, decodeChunk, encodeChunk } from './codec/index.js';
import { atomicWrite, exists } from './fsutil.js';

/**
 * Content-addressed chunk files: `chunks/ab/cdef…` named by the sha256 of the
 * chunk's raw bytes, whatever encoding stores them, so an identical chunk is
 * stored once however it was coded. File layout (little-endian):
 *
 *   0  4  magic "WGCH"
 *   4  1  version (1)
 *   5  1  encoding: 0 raw, 1 zipnn, 2 xor-zipnn
 *   6  1  delta depth: 0, or 1 + the base's depth for xor-zipnn
 *   7  1  dtype name length n
 *   8  4  raw length
 *  12  4  payload length
 *  16  32 base chunk id (sha256), only for xor-zipnn
 *   …  n  dtype name (ASCII)
 *   …     payload
 */
const MAGIC = 0x48434757; // "WGCH" read as u32 LE
const ENCODINGS: ChunkEncoding[] = ['raw', 'zipnn', 'xor-zipnn'];
export const HASH_RE = /^[0-9a-f]{64}$/;

export interface ChunkHeader {
  encoding: ChunkEncoding;
  depth: number;
  dtype: DType;
  rawLength: number;
  payloadLength: number;
  base: string | null;
  headerLength: number;
  fileSize: number;
}

export interface PutResult {
  id: string;
  encoding: ChunkEncoding;
  depth: number;
  stored: number;
  created: boolean;
}

export function sha256hex(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

export function corrupt(id: string, why: string): WgitError {
  return new WgitError('E_CORRUPT_CHUNK', `chunk ${id.slice(0, 12)} is corrupt: ${why}`, { chunk: id });
}

export function missing(id: string): WgitError {
  return new WgitError('E_MISSING_CHUNK', `chunk ${id.slice(0, 12)} is missing`, { chunk: id });
}

/** Longest possible chunk header: fixed part, base id, a dtype name of up to 255 bytes. */
export const MAX_CHUNK_HEADER = 16 + 32 + 255;

/** The fixed part of a chunk file, written before the payload (no copy of the payload is made). */
export function encodeChunkHeader(
  encoding: ChunkEncoding,
  depth: number,
  dtype: DType,
  rawLength: number,
  base: string | null,
  payloadLength: number,
): Buffer {
  const dt = Buffer.from(dtype, 'ascii');
  const baseLen = encoding === 'xor-zipnn' ? 32 : 0;
  const head = Buffer.alloc(16 + baseLen + dt.length);
  head.writeUInt32LE(MAGIC, 0);
  head[4] = 1;
  head[5] = ENCODINGS.indexOf(encoding);
  head[6] = depth;
  head[7] = dt.length;
  head.writeUInt32LE(rawLength, 8);
  head.writeUInt32LE(payloadLength, 12);
  if (baseLen) Buffer.from(base!, 'hex').copy(head, 16);
  dt.copy(head, 16 + baseLen);
  return head;
}

export function encodeChunkFile(
  encoding: ChunkEncoding,
  depth: number,
  dtype: DType,
  rawLength: number,
  base: string | null,
  payload: Uint8Array,
): Uint8Array {
  return Buffer.concat([encodeChunkHeader(encoding, depth, dtype, rawLength, base, payload.length), payload]);
}

/** Every dtype the codec has a layout for, which is every safetensors dtype wgit accepts. */
function knownDType(s: string): s is DType {
  try {
    layoutFor(s as DType);
    return true;
  } catch {
    return false;
  }
}

async function readFullyAsync(fh: fsp.FileHandle, buf: Uint8Array, id: string): Promise<void> {
  let off = 0;
  while (off < buf.length) {
    const { bytesRead } = await fh.read(buf, off, buf.length - off, off);
    if (bytesRead === 0) throw corrupt(id, 'file shrank while being read');
    off += bytesRead;
  }
}

export function parseChunkHeader(id: string, buf: Uint8Array, fileSize: number): ChunkHeader {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (b.length < 16 || b.readUInt32LE(0) !== MAGIC) throw corrupt(id, 'bad magic');
  if (b[4] !== 1) throw corrupt(id, `unknown version ${b[4]}`);
  const encoding = ENCODINGS[b[5]];
  if (!encoding) throw corrupt(id, `unknown encoding ${b[5]}`);
  const depth = b[6];
  const baseLen = encoding === 'xor-zipnn' ? 32 : 0;
  if (depth > 0 !== baseLen > 0) throw corrupt(id, 'delta depth does not match the encoding');
  const n = b[7];
  const headerLength = 16 + baseLen + n;
  if (b.length < headerLength) throw corrupt(id, 'truncated header');
  const dtype = b.toString('ascii', 16 + baseLen, headerLength);
  if (!knownDType(dtype)) throw corrupt(id, `unknown dtype ${JSON.stringify(dtype)}`);
  const rawLength = b.readUInt32LE(8);
  const payloadLength = b.readUInt32LE(12);
  if (headerLength + payloadLength !== fileSize) throw corrupt(id, 'file length does not match its header');
  const base = baseLen ? b.toString('hex', 16, 48) : null;
  return { encoding, depth, dtype, rawLength, payloadLength, base, headerLength, fileSize };
}

/**
 * Open flags for reading a chunk file: a symbolic link is refused (ELOOP)
 * instead of followed, and opening a FIFO does not block. What is opened must
 * then be a regular file (checkChunkStat): a FIFO, a device or a link to
 * /dev/zero where a chunk should be is reported, never read.
 */
const OPEN_CHUNK = fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK;

function openError(id: string, file: string, e: unknown): WgitError {
  const code = (e as NodeJS.ErrnoException)?.code;
  if (code === 'ENOENT' || code === 'ENOTDIR') return missing(id);
  if (code === 'ELOOP') return corrupt(id, `${file} is a symbolic link, not a chunk file`);
  return corrupt(id, `cannot open ${file} (${code ?? (e as Error)?.message})`);
}

/**
 * A chunk file must be a regular file no longer than its longest possible
 * header plus `maxPayload` bytes (the codec never stores more than the raw
 * chunk), so a damaged or hostile store cannot make a reader allocate or read
 * more than one chunk.
 */
function checkChunkStat(id: string, file: string, st: fs.Stats, maxPayload: number): void {
  if (!st.isFile()) throw corrupt(id, `${file} is not a regular file`);
  if (st.size > MAX_CHUNK_HEADER + maxPayload)
    throw corrupt(id, `${file} is larger (${st.size} bytes) than a chunk of ${maxPayload} bytes can be`);
}

/** Opens a chunk file for reading (see OPEN_CHUNK); the caller closes the descriptor. */
export function openChunkSync(id: string, file: string, maxPayload: number): { fd: number; size: number } {
  let fd: number;
  try {
    fd = fs.openSync(file, OPEN_CHUNK);
  } catch (e) {
    throw openError(id, file, e);
  }
  try {
    const st = fs.fstatSync(fd);
    checkChunkStat(id, file, st, maxPayload);
    return { fd, size: st.size };
  } catch (e) {
    fs.closeSync(fd);
    throw e;
  }
}

/** Like openChunkSync, `null` when there is no chunk file at all. */
export function openExistingChunkSync(
  id: string,
  file: string,
  maxPayload: number,
): { fd: number; size: number } | null {
  try {
    return openChunkSync(id, file, maxPayload);
  } catch (e) {
    if ((e as WgitError).code === 'E_MISSING_CHUNK') return null;
    throw e;
  }
}

async function openChunk(id: string, file: string, maxPayload: number): Promise<{ fh: fsp.FileHandle; size: number }> {
  let fh: fsp.FileHandle;
  try {
    fh = await fsp.open(file, OPEN_CHUNK);
  } catch (e) {
    throw openError(id, file, e);
  }
  try {
    const st = await fh.stat();
    checkChunkStat(id, file, st, maxPayload);
    return { fh, size: st.size };
  } catch (e) {
    await fh.close();
    throw e;
  }
}

/** Chunk lengths are u32 in the file header. */
const MAX_RAW = 0xffffffff;

export class ChunkStore {
  private readonly cache = new Map<string, Uint8Array>();
  private cachedBytes = 0;

  /**
   * `cacheBytes` > 0 keeps recently verified chunks in memory (LRU), which
   * makes walking whole histories (fsck) decode each delta base once instead
   * of once per descendant. Only short-lived stores should cache: a cached
   * chunk is not re-read from disk.
   */
  constructor(
    readonly dir: string,
    readonly tmpDir: string,
    private readonly cacheBytes = 0,
  ) {}

  private remember(id: string, raw: Uint8Array): void {
    if (this.cacheBytes <= 0 || raw.length > this.cacheBytes / 4) return;
    this.cache.set(id, raw);
    this.cachedBytes += raw.length;
    for (const [k, v] of this.cache) {
      if (this.cachedBytes <= this.cacheBytes) break;
      this.cache.delete(k);
      this.cachedBytes -= v.length;
    }
  }

  pathOf(id: string): string {
    return path.join(this.dir, id.slice(0, 2), id.slice(2));
  }

  has(id: string): Promise<boolean> {
    return exists(this.pathOf(id));
  }

  async readHeader(id: string): Promise<ChunkHeader> {
    const { fh, size } = await openChunk(id, this.pathOf(id), MAX_RAW);
    try {
      const buf = Buffer.alloc(Math.min(size, MAX_CHUNK_HEADER));
      await readFullyAsync(fh, buf, id);
      return parseChunkHeader(id, buf, size);
    } finally {
      await fh.close();
    }
  }

  /** The raw bytes of a chunk, decoded through its delta chain and checked against its id. Callers must not modify them. */
  async get(id: string, maxDepth = 255, rawLength?: number): Promise<Uint8Array> {
    const hit = this.cache.get(id);
    if (hit) {
      this.cache.delete(id);
      this.cache.set(id, hit);
      return hit;
    }
    // The header is read and checked before the file is: nothing larger than one chunk is ever allocated.
    const { fh, size } = await openChunk(id, this.pathOf(id), rawLength ?? MAX_RAW);
    let file: Buffer;
    let h: ChunkHeader;
    try {
      const head = Buffer.alloc(Math.min(size, MAX_CHUNK_HEADER));
      await readFullyAsync(fh, head, id);
      h = parseChunkHeader(id, head, size);
      if (rawLength !== undefined && h.rawLength !== rawLength)
        throw corrupt(id, `has ${h.rawLength} bytes, expected ${rawLength}`);
      if (h.payloadLength > h.rawLength) throw corrupt(id, 'payload longer than the raw chunk');
      file = Buffer.allocUnsafe(size);
      await readFullyAsync(fh, file, id);
    } finally {
      await fh.close();
    }
    if (h.depth > maxDepth) throw corrupt(id, `delta chain deeper (${h.depth}) than allowed (${maxDepth})`);
    let base: Uint8Array | undefined;
    if (h.base) {
      const bh = await this.readHeader(h.base).catch((e) => {
        throw new WgitError(
          'E_CORRUPT_CHUNK',
          `chunk ${id.slice(0, 12)}: its delta base is unreadable (${e.message})`,
          {
            chunk: id,
            base: h.base,
          },
        );
      });
      // Depth must drop by one at each step: a hostile or damaged file can't make us loop.
      if (bh.depth !== h.depth - 1)
        throw corrupt(id, `its delta depth ${h.depth} does not follow its base's depth ${bh.depth}`);
      base = await this.get(h.base, h.depth - 1, h.rawLength).catch((e) => {
        throw new WgitError('E_CORRUPT_CHUNK', `chunk ${id.slice(0, 12)}: its delta base is corrupt (${e.message})`, {
          chunk: id,
          base: h.base,
        });
      });
      if (base.length !== h.rawLength) throw corrupt(id, 'delta base has a different length');
    }
    const payload = file.subarray(h.headerLength);
    let raw: Uint8Array;
    try {
      raw = decodeChunk({ encoding: h.encoding, payload }, h.dtype, h.rawLength, base);
    } catch (e) {
      throw corrupt(id, `cannot decode (${(e as Error).message})`);
    }
    if (raw.length !== h.rawLength || sha256hex(raw) !== id) throw corrupt(id, 'content does not match its hash');
    // Callers get a plain Uint8Array view, whatever the codec handed back.
    const view = new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength);
    this.remember(id, view);
    return view;
  }

  /**
   * Stores a chunk unless one with the same raw bytes exists. `base` is the
   * parent's chunk at the same position; it is offered to the codec only when
   * the resulting chain stays within maxDepth.
   */
  async put(
    id: string,
    raw: Uint8Array,
    dtype: DType,
    base: { id: string; raw: Uint8Array; depth: number } | null,
    maxDepth: number,
  ): Promise<PutResult> {
    const file = this.pathOf(id);
    if (await exists(file)) {
      // Reused only when it reads back intact; a damaged chunk is replaced below.
      try {
        const h = await this.readHeader(id);
        const back = await this.get(id);
        if (back.length === raw.length)
          return { id, encoding: h.encoding, depth: h.depth, stored: h.fileSize, created: false };
      } catch {
        this.cache.delete(id);
      }
    }
    const useBase = base && base.depth + 1 <= maxDepth && base.raw.length === raw.length && base.id !== id;
    let enc = encodeChunk(raw, dtype, useBase ? base.raw : undefined);
    if (enc.encoding === 'xor-zipnn' && !useBase) throw new Error('codec returned a delta without a base');
    if (enc.payload.length > raw.length) enc = { encoding: 'raw', payload: raw };
    const isDelta = enc.encoding === 'xor-zipnn';
    const depth = isDelta ? base!.depth + 1 : 0;
    const bytes = encodeChunkFile(enc.encoding, depth, dtype, raw.length, isDelta ? base!.id : null, enc.payload);
    await fsp.mkdir(path.dirname(file), { recursive: true });
    await atomicWrite(this.tmpDir, file, bytes);
    return { id, encoding: enc.encoding, depth, stored: bytes.length, created: true };
  }

  /** Every chunk id present, by walking the fan-out folders. */
  async list(): Promise<string[]> {
    const out: string[] = [];
    let fans: string[];
    try {
      fans = await fsp.readdir(this.dir);
    } catch {
      return out;
    }
    for (const fan of fans) {
      if (!/^[0-9a-f]{2}$/.test(fan)) continue;
      for (const rest of await fsp.readdir(path.join(this.dir, fan)).catch(() => [] as string[])) {
        const id = fan + rest;
        if (HASH_RE.test(id)) out.push(id);
      }
    }
    return out.sort();
  }
}
