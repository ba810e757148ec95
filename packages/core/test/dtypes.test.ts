import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  bf16BitsToF32,
  type DType,
  dtypeSize,
  f8e4m3BitsToF32,
  f8e5m2BitsToF32,
  f16BitsToF32,
  f32ToBf16Bits,
  f32ToF8e4m3Bits,
  f32ToF8e5m2Bits,
  f32ToF16Bits,
  fromF32,
  isDType,
  isFloatDType,
  isWgitError,
  toF32,
} from '@wgit/core';

// Independent decoders: the textbook formula (-1)^s · 2^(e-bias) · (1 + m/2^k),
// the subnormal case 2^(1-bias) · m/2^k, and the all-ones exponent.
function formula(bits: number, expBits: number, manBits: number, ieeeSpecials: boolean): number {
  const s = (bits >> (expBits + manBits)) & 1 ? -1 : 1;
  const e = (bits >> manBits) & ((1 << expBits) - 1);
  const m = bits & ((1 << manBits) - 1);
  const bias = (1 << (expBits - 1)) - 1;
  const eMax = (1 << expBits) - 1;
  if (ieeeSpecials && e === eMax) return m === 0 ? s * Number.POSITIVE_INFINITY : Number.NaN;
  if (e === 0) return s * 2 ** (1 - bias) * (m / 2 ** manBits);
  return s * 2 ** (e - bias) * (1 + m / 2 ** manBits);
}
const bf16Formula = (b: number) => formula(b, 8, 7, true);
const f16Formula = (b: number) => formula(b, 5, 10, true);
// OCP E4M3: no infinities, only S.1111.111 is NaN.
const e4m3Formula = (b: number) => ((b & 0x7f) === 0x7f ? Number.NaN : formula(b, 4, 3, false));
const e5m2Formula = (b: number) => formula(b, 5, 2, true);

function sameValue(actual: number, expected: number, what: string): void {
  if (Number.isNaN(expected)) assert.ok(Number.isNaN(actual), `${what}: expected NaN, got ${actual}`);
  else assert.ok(Object.is(actual, expected), `${what}: expected ${expected}, got ${actual}`);
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
const bitsOf = (x: number) => {
  f32[0] = x;
  return u32[0];
};
const fromBits = (b: number) => {
  u32[0] = b;
  return f32[0];
};
const hex = (b: number) => `0x${b.toString(16)}`;

/**
 * Reference rounding by search: the nearest representable value, ties to the
 * even bit pattern, with a virtual value one ulp above the largest finite
 * value standing for infinity (IEEE overflow) — or saturation when `satMax`.
 */
function makeNearest(decode: (b: number) => number, count: number, signBit: number, infBits: number | null) {
  const entries: { v: number; b: number }[] = [];
  for (let b = 0; b < count; b++) {
    if (b & signBit) continue;
    const v = decode(b);
    if (Number.isFinite(v)) entries.push({ v, b });
  }
  entries.sort((x, y) => x.v - y.v);
  const top = entries[entries.length - 1];
  const prev = entries[entries.length - 2];
  if (infBits !== null) entries.push({ v: top.v + (top.v - prev.v), b: infBits });
  return (x: number): number => {
    const s = x < 0 || Object.is(x, -0) ? signBit : 0;
    const a = Math.abs(x);
    if (a >= entries[entries.length - 1].v) return s | entries[entries.length - 1].b;
    let lo = 0;
    let hi = entries.length - 1;
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      if (entries[mid].v <= a) lo = mid;
      else hi = mid;
    }
    const dl = a - entries[lo].v;
    const dh = entries[hi].v - a;
    if (dl < dh) return s | entries[lo].b;
    if (dh < dl) return s | entries[hi].b;
    return s | ((entries[lo].b & 1) === 0 ? entries[lo].b : entries[hi].b);
  };
}

function randomF32(rand: () => number): number {
  // Uniform over bit patterns covers every exponent, subnormals included.
  return fromBits(Math.floor(rand() * 2 ** 32));
}

function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

describe('dtype table', () => {
  test('sizes and predicates', () => {
    const expected: [DType, number, boolean][] = [
      ['F64', 8, true],
      ['F32', 4, true],
      ['F16', 2, true],
      ['BF16', 2, true],
      ['F8_E4M3', 1, true],
      ['F8_E5M2', 1, true],
      ['I64', 8, false],
      ['U64', 8, false],
      ['I32', 4, false],
      ['U32', 4, false],
      ['I16', 2, false],
      ['U16', 2, false],
      ['I8', 1, false],
      ['U8', 1, false],
      ['BOOL', 1, false],
    ];
    for (const [d, size, isFloat] of expected) {
      assert.ok(isDType(d));
      assert.equal(dtypeSize(d), size, d);
      assert.equal(isFloatDType(d), isFloat, d);
    }
    for (const bad of ['f32', 'F128', '', 'toString', '__proto__', 'constructor']) assert.equal(isDType(bad), false);
    assert.throws(
      () => dtypeSize('F128' as DType),
      (e) => isWgitError(e) && e.code === 'E_DTYPE_UNKNOWN',
    );
    assert.throws(
      () => dtypeSize('toString' as DType),
      (e) => isWgitError(e) && e.code === 'E_DTYPE_UNKNOWN',
    );
  });
});

describe('bf16', () => {
  test('all 65,536 patterns decode to the formula value', () => {
    const bytes = new Uint8Array(65536 * 2);
    for (let b = 0; b < 65536; b++) {
      sameValue(bf16BitsToF32(b), bf16Formula(b), `bf16 ${hex(b)}`);
      bytes[2 * b] = b & 0xff;
      bytes[2 * b + 1] = b >> 8;
    }
    const all = toF32(bytes, 'BF16');
    const bits = new Uint32Array(all.buffer);
    for (let b = 0; b < 65536; b++) {
      sameValue(all[b], bf16Formula(b), `bulk bf16 ${hex(b)}`);
      // Decoding must not canonicalise NaN payloads.
      assert.equal(bits[b], (b << 16) >>> 0);
    }
  });

  test('round trip bf16 → f32 → bf16 is exact (NaN stays NaN)', () => {
    // Built from bits so NaN payloads reach fromF32 intact.
    const vals = new Float32Array(new Uint32Array(65536).map((_, b) => (b << 16) >>> 0).buffer);
    const back = new Uint16Array(fromF32(vals, 'BF16').buffer);
    for (let b = 0; b < 65536; b++) {
      const nanPattern = (b & 0x7f80) === 0x7f80 && (b & 0x7f) !== 0;
      if (nanPattern) assert.equal(back[b], b | 0x40, `NaN ${hex(b)} keeps payload, becomes quiet`);
      else assert.equal(back[b], b, `bf16 ${hex(b)}`);
      if (!nanPattern) assert.equal(f32ToBf16Bits(bf16BitsToF32(b)), b);
    }
  });

  test('RNE at, above and below every halfway point', () => {
    const nearest = makeNearest(bf16Formula, 65536, 0x8000, 0x7f80);
    let checked = 0;
    for (let b = 0; b < 0x7f80; b++) {
      const lo = bf16Formula(b);
      const hi = b + 1 === 0x7f80 ? 2 ** 128 : bf16Formula(b + 1);
      const mid = (lo + hi) / 2;
      const midF = Math.fround(mid);
      if (hi !== 2 ** 128) assert.equal(midF, mid, 'midpoint of two bf16 values is an f32');
      else continue;
      const midBits = bitsOf(midF);
      const even = (b & 1) === 0 ? b : b + 1;
      for (const sign of [0, 0x8000]) {
        const sb = sign << 16;
        assert.equal(f32ToBf16Bits(fromBits((midBits | sb) >>> 0)), even | sign, `tie above ${hex(b)}`);
        assert.equal(f32ToBf16Bits(fromBits((midBits + 1) | sb)), (b + 1) | sign, `just above half ${hex(b)}`);
        assert.equal(f32ToBf16Bits(fromBits((midBits - 1) | sb)), b | sign, `just below half ${hex(b)}`);
      }
      checked++;
    }
    assert.equal(checked, 0x7f7f);
    const rand = lcg(7);
    for (let i = 0; i < 100000; i++) {
      const x = randomF32(rand);
      if (Number.isNaN(x)) continue;
      assert.equal(f32ToBf16Bits(x), nearest(x), `random ${hex(bitsOf(x))}`);
    }
  });

  test('specials: overflow, infinities, -0, NaN payloads, subnormals', () => {
    assert.equal(f32ToBf16Bits(3.4028234663852886e38), 0x7f80, 'f32 max rounds to inf');
    assert.equal(f32ToBf16Bits(bf16Formula(0x7f7f)), 0x7f7f);
    assert.equal(f32ToBf16Bits(Number.POSITIVE_INFINITY), 0x7f80);
    assert.equal(f32ToBf16Bits(Number.NEGATIVE_INFINITY), 0xff80);
    assert.equal(f32ToBf16Bits(-0), 0x8000);
    assert.equal(f32ToBf16Bits(0), 0);
    const nanIn = new Uint32Array([0x7f800001, 0x7fa00000, 0xffc00001, 0x7fffffff]);
    const out = new Uint16Array(fromF32(new Float32Array(nanIn.buffer), 'BF16').buffer);
    assert.deepEqual([...out], [0x7fc0, 0x7fe0, 0xffc0, 0x7fff]);
    // Smallest f32 subnormal (2^-149) is below half the smallest bf16 subnormal (2^-133).
    assert.equal(f32ToBf16Bits(2 ** -149), 0);
    assert.equal(f32ToBf16Bits(2 ** -133), 1);
    assert.equal(f32ToBf16Bits(2 ** -134), 0, 'tie to even 0');
    assert.equal(f32ToBf16Bits(3 * 2 ** -134), 2, 'tie to even 2');
    assert.equal(f32ToBf16Bits(-(2 ** -126)), 0x8080);
  });
});

describe('f16', () => {
  test('all 65,536 patterns decode to the formula value', () => {
    const bytes = new Uint8Array(65536 * 2);
    for (let b = 0; b < 65536; b++) {
      sameValue(f16BitsToF32(b), f16Formula(b), `f16 ${hex(b)}`);
      bytes[2 * b] = b & 0xff;
      bytes[2 * b + 1] = b >> 8;
    }
    const all = toF32(bytes, 'F16');
    const bits = new Uint32Array(all.buffer);
    for (let b = 0; b < 65536; b++) {
      sameValue(all[b], f16Formula(b), `bulk f16 ${hex(b)}`);
      if ((b & 0x7c00) === 0x7c00 && (b & 0x3ff) !== 0) {
        assert.equal(bits[b], (((b & 0x8000) << 16) | 0x7f800000 | ((b & 0x3ff) << 13)) >>> 0, 'NaN payload');
      }
    }
  });

  test('round trip f16 → f32 → f16 is exact (NaN stays NaN)', () => {
    const bytes = new Uint8Array(new Uint16Array(65536).map((_, i) => i).buffer);
    const back = new Uint16Array(fromF32(toF32(bytes, 'F16'), 'F16').buffer);
    for (let b = 0; b < 65536; b++) {
      const nanPattern = (b & 0x7c00) === 0x7c00 && (b & 0x3ff) !== 0;
      assert.equal(back[b], nanPattern ? b | 0x200 : b, `f16 ${hex(b)}`);
      if (!nanPattern) assert.equal(f32ToF16Bits(f16BitsToF32(b)), b);
    }
  });

  test('RNE at, above and below every halfway point', () => {
    const nearest = makeNearest(f16Formula, 65536, 0x8000, 0x7c00);
    for (let b = 0; b < 0x7c00; b++) {
      const lo = f16Formula(b);
      const hi = b + 1 === 0x7c00 ? 65536 : f16Formula(b + 1);
      const midBits = bitsOf((lo + hi) / 2);
      assert.equal(fromBits(midBits), (lo + hi) / 2);
      const even = (b & 1) === 0 ? b : b + 1;
      for (const sign of [0, 0x8000]) {
        const sb = sign << 16;
        assert.equal(f32ToF16Bits(fromBits((midBits | sb) >>> 0)), even | sign, `tie above ${hex(b)}`);
        assert.equal(f32ToF16Bits(fromBits((midBits + 1) | sb)), (b + 1) | sign, `just above ${hex(b)}`);
        assert.equal(f32ToF16Bits(fromBits((midBits - 1) | sb)), b | sign, `just below ${hex(b)}`);
      }
    }
    const rand = lcg(11);
    for (let i = 0; i < 100000; i++) {
      const x = randomF32(rand);
      if (Number.isNaN(x)) continue;
      assert.equal(f32ToF16Bits(x), nearest(x), `random ${hex(bitsOf(x))}`);
    }
    // Random values concentrated in the f16 range, where the search matters most.
    for (let i = 0; i < 100000; i++) {
      const x = Math.fround((rand() - 0.5) * 2 ** Math.floor(rand() * 44 - 26));
      assert.equal(f32ToF16Bits(x), nearest(x), `ranged ${hex(bitsOf(x))}`);
    }
  });

  test('specials: overflow, -0, NaN payloads, subnormals', () => {
    assert.equal(f32ToF16Bits(65504), 0x7bff);
    assert.equal(f32ToF16Bits(65519.99), 0x7bff);
    assert.equal(f32ToF16Bits(65520), 0x7c00, 'halfway to 65536 overflows (tie to even)');
    assert.equal(f32ToF16Bits(1e10), 0x7c00);
    assert.equal(f32ToF16Bits(-1e10), 0xfc00);
    assert.equal(f32ToF16Bits(Number.NEGATIVE_INFINITY), 0xfc00);
    assert.equal(f32ToF16Bits(-0), 0x8000);
    assert.equal(f32ToF16Bits(2 ** -24), 1);
    assert.equal(f32ToF16Bits(2 ** -25), 0, 'tie to even 0');
    assert.equal(f32ToF16Bits(fromBits(0x33000001)), 1, 'just above half the smallest subnormal');
    assert.equal(f32ToF16Bits(3 * 2 ** -25), 2, 'tie to even 2');
    assert.equal(f32ToF16Bits(2 ** -14 - 2 ** -25), 0x400, 'rounds up into the normal range');
    assert.equal(f32ToF16Bits(2 ** -149), 0, 'f32 subnormal');
    const nanIn = new Uint32Array([0x7f800001, 0x7fa00000, 0xffc00000, 0x7fffffff]);
    const out = new Uint16Array(fromF32(new Float32Array(nanIn.buffer), 'F16').buffer);
    assert.deepEqual([...out], [0x7e00, 0x7f00, 0xfe00, 0x7fff]);
  });
});

describe('fp8', () => {
  const formats = [
    {
      dtype: 'F8_E4M3' as const,
      formula: e4m3Formula,
      dec: f8e4m3BitsToF32,
      enc: f32ToF8e4m3Bits,
      max: 448,
      inf: null,
      nan: 0x7f,
    },
    {
      dtype: 'F8_E5M2' as const,
      formula: e5m2Formula,
      dec: f8e5m2BitsToF32,
      enc: f32ToF8e5m2Bits,
      max: 57344,
      inf: 0x7c,
      nan: 0x7e,
    },
  ];
  for (const f of formats) {
    test(`${f.dtype}: all 256 patterns match the formula`, () => {
      const bytes = new Uint8Array(256).map((_, i) => i);
      const all = toF32(bytes, f.dtype);
      let nans = 0;
      for (let b = 0; b < 256; b++) {
        sameValue(f.dec(b), f.formula(b), `${f.dtype} ${hex(b)}`);
        sameValue(all[b], f.formula(b), `bulk ${f.dtype} ${hex(b)}`);
        if (Number.isNaN(all[b])) nans++;
      }
      assert.equal(nans, f.inf === null ? 2 : 6);
      assert.equal(Math.max(...[...all].filter(Number.isFinite)), f.max);
    });

    test(`${f.dtype}: RNE with satfinite, round trips`, () => {
      // Saturating reference: the virtual "infinity" entry is omitted, so
      // anything beyond the top clamps to max.
      const nearest = makeNearest(f.formula, 256, 0x80, null);
      for (let b = 0; b < 256; b++) {
        const v = f.formula(b);
        if (Number.isNaN(v)) continue;
        if (!Number.isFinite(v)) assert.equal(f.enc(v), b, 'E5M2 keeps infinities');
        else assert.equal(f.enc(v), b, `round trip ${hex(b)}`);
      }
      const rand = lcg(3);
      for (let i = 0; i < 20000; i++) {
        const x = Math.fround((rand() - 0.5) * 2 ** Math.floor(rand() * 40 - 22));
        assert.equal(f.enc(x), nearest(x), `${f.dtype} ${x}`);
      }
      // Midpoints between neighbours: ties to even.
      for (let b = 0; b < 0x7f; b++) {
        const lo = f.formula(b);
        const hi = f.formula(b + 1);
        if (!Number.isFinite(hi)) continue;
        const even = (b & 1) === 0 ? b : b + 1;
        assert.equal(f.enc((lo + hi) / 2), even, `${f.dtype} tie ${hex(b)}`);
        assert.equal(f.enc(-(lo + hi) / 2), even | 0x80);
      }
      assert.equal(f.enc(1e6), f.inf === null ? 0x7e : 0x7b, 'saturates');
      assert.equal(f.formula(f.enc(-1e30)), -f.max);
      assert.equal(f.formula(f.enc(Number.POSITIVE_INFINITY)), f.inf === null ? f.max : Number.POSITIVE_INFINITY);
      assert.equal(f.enc(Number.NaN) & 0x7f, f.nan);
      assert.equal(f.enc(-0), 0x80);
      const enc = fromF32(new Float32Array([1, -2, 0.5, Number.NaN]), f.dtype);
      assert.deepEqual([...enc], [f.enc(1), f.enc(-2), f.enc(0.5), f.nan]);
    });
  }
});

describe('toF32 / fromF32', () => {
  test('integers convert by value, bool as 0/1', () => {
    const cases: [DType, ArrayLike<number> | bigint[], number[]][] = [
      ['I8', new Int8Array([-128, -1, 0, 127]), [-128, -1, 0, 127]],
      ['U8', new Uint8Array([0, 1, 255]), [0, 1, 255]],
      ['BOOL', new Uint8Array([0, 1, 2, 255]), [0, 1, 1, 1]],
      ['I16', new Int16Array([-32768, 5, 32767]), [-32768, 5, 32767]],
      ['U16', new Uint16Array([0, 65535]), [0, 65535]],
      ['I32', new Int32Array([-(2 ** 31), 16777217, 7]), [-(2 ** 31), 16777216, 7]],
      ['U32', new Uint32Array([2 ** 32 - 1, 3]), [2 ** 32, 3]],
    ];
    for (const [d, arr, expected] of cases) {
      const typed = arr as unknown as ArrayBufferView;
      const bytes = new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength);
      assert.deepEqual([...toF32(bytes, d)], expected, d);
    }
  });

  test('64-bit integers round once (no double rounding)', () => {
    // 2^60 + 2^36 + 1 lies just above the midpoint between two f32 values;
    // Number() would first round it to the midpoint and fround then ties to even (down).
    const big = 2n ** 60n + 2n ** 36n + 1n;
    const i64 = new BigInt64Array([big, -big, 5n, -(2n ** 63n)]);
    const r = toF32(new Uint8Array(i64.buffer), 'I64');
    assert.deepEqual([...r], [2 ** 60 + 2 ** 37, -(2 ** 60 + 2 ** 37), 5, -(2 ** 63)]);
    const u64 = new BigUint64Array([2n ** 64n - 1n, 2n ** 60n + 2n ** 36n]);
    const ru = toF32(new Uint8Array(u64.buffer), 'U64');
    assert.deepEqual([...ru], [2 ** 64, 2 ** 60], 'exact tie goes to even');
  });

  test('F64 and F32 round trip; unaligned input works', () => {
    const f64 = new Float64Array([1 / 3, -2.5, 1e300, 2 ** -1000]);
    assert.deepEqual([...toF32(new Uint8Array(f64.buffer), 'F64')], [Math.fround(1 / 3), -2.5, Infinity, 0]);
    const vals = new Float32Array([1.5, -0, 3e-40, Number.POSITIVE_INFINITY]);
    const bytes = fromF32(vals, 'F32');
    const shifted = new Uint8Array(bytes.length + 1).fill(0xaa);
    shifted.set(bytes, 1);
    const back = toF32(shifted.subarray(1), 'F32');
    assert.deepEqual([...back], [...vals]);
    assert.ok(Object.is(back[1], -0));
    const asF64 = fromF32(vals, 'F64');
    assert.deepEqual([...new Float64Array(asF64.buffer)], [...vals]);
    const bf = fromF32(new Float32Array([1, 3]), 'BF16');
    const unaligned = new Uint8Array(5);
    unaligned.set(bf, 1);
    assert.deepEqual([...toF32(unaligned.subarray(1), 'BF16')], [1, 3]);
  });

  test('bad input raises stable codes', () => {
    const code = (fn: () => unknown, c: string) => assert.throws(fn, (e) => isWgitError(e) && e.code === c);
    code(() => toF32(new Uint8Array(3), 'F16'), 'E_DTYPE_LENGTH');
    code(() => toF32(new Uint8Array(4), 'F32', new Float32Array(2)), 'E_DTYPE_LENGTH');
    code(() => fromF32(new Float32Array(2), 'BF16', new Uint8Array(3)), 'E_DTYPE_LENGTH');
    code(() => fromF32(new Float32Array(2), 'I32'), 'E_DTYPE_UNSUPPORTED');
    code(() => fromF32(new Float32Array(2), 'BOOL'), 'E_DTYPE_UNSUPPORTED');
    code(() => toF32(new Uint8Array(4), 'Q4' as DType), 'E_DTYPE_UNKNOWN');
    const out = new Float32Array(2);
    assert.equal(toF32(fromF32(new Float32Array([1, 2]), 'F16'), 'F16', out), out);
  });
});
