/**
 * Fine-tuning transfer (Lin et al. 2025, "Efficient model development through
 * fine-tuning transfer"): move a fine-tune onto a new base release without
 * retraining, θ = θ_new + s·(θ_ft − θ_old), over every tensor.
 */
import { createHash } from 'node:crypto';
import { type Device, getDevice, type KernelDType, reference, type TransferSums } from '../device/index.js';
import { type DType, dtypeSize, isFloatDType } from '../dtypes.js';
import { WgitError } from '../errors.js';
import {
  BufferPool,
  checkOutDtype,
  convertIn,
  convertOut,
  isKernelDType,
  runTensorPipeline,
  type SideFileSource,
  type Sink,
} from '../pipeline/index.js';
import type { ModelSource, ModelTensor, TensorSpec } from '../safetensors/index.js';
import type { MergeReport, ProgressEvent, TensorNote } from './types.js';

const fr = Math.fround;

export interface TransferOptions {
  /** The fine-tune of the old base. */
  ft: ModelSource;
  /** The base the fine-tune was trained from (source version). */
  from: ModelSource;
  /** The new base release (target version); the output has its tensors, order and side files. */
  onto: ModelSource;
  /** s in θ_new + s·Δ (default 1). */
  scale?: number;
  /** Tensors present in one version only: copy from the target (or drop when the target lacks them) instead of failing. */
  copyMissing?: boolean;
  outDir: string;
  /** Where the result goes instead of outDir (e.g. a store commit). */
  sink?: Sink;
  outDtype?: DType;
  onProgress?: (e: ProgressEvent) => void;
  maxShardBytes?: number;
  /** The device to compute on (default: getDevice({ device: 'auto' })). */
  device?: Device;
  /** Where the output's side files come from (default: all of the new base's). */
  sideFiles?: SideFileSource;
  /** false: the reference (plain TypeScript) device, as env WGIT_KERNELS=0 (default true: the WASM pool). */
  kernels?: boolean;
  /** Tensors with fewer elements take the plain TypeScript path (default 65,536): kernel calls have a fixed cost. */
  kernelMinElements?: number;
}

export interface TensorCloseness {
  name: string;
  /** cos(θ_new − θ_old, Δ) on this tensor (0 when either is zero). */
  cosine: number;
  /** ‖θ_new − θ_old‖ / ‖θ_old‖ on this tensor. */
  relDistance: number;
}

export interface TransferReport {
  method: 'transfer';
  params: { scale: number; copyMissing: boolean; outDtype: DType | null };
  /** Whole model (f64): how close the two bases are and how the update relates to their difference. */
  closeness: {
    /** cos(onto − from, ft − from). */
    cosine: number;
    /** ‖onto − from‖ / ‖from‖: how far the new release moved. */
    relDistance: number;
    /** ‖ft − from‖ / ‖from‖: how far the fine-tune moved. */
    updateRel: number;
    /** relDistance / updateRel: the base's move in units of the fine-tune's (0 when the fine-tune did not move). */
    shiftToUpdate: number;
    deltaNorm: number;
    baseShiftNorm: number;
  };
  perTensor: TensorCloseness[];
  tensors: TensorNote[];
  /** Tensors whose rows grew in the fine-tune (vocabulary growth): rows past the bases' come from the fine-tune. */
  grown: { name: string; baseRows: number; rows: number }[];
  /** Names sharing one storage in the target (identical bytes); kept identical in the output when the fine-tune keeps them tied. */
  tied: string[][];
  /** Copied from the target (missing in the fine-tune or the old base), and dropped (missing in the target). */
  missing: { copied: string[]; dropped: string[] };
  warnings: string[];
  timings: { totalMs: number };
  outDir: string;
  bytesWritten: number;
  /** Which device computed, and how many tensors took its kernel path. */
  engine: MergeReport['engine'];
}

/** Names whose bytes may be shared between embedding and head. */
const TIE_CANDIDATE = /(embed|wte|lm_head|word_embeddings|tok_embeddings|shared|output)/i;

/**
 * A cheap fingerprint of a tensor's bytes: SHA-256 of 64 windows of 1 KiB
 * spread evenly over it (all of it when smaller). Different fingerprints mean
 * different bytes; equal ones are confirmed on the full bytes.
 */
function sampleDigest(bytes: Uint8Array): string {
  const h = createHash('sha256');
  const windows = 64;
  const width = 1024;
  if (bytes.byteLength <= windows * width) return h.update(bytes).digest('hex');
  const step = (bytes.byteLength - width) / (windows - 1);
  for (let i = 0; i < windows; i++) {
    const at = Math.round(i * step);
    h.update(bytes.subarray(at, at + width));
  }
  return h.digest('hex');
}

type Plan = { kind: 'transfer'; name: string; grown: boolean } | { kind: 'copy'; name: string; why: string };

function sameShape(a: number[], b: number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function shapeErr(name: string, what: string, a: number[], b: number[]): WgitError {
  return new WgitError('E_SHAPE_MISMATCH', `tensor ${name}: shape [${a}] in ${what} vs [${b}]`, {
    tensor: name,
    shape: a,
    expected: b,
  });
}

/**
 * One tensor on the device's fused kernel (`transferTyped`): θ_new + s·Δ with
 * Δ = θ_ft − θ_old, read in the stored dtypes and written in the output dtype
 * in one pass, with the closeness sums in the kernels' block order (the plain
 * loop sums in the same order, so the report does not depend on the path or
 * the thread count). Versions stored in different dtypes are decoded to f32
 * first (exact) and run through the same kernel. Rows past the bases'
 * (vocabulary growth) are the fine-tune's, converted to the output dtype.
 * raw and dtypes: target, fine-tune, old base.
 */
async function transferOnDevice(
  k: Device,
  pool: BufferPool,
  raw: Uint8Array[],
  dtypes: KernelDType[],
  outDtype: KernelDType,
  outBytes: Uint8Array,
  s: number,
): Promise<TransferSums> {
  const outSize = dtypeSize(outDtype);
  const count = outBytes.byteLength / outSize;
  const common = raw[0].byteLength / dtypeSize(dtypes[0]);
  const heads = raw.map((r, i) => r.subarray(0, common * dtypeSize(dtypes[i])));
  const outHead = outBytes.subarray(0, common * outSize);
  let sums: TransferSums;
  if (dtypes[1] === dtypes[0] && dtypes[2] === dtypes[0]) {
    sums = await k.transferTyped(heads, dtypes[0], s, outDtype, outHead);
  } else {
    const xs: Uint8Array[] = [];
    for (const [i, slot] of ['kn', 'kf', 'ko'].entries()) {
      const x = pool.f32(slot, common);
      await k.toF32(heads[i], dtypes[i], x);
      xs.push(new Uint8Array(x.buffer, x.byteOffset, x.byteLength));
    }
    sums = await k.transferTyped(xs, 'F32', s, outDtype, outHead);
  }
  if (count > common) {
    const tail = pool.f32('kt', count - common);
    await k.toF32(raw[1].subarray(common * dtypeSize(dtypes[1])), dtypes[1], tail);
    await k.fromF32(tail, outDtype, outBytes.subarray(common * outSize));
  }
  return sums;
}

export async function transferModel(opts: TransferOptions): Promise<TransferReport> {
  const t0 = performance.now();
  const scale = opts.scale ?? 1;
  if (typeof scale !== 'number' || !Number.isFinite(scale))
    throw new WgitError('E_BAD_PARAM', `scale must be a finite number, got ${scale}`, { param: 'scale' });
  const copyMissing = opts.copyMissing ?? false;
  const outDtype = checkOutDtype(opts.outDtype);
  const { ft, from, onto } = opts;
  const has = (m: ModelSource) => new Set(m.tensors.map((t) => t.name));
  const inFt = has(ft);
  const inOld = has(from);
  const inNew = has(onto);

  // --- plan and validate everything before any work
  const onlyTarget = onto.tensors.map((t) => t.name).filter((n) => !inFt.has(n) || !inOld.has(n));
  const notInTarget = [...new Set([...inFt, ...inOld])].filter((n) => !inNew.has(n));
  if ((onlyTarget.length || notInTarget.length) && !copyMissing) {
    const first = [...onlyTarget, ...notInTarget].slice(0, 5);
    throw new WgitError(
      'E_TENSOR_MISMATCH',
      `tensors present in one version only (pass copyMissing to copy them from the target): ${first.join(', ')}${onlyTarget.length + notInTarget.length > 5 ? ', …' : ''}`,
      { missingInSource: onlyTarget.slice(0, 20), missingInTarget: notInTarget.slice(0, 20) },
    );
  }
  const grown: TransferReport['grown'] = [];
  const plans: Plan[] = [];
  const specs: TensorSpec[] = [];
  for (const tn of onto.tensors) {
    const name = tn.name;
    if (!inFt.has(name) || !inOld.has(name)) {
      plans.push({ kind: 'copy', name, why: 'missing in the fine-tune or the old base' });
      specs.push({ name, dtype: tn.dtype, shape: tn.shape });
      continue;
    }
    const tf = ft.tensor(name);
    const to = from.tensor(name);
    if (!sameShape(to.shape, tn.shape)) throw shapeErr(name, 'the old base', to.shape, tn.shape);
    const floats = isFloatDType(tf.dtype) && isFloatDType(to.dtype) && isFloatDType(tn.dtype);
    if (!floats) {
      if (!sameShape(tf.shape, tn.shape)) throw shapeErr(name, 'the fine-tune', tf.shape, tn.shape);
      plans.push({ kind: 'copy', name, why: 'integer/bool tensor taken from the target' });
      specs.push({ name, dtype: tn.dtype, shape: tn.shape });
      continue;
    }
    let isGrown = false;
    if (!sameShape(tf.shape, tn.shape)) {
      const rowsGrew =
        tf.shape.length === tn.shape.length &&
        tf.shape.length >= 1 &&
        tf.shape[0] > tn.shape[0] &&
        tf.shape.slice(1).every((d, i) => d === tn.shape[i + 1]);
      if (!rowsGrew) throw shapeErr(name, 'the fine-tune', tf.shape, tn.shape);
      isGrown = true;
      grown.push({ name, baseRows: tn.shape[0], rows: tf.shape[0] });
    }
    plans.push({ kind: 'transfer', name, grown: isGrown });
    specs.push({ name, dtype: outDtype ?? tn.dtype, shape: tf.shape });
  }
  const planOf = new Map(plans.map((p, i) => [p.name, { plan: p, spec: specs[i] }]));

  // Tied names (identical bytes in the target) can only be candidates of one dtype and shape.
  // While the target streams, each such candidate gets a cheap fingerprint (sampleDigest);
  // only names whose fingerprints agree are read again and compared in full afterwards.
  const mayTie = new Set<string>();
  {
    const byKey = new Map<string, string[]>();
    for (const t of onto.tensors) {
      if (!TIE_CANDIDATE.test(t.name)) continue;
      const key = `${t.dtype}:${t.shape.join('x')}`;
      byKey.set(key, [...(byKey.get(key) ?? []), t.name]);
    }
    for (const g of byKey.values()) if (g.length > 1) for (const n of g) mayTie.add(n);
  }
  const targetSample = new Map<string, string>();

  // The pipeline streams three views of the versions that agree in names, shapes and dtypes
  // (the target's order, the output's shapes): the target first, so integer tensors are
  // copied from it, then the fine-tune and the old base. A view reads nothing for a tensor
  // its version does not take part in.
  const view = (m: ModelSource, role: 'new' | 'ft' | 'old'): ModelSource => {
    const reads = (p: Plan) => role === 'new' || p.kind === 'transfer';
    const tensors: ModelTensor[] = onto.tensors.map((tn) => {
      const { plan, spec } = planOf.get(tn.name) as { plan: Plan; spec: TensorSpec };
      return {
        name: tn.name,
        dtype: tn.dtype,
        shape: spec.shape,
        byteLength: reads(plan) ? m.tensor(tn.name).byteLength : 0,
      };
    });
    const byName = new Map(tensors.map((t) => [t.name, t]));
    return {
      root: m.root,
      kind: m.kind,
      tensors,
      tensor: (name) => {
        const t = byName.get(name);
        if (!t) throw new WgitError('E_TENSOR_NOT_FOUND', `no tensor ${name} in ${m.root}`, { tensor: name });
        return t;
      },
      sideFiles: m.sideFiles,
      readSideFile: (rel) => m.readSideFile(rel),
      metadata: m.metadata,
      readTensor: async (name, into) => {
        if (!reads((planOf.get(name) as { plan: Plan }).plan)) return new Uint8Array(0);
        const bytes = await m.readTensor(name, into);
        if (role === 'new' && mayTie.has(name)) targetSample.set(name, sampleDigest(bytes));
        return bytes;
      },
      close: async () => {},
    };
  };

  const device =
    opts.device ?? (await getDevice({ device: 'auto', backend: opts.kernels === false ? 'reference' : undefined }));
  const minElements = opts.kernelMinElements ?? 1 << 16;
  const perTensor: TensorCloseness[] = [];
  const stats = { dot: 0, shift2: 0, delta2: 0, old2: 0 };
  const addStats = (name: string, { dot: d, shift2: sh, delta2: dl, old2: o2 }: TransferSums) => {
    stats.dot += d;
    stats.shift2 += sh;
    stats.delta2 += dl;
    stats.old2 += o2;
    perTensor.push({
      name,
      cosine: sh > 0 && dl > 0 ? d / Math.sqrt(sh * dl) : 0,
      relDistance: o2 > 0 ? Math.sqrt(sh / o2) : sh > 0 ? Number.POSITIVE_INFINITY : 0,
    });
  };
  const s = fr(scale);
  /**
   * The plain path: θ_new + s·(θ_ft − θ_old) and the closeness sums by the
   * reference kernel's loop (the kernels' arithmetic and summation order),
   * rows past the bases' taken from the fine-tune.
   */
  const plain = (
    name: string,
    xn: Float32Array,
    xf: Float32Array,
    xo: Float32Array,
    out: Float32Array,
    record: boolean,
  ) => {
    const common = xn.length;
    const sums = reference.transferF32(xn, xf.subarray(0, common), xo, s, out.subarray(0, common));
    if (record) addStats(name, sums);
    out.set(xf.subarray(common), common);
  };
  let kernelTensors = 0;
  /**
   * One float tensor's output bytes from its raw inputs (target, fine-tune,
   * old base); false leaves a tensor whose versions share a dtype, under the
   * kernel threshold, to the plain loop (the pipeline's compute). `record`:
   * add its closeness figures to the report (false when recomputing).
   */
  const fastTensor = async (
    name: string,
    raw: Uint8Array[],
    outDt: DType,
    outBytes: Uint8Array,
    pool: BufferPool,
    record: boolean,
  ): Promise<boolean> => {
    const plan = (planOf.get(name) as { plan: Plan }).plan;
    const dn = onto.tensor(name).dtype;
    if (plan.kind === 'copy') {
      if (dn === outDt) outBytes.set(raw[0]);
      else await convertOut(await convertIn(pool, 'c', raw[0], dn, device), outDt, outBytes, device);
      return true;
    }
    const df = ft.tensor(name).dtype;
    const dold = from.tensor(name).dtype;
    const count = outBytes.byteLength / dtypeSize(outDt);
    if (count >= minElements && isKernelDType(dn) && isKernelDType(df) && isKernelDType(dold) && isKernelDType(outDt)) {
      const sums = await transferOnDevice(device, pool, raw, [dn, df, dold], outDt, outBytes, s);
      if (record) {
        addStats(name, sums);
        kernelTensors++;
      }
      return true;
    }
    if (df === dn && dold === dn) return false;
    // versions stored in different dtypes: each converts with its own
    const xn = await convertIn(pool, 'mn', raw[0], dn, device);
    const xf = await convertIn(pool, 'mf', raw[1], df, device);
    const xo = await convertIn(pool, 'mo', raw[2], dold, device);
    const out = pool.f32('mout', count);
    plain(name, xn, xf, xo, out, record);
    await convertOut(out, outDt, outBytes, device);
    return true;
  };
  const views = [view(onto, 'new'), view(ft, 'ft'), view(from, 'old')];

  const report = await runTensorPipeline({
    label: 'transfer',
    inputs: views,
    carrier: onto,
    sideFiles: opts.sideFiles,
    outDir: opts.outDir,
    sink: opts.sink,
    outDtype,
    onProgress: opts.onProgress,
    maxShardBytes: opts.maxShardBytes,
    params: { scale, copyMissing },
    device,
    fast: (name, raw, _dtype, outDt, outBytes, pool) => fastTensor(name, raw, outDt, outBytes, pool, true),
    compute: (name, inputs, _base, out) => plain(name, inputs[0], inputs[1], inputs[2], out, true),
  });

  /** The output bytes of one tensor, computed again the way the pipeline did (for the tie check). */
  const outputOf = async (name: string, pool: BufferPool): Promise<Uint8Array> => {
    const raw = await Promise.all(views.map((v) => v.readTensor(name)));
    const info = onto.tensor(name);
    if (!isFloatDType(info.dtype)) return raw[0];
    const { spec } = planOf.get(name) as { spec: TensorSpec };
    const count = spec.shape.reduce((a, b) => a * b, 1);
    const outBytes = pool.bytes('tie-out', count * dtypeSize(spec.dtype));
    if (!(await fastTensor(name, raw, spec.dtype, outBytes, pool, false))) {
      const xs = await Promise.all(raw.map((r, i) => convertIn(pool, `tie${i}`, r, info.dtype, device)));
      const out = pool.f32('tie-f32', count);
      plain(name, xs[0], xs[1], xs[2], out, false);
      await convertOut(out, spec.dtype, outBytes, device);
    }
    return outBytes;
  };
  const sha = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');
  // tied names: identical bytes in the target. Fingerprints that agree are confirmed on the
  // full bytes, and then the outputs of the names are computed again and compared.
  const tied: string[][] = [];
  const untied: string[][] = [];
  const bySample = new Map<string, string[]>();
  for (const [name, h] of targetSample) {
    const key = `${h}:${onto.tensor(name).dtype}:${onto.tensor(name).shape.join('x')}`;
    bySample.set(key, [...(bySample.get(key) ?? []), name]);
  }
  const suspects = [...bySample.values()].filter((g) => g.length > 1);
  if (suspects.length) {
    const pool = new BufferPool(device);
    try {
      for (const g of suspects) {
        const byHash = new Map<string, string[]>();
        for (const name of g) {
          const h = sha(await onto.readTensor(name, pool.bytes('tie-in', onto.tensor(name).byteLength)));
          byHash.set(h, [...(byHash.get(h) ?? []), name]);
        }
        for (const group of byHash.values()) {
          if (group.length < 2) continue;
          tied.push(group);
          const outs = new Set<string>();
          for (const name of group) outs.add(sha(await outputOf(name, pool)));
          if (outs.size > 1) untied.push(group);
        }
      }
    } finally {
      pool.release();
    }
  }
  const warnings: string[] = [];
  const copied = plans.filter((p) => p.kind === 'copy').map((p) => p.name);
  const tensors: TensorNote[] = plans.map((p, i) => {
    const { name, dtype, shape } = report.tensors[i];
    return p.kind === 'copy'
      ? { name, dtype, shape, action: 'copied', note: p.why }
      : { name, dtype, shape, action: p.grown ? 'transferred-grown' : 'transferred' };
  });
  const { dot, shift2, delta2, old2 } = stats;
  for (const g of untied) {
    warnings.push(`${g.join(' and ')} share storage in the target but differ in the output: the fine-tune untied them`);
  }
  if (copied.length)
    warnings.push(`${copied.length} tensor(s) copied from the target: ${copied.slice(0, 5).join(', ')}`);
  if (notInTarget.length)
    warnings.push(`${notInTarget.length} tensor(s) dropped (not in the target): ${notInTarget.slice(0, 5).join(', ')}`);
  for (const g of grown)
    warnings.push(`${g.name}: rows ${g.baseRows}..${g.rows - 1} taken from the fine-tune (vocabulary growth)`);
  return {
    method: 'transfer',
    params: { scale, copyMissing, outDtype: outDtype ?? null },
    closeness: {
      cosine: shift2 > 0 && delta2 > 0 ? dot / Math.sqrt(shift2 * delta2) : 0,
      relDistance: old2 > 0 ? Math.sqrt(shift2 / old2) : 0,
      updateRel: old2 > 0 ? Math.sqrt(delta2 / old2) : 0,
      shiftToUpdate: delta2 > 0 ? Math.sqrt(shift2 / delta2) : 0,
      deltaNorm: Math.sqrt(delta2),
      baseShiftNorm: Math.sqrt(shift2),
    },
    perTensor,
    tensors,
    grown,
    tied,
    missing: { copied: copied.filter((n) => onlyTarget.includes(n)), dropped: notInTarget },
    warnings,
    timings: { totalMs: performance.now() - t0 },
    outDir: opts.outDir,
    bytesWritten: report.bytesWritten,
    engine: { kernels: device.name !== 'reference', device: device.name, kernelTensors },
  };
}
