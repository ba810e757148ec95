/**
 * Magnitude pruning of one model (`wgit prune`), and the zero counts behind
 * the sparsity a merge reports.
 *
 * Pruned: the 2-D float tensors of the layers (a block index in the name:
 * layers.N., h.N., blocks.N.), the linear weights; embeddings, heads, norms
 * and biases are copied. Per tensor of N entries:
 *
 *   unstructured, sparsity S: z = round(S·N) entries with the smallest |w| become 0;
 *     the survivors are the N − z largest, equal magnitudes kept by the earlier flat index
 *   structured N:M:  in each run of M consecutive entries of a row, the N largest |w|
 *     stay (equal magnitudes: the earlier index) and the other M − N become 0;
 *     the row length must be a multiple of M
 *
 * Kept entries keep their bits (an f32 round trip of bf16/f16/f32 is exact).
 * A NaN ranks below every number, so it is pruned first.
 */
import type { Device } from '../device/index.js';
import { getDevice } from '../device/index.js';
import { type DType, isFloatDType } from '../dtypes.js';
import { WgitError } from '../errors.js';
import { convertIn, convertOut } from '../pipeline/buffers.js';
import { type PipelineOptions, runTensorPipeline } from '../pipeline/run.js';
import type { ModelSource } from '../safetensors/index.js';
import { blockIndex } from './lines.js';
import type { MergeReport } from './types.js';

/** |x| for ranking; a NaN ranks below every number. */
function mag(x: number): number {
  return Number.isNaN(x) ? -1 : Math.abs(x);
}

/** Zeroes the round(S·N) smallest-|x| entries of x (the earlier index survives a tie); returns that count. */
export function pruneUnstructured(x: Float32Array, sparsity: number): number {
  const z = Math.round(sparsity * x.length);
  if (z <= 0) return 0;
  if (z >= x.length) {
    x.fill(0);
    return x.length;
  }
  const idx = new Uint32Array(x.length);
  for (let j = 0; j < idx.length; j++) idx[j] = j;
  // ascending by |x|, the later index first among equals: the first z are pruned
  const keyed = new Float64Array(x.length);
  for (let j = 0; j < x.length; j++) keyed[j] = mag(x[j]);
  idx.sort((a, b) => keyed[a] - keyed[b] || b - a);
  for (let r = 0; r < z; r++) x[idx[r]] = 0;
  return z;
}

/** N:M pruning of a row-major tensor whose rows have `cols` entries; returns the count zeroed. */
export function pruneNM(x: Float32Array, cols: number, n: number, m: number): number {
  if (cols % m !== 0)
    throw new WgitError('E_BAD_PARAM', `${n}:${m} pruning needs rows whose length is a multiple of ${m}, got ${cols}`, {
      param: 'structured',
      cols,
    });
  const g = new Array<number>(m);
  for (let s = 0; s < x.length; s += m) {
    for (let k = 0; k < m; k++) g[k] = k;
    g.sort((a, b) => mag(x[s + b]) - mag(x[s + a]) || a - b);
    for (let r = n; r < m; r++) x[s + g[r]] = 0;
  }
  return (x.length / m) * (m - n);
}

/** Whether `wgit prune` prunes a tensor: a 2-D float tensor of a layer. */
export function prunable(name: string, dtype: DType, shape: number[]): boolean {
  return isFloatDType(dtype) && shape.length === 2 && blockIndex(name) !== null;
}

/** Entries that are ±0 in a tensor's raw bytes (F32, F16, BF16; other float dtypes through f32). */
export function zeroCountRaw(bytes: Uint8Array, dtype: DType): number {
  let z = 0;
  if (dtype === 'F16' || dtype === 'BF16') {
    for (let j = 0; j + 1 < bytes.length; j += 2) if (bytes[j] === 0 && (bytes[j + 1] & 0x7f) === 0) z++;
    return z;
  }
  if (dtype === 'F32') {
    for (let j = 0; j + 3 < bytes.length; j += 4)
      if (bytes[j] === 0 && bytes[j + 1] === 0 && bytes[j + 2] === 0 && (bytes[j + 3] & 0x7f) === 0) z++;
    return z;
  }
  return -1;
}

/** Entries equal to 0 in f32 values. */
export function zeroCountF32(x: Float32Array): number {
  let z = 0;
  for (let j = 0; j < x.length; j++) if (x[j] === 0) z++;
  return z;
}

/**
 * Zeros of the float tensors of a merge's inputs and output (`MergeReport.sparsity`):
 * inputs of a linear merge that share a mask give an output with the same zeros.
 * Inputs are counted from their bytes; the output from its bytes, or from its
 * f32 values where the plain path computed it.
 */
export class SparsityCount {
  elements = 0;
  inputs: number[];
  output = 0;
  constructor(n: number) {
    this.inputs = new Array<number>(n).fill(0);
  }
  /** Every float tensor, before it is computed; `unchanged`: the output is raw[0] (nothing changes it, PipelineTensor). */
  addInputs(raw: Uint8Array[], dtype: DType, unchanged: boolean, elements: number): void {
    const zs = raw.slice(0, this.inputs.length).map((r) => zeroCountRaw(r, dtype));
    if (zs.some((z) => z < 0)) return;
    this.elements += elements;
    zs.forEach((z, i) => {
      this.inputs[i] += z;
    });
    if (unchanged) this.output += zs[0];
  }
  addOutputRaw(out: Uint8Array, outDtype: DType): void {
    this.output += Math.max(0, zeroCountRaw(out, outDtype));
  }
  addOutputF32(out: Float32Array): void {
    this.output += zeroCountF32(out);
  }
  report(): { elements: number; inputs: number[]; output: number } {
    const share = (z: number) => (this.elements > 0 ? z / this.elements : 0);
    return { elements: this.elements, inputs: this.inputs.map(share), output: share(this.output) };
  }
}

export interface PruneOptions {
  model: ModelSource;
  /** Fraction of each pruned tensor set to 0, in [0, 1] (with `structured`: 1 − N/M, may be left out). */
  sparsity?: number;
  /** N:M: keep N of every M consecutive entries of a row. */
  structured?: { n: number; m: number };
  outDir?: string;
  sink?: PipelineOptions['sink'];
  onProgress?: PipelineOptions['onProgress'];
  device?: Device;
}

export interface PruneTensorReport {
  name: string;
  elements: number;
  /** Entries set to 0 by the pruning (some may have been 0 already). */
  pruned: number;
  /** Entries that are 0 afterwards. */
  zeros: number;
}

export interface PruneReport extends MergeReport {
  prune: {
    sparsity: number;
    structured: { n: number; m: number } | null;
    tensors: PruneTensorReport[];
    /** Over the pruned tensors. */
    elements: number;
    zeros: number;
  };
}

function checkPrune(opts: PruneOptions): number {
  const s = opts.structured;
  if (s) {
    if (!Number.isInteger(s.n) || !Number.isInteger(s.m) || s.m < 1 || s.n < 0 || s.n > s.m)
      throw new WgitError('E_BAD_PARAM', `structured sparsity N:M needs integers 0 ≤ N ≤ M, M ≥ 1, got ${s.n}:${s.m}`, {
        param: 'structured',
      });
    const implied = 1 - s.n / s.m;
    if (opts.sparsity !== undefined && Math.abs(opts.sparsity - implied) > 1e-12)
      throw new WgitError('E_BAD_PARAM', `sparsity ${opts.sparsity} does not match ${s.n}:${s.m} (${implied})`, {
        param: 'sparsity',
      });
    return implied;
  }
  const v = opts.sparsity;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > 1)
    throw new WgitError('E_BAD_PARAM', `sparsity must be a number in [0, 1], got ${JSON.stringify(v)}`, {
      param: 'sparsity',
    });
  return v;
}

/** Prunes a model's layer weights by magnitude, writing the result to a folder or sink. */
export async function pruneModel(opts: PruneOptions): Promise<PruneReport> {
  const sparsity = checkPrune(opts);
  const s = opts.structured ?? null;
  const specs = new Map(opts.model.tensors.map((t) => [t.name, t]));
  const tensors: PruneTensorReport[] = [];
  const device = opts.device ?? (await getDevice({ device: 'auto' }));
  const report = await runTensorPipeline({
    device,
    label: 'prune',
    inputs: [opts.model],
    outDir: opts.outDir,
    sink: opts.sink,
    onProgress: opts.onProgress,
    params: { sparsity, structured: s },
    // a single input makes every tensor "unchanged" to the pipeline: the pruned ones are written here
    step: async (t) => {
      const spec = specs.get(t.name);
      if (!spec || !prunable(t.name, spec.dtype, spec.shape) || t.dtype !== t.outDtype) return false;
      const x = await convertIn(t.pool, 'prune', t.raw[0], t.dtype, t.device);
      const pruned = s ? pruneNM(x, spec.shape[1], s.n, s.m) : pruneUnstructured(x, sparsity);
      tensors.push({ name: t.name, elements: x.length, pruned, zeros: zeroCountF32(x) });
      await convertOut(x, t.outDtype, t.out, t.device);
      return true;
    },
  });
  let elements = 0;
  let zeros = 0;
  for (const t of tensors) {
    elements += t.elements;
    zeros += t.zeros;
  }
  if (tensors.length === 0)
    report.warnings.push('no 2-D float tensors in the layers (names with layers.N., h.N., blocks.N.): nothing pruned');
  return { ...report, prune: { sparsity, structured: s, tensors, elements, zeros } };
}
