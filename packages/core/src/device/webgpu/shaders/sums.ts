/**
 * Per-block partial sums for the f64 reductions. WGSL has no f64, so each
 * workgroup reduces one block of 1,024 elements (the TRANSFER_BLOCK of the
 * block order) in double-f32 ("float-float": an unevaluated sum hi + lo,
 * about 48 significant bits, with error-free TwoSum and Dekker's TwoProduct)
 * and writes the block's (hi, lo) per quantity; the host turns each into
 * f64 and adds the blocks in block order. Not the CPU's bits: the tolerance
 * is in docs/gpu.md. Per block (12 u32): hi/lo of quantities 0…3, then the
 * largest non-NaN |δ| (f32 bits) and the bit-identical count (diff only).
 */
import type { KernelDType } from '../../device.js';
import { CONVERT_WGSL, inputDecls, loader, WG } from './common.js';

export type SumsMode = 'transfer' | 'diff' | 'dot' | 'sumSq' | 'sumAbs';
export const SUMS_WORDS = 12;
export const SUMS_BLOCK = 1024;

export function sumsInputs(mode: SumsMode): number {
  return mode === 'transfer' ? 3 : mode === 'diff' || mode === 'dot' ? 2 : 1;
}

const FF_WGSL = /* wgsl */ `
struct FF { hi: f32, lo: f32 }
fn two_sum(a: f32, b: f32) -> FF {
  let s = opq(a + b);
  if (not_finite(s)) { return FF(s, 0.0); }
  let bb = opq(s - a);
  let e = (a - (s - bb)) + (b - bb);
  return FF(s, e);
}
fn split(a: f32) -> FF {
  let c = opq(4097.0 * a);
  let hi = opq(c - opq(c - a));
  return FF(hi, a - hi);
}
fn two_prod(a: f32, b: f32) -> FF {
  let p = opq(a * b);
  if (not_finite(p) || abs(a) > 1e30 || abs(b) > 1e30) { return FF(p, 0.0); }
  let x = split(a);
  let y = split(b);
  let e = ((opq(opq(x.hi * y.hi) - p) + opq(x.hi * y.lo)) + opq(x.lo * y.hi)) + opq(x.lo * y.lo);
  return FF(p, e);
}
fn ff_add(a: FF, b: FF) -> FF {
  let s = two_sum(a.hi, b.hi);
  if (not_finite(s.hi)) { return FF(s.hi, 0.0); }
  let e = s.lo + (a.lo + b.lo);
  let r = opq(s.hi + e);
  return FF(r, e - opq(r - s.hi));
}
fn ff_mul(a: FF, b: FF) -> FF {
  let p = two_prod(a.hi, b.hi);
  if (not_finite(p.hi)) { return p; }
  let e = p.lo + (opq(a.hi * b.lo) + opq(a.lo * b.hi));
  let r = opq(p.hi + e);
  return FF(r, e - opq(r - p.hi));
}
`;

function terms(mode: SumsMode): string {
  const v = (i: number) => `bitcast<f32>(ld${i}(j))`;
  switch (mode) {
    case 'transfer':
      return `let nw = ${v(0)}; let o = ${v(2)};
    let d: f32 = ${v(1)} - o;
    let sh = two_sum(nw, -o);
    let df = FF(d, 0.0);
    q0 = ff_add(q0, ff_mul(sh, df)); q1 = ff_add(q1, ff_mul(sh, sh));
    q2 = ff_add(q2, two_prod(d, d)); q3 = ff_add(q3, two_prod(o, o));`;
    case 'diff':
      return `let ab = ld0(j); let bb = ld1(j);
    let a = bitcast<f32>(ab); let b = bitcast<f32>(bb);
    let d: f32 = b - a;
    q0 = ff_add(q0, two_prod(d, d)); q1 = ff_add(q1, two_prod(a, a));
    q2 = ff_add(q2, two_prod(b, b)); q3 = ff_add(q3, two_prod(a, b));
    let db = bitcast<u32>(d) & 0x7fffffffu;
    if (db <= 0x7f800000u && db > mx) { mx = db; }
    if (ab == bb) { same = same + 1u; }`;
    case 'dot':
      return `q0 = ff_add(q0, two_prod(${v(0)}, ${v(1)}));`;
    case 'sumSq':
      return `let a = ${v(0)}; q0 = ff_add(q0, two_prod(a, a));`;
    case 'sumAbs':
      return `q0 = ff_add(q0, FF(abs(${v(0)}), 0.0));`;
  }
}

/** Shader for `mode` over `dtype` inputs; partials at binding k + 1, one workgroup per block. */
export function sumsShader(mode: SumsMode, dtype: KernelDType): string {
  const k = sumsInputs(mode);
  let s = CONVERT_WGSL + FF_WGSL + inputDecls(k);
  s += `@group(0) @binding(${k + 1}) var<storage, read_write> y: array<u32>;\n`;
  for (let i = 0; i < k; i++) s += loader(i, dtype);
  s += `
var<workgroup> shi: array<vec4<f32>, ${WG}>;
var<workgroup> slo: array<vec4<f32>, ${WG}>;
var<workgroup> sx: array<vec2<u32>, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let n = P[0].x;
  let block = wid.y * P[0].y + wid.x;
  var q0 = FF(0.0, 0.0); var q1 = FF(0.0, 0.0); var q2 = FF(0.0, 0.0); var q3 = FF(0.0, 0.0);
  var mx = 0u; var same = 0u;
  for (var i = 0u; i < 4u; i = i + 1u) {
    let j = block * ${SUMS_BLOCK}u + 4u * t + i;
    if (j < n) {
    ${terms(mode)}
    }
  }
  shi[t] = vec4<f32>(q0.hi, q1.hi, q2.hi, q3.hi);
  slo[t] = vec4<f32>(q0.lo, q1.lo, q2.lo, q3.lo);
  sx[t] = vec2<u32>(mx, same);
  workgroupBarrier();
  for (var stride = ${WG / 2}u; stride > 0u; stride = stride >> 1u) {
    if (t < stride) {
      let a = shi[t]; let al = slo[t]; let b = shi[t + stride]; let bl = slo[t + stride];
      var h = vec4<f32>(0.0); var l = vec4<f32>(0.0);
      for (var c = 0u; c < 4u; c = c + 1u) {
        let r = ff_add(FF(a[c], al[c]), FF(b[c], bl[c]));
        h[c] = r.hi; l[c] = r.lo;
      }
      shi[t] = h; slo[t] = l;
      let x = sx[t]; let z = sx[t + stride];
      sx[t] = vec2<u32>(max(x.x, z.x), x.y + z.y);
    }
    workgroupBarrier();
  }
  if (t == 0u) {
    let o = block * ${SUMS_WORDS}u;
    for (var c = 0u; c < 4u; c = c + 1u) {
      y[o + 2u * c] = bitcast<u32>(shi[0][c]);
      y[o + 2u * c + 1u] = bitcast<u32>(slo[0][c]);
    }
    y[o + 8u] = sx[0].x; y[o + 9u] = sx[0].y; y[o + 10u] = 0u; y[o + 11u] = 0u;
  }
}
`;
  return s;
}
