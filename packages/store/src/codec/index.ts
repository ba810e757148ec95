import type { DType } from '@wgit/core';
import { isWgitError, WgitError } from '@wgit/core/errors';
import {
  COMPRESSED_BIT,
  ENCODE_SEGMENT_BYTES,
  HEADER_BYTES,
  LAYOUT_PALETTE,
  type Layout,
  layoutFor,
  MAX_PALETTE,
  MODE_XOR,
  MODE_ZIPNN,
  type ParsedHeader,
  paletteWidth,
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

// Two reused candidate buffers: the best payload so far and the one being
// tried. Fresh multi-MiB allocations cost more than the encoding itself on
// machines with slow page faults, so candidates never get their own arrays.
const candidates: Uint8Array[] = [new Uint8Array(0), new Uint8Array(0)];

function candidate(slot: number, n: number): Uint8Array {
  if (candidates[slot].length < n) candidates[slot] = new Uint8Array(Math.max(n, candidates[slot].length * 2));
  return candidates[slot];
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

/** Writes the zipnn (or, with base, xor-zipnn) payload into candidate `slot`; returns its length. */
function encodeWith(raw: Uint8Array, layout: Layout, base: Uint8Array | undefined, slot: number): number {
  const w = layout.width;
  const rot = layout.id === 1;
  const tail = raw.length % w;
  const elements = (raw.length - tail) / w;
  const segElems = Math.max(1, Math.floor(ENCODE_SEGMENT_BYTES / w));
  const segments = Math.ceil(elements / segElems);
  const tableEnd = HEADER_BYTES + 4 * segments * w;
  const perSegment = w * Math.max(compressBound(Math.min(segElems, elements)), Math.min(segElems, elements));
  const dst = candidate(slot, tableEnd + segments * perSegment + tail);
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
  return pos;
}

// Typed-array views read elements in host byte order; the format is little-endian.
const HOST_LE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
// Elements sampled before a full pass: real-valued weights exceed 256 distinct values within a few hundred.
const PALETTE_SAMPLE = 4096;
const PALETTE_SAMPLE_DISTINCT = MAX_PALETTE;

function elementView(raw: Uint8Array, w: number, elements: number): Uint16Array | Uint32Array {
  const src = raw.byteOffset % w === 0 ? raw : raw.slice(0, elements * w);
  return w === 2
    ? new Uint16Array(src.buffer, src.byteOffset, elements)
    : new Uint32Array(src.buffer, src.byteOffset, elements);
}

/**
 * Weights that went through a quantizer (uint8 tfjs/TFLite weights
 * dequantized to f32, say) hold at most 256 distinct values per tensor. Byte
 * streams lose the link between an element's bytes there; an index per
 * element keeps it. Returns null when the chunk has more than 256 values.
 */
function buildPalette(raw: Uint8Array, w: number, elements: number): { values: number[]; indices: Uint8Array } | null {
  if (!HOST_LE || !paletteWidth(w) || elements < PALETTE_SAMPLE) return null;
  const v = elementView(raw, w, elements);
  const sample = new Set<number>();
  const stride = Math.floor(elements / PALETTE_SAMPLE);
  for (let i = 0; i < elements; i += stride) {
    sample.add(v[i]);
    if (sample.size > PALETTE_SAMPLE_DISTINCT) return null;
  }
  const index = new Map<number, number>();
  const values: number[] = [];
  const indices = new Uint8Array(elements);
  for (let i = 0; i < elements; i++) {
    const x = v[i];
    let k = index.get(x);
    if (k === undefined) {
      if (values.length === MAX_PALETTE) return null;
      k = values.length;
      values.push(x);
      index.set(x, k);
    }
    indices[i] = k;
  }
  return { values, indices };
}

/** Palette payload into candidate `slot`; its length, or -1 when the chunk has too many distinct values. */
function encodePalette(raw: Uint8Array, w: number, slot: number): number {
  const tail = raw.length % w;
  const elements = (raw.length - tail) / w;
  const p = buildPalette(raw, w, elements);
  if (!p) return -1;
  const segElems = Math.floor(ENCODE_SEGMENT_BYTES / w);
  const segments = Math.ceil(elements / segElems);
  const tableEnd = HEADER_BYTES + 4 * segments;
  const paletteBytes = 2 + p.values.length * w;
  const first = Math.min(segElems, elements);
  const dst = candidate(slot, tableEnd + paletteBytes + segments * Math.max(compressBound(first), first) + tail);
  writeHeader(dst, MODE_ZIPNN, { id: LAYOUT_PALETTE, width: w }, raw.length, segElems, segments);
  const dv = new DataView(dst.buffer, dst.byteOffset, dst.byteLength);
  dv.setUint16(tableEnd, p.values.length, true);
  for (let k = 0; k < p.values.length; k++) {
    if (w === 2) dv.setUint16(tableEnd + 2 + 2 * k, p.values[k], true);
    else dv.setUint32(tableEnd + 2 + 4 * k, p.values[k], true);
  }
  let pos = tableEnd + paletteBytes;
  const s = scratch(first * w);
  for (let seg = 0; seg < segments; seg++) {
    const start = seg * segElems;
    const n = Math.min(segElems, elements - start);
    s.mem.set(p.indices.subarray(start, start + n), s.streams);
    const word = encodeStream(s, s.streams, n, dst, pos);
    dv.setUint32(HEADER_BYTES + 4 * seg, word, true);
    pos += word & ~COMPRESSED_BIT;
  }
  for (let i = raw.length - tail; i < raw.length; i++) dst[pos++] = raw[i];
  return pos;
}

/** Expands one segment's indices (already at s.streams) into element bytes at s.data. */
function expandPalette(s: Scratch, payload: Uint8Array, h: ParsedHeader, n: number, seg: number): void {
  const w = h.layout.width;
  const dv = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const pal = w === 2 ? new Uint16Array(MAX_PALETTE) : new Uint32Array(MAX_PALETTE);
  for (let k = 0; k < h.paletteCount; k++) {
    pal[k] = w === 2 ? dv.getUint16(h.paletteAt + 2 * k, true) : dv.getUint32(h.paletteAt + 4 * k, true);
  }
  const idx = s.mem.subarray(s.streams, s.streams + n);
  const count = h.paletteCount;
  for (let i = 0; i < n; i++) {
    if (idx[i] >= count) {
      throw new WgitError(
        'E_CORRUPT_CHUNK',
        `corrupt chunk payload: palette index ${idx[i]} of ${count} in segment ${seg}`,
        {
          segment: seg,
        },
      );
    }
  }
  if (HOST_LE) {
    const out = w === 2 ? new Uint16Array(s.mem.buffer, s.data, n) : new Uint32Array(s.mem.buffer, s.data, n);
    for (let i = 0; i < n; i++) out[i] = pal[idx[i]];
  } else {
    const out = new DataView(s.mem.buffer, s.data, n * w);
    for (let i = 0; i < n; i++) {
      if (w === 2) out.setUint16(2 * i, pal[idx[i]], true);
      else out.setUint32(4 * i, pal[idx[i]], true);
    }
  }
}

export interface EncodeOptions {
  /**
   * Where to put the payload (at least raw.length bytes: a payload is never
   * longer than the raw chunk). The result's payload is then a view of it,
   * valid until the caller reuses the buffer; without it the payload is a
   * fresh array.
   */
  into?: Uint8Array;
}

/**
 * Encodes one chunk of a tensor losslessly. `base`, when given, is the parent
 * commit's chunk at the same position (same length); the XOR with it is tried
 * as well. Returns the smallest of zipnn (byte streams or, for chunks of at
 * most 256 distinct values, a palette), xor-zipnn and raw.
 */
export function encodeChunk(raw: Uint8Array, dtype: DType, base?: Uint8Array, opts: EncodeOptions = {}): EncodedChunk {
  checkBytes(raw, 'raw');
  const layout = layoutFor(dtype);
  if (base !== undefined) checkBase(base, raw.length);
  const into = opts.into;
  if (into !== undefined) {
    checkBytes(into, 'into');
    if (into.length < raw.length) {
      throw new WgitError('E_INVALID_ARGUMENT', `codec: output buffer has ${into.length} bytes, needs ${raw.length}`, {
        rawLength: raw.length,
        intoLength: into.length,
      });
    }
  }
  let encoding: ChunkEncoding = 'raw';
  let bestSlot = -1;
  let bestLength = raw.length;
  if (raw.length > HEADER_BYTES) {
    // each try writes into the slot not holding the best payload so far
    const tryCandidate = (enc: ChunkEncoding, write: (slot: number) => number) => {
      const slot = bestSlot === 0 ? 1 : 0;
      const n = write(slot);
      if (n >= 0 && n < bestLength) {
        encoding = enc;
        bestSlot = slot;
        bestLength = n;
      }
    };
    tryCandidate('zipnn', (slot) => encodeWith(raw, layout, undefined, slot));
    tryCandidate('zipnn', (slot) => encodePalette(raw, layout.width, slot));
    if (base) tryCandidate('xor-zipnn', (slot) => encodeWith(raw, layout, base, slot));
  }
  // raw is copied too, so the caller may reuse its read buffer while the payload is queued
  const source = bestSlot < 0 ? raw : candidates[bestSlot].subarray(0, bestLength);
  if (into) {
    into.set(source);
    return { encoding, payload: into.subarray(0, bestLength) };
  }
  return { encoding, payload: source.slice() };
}

/**
 * Inverse of encodeChunk. Validates the payload against `dtype` and
 * `rawLength` (which come from the tensor record, not from the payload) and
 * throws E_CORRUPT_CHUNK on anything inconsistent. Allocates the result
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
        'E_CORRUPT_CHUNK',
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
    throw new WgitError('E_CORRUPT_CHUNK', `corrupt chunk: unknown encoding ${JSON.stringify(encoding)}`, {
      encoding,
    });
  }
  const xor = encoding === 'xor-zipnn';
  if (xor) checkBase(base, rawLength);
  const h = parseHeader(payload, dtype, rawLength, xor ? MODE_XOR : MODE_ZIPNN);
  const w = h.layout.width;
  const rot = h.layout.id === 1;
  const palette = h.layout.id === LAYOUT_PALETTE;
  const result = into ?? new Uint8Array(rawLength);
  const s = scratch(Math.min(h.segElems, h.elements) * w);
  let pos = h.bodyStart;
  for (let seg = 0; seg < h.segments; seg++) {
    const first = seg * h.segElems;
    const n = Math.min(h.segElems, h.elements - first);
    for (let k = 0; k < h.streams; k++) {
      const e = seg * h.streams + k;
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
            'E_CORRUPT_CHUNK',
            `corrupt chunk payload: stream ${k} of segment ${seg}: ${(err as Error).message}`,
            {
              segment: seg,
              stream: k,
            },
          );
        }
        if (got !== n) {
          throw new WgitError(
            'E_CORRUPT_CHUNK',
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
    if (palette) expandPalette(s, payload, h, n, seg);
    else merge(s, s.streams, s.data, n, w, rot);
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
