/**
 * The streaming tensor pipeline: N model sources in, tensor by tensor — read
 * each model's bytes, convert to f32, compute, round to the output dtype,
 * write — one sink out (a model folder, or any `Sink`: the store takes the
 * stream as a commit). Memory stays bounded by a few tensors whatever the
 * model size; reads of the next tensor overlap the compute of the current
 * one and the write of the previous one (double-buffered, pooled buffers).
 */
import { type Device, getDevice } from '../device/index.js';
import { type DType, dtypeSize, isFloatDType } from '../dtypes.js';
import { WgitError } from '../errors.js';
import type { MergeReport, ProgressEvent, ResolvedParams, TensorNote } from '../methods/types.js';
import type { ModelSource, TensorSpec } from '../safetensors/index.js';
import { BufferPool, convertIn, convertOut } from './buffers.js';
import { checkOutDtype } from './output.js';
import { FolderSink, fillGroups, fillSink, type GroupPlan, type SideFileSource, type Sink } from './sink.js';
import { streamTensors, validateModels } from './sources.js';

function elements(shape: number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** True when every buffer holds the same bytes. */
function allEqual(raw: Uint8Array[]): boolean {
  const first = Buffer.from(raw[0].buffer, raw[0].byteOffset, raw[0].byteLength);
  return raw.every(
    (r, i) =>
      i === 0 || (r.byteLength === first.byteLength && first.equals(Buffer.from(r.buffer, r.byteOffset, r.byteLength))),
  );
}

export interface PipelineOptions {
  label: string;
  inputs: ModelSource[];
  base?: ModelSource;
  /** The output folder (a FolderSink), unless `sink` is given. */
  outDir?: string;
  /** Where the output goes instead of a folder (e.g. a store commit); wins over outDir. */
  sink?: Sink;
  outDtype?: DType;
  onProgress?: (e: ProgressEvent) => void;
  maxShardBytes?: number;
  params: Record<string, unknown>;
  /** Float tensors: fill `out` from the inputs' (and base's) f32 values (unless `step` or `fast` did). */
  compute?: (
    name: string,
    inputs: Float32Array[],
    base: Float32Array | undefined,
    out: Float32Array,
  ) => void | Promise<void>;
  /** Whole-model passes to run after validation, before writing (timed as firstPassMs). */
  firstPass?: () => Promise<void>;
  /**
   * Tensor groups written beside the output (`Sink.group`: a basis, a table),
   * planned once firstPass has run: they are opened before the first tensor
   * and finished before the output; `step` writes each tensor's share.
   */
  groups?: () => GroupPlan[];
  /**
   * Every tensor, float or not, before the default handling, with the groups
   * open: writes this tensor's share of them and returns true when it filled
   * the output bytes itself, false to leave the tensor to the pipeline (the
   * first model's copy for integer/bool tensors, `fast` or `compute` for float ones).
   */
  step?: (t: PipelineTensor) => Promise<boolean>;
  /** Safetensors metadata of the output (default: the carrier's). */
  metadata?: Record<string, string>;
  /** The model whose side files and metadata the output takes (default: the base, else the first input). */
  carrier?: ModelSource;
  /** Side files from elsewhere than the carrier (side-files.ts); the metadata still comes from the carrier. */
  sideFiles?: SideFileSource;
  /** The device for conversions, buffers and the fast path (default: getDevice({ device: 'auto' })). */
  device?: Device;
  /**
   * A fast path for one float tensor: writes the output bytes directly and
   * returns true, or returns false to go through compute().
   */
  fast?: (
    name: string,
    raw: Uint8Array[],
    dtype: DType,
    outDtype: DType,
    outBytes: Uint8Array,
    pool: BufferPool,
  ) => Promise<boolean>;
}

/** One tensor as `step` sees it. */
export interface PipelineTensor {
  name: string;
  /** Position in the output's tensor order. */
  index: number;
  /** The models' dtype of this tensor, and the output's. */
  dtype: DType;
  outDtype: DType;
  /** Raw bytes per model: the inputs in order, then the base. */
  raw: Uint8Array[];
  /** The output tensor's bytes, to fill (then return true). */
  out: Uint8Array;
  pool: BufferPool;
  device: Device;
  /** A float tensor whose bytes are the same in every model (and the output dtype is theirs): written as it is unless `step` fills it. */
  unchanged: boolean;
  /** The open groups, by name. */
  groups: Readonly<Record<string, Sink>>;
}

export interface PipelineReport {
  method: string;
  params: Record<string, unknown>;
  tensors: TensorNote[];
  warnings: string[];
  copied: string[];
  timings: MergeReport['timings'];
  outDir: string;
  bytesWritten: number;
}

export async function runTensorPipeline(opts: PipelineOptions): Promise<MergeReport> {
  const t0 = performance.now();
  const models = opts.base ? [...opts.inputs, opts.base] : [...opts.inputs];
  validateModels(models);
  const outDtype = checkOutDtype(opts.outDtype);
  if (opts.outDir === undefined && opts.sink === undefined)
    throw new WgitError('E_BAD_PARAM', 'the tensor pipeline needs an output folder (outDir) or a sink', {
      param: 'outDir',
    });
  const sink = opts.sink ?? new FolderSink(opts.outDir as string);
  const ref = opts.inputs[0];
  const carrier = opts.carrier ?? opts.base ?? ref;
  const specs: TensorSpec[] = ref.tensors.map((t) => ({
    name: t.name,
    dtype: isFloatDType(t.dtype) && outDtype ? outDtype : t.dtype,
    shape: t.shape,
  }));
  const plan = {
    specs,
    maxShardBytes: opts.maxShardBytes,
    metadata: opts.metadata ?? carrier.metadata ?? undefined,
  };
  let t1 = t0;
  let t2 = t0;
  let pool: BufferPool | null = null;
  const notes: TensorNote[] = [];
  const copied: string[] = [];
  const warnings: string[] = [];
  const names = ref.tensors.map((t) => t.name);
  const nIn = opts.inputs.length;
  let bytesWritten = 0;
  const stream = async (groups: Readonly<Record<string, Sink>>): Promise<void> => {
    const device = opts.device ?? (await getDevice({ device: 'auto' }));
    const buffers = new BufferPool(device);
    pool = buffers;
    let pendingWrite: Promise<void> = Promise.resolve();
    try {
      for await (const lt of streamTensors(models, names, buffers)) {
        const info = ref.tensor(lt.name);
        const spec = specs[lt.index];
        const float = isFloatDType(info.dtype);
        const outBytes = buffers.bytes(
          `o${lt.index & 1}`,
          float ? elements(info.shape) * dtypeSize(spec.dtype) : lt.raw[0].byteLength,
        );
        const unchanged = float && spec.dtype === info.dtype && allEqual(lt.raw);
        const done = opts.step
          ? await opts.step({
              name: lt.name,
              index: lt.index,
              dtype: info.dtype,
              outDtype: spec.dtype,
              raw: lt.raw,
              out: outBytes,
              pool: buffers,
              device,
              groups,
              unchanged,
            })
          : false;
        if (!float && !done) {
          // never average step counters, masks or ids: take the first model's
          outBytes.set(lt.raw[0]);
          copied.push(lt.name);
          notes.push({
            name: lt.name,
            dtype: info.dtype,
            shape: info.shape,
            action: 'copied',
            note: 'integer/bool tensor taken from the first model',
          });
        } else if (!done && unchanged) {
          // No model changes it (every input, and the base, hold these bytes): any merge gives it
          // back, so it is written as it is — -0 stays -0, NaN payloads stay, and it deduplicates.
          outBytes.set(lt.raw[0]);
          notes.push({ name: lt.name, dtype: spec.dtype, shape: info.shape, action: 'unchanged' });
        } else {
          if (!done && !(opts.fast && (await opts.fast(lt.name, lt.raw, info.dtype, spec.dtype, outBytes, buffers)))) {
            if (!opts.compute)
              throw new WgitError('E_INTERNAL', `${opts.label}: nothing computes tensor ${lt.name}`, {
                tensor: lt.name,
              });
            const values: Float32Array[] = [];
            for (let i = 0; i < lt.raw.length; i++)
              values.push(await convertIn(buffers, `f${i}`, lt.raw[i], info.dtype, device));
            const out = buffers.f32('out', elements(info.shape));
            await opts.compute(lt.name, values.slice(0, nIn), opts.base ? values[nIn] : undefined, out);
            await convertOut(out, spec.dtype, outBytes, device);
          }
          notes.push({ name: lt.name, dtype: spec.dtype, shape: info.shape, action: 'merged' });
        }
        await pendingWrite;
        pendingWrite = sink.write(lt.name, outBytes);
        pendingWrite.catch(() => {});
        bytesWritten += outBytes.byteLength;
        opts.onProgress?.({ phase: opts.label, done: lt.index + 1, total: names.length, tensor: lt.name });
      }
    } finally {
      // a write still in flight must settle before the buffers are released or the sink aborted
      await pendingWrite.catch(() => {});
    }
    await pendingWrite;
  };
  try {
    await fillSink(sink, plan, opts.sideFiles ?? carrier, async () => {
      t1 = performance.now();
      if (opts.firstPass) await opts.firstPass();
      t2 = performance.now();
      await fillGroups(sink, opts.groups?.() ?? [], stream);
    });
  } finally {
    (pool as BufferPool | null)?.release();
  }
  if (copied.length)
    warnings.push(
      `${copied.length} integer/bool tensor(s) copied from the first model: ${copied.slice(0, 5).join(', ')}`,
    );
  const t3 = performance.now();
  return {
    method: opts.label,
    params: { ...(opts.params as unknown as ResolvedParams), outDtype: outDtype ?? null },
    tensors: notes,
    warnings,
    copied,
    timings: { validateMs: t1 - t0, firstPassMs: t2 - t1, mergeMs: t3 - t2, totalMs: t3 - t0 },
    outDir: opts.outDir ?? '',
    bytesWritten,
  };
}
