/**
 * The reference backend: every kernel as a plain TypeScript loop, with
 * Math.fround wherever the WebAssembly kernel rounds to f32, so that the
 * results are bit-identical (the parity tests hold every backend to that).
 * It is the definition a reader checks the math against, and the device for
 * small calls and builds without the WebAssembly module.
 */
import { f16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from '../dtypes.js';
import { WgitError } from '../errors.js';
import { kthLargestAbs as selectKthLargestAbs } from './abs-selector.js';
import {
  type Backend,
  BUFFER_SIZE,
  type BufferDType,
  type DeviceBuffer,
  type DiffSums,
  type HostView,
  type KernelDType,
  TRANSFER_BLOCK,
  type TransferSums,
} from './device.js';
import { dareCut, dareHash, dareScale } from './rng.js';

export type { KernelDType } from './device.js';

const fr = Math.fround;

function u32(a: Float32Array): Uint32Array {
  return new Uint32Array(a.buffer, a.byteOffset, a.length);
}

export function toF32(src: Uint8Array, dtype: KernelDType, dst: Float32Array): void {
  const dv = new DataView(src.buffer, src.byteOffset, src.byteLength);
  const bits = u32(dst);
  for (let i = 0; i < dst.length; i++) {
    if (dtype === 'F32') bits[i] = dv.getUint32(i * 4, true);
    else {
      const h = dv.getUint16(i * 2, true);
      // f16 NaNs go through bits so their payload survives.
      if (dtype === 'BF16') bits[i] = (h << 16) >>> 0;
      else if ((h & 0x7c00) === 0x7c00) bits[i] = (((h & 0x8000) << 16) | 0x7f800000 | ((h & 0x3ff) << 13)) >>> 0;
      else dst[i] = f16BitsToF32(h);
    }
  }
}

export function fromF32(src: Float32Array, dtype: KernelDType, dst: Uint8Array): void {
  const dv = new DataView(dst.buffer, dst.byteOffset, dst.byteLength);
  const bits = u32(src);
  const view = new Float32Array(1);
  const viewBits = new Uint32Array(view.buffer);
  for (let i = 0; i < src.length; i++) {
    if (dtype === 'F32') {
      dv.setUint32(i * 4, bits[i], true);
      continue;
    }
    viewBits[0] = bits[i];
    const nanPattern = (bits[i] & 0x7fffffff) > 0x7f800000;
    let h: number;
    if (dtype === 'BF16') h = nanPattern ? ((bits[i] >>> 16) | 0x40) & 0xffff : f32ToBf16Bits(view[0]);
    else h = nanPattern ? ((bits[i] >>> 16) & 0x8000) | 0x7e00 | ((bits[i] >>> 13) & 0x3ff) : f32ToF16Bits(view[0]);
    dv.setUint16(i * 2, h, true);
  }
}

/** out = Σ wᵢ·xᵢ, summed left to right, every product and sum rounded to f32. */
export function weightedSum(inputs: Float32Array[], weights: number[], out: Float32Array): void {
  const w = weights.map(fr);
  for (let j = 0; j < out.length; j++) {
    let acc = fr(inputs[0][j] * w[0]);
    for (let i = 1; i < inputs.length; i++) acc = fr(acc + fr(inputs[i][j] * w[i]));
    out[j] = acc;
  }
}

export function weightedSumTyped(
  inputs: Uint8Array[],
  dtype: KernelDType,
  weights: number[],
  outDtype: KernelDType,
  out: Uint8Array,
): void {
  const n = out.byteLength / (outDtype === 'F32' ? 4 : 2);
  const decoded = inputs.map((b) => {
    const f = new Float32Array(n);
    toF32(b, dtype, f);
    return f;
  });
  const acc = new Float32Array(n);
  weightedSum(decoded, weights, acc);
  fromF32(acc, outDtype, out);
}

/**
 * Four f64 sums over elements 0…n−1 in the order every backend repeats (the
 * TransferSums order, device.ts): per block of TRANSFER_BLOCK elements, local
 * element i adds into lane i mod 4 over the block's multiple-of-4 prefix, the
 * lanes combine as (l0 + l1) + (l2 + l3), the block's rest adds in order;
 * blocks add in order from 0. `terms(j, t)` writes element j's four terms
 * into t[0..3] (and may do its elementwise work beside).
 */
export function blockOrderSums(n: number, terms: (j: number, t: Float64Array) => void): Float64Array {
  const lanes = new Float64Array(16); // lanes[4q + l]: quantity q, lane l
  const t = new Float64Array(4);
  const block = new Float64Array(4);
  const total = new Float64Array(4);
  for (let b0 = 0; b0 < n; b0 += TRANSFER_BLOCK) {
    const end = Math.min(n, b0 + TRANSFER_BLOCK);
    const body = end - ((end - b0) % 4);
    lanes.fill(0);
    let j = b0;
    for (; j < body; j++) {
      terms(j, t);
      const l = (j - b0) & 3;
      for (let q = 0; q < 4; q++) lanes[4 * q + l] += t[q];
    }
    for (let q = 0; q < 4; q++) block[q] = lanes[4 * q] + lanes[4 * q + 1] + (lanes[4 * q + 2] + lanes[4 * q + 3]);
    for (; j < end; j++) {
      terms(j, t);
      for (let q = 0; q < 4; q++) block[q] += t[q];
    }
    for (let q = 0; q < 4; q++) total[q] += block[q];
  }
  return total;
}

/**
 * Fine-tuning transfer over f32 values: Δⱼ = f32(ftⱼ − oldⱼ),
 * outⱼ = f32(newⱼ + f32(s·Δⱼ)), and the closeness sums in blockOrderSums'
 * order. out may be one of the inputs (each element is read before it is
 * written).
 */
export function transferF32(
  xn: Float32Array,
  xf: Float32Array,
  xo: Float32Array,
  s: number,
  out: Float32Array,
): TransferSums {
  const sf = fr(s);
  const [dot, shift2, delta2, old2] = blockOrderSums(out.length, (j, t) => {
    const o = xo[j];
    const nw = xn[j];
    const delta = fr(xf[j] - o);
    const shift = nw - o;
    t[0] = shift * delta;
    t[1] = shift * shift;
    t[2] = delta * delta;
    t[3] = o * o;
    out[j] = fr(nw + fr(sf * delta));
  });
  return { dot, shift2, delta2, old2 };
}

/** transferF32 reading `dtype` bytes ([new, ft, old]) and writing `outDtype` (RNE). */
export function transferTyped(
  inputs: Uint8Array[],
  dtype: KernelDType,
  s: number,
  outDtype: KernelDType,
  out: Uint8Array,
): TransferSums {
  const n = out.byteLength / (outDtype === 'F32' ? 4 : 2);
  const [xn, xf, xo] = inputs.map((b) => {
    const f = new Float32Array(n);
    toF32(b, dtype, f);
    return f;
  });
  const acc = new Float32Array(n);
  const sums = transferF32(xn, xf, xo, s, acc);
  fromF32(acc, outDtype, out);
  return sums;
}

/**
 * The diff figures of a against b (DiffSums, device.ts), the definition: the
 * bytes decode as `toF32` does, δⱼ = f32(bⱼ − aⱼ); Σ δ², Σ a², Σ b², Σ a·b in
 * f64 in blockOrderSums' order; the largest |δⱼ| that is not NaN (0 when
 * none is); and the count of elements whose stored bits are equal.
 */
export function diffStats(a: Uint8Array, b: Uint8Array, dtype: KernelDType): DiffSums {
  const size = dtype === 'F32' ? 4 : 2;
  const n = a.byteLength / size;
  const xa = new Float32Array(n);
  const xb = new Float32Array(n);
  toF32(a, dtype, xa);
  toF32(b, dtype, xb);
  let maxAbsDelta = 0;
  const [sqDelta, sqA, sqB, dot] = blockOrderSums(n, (j, t) => {
    const x = xa[j];
    const y = xb[j];
    const d = fr(y - x);
    t[0] = d * d;
    t[1] = x * x;
    t[2] = y * y;
    t[3] = x * y;
    // a NaN compares false: never the maximum
    if (Math.abs(d) > maxAbsDelta) maxAbsDelta = Math.abs(d);
  });
  const da = new DataView(a.buffer, a.byteOffset, a.byteLength);
  const db = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let identical = 0;
  for (let j = 0; j < n; j++) {
    const same = size === 4 ? da.getUint32(4 * j) === db.getUint32(4 * j) : da.getUint16(2 * j) === db.getUint16(2 * j);
    if (same) identical++;
  }
  return { sqDelta, sqA, sqB, dot, maxAbsDelta, identical };
}

/** out = op(a)·op(b) (KernelSet.matmul): f64 sums over p = 0..k−1 in order, rounded once to f32. */
export function matmul(
  a: Float32Array,
  b: Float32Array,
  out: Float32Array,
  m: number,
  k: number,
  n: number,
  transA: boolean,
  transB: boolean,
): void {
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) s += a[transA ? p * m + i : i * k + p] * b[transB ? j * k + p : p * n + j];
      out[i * n + j] = s;
    }
}

export function sub(a: Float32Array, b: Float32Array, out: Float32Array): void {
  for (let j = 0; j < out.length; j++) out[j] = a[j] - b[j];
}

export function axpy(a: Float32Array, s: number, b: Float32Array, out: Float32Array): void {
  const sf = fr(s);
  for (let j = 0; j < out.length; j++) out[j] = fr(a[j] + fr(sf * b[j]));
}

/**
 * The kernels' summation order for one range: element j adds into lane
 * j mod 4 over the whole multiple-of-4 prefix, lanes combine as
 * (l0 + l1) + (l2 + l3), then the tail adds in order. All in f64.
 */
function laneSum(n: number, term: (j: number) => number): number {
  const lanes = [0, 0, 0, 0];
  const body = n - (n % 4);
  for (let j = 0; j < body; j++) lanes[j % 4] += term(j);
  let r = lanes[0] + lanes[1] + (lanes[2] + lanes[3]);
  for (let j = body; j < n; j++) r += term(j);
  return r;
}

export function dot(a: Float32Array, b: Float32Array): number {
  return laneSum(a.length, (j) => a[j] * b[j]);
}

export function sumSq(a: Float32Array): number {
  return laneSum(a.length, (j) => a[j] * a[j]);
}

export function sumAbs(a: Float32Array): number {
  return laneSum(a.length, (j) => Math.abs(a[j]));
}

/**
 * Adds to `hist` the counts of bits 30..15 of |x| (pass 0) or bits 14..0
 * within bin `prefixHi` (pass 1). NaN is never ranked, so never counted.
 */
export function absHistogram(x: Float32Array, pass: 0 | 1, prefixHi: number, hist: Uint32Array): void {
  const bits = u32(x);
  for (let j = 0; j < x.length; j++) {
    const a = bits[j] & 0x7fffffff;
    if (a > 0x7f800000) continue;
    if (pass === 0) hist[a >>> 15]++;
    else if (a >>> 15 === prefixHi) hist[a & 0x7fff]++;
  }
}

/** k-th largest |x| (k = 1 is the maximum) over all arrays: the two-pass radix selector, NaN never ranked. */
export function kthLargestAbs(arrays: Float32Array[], k: number): number {
  return selectKthLargestAbs(arrays, k);
}

/**
 * TIES: τ̂ᵢ = |τᵢ| ≥ thrᵢ and τᵢ ≠ 0 ? τᵢ : 0, except that where tieQuotas[i]
 * is ≥ 0 only the first tieQuotas[i] entries with |τᵢ| = thrᵢ (by index in
 * this call) are kept (so exactly k survive; -1 or none given: every tie);
 * s = Σ f32(wᵢτ̂ᵢ); γ = s ≥ 0 ? + : −; an input agrees where f32(wᵢτ̂ᵢ) is
 * non-zero with sign γ (the sign of its weighted entry, so a negative weight
 * flips its vote); out = Σ_{agree} wᵢτ̂ᵢ / Σ_{agree} wᵢ (a zero divisor
 * counts as 1), or 0 when none agrees.
 */
export function ties(
  taus: Float32Array[],
  weights: number[],
  thresholds: number[],
  out: Float32Array,
  tieQuotas?: number[],
): void {
  const k = taus.length;
  const w = weights.map(fr);
  const thr = thresholds.map(fr);
  const left = taus.map((_t, i) => tieQuotas?.[i] ?? -1);
  const wt = new Float32Array(k);
  for (let j = 0; j < out.length; j++) {
    let s = 0;
    for (let i = 0; i < k; i++) {
      const t = taus[i][j];
      const a = Math.abs(t);
      let keep = a >= thr[i] && t !== 0;
      if (keep && a === thr[i] && left[i] >= 0) {
        if (left[i] > 0) left[i]--;
        else keep = false;
      }
      wt[i] = keep ? fr(w[i] * t) : 0;
      s = fr(s + wt[i]);
    }
    let num = 0;
    let den = 0;
    let any = false;
    for (let i = 0; i < k; i++) {
      if (s >= 0 ? wt[i] > 0 : wt[i] < 0) {
        num = fr(num + wt[i]);
        den = fr(den + w[i]);
        any = true;
      }
    }
    out[j] = !any ? 0 : den !== 0 ? fr(num / den) : num;
  }
}

/** DARE drop with the counter-based RNG of rng.ts; x[0] is element `offset` of its tensor. */
export function dareDrop(
  x: Float32Array,
  p: number,
  seed: number,
  stream: number,
  offset: number,
  out: Float32Array,
): void {
  if (p === 0) {
    out.set(x);
    return;
  }
  const cut = dareCut(p);
  const scale = dareScale(p);
  for (let j = 0; j < x.length; j++) {
    out[j] = dareHash(seed, stream, offset + j) >>> 8 >= cut ? fr(x[j] * scale) : 0;
  }
}

const owned = new WeakSet<DeviceBuffer>();

function copyBytes(dst: ArrayBufferView, src: ArrayBufferView): void {
  new Uint8Array(dst.buffer, dst.byteOffset, dst.byteLength).set(
    new Uint8Array(src.buffer, src.byteOffset, src.byteLength),
  );
}

/** The plain TypeScript backend: ordinary typed arrays as buffers, every kernel on the calling thread. */
export const referenceBackend: Backend = {
  name: 'reference',
  kind: 'cpu',
  threads: 1,
  alloc<D extends BufferDType>(dtype: D, length: number): DeviceBuffer<D> {
    const view = (dtype === 'F32' ? new Float32Array(length) : new Uint8Array(length)) as HostView<D>;
    const buffer: DeviceBuffer<D> = { dtype, length, view };
    owned.add(buffer);
    return buffer;
  },
  free(buffer: DeviceBuffer): void {
    if (!owned.delete(buffer)) {
      throw new WgitError('E_KERNEL_BAD_FREE', 'free() takes a buffer allocated by this device and not yet freed');
    }
  },
  async upload(buffer, src, offset) {
    const view = buffer.view as ArrayBufferView;
    const size = BUFFER_SIZE[buffer.dtype];
    copyBytes(new Uint8Array(view.buffer, view.byteOffset + offset * size, src.byteLength), src);
  },
  async download(buffer, dst, offset) {
    const view = buffer.view as ArrayBufferView;
    const size = BUFFER_SIZE[buffer.dtype];
    copyBytes(dst, new Uint8Array(view.buffer, view.byteOffset + offset * size, dst.byteLength));
  },
  async close() {},
  async toF32(src, dtype, dst) {
    toF32(src, dtype, dst);
  },
  async fromF32(src, dtype, dst) {
    fromF32(src, dtype, dst);
  },
  async weightedSum(inputs, weights, out) {
    weightedSum(inputs, weights, out);
  },
  async weightedSumTyped(inputs, dtype, weights, outDtype, out) {
    weightedSumTyped(inputs, dtype, weights, outDtype, out);
  },
  async transferTyped(inputs, dtype, s, outDtype, out) {
    return transferTyped(inputs, dtype, s, outDtype, out);
  },
  async diffStats(a, b, dtype) {
    return diffStats(a, b, dtype);
  },
  async sub(a, b, out) {
    sub(a, b, out);
  },
  async axpy(a, s, b, out) {
    axpy(a, s, b, out);
  },
  async dot(a, b) {
    return dot(a, b);
  },
  async sumSq(a) {
    return sumSq(a);
  },
  async sumAbs(a) {
    return sumAbs(a);
  },
  async absHistogram(x, pass, prefixHi, hist) {
    absHistogram(x, pass, prefixHi, hist);
  },
  async kthLargestAbs(arrays, k) {
    return kthLargestAbs(arrays, k);
  },
  async ties(taus, weights, thresholds, out, tieQuotas) {
    ties(taus, weights, thresholds, out, tieQuotas);
  },
  async matmul(a, b, out, m, k, n, transA, transB) {
    matmul(a, b, out, m, k, n, transA ?? false, transB ?? false);
  },
  async dareDrop(x, p, seed, stream, offset, out) {
    dareDrop(x, p, seed, stream, offset, out);
  },
};
