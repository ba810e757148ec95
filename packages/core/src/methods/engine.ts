/**
 * mergeModels: a registry method run on the tensor pipeline (pipeline/),
 * with the whole-model passes some methods need first (model-wide TIES
 * thresholds, LiNeS's α) and the kernel fast path per tensor. A method that
 * declares `run` (its result is more than a model) is handed the whole merge.
 */
import { getDevice } from '../device/index.js';
import { dtypeSize, isFloatDType } from '../dtypes.js';
import { WgitError } from '../errors.js';
import { BufferPool, forEachFloatTensor, isKernelDType, runTensorPipeline, validateModels } from '../pipeline/index.js';
import type { ModelSource } from '../safetensors/index.js';
import { type FastTensor, fastMergeTensor } from './fast.js';
import { countBlocks, linesMergeAlpha, linesScale } from './lines.js';
import { tensorParams } from './params.js';
import { SparsityCount } from './prune.js';
import { getMethod } from './registry.js';
import { AbsSelector, keepCount } from './select.js';
import type { MergeReport, MethodRunOptions, TensorContext } from './types.js';

const fr = Math.fround;

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
  return (await modelWideTrim(inputs, base, density)).thresholds;
}

/**
 * Model-wide TIES trimming that keeps exactly k entries per input: the
 * thresholds, and where more entries equal a threshold than the top k takes,
 * each tensor's tie quota (`tieQuotas`, by tensor name; -1 where every tie is
 * kept): the ties are taken in tensor order, then by flat index. That case
 * costs one more streaming pass, counting each tensor's ties.
 */
export async function modelWideTrim(
  inputs: ModelSource[],
  base: ModelSource,
  density: number[],
): Promise<{ thresholds: number[]; tieQuotas?: Map<string, number[]> }> {
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
  const ks = sel.map((s, i) => keepCount(density[i], s.total));
  const need = sel.map((s, i) => (density[i] >= 1 ? false : s.choose(ks[i])));
  if (need.some(Boolean)) {
    await forEachFloatTensor(
      models,
      (_name, values) => {
        for (let i = 0; i < n; i++) if (need[i]) sel[i].addPass1(tauOf(values, i));
      },
      pool,
    );
  }
  const thresholds = sel.map((s, i) => (density[i] >= 1 ? 0 : s.result()));
  // Model-wide quota of ties per input: null keeps every tie; k ≤ 0 (threshold +∞) keeps none.
  const quota = sel.map((s, i): number | null => {
    if (density[i] >= 1) return null;
    if (ks[i] <= 0) return 0;
    const t = need[i] ? s.tieCounts() : null;
    return t && t.keep < t.ties ? t.keep : null;
  });
  let tieQuotas: Map<string, number[]> | undefined;
  if (quota.some((q) => q !== null)) {
    tieQuotas = new Map();
    const left = [...quota];
    const thr = thresholds.map(fr);
    await forEachFloatTensor(
      models,
      (name, values) => {
        const q = left.map((l, i) => {
          if (l === null) return -1;
          const t = tauOf(values, i);
          let ties = 0;
          for (let j = 0; j < t.length; j++) if (Math.abs(t[j]) === thr[i]) ties++;
          const take = Math.min(l, ties);
          left[i] = l - take;
          return take;
        });
        tieQuotas?.set(name, q);
      },
      pool,
    );
  }
  pool.release();
  return tieQuotas ? { thresholds, tieQuotas } : { thresholds };
}

// ---------------------------------------------------------------------------
// mergeModels

export interface MergeModelsOptions extends MethodRunOptions {
  /** A registry name: linear, task-arithmetic, ties, dare-linear, dare-ties, rmm. */
  method: string;
  /** false: the reference (plain TypeScript) device, as env WGIT_KERNELS=0 (default true: the WASM pool). */
  kernels?: boolean;
  /** Tensors with fewer elements take the plain TypeScript path (default 65,536): kernel calls have a fixed cost. */
  kernelMinElements?: number;
  /** Gradient position t per tensor name (a sliced merge: per slice); default: by layer over the inputs' layers. */
  positions?: ReadonlyMap<string, number>;
}

/**
 * Merges models with a registry method, streaming tensor by tensor into
 * `sink`, or into `outDir` (and, for a method that writes a group, `groupDir`).
 */
export async function mergeModels(opts: MergeModelsOptions): Promise<MergeReport> {
  const method = getMethod(opts.method);
  if (opts.inputs.length < method.minInputs) {
    throw new WgitError('E_BAD_PARAM', `${method.name} needs at least ${method.minInputs} input model(s)`, {
      method: method.name,
    });
  }
  if (method.maxInputs !== undefined && opts.inputs.length > method.maxInputs) {
    throw new WgitError('E_BAD_PARAM', `${method.name} merges at most ${method.maxInputs} input model(s)`, {
      method: method.name,
    });
  }
  if (method.needsBase && !opts.base)
    throw new WgitError('E_BASE_REQUIRED', `${method.name} needs a base model`, { method: method.name });
  const getDeviceOnce = async () =>
    opts.device ?? (await getDevice({ device: 'auto', backend: opts.kernels === false ? 'reference' : undefined }));
  // A method that writes more than a model runs whole, on the same pipeline, from its own declaration.
  if (method.run) {
    const { method: _name, kernels: _kernels, kernelMinElements: _min, ...rest } = opts;
    return method.run({ ...rest, base: method.needsBase ? opts.base : undefined, device: await getDeviceOnce() });
  }
  const resolved = method.resolve(opts.params ?? {}, opts.inputs.length);
  if (resolved.lines && !method.needsBase)
    throw new WgitError('E_BAD_PARAM', `LiNeS needs a base model; ${method.name} has none`, { param: 'lines' });
  const base = method.needsBase || method.optionalBase ? opts.base : undefined;
  const models = base ? [...opts.inputs, base] : [...opts.inputs];
  validateModels(models);

  let thresholds: number[] | undefined;
  let tieQuotas: Map<string, number[]> | undefined;
  const perTensorFns = new Map<string, ReturnType<typeof method.build>>();
  // gradients are interpolated over the layers of the inputs
  const layers = countBlocks(opts.inputs[0].tensors.map((t) => t.name));
  const fnFor = (name: string) => {
    let f = perTensorFns.get(name);
    if (!f) {
      f = method.build(tensorParams(resolved, name, layers, opts.positions?.get(name)));
      perTensorFns.set(name, f);
    }
    return f;
  };
  const shapes = new Map(opts.inputs[0].tensors.map((t) => [t.name, t.shape]));
  const ctxFor = (name: string): TensorContext => {
    const shape = shapes.get(name);
    if (!thresholds) return { name, shape };
    const q = tieQuotas?.get(name);
    return q ? { name, shape, thresholds, tieQuotas: q } : { name, shape, thresholds };
  };
  let lines: { alpha: number; beta: number; blocks: number } | undefined;

  const firstPass = async () => {
    if (resolved.trim === 'model' && method.config?.sparsify === 'magnitude') {
      const d = resolved.density.map((x) => x as number);
      ({ thresholds, tieQuotas } = await modelWideTrim(opts.inputs, base as ModelSource, d));
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

  const device = await getDeviceOnce();
  const minElements = opts.kernelMinElements ?? 1 << 16;
  let fastTensors = 0;
  const sparsity = new SparsityCount(opts.inputs.length);
  const report = await runTensorPipeline({
    device,
    fast: async (name, raw, dtype, outDtype, outBytes, pool) => {
      if (!isKernelDType(dtype) || !isKernelDType(outDtype) || raw[0].byteLength / dtypeSize(dtype) < minElements)
        return false;
      const fast: FastTensor = {
        device,
        method,
        params: tensorParams(resolved, name, layers, opts.positions?.get(name)),
        ctx: ctxFor(name),
      };
      if (lines) fast.linesScale = fr(linesScale(name, lines.blocks, lines.alpha, lines.beta));
      const done = await fastMergeTensor(fast, raw, dtype, outDtype, outBytes, pool);
      if (done) {
        fastTensors++;
        sparsity.addOutputRaw(outBytes, outDtype);
      }
      return done;
    },
    // zeros of every float tensor's inputs (and of its output where nothing changes it)
    step: async (t) => {
      if (isFloatDType(t.dtype))
        sparsity.addInputs(t.raw, t.dtype, t.unchanged, t.raw[0].byteLength / dtypeSize(t.dtype));
      return false;
    },
    label: method.name,
    inputs: opts.inputs,
    base,
    outDir: opts.outDir,
    sink: opts.sink,
    sideFiles: opts.sideFiles,
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
      sparsity.addOutputF32(out);
    },
  });
  report.sparsity = sparsity.report();
  report.engine = { kernels: device.name !== 'reference', device: device.name, kernelTensors: fastTensors };
  if (thresholds) report.thresholds = thresholds;
  if (lines) report.lines = lines;
  return report;
}
