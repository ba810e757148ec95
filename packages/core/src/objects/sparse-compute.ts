/**
 * Computing a sparse delta of FT over B (stored form: sparse-delta.ts).
 *
 * - exact: every entry whose stored bits differ between FT and B, with
 *   value f32(FT) − f32(B). A first pass over the models counts them (the
 *   stored tensors' sizes must be known before writing) and checks that
 *   applying the object onto B with scale 1 — f32(B + value), rounded once to
 *   the dtype, −0 where nothing is stored — gives FT's bits everywhere; a
 *   tensor where f32 cannot carry them (a value far below B's in magnitude,
 *   an infinity in B) is held whole instead, so the object is lossless.
 * - density D: in each float tensor, exactly k = round(D·n) entries (halves
 *   rounded up), the largest |Δ| first, ties between equal |Δ| broken by the
 *   lower flat index. One pass; the relative error ‖Δ − Δ̂‖/‖Δ‖ is reported
 *   per tensor and over the model.
 * Non-float tensors are held whole (FT's bytes). The two models must hold
 * the same tensors with the same dtypes and shapes, and Δ must hold no NaN:
 * each is a typed error naming the tensor, before anything is written (NaN
 * in density mode: the output is dropped).
 */
import type { Device } from '../device/index.js';
import { getDevice } from '../device/index.js';
import { type DType, dtypeSize, isFloatDType } from '../dtypes.js';
import { WgitError } from '../errors.js';
import { BufferPool, convertIn, convertOut } from '../pipeline/index.js';
import type { ModelSource, TensorSpec } from '../safetensors/index.js';
import { type DeltaIO, elementsOf, sameShape, writeTensors } from './delta.js';
import type { ObjectHeader } from './kind.js';
import {
  SPARSE_DELTA_KIND,
  SPARSE_DELTA_VERSION,
  type SparseDeltaMeta,
  sparseIndexName,
  sparseValueName,
  U32_GAP_LIMIT,
} from './sparse-format.js';

export interface SparseDeltaParams {
  /** Keep every changed entry (lossless). */
  exact?: boolean;
  /** Keep this fraction of each tensor's entries, the largest |Δ| first; 0 < D ≤ 1. */
  density?: number;
}

export interface SparseTensorReport {
  name: string;
  elements: number;
  /** Entries stored (all of them when held whole). */
  kept: number;
  /** ‖Δ − Δ̂‖/‖Δ‖ (0 when Δ = 0 or exact). */
  relError: number;
  /** True when the tensor is stored whole (exact mode, f32 cannot carry FT's bits). */
  whole: boolean;
}

export interface SparseDeltaReport {
  header: ObjectHeader;
  mode: 'exact' | 'density';
  density: number | null;
  /** Every float tensor. */
  tensors: SparseTensorReport[];
  /** Tensors held whole: non-float ones, and float ones f32 cannot carry exactly. */
  replaced: string[];
  kept: number;
  elements: number;
  /** ‖Δ − Δ̂‖/‖Δ‖ over every float tensor together. */
  relError: number;
  /** Bytes of the stored tensors before compression. */
  objectBytes: number;
  /** Bytes of a dense f32 diff vector of the same float tensors. */
  denseF32Bytes: number;
}

export interface SparseDeltaPlan {
  header: ObjectHeader;
  meta: SparseDeltaMeta;
  /** Float tensors, in FT's order. */
  floats: TensorSpec[];
  /** Non-float tensors, held whole. */
  whole: Set<string>;
}

function checkParams(params: SparseDeltaParams): { mode: 'exact' | 'density'; density: number | null } {
  const exact = params.exact === true;
  const d = params.density;
  if (exact === (d !== undefined))
    throw new WgitError('E_BAD_PARAM', 'a sparse delta is either exact or of a density: give exactly one', {
      param: 'density',
    });
  if (exact) return { mode: 'exact', density: null };
  if (typeof d !== 'number' || !Number.isFinite(d) || d <= 0 || d > 1)
    throw new WgitError('E_BAD_PARAM', `density must be in (0, 1], got ${String(d)}`, { param: 'density', value: d });
  return { mode: 'density', density: d };
}

/**
 * Checks the parameters and that FT and B hold the same tensors with the same
 * dtypes and shapes (from the tensor lists: nothing is read); the header.
 */
export function planSparseDelta(ft: ModelSource, base: ModelSource, params: SparseDeltaParams): SparseDeltaPlan {
  const { mode, density } = checkParams(params);
  const inBase = new Map(base.tensors.map((t) => [t.name, t]));
  const inFt = new Set(ft.tensors.map((t) => t.name));
  const lone = ft.tensors.find((t) => !inBase.has(t.name))?.name ?? base.tensors.find((t) => !inFt.has(t.name))?.name;
  if (lone !== undefined)
    throw new WgitError(
      'E_TENSOR_MISMATCH',
      `tensor ${JSON.stringify(lone)} is in only one of the fine-tune and the base`,
      { tensor: lone },
    );
  const floats: TensorSpec[] = [];
  const whole = new Set<string>();
  for (const t of ft.tensors) {
    const b = inBase.get(t.name) as (typeof base.tensors)[number];
    if (t.dtype !== b.dtype)
      throw new WgitError(
        'E_DTYPE_MISMATCH',
        `tensor ${JSON.stringify(t.name)} is ${t.dtype} in the fine-tune and ${b.dtype} in the base`,
        { tensor: t.name, ft: t.dtype, base: b.dtype },
      );
    if (!sameShape(t.shape, b.shape))
      throw new WgitError(
        'E_SHAPE_MISMATCH',
        `tensor ${JSON.stringify(t.name)} has shape [${t.shape}] in the fine-tune and [${b.shape}] in the base`,
        { tensor: t.name, expected: b.shape, found: t.shape },
      );
    if (isFloatDType(t.dtype)) floats.push({ name: t.name, dtype: t.dtype, shape: t.shape });
    else whole.add(t.name);
  }
  const meta: SparseDeltaMeta = { mode, density, shapes: floats.map((t) => [t.name, [...t.shape]]) };
  return { header: { kind: SPARSE_DELTA_KIND, version: SPARSE_DELTA_VERSION, meta: { ...meta } }, meta, floats, whole };
}

/** Element j of two raw tensors of element size `es` differ in their bits: a predicate over word views. */
function bitCompare(a: Uint8Array, b: Uint8Array, es: number): (j: number) => boolean {
  if (es === 1) return (j) => a[j] !== b[j];
  if (es === 2) {
    const x = new Uint16Array(a.buffer, a.byteOffset, a.byteLength / 2);
    const y = new Uint16Array(b.buffer, b.byteOffset, b.byteLength / 2);
    return (j) => x[j] !== y[j];
  }
  const x = new Uint32Array(a.buffer, a.byteOffset, a.byteLength / 4);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.byteLength / 4);
  if (es === 4) return (j) => x[j] !== y[j];
  return (j) => x[2 * j] !== y[2 * j] || x[2 * j + 1] !== y[2 * j + 1];
}

function nanError(name: string, at: number): WgitError {
  return new WgitError('E_NAN_DELTA', `tensor ${JSON.stringify(name)}: fine-tune − base is NaN at flat index ${at}`, {
    tensor: name,
    index: at,
  });
}

interface Loaded {
  ft: Uint8Array;
  base: Uint8Array;
}

/** Δ = f32(FT) − f32(B) in the pool's 'delta' slot. */
async function deltaOf(spec: TensorSpec, raw: Loaded, pool: BufferPool, device: Device): Promise<Float32Array> {
  const f = await convertIn(pool, 'vf', raw.ft, spec.dtype, device);
  const b = await convertIn(pool, 'vb', raw.base, spec.dtype, device);
  const d = pool.f32('delta', f.length);
  await device.sub(f, b, d);
  return d;
}

/**
 * Exact mode's first pass: per float tensor, how many entries changed, and
 * whether f32(B + value) rounded to the dtype gives FT's bits (else the
 * tensor is held whole). NaN at a changed entry is E_NAN_DELTA.
 */
async function surveyExact(
  ft: ModelSource,
  base: ModelSource,
  floats: TensorSpec[],
  device: Device,
): Promise<Map<string, number | 'whole'>> {
  const out = new Map<string, number | 'whole'>();
  const pool = new BufferPool(device);
  try {
    for (const spec of floats) {
      const id = ft.contentId?.(spec.name);
      if (id && id === base.contentId?.(spec.name)) {
        out.set(spec.name, 0);
        continue;
      }
      const bytes = ft.tensor(spec.name).byteLength;
      const raw = {
        ft: await ft.readTensor(spec.name, pool.bytes('f', bytes)),
        base: await base.readTensor(spec.name, pool.bytes('b', bytes)),
      };
      const differ = bitCompare(raw.ft, raw.base, dtypeSize(spec.dtype));
      const n = elementsOf(spec.shape);
      const d = await deltaOf(spec, raw, pool, device);
      const sparse = pool.f32('sparse', n).fill(-0);
      let k = 0;
      for (let j = 0; j < n; j++)
        if (differ(j)) {
          if (Number.isNaN(d[j])) throw nanError(spec.name, j);
          sparse[j] = d[j];
          k++;
        }
      if (k === 0) {
        out.set(spec.name, 0);
        continue;
      }
      // The check is the apply itself (delta.ts): B + 1·Δ̂ in f32, rounded once.
      const vb = await convertIn(pool, 'vb', raw.base, spec.dtype, device);
      const sum = pool.f32('sum', n);
      await device.axpy(vb, 1, sparse, sum);
      const back = pool.bytes('back', bytes);
      await convertOut(sum, spec.dtype, back, device);
      const same = Buffer.compare(back, raw.ft) === 0;
      out.set(spec.name, same ? k : 'whole');
    }
  } finally {
    pool.release();
  }
  return out;
}

/** Flat indices (ascending) of the k kept entries of a density-mode tensor, and the error sums. */
async function topK(
  name: string,
  d: Float32Array,
  k: number,
  device: Device,
): Promise<{ at: Float64Array; total: number; dropped: number }> {
  let total = 0;
  for (let j = 0; j < d.length; j++) {
    if (Number.isNaN(d[j])) throw nanError(name, j);
    total += d[j] * d[j];
  }
  const t = await device.kthLargestAbs([d], k);
  let quota = k;
  for (let j = 0; j < d.length; j++) if (Math.abs(d[j]) > t) quota--;
  const at = new Float64Array(k);
  let i = 0;
  let dropped = 0;
  for (let j = 0; j < d.length; j++) {
    const m = Math.abs(d[j]);
    if (m > t || (m === t && quota-- > 0)) at[i++] = j;
    else dropped += d[j] * d[j];
  }
  return { at, total, dropped };
}

/** Σ Δ² per tensor (NaN refused), for tensors that keep nothing. */
async function sumSquares(
  ft: ModelSource,
  base: ModelSource,
  specs: TensorSpec[],
  device: Device,
): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  const pool = new BufferPool(device);
  try {
    for (const spec of specs) {
      const bytes = ft.tensor(spec.name).byteLength;
      const raw = {
        ft: await ft.readTensor(spec.name, pool.bytes('f', bytes)),
        base: await base.readTensor(spec.name, pool.bytes('b', bytes)),
      };
      const d = await deltaOf(spec, raw, pool, device);
      let sq = 0;
      for (let j = 0; j < d.length; j++) {
        if (Number.isNaN(d[j])) throw nanError(spec.name, j);
        sq += d[j] * d[j];
      }
      out.set(spec.name, sq);
    }
  } finally {
    pool.release();
  }
  return out;
}

/** Writes `at` delta-coded into `out` (U32 words, or U64 above 2³² elements). */
function writeGaps(at: Float64Array, n: number, out: Uint8Array): void {
  const wide = n > U32_GAP_LIMIT;
  const words = wide
    ? new BigUint64Array(out.buffer, out.byteOffset, at.length)
    : new Uint32Array(out.buffer, out.byteOffset, at.length);
  for (let i = 0; i < at.length; i++) {
    const gap = i === 0 ? at[0] : at[i] - at[i - 1];
    if (wide) (words as BigUint64Array)[i] = BigInt(gap);
    else (words as Uint32Array)[i] = gap;
  }
}

/** The sparse delta of FT over B written to `io` (FT's side files go with it); the report. */
export async function computeSparseDelta(
  ft: ModelSource,
  base: ModelSource,
  params: SparseDeltaParams,
  io: DeltaIO,
): Promise<SparseDeltaReport> {
  const plan = planSparseDelta(ft, base, params);
  const { mode, density } = plan.meta;
  const device = io.device ?? (await getDevice({ device: 'auto' }));
  const counts =
    mode === 'exact'
      ? await surveyExact(ft, base, plan.floats, device)
      : new Map(plan.floats.map((t) => [t.name, Math.round((density as number) * elementsOf(t.shape))]));
  const whole = new Set(plan.whole);
  for (const [name, k] of counts) if (k === 'whole') whole.add(name);
  const specs: TensorSpec[] = [];
  const floatSpec = new Map(plan.floats.map((t) => [t.name, t]));
  for (const t of ft.tensors) {
    const k = counts.get(t.name);
    if (whole.has(t.name)) specs.push({ name: t.name, dtype: t.dtype, shape: t.shape });
    else if (typeof k === 'number' && k > 0) {
      const n = elementsOf(t.shape);
      specs.push({ name: sparseIndexName(t.name), dtype: n > U32_GAP_LIMIT ? 'U64' : ('U32' as DType), shape: [k] });
      specs.push({ name: sparseValueName(t.name), dtype: 'F32', shape: [k] });
    }
  }
  const reports = new Map<string, SparseTensorReport>();
  let total = 0;
  let dropped = 0;
  for (const t of plan.floats) {
    const k = counts.get(t.name);
    const n = elementsOf(t.shape);
    reports.set(t.name, {
      name: t.name,
      elements: n,
      kept: k === 'whole' ? n : (k as number),
      relError: 0,
      whole: k === 'whole',
    });
  }
  if (mode === 'density') {
    // Tensors too small to keep an entry are not stored, but their Δ is the error (and may hold NaN).
    const empty = plan.floats.filter((t) => counts.get(t.name) === 0);
    const sums = await sumSquares(ft, base, empty, device);
    for (const t of empty) {
      const sq = sums.get(t.name) as number;
      total += sq;
      dropped += sq;
      (reports.get(t.name) as SparseTensorReport).relError = sq > 0 ? 1 : 0;
    }
  }
  const sourceOf = (stored: string) => stored.replace(/::sparse\.(index|value)$/, '');
  await writeTensors(
    { ...io, device },
    specs,
    ft,
    async (spec, raw, out, pool) => {
      if (whole.has(spec.name)) {
        out.set(raw[0]);
        return;
      }
      const name = sourceOf(spec.name);
      if (spec.name === sparseValueName(name)) {
        const kept = pool.f32('kept', spec.shape[0]);
        out.set(new Uint8Array(kept.buffer, kept.byteOffset, out.byteLength));
        return;
      }
      const t = floatSpec.get(name) as TensorSpec;
      const n = elementsOf(t.shape);
      const k = spec.shape[0];
      const loaded = { ft: raw[0], base: raw[1] };
      const d = await deltaOf(t, loaded, pool, device);
      let at: Float64Array;
      if (mode === 'exact') {
        at = new Float64Array(k);
        const differ = bitCompare(loaded.ft, loaded.base, dtypeSize(t.dtype));
        let i = 0;
        for (let j = 0; j < n && i < k; j++) if (differ(j)) at[i++] = j;
      } else {
        const r = await topK(name, d, k, device);
        at = r.at;
        total += r.total;
        dropped += r.dropped;
        (reports.get(name) as SparseTensorReport).relError = r.total > 0 ? Math.sqrt(r.dropped / r.total) : 0;
      }
      const kept = pool.f32('kept', k);
      for (let i = 0; i < k; i++) kept[i] = d[at[i]];
      writeGaps(at, n, out);
    },
    async (spec, pool, parity) => {
      const name = sourceOf(spec.name);
      if (spec.name === sparseValueName(name)) return [];
      const bytes = ft.tensor(name).byteLength;
      const raw = [await ft.readTensor(name, pool.bytes(`f${parity}`, bytes))];
      if (!whole.has(spec.name)) raw.push(await base.readTensor(name, pool.bytes(`b${parity}`, bytes)));
      return raw;
    },
  );
  const tensors = [...reports.values()];
  return {
    header: plan.header,
    mode,
    density,
    tensors,
    replaced: ft.tensors.filter((t) => whole.has(t.name)).map((t) => t.name),
    kept: tensors.reduce((a, t) => a + t.kept, 0),
    elements: tensors.reduce((a, t) => a + t.elements, 0),
    relError: total > 0 ? Math.sqrt(dropped / total) : 0,
    objectBytes: specs.reduce((a, s) => a + elementsOf(s.shape) * dtypeSize(s.dtype), 0),
    denseF32Bytes: plan.floats.reduce((a, t) => a + 4 * elementsOf(t.shape), 0),
  };
}
