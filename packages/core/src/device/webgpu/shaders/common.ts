/**
 * WGSL shared by every kernel: the dtype conversions in u32 bit arithmetic
 * only (so subnormals and NaN payloads survive whatever the GPU does with
 * f32 subnormals — WGSL lets an implementation flush them), element loads
 * from raw little-endian bytes held as array<u32>, and the uniform block.
 *
 * Uniforms (P: array<vec4<u32>, 4>): P[0] = (n, threads per dispatch row,
 * kernel-specific, kernel-specific), P[1] kernel-specific, P[2..3] = eight
 * f32 weights as bits. P[1].w is always 0 (see `opq`).
 */
import type { KernelDType } from '../../device.js';

export const WG = 256;

export const DTYPE_CODE: Record<KernelDType, number> = { F32: 0, BF16: 1, F16: 2 };

export const CONVERT_WGSL = /* wgsl */ `
fn f16_bits_to_f32_bits(h: u32) -> u32 {
  let s = (h & 0x8000u) << 16u;
  let e = (h >> 10u) & 0x1fu;
  let m = h & 0x3ffu;
  if (e == 0x1fu) { return s | 0x7f800000u | (m << 13u); }
  if (e != 0u) { return s | ((e + 112u) << 23u) | (m << 13u); }
  if (m == 0u) { return s; }
  let p = firstLeadingBit(m);
  return s | ((p + 103u) << 23u) | ((m << (23u - p)) & 0x7fffffu);
}

fn f32_bits_to_bf16_bits(b: u32) -> u32 {
  if ((b & 0x7fffffffu) > 0x7f800000u) { return ((b >> 16u) | 0x40u) & 0xffffu; }
  return ((b + 0x7fffu + ((b >> 16u) & 1u)) >> 16u) & 0xffffu;
}

fn f32_bits_to_f16_bits(b: u32) -> u32 {
  let s = (b >> 16u) & 0x8000u;
  let a = b & 0x7fffffffu;
  if (a >= 0x7f800000u) {
    if (a == 0x7f800000u) { return s | 0x7c00u; }
    return s | 0x7e00u | ((a >> 13u) & 0x3ffu);
  }
  if (a >= 0x477ff000u) { return s | 0x7c00u; }
  if (a >= 0x38800000u) { return s | ((a - 0x38000000u + 0xfffu + ((a >> 13u) & 1u)) >> 13u); }
  if (a <= 0x33000000u) { return s; }
  let mant = (a & 0x7fffffu) | 0x800000u;
  let shift = 126u - (a >> 23u);
  let r = mant >> shift;
  let rem = mant & ((1u << shift) - 1u);
  let half = 1u << (shift - 1u);
  if (rem > half || (rem == half && (r & 1u) == 1u)) { return s | (r + 1u); }
  return s | r;
}

// An f32 the compiler cannot see through (P[1].w is always 0): keeps a product from being fused into
// an fma with the sum that follows, and keeps error-free transforms from being simplified away
// (Mesa's NIR, for one, treats WGSL float arithmetic as inexact and may rewrite it).
fn opq(x: f32) -> f32 { return bitcast<f32>(bitcast<u32>(x) ^ P[1].w); }
fn is_nan_bits(b: u32) -> bool { return (b & 0x7fffffffu) > 0x7f800000u; }
fn not_finite(x: f32) -> bool { return (bitcast<u32>(x) & 0x7f800000u) == 0x7f800000u; }
`;

/** WGSL: `fn ld<i>(j: u32) -> u32`, the f32 bits of element j of input buffer x<i> holding `dtype` bytes. */
export function loader(i: number, dtype: KernelDType): string {
  if (dtype === 'F32') return `fn ld${i}(j: u32) -> u32 { return x${i}[j]; }\n`;
  const half = `((x${i}[j >> 1u] >> ((j & 1u) << 4u)) & 0xffffu)`;
  const body = dtype === 'BF16' ? `${half} << 16u` : `f16_bits_to_f32_bits(${half})`;
  return `fn ld${i}(j: u32) -> u32 { return ${body}; }\n`;
}

/** WGSL: the 16-bit pattern of f32 bits `b` in `dtype` (F16 or BF16). */
export function encode16(dtype: KernelDType, b: string): string {
  return dtype === 'BF16' ? `f32_bits_to_bf16_bits(${b})` : `f32_bits_to_f16_bits(${b})`;
}

/** WGSL declarations of input buffers x0…x(k−1) at bindings 1…k and the uniform block at 0. */
export function inputDecls(k: number): string {
  let s = '@group(0) @binding(0) var<uniform> P: array<vec4<u32>, 4>;\n';
  for (let i = 0; i < k; i++) s += `@group(0) @binding(${i + 1}) var<storage, read> x${i}: array<u32>;\n`;
  return s;
}

/** WGSL expression: weight i (f32) from the uniform block. */
export function weight(i: number): string {
  return `bitcast<f32>(P[${2 + (i >> 2)}][${i & 3}])`;
}
