/** Reversible merge: one tensor's bytes worked on block by block, byte comparisons, and the group's side files. */

import type { Device } from '../../device/index.js';
import { type DType, dtypeSize } from '../../dtypes.js';
import { WgitError } from '../../errors.js';
import { type BufferPool, convertIn, convertOut, isKernelDType, type SideFileSource } from '../../pipeline/index.js';
import type { ModelSource } from '../../safetensors/index.js';
import { BLOCK, reconstruct, reconstructF64, sumSqPieces } from './math.js';

export class TensorBlocks {
  readonly len: number;
  readonly es: number;

  constructor(
    readonly device: Device,
    readonly pool: BufferPool,
    readonly dtype: DType,
    readonly raw: Uint8Array[],
  ) {
    this.es = dtypeSize(dtype);
    this.len = raw[raw.length - 1].byteLength / this.es;
  }

  *blocks(): Generator<{ off: number; count: number }> {
    for (let off = 0; off < this.len; off += BLOCK) yield { off, count: Math.min(BLOCK, this.len - off) };
  }

  bytes(i: number, off: number, count: number): Uint8Array {
    return this.raw[i].subarray(off * this.es, (off + count) * this.es);
  }

  /** f32 values of model i over the block, in slot `slot`. */
  values(i: number, off: number, count: number, slot: string): Promise<Float32Array> {
    return convertIn(this.pool, slot, this.bytes(i, off, count), this.dtype, this.device);
  }

  /**
   * The updates Δᵢ = f32(θᵢ − θ₀) over the block; the base's values with
   * `base`, the inputs' with `inputs`. Where the kernels read the dtype, Δᵢ
   * is one fused pass over the stored bytes (θᵢ·1 + θ₀·(−1): the same f32
   * subtraction).
   */
  async deltas(
    off: number,
    count: number,
    want: { base?: boolean; inputs?: boolean } = {},
  ): Promise<{ base: Float32Array; deltas: Float32Array[]; inputs: Float32Array[] }> {
    const n = this.raw.length - 1;
    const kernel = isKernelDType(this.dtype);
    const base =
      want.base || want.inputs || !kernel ? await this.values(n, off, count, 'rmm.base') : this.pool.f32('rmm.base', 0);
    const deltas: Float32Array[] = [];
    const inputs: Float32Array[] = [];
    for (let i = 0; i < n; i++) {
      if (want.inputs || !kernel) {
        const x = await this.values(i, off, count, want.inputs ? `rmm.x${i}` : `rmm.d${i}`);
        const d = want.inputs ? this.pool.f32(`rmm.d${i}`, count) : x;
        await this.device.sub(x, base, d);
        deltas.push(d);
        if (want.inputs) inputs.push(x);
        continue;
      }
      const d = this.pool.f32(`rmm.d${i}`, count);
      const raw = [this.bytes(i, off, count), this.bytes(n, off, count)];
      await this.device.weightedSumTyped(raw, this.dtype, [1, -1], 'F32', bytesOf(d));
      deltas.push(d);
    }
    return { base, deltas, inputs };
  }

  /**
   * θ̂ᵢ over the block rounded to the model dtype, in a pooled byte slot; `f64`
   * is the sum of groups written with a table of version 1.
   */
  async rounded(
    base: Float32Array,
    basis: Float32Array[],
    coeffs: number[],
    count: number,
    sum: 'f32' | 'f64' = 'f32',
  ): Promise<Uint8Array> {
    const rec = this.pool.f32('rmm.rec', count);
    if (sum === 'f64') reconstructF64(base, basis, coeffs, rec);
    else await reconstruct(base, basis, coeffs, rec, this.device);
    const bytes = this.pool.bytes('rmm.recb', count * this.es);
    await convertOut(rec, this.dtype, bytes, this.device);
    return bytes;
  }

  /** The values of `bytes` (this tensor's dtype) in slot `slot`. */
  back(bytes: Uint8Array, slot: string): Promise<Float32Array> {
    return convertIn(this.pool, slot, bytes, this.dtype, this.device);
  }

  /** acc + Σ (aⱼ − xⱼ)² (f32 differences, f64 sum). */
  async errorSq(a: Float32Array, x: Float32Array, acc: number): Promise<number> {
    const d = this.pool.f32('rmm.diff', a.length);
    await this.device.sub(a, x, d);
    return sumSqPieces(this.device, d, acc);
  }
}

export function bytesOf(a: Float32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.compare(a, b) === 0;
}

/** Calls fn(j) for each element j (of es bytes) where a and b differ. */
export function forEachDiff(a: Uint8Array, b: Uint8Array, es: number, fn: (j: number) => void): void {
  const aligned = a.byteOffset % es === 0 && b.byteOffset % es === 0 && (es === 2 || es === 4);
  if (aligned) {
    const view = (u: Uint8Array) =>
      es === 2
        ? new Uint16Array(u.buffer, u.byteOffset, u.byteLength / 2)
        : new Uint32Array(u.buffer, u.byteOffset, u.byteLength / 4);
    const x = view(a);
    const y = view(b);
    for (let j = 0; j < x.length; j++) if (x[j] !== y[j]) fn(j);
    return;
  }
  for (let off = 0, j = 0; off < a.length; off += es, j++) {
    for (let k = 0; k < es; k++) {
      if (a[off + k] !== b[off + k]) {
        fn(j);
        break;
      }
    }
  }
}

/** The input side files of the group: input i's files under `inputs/<i>/`. */
export function inputsSideFiles(inputs: ModelSource[]): SideFileSource {
  const sideFiles = inputs.flatMap((m, i) => m.sideFiles.map((f) => `inputs/${i}/${f}`));
  return {
    sideFiles,
    readSideFile: (rel: string) => {
      const m = /^inputs\/(\d+)\/(.+)$/.exec(rel);
      const input = m ? inputs[Number(m[1])] : undefined;
      if (!m || !input) throw new WgitError('E_INTERNAL', `not a side file of the rmm group: ${rel}`, { file: rel });
      return input.readSideFile(m[2]);
    },
  };
}

export function elementCount(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}
