import { createHash } from 'node:crypto';
import type { DType } from '@wgit/core';
import { WgitError } from '@wgit/core/errors';
import { layoutFor } from './codec/format.js';
import { type ChunkEncoding, decodeChunk, encodeChunk } from './codec/index.js';

/**
 * The chunk file format and the one set of rules for reading and writing it,
 * with no I/O: every reader (the async ChunkStore over any backend, the
 * synchronous worker-thread ChunkIO over the local folder) loads files its own
 * way and hands them to decodeChunkChain; every writer encodes through
 * encodeChunkFor. File layout (little-endian):
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
 *
 * Files are named by the sha256 of the chunk's raw bytes, whatever encoding
 * stores them, so an identical chunk is stored once however it was coded.
 */
const MAGIC = 0x48434757; // "WGCH" read as u32 LE
const ENCODINGS: ChunkEncoding[] = ['raw', 'zipnn', 'xor-zipnn'];
export const HASH_RE = /^[0-9a-f]{64}$/;

/** Longest possible chunk header: fixed part, base id, a dtype name of up to 255 bytes. */
export const MAX_CHUNK_HEADER = 16 + 32 + 255;

/** Chunk lengths are u32 in the file header. */
export const MAX_RAW = 0xffffffff;

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

export function sha256hex(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

export function corrupt(id: string, why: string): WgitError {
  return new WgitError('E_CORRUPT_CHUNK', `chunk ${id.slice(0, 12)} is corrupt: ${why}`, { chunk: id });
}

export function missing(id: string): WgitError {
  return new WgitError('E_MISSING_CHUNK', `chunk ${id.slice(0, 12)} is missing`, { chunk: id });
}

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
 * Checks a parsed header against what the reader expects before the payload
 * is read: `rawLength` comes from the caller (the record, or the delta that
 * needs this base), so a damaged header cannot make a reader allocate or read
 * more than one chunk; the codec never stores a payload longer than the raw
 * bytes.
 */
export function checkChunkBounds(id: string, h: ChunkHeader, rawLength: number | undefined): void {
  if (rawLength !== undefined && h.rawLength !== rawLength)
    throw corrupt(id, `has ${h.rawLength} bytes, expected ${rawLength}`);
  if (h.payloadLength > h.rawLength) throw corrupt(id, 'payload longer than the raw chunk');
}

/** A chunk file as a reader loaded it: checked by parseChunkHeader and checkChunkBounds. */
export interface LoadedChunk {
  header: ChunkHeader;
  /** The whole file; null when `raw` is given. */
  file: Uint8Array | null;
  /**
   * The chunk's bytes, already decoded (a reader's cache): the chain below it
   * is not decoded again. Verified against the id unless `unchecked`.
   */
  raw?: Uint8Array;
  /**
   * `raw` was decoded as a delta base and never hashed (see `checkBases`):
   * good enough as a base for a chunk that is hashed itself, and hashed
   * before it is handed out as a chunk of its own.
   */
  unchecked?: boolean;
}

/** Where decodeChunkChain gets chunk files from: synchronous, so worker threads can use it as is. */
export interface ChunkFiles {
  /**
   * Loads the chunk file `id` (E_MISSING_CHUNK, E_CORRUPT_CHUNK), checked with
   * checkChunkBounds against `rawLength`. `level` is the position in the delta
   * chain (0 = the chunk asked for), so a reader can keep one buffer per level.
   */
  load(id: string, rawLength: number | undefined, level: number): LoadedChunk;
  /** A buffer of `rawLength` bytes for the decoded chunk at `level`; a fresh one when absent. */
  output?(level: number, rawLength: number): Uint8Array;
  /** Called with every chunk decoded and verified, bases included, and with an `unchecked` raw once hashed. */
  decoded?(id: string, raw: Uint8Array, header: ChunkHeader): void;
  /** Called with every base decoded without a hash check (`checkBases: false`). */
  decodedUnchecked?(id: string, raw: Uint8Array, header: ChunkHeader): void;
}

export interface ChainOptions {
  /**
   * false: delta bases are decoded without hashing them; only the chunk asked
   * for is hashed. That still proves the returned bytes right: a wrong base
   * XORed in gives bytes that do not match the id. It does not prove the base
   * right (a damaged base and a damaged delta could make up for each other),
   * so such bases come back through `decodedUnchecked` and must be hashed
   * before they are returned as chunks themselves (LoadedChunk.unchecked).
   * Errors then may name the top chunk where a full check would name the
   * damaged base: decodeChunkShared decodes again with every level checked
   * before it reports one. Default true.
   */
  checkBases?: boolean;
}

/**
 * The raw bytes of chunk `id`, decoded through its delta chain and checked
 * against its id: each base must be exactly one level shallower (so damaged
 * files cannot make a reader loop) and no deeper than `maxDepth` allows.
 */
export function decodeChunkChain(
  files: ChunkFiles,
  id: string,
  rawLength: number | undefined,
  maxDepth: number,
  opts: ChainOptions = {},
): Uint8Array {
  return decodeLoaded(files, id, files.load(id, rawLength, 0), maxDepth, 0, undefined, opts.checkBases ?? true);
}

/**
 * A chunk decoded with its bases unchecked (`files`, which may serve bases
 * other reads decoded: LoadedChunk.raw) and the chunk itself hashed. Any
 * failure is decoded again through `strict`, which loads every file afresh
 * and checks every level, so the error names the damaged chunk exactly as a
 * plain decodeChunkChain does (and a file repaired in between reads fine).
 */
export function decodeChunkShared(
  files: ChunkFiles,
  strict: ChunkFiles,
  id: string,
  rawLength: number,
  maxDepth: number,
  /** Called before the strict decode: what `files` got from the failed attempt is suspect. */
  onRetry?: () => void,
): Uint8Array {
  try {
    return decodeChunkChain(files, id, rawLength, maxDepth, { checkBases: false });
  } catch {
    onRetry?.();
    return decodeChunkChain(strict, id, rawLength, maxDepth);
  }
}

function checkRaw(id: string, raw: Uint8Array, h: ChunkHeader): void {
  if (raw.length !== h.rawLength || sha256hex(raw) !== id) throw corrupt(id, 'content does not match its hash');
}

function decodeLoaded(
  files: ChunkFiles,
  id: string,
  c: LoadedChunk,
  maxDepth: number,
  level: number,
  wantDepth: number | undefined,
  checkBases: boolean,
): Uint8Array {
  const h = c.header;
  if (h.depth > maxDepth) throw corrupt(id, `delta chain deeper (${h.depth}) than allowed (${maxDepth})`);
  if (wantDepth !== undefined && h.depth !== wantDepth) throw corrupt(id, 'inconsistent delta depth');
  const check = level === 0 || checkBases;
  if (c.raw) {
    if (c.unchecked && check) {
      checkRaw(id, c.raw, h);
      files.decoded?.(id, c.raw, h);
    }
    return c.raw;
  }
  let base: Uint8Array | undefined;
  if (h.base) {
    let bc: LoadedChunk | null = null;
    let err: unknown = null;
    try {
      bc = files.load(h.base, h.rawLength, level + 1);
    } catch (e) {
      err = e;
    }
    // A depth byte that does not follow the base's is this chunk's damage, not the base's.
    if (bc && bc.header.depth !== h.depth - 1)
      throw corrupt(id, `its delta depth ${h.depth} does not follow its base's depth ${bc.header.depth}`);
    try {
      if (!bc) throw err;
      base = decodeLoaded(files, h.base, bc, h.depth - 1, level + 1, h.depth - 1, checkBases);
    } catch (e) {
      throw new WgitError(
        'E_CORRUPT_CHUNK',
        `chunk ${id.slice(0, 12)}: its delta base is unreadable (${(e as Error)?.message ?? e})`,
        { chunk: id, base: h.base },
      );
    }
  }
  const out = files.output?.(level, h.rawLength);
  let raw: Uint8Array;
  try {
    raw = decodeChunk(
      { encoding: h.encoding, payload: c.file!.subarray(h.headerLength) },
      h.dtype,
      h.rawLength,
      base,
      out,
    );
  } catch (e) {
    throw corrupt(id, `cannot decode (${(e as Error).message})`);
  }
  // Callers get a plain Uint8Array view, whatever the codec handed back.
  const view = new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength);
  if (check) {
    checkRaw(id, view, h);
    files.decoded?.(id, view, h);
  } else {
    if (view.length !== h.rawLength) throw corrupt(id, 'content does not match its hash');
    files.decodedUnchecked?.(id, view, h);
  }
  return view;
}

/**
 * Whether the chunk file stored under `id` really holds `raw`: its whole
 * delta chain is read back and hashed (a raw chunk is compared byte for
 * byte). Content addressing only says what a file should hold; a damaged
 * file must not be trusted because its name matches. Null when it does not;
 * throws what `files.load` throws (E_MISSING_CHUNK when there is none).
 */
export function chunkHolds(files: ChunkFiles, id: string, raw: Uint8Array): ChunkHeader | null {
  const c = files.load(id, raw.length, 0);
  if (c.raw) return Buffer.compare(c.raw, raw) === 0 ? c.header : null;
  if (c.header.encoding === 'raw')
    return Buffer.compare(c.file!.subarray(c.header.headerLength), raw) === 0 ? c.header : null;
  try {
    decodeLoaded(files, id, c, 255, 0, undefined, true);
  } catch {
    return null;
  }
  return c.header;
}

/** A chunk ready to be written: the file is `head` followed by `payload`. */
export interface EncodedChunkFile {
  encoding: ChunkEncoding;
  depth: number;
  head: Buffer;
  payload: Uint8Array;
  stored: number;
}

/**
 * Encodes a chunk for storing. `base` is the parent's chunk at the same
 * position; it is offered to the codec only when the resulting chain stays
 * within `maxDepth`. The codec keeps the smallest of its encodings, and a
 * payload is never stored longer than the raw bytes.
 */
export function encodeChunkFor(
  id: string,
  raw: Uint8Array,
  dtype: DType,
  base: { id: string; raw: Uint8Array; depth: number } | null,
  maxDepth: number,
  into?: Uint8Array,
): EncodedChunkFile {
  const useBase = base !== null && base.depth + 1 <= maxDepth && base.raw.length === raw.length && base.id !== id;
  let enc = encodeChunk(raw, dtype, useBase ? base.raw : undefined, into ? { into } : {});
  if (enc.encoding === 'xor-zipnn' && !useBase) throw new Error('codec returned a delta without a base');
  if (enc.payload.length > raw.length) enc = { encoding: 'raw', payload: raw };
  const isDelta = enc.encoding === 'xor-zipnn';
  const depth = isDelta ? base!.depth + 1 : 0;
  const head = encodeChunkHeader(enc.encoding, depth, dtype, raw.length, isDelta ? base!.id : null, enc.payload.length);
  return { encoding: enc.encoding, depth, head, payload: enc.payload, stored: head.length + enc.payload.length };
}
