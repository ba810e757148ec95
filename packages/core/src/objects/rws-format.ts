/** The stored form of a robust weight signature (rws.ts): names, header, quantization; shared with its compute. */
export const RWS_KIND = 'rws';
export const RWS_VERSION = 1;
export type RwsBits = 4 | 8 | 32;
export const RWS_BITS: readonly RwsBits[] = [4, 8, 32];

export const rwsRangeName = (name: string) => `${name}::rws.range`;
export const rwsCodesName = (name: string) => `${name}::rws.q`;
export const rwsValueName = (name: string) => `${name}::rws.value`;

export interface RwsMeta {
  bits: RwsBits;
  /** Blocks kept: 0 … layers − 1. */
  layers: number;
  /** Blocks found in the robust model's tensor names. */
  blocks: number;
  /** Model shape of every tensor the signature changes, by name. */
  shapes: [string, number[]][];
}

/** Uniform quantization of one tensor: code q stands for f32(lo + f32(q·step)). */
export interface QuantRange {
  lo: number;
  step: number;
}

/** lo = min x, step = f32((max x − lo)/(2^bits − 1)); an empty tensor gives 0, 0. */
export function quantRange(x: Float32Array, bits: 4 | 8): QuantRange {
  let lo = Number.POSITIVE_INFINITY;
  let hi = Number.NEGATIVE_INFINITY;
  for (let j = 0; j < x.length; j++) {
    if (x[j] < lo) lo = x[j];
    if (x[j] > hi) hi = x[j];
  }
  if (x.length === 0) return { lo: 0, step: 0 };
  return { lo, step: Math.fround((hi - lo) / (2 ** bits - 1)) };
}

/** q = clamp(round((x − lo)/step), 0, 2^bits − 1) (halves up; 0 when step is 0), packed as the stored form. */
export function quantize(x: Float32Array, bits: 4 | 8, r: QuantRange, out: Uint8Array): void {
  const top = 2 ** bits - 1;
  if (bits === 4) out.fill(0);
  for (let j = 0; j < x.length; j++) {
    const q = r.step > 0 ? Math.min(top, Math.max(0, Math.round((x[j] - r.lo) / r.step))) : 0;
    if (bits === 8) out[j] = q;
    else out[j >> 1] |= j & 1 ? q << 4 : q;
  }
}

/** The values the codes stand for, into `out` (its length is the tensor's). */
export function dequantize(codes: Uint8Array, bits: 4 | 8, r: QuantRange, out: Float32Array): void {
  const lo = Math.fround(r.lo);
  const step = Math.fround(r.step);
  for (let j = 0; j < out.length; j++) {
    const q = bits === 8 ? codes[j] : j & 1 ? codes[j >> 1] >> 4 : codes[j >> 1] & 15;
    out[j] = Math.fround(lo + Math.fround(q * step));
  }
}

/** Bytes of the codes of a tensor of `n` elements. */
export const codeBytes = (n: number, bits: 4 | 8) => (bits === 8 ? n : Math.ceil(n / 2));
