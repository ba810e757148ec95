import type { DType } from '@wgit/core';
import { isWgitError, WgitError } from '@wgit/core';
import {
  COMPRESSED_BIT,
  ENCODE_SEGMENT_BYTES,
  HEADER_BYTES,
  type Layout,
  layoutFor,
  MODE_XOR,
  MODE_ZIPNN,
  parseHeader,
  writeHeader,
} from './format.js';
import { merge, type Scratch, scratch, split } from './wasm.js';
import { compressBound, compressStream, decompressStream, type StreamCoder } from './zstd.js';

export type ChunkEncoding = 'raw' | 'zipnn' | 'xor-zipnn';

export interface EncodedChunk {
  encoding: ChunkEncoding;
  payload: Uint8Array;
}

// A stream this short cannot pay for a zstd frame header plus Huffman table.
const MIN_COMPRESS = 64;
// Streams are probed with a sample first: full-entropy mantissa bytes would
// otherwise cost as much encode time as the exponent that does compress.
const SAMPLE_BYTES = 16 << 10;
// Keep a stream compressed only when the sample saves at least this fraction.
const MIN_SAVING = 0.01;

let out = new Uint8Array(0);

function outBuffer(n: number): Uint8Array {
  if (out.length < n) out = new Uint8Array(Math.max(n, out.length * 2));
  return out;
}

function checkBytes(x: unknown, what: string): asserts x is Uint8Array {
  if (!(x instanceof Uint8Array)) {
    throw new WgitError('E_INVALID_ARGUMENT', `codec: ${what} must be a Uint8Array`, { what });
  }
}

function checkBase(base: Uint8Array | undefined, rawLength: number): asserts base is Uint8Array {
  if (base === undefined) {
    throw new WgitError('E_CHUNK_BASE_MISMATCH', 'codec: an xor-zipnn chunk needs its base chunk', { rawLength });
  }
  checkBytes(base, 'base');
  if (base.length !== rawLength) {
    throw new WgitError(
      'E_CHUNK_BASE_MISMATCH',
      `codec: base chunk has ${base.length} bytes, the chunk has ${rawLength}`,
      { rawLength, baseLength: base.length },
    );
  }
}

/**
 * Chooses the coder for one regrouped stream and writes it at `dst`.
 * Returns the stored size and whether it is a zstd frame.
 */
function encodeStream(s: Scratch, at: number, n: number, dst: Uint8Array, pos: number): number {
  const src = s.mem.subarray(at, at + n);
  if (n >= MIN_COMPRESS) {
    // Half zeros or more (high bytes of small ints, XOR against a close
    // parent) means long runs: LZ beats a Huffman code's 1 bit per byte floor.
    const coder: StreamCoder = s.k.countZero(at, n) * 2 >= n ? 'lz' : 'huffman';
    let worth = true;
    if (coder === 'huffman' && n > 4 * SAMPLE_BYTES) {
      const mid = at + ((n >>> 1) & ~63);
      const probe = compressStream(dst.subarray(pos), s.mem.subarray(mid, mid + SAMPLE_BYTES), 'huffman');
      worth = probe < SAMPLE_BYTES * (1 - MIN_SAVING);
    }
    if (worth) {
      const c = compressStream(dst.subarray(pos), src, coder);
      if (c < n) return c | COMPRESSED_BIT;
    }
  }
  dst.set(src, pos);
  return n;
}

function encodeWith(raw: Uint8Array, layout: Layout, base: Uint8Array | undefined): Uint8Array {
  const w = layout.width;
  const rot = layout.id === 1;
  const tail = raw.length % w;
  const elements = (raw.length - tail) / w;
  const segElems = Math.max(1, Math.floor(ENCODE_SEGMENT_BYTES / w));
  const segments = Math.ceil(elements / segElems);
  const tableEnd = HEADER_BYTES + 4 * segments * w;
  const perSegment = w * Math.max(compressBound(Math.min(segElems, elements)), Math.min(segElems, elements));
  const dst = outBuffer(tableEnd + segments * perSegment + tail);
  writeHeader(dst, base ? MODE_XOR : MODE_ZIPNN, layout, raw.length, segElems, segments);
  const table = new DataView(dst.buffer, dst.byteOffset + HEADER_BYTES, 4 * segments * w);
  const s = scratch(Math.min(segElems, elements) * w);
  let pos = tableEnd;
  for (let seg = 0; seg < segments; seg++) {
    const first = seg * segElems;
    const n = Math.min(segElems, elements - first);
    const bytes = n * w;
    s.mem.set(raw.subarray(first * w, first * w + bytes), s.data);
    if (base) {
      s.mem.set(base.subarray(first * w, first * w + bytes), s.base);
      s.k.xorBytes(s.data, s.base, s.data, bytes);
    }
    split(s, s.data, s.streams, n, w, rot);
    for (let k = 0; k < w; k++) {
      const word = encodeStream(s, s.streams + k * n, n, dst, pos);
      table.setUint32(4 * (seg * w + k), word, true);
      pos += word & ~COMPRESSED_BIT;
    }
  }
  for (let i = raw.length - tail; i < raw.length; i++) dst[pos++] = base ? raw[i] ^ base[i] : raw[i];
  return dst.slice(0, pos);
}

/**
 * Encodes one chunk of a tensor losslessly. `base`, when given, is the parent
 * commit's chunk at the same position (same length); the XOR with it is tried
 * as well. Returns the smallest of zipnn, xor-zipnn and raw.
 */
export function encodeChunk(raw: Uint8Array, dtype: DType, base?: Uint8Array): EncodedChunk {
  checkBytes(raw, 'raw');
  const layout = layoutFor(dtype);
  if (base !== undefined) checkBase(base, raw.length);
  let best: EncodedChunk | null = null;
  if (raw.length > HEADER_BYTES) {
    const plain = encodeWith(raw, layout, undefined);
    if (plain.length < raw.length) best = { encoding: 'zipnn', payload: plain };
    if (base) {
      const delta = encodeWith(raw, layout, base);
      if (delta.length < (best ?? { payload: raw }).payload.length) best = { encoding: 'xor-zipnn', payload: delta };
    }
  }
  // a copy, so the caller may reuse its read buffer while the payload is queued
  return best ?? { encoding: 'raw', payload: raw.slice() };
}

/**
 * Inverse of encodeChunk. Validates the payload against `dtype` and
 * `rawLength` (which come from the tensor record, not from the payload) and
 * throws E_CHUNK_CORRUPT on anything inconsistent. Allocates the result
 * (rawLength bytes) plus bounded scratch; never trusts a length it reads.
 *
 * `into` (optional, exactly rawLength bytes, may be `base` itself but not the
 * payload) receives the bytes instead of a fresh array: decoding straight into
 * a tensor buffer skips an allocation whose page faults cost more than the
 * decoding on some machines.
 */
export function decodeChunk(
  chunk: EncodedChunk,
  dtype: DType,
  rawLength: number,
  base?: Uint8Array,
  into?: Uint8Array,
): Uint8Array {
  if (!Number.isSafeInteger(rawLength) || rawLength < 0) {
    throw new WgitError('E_INVALID_ARGUMENT', `codec: raw length ${rawLength} is not a byte count`, { rawLength });
  }
  if (into !== undefined) {
    checkBytes(into, 'into');
    if (into.length !== rawLength) {
      throw new WgitError(
        'E_INVALID_ARGUMENT',
        `codec: output buffer has ${into.length} bytes, expected ${rawLength}`,
        {
          rawLength,
          intoLength: into.length,
        },
      );
    }
  }
  const encoding = chunk?.encoding;
  const payload = chunk?.payload;
  checkBytes(payload, 'payload');
  if (encoding === 'raw') {
    layoutFor(dtype);
    if (payload.length !== rawLength) {
      throw new WgitError(
        'E_CHUNK_CORRUPT',
        `corrupt chunk payload: raw chunk of ${payload.length} bytes, expected ${rawLength}`,
        {
          rawLength,
          payloadLength: payload.length,
        },
      );
    }
    if (into) {
      into.set(payload);
      return into;
    }
    return payload.slice();
  }
  if (encoding !== 'zipnn' && encoding !== 'xor-zipnn') {
    throw new WgitError('E_CHUNK_CORRUPT', `corrupt chunk: unknown encoding ${JSON.stringify(encoding)}`, {
      encoding,
    });
  }
  const xor = encoding === 'xor-zipnn';
  if (xor) checkBase(base, rawLength);
  const h = parseHeader(payload, dtype, rawLength, xor ? MODE_XOR : MODE_ZIPNN);
  const w = h.layout.width;
  const rot = h.layout.id === 1;
  const result = into ?? new Uint8Array(rawLength);
  const s = scratch(Math.min(h.segElems, h.elements) * w);
  let pos = h.bodyStart;
  for (let seg = 0; seg < h.segments; seg++) {
    const first = seg * h.segElems;
    const n = Math.min(h.segElems, h.elements - first);
    for (let k = 0; k < w; k++) {
      const e = seg * w + k;
      const size = h.sizes[e];
      const at = s.streams + k * n;
      const src = payload.subarray(pos, pos + size);
      if (h.compressed[e]) {
        let got: number;
        try {
          got = decompressStream(s.mem.subarray(at, at + n), src);
        } catch (err) {
          if (isWgitError(err)) throw err;
          throw new WgitError(
            'E_CHUNK_CORRUPT',
            `corrupt chunk payload: stream ${k} of segment ${seg}: ${(err as Error).message}`,
            {
              segment: seg,
              stream: k,
            },
          );
        }
        if (got !== n) {
          throw new WgitError(
            'E_CHUNK_CORRUPT',
            `corrupt chunk payload: stream ${k} of segment ${seg} decodes to ${got} of ${n} bytes`,
            {
              segment: seg,
              stream: k,
            },
          );
        }
      } else {
        s.mem.set(src, at);
      }
      pos += size;
    }
    const bytes = n * w;
    merge(s, s.streams, s.data, n, w, rot);
    if (xor) {
      s.mem.set((base as Uint8Array).subarray(first * w, first * w + bytes), s.base);
      s.k.xorBytes(s.data, s.base, s.data, bytes);
    }
    result.set(s.mem.subarray(s.data, s.data + bytes), first * w);
  }
  for (let i = rawLength - h.tail; i < rawLength; i++) {
    result[i] = xor ? payload[pos++] ^ (base as Uint8Array)[i] : payload[pos++];
  }
  return result;
}
