import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type DType, f32ToBf16Bits, f32ToF16Bits, isWgitError } from '@wgit/core';
import { HEADER_BYTES } from '../src/codec/format.js';
import { decodeChunk, type EncodedChunk, encodeChunk } from '../src/codec/index.js';

const ALL_DTYPES: [DType, number][] = [
  ['F64', 8],
  ['F32', 4],
  ['F16', 2],
  ['BF16', 2],
  ['I64', 8],
  ['I32', 4],
  ['I16', 2],
  ['I8', 1],
  ['U8', 1],
  ['BOOL', 1],
  ['F8_E4M3', 1],
  ['F8_E5M2', 1],
  ['U16', 2],
  ['U32', 4],
  ['U64', 8],
];

/** Small seeded PRNG (mulberry32) so failures reproduce. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomBytes(n: number, seed: number): Uint8Array {
  const r = rng(seed);
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (r() * 256) | 0;
  return out;
}

function normals(n: number, sigma: number, seed: number): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = 1 - r();
    out[i] = sigma * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * r());
  }
  return out;
}

function toBf16(values: Float32Array): Uint8Array {
  const u16 = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) u16[i] = f32ToBf16Bits(values[i]);
  return new Uint8Array(u16.buffer);
}

function toF16(values: Float32Array): Uint8Array {
  const u16 = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) u16[i] = f32ToF16Bits(values[i]);
  return new Uint8Array(u16.buffer);
}

function roundTrip(raw: Uint8Array, dtype: DType, base?: Uint8Array): EncodedChunk {
  const enc = encodeChunk(raw, dtype, base);
  const dec = decodeChunk(enc, dtype, raw.length, enc.encoding === 'xor-zipnn' ? base : undefined);
  assert.equal(dec.length, raw.length);
  assert.ok(Buffer.from(dec).equals(Buffer.from(raw)), `${dtype} ${raw.length} bytes via ${enc.encoding} differs`);
  return enc;
}

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    assert.ok(isWgitError(e), `expected a WgitError, got ${String(e)}`);
    return e.code;
  }
  return 'no error';
}

describe('codec round trips', () => {
  test('every dtype, random bytes, odd lengths and a multi-segment chunk', () => {
    const lengths = [0, 1, 3, 7, 17, 24, 25, 63, 64, 65, 1000, 4099, (1 << 20) + 13];
    for (const [dtype] of ALL_DTYPES) {
      for (const n of lengths) roundTrip(randomBytes(n, n * 31 + dtype.length), dtype);
    }
  });

  test('every dtype, compressible data of odd length (small ints, repeated patterns)', () => {
    for (const [dtype, size] of ALL_DTYPES) {
      const n = 5000 * size + (size > 1 ? size - 1 : 0);
      const raw = new Uint8Array(n);
      const r = rng(size);
      // little-endian small integers: only the low byte of each element varies
      for (let i = 0; i < n; i += size) raw[i] = (r() * 8) | 0;
      const enc = roundTrip(raw, dtype);
      assert.equal(enc.encoding, 'zipnn', dtype);
      // 3 bits of entropy per element (Huffman: at most 1 bit more), other bytes constant
      const bound = (5000 * 4) / 8 + 64 * size;
      assert.ok(enc.payload.length < bound, `${dtype}: ${enc.payload.length} of ${n}`);
    }
  });

  test('normal(0, 0.02) weights rounded to bf16 and f16 compress like ZipNN', () => {
    const values = normals(300_000, 0.02, 7);
    const bf = roundTrip(toBf16(values), 'BF16');
    assert.equal(bf.encoding, 'zipnn');
    // exponent entropy ~2.6 bits + 8 incompressible bits: ideal ~1.5x
    const bfRatio = (2 * values.length) / bf.payload.length;
    assert.ok(bfRatio > 1.4 && bfRatio < 1.7, `bf16 ratio ${bfRatio}`);
    const f16 = roundTrip(toF16(values), 'F16');
    assert.equal(f16.encoding, 'zipnn');
    const f32 = roundTrip(new Uint8Array(values.buffer), 'F32');
    assert.equal(f32.encoding, 'zipnn');
    assert.ok((4 * values.length) / f32.payload.length > 1.1);
  });

  test('all-zero and constant chunks shrink to almost nothing', () => {
    for (const [dtype, size] of ALL_DTYPES) {
      const zeros = new Uint8Array(100_000 * size);
      const z = roundTrip(zeros, dtype);
      assert.equal(z.encoding, 'zipnn');
      // per stream: a zstd frame of a few bytes plus a table entry
      assert.ok(z.payload.length < 48 + 40 * size, `${dtype} zeros -> ${z.payload.length}`);
      const constant = new Uint8Array(100_000 * size);
      for (let i = 0; i < constant.length; i++) constant[i] = (0x3c + (i % size) * 17) & 0xff;
      const c = roundTrip(constant, dtype);
      assert.ok(c.payload.length < 48 + 40 * size, `${dtype} constant -> ${c.payload.length}`);
    }
  });

  test('all 65,536 bf16 and f16 bit patterns (NaN payloads, infinities, -0, subnormals), in order and shuffled', () => {
    const all = new Uint16Array(65536);
    for (let i = 0; i < 65536; i++) all[i] = i;
    const shuffled = all.slice();
    const r = rng(99);
    for (let i = shuffled.length - 1; i > 0; i--) {
      const j = Math.floor(r() * (i + 1));
      [shuffled[i], shuffled[j]] = [shuffled[j], shuffled[i]];
    }
    for (const dtype of ['BF16', 'F16', 'I16', 'U16'] as DType[]) {
      roundTrip(new Uint8Array(all.buffer), dtype);
      roundTrip(new Uint8Array(shuffled.buffer), dtype);
      // odd length: the last byte is a tail byte
      roundTrip(new Uint8Array(shuffled.buffer, 0, 2 * 40_000 + 1), dtype);
    }
  });

  test('f32 and f64 special values survive', () => {
    const f32 = new Float32Array(4096);
    const u32 = new Uint32Array(f32.buffer);
    const specials = [
      0x7fc00000, 0x7f800001, 0xffc00123, 0x7f800000, 0xff800000, 0x80000000, 0, 1, 0x807fffff, 0x00400000,
    ];
    for (let i = 0; i < u32.length; i++) u32[i] = specials[i % specials.length] ^ (i & 7 ? 0 : i);
    roundTrip(new Uint8Array(f32.buffer), 'F32');
    const f64 = new Float64Array([Number.NaN, -0, Number.MIN_VALUE, -Infinity, Infinity, 1e-310, 0.1, -0.02]);
    const big = new Float64Array(8 * 512);
    for (let i = 0; i < big.length; i++) big[i] = f64[i % f64.length];
    roundTrip(new Uint8Array(big.buffer), 'F64');
  });

  test('random data is stored raw, as a copy', () => {
    for (const dtype of ['U8', 'BF16', 'F32'] as DType[]) {
      const raw = randomBytes(200_000, 3);
      const enc = roundTrip(raw, dtype);
      assert.equal(enc.encoding, 'raw', dtype);
      assert.notEqual(enc.payload.buffer, raw.buffer);
    }
  });

  test('decodes into a caller buffer, including the base itself', () => {
    const base = toBf16(normals(50_000, 0.02, 1));
    const ft = toBf16(normals(50_000, 0.02, 1).map((x, i) => x + (i % 3 ? 1e-4 : -2e-4)));
    const enc = encodeChunk(ft, 'BF16', base);
    assert.equal(enc.encoding, 'xor-zipnn');
    const into = base.slice();
    const out = decodeChunk(enc, 'BF16', ft.length, into, into);
    assert.equal(out, into);
    assert.ok(Buffer.from(into).equals(Buffer.from(ft)));
    assert.equal(
      codeOf(() => decodeChunk(enc, 'BF16', ft.length, base, new Uint8Array(3))),
      'E_INVALID_ARGUMENT',
    );
  });

  test('encodes into a caller buffer: the payload is a view of it, equal to the fresh one', () => {
    const raw = toBf16(normals(70_000, 0.02, 2));
    const fresh = encodeChunk(raw, 'BF16');
    const buf = new Uint8Array(raw.length);
    const viewed = encodeChunk(raw, 'BF16', undefined, { into: buf });
    assert.equal(viewed.payload.buffer, buf.buffer);
    assert.equal(viewed.encoding, fresh.encoding);
    assert.deepEqual(viewed.payload, fresh.payload);
    const noise = randomBytes(5000, 1);
    const r = encodeChunk(noise, 'U8', undefined, { into: buf });
    assert.equal(r.encoding, 'raw');
    assert.deepEqual(r.payload, noise);
    assert.equal(
      codeOf(() => encodeChunk(raw, 'BF16', undefined, { into: new Uint8Array(10) })),
      'E_INVALID_ARGUMENT',
    );
  });
});

describe('palette layout for low-cardinality chunks', () => {
  // uint8-quantized weights dequantized to f32: value = q * scale + min
  function dequantized(n: number, seed: number): Float32Array {
    const r = rng(seed);
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const q = Math.max(
        0,
        Math.min(255, Math.round(128 + 30 * Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r()))),
      );
      out[i] = q * 0.0057930146946626555 - 0.7125408074435067;
    }
    return out;
  }

  test('dequantized f32 weights: one index byte per element, beating byte streams', () => {
    const values = dequantized(200_000, 4);
    const raw = new Uint8Array(values.buffer);
    const enc = roundTrip(raw, 'F32');
    assert.equal(enc.encoding, 'zipnn');
    assert.equal(enc.payload[4], 2, 'palette layout');
    // ~6.9 bits of entropy per element out of 32
    assert.ok(raw.length / enc.payload.length > 4, `ratio ${raw.length / enc.payload.length}`);
  });

  test('2-byte types, a tail, and an unaligned view', () => {
    // 200 arbitrary 16-bit patterns: both byte streams look random, the index does not
    const r = rng(5);
    const levels = Array.from({ length: 200 }, () => (r() * 65536) | 0);
    const u16 = new Uint16Array(100_000).map(() => levels[(r() * 200) | 0]);
    const padded = new Uint8Array(u16.byteLength + 2);
    padded.set(new Uint8Array(u16.buffer), 1);
    const unaligned = padded.subarray(1, 2 + u16.byteLength); // odd start, odd length: one tail byte
    for (const dtype of ['BF16', 'F16', 'U16'] as DType[]) {
      const enc = roundTrip(unaligned, dtype);
      assert.equal(enc.payload[4], 2, dtype);
    }
    const ints = new Int32Array(50_000).map(() => levels[(r() * 200) | 0] * 65536 + 17);
    assert.equal(roundTrip(new Uint8Array(ints.buffer), 'I32').payload[4], 2);
  });

  test('more than 256 distinct values fall back to byte streams', () => {
    const ints = new Int32Array(50_000).map((_, i) => i % 300);
    const enc = roundTrip(new Uint8Array(ints.buffer), 'I32');
    assert.equal(enc.payload[4], 0);
  });

  test('an index past the palette is E_CORRUPT_CHUNK', () => {
    // hand-made payload: one segment of 4 f32 elements, raw index stream, palette of 2
    const p = new Uint8Array(24 + 4 + 2 + 8 + 4);
    const dv = new DataView(p.buffer);
    p.set([0x57, 0x5a, 1, 1, 2, 4, 0, 0]);
    dv.setUint32(8, 16, true);
    dv.setUint32(16, 1024, true);
    dv.setUint32(20, 1, true);
    dv.setUint32(24, 4, true); // stream: 4 bytes, stored raw
    dv.setUint16(28, 2, true); // palette entries
    dv.setFloat32(30, 1.5, true);
    dv.setFloat32(34, -2, true);
    p.set([0, 1, 1, 0], 38);
    const ok = decodeChunk({ encoding: 'zipnn', payload: p }, 'F32', 16);
    assert.deepEqual([...new Float32Array(ok.buffer)], [1.5, -2, -2, 1.5]);
    p[40] = 2;
    assert.equal(
      codeOf(() => decodeChunk({ encoding: 'zipnn', payload: p }, 'F32', 16)),
      'E_CORRUPT_CHUNK',
    );
    p[40] = 1;
    dv.setUint16(28, 0, true);
    assert.equal(
      codeOf(() => decodeChunk({ encoding: 'zipnn', payload: p }, 'F32', 16)),
      'E_CORRUPT_CHUNK',
    );
    dv.setUint16(28, 2, true);
    // not allowed with xor, nor for 1- or 8-byte types
    assert.equal(
      codeOf(() => decodeChunk({ encoding: 'xor-zipnn', payload: p }, 'F32', 16, new Uint8Array(16))),
      'E_CORRUPT_CHUNK',
    );
    p[5] = 8;
    assert.equal(
      codeOf(() => decodeChunk({ encoding: 'zipnn', payload: p }, 'F64', 16)),
      'E_CORRUPT_CHUNK',
    );
  });

  test('every single-bit flip of a palette payload is E_CORRUPT_CHUNK or a same-length result', () => {
    const raw = new Uint8Array(dequantized(5000, 9).buffer);
    const p = encodeChunk(raw, 'F32').payload.slice();
    assert.equal(p[4], 2);
    for (let bit = 0; bit < p.length * 8; bit++) {
      p[bit >>> 3] ^= 1 << (bit & 7);
      try {
        assert.equal(decodeChunk({ encoding: 'zipnn', payload: p }, 'F32', raw.length).length, raw.length);
      } catch (e) {
        assert.ok(isWgitError(e) && e.code === 'E_CORRUPT_CHUNK', `bit ${bit}: ${String(e)}`);
      }
      p[bit >>> 3] ^= 1 << (bit & 7);
    }
  });
});

describe('xor-zipnn against a parent chunk', () => {
  const n = 400_000;
  const baseValues = normals(n, 0.02, 11);
  const noise = normals(n, 0.0002, 12);
  const ftValues = baseValues.map((x, i) => x + noise[i]);

  test('a fine-tune (every element moved slightly) is stored as a much smaller xor delta', () => {
    const base = toBf16(baseValues);
    const ft = toBf16(ftValues);
    const plain = encodeChunk(ft, 'BF16');
    const enc = roundTrip(ft, 'BF16', base);
    assert.equal(plain.encoding, 'zipnn');
    assert.equal(enc.encoding, 'xor-zipnn');
    assert.ok(enc.payload.length < 0.8 * plain.payload.length, `${enc.payload.length} vs ${plain.payload.length}`);
  });

  test('f32 and f16 fine-tunes, odd length with a tail', () => {
    const base32 = new Uint8Array(baseValues.buffer, 0, 4 * 10_001 + 3);
    const ft32 = new Uint8Array(ftValues.buffer, 0, 4 * 10_001 + 3);
    assert.equal(roundTrip(ft32, 'F32', base32).encoding, 'xor-zipnn');
    const base16 = toF16(baseValues).subarray(0, 2 * 10_001 + 1);
    const ft16 = toF16(ftValues).subarray(0, 2 * 10_001 + 1);
    assert.equal(roundTrip(ft16, 'F16', base16).encoding, 'xor-zipnn');
  });

  test('an unrelated base is ignored in favour of zipnn', () => {
    const base = toBf16(normals(n, 0.02, 13));
    const ft = toBf16(ftValues);
    assert.equal(roundTrip(ft, 'BF16', base).encoding, 'zipnn');
  });

  test('identical chunk against its base', () => {
    const base = toBf16(baseValues);
    const enc = roundTrip(base.slice(), 'BF16', base);
    assert.equal(enc.encoding, 'xor-zipnn');
    assert.ok(enc.payload.length < 300);
  });

  test('a missing or mismatched base is refused', () => {
    const base = toBf16(baseValues);
    const ft = toBf16(ftValues);
    const enc = encodeChunk(ft, 'BF16', base);
    assert.equal(
      codeOf(() => decodeChunk(enc, 'BF16', ft.length)),
      'E_CHUNK_BASE_MISMATCH',
    );
    assert.equal(
      codeOf(() => decodeChunk(enc, 'BF16', ft.length, base.subarray(2))),
      'E_CHUNK_BASE_MISMATCH',
    );
    assert.equal(
      codeOf(() => encodeChunk(ft, 'BF16', base.subarray(1))),
      'E_CHUNK_BASE_MISMATCH',
    );
  });
});

describe('payload format', () => {
  test('header fields and the rotated bf16 streams are laid out as docs/codec.md says', () => {
    // constant exponent (compresses), random sign and mantissa (stored raw)
    const n = 50_000;
    const r = rng(5);
    const u16 = new Uint16Array(n);
    for (let i = 0; i < n; i++) {
      const sign = r() < 0.5 ? 0x8000 : 0;
      u16[i] = sign | (120 << 7) | ((r() * 128) | 0);
    }
    const raw = new Uint8Array(u16.buffer);
    const enc = encodeChunk(raw, 'BF16');
    assert.equal(enc.encoding, 'zipnn');
    const p = enc.payload;
    const dv = new DataView(p.buffer, p.byteOffset, p.byteLength);
    assert.deepEqual([...p.subarray(0, 8)], [0x57, 0x5a, 1, 1, 1, 2, 0, 0]);
    assert.equal(dv.getUint32(8, true), raw.length);
    assert.equal(dv.getUint32(12, true), 0);
    const segElems = dv.getUint32(16, true);
    assert.equal(dv.getUint32(20, true), Math.ceil(n / segElems));
    assert.equal(dv.getUint32(20, true), 1);
    const s0 = dv.getUint32(24, true);
    const s1 = dv.getUint32(28, true);
    // stream 0: sign + mantissa, stored raw (flag clear), exactly n bytes
    assert.equal(s0, n);
    // stream 1: the exponent byte, a zstd frame (flag set)
    assert.ok(s1 & 0x80000000);
    const body0 = p.subarray(32, 32 + n);
    for (let i = 0; i < n; i++) {
      const rotated = ((u16[i] << 1) | (u16[i] >>> 15)) & 0xffff;
      if (body0[i] !== (rotated & 0xff)) assert.fail(`stream 0 byte ${i}`);
    }
    const frame = p.subarray(32 + n);
    assert.equal(frame.length, s1 & 0x7fffffff);
    assert.equal(new DataView(frame.buffer, frame.byteOffset).getUint32(0, true), 0xfd2fb528); // zstd magic
  });

  test('f32 streams are the bytes of each word rotated left by one bit', () => {
    const n = 2_000;
    const r = rng(8);
    const u32 = new Uint32Array(n);
    // random bits everywhere so all four streams are stored raw and readable
    for (let i = 0; i < n; i++) u32[i] = (r() * 2 ** 32) >>> 0;
    // but make the value compressible overall: force a common exponent
    for (let i = 0; i < n; i++) u32[i] = (u32[i] & 0x807fffff) | (124 << 23);
    const enc = encodeChunk(new Uint8Array(u32.buffer), 'F32');
    assert.equal(enc.encoding, 'zipnn');
    const p = enc.payload;
    const dv = new DataView(p.buffer, p.byteOffset, p.byteLength);
    assert.deepEqual([...p.subarray(3, 6)], [1, 1, 4]);
    let at = HEADER_BYTES + 16;
    for (let k = 0; k < 3; k++) {
      const word = dv.getUint32(HEADER_BYTES + 4 * k, true);
      assert.equal(word, n, `stream ${k} stored raw`);
      for (let i = 0; i < n; i++) {
        const rotated = ((u32[i] << 1) | (u32[i] >>> 31)) >>> 0;
        if (p[at + i] !== ((rotated >>> (8 * k)) & 0xff)) assert.fail(`stream ${k} byte ${i}`);
      }
      at += n;
    }
    assert.ok(dv.getUint32(HEADER_BYTES + 12, true) & 0x80000000, 'exponent stream compressed');
  });

  test('wider and unrotated layouts: stream k holds byte k of each element', () => {
    // I64 values whose byte k is k * 16 + (random 0..15): streams compress, and decode must regroup them back
    const n = 3_001;
    const r = rng(21);
    const raw = new Uint8Array(8 * n + 5);
    for (let i = 0; i < n; i++) for (let k = 0; k < 8; k++) raw[8 * i + k] = k * 16 + ((r() * 16) | 0);
    for (let i = 8 * n; i < raw.length; i++) raw[i] = i & 0xff;
    const enc = roundTrip(raw, 'I64');
    assert.deepEqual([...enc.payload.subarray(3, 7)], [1, 0, 8, 5]);
  });
});

describe('hostile payloads', () => {
  const values = normals(3_000, 0.02, 17);
  const raw = toBf16(values);
  const base = toBf16(values.map((x) => x * 1.001));

  function checkMutant(
    mutant: Uint8Array,
    encoding: 'zipnn' | 'xor-zipnn',
    b?: Uint8Array,
  ): 'error' | 'same' | 'different' {
    try {
      const out = decodeChunk({ encoding, payload: mutant }, 'BF16', raw.length, b);
      assert.equal(out.length, raw.length);
      return Buffer.from(out).equals(Buffer.from(raw)) ? 'same' : 'different';
    } catch (e) {
      assert.ok(isWgitError(e), `not a WgitError: ${String(e)}`);
      assert.equal(e.code, 'E_CORRUPT_CHUNK');
      return 'error';
    }
  }

  for (const encoding of ['zipnn', 'xor-zipnn'] as const) {
    test(`${encoding}: every single-bit flip is an E_CORRUPT_CHUNK or a same-length result`, () => {
      const b = encoding === 'xor-zipnn' ? base : undefined;
      const enc = encodeChunk(raw, 'BF16', b);
      assert.equal(enc.encoding, encoding);
      const p = enc.payload.slice();
      const dv = new DataView(p.buffer, p.byteOffset);
      // Streams stored raw (flag clear): flips there cannot be seen by the codec.
      const tableEnd = HEADER_BYTES + 8;
      const rawRanges: [number, number][] = [];
      let at = tableEnd;
      for (let k = 0; k < 2; k++) {
        const word = dv.getUint32(HEADER_BYTES + 4 * k, true);
        const size = word & 0x7fffffff;
        if (!(word & 0x80000000)) rawRanges.push([at, at + size]);
        at += size;
      }
      if (encoding === 'zipnn') assert.equal(rawRanges.length, 1, 'the mantissa stream is stored raw');
      let same = 0;
      for (let bit = 0; bit < p.length * 8; bit++) {
        const byte = bit >>> 3;
        p[byte] ^= 1 << (bit & 7);
        const outcome = checkMutant(p, encoding, b);
        p[byte] ^= 1 << (bit & 7);
        if (rawRanges.some(([lo, hi]) => byte >= lo && byte < hi)) assert.equal(outcome, 'different', `bit ${bit}`);
        // a header flip is caught, or is one that cannot matter (a segment
        // size still larger than the whole chunk)
        else if (byte < tableEnd) assert.notEqual(outcome, 'different', `header bit ${bit}`);
        // In a zstd frame the checksum catches changed content; a flip in a
        // field the decoder ignores (an unused frame-header bit) gives the same bytes.
        else if (outcome === 'same') same++;
        else assert.equal(outcome, 'error', `frame bit ${bit}`);
      }
      const frameBits = 8 * (p.length - tableEnd - rawRanges.reduce((t, [lo, hi]) => t + hi - lo, 0));
      assert.ok(same < frameBits / 20, `${same} of ${frameBits} frame bit flips without effect`);
    });

    test(`${encoding}: every truncation and an extension are E_CORRUPT_CHUNK`, () => {
      const b = encoding === 'xor-zipnn' ? base : undefined;
      const p = encodeChunk(raw, 'BF16', b).payload;
      for (let len = 0; len < p.length; len++) {
        assert.equal(checkMutant(p.subarray(0, len), encoding, b), 'error', `truncated to ${len}`);
      }
      const longer = new Uint8Array(p.length + 1);
      longer.set(p);
      assert.equal(checkMutant(longer, encoding, b), 'error');
    });
  }

  test('a multi-segment payload: flips in the header and stream table are caught', () => {
    const big = toBf16(normals(600_000, 0.02, 23));
    const p = encodeChunk(big, 'BF16').payload.slice();
    const segments = new DataView(p.buffer, p.byteOffset).getUint32(20, true);
    assert.ok(segments >= 2);
    const tableEnd = HEADER_BYTES + 4 * 2 * segments;
    for (let bit = 0; bit < tableEnd * 8; bit++) {
      p[bit >>> 3] ^= 1 << (bit & 7);
      const code = codeOf(() => decodeChunk({ encoding: 'zipnn', payload: p }, 'BF16', big.length));
      p[bit >>> 3] ^= 1 << (bit & 7);
      assert.equal(code, 'E_CORRUPT_CHUNK', `bit ${bit}`);
    }
    assert.ok(Buffer.from(decodeChunk({ encoding: 'zipnn', payload: p }, 'BF16', big.length)).equals(Buffer.from(big)));
  });

  test('lying headers never drive an allocation or a read past the payload', () => {
    const enc = encodeChunk(toBf16(normals(100_000, 0.02, 3)), 'BF16');
    const rawLength = 200_000;
    const tamper = (f: (dv: DataView, p: Uint8Array) => void) => {
      const p = enc.payload.slice();
      f(new DataView(p.buffer), p);
      return codeOf(() => decodeChunk({ encoding: 'zipnn', payload: p }, 'BF16', rawLength));
    };
    assert.equal(
      tamper((dv) => dv.setUint32(16, 0xffffffff, true)),
      'E_CORRUPT_CHUNK',
    ); // huge segments
    assert.equal(
      tamper((dv) => dv.setUint32(16, 1, true)),
      'E_CORRUPT_CHUNK',
    ); // one element per segment: count mismatch
    assert.equal(
      tamper((dv) => dv.setUint32(20, 0x40000000, true)),
      'E_CORRUPT_CHUNK',
    ); // huge table
    assert.equal(
      tamper((dv) => dv.setUint32(12, 1, true)),
      'E_CORRUPT_CHUNK',
    ); // 4 GiB raw length
    assert.equal(
      tamper((dv) => dv.setUint32(24, 0x80000000 | 0x7fffffff, true)),
      'E_CORRUPT_CHUNK',
    ); // stream size
    assert.equal(
      tamper((_, p) => (p[5] = 4)),
      'E_CORRUPT_CHUNK',
    ); // width
    assert.equal(
      tamper((_, p) => (p[4] = 0)),
      'E_CORRUPT_CHUNK',
    ); // layout
    assert.equal(
      tamper((_, p) => (p[3] = 2)),
      'E_CORRUPT_CHUNK',
    ); // mode
    assert.equal(
      tamper((_, p) => (p[2] = 9)),
      'E_CORRUPT_CHUNK',
    ); // version
    assert.equal(
      tamper((_, p) => (p[7] = 1)),
      'E_CORRUPT_CHUNK',
    ); // reserved
    // the right payload with the wrong dtype or length
    assert.equal(
      codeOf(() => decodeChunk(enc, 'F16', rawLength)),
      'E_CORRUPT_CHUNK',
    );
    assert.equal(
      codeOf(() => decodeChunk(enc, 'BF16', rawLength + 2)),
      'E_CORRUPT_CHUNK',
    );
    assert.equal(
      codeOf(() => decodeChunk(enc, 'BF16', rawLength - 2)),
      'E_CORRUPT_CHUNK',
    );
    assert.equal(
      codeOf(() => decodeChunk({ encoding: 'raw', payload: enc.payload }, 'BF16', rawLength)),
      'E_CORRUPT_CHUNK',
    );
    assert.equal(
      codeOf(() =>
        decodeChunk({ encoding: 'xor-zipnn', payload: enc.payload }, 'BF16', rawLength, new Uint8Array(rawLength)),
      ),
      'E_CORRUPT_CHUNK',
    );
  });

  test('a zstd frame that inflates past its stream is refused', () => {
    // Take a real payload whose exponent stream is a frame, and splice in a
    // frame of the same declared size from a longer input.
    const n = 20_000;
    const u16 = new Uint16Array(n).fill(0x3c00);
    const small = encodeChunk(new Uint8Array(u16.buffer), 'BF16');
    const longer = encodeChunk(new Uint8Array(new Uint16Array(2 * n).fill(0x3c00).buffer), 'BF16');
    const frameOf = (p: Uint8Array, k: number) => {
      const dv = new DataView(p.buffer, p.byteOffset);
      let at = HEADER_BYTES + 8;
      for (let j = 0; j < k; j++) at += dv.getUint32(HEADER_BYTES + 4 * j, true) & 0x7fffffff;
      return p.subarray(at, at + (dv.getUint32(HEADER_BYTES + 4 * k, true) & 0x7fffffff));
    };
    const f0 = frameOf(longer.payload, 0);
    const f1 = frameOf(longer.payload, 1);
    const p = new Uint8Array(HEADER_BYTES + 8 + f0.length + f1.length);
    p.set(small.payload.subarray(0, HEADER_BYTES));
    const dv = new DataView(p.buffer);
    dv.setUint32(HEADER_BYTES, 0x80000000 | f0.length, true);
    dv.setUint32(HEADER_BYTES + 4, 0x80000000 | f1.length, true);
    p.set(f0, HEADER_BYTES + 8);
    p.set(f1, HEADER_BYTES + 8 + f0.length);
    assert.equal(
      codeOf(() => decodeChunk({ encoding: 'zipnn', payload: p }, 'BF16', 2 * n)),
      'E_CORRUPT_CHUNK',
    );
  });

  test('bad arguments', () => {
    assert.equal(
      codeOf(() => encodeChunk(new Uint8Array(8), 'Q4' as DType)),
      'E_DTYPE_UNKNOWN',
    );
    assert.equal(
      codeOf(() => decodeChunk({ encoding: 'lz4' as 'raw', payload: new Uint8Array(4) }, 'U8', 4)),
      'E_CORRUPT_CHUNK',
    );
    assert.equal(
      codeOf(() => decodeChunk({ encoding: 'raw', payload: new Uint8Array(4) }, 'U8', -1)),
      'E_INVALID_ARGUMENT',
    );
    assert.equal(
      codeOf(() => decodeChunk({ encoding: 'raw', payload: new Uint8Array(4) }, 'U8', 5)),
      'E_CORRUPT_CHUNK',
    );
    assert.equal(
      codeOf(() => encodeChunk([1, 2, 3] as unknown as Uint8Array, 'U8')),
      'E_INVALID_ARGUMENT',
    );
  });
});
