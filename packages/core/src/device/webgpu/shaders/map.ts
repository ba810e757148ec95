/**
 * The elementwise shader: one invocation per pair of elements (2j, 2j + 1),
 * so a 16-bit output is written one whole u32 word at a time and no two
 * invocations share a word. Each kernel is one expression over the inputs'
 * f32 values (or their bits, for the conversions, which stay integer-only).
 * Arithmetic is plain WGSL f32, round to nearest even; every product passes
 * through `opq` before it is added, so no compiler can fuse it into an fma.
 */
import type { KernelDType } from '../../device.js';
import { CONVERT_WGSL, encode16, inputDecls, loader, WG, weight } from './common.js';

export type MapOp =
  /** out bits = input bits (decoded to f32 bits, or the f32 bits re-encoded): conversions. */
  | { kind: 'copy' }
  /** out = ((w0·x0 + w1·x1) + …), every step rounded to f32. */
  | { kind: 'weighted'; k: number }
  /** out = x0 − x1 */
  | { kind: 'sub' }
  /** out = x0 + w0·x1 */
  | { kind: 'axpy' }
  /** out = x0 + w0·(x1 − x2): the transfer's output. */
  | { kind: 'transfer' };

export function mapInputs(op: MapOp): number {
  switch (op.kind) {
    case 'copy':
      return 1;
    case 'weighted':
      return op.k;
    case 'sub':
    case 'axpy':
      return 2;
    case 'transfer':
      return 3;
  }
}

function body(op: MapOp): string {
  const v = (i: number) => `bitcast<f32>(ld${i}(j))`;
  switch (op.kind) {
    case 'copy':
      return 'return ld0(j);';
    case 'weighted': {
      let s = `var acc: f32 = ${v(0)} * ${weight(0)};\n`;
      for (let i = 1; i < op.k; i++) s += `  let p${i}: f32 = ${v(i)} * ${weight(i)};\n  acc = acc + opq(p${i});\n`;
      return `${s}  return bitcast<u32>(acc);`;
    }
    case 'sub':
      return `return bitcast<u32>(${v(0)} - ${v(1)});`;
    case 'axpy':
      return `let p: f32 = ${weight(0)} * ${v(1)};\n  return bitcast<u32>(${v(0)} + opq(p));`;
    case 'transfer':
      return `let d: f32 = ${v(1)} - ${v(2)};\n  let p: f32 = ${weight(0)} * opq(d);\n  return bitcast<u32>(${v(0)} + opq(p));`;
  }
}

/** The shader for `op` reading `inDtype` inputs and writing `outDtype`; output at binding k + 1. */
export function mapShader(op: MapOp, inDtype: KernelDType, outDtype: KernelDType): string {
  const k = mapInputs(op);
  let s = CONVERT_WGSL + inputDecls(k);
  s += `@group(0) @binding(${k + 1}) var<storage, read_write> y: array<u32>;\n`;
  for (let i = 0; i < k; i++) s += loader(i, inDtype);
  s += `fn value(j: u32) -> u32 {\n  ${body(op)}\n}\n`;
  s += `@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let n = P[0].x;
  let t = gid.y * P[0].y + gid.x;
  let j = 2u * t;
  if (j >= n) { return; }
  let a = value(j);
  var b = 0u;
  let two = j + 1u < n;
  if (two) { b = value(j + 1u); }
`;
  if (outDtype === 'F32') s += '  y[j] = a;\n  if (two) { y[j + 1u] = b; }\n}\n';
  else s += `  y[t] = ${encode16(outDtype, 'a')} | (${encode16(outDtype, 'b')} << 16u);\n}\n`;
  return s;
}
