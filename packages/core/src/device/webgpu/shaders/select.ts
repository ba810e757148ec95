/**
 * Selection and masking shaders, all comparisons on integer bit patterns
 * (for a non-NaN f32, |x| orders like its bits & 0x7fffffff, so thresholds,
 * ties and histograms never depend on how the GPU treats subnormals):
 * absHistogram (atomic bins), the TIES tie count per workgroup, TIES itself,
 * and DARE's counter-based mask (rng.ts, u32 arithmetic only).
 */
import { CONVERT_WGSL, inputDecls, WG, weight } from './common.js';

/** P[0] = (n, row threads, pass, prefixHi); bins at binding 2. Two elements per invocation. */
export const HIST_WGSL = `${CONVERT_WGSL}${inputDecls(1)}
@group(0) @binding(2) var<storage, read_write> hist: array<atomic<u32>>;
fn add(b: u32) {
  let a = b & 0x7fffffffu;
  if (a > 0x7f800000u) { return; }
  if (P[0].z == 0u) { atomicAdd(&hist[a >> 15u], 1u); }
  else if ((a >> 15u) == P[0].w) { atomicAdd(&hist[a & 0x7fffu], 1u); }
}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let n = P[0].x;
  let j = 2u * (gid.y * P[0].y + gid.x);
  if (j < n) { add(x0[j]); }
  if (j + 1u < n) { add(x0[j + 1u]); }
}
`;

function tiesDecls(k: number): string {
  return `${CONVERT_WGSL}${inputDecls(k)}
@group(0) @binding(${k + 1}) var<storage, read> thr: array<vec4<u32>, 4>;
`;
}

/** Whether input i's entry with bits b is kept before the quota (|τ| ≥ thr, τ ≠ 0, not NaN); 2 when a tie. */
const KEEP_WGSL = `
fn keep_class(b: u32, t: u32) -> u32 {
  let a = b & 0x7fffffffu;
  if (a > 0x7f800000u || a == 0u || a < t) { return 0u; }
  if (a == t) { return 2u; }
  return 1u;
}
`;

/** Tie counts per workgroup of 256 elements and input: out[g·k + i]. thr: thresholds (bits) in thr[0..1], quotas after. */
export function tieCountShader(k: number): string {
  let s = tiesDecls(k) + KEEP_WGSL;
  s += `@group(0) @binding(${k + 2}) var<storage, read_write> cnt: array<atomic<u32>>;\n`;
  s += `@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let n = P[0].x;
  let j = gid.y * P[0].y + gid.x;
  let g = wid.y * (P[0].y / ${WG}u) + wid.x;
  if (j >= n) { return; }
`;
  for (let i = 0; i < k; i++) {
    s += `  if (keep_class(x${i}[j], thr[${i >> 2}][${i & 3}]) == 2u) { atomicAdd(&cnt[g * ${k}u + ${i}u], 1u); }\n`;
  }
  return `${s}}\n`;
}

/**
 * TIES trim / elect / disjoint mean, one invocation per element; with quotas
 * (P[1].x = 1), a tie of input i survives when its rank among input i's ties
 * over the whole call (the group's base, binding k + 2, plus the ties before
 * it in the group, by a workgroup scan) is below the quota (thr[2..3]; −1 = all).
 */
export function tiesShader(k: number): string {
  let s = tiesDecls(k) + KEEP_WGSL;
  s += `@group(0) @binding(${k + 2}) var<storage, read> base: array<u32>;
@group(0) @binding(${k + 3}) var<storage, read_write> y: array<u32>;
var<workgroup> scan: array<u32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(local_invocation_index) t: u32) {
  let n = P[0].x;
  let j = gid.y * P[0].y + gid.x;
  let g = wid.y * (P[0].y / ${WG}u) + wid.x;
  let quotas = P[1].x == 1u;
  var wt: array<f32, ${k}>;
  var s: f32 = 0.0;
`;
  for (let i = 0; i < k; i++) {
    s += `  {
    var b = 0u;
    if (j < n) { b = x${i}[j]; }
    var c = keep_class(b, thr[${i >> 2}][${i & 3}]);
    if (quotas) {
      let q = bitcast<i32>(thr[${2 + (i >> 2)}][${i & 3}]);
      scan[t] = select(0u, 1u, c == 2u);
      workgroupBarrier();
      for (var off = 1u; off < ${WG}u; off = off << 1u) {
        var v = scan[t];
        if (t >= off) { v = v + scan[t - off]; }
        workgroupBarrier();
        scan[t] = v;
        workgroupBarrier();
      }
      let rank = base[g * ${k}u + ${i}u] + scan[t] - select(0u, 1u, c == 2u);
      workgroupBarrier();
      if (c == 2u && q >= 0 && rank >= u32(q)) { c = 0u; }
    }
    var v: f32 = 0.0;
    if (c != 0u) { v = opq(${weight(i)} * bitcast<f32>(b)); }
    wt[${i}] = v;
    s = s + v;
  }
`;
  }
  s += `  if (j >= n) { return; }
  var num: f32 = 0.0;
  var den: f32 = 0.0;
  var any = false;
  let pos = s >= 0.0;
`;
  for (let i = 0; i < k; i++) {
    s += `  if ((pos && wt[${i}] > 0.0) || (!pos && wt[${i}] < 0.0)) { num = num + wt[${i}]; den = den + ${weight(i)}; any = true; }\n`;
  }
  s += `  var r: f32 = 0.0;
  if (any) { if (den != 0.0) { r = num / den; } else { r = num; } }
  y[j] = bitcast<u32>(r);
}
`;
  return s;
}

/** DARE: P[0] = (n, row threads, cut, k1), P[1] = (index lo of element 0, index hi, copy?, 0), P[2].x = scale. */
export const DARE_WGSL = `${CONVERT_WGSL}${inputDecls(1)}
@group(0) @binding(2) var<storage, read_write> y: array<u32>;
fn fmix32(x: u32) -> u32 {
  var h = x;
  h = h ^ (h >> 16u); h = h * 0x85ebca6bu; h = h ^ (h >> 13u); h = h * 0xc2b2ae35u; h = h ^ (h >> 16u);
  return h;
}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let n = P[0].x;
  let j = gid.y * P[0].y + gid.x;
  if (j >= n) { return; }
  let x = x0[j];
  if (P[1].z == 1u) { y[j] = x; return; }
  let lo = P[1].x + j;
  let hi = P[1].y + select(0u, 1u, lo < P[1].x);
  let k1 = P[0].w;
  let k2 = fmix32(k1 ^ hi ^ 0x13198a2eu);
  let h = fmix32(fmix32(lo ^ k2) ^ k1);
  if ((h >> 8u) >= P[0].z) { y[j] = bitcast<u32>(opq(bitcast<f32>(x) * ${weight(0)})); } else { y[j] = 0u; }
}
`;
