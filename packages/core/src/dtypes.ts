import { WgitError } from './errors.js';

/** Element types a safetensors file may declare. */
export type DType =
  | 'F64'
  | 'F32'
  | 'F16'
  | 'BF16'
  | 'I64'
  | 'I32'
  | 'I16'
  | 'I8'
  | 'U8'
  | 'BOOL'
  | 'F8_E4M3'
  | 'F8_E5M2'
  | 'U16'
  | 'U32'
  | 'U64';

const SIZES: Record<DType, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
  F8_E4M3: 1,
  F8_E5M2: 1,
  U16: 2,
  U32: 4,
  U64: 8,
};

const FLOATS = new Set<DType>(['F64', 'F32', 'F16', 'BF16', 'F8_E4M3', 'F8_E5M2']);

export function isDType(s: string): s is DType {
  return Object.hasOwn(SIZES, s);
}

export function dtypeSize(d: DType): number {
  const size = isDType(d) ? SIZES[d] : undefined;
  if (size === undefined) throw new WgitError('E_DTYPE_UNKNOWN', `unknown dtype ${JSON.stringify(d)}`, { dtype: d });
  return size;
}

export function isFloatDType(d: DType): boolean {
  dtypeSize(d);
  return FLOATS.has(d);
}

// One scratch word shared by the scalar helpers: reinterpreting through
// typed arrays is the only exact way to move between f32 values and bits in JS.
const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);
const scratchF64 = new Float64Array(1);
const scratchU64hi = new Uint32Array(scratchF64.buffer);
const HOST_LE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function f32Bits(x: number): number {
  scratchF32[0] = x;
  return scratchU32[0];
}

function bitsF32(b: number): number {
  scratchU32[0] = b;
  return scratchF32[0];
}

/** bf16 is the top half of an f32, so decoding is a shift. */
export function bf16BitsToF32(b: number): number {
  return bitsF32((b & 0xffff) << 16);
}

/**
 * Rounds `x` (first rounded to f32) to bf16 with round-to-nearest-even.
 * NaN stays NaN with the quiet bit set (the top payload bits are kept);
 * values past the largest bf16 round to infinity as RNE demands.
 */
export function f32ToBf16Bits(x: number): number {
  return f32BitsToBf16Bits(f32Bits(x));
}

function f32BitsToBf16Bits(b: number): number {
  if ((b & 0x7fffffff) > 0x7f800000) return ((b >>> 16) | 0x40) & 0xffff;
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
}

export function f16BitsToF32(b: number): number {
  return bitsF32(f16BitsToF32Bits(b));
}

function f16BitsToF32Bits(b: number): number {
  const sign = (b & 0x8000) << 16;
  const exp = (b >>> 10) & 0x1f;
  const man = b & 0x3ff;
  if (exp === 0x1f) return (sign | 0x7f800000 | (man << 13)) >>> 0;
  if (exp !== 0) return (sign | ((exp + 112) << 23) | (man << 13)) >>> 0;
  // Subnormal: man · 2^-24 is exact in f32.
  return (sign | f32Bits(man * 2 ** -24)) >>> 0;
}

/**
 * Rounds `x` (first rounded to f32) to IEEE binary16 with
 * round-to-nearest-even: subnormal results, overflow to ±infinity,
 * NaN kept as a quiet NaN with its top payload bits.
 */
export function f32ToF16Bits(x: number): number {
  return f32BitsToF16Bits(f32Bits(x));
}

function f32BitsToF16Bits(b: number): number {
  const sign = (b >>> 16) & 0x8000;
  const a = b & 0x7fffffff;
  if (a >= 0x7f800000) {
    if (a === 0x7f800000) return sign | 0x7c00;
    return sign | 0x7e00 | ((a >>> 13) & 0x3ff);
  }
  // 0x477ff000 = 65520, halfway between 65504 (max f16) and 65536.
  if (a >= 0x477ff000) return sign | 0x7c00;
  if (a >= 0x38800000) {
    // Re-bias the exponent (127 → 15); a carry out of the mantissa
    // correctly bumps the exponent.
    return sign | ((a - 0x38000000 + 0xfff + ((a >>> 13) & 1)) >>> 13);
  }
  // Below 2^-14 results are subnormal with quantum 2^-24. Integer rounding
  // here: JS adds in f64, and an f64 sum rounded again to f32 would round twice.
  if (a <= 0x33000000) return sign; // ≤ 2^-25: rounds to zero (the tie goes to even 0)
  const mant = (a & 0x7fffff) | 0x800000;
  const shift = 126 - (a >>> 23);
  const r = mant >>> shift;
  const rem = mant & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  return sign | (rem > half || (rem === half && (r & 1) === 1) ? r + 1 : r);
}

interface MiniFloat {
  manBits: number;
  bias: number;
  /** largest finite magnitude */
  max: number;
  hasInf: boolean;
  nanBits: number;
}

const E4M3: MiniFloat = { manBits: 3, bias: 7, max: 448, hasInf: false, nanBits: 0x7f };
const E5M2: MiniFloat = { manBits: 2, bias: 15, max: 57344, hasInf: true, nanBits: 0x7e };

function miniToF32(b: number, f: MiniFloat): number {
  const sign = b & 0x80 ? -1 : 1;
  const expBits = 7 - f.manBits;
  const expMax = (1 << expBits) - 1;
  const e = (b >>> f.manBits) & expMax;
  const m = b & ((1 << f.manBits) - 1);
  if (f.hasInf && e === expMax) return m === 0 ? sign * Number.POSITIVE_INFINITY : Number.NaN;
  if (!f.hasInf && e === expMax && m === (1 << f.manBits) - 1) return Number.NaN;
  if (e === 0) return sign * m * 2 ** (1 - f.bias - f.manBits);
  return sign * (1 + m / (1 << f.manBits)) * 2 ** (e - f.bias);
}

/** The binary exponent of a finite non-zero double, read from its bits. */
function exponentOf(v: number): number {
  scratchF64[0] = v;
  const hiWord = scratchU64hi[HOST_LE ? 1 : 0];
  const e = (hiWord >>> 20) & 0x7ff;
  if (e !== 0) return e - 1023;
  // Doubles this small cannot come from an f32; kept for completeness.
  return Math.floor(Math.log2(v));
}

function roundHalfEven(r: number): number {
  const fl = Math.floor(r);
  const diff = r - fl;
  if (diff > 0.5) return fl + 1;
  if (diff < 0.5) return fl;
  return fl % 2 === 0 ? fl : fl + 1;
}

/**
 * f32 → FP8 with round-to-nearest-even and the OCP "satfinite" rule:
 * finite values beyond the largest normal clamp to ±max. E4M3 has no
 * infinity, so ±inf clamps to ±448; E5M2 keeps ±inf. NaN → the format's NaN.
 */
function f32BitsToMini(bits: number, f: MiniFloat): number {
  const signBit = (bits >>> 24) & 0x80;
  const absBits = bits & 0x7fffffff;
  const expBits = 7 - f.manBits;
  const maxBits = f.hasInf ? (((1 << expBits) - 2) << f.manBits) | ((1 << f.manBits) - 1) : 0x7e;
  if (absBits > 0x7f800000) return signBit | f.nanBits;
  if (absBits === 0x7f800000) return signBit | (f.hasInf ? ((1 << expBits) - 1) << f.manBits : maxBits);
  if (absBits === 0) return signBit;
  const a = bitsF32(absBits);
  const emin = 1 - f.bias;
  const e = Math.max(exponentOf(a), emin);
  const q = 2 ** (e - f.manBits);
  // a / q is exact (power-of-two scaling of an f32 inside the f64 range).
  const n = roundHalfEven(a / q);
  const rounded = n * q;
  if (rounded > f.max) return signBit | maxBits;
  if (rounded < 2 ** emin) return signBit | n;
  const e2 = exponentOf(rounded);
  const man = rounded / 2 ** (e2 - f.manBits) - (1 << f.manBits);
  return signBit | ((e2 + f.bias) << f.manBits) | man;
}

export function f8e4m3BitsToF32(b: number): number {
  return miniToF32(b & 0xff, E4M3);
}
export function f8e5m2BitsToF32(b: number): number {
  return miniToF32(b & 0xff, E5M2);
}
/**
 * f32 → FP8 with round-to-nearest-even and the OCP "satfinite" rule:
 * finite values beyond the largest normal clamp to ±max (448 / 57344).
 * E4M3 has no infinity, so ±inf also clamps to ±448; E5M2 keeps ±inf.
 * NaN → the format's NaN (E4M3 S.1111.111, E5M2 quiet S.11111.10).
 */
export function f32ToF8e4m3Bits(x: number): number {
  return f32BitsToMini(f32Bits(x), E4M3);
}
export function f32ToF8e5m2Bits(x: number): number {
  return f32BitsToMini(f32Bits(x), E5M2);
}

/** Exact i64/u64 → f32 with a single rounding (Number() alone would round twice). */
function bigToF32(v: bigint): number {
  const neg = v < 0n;
  const m = neg ? -v : v;
  if (m < 2n ** 53n) return Math.fround(Number(v));
  // Round to odd at 53 bits: any later RNE to 24 bits is then correct.
  const shift = BigInt(m.toString(2).length - 53);
  let top = m >> shift;
  if ((m & ((1n << shift) - 1n)) !== 0n) top |= 1n;
  const r = Math.fround(Number(top) * 2 ** Number(shift));
  return neg ? -r : r;
}

function checkCount(bytes: Uint8Array, dtype: DType): number {
  const size = dtypeSize(dtype);
  if (bytes.byteLength % size !== 0) {
    throw new WgitError(
      'E_DTYPE_LENGTH',
      `${bytes.byteLength} bytes is not a whole number of ${dtype} elements (${size} bytes each)`,
      { dtype, byteLength: bytes.byteLength },
    );
  }
  return bytes.byteLength / size;
}

function checkOut<T extends Float32Array | Uint8Array>(out: T | undefined, n: number, make: (n: number) => T): T {
  if (out === undefined) return make(n);
  if (out.length !== n) {
    throw new WgitError('E_DTYPE_LENGTH', `output holds ${out.length} elements, ${n} needed`, {
      expected: n,
      actual: out.length,
    });
  }
  return out;
}

/** A typed view when the bytes are aligned on a little-endian host, else null (caller uses a DataView). */
function aligned<T>(
  bytes: Uint8Array,
  size: number,
  Ctor: new (b: ArrayBufferLike, o: number, n: number) => T,
): T | null {
  if (!HOST_LE || bytes.byteOffset % size !== 0) return null;
  return new Ctor(bytes.buffer, bytes.byteOffset, bytes.byteLength / size);
}

/** Decodes little-endian elements of any dtype to f32 (integers by value, BOOL as 0/1). */
export function toF32(bytes: Uint8Array, dtype: DType, out?: Float32Array): Float32Array {
  const n = checkCount(bytes, dtype);
  const dst = checkOut(out, n, (k) => new Float32Array(k));
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  switch (dtype) {
    case 'F32': {
      // Copied as bits so NaN payloads survive.
      const d32 = new Uint32Array(dst.buffer, dst.byteOffset, n);
      const v = aligned(bytes, 4, Uint32Array);
      if (v) d32.set(v);
      else for (let i = 0; i < n; i++) d32[i] = dv.getUint32(i * 4, true);
      break;
    }
    case 'F64':
      for (let i = 0; i < n; i++) dst[i] = dv.getFloat64(i * 8, true);
      break;
    case 'BF16': {
      const u = aligned(bytes, 2, Uint16Array);
      const d32 = new Uint32Array(dst.buffer, dst.byteOffset, n);
      if (u) for (let i = 0; i < n; i++) d32[i] = u[i] << 16;
      else for (let i = 0; i < n; i++) d32[i] = dv.getUint16(i * 2, true) << 16;
      break;
    }
    case 'F16': {
      const d32 = new Uint32Array(dst.buffer, dst.byteOffset, n);
      for (let i = 0; i < n; i++) d32[i] = f16BitsToF32Bits(dv.getUint16(i * 2, true));
      break;
    }
    case 'F8_E4M3': {
      const table = miniTable(E4M3);
      for (let i = 0; i < n; i++) dst[i] = table[bytes[i]];
      break;
    }
    case 'F8_E5M2': {
      const table = miniTable(E5M2);
      for (let i = 0; i < n; i++) dst[i] = table[bytes[i]];
      break;
    }
    case 'I64':
      for (let i = 0; i < n; i++) dst[i] = bigToF32(dv.getBigInt64(i * 8, true));
      break;
    case 'U64':
      for (let i = 0; i < n; i++) dst[i] = bigToF32(dv.getBigUint64(i * 8, true));
      break;
    case 'I32':
      for (let i = 0; i < n; i++) dst[i] = dv.getInt32(i * 4, true);
      break;
    case 'U32':
      for (let i = 0; i < n; i++) dst[i] = dv.getUint32(i * 4, true);
      break;
    case 'I16':
      for (let i = 0; i < n; i++) dst[i] = dv.getInt16(i * 2, true);
      break;
    case 'U16':
      for (let i = 0; i < n; i++) dst[i] = dv.getUint16(i * 2, true);
      break;
    case 'I8':
      for (let i = 0; i < n; i++) dst[i] = dv.getInt8(i);
      break;
    case 'U8':
      for (let i = 0; i < n; i++) dst[i] = bytes[i];
      break;
    case 'BOOL':
      for (let i = 0; i < n; i++) dst[i] = bytes[i] === 0 ? 0 : 1;
      break;
  }
  return dst;
}

const miniTables = new Map<MiniFloat, Float32Array>();
function miniTable(f: MiniFloat): Float32Array {
  let t = miniTables.get(f);
  if (!t) {
    t = new Float32Array(256);
    for (let b = 0; b < 256; b++) t[b] = miniToF32(b, f);
    miniTables.set(f, t);
  }
  return t;
}

/** Encodes f32 values as a float dtype (little-endian), rounding to nearest even. */
export function fromF32(values: Float32Array, dtype: DType, out?: Uint8Array): Uint8Array {
  const size = dtypeSize(dtype);
  if (!FLOATS.has(dtype)) {
    throw new WgitError('E_DTYPE_UNSUPPORTED', `cannot encode f32 values as ${dtype}: only float dtypes`, { dtype });
  }
  const n = values.length;
  const dst = checkOut(out, n * size, (k) => new Uint8Array(k));
  const dv = new DataView(dst.buffer, dst.byteOffset, dst.byteLength);
  switch (dtype) {
    case 'F32': {
      const bits = new Uint32Array(values.buffer, values.byteOffset, n);
      const v = aligned(dst, 4, Uint32Array);
      if (v) v.set(bits);
      else for (let i = 0; i < n; i++) dv.setUint32(i * 4, bits[i], true);
      break;
    }
    case 'F64':
      for (let i = 0; i < n; i++) dv.setFloat64(i * 8, values[i], true);
      break;
    case 'BF16': {
      const bits = new Uint32Array(values.buffer, values.byteOffset, n);
      for (let i = 0; i < n; i++) dv.setUint16(i * 2, f32BitsToBf16Bits(bits[i]), true);
      break;
    }
    case 'F16': {
      const bits = new Uint32Array(values.buffer, values.byteOffset, n);
      for (let i = 0; i < n; i++) dv.setUint16(i * 2, f32BitsToF16Bits(bits[i]), true);
      break;
    }
    case 'F8_E4M3':
    case 'F8_E5M2': {
      const bits = new Uint32Array(values.buffer, values.byteOffset, n);
      const f = dtype === 'F8_E4M3' ? E4M3 : E5M2;
      for (let i = 0; i < n; i++) dst[i] = f32BitsToMini(bits[i], f);
      break;
    }
  }
  return dst;
}
