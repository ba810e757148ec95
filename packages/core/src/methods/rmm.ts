/**
 * Reversible merge (after Alipour & Amiri 2025). Per tensor, with task updates
 * Δᵢ = θᵢ − θ₀, keep a small basis M_k and coefficients c_ik with
 * Δᵢ ≈ Σ_k c_ik M_k, so each input can be checked out again.
 *
 * The first basis element is the direction u of the merged update
 * m = λ Σ wᵢΔᵢ (the plain checkout); the others are the top eigenvectors of
 * the Gram matrix of the updates' residuals after projecting out u:
 *   G = [⟨Δᵢ,Δⱼ⟩] (f64),  aᵢ = ⟨Δᵢ,u⟩,  G' = G − a aᵀ = QΛQᵀ,
 *   M_0 = u,  M_k = Σᵢ Q_ik (Δᵢ − aᵢu)/√λ_k,  c_i = (aᵢ, Q_{i,k}√λ_k).
 * Every Δᵢ is then projected onto a subspace that contains m, so each input's
 * recovery error is at most its error against the merged model, for any rank;
 * with the full basis the projection is exact. Recovery rounds
 * θ₀ + Σ_k c_Nk M_k to the model dtype; where that rounding misses the input
 * by an ulp, the exact input values are stored as sparse fixes, so a full
 * basis recovers every input byte for byte.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { type DType, fromF32, isFloatDType } from '../dtypes.js';
import { WgitError } from '../errors.js';
import type { ObjectHeader } from '../objects/kind.js';
import {
  baseName,
  basisName,
  fixIndexName,
  fixValueName,
  inputCopyName,
  RMM_META_TENSOR,
  type RmmMeta,
  type RmmTensorMeta,
  readRmmTable,
  rmmBasisHeader,
} from '../objects/rmm-format.js';
import {
  BufferPool,
  checkOutDtype,
  copySideFiles,
  discardOutDir,
  prepareOutDir,
  streamTensors,
  toF32Into,
  validateModels,
} from '../pipeline/index.js';
import { type ModelSource, ModelWriter, type TensorSpec } from '../safetensors/index.js';
import { symmetricEigen } from './eigen.js';
import { linearCoefficients } from './linear.js';
import { tensorParams } from './params.js';
import { RMM_MERGED_CONFIG, rmm } from './rmm-method.js';
import { sparseConsensusTensor } from './sparse-consensus.js';
import type { MergeParams, MergeReport, ProgressEvent, ResolvedParams } from './types.js';

const fr = Math.fround;

/** Eigen-directions carrying less than this fraction of the updates' energy are dropped. */
export const RMM_EIGEN_EPS = 1e-12;

export interface Decomposition {
  /** p × n: basis tensor k = Σᵢ combo[k][i]·Δᵢ. */
  combo: number[][];
  /** n × p coefficients. */
  coeffs: number[][];
  /** Eigenvalues kept (after the merged direction), descending. */
  eigenvalues: number[];
  /** Whether basis 0 is the merged direction. */
  mergedFirst: boolean;
}

/**
 * The basis as linear combinations of the updates, from their Gram matrix and
 * the merge coefficients mc (m = Σ mcᵢΔᵢ). Pure f64 math on n×n matrices.
 */
export function decompose(gram: number[][], mc: number[], rank: number, eps = RMM_EIGEN_EPS): Decomposition {
  const n = gram.length;
  let trace = 0;
  for (let i = 0; i < n; i++) trace += gram[i][i];
  const combo: number[][] = [];
  const coeffs: number[][] = Array.from({ length: n }, () => []);
  if (trace <= 0) return { combo, coeffs, eigenvalues: [], mergedFirst: false };
  const gc = gram.map((row) => row.reduce((s, g, j) => s + g * mc[j], 0));
  const mm = mc.reduce((s, c, i) => s + c * gc[i], 0);
  let residual = gram;
  let mergedFirst = false;
  if (
    mm >
    eps *
      trace *
      Math.max(
        1,
        mc.reduce((s, c) => s + c * c, 0),
      )
  ) {
    const norm = Math.sqrt(mm);
    const a = gc.map((x) => x / norm);
    const u = mc.map((c) => c / norm);
    combo.push(u);
    for (let i = 0; i < n; i++) coeffs[i].push(a[i]);
    residual = gram.map((row, i) => row.map((g, j) => g - a[i] * a[j]));
    mergedFirst = true;
  }
  const eig = symmetricEigen(residual);
  const eigenvalues: number[] = [];
  for (let k = 0; k < n && combo.length < rank; k++) {
    const lam = eig.values[k];
    if (!(lam > eps * trace)) break;
    const q = eig.vectors.map((row) => row[k]);
    const s = Math.sqrt(lam);
    // residual Rᵢ = Δᵢ − aᵢu expressed over the Δ's
    const c = q.map((x) => x / s);
    if (mergedFirst) {
      const qa = q.reduce((acc, x, i) => acc + x * coeffs[i][0], 0);
      for (let i = 0; i < n; i++) c[i] -= (qa * combo[0][i]) / s;
    }
    combo.push(c);
    for (let i = 0; i < n; i++) coeffs[i].push(q[i] * s);
    eigenvalues.push(lam);
  }
  return { combo, coeffs, eigenvalues, mergedFirst };
}

/** Gram matrix of the updates, accumulated in f64. */
export function gramMatrix(deltas: Float32Array[]): number[][] {
  const n = deltas.length;
  const g = Array.from({ length: n }, () => new Array<number>(n).fill(0));
  for (let i = 0; i < n; i++) {
    for (let k = i; k < n; k++) {
      const a = deltas[i];
      const b = deltas[k];
      let s = 0;
      for (let j = 0; j < a.length; j++) s += a[j] * b[j];
      g[i][k] = s;
      g[k][i] = s;
    }
  }
  return g;
}

/** Basis tensor values (f64 accumulation, stored f32). */
export function basisTensor(deltas: Float32Array[], combo: number[], out: Float32Array): void {
  for (let j = 0; j < out.length; j++) {
    let s = 0;
    for (let i = 0; i < deltas.length; i++) s += combo[i] * deltas[i][j];
    out[j] = s;
  }
}

/** θ₀ + Σ_k c_k M_k, summed in f64 and rounded once to f32; the same code runs at merge time and at recovery. */
export function reconstruct(base: Float32Array, basis: Float32Array[], coeffs: number[], out: Float32Array): void {
  for (let j = 0; j < out.length; j++) {
    let s = base[j] as number;
    for (let k = 0; k < basis.length; k++) s += coeffs[k] * basis[k][j];
    out[j] = s;
  }
}

export interface ReversibleMergeOptions {
  inputs: ModelSource[];
  base: ModelSource;
  params?: MergeParams;
  /** The merged model (plain checkout). */
  outDir: string;
  /** The group: base copy, basis, fixes, coefficient table, each input's side files. */
  groupDir: string;
  outDtype?: DType;
  onProgress?: (e: ProgressEvent) => void;
  maxShardBytes?: number;
}

export interface RmmReport extends MergeReport {
  rmm: {
    rank: number;
    basisTensors: number;
    models: RmmMeta['models'];
    groupDir: string;
    /** The manifest header to commit the group with. */
    object: ObjectHeader;
  };
}

interface TensorWork {
  deltas: Float32Array[];
  dec: Decomposition;
  basis: Float32Array[];
  merged: Float32Array;
}

function computeTensor(
  pool: BufferPool,
  name: string,
  values: Float32Array[],
  n: number,
  resolved: ResolvedParams,
  rank: number,
): TensorWork {
  const base = values[n];
  const len = base.length;
  const deltas: Float32Array[] = [];
  for (let i = 0; i < n; i++) {
    const d = pool.f32(`d${i}`, len);
    const x = values[i];
    for (let j = 0; j < len; j++) d[j] = fr(x[j] - base[j]);
    deltas.push(d);
  }
  const tp = tensorParams(resolved, name);
  const mc = linearCoefficients(tp.weights, tp.normalize).map((c) => c * fr(tp.lambda));
  const dec = decompose(gramMatrix(deltas), mc, rank);
  const basis = dec.combo.map((c, k) => {
    const m = pool.f32(`m${k}`, len);
    basisTensor(deltas, c, m);
    return m;
  });
  const merged = pool.f32('merged', len);
  sparseConsensusTensor(RMM_MERGED_CONFIG, tp, values.slice(0, n), base, { name }, merged);
  return { deltas, dec, basis, merged };
}

function relNorm(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let j = 0; j < a.length; j++) {
    const d = a[j] - b[j];
    s += d * d;
  }
  return s;
}

/**
 * Writes the merged model to outDir and the group to groupDir. Two passes:
 * the first decides each tensor's basis size and counts the fixes (the
 * group's header must list every tensor before the first byte is written),
 * the second recomputes the same numbers and writes them.
 */
export async function reversibleMerge(opts: ReversibleMergeOptions): Promise<RmmReport> {
  const t0 = performance.now();
  const n = opts.inputs.length;
  if (!opts.base) throw new WgitError('E_BASE_REQUIRED', 'rmm needs a base model', { method: 'rmm' });
  const resolved = rmm.resolve(opts.params ?? {}, n);
  const rank = resolved.rank;
  const models = [...opts.inputs, opts.base];
  validateModels(models);
  const outDtype = checkOutDtype(opts.outDtype);
  await prepareOutDir(opts.outDir);
  await prepareOutDir(opts.groupDir);
  const ref = opts.inputs[0];
  const order = ref.tensors.map((t) => t.name);
  const floatNames = ref.tensors.filter((t) => isFloatDType(t.dtype)).map((t) => t.name);
  const pool = new BufferPool();
  const meta: RmmMeta = {
    format: 'wgit-rmm',
    version: 1,
    inputs: n,
    rank,
    params: resolved,
    order,
    tensors: {},
    copied: ref.tensors
      .filter((t) => !isFloatDType(t.dtype))
      .map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape })),
    models: [],
  };
  const totals = Array.from({ length: n }, () => ({ rec: 0, merged: 0, delta: 0, fixes: 0 }));

  // pass 1: decide p and count fixes
  const t1 = performance.now();
  let done = 0;
  for await (const lt of streamTensors(models, floatNames, pool)) {
    const info = ref.tensor(lt.name);
    const values = lt.raw.map((r, i) => toF32Into(pool, `f${i}`, r, info.dtype));
    const w = computeTensor(pool, lt.name, values, n, resolved, rank);
    const len = values[n].length;
    const rec = pool.f32('rec', len);
    const recBytes = pool.bytes('recb', lt.raw[0].byteLength);
    const back = pool.f32('back', len);
    const mergedBytes = pool.bytes('mb', lt.raw[0].byteLength);
    fromF32(w.merged, info.dtype, mergedBytes);
    const mergedBack = toF32Into(pool, 'mback', mergedBytes, info.dtype);
    const tm: RmmTensorMeta = {
      dtype: info.dtype,
      shape: info.shape,
      p: w.basis.length,
      coeffs: w.dec.coeffs,
      eigenvalues: w.dec.eigenvalues,
      mergedFirst: w.dec.mergedFirst,
      relError: [],
      mergedRelError: [],
      fixes: [],
    };
    for (let i = 0; i < n; i++) {
      reconstruct(values[n], w.basis, w.dec.coeffs[i], rec);
      fromF32(rec, info.dtype, recBytes);
      // fixes only make sense for a full basis: a truncated one is lossy by choice
      const fixes = rank === n ? countFixes(recBytes, lt.raw[i], elementSize(info.dtype)) : 0;
      back.set(toF32Into(pool, 'rb', recBytes, info.dtype));
      let dn = 0;
      const di = w.deltas[i];
      for (let j = 0; j < len; j++) dn += di[j] * di[j];
      const re = relNorm(back, values[i]);
      const me = relNorm(mergedBack, values[i]);
      tm.relError.push(dn > 0 ? Math.sqrt(re / dn) : re > 0 ? Number.POSITIVE_INFINITY : 0);
      tm.mergedRelError.push(dn > 0 ? Math.sqrt(me / dn) : me > 0 ? Number.POSITIVE_INFINITY : 0);
      tm.fixes.push(fixes);
      totals[i].rec += re;
      totals[i].merged += me;
      totals[i].delta += dn;
      totals[i].fixes += fixes;
    }
    meta.tensors[lt.name] = tm;
    opts.onProgress?.({ phase: 'rmm-basis', done: ++done, total: floatNames.length, tensor: lt.name });
  }
  meta.models = totals.map((t) => ({
    relError: t.delta > 0 ? Math.sqrt(t.rec / t.delta) : 0,
    mergedRelError: t.delta > 0 ? Math.sqrt(t.merged / t.delta) : 0,
    fixes: t.fixes,
  }));
  meta.metadata = opts.inputs.map((m) => m.metadata ?? null);

  // pass 2: write
  const t2 = performance.now();
  const metaBytes = new TextEncoder().encode(JSON.stringify(meta));
  const groupSpecs: TensorSpec[] = [{ name: RMM_META_TENSOR, dtype: 'U8', shape: [metaBytes.length] }];
  for (const t of ref.tensors) {
    const tm = meta.tensors[t.name];
    if (!tm) {
      for (let i = 0; i < n; i++) groupSpecs.push({ name: inputCopyName(t.name, i), dtype: t.dtype, shape: t.shape });
      continue;
    }
    groupSpecs.push({ name: baseName(t.name), dtype: t.dtype, shape: t.shape });
    for (let k = 0; k < tm.p; k++) groupSpecs.push({ name: basisName(t.name, k), dtype: 'F32', shape: t.shape });
    const big = elementCount(t.shape) > 0x7fffffff;
    for (let i = 0; i < n; i++) {
      if (tm.fixes[i] === 0) continue;
      groupSpecs.push({ name: fixIndexName(t.name, i), dtype: big ? 'I64' : 'I32', shape: [tm.fixes[i]] });
      groupSpecs.push({ name: fixValueName(t.name, i), dtype: t.dtype, shape: [tm.fixes[i]] });
    }
  }
  const mergedSpecs: TensorSpec[] = ref.tensors.map((t) => ({
    name: t.name,
    dtype: isFloatDType(t.dtype) && outDtype ? outDtype : t.dtype,
    shape: t.shape,
  }));
  const mergedWriter = await ModelWriter.create(opts.outDir, mergedSpecs, {
    maxShardBytes: opts.maxShardBytes,
    metadata: opts.base.metadata ?? undefined,
  });
  const groupWriter = await ModelWriter.create(opts.groupDir, groupSpecs, { maxShardBytes: opts.maxShardBytes });
  let bytesWritten = 0;
  let basisTensors = 0;
  try {
    await groupWriter.write(RMM_META_TENSOR, metaBytes);
    done = 0;
    for await (const lt of streamTensors(models, order, pool)) {
      const info = ref.tensor(lt.name);
      const tm = meta.tensors[lt.name];
      if (!tm) {
        await mergedWriter.write(lt.name, lt.raw[0]);
        bytesWritten += lt.raw[0].byteLength;
        for (let i = 0; i < n; i++) await groupWriter.write(inputCopyName(lt.name, i), lt.raw[i]);
        continue;
      }
      const values = lt.raw.map((r, i) => toF32Into(pool, `f${i}`, r, info.dtype));
      const w = computeTensor(pool, lt.name, values, n, resolved, rank);
      const spec = mergedSpecs[order.indexOf(lt.name)];
      const mergedBytes = pool.bytes('mb', w.merged.length * elementSize(spec.dtype));
      fromF32(w.merged, spec.dtype, mergedBytes);
      await mergedWriter.write(lt.name, mergedBytes);
      bytesWritten += mergedBytes.byteLength;
      await groupWriter.write(baseName(lt.name), lt.raw[n]);
      if (w.basis.length !== tm.p) throw new Error(`rmm: basis of ${lt.name} changed between passes`);
      for (let k = 0; k < tm.p; k++) {
        const m = w.basis[k];
        await groupWriter.write(basisName(lt.name, k), new Uint8Array(m.buffer, m.byteOffset, m.byteLength));
        basisTensors++;
      }
      const rec = pool.f32('rec', values[n].length);
      const recBytes = pool.bytes('recb', lt.raw[0].byteLength);
      const es = elementSize(info.dtype);
      for (let i = 0; i < n; i++) {
        if (tm.fixes[i] === 0) continue;
        reconstruct(values[n], w.basis, tm.coeffs[i], rec);
        fromF32(rec, info.dtype, recBytes);
        const { index, value } = collectFixes(
          recBytes,
          lt.raw[i],
          es,
          tm.fixes[i],
          elementCount(info.shape) > 0x7fffffff,
        );
        await groupWriter.write(fixIndexName(lt.name, i), index);
        await groupWriter.write(fixValueName(lt.name, i), value);
      }
      opts.onProgress?.({ phase: 'rmm-write', done: ++done, total: order.length, tensor: lt.name });
    }
    await mergedWriter.finish();
    await groupWriter.finish();
    await copySideFiles(opts.base, opts.outDir);
    for (let i = 0; i < n; i++) {
      const dir = join(opts.groupDir, 'inputs', String(i));
      await mkdir(dir, { recursive: true });
      await copySideFiles(opts.inputs[i], dir);
    }
  } catch (e) {
    await mergedWriter.abort();
    await groupWriter.abort();
    await discardOutDir(opts.outDir);
    await discardOutDir(opts.groupDir);
    throw e;
  } finally {
    pool.release();
  }
  const t3 = performance.now();
  const warnings: string[] = [];
  if (meta.copied.length)
    warnings.push(
      `${meta.copied.length} integer/bool tensor(s): merged model takes the first model's; each input's copy is in the group`,
    );
  return {
    method: 'rmm',
    params: { ...resolved, outDtype: outDtype ?? null },
    tensors: ref.tensors.map((t) => ({
      name: t.name,
      dtype: mergedSpecs[order.indexOf(t.name)].dtype,
      shape: t.shape,
      action: meta.tensors[t.name] ? 'merged' : 'copied',
      note: meta.tensors[t.name] ? `basis ${meta.tensors[t.name].p}` : 'integer/bool tensor taken from the first model',
    })),
    warnings,
    copied: meta.copied.map((c) => c.name),
    timings: { validateMs: t1 - t0, firstPassMs: t2 - t1, mergeMs: t3 - t2, totalMs: t3 - t0 },
    outDir: opts.outDir,
    bytesWritten,
    rmm: { rank, basisTensors, models: meta.models, groupDir: opts.groupDir, object: rmmBasisHeader(meta) },
  };
}

function elementCount(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function elementSize(d: DType): number {
  return d === 'F64' || d === 'I64' || d === 'U64'
    ? 8
    : d === 'F32' || d === 'I32' || d === 'U32'
      ? 4
      : d === 'F16' || d === 'BF16' || d === 'I16' || d === 'U16'
        ? 2
        : 1;
}

function sameElement(a: Uint8Array, b: Uint8Array, off: number, es: number): boolean {
  for (let k = 0; k < es; k++) if (a[off + k] !== b[off + k]) return false;
  return true;
}

function countFixes(rec: Uint8Array, input: Uint8Array, es: number): number {
  let c = 0;
  for (let off = 0; off < rec.length; off += es) if (!sameElement(rec, input, off, es)) c++;
  return c;
}

function collectFixes(
  rec: Uint8Array,
  input: Uint8Array,
  es: number,
  count: number,
  big: boolean,
): { index: Uint8Array; value: Uint8Array } {
  const index = new Uint8Array(count * (big ? 8 : 4));
  const iv = new DataView(index.buffer);
  const value = new Uint8Array(count * es);
  let c = 0;
  for (let off = 0, j = 0; off < rec.length; off += es, j++) {
    if (sameElement(rec, input, off, es)) continue;
    if (big) iv.setBigInt64(c * 8, BigInt(j), true);
    else iv.setInt32(c * 4, j, true);
    value.set(input.subarray(off, off + es), c * es);
    c++;
  }
  if (c !== count) throw new Error('rmm: fix count changed between passes');
  return { index, value };
}

// ---------------------------------------------------------------------------
// recovery

export interface RecoverOptions {
  /** The group written by reversibleMerge (a folder, or a commit's group from the store). */
  group: ModelSource;
  /** The group's coefficient table when the caller has read it already (the rmm-basis kind's decode). */
  table?: RmmMeta;
  /** Which input to recover, 0-based. */
  model: number;
  outDir: string;
  /** Apply the stored fixes (default true): byte-exact with a full basis. */
  exact?: boolean;
  onProgress?: (e: ProgressEvent) => void;
  maxShardBytes?: number;
}

export interface RecoverReport {
  model: number;
  rank: number;
  outDir: string;
  /** Recorded at merge time: relative error of this input's recovery (before fixes) and of the merged model. */
  relError: number;
  mergedRelError: number;
  /** Entries corrected from the stored fixes. */
  fixesApplied: number;
  /** True when the output is byte-identical to the input (fixes applied and the basis was full). */
  exact: boolean;
  tensors: number;
}

/** Recovers input `model` of a reversible merge from its group. */
export async function recoverModel(opts: RecoverOptions): Promise<RecoverReport> {
  const meta = opts.table ?? (await readRmmTable(opts.group));
  const N = opts.model;
  if (!Number.isInteger(N) || N < 0 || N >= meta.inputs) {
    throw new WgitError('E_BAD_PARAM', `model must be in 0..${meta.inputs - 1}, got ${N}`, {
      param: 'model',
      inputs: meta.inputs,
    });
  }
  const exact = opts.exact ?? true;
  await prepareOutDir(opts.outDir);
  const g = opts.group;
  const specs: TensorSpec[] = meta.order.map((name) => {
    const tm = meta.tensors[name];
    if (tm) {
      const b = g.tensor(baseName(name));
      return { name, dtype: b.dtype, shape: b.shape };
    }
    const c = g.tensor(inputCopyName(name, N));
    return { name, dtype: c.dtype, shape: c.shape };
  });
  const writer = await ModelWriter.create(opts.outDir, specs, {
    maxShardBytes: opts.maxShardBytes,
    metadata: meta.metadata?.[N] ?? undefined,
  });
  const pool = new BufferPool();
  let fixesApplied = 0;
  try {
    let done = 0;
    for (const spec of specs) {
      const name = spec.name;
      const tm = meta.tensors[name];
      if (!tm) {
        await writer.write(
          name,
          await g.readTensor(inputCopyName(name, N), pool.bytes('copy', g.tensor(inputCopyName(name, N)).byteLength)),
        );
        continue;
      }
      if (!isFloatDType(spec.dtype))
        throw new WgitError('E_RMM_GROUP', `${g.root}: base of ${name} is not a float tensor`, { tensor: name });
      const baseRaw = await g.readTensor(baseName(name), pool.bytes('base', g.tensor(baseName(name)).byteLength));
      const base = toF32Into(pool, 'basef', baseRaw, spec.dtype);
      const basis: Float32Array[] = [];
      for (let k = 0; k < tm.p; k++) {
        const bt = g.tensor(basisName(name, k));
        if (bt.dtype !== 'F32' || bt.byteLength !== base.length * 4)
          throw new WgitError('E_RMM_GROUP', `${g.root}: bad basis tensor for ${name}`, { tensor: name });
        const raw = await g.readTensor(basisName(name, k), pool.bytes(`b${k}`, bt.byteLength));
        basis.push(toF32Into(pool, `bf${k}`, raw, 'F32'));
      }
      const rec = pool.f32('rec', base.length);
      reconstruct(base, basis, tm.coeffs[N], rec);
      const es = elementSize(spec.dtype);
      const out = pool.bytes('out', base.length * es);
      fromF32(rec, spec.dtype, out);
      if (exact && tm.fixes[N] > 0) {
        const it = g.tensor(fixIndexName(name, N));
        const idx = await g.readTensor(fixIndexName(name, N));
        const val = await g.readTensor(fixValueName(name, N));
        const dv = new DataView(idx.buffer, idx.byteOffset, idx.byteLength);
        const count = tm.fixes[N];
        if (val.byteLength !== count * es || idx.byteLength !== count * (it.dtype === 'I64' ? 8 : 4)) {
          throw new WgitError('E_RMM_GROUP', `${g.root}: fixes of ${name} have the wrong size`, { tensor: name });
        }
        for (let c = 0; c < count; c++) {
          const j = it.dtype === 'I64' ? Number(dv.getBigInt64(c * 8, true)) : dv.getInt32(c * 4, true);
          if (!(j >= 0 && j < base.length))
            throw new WgitError('E_RMM_GROUP', `${g.root}: fix index out of range in ${name}`, { tensor: name });
          out.set(val.subarray(c * es, c * es + es), j * es);
        }
        fixesApplied += count;
      }
      await writer.write(name, out);
      opts.onProgress?.({ phase: 'rmm-recover', done: ++done, total: specs.length, tensor: name });
    }
    await writer.finish();
    const sideRoot = `inputs/${N}/`;
    const sideSource: ModelSource = {
      ...g,
      sideFiles: g.sideFiles.filter((f) => f.startsWith(sideRoot)).map((f) => f.slice(sideRoot.length)),
      readSideFile: (rel: string) => g.readSideFile(sideRoot + rel),
    };
    await copySideFiles(sideSource, opts.outDir);
  } catch (e) {
    await writer.abort();
    await discardOutDir(opts.outDir);
    throw e;
  } finally {
    pool.release();
  }
  const mm = meta.models[N];
  return {
    model: N,
    rank: meta.rank,
    outDir: opts.outDir,
    relError: mm?.relError ?? Number.NaN,
    mergedRelError: mm?.mergedRelError ?? Number.NaN,
    fixesApplied,
    exact: exact && meta.rank === meta.inputs,
    tensors: specs.length,
  };
}
