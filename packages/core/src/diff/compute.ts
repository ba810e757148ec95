/**
 * `wgit diff`: how far model B is from model A, tensor by tensor, per layer,
 * per kind of weight and in total. Both models stream tensor by tensor
 * (the next pair is read while this one is measured). For F32, BF16 and F16
 * tensors the figures come from one pass of the device's `diffStats` kernel
 * over the raw bytes (Σ Δ², Σ A², Σ B², Σ A·B in f64 in a fixed block order,
 * the largest |Δ|, the bit-identical elements); other float dtypes are
 * converted to f32 and measured with the separate kernels, integer tensors
 * only count their identical elements. Tensors whose ids say they are equal
 * (two store revisions sharing a record) are reported without reading them.
 */
import { type Device, getDevice } from '../device/index.js';
import { type DType, dtypeSize, isFloatDType } from '../dtypes.js';
import { BufferPool, convertIn, isKernelDType, prefetched } from '../pipeline/index.js';
import type { ModelSource, ModelTensor } from '../safetensors/index.js';
import { layerOf, TENSOR_KINDS, type TensorKind, tensorKind } from './layers.js';
import { energyRank } from './rank.js';

export type TensorDiffStatus = 'changed' | 'identical' | 'mismatch' | 'only-a' | 'only-b';

export interface TensorDiff {
  name: string;
  status: TensorDiffStatus;
  layer: number | null;
  kind: TensorKind;
  dtype: { a: DType | null; b: DType | null };
  shape: { a: number[] | null; b: number[] | null };
  elements: number;
  /** Bytes read to measure it (0 when the records said it is identical, or it was not comparable). */
  bytesRead: number;
  /** Fraction of elements whose bytes are identical in A and B. */
  identicalFraction: number | null;
  /** ‖B − A‖₂, ‖A‖₂, ‖B‖₂ (f64 sums over f32 values); null for non-float or unread tensors. */
  normDelta: number | null;
  normA: number | null;
  normB: number | null;
  /** ‖B − A‖ / ‖A‖ (0 for equal tensors; null when A is all zeros and B is not). */
  relChange: number | null;
  /** cos(A, B); 1 for two zero tensors, 0 when only one is zero. */
  cosine: number | null;
  /** max |B − A| over elements that are not NaN. */
  maxAbsDelta: number | null;
  /** With DiffOptions.rankEnergy, for changed 2-D float tensors: the rank holding that fraction of ‖Δ‖² (rank.ts). */
  energyRank?: number | null;
}

/** Totals over a group of tensors (a layer, a kind, the model): only the tensors that were measured count in the norms. */
export interface DiffTotals {
  tensors: number;
  changed: number;
  identical: number;
  /** ‖Δ‖ and ‖A‖ over the measured (changed) tensors of the group. */
  normDelta: number;
  normA: number;
  /** normDelta / normA, or 0 when nothing changed; null when A is zero where B is not. */
  relChange: number | null;
  elements: number;
  identicalElements: number;
}

export interface LayerDiff extends DiffTotals {
  /** Block index, or null for tensors outside the blocks. */
  layer: number | null;
  /** Per kind of weight in this layer. */
  kinds: Partial<Record<TensorKind, DiffTotals>>;
}

export interface SideFileDiff {
  added: string[];
  removed: string[];
  changed: string[];
  unchanged: number;
}

export interface DiffReport {
  tensors: TensorDiff[];
  /** Blocks in order, then the tensors outside them (layer null) last. */
  layers: LayerDiff[];
  kinds: Partial<Record<TensorKind, DiffTotals>>;
  totals: DiffTotals & { mismatched: number; onlyA: number; onlyB: number; cosine: number | null };
  sideFiles: SideFileDiff;
  bytesRead: number;
}

export interface DiffOptions {
  device?: Device;
  /**
   * false: measure F32/BF16/F16 tensors with the separate kernels (convert
   * both, Σ squares, dot, difference, Σ Δ², largest |Δ|) instead of the one
   * fused `diffStats` pass; the same figures up to the order of the f64 sums.
   * For comparisons (the diff benchmark); default true.
   */
  fused?: boolean;
  onProgress?: (e: { phase: 'diff'; done: number; total: number; tensor: string }) => void;
  /** `--rank`: for each changed 2-D float tensor, the rank keeping this fraction of Δ's energy (e.g. 0.9). */
  rankEnergy?: number;
}

function elementCount(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function sameShape(a: number[], b: number[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** Elements whose bytes are equal, compared a whole element at a time. */
export function countIdenticalElements(a: Uint8Array, b: Uint8Array, elementSize: number): number {
  const n = a.byteLength / elementSize;
  const aligned = a.byteOffset % elementSize === 0 && b.byteOffset % elementSize === 0;
  let same = 0;
  if (aligned && elementSize === 2) {
    const x = new Uint16Array(a.buffer, a.byteOffset, n);
    const y = new Uint16Array(b.buffer, b.byteOffset, n);
    for (let i = 0; i < n; i++) if (x[i] === y[i]) same++;
  } else if (aligned && elementSize === 4) {
    const x = new Uint32Array(a.buffer, a.byteOffset, n);
    const y = new Uint32Array(b.buffer, b.byteOffset, n);
    for (let i = 0; i < n; i++) if (x[i] === y[i]) same++;
  } else {
    outer: for (let i = 0; i < n; i++) {
      const o = i * elementSize;
      for (let k = 0; k < elementSize; k++) if (a[o + k] !== b[o + k]) continue outer;
      same++;
    }
  }
  return same;
}

const ratio = (num: number, den: number): number | null => (num === 0 ? 0 : den === 0 ? null : num / den);

function cosineOf(dot: number, sa: number, sb: number): number {
  if (sa === 0 && sb === 0) return 1;
  if (sa === 0 || sb === 0) return 0;
  return dot / Math.sqrt(sa * sb);
}

function emptyTotals(): DiffTotals {
  return {
    tensors: 0,
    changed: 0,
    identical: 0,
    normDelta: 0,
    normA: 0,
    relChange: 0,
    elements: 0,
    identicalElements: 0,
  };
}

/** Sums of squares while adding up, square roots at the end. */
class Accumulator {
  readonly t = emptyTotals();
  private sqDelta = 0;
  private sqA = 0;

  add(d: TensorDiff): void {
    const t = this.t;
    t.tensors++;
    if (d.status === 'changed') t.changed++;
    if (d.status === 'identical') t.identical++;
    t.elements += d.elements;
    if (d.identicalFraction !== null) t.identicalElements += Math.round(d.identicalFraction * d.elements);
    if (d.normDelta !== null && d.normA !== null) {
      this.sqDelta += d.normDelta * d.normDelta;
      this.sqA += d.normA * d.normA;
    }
  }

  done(): DiffTotals {
    const normDelta = Math.sqrt(this.sqDelta);
    const normA = Math.sqrt(this.sqA);
    return { ...this.t, normDelta, normA, relChange: ratio(normDelta, normA) };
  }
}

function describe(name: string, a: ModelTensor | null, b: ModelTensor | null, status: TensorDiffStatus): TensorDiff {
  const shape = (a ?? b)!.shape;
  return {
    name,
    status,
    layer: layerOf(name),
    kind: tensorKind(name),
    dtype: { a: a?.dtype ?? null, b: b?.dtype ?? null },
    shape: { a: a?.shape ?? null, b: b?.shape ?? null },
    elements: status === 'mismatch' ? 0 : elementCount(shape),
    bytesRead: 0,
    identicalFraction: status === 'identical' ? 1 : null,
    normDelta: status === 'identical' ? 0 : null,
    normA: null,
    normB: null,
    relChange: status === 'identical' ? 0 : null,
    cosine: status === 'identical' ? 1 : null,
    maxAbsDelta: status === 'identical' ? 0 : null,
  };
}

async function diffSideFiles(a: ModelSource, b: ModelSource): Promise<SideFileDiff> {
  const inB = new Set(b.sideFiles);
  const inA = new Set(a.sideFiles);
  const out: SideFileDiff = {
    added: b.sideFiles.filter((f) => !inA.has(f)),
    removed: a.sideFiles.filter((f) => !inB.has(f)),
    changed: [],
    unchanged: 0,
  };
  for (const f of a.sideFiles) {
    if (!inB.has(f)) continue;
    const ia = (await a.sideFileId?.(f)) ?? null;
    const ib = (await b.sideFileId?.(f)) ?? null;
    let same: boolean;
    if (ia !== null && ib !== null) same = ia === ib;
    else same = Buffer.from(await a.readSideFile(f)).equals(await b.readSideFile(f));
    if (same) out.unchanged++;
    else out.changed.push(f);
  }
  return out;
}

/** Compares model B against model A (the reference: relative changes are over ‖A‖). */
export async function diffModels(a: ModelSource, b: ModelSource, opts: DiffOptions = {}): Promise<DiffReport> {
  const device = opts.device ?? (await getDevice({ device: 'auto' }));
  const fused = opts.fused ?? true;
  const pool = new BufferPool(device);
  const bNames = new Set(b.tensors.map((t) => t.name));
  const aNames = new Set(a.tensors.map((t) => t.name));
  const byName = new Map<string, TensorDiff>();
  const toRead: string[] = [];
  for (const ta of a.tensors) {
    if (!bNames.has(ta.name)) {
      byName.set(ta.name, describe(ta.name, ta, null, 'only-a'));
      continue;
    }
    const tb = b.tensor(ta.name);
    if (ta.dtype !== tb.dtype || !sameShape(ta.shape, tb.shape)) {
      byName.set(ta.name, describe(ta.name, ta, tb, 'mismatch'));
      continue;
    }
    const ia = a.contentId?.(ta.name) ?? null;
    if (ia !== null && ia === (b.contentId?.(ta.name) ?? null)) {
      byName.set(ta.name, describe(ta.name, ta, tb, 'identical'));
      continue;
    }
    toRead.push(ta.name);
  }
  for (const tb of b.tensors) if (!aNames.has(tb.name)) byName.set(tb.name, describe(tb.name, null, tb, 'only-b'));
  // Read order (the report keeps A's): the smallest tensor first, since its
  // read overlaps nothing, then from the largest down, so each read overlaps
  // the measurement of a tensor of like size and the last measurement is short.
  const size = (name: string) => a.tensor(name).byteLength;
  toRead.sort((x, y) => size(y) - size(x));
  if (toRead.length > 1) toRead.unshift(toRead.pop()!);

  let bytesRead = 0;
  let dotTotal = 0;
  let sqATotal = 0;
  let sqBTotal = 0;
  try {
    const reads = prefetched(toRead.length, async (t) => {
      const name = toRead[t];
      const n = a.tensor(name).byteLength;
      const parity = t & 1;
      const [ra, rb] = await Promise.all([
        a.readTensor(name, pool.bytes(`a${parity}`, n)),
        b.readTensor(name, pool.bytes(`b${parity}`, n)),
      ]);
      return { name, ra, rb };
    });
    let done = 0;
    for await (const { name, ra, rb } of reads) {
      const ta = a.tensor(name);
      const d = describe(name, ta, b.tensor(name), 'changed');
      d.bytesRead = ra.byteLength + rb.byteLength;
      bytesRead += d.bytesRead;
      if (fused && isKernelDType(ta.dtype) && d.elements > 0) {
        // one pass over both tensors' bytes
        const s = await device.diffStats(ra, rb, ta.dtype);
        d.identicalFraction = s.identical / d.elements;
        if (s.identical === d.elements) Object.assign(d, { status: 'identical', normDelta: 0, relChange: 0 });
        d.normA = Math.sqrt(s.sqA);
        d.normB = Math.sqrt(s.sqB);
        d.cosine = cosineOf(s.dot, s.sqA, s.sqB);
        sqATotal += s.sqA;
        sqBTotal += s.sqB;
        dotTotal += s.dot;
        if (d.status === 'changed') {
          d.normDelta = Math.sqrt(s.sqDelta);
          d.relChange = ratio(d.normDelta, d.normA);
        }
        // 0 for identical tensors too: their bits are equal, δ is 0 or NaN
        d.maxAbsDelta = s.maxAbsDelta;
      } else {
        const same = countIdenticalElements(ra, rb, dtypeSize(ta.dtype));
        d.identicalFraction = d.elements === 0 ? 1 : same / d.elements;
        if (same === d.elements) {
          Object.assign(d, { status: 'identical', normDelta: 0, relChange: 0, cosine: 1, maxAbsDelta: 0 });
        }
        if (isFloatDType(ta.dtype) && d.elements > 0) {
          const va = await convertIn(pool, 'fa', ra, ta.dtype, device);
          const vb = await convertIn(pool, 'fb', rb, ta.dtype, device);
          const [sqA, sqB, dot] = [await device.sumSq(va), await device.sumSq(vb), await device.dot(va, vb)];
          d.normA = Math.sqrt(sqA);
          d.normB = Math.sqrt(sqB);
          d.cosine = cosineOf(dot, sqA, sqB);
          sqATotal += sqA;
          sqBTotal += sqB;
          dotTotal += dot;
          if (d.status === 'changed') {
            const delta = pool.f32('delta', va.length);
            await device.sub(vb, va, delta);
            d.normDelta = Math.sqrt(await device.sumSq(delta));
            d.maxAbsDelta = await device.kthLargestAbs([delta], 1);
            d.relChange = ratio(d.normDelta, d.normA);
          }
        }
      }
      if (opts.rankEnergy !== undefined && d.status === 'changed' && ta.shape.length === 2 && isKernelDType(ta.dtype)) {
        const va = await convertIn(pool, 'fa', ra, ta.dtype, device);
        const vb = await convertIn(pool, 'fb', rb, ta.dtype, device);
        const delta = pool.f32('delta', va.length);
        await device.sub(vb, va, delta);
        const [m, n] = ta.shape;
        d.energyRank = await energyRank(device, delta, m, n, (d.normDelta ?? 0) ** 2, opts.rankEnergy, done);
      }
      byName.set(name, d);
      opts.onProgress?.({ phase: 'diff', done: ++done, total: toRead.length, tensor: name });
    }
  } finally {
    pool.release();
  }

  // Report in A's order, then what only B has.
  const tensors = [
    ...a.tensors.map((t) => byName.get(t.name)!),
    ...b.tensors.filter((t) => !aNames.has(t.name)).map((t) => byName.get(t.name)!),
  ];
  const total = new Accumulator();
  const kindAcc = new Map<TensorKind, Accumulator>();
  const layerAcc = new Map<number | null, { all: Accumulator; kinds: Map<TensorKind, Accumulator> }>();
  for (const d of tensors) {
    if (d.status === 'only-a' || d.status === 'only-b' || d.status === 'mismatch') continue;
    total.add(d);
    if (!kindAcc.has(d.kind)) kindAcc.set(d.kind, new Accumulator());
    kindAcc.get(d.kind)!.add(d);
    let l = layerAcc.get(d.layer);
    if (!l) {
      l = { all: new Accumulator(), kinds: new Map() };
      layerAcc.set(d.layer, l);
    }
    l.all.add(d);
    if (!l.kinds.has(d.kind)) l.kinds.set(d.kind, new Accumulator());
    l.kinds.get(d.kind)!.add(d);
  }
  const kindsOf = (m: Map<TensorKind, Accumulator>) => {
    const out: Partial<Record<TensorKind, DiffTotals>> = {};
    for (const k of TENSOR_KINDS) if (m.has(k)) out[k] = m.get(k)!.done();
    return out;
  };
  const layerKeys = [...layerAcc.keys()].sort((x, y) => (x === null ? 1 : y === null ? -1 : x - y));
  const count = (s: TensorDiffStatus) => tensors.filter((d) => d.status === s).length;
  return {
    tensors,
    layers: layerKeys.map((k) => ({
      layer: k,
      ...layerAcc.get(k)!.all.done(),
      kinds: kindsOf(layerAcc.get(k)!.kinds),
    })),
    kinds: kindsOf(kindAcc),
    totals: {
      ...total.done(),
      mismatched: count('mismatch'),
      onlyA: count('only-a'),
      onlyB: count('only-b'),
      cosine: sqATotal + sqBTotal > 0 ? cosineOf(dotTotal, sqATotal, sqBTotal) : null,
    },
    sideFiles: await diffSideFiles(a, b),
    bytesRead,
  };
}
