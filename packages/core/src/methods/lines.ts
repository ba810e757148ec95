/**
 * LiNeS (Wang et al. 2025, "LiNeS: post-training layer scaling prevents
 * forgetting and enhances model merging"): scale a task vector by depth,
 * λ(ℓ) = α + β·ℓ/(L−1), so shallow blocks stay near the base and deep blocks
 * keep their update. Tensors outside the blocks get α.
 */
import { type Device, getDevice } from '../device/index.js';
import { dtypeSize } from '../dtypes.js';
import { WgitError } from '../errors.js';
import { isKernelDType, type PipelineOptions, runTensorPipeline } from '../pipeline/index.js';
import type { ModelSource } from '../safetensors/index.js';
import type { MergeReport } from './types.js';

/** A block number must be a whole dotted name component after a block keyword. */
export const BLOCK_PATTERN = /(?:^|\.)(?:layers|h|blocks|layer|block)\.(\d+)\./;

/** The block index of a tensor name, or null outside the blocks. */
export function blockIndex(name: string): number | null {
  const m = BLOCK_PATTERN.exec(name);
  if (!m) return null;
  const n = Number(m[1]);
  return Number.isSafeInteger(n) ? n : null;
}

/** Number of blocks L = max block index + 1 (0 when no name has one). */
export function countBlocks(names: Iterable<string>): number {
  let max = -1;
  for (const n of names) {
    const b = blockIndex(n);
    if (b !== null && b > max) max = b;
  }
  return max + 1;
}

/** λ for one tensor. With a single block, ℓ/(L−1) is taken as 0. */
export function linesScale(name: string, blocks: number, alpha: number, beta: number): number {
  const b = blockIndex(name);
  if (b === null || blocks <= 1) return alpha;
  return alpha + (beta * b) / (blocks - 1);
}

/** α for LiNeS as a merge post-step: (1/T)·‖Σ τᵢ‖₁ / ‖τ_merged‖₁ over the whole model. */
export function linesMergeAlpha(sumTaskL1: number, mergedL1: number, tasks: number): number {
  if (mergedL1 === 0) return 1 / tasks;
  return sumTaskL1 / mergedL1 / tasks;
}

export const DEFAULT_LINES_ALPHA = 0.5;

export interface LinesEditOptions {
  /** The fine-tuned model. */
  model: ModelSource;
  base: ModelSource;
  /** Scale of the shallowest block and of the non-block tensors (default 0.5). */
  alpha?: number;
  /** Extra scale reached at the last block (default 1 − α, so the last block keeps its whole update). */
  beta?: number;
  /** The output folder, unless `sink` is given. */
  outDir?: string;
  /** Where the edited model goes instead of a folder (e.g. a store commit); wins over outDir. */
  sink?: PipelineOptions['sink'];
  outDtype?: PipelineOptions['outDtype'];
  onProgress?: PipelineOptions['onProgress'];
  maxShardBytes?: number;
  /** The device to compute on (default: getDevice({ device: 'auto' })). */
  device?: Device;
  /** false: the reference (plain TypeScript) device, as env WGIT_KERNELS=0 (default true: the WASM pool). */
  kernels?: boolean;
  /** Tensors with fewer elements take the plain TypeScript path (default 65,536): kernel calls have a fixed cost. */
  kernelMinElements?: number;
}

export interface LinesReport extends MergeReport {
  lines: { alpha: number; beta: number; blocks: number };
}

/** Single-model LiNeS: θ₀ + λ(ℓ)·(θ_ft − θ₀). */
export async function linesEdit(opts: LinesEditOptions): Promise<LinesReport> {
  const alpha = opts.alpha ?? DEFAULT_LINES_ALPHA;
  if (!Number.isFinite(alpha))
    throw new WgitError('E_BAD_PARAM', `LiNeS alpha must be a finite number, got ${alpha}`, { param: 'alpha' });
  const beta = opts.beta ?? 1 - alpha;
  if (!Number.isFinite(beta))
    throw new WgitError('E_BAD_PARAM', `LiNeS beta must be a finite number, got ${beta}`, { param: 'beta' });
  const blocks = countBlocks(opts.model.tensors.map((t) => t.name));
  const device =
    opts.device ?? (await getDevice({ device: 'auto', backend: opts.kernels === false ? 'reference' : undefined }));
  const minElements = opts.kernelMinElements ?? 1 << 16;
  let kernelTensors = 0;
  const report = await runTensorPipeline({
    device,
    // the plain loop's operations in its order: τ = θ − θ₀ (sub), θ₀ + s·τ (axpy)
    fast: async (name, raw, dtype, outDtype, outBytes, pool) => {
      if (!isKernelDType(dtype) || !isKernelDType(outDtype) || raw[0].byteLength / dtypeSize(dtype) < minElements)
        return false;
      const n = raw[0].byteLength / dtypeSize(dtype);
      const x = pool.f32('lx', n);
      const b = pool.f32('lb', n);
      await device.toF32(raw[0], dtype, x);
      await device.toF32(raw[1], dtype, b);
      await device.sub(x, b, x);
      await device.axpy(b, Math.fround(linesScale(name, blocks, alpha, beta)), x, x);
      await device.fromF32(x, outDtype, outBytes);
      kernelTensors++;
      return true;
    },
    label: 'lines',
    inputs: [opts.model],
    base: opts.base,
    // The edit is still the fine-tune: it keeps the fine-tune's config, tokenizer and metadata.
    carrier: opts.model,
    outDir: opts.outDir,
    sink: opts.sink,
    outDtype: opts.outDtype,
    onProgress: opts.onProgress,
    maxShardBytes: opts.maxShardBytes,
    params: { alpha, beta },
    compute: (name, inputs, base, out) => {
      const s = Math.fround(linesScale(name, blocks, alpha, beta));
      const x = inputs[0];
      const b = base as Float32Array;
      for (let j = 0; j < out.length; j++) out[j] = Math.fround(b[j] + Math.fround(s * Math.fround(x[j] - b[j])));
    },
  });
  report.engine = { kernels: device.name !== 'reference', device: device.name, kernelTensors };
  return { ...report, lines: { alpha, beta, blocks } };
}
