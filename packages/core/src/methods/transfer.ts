/**
 * Fine-tuning transfer (Lin et al. 2025, "Efficient model development through
 * fine-tuning transfer"): move a fine-tune onto a new base release without
 * retraining, θ = θ_new + s·(θ_ft − θ_old), over every tensor.
 */
import { createHash } from 'node:crypto';
import { type DType, dtypeSize, fromF32, isFloatDType } from '../dtypes.js';
import { WgitError } from '../errors.js';
import {
  BufferPool,
  checkOutDtype,
  copySideFiles,
  discardOutDir,
  prefetched,
  prepareOutDir,
  toF32Into,
} from '../pipeline/index.js';
import { type ModelSource, ModelWriter, type TensorSpec } from '../safetensors/index.js';
import type { ProgressEvent, TensorNote } from './types.js';

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
  outDtype?: DType;
  onProgress?: (e: ProgressEvent) => void;
  maxShardBytes?: number;
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
  closeness: { cosine: number; relDistance: number; deltaNorm: number; baseShiftNorm: number };
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
}

/** Names whose bytes may be shared between embedding and head. */
const TIE_CANDIDATE = /(embed|wte|lm_head|word_embeddings|tok_embeddings|shared|output)/i;

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
  await prepareOutDir(opts.outDir);

  // --- stream
  const writer = await ModelWriter.create(opts.outDir, specs, {
    maxShardBytes: opts.maxShardBytes,
    metadata: onto.metadata ?? undefined,
  });
  const pool = new BufferPool();
  const notes: TensorNote[] = [];
  const perTensor: TensorCloseness[] = [];
  const copied: string[] = [];
  const warnings: string[] = [];
  const targetHash = new Map<string, string>();
  const outHash = new Map<string, string>();
  let dot = 0;
  let shift2 = 0;
  let delta2 = 0;
  let old2 = 0;
  let bytesWritten = 0;
  const hashIfCandidate = (name: string, bytes: Uint8Array, into: Map<string, string>) => {
    if (TIE_CANDIDATE.test(name)) into.set(name, createHash('sha256').update(bytes).digest('hex'));
  };
  try {
    let done = 0;
    const reads = prefetched(plans.length, async (t) => {
      const plan = plans[t];
      const par = t & 1;
      const get = (m: ModelSource, slot: string) =>
        m.readTensor(plan.name, pool.bytes(`${slot}${par}`, m.tensor(plan.name).byteLength));
      if (plan.kind === 'copy') return { plan, raw: [await get(onto, 'n')] };
      return { plan, raw: await Promise.all([get(ft, 'f'), get(from, 'o'), get(onto, 'n')]) };
    });
    for await (const { plan, raw } of reads) {
      const name = plan.name;
      const spec = specs[done];
      let outBytes: Uint8Array;
      if (plan.kind === 'copy') {
        outBytes = raw[0];
        copied.push(name);
        notes.push({ name, dtype: spec.dtype, shape: spec.shape, action: 'copied', note: plan.why });
        hashIfCandidate(name, raw[0], targetHash);
      } else {
        hashIfCandidate(name, raw[2], targetHash);
        const xf = toF32Into(pool, 'xf', raw[0], ft.tensor(name).dtype);
        const xo = toF32Into(pool, 'xo', raw[1], from.tensor(name).dtype);
        const xn = toF32Into(pool, 'xn', raw[2], onto.tensor(name).dtype);
        const out = pool.f32('out', xf.length);
        const s = fr(scale);
        let d = 0;
        let sh = 0;
        let dl = 0;
        let o2 = 0;
        // rows past the bases' length (vocabulary growth) are the fine-tune's own
        const common = xn.length;
        for (let j = 0; j < common; j++) {
          const delta = fr(xf[j] - xo[j]);
          const shift = xn[j] - xo[j];
          d += shift * delta;
          sh += shift * shift;
          dl += delta * delta;
          o2 += xo[j] * xo[j];
          out[j] = fr(xn[j] + fr(s * delta));
        }
        for (let j = common; j < xf.length; j++) out[j] = xf[j];
        dot += d;
        shift2 += sh;
        delta2 += dl;
        old2 += o2;
        perTensor.push({
          name,
          cosine: sh > 0 && dl > 0 ? d / Math.sqrt(sh * dl) : 0,
          relDistance: o2 > 0 ? Math.sqrt(sh / o2) : sh > 0 ? Number.POSITIVE_INFINITY : 0,
        });
        outBytes = pool.bytes(`out${done & 1}`, out.length * dtypeSize(spec.dtype));
        fromF32(out, spec.dtype, outBytes);
        notes.push({
          name,
          dtype: spec.dtype,
          shape: spec.shape,
          action: plan.grown ? 'transferred-grown' : 'transferred',
        });
      }
      hashIfCandidate(name, outBytes, outHash);
      await writer.write(name, outBytes);
      bytesWritten += outBytes.byteLength;
      done++;
      opts.onProgress?.({ phase: 'transfer', done, total: plans.length, tensor: name });
    }
    await writer.finish();
    await copySideFiles(onto, opts.outDir);
  } catch (e) {
    await writer.abort();
    await discardOutDir(opts.outDir);
    throw e;
  } finally {
    pool.release();
  }

  // tied names: identical bytes in the target
  const byHash = new Map<string, string[]>();
  for (const [name, h] of targetHash) {
    const key = `${h}:${onto.tensor(name).dtype}:${onto.tensor(name).shape.join('x')}`;
    byHash.set(key, [...(byHash.get(key) ?? []), name]);
  }
  const tied = [...byHash.values()].filter((g) => g.length > 1);
  for (const g of tied) {
    if (new Set(g.map((n) => outHash.get(n))).size > 1) {
      warnings.push(
        `${g.join(' and ')} share storage in the target but differ in the output: the fine-tune untied them`,
      );
    }
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
      deltaNorm: Math.sqrt(delta2),
      baseShiftNorm: Math.sqrt(shift2),
    },
    perTensor,
    tensors: notes,
    grown,
    tied,
    missing: { copied: copied.filter((n) => onlyTarget.includes(n)), dropped: notInTarget },
    warnings,
    timings: { totalMs: performance.now() - t0 },
    outDir: opts.outDir,
    bytesWritten,
  };
}
