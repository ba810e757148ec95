import type { DType } from '@wgit/core';
import { WgitError } from '@wgit/core/errors';

/*
 * Payload layout of the 'zipnn' and 'xor-zipnn' encodings (docs/codec.md has
 * the byte-by-byte table). All integers little-endian.
 *
 *   0  'W' 'Z'          magic
 *   2  u8  version      1
 *   3  u8  mode         1 zipnn, 2 xor-zipnn
 *   4  u8  layout       0 byte grouping, 1 rotate left by one bit, then grouping,
 *                       2 palette (zipnn only, 2- and 4-byte types): one index byte per element
 *   5  u8  width        element size in bytes = streams per segment
 *   6  u8  tail         rawLength % width, stored last, unregrouped
 *   7  u8  reserved     0
 *   8  u32 rawLength    low 32 bits
 *  12  u32 rawLength    high bits
 *  16  u32 segElems     elements per segment (the last one may be shorter)
 *  20  u32 segments     ceil(elements / segElems)
 *  24  u32[segments * streams] stream table: bit 31 = zstd frame, bits 0..30 = stored bytes
 *      (streams = width, or 1 for the palette layout)
 *  ..  palette layout only: u16 count (1..256), then count element values of width bytes
 *  ..  stream bodies, segment by segment, stream 0 first
 *  ..  tail bytes
 */

export const MAGIC0 = 0x57; // 'W'
export const MAGIC1 = 0x5a; // 'Z'
export const VERSION = 1;
export const HEADER_BYTES = 24;
export const MODE_ZIPNN = 1;
export const MODE_XOR = 2;
export const COMPRESSED_BIT = 0x80000000;

/**
 * Segments bound the scratch memory of both directions, whatever the chunk
 * size, and keep one segment's element bytes and streams inside L2.
 * Encoders write ENCODE_SEGMENT_BYTES; decoders accept up to MAX_SEGMENT_BYTES.
 */
export const ENCODE_SEGMENT_BYTES = 1 << 20;
export const MAX_SEGMENT_BYTES = 4 << 20;

export const LAYOUT_GROUP = 0;
export const LAYOUT_ROTATE = 1;
export const LAYOUT_PALETTE = 2;
export const MAX_PALETTE = 256;

export interface Layout {
  /** 0: plain byte grouping; 1: rotate each element left by one bit first (the exponent gets its own byte); 2: palette. */
  id: 0 | 1 | 2;
  width: number;
}

/** Widths the palette layout supports (a u16 lookup table or a map of u32 values). */
export function paletteWidth(width: number): boolean {
  return width === 2 || width === 4;
}

// bf16 and f32 rotate so the whole 8-bit exponent is one stream (ZipNN).
// f16's 5 exponent bits cannot fill a byte either way; plain grouping puts
// sign+exponent+2 mantissa bits in the high stream, which measured better on
// real f16 weights than rotating (docs/codec.md).
const LAYOUTS: Record<DType, Layout> = {
  BF16: { id: 1, width: 2 },
  F32: { id: 1, width: 4 },
  F16: { id: 0, width: 2 },
  F64: { id: 0, width: 8 },
  I64: { id: 0, width: 8 },
  U64: { id: 0, width: 8 },
  I32: { id: 0, width: 4 },
  U32: { id: 0, width: 4 },
  I16: { id: 0, width: 2 },
  U16: { id: 0, width: 2 },
  I8: { id: 0, width: 1 },
  U8: { id: 0, width: 1 },
  BOOL: { id: 0, width: 1 },
  F8_E4M3: { id: 0, width: 1 },
  F8_E5M2: { id: 0, width: 1 },
};

export function layoutFor(dtype: DType): Layout {
  const l = typeof dtype === 'string' && Object.hasOwn(LAYOUTS, dtype) ? LAYOUTS[dtype] : undefined;
  if (!l) throw new WgitError('E_DTYPE_UNKNOWN', `codec: unknown dtype ${JSON.stringify(dtype)}`, { dtype });
  return l;
}

export interface ParsedHeader {
  mode: number;
  layout: Layout;
  elements: number;
  segElems: number;
  segments: number;
  tail: number;
  /** Streams per segment: the width, or 1 (indices) for the palette layout. */
  streams: number;
  /** Per segment and stream: [stored bytes, compressed?], flattened segment-major. */
  sizes: Uint32Array;
  compressed: Uint8Array;
  /** Palette layout: entry count and offset of the first entry. */
  paletteCount: number;
  paletteAt: number;
  /** Offset of the first stream body. */
  bodyStart: number;
}

function corrupt(why: string, data: Record<string, unknown> = {}): WgitError {
  return new WgitError('E_CORRUPT_CHUNK', `corrupt chunk payload: ${why}`, data);
}

/**
 * Checks every header field against what the caller knows (dtype, raw length,
 * encoding) and that the stream sizes add up to the payload length exactly,
 * before a single byte is decoded or allocated.
 */
export function parseHeader(payload: Uint8Array, dtype: DType, rawLength: number, mode: number): ParsedHeader {
  const natural = layoutFor(dtype);
  if (payload.length < HEADER_BYTES) throw corrupt(`${payload.length} bytes is shorter than the header`);
  if (payload[0] !== MAGIC0 || payload[1] !== MAGIC1) throw corrupt('bad magic');
  if (payload[2] !== VERSION) throw corrupt(`unsupported version ${payload[2]}`);
  if (payload[3] !== mode) throw corrupt(`mode ${payload[3]} does not match the chunk encoding`);
  const palette =
    payload[4] === LAYOUT_PALETTE && mode === MODE_ZIPNN && paletteWidth(natural.width) && payload[5] === natural.width;
  if (!palette && (payload[4] !== natural.id || payload[5] !== natural.width)) {
    throw corrupt(`layout ${payload[4]}/${payload[5]} does not match dtype ${dtype}`);
  }
  const layout: Layout = palette ? { id: LAYOUT_PALETTE, width: natural.width } : natural;
  const dv = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const declared = dv.getUint32(8, true) + dv.getUint32(12, true) * 2 ** 32;
  if (declared !== rawLength) throw corrupt(`declares ${declared} raw bytes, expected ${rawLength}`);
  const w = layout.width;
  const tail = rawLength % w;
  if (payload[6] !== tail) throw corrupt(`tail ${payload[6]} does not match ${rawLength} % ${w}`);
  if (payload[7] !== 0) throw corrupt('reserved byte is not zero');
  const elements = (rawLength - tail) / w;
  const segElems = dv.getUint32(16, true);
  const segments = dv.getUint32(20, true);
  if (segElems === 0 || segElems * w > MAX_SEGMENT_BYTES) throw corrupt(`segment of ${segElems} elements`);
  if (segments !== Math.ceil(elements / segElems)) throw corrupt(`${segments} segments for ${elements} elements`);
  const streams = palette ? 1 : w;
  const entries = segments * streams;
  const tableEnd = HEADER_BYTES + 4 * entries;
  if (tableEnd > payload.length) throw corrupt('stream table runs past the end');
  let paletteCount = 0;
  let bodyStart = tableEnd;
  if (palette) {
    if (tableEnd + 2 > payload.length) throw corrupt('palette runs past the end');
    paletteCount = dv.getUint16(tableEnd, true);
    if (paletteCount === 0 || paletteCount > MAX_PALETTE) throw corrupt(`palette of ${paletteCount} entries`);
    bodyStart = tableEnd + 2 + paletteCount * w;
    if (bodyStart > payload.length) throw corrupt('palette runs past the end');
  }
  const sizes = new Uint32Array(entries);
  const compressed = new Uint8Array(entries);
  let total = bodyStart + tail;
  for (let s = 0; s < segments; s++) {
    const n = Math.min(segElems, elements - s * segElems);
    for (let k = 0; k < streams; k++) {
      const e = s * streams + k;
      const word = dv.getUint32(HEADER_BYTES + 4 * e, true);
      const size = word & ~COMPRESSED_BIT;
      const isCompressed = (word & COMPRESSED_BIT) !== 0;
      if (isCompressed ? size === 0 : size !== n) throw corrupt(`stream ${k} of segment ${s} has ${size} bytes`);
      sizes[e] = size;
      compressed[e] = isCompressed ? 1 : 0;
      total += size;
    }
  }
  if (total !== payload.length) throw corrupt(`streams add up to ${total} bytes, payload has ${payload.length}`);
  return {
    mode,
    layout,
    elements,
    segElems,
    segments,
    tail,
    streams,
    sizes,
    compressed,
    paletteCount,
    paletteAt: tableEnd + 2,
    bodyStart,
  };
}

export function writeHeader(
  out: Uint8Array,
  mode: number,
  layout: Layout,
  rawLength: number,
  segElems: number,
  segments: number,
): void {
  const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
  out[0] = MAGIC0;
  out[1] = MAGIC1;
  out[2] = VERSION;
  out[3] = mode;
  out[4] = layout.id;
  out[5] = layout.width;
  out[6] = rawLength % layout.width;
  out[7] = 0;
  dv.setUint32(8, rawLength >>> 0, true);
  dv.setUint32(12, Math.floor(rawLength / 2 ** 32), true);
  dv.setUint32(16, segElems, true);
  dv.setUint32(20, segments, true);
}
