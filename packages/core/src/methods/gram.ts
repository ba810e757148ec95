/**
 * Methods whose result per tensor is a combination Σ cᵢ·vᵢ of the whole
 * flattened tensors (the inputs, then the base where the method takes one),
 * with coefficients that depend only on their Gram matrix Gᵢⱼ = ⟨vᵢ, vⱼ⟩:
 * slerp, nuslerp, model_stock, karcher. The Gram matrix is summed in f64 in
 * the kernels' order (device dot), the coefficients computed in f64 and
 * rounded to f32, and the combination is the weighted sum of linear, so the
 * kernel path and the plain path agree.
 */
import type { KernelDType } from '../device/index.js';
import { reference } from '../device/index.js';
import { WgitError } from '../errors.js';
import { defineMethod, type MethodSpec } from './params.js';
import type { MergeMethod, TensorParams } from './types.js';

const fr = Math.fround;

export interface GramSpec extends Omit<MethodSpec, 'build' | 'fast'> {
  /** Coefficients on [inputs…, base?] from their Gram matrix (f64). */
  coefficients(gram: number[][], tp: TensorParams): number[];
}

/** ⟨vᵢ, vⱼ⟩ for every pair, in f64 (the reference device's summation order). */
export function gramOf(vs: Float32Array[]): number[][] {
  const n = vs.length;
  const g = Array.from({ length: n }, () => new Array<number>(n).fill(0));
  for (let i = 0; i < n; i++)
    for (let j = i; j < n; j++) {
      g[i][j] = i === j ? reference.sumSq(vs[i]) : reference.dot(vs[i], vs[j]);
      g[j][i] = g[i][j];
    }
  return g;
}

/** The Gram matrix of the task vectors vᵢ − b from the Gram matrix of [v…, b] (b last). */
export function taskGram(g: number[][]): number[][] {
  const b = g.length - 1;
  return Array.from({ length: b }, (_, i) =>
    Array.from({ length: b }, (_, j) => g[i][j] - g[i][b] - g[j][b] + g[b][b]),
  );
}

function combine(vs: Float32Array[], c: number[], out: Float32Array): void {
  const cf = c.map(fr);
  for (let j = 0; j < out.length; j++) {
    let s = 0;
    for (let i = 0; i < vs.length; i++) s = fr(s + fr(cf[i] * vs[i][j]));
    out[j] = s;
  }
}

function checkCoefficients(name: string, c: number[]): number[] {
  if (!c.every(Number.isFinite))
    throw new WgitError('E_BAD_PARAM', `${name}: the coefficients are not finite (${c.join(', ')})`, { method: name });
  return c;
}

export function defineGramMethod(spec: GramSpec): MergeMethod {
  const { coefficients, ...rest } = spec;
  const withBase = (inputs: Float32Array[], base: Float32Array | undefined) => (base ? [...inputs, base] : inputs);
  return defineMethod({
    ...rest,
    build(tp) {
      return (inputs, base, _ctx, out) => {
        const vs = withBase(inputs, base);
        combine(vs, checkCoefficients(spec.name, coefficients(gramOf(vs), tp)), out);
      };
    },
    async fast({ device, params }, raw, dtype, outDtype, outBytes, pool) {
      if (raw.length > 8) return false;
      const len = raw[0].byteLength / (dtype === 'F32' ? 4 : 2);
      const vs: Float32Array[] = [];
      for (const [i, r] of raw.entries()) {
        const v = pool.f32(`gram${i}`, len);
        await device.toF32(r, dtype as KernelDType, v);
        vs.push(v);
      }
      const n = vs.length;
      const g = Array.from({ length: n }, () => new Array<number>(n).fill(0));
      for (let i = 0; i < n; i++)
        for (let j = i; j < n; j++) {
          g[i][j] = i === j ? await device.sumSq(vs[i]) : await device.dot(vs[i], vs[j]);
          g[j][i] = g[i][j];
        }
      const c = checkCoefficients(spec.name, coefficients(g, params)).map(fr);
      await device.weightedSumTyped(raw, dtype, c, outDtype, outBytes);
      return true;
    },
  });
}
