/**
 * The streaming merge engine: validates the models up front, then goes tensor
 * by tensor — read each model's bytes, convert to f32, compute, round to the
 * output dtype, write — so memory stays bounded by a few tensors whatever the
 * model size. Reads of the next tensor overlap the compute of the current one
 * and the write of the previous one (double-buffered, pooled buffers).
 */
import { mkdir, readdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { type Device, type DeviceBuffer, getDevice, type KernelDType, referenceDevice } from '../device/index.js';
import { type DType, dtypeSize, fromF32, isDType, isFloatDType, toF32 } from '../dtypes.js';
import { WgitError } from '../errors.js';
import { writeFileAtomic } from '../safetensors/atomic.js';
import { type ModelSource, ModelWriter, type TensorSpec } from '../safetensors/index.js';
import { checkRelPath } from '../util/safe-path.js';
import { type FastTensor, fastMergeTensor } from './fast.js';
import { countBlocks, linesMergeAlpha, linesScale } from './lines.js';
import { tensorParams } from './params.js';
import { getMethod } from './registry.js';
import { AbsSelector, keepCount } from './select.js';
import type { MergeParams, MergeReport, ProgressEvent, ResolvedParams, TensorContext, TensorNote } from './types.js';

const fr = Math.fround;

// ---------------------------------------------------------------------------
// validation

function describe(m: ModelSource): string {
  return m.root;
}

/**
 * Checks that every model has the same tensor names, shapes and dtypes as the
 * first one, before any work: E_TENSOR_MISMATCH lists the first differing
 * names, E_SHAPE_MISMATCH / E_DTYPE_MISMATCH name the tensor.
 */
export function validateModels(models: ModelSource[]): void {
  if (models.length === 0) throw new WgitError('E_BAD_PARAM', 'no input models', {});
  const ref = models[0];
  const refNames = new Set(ref.tensors.map((t) => t.name));
  for (const m of models.slice(1)) {
    const names = new Set(m.tensors.map((t) => t.name));
    const missing = [...refNames].filter((n) => !names.has(n));
    const extra = [...names].filter((n) => !refNames.has(n));
    if (missing.length || extra.length) {
      const show = (xs: string[]) => xs.slice(0, 5).join(', ') + (xs.length > 5 ? `, … (${xs.length} in all)` : '');
      const parts: string[] = [];
      if (missing.length) parts.push(`missing in ${describe(m)}: ${show(missing)}`);
      if (extra.length) parts.push(`only in ${describe(m)}: ${show(extra)}`);
      throw new WgitError(
        'E_TENSOR_MISMATCH',
        `models differ in their tensors (vs ${describe(ref)}); ${parts.join('; ')}`,
        {
          model: m.root,
          reference: ref.root,
          missing: missing.slice(0, 20),
          extra: extra.slice(0, 20),
        },
      );
    }
    for (const t of ref.tensors) {
      const o = m.tensor(t.name);
      if (o.shape.length !== t.shape.length || o.shape.some((d, i) => d !== t.shape[i])) {
        throw new WgitError(
          'E_SHAPE_MISMATCH',
          `tensor ${t.name}: shape [${o.shape}] in ${describe(m)} vs [${t.shape}] in ${describe(ref)}`,
          { tensor: t.name, model: m.root, shape: o.shape, expected: t.shape },
        );
      }
      if (o.dtype !== t.dtype) {
        throw new WgitError(
          'E_DTYPE_MISMATCH',
          `tensor ${t.name}: dtype ${o.dtype} in ${describe(m)} vs ${t.dtype} in ${describe(ref)}`,
          {
            tensor: t.name,
            model: m.root,
            dtype: o.dtype,
            expected: t.dtype,
          },
        );
      }
    }
  }
}

export function checkOutDtype(d: unknown): DType | undefined {
  if (d === undefined || d === null) return undefined;
  if (typeof d !== 'string' || !isDType(d) || !isFloatDType(d)) {
    throw new WgitError(
      'E_BAD_PARAM',
      `output dtype must be a float dtype (F32, F16, BF16, …), got ${JSON.stringify(d)}`,
      { param: 'outDtype' },
    );
  }
  return d;
}

/** Removes an output folder that prepareOutDir found empty or absent, after a failure. */
export async function discardOutDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true }).catch(() => {});
}

/** Refuses to write into a folder that already has files, so a mistake never mixes two models. */
export async function prepareOutDir(dir: string): Promise<void> {
  let entries: string[] = [];
  try {
    entries = await readdir(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new WgitError('E_OUT_DIR', `cannot use output folder ${dir}: ${(e as Error).message}`, { path: dir });
    }
  }
  if (entries.length > 0) throw new WgitError('E_OUTPUT_NOT_EMPTY', `output folder ${dir} is not empty`, { path: dir });
  await mkdir(dir, { recursive: true });
}

/** Copies the side files (config.json, tokenizer …) of `from` into `outDir`, atomically each. */
export async function copySideFiles(
  from: ModelSource,
  outDir: string,
  skip: Set<string> = new Set(),
): Promise<string[]> {
  const copied: string[] = [];
  for (const rel of from.sideFiles) {
    checkRelPath(rel, 'side file');
    if (skip.has(rel)) continue;
    const data = await from.readSideFile(rel);
    const target = join(outDir, ...rel.split('/'));
    await mkdir(dirname(target), { recursive: true });
    await writeFileAtomic(target, data);
    copied.push(rel);
  }
  return copied;
}

// ---------------------------------------------------------------------------
// buffers and streaming reads

/**
 * Named buffers that grow to the largest tensor seen and are then reused, so
 * big models do not page-fault fresh memory per tensor. They are the
 * device's own memory (the WASM pool's shared memory on the wasm device), so
 * file reads land where the kernels work (no copies) and page-aligned reads
 * run faster. The default is the reference device: ordinary arrays.
 */
export class BufferPool {
  private bytesSlots = new Map<string, DeviceBuffer<'U8'>>();
  private f32Slots = new Map<string, DeviceBuffer<'F32'>>();

  constructor(private readonly device: Device = referenceDevice()) {}

  bytes(slot: string, n: number): Uint8Array {
    let b = this.bytesSlots.get(slot);
    if (!b || b.length < n) {
      if (b) this.device.free(b);
      b = this.device.alloc('U8', Math.max(n, 64));
      this.bytesSlots.set(slot, b);
    }
    return this.device.hostView(b).subarray(0, n);
  }

  f32(slot: string, n: number): Float32Array {
    let b = this.f32Slots.get(slot);
    if (!b || b.length < n) {
      if (b) this.device.free(b);
      b = this.device.alloc('F32', Math.max(n, 16));
      this.f32Slots.set(slot, b);
    }
    return this.device.hostView(b).subarray(0, n);
  }

  release(): void {
    for (const b of this.bytesSlots.values()) this.device.free(b);
    for (const b of this.f32Slots.values()) this.device.free(b);
    this.bytesSlots.clear();
    this.f32Slots.clear();
  }
}

export interface LoadedTensor {
  name: string;
  index: number;
  /** Raw bytes per model, in the order the models were given. */
  raw: Uint8Array[];
}

/** Runs read(t+1) while the caller works on the result of read(t). */
export async function* prefetched<T>(count: number, read: (t: number) => Promise<T>): AsyncGenerator<T> {
  const start = (t: number): Promise<T> => {
    const p = read(t);
    // a read abandoned because the consumer stopped early must not become an unhandled rejection
    p.catch(() => {});
    return p;
  };
  let next = count > 0 ? start(0) : null;
  try {
    for (let t = 0; t < count; t++) {
      const value = await (next as Promise<T>);
      next = t + 1 < count ? start(t + 1) : null;
      yield value;
    }
  } finally {
    // a consumer that stops early must not free buffers a read is still filling
    if (next) await next.catch(() => {});
  }
}

/** Reads tensor t+1 of every model while the caller works on tensor t. */
export function streamTensors(
  models: ModelSource[],
  names: string[],
  pool: BufferPool,
  tag = 'r',
): AsyncGenerator<LoadedTensor> {
  return prefetched(names.length, async (t) => {
    const parity = t & 1;
    const raw = await Promise.all(
      models.map((m, i) => m.readTensor(names[t], pool.bytes(`${tag}${parity}.${i}`, m.tensor(names[t]).byteLength))),
    );
    return { name: names[t], index: t, raw };
  });
}

const KERNEL_DTYPES = new Set<DType>(['BF16', 'F16', 'F32']);
export const isKernelDType = (d: DType): d is KernelDType => KERNEL_DTYPES.has(d);

/** raw → f32 in a pooled buffer, on the device for the dtypes its kernels convert. */
export async function convertIn(
  pool: BufferPool,
  slot: string,
  raw: Uint8Array,
  dtype: DType,
  device: Device,
): Promise<Float32Array> {
  if (isKernelDType(dtype)) {
    const dst = pool.f32(slot, raw.byteLength / dtypeSize(dtype));
    await device.toF32(raw, dtype, dst);
    return dst;
  }
  return toF32Into(pool, slot, raw, dtype);
}

/** f32 → output dtype (RNE), on the device for the dtypes its kernels convert. */
export async function convertOut(values: Float32Array, dtype: DType, out: Uint8Array, device: Device): Promise<void> {
  if (isKernelDType(dtype)) await device.fromF32(values, dtype, out);
  else fromF32(values, dtype, out);
}

export function toF32Into(pool: BufferPool, slot: string, raw: Uint8Array, dtype: DType): Float32Array {
  const n = raw.byteLength / dtypeSize(dtype);
  const out = pool.f32(slot, n);
  if (dtype === 'F32' && raw.byteOffset % 4 === 0) {
    out.set(new Float32Array(raw.buffer, raw.byteOffset, n));
    return out;
  }
  toF32(raw, dtype, out);
  return out;
}

function elements(shape: number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

// ---------------------------------------------------------------------------
// the generic per-tensor pipeline

export interface PipelineOptions {
  label: string;
  inputs: ModelSource[];
  base?: ModelSource;
  outDir: string;
  outDtype?: DType;
  onProgress?: (e: ProgressEvent) => void;
  maxShardBytes?: number;
  params: Record<string, unknown>;
  /** Float tensors: fill `out` from the inputs' (and base's) f32 values. */
  compute: (
    name: string,
    inputs: Float32Array[],
    base: Float32Array | undefined,
    out: Float32Array,
  ) => void | Promise<void>;
  /** Whole-model passes to run after validation, before writing (timed as firstPassMs). */
  firstPass?: () => Promise<void>;
  /** Safetensors metadata of the output (default: the carrier's). */
  metadata?: Record<string, string>;
  /** The model whose side files and metadata the output takes (default: the base, else the first input). */
  carrier?: ModelSource;
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
  await prepareOutDir(opts.outDir);
  const t1 = performance.now();
  if (opts.firstPass) await opts.firstPass();
  const t2 = performance.now();

  const ref = opts.inputs[0];
  const carrier = opts.carrier ?? opts.base ?? ref;
  const specs: TensorSpec[] = ref.tensors.map((t) => ({
    name: t.name,
    dtype: isFloatDType(t.dtype) && outDtype ? outDtype : t.dtype,
    shape: t.shape,
  }));
  const writer = await ModelWriter.create(opts.outDir, specs, {
    maxShardBytes: opts.maxShardBytes,
    metadata: opts.metadata ?? carrier.metadata ?? undefined,
  });
  const device = opts.device ?? (await getDevice({ device: 'auto' }));
  const pool = new BufferPool(device);
  const notes: TensorNote[] = [];
  const copied: string[] = [];
  const warnings: string[] = [];
  const names = ref.tensors.map((t) => t.name);
  const nIn = opts.inputs.length;
  let bytesWritten = 0;
  let pendingWrite: Promise<void> = Promise.resolve();
  try {
    for await (const lt of streamTensors(models, names, pool)) {
      const info = ref.tensor(lt.name);
      const spec = specs[lt.index];
      let outBytes: Uint8Array;
      if (!isFloatDType(info.dtype)) {
        // never average step counters, masks or ids: take the first model's
        outBytes = pool.bytes(`o${lt.index & 1}`, lt.raw[0].byteLength);
        outBytes.set(lt.raw[0]);
        copied.push(lt.name);
        notes.push({
          name: lt.name,
          dtype: info.dtype,
          shape: info.shape,
          action: 'copied',
          note: 'integer/bool tensor taken from the first model',
        });
      } else {
        const count = elements(info.shape);
        outBytes = pool.bytes(`o${lt.index & 1}`, count * dtypeSize(spec.dtype));
        if (!(opts.fast && (await opts.fast(lt.name, lt.raw, info.dtype, spec.dtype, outBytes, pool)))) {
          const values: Float32Array[] = [];
          for (let i = 0; i < lt.raw.length; i++)
            values.push(await convertIn(pool, `f${i}`, lt.raw[i], info.dtype, device));
          const out = pool.f32('out', count);
          await opts.compute(lt.name, values.slice(0, nIn), opts.base ? values[nIn] : undefined, out);
          await convertOut(out, spec.dtype, outBytes, device);
        }
        notes.push({ name: lt.name, dtype: spec.dtype, shape: info.shape, action: 'merged' });
      }
      await pendingWrite;
      pendingWrite = writer.write(lt.name, outBytes);
      pendingWrite.catch(() => {});
      bytesWritten += outBytes.byteLength;
      opts.onProgress?.({ phase: opts.label, done: lt.index + 1, total: names.length, tensor: lt.name });
    }
    await pendingWrite;
    await writer.finish();
    await copySideFiles(carrier, opts.outDir);
  } catch (e) {
    await writer.abort();
    await discardOutDir(opts.outDir);
    throw e;
  } finally {
    pool.release();
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
    outDir: opts.outDir,
    bytesWritten,
  };
}

// ---------------------------------------------------------------------------
// whole-model passes

/** Calls fn with every float tensor's f32 values (inputs, then base last), streaming. */
export async function forEachFloatTensor(
  models: ModelSource[],
  fn: (name: string, values: Float32Array[]) => void | Promise<void>,
  pool: BufferPool,
): Promise<void> {
  const ref = models[0];
  const names = ref.tensors.filter((t) => isFloatDType(t.dtype)).map((t) => t.name);
  for await (const lt of streamTensors(models, names, pool, 'p')) {
    const dtype = ref.tensor(lt.name).dtype;
    const values = lt.raw.map((r, i) => toF32Into(pool, `pf${i}`, r, dtype));
    await fn(lt.name, values);
  }
}

/**
 * Model-wide TIES thresholds: for each input, the exact k-th largest |τᵢ| over
 * every float tensor of the model, k = ⌊density·(number of entries)⌋. Two
 * streaming passes of a radix histogram (see select.ts): memory stays O(1).
 */
export async function modelWideThresholds(
  inputs: ModelSource[],
  base: ModelSource,
  density: number[],
): Promise<number[]> {
  const pool = new BufferPool();
  const sel = inputs.map(() => new AbsSelector());
  const n = inputs.length;
  const models = [...inputs, base];
  const tauOf = (values: Float32Array[], i: number): Float32Array => {
    const b = values[n];
    const x = values[i];
    const t = pool.f32('tau', b.length);
    for (let j = 0; j < t.length; j++) t[j] = fr(x[j] - b[j]);
    return t;
  };
  await forEachFloatTensor(
    models,
    (_name, values) => {
      for (let i = 0; i < n; i++) sel[i].addPass0(tauOf(values, i));
    },
    pool,
  );
  // k counts every entry, NaN included (as per tensor); NaN is never ranked (docs/kernels.md)
  const need = sel.map((s, i) => (density[i] >= 1 ? false : s.choose(keepCount(density[i], s.total))));
  if (need.some(Boolean)) {
    await forEachFloatTensor(
      models,
      (_name, values) => {
        for (let i = 0; i < n; i++) if (need[i]) sel[i].addPass1(tauOf(values, i));
      },
      pool,
    );
  }
  pool.release();
  return sel.map((s, i) => (density[i] >= 1 ? 0 : s.result()));
}

// ---------------------------------------------------------------------------
// mergeModels

export interface MergeModelsOptions {
  inputs: ModelSource[];
  base?: ModelSource;
  /** A registry name: linear, task-arithmetic, ties, dare-linear, dare-ties, rmm. */
  method: string;
  params?: MergeParams;
  outDir: string;
  /** Output dtype of float tensors (default: the inputs' dtype). */
  outDtype?: DType;
  onProgress?: (e: ProgressEvent) => void;
  maxShardBytes?: number;
  /** rmm only: where the basis + coefficients group is written. */
  groupDir?: string;
  /** The device to compute on (default: getDevice({ device: 'auto' })). */
  device?: Device;
  /** false: the reference (plain TypeScript) device, as env WGIT_KERNELS=0 (default true: the WASM pool). */
  kernels?: boolean;
  /** Tensors with fewer elements take the plain TypeScript path (default 65,536): kernel calls have a fixed cost. */
  kernelMinElements?: number;
}

/** Merges models with a registry method, streaming tensor by tensor. */
export async function mergeModels(opts: MergeModelsOptions): Promise<MergeReport> {
  const method = getMethod(opts.method);
  if (opts.inputs.length < method.minInputs) {
    throw new WgitError('E_BAD_PARAM', `${method.name} needs at least ${method.minInputs} input model(s)`, {
      method: method.name,
    });
  }
  if (method.needsBase && !opts.base)
    throw new WgitError('E_BASE_REQUIRED', `${method.name} needs a base model`, { method: method.name });
  if (method.name === 'rmm') {
    const { reversibleMerge } = await import('./rmm.js');
    if (!opts.groupDir)
      throw new WgitError('E_BAD_PARAM', 'rmm needs groupDir: the folder that receives the basis and coefficients', {
        param: 'groupDir',
      });
    const r = await reversibleMerge({ ...opts, base: opts.base as ModelSource, groupDir: opts.groupDir });
    return r;
  }
  const resolved = method.resolve(opts.params ?? {}, opts.inputs.length);
  if (resolved.lines && !method.needsBase)
    throw new WgitError('E_BAD_PARAM', `LiNeS needs a base model; ${method.name} has none`, { param: 'lines' });
  const base = method.needsBase ? opts.base : undefined;
  const models = base ? [...opts.inputs, base] : [...opts.inputs];
  validateModels(models);

  let thresholds: number[] | undefined;
  const perTensorFns = new Map<string, ReturnType<typeof method.build>>();
  const fnFor = (name: string) => {
    let f = perTensorFns.get(name);
    if (!f) {
      f = method.build(tensorParams(resolved, name));
      perTensorFns.set(name, f);
    }
    return f;
  };
  const ctxFor = (name: string): TensorContext => (thresholds ? { name, thresholds } : { name });
  let lines: { alpha: number; beta: number; blocks: number } | undefined;

  const firstPass = async () => {
    if (resolved.trim === 'model' && method.config?.sparsify === 'magnitude') {
      const d = resolved.density.map((x) => x as number);
      thresholds = await modelWideThresholds(opts.inputs, base as ModelSource, d);
    }
    if (resolved.lines) {
      // α needs ‖Σ τᵢ‖₁ and ‖τ_merged‖₁ over the whole model: one extra merge pass
      const pool = new BufferPool();
      const n = opts.inputs.length;
      let sumL1 = 0;
      let mergedL1 = 0;
      await forEachFloatTensor(
        models,
        async (name, values) => {
          const b = values[n];
          const out = pool.f32('l1', b.length);
          await fnFor(name)(values.slice(0, n), b, ctxFor(name), out);
          for (let j = 0; j < b.length; j++) {
            let s = 0;
            for (let i = 0; i < n; i++) s += values[i][j] - b[j];
            sumL1 += Math.abs(s);
            mergedL1 += Math.abs(out[j] - b[j]);
          }
        },
        pool,
      );
      pool.release();
      const blocks = countBlocks(opts.inputs[0].tensors.map((t) => t.name));
      lines = { alpha: linesMergeAlpha(sumL1, mergedL1, n), beta: resolved.lines.beta, blocks };
    }
  };

  const device =
    opts.device ?? (await getDevice({ device: 'auto', backend: opts.kernels === false ? 'reference' : undefined }));
  const minElements = opts.kernelMinElements ?? 1 << 16;
  let fastTensors = 0;
  const report = await runTensorPipeline({
    device,
    fast: async (name, raw, dtype, outDtype, outBytes, pool) => {
      if (!isKernelDType(dtype) || !isKernelDType(outDtype) || raw[0].byteLength / dtypeSize(dtype) < minElements)
        return false;
      const fast: FastTensor = { device, method, params: tensorParams(resolved, name), ctx: ctxFor(name) };
      if (lines) fast.linesScale = fr(linesScale(name, lines.blocks, lines.alpha, lines.beta));
      const done = await fastMergeTensor(fast, raw, dtype, outDtype, outBytes, pool);
      if (done) fastTensors++;
      return done;
    },
    label: method.name,
    inputs: opts.inputs,
    base,
    outDir: opts.outDir,
    outDtype: opts.outDtype,
    onProgress: opts.onProgress,
    maxShardBytes: opts.maxShardBytes,
    params: resolved as unknown as Record<string, unknown>,
    firstPass,
    compute: async (name, inputs, b, out) => {
      await fnFor(name)(inputs, b, ctxFor(name), out);
      if (lines && b) {
        const s = fr(linesScale(name, lines.blocks, lines.alpha, lines.beta));
        for (let j = 0; j < out.length; j++) out[j] = fr(b[j] + fr(s * fr(out[j] - b[j])));
      }
    },
  });
  report.engine = { kernels: device.name !== 'reference', device: device.name, kernelTensors: fastTensors };
  if (thresholds) report.thresholds = thresholds;
  if (lines) report.lines = lines;
  return report;
}
