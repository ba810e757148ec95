/**
 * Argument checks for every kernel, once, above any backend: types, lengths,
 * dtypes, weights, ranks and aliasing raise stable E_KERNEL_* codes before a
 * backend sees the call, so backends only compute and all of them refuse the
 * same things the same way.
 */
import { WgitError } from '../errors.js';
import {
  type Backend,
  BUFFER_SIZE,
  type BufferDType,
  type Device,
  type DeviceBuffer,
  type DiffSums,
  HIST_BINS,
  type HostView,
  KERNEL_DTYPE_SIZE,
  type KernelDType,
  MAX_INPUTS,
  type TransferSums,
} from './device.js';

function argError(message: string, data: Record<string, unknown> = {}): WgitError {
  return new WgitError('E_KERNEL_ARG', message, data);
}

function checkKind(d: string, what: string): KernelDType {
  if (d !== 'F32' && d !== 'BF16' && d !== 'F16') {
    throw new WgitError('E_KERNEL_DTYPE', `${what}: kernels take F32, BF16 or F16, not ${String(d)}`, { dtype: d });
  }
  return d;
}

function checkF32(x: unknown, what: string): Float32Array {
  if (!(x instanceof Float32Array)) throw argError(`${what} must be a Float32Array`);
  return x;
}

function checkBytes(x: unknown, what: string): Uint8Array {
  if (!(x instanceof Uint8Array)) throw argError(`${what} must be a Uint8Array`);
  return x;
}

function checkLength(actual: number, expected: number, what: string): void {
  if (actual !== expected) {
    throw new WgitError('E_KERNEL_LENGTH', `${what}: ${actual} elements where ${expected} were expected`, {
      expected,
      actual,
    });
  }
}

function checkWeights(weights: unknown, count: number, what: string): number[] {
  if (!Array.isArray(weights) || weights.length !== count) {
    throw argError(`${what}: need ${count} numbers, one per input`);
  }
  for (const w of weights) {
    if (typeof w !== 'number' || !Number.isFinite(w)) throw argError(`${what}: ${String(w)} is not a finite number`);
  }
  return weights;
}

function checkInputCount(n: unknown[], what: string): void {
  if (!Array.isArray(n) || n.length < 1 || n.length > MAX_INPUTS) {
    throw argError(`${what}: 1 to ${MAX_INPUTS} inputs, got ${Array.isArray(n) ? n.length : 'none'}`);
  }
}

function checkBufferDType(d: unknown): BufferDType {
  if (d !== 'F32' && d !== 'U8') throw argError(`buffers hold F32 or U8, not ${String(d)}`, { dtype: d });
  return d;
}

class CheckedDevice implements Device {
  constructor(private readonly inner: Backend) {}

  get name(): string {
    return this.inner.name;
  }
  get kind(): 'cpu' | 'gpu' {
    return this.inner.kind;
  }
  get threads(): number {
    return this.inner.threads;
  }

  /**
   * Refuses an output that overlaps an input other than exactly, or at all
   * where `inPlace` says the kernel cannot run in place: one range's writes
   * would feed another's reads.
   */
  private aliasing(inputs: ArrayBufferView[], out: ArrayBufferView, inPlace: boolean): void {
    inputs.forEach((v, i) => {
      const same = v.buffer === out.buffer || (this.inner.sameMemory?.(v, out) ?? false);
      if (!same || v.byteLength === 0 || out.byteLength === 0) return;
      const a0 = v.byteOffset;
      const b0 = out.byteOffset;
      if (a0 + v.byteLength <= b0 || b0 + out.byteLength <= a0) return;
      const exact = a0 === b0 && v.byteLength === out.byteLength;
      if (!exact || !inPlace) throw new WgitError('E_KERNEL_ALIAS', `output overlaps input ${i}`, { input: i });
    });
  }

  // ------------------------------------------------------------ memory

  alloc<D extends BufferDType>(dtype: D, length: number): DeviceBuffer<D> {
    checkBufferDType(dtype);
    if (!Number.isSafeInteger(length) || length < 0) {
      throw argError(`cannot allocate ${length} ${dtype === 'F32' ? 'floats' : 'bytes'}`, { length });
    }
    return this.inner.alloc(dtype, length);
  }

  free(buffer: DeviceBuffer): void {
    this.inner.free(buffer);
  }

  hostView<D extends BufferDType>(buffer: DeviceBuffer<D>): HostView<D> {
    if (!buffer.view) throw argError(`the ${this.name} device gives no host view of its buffers`);
    return buffer.view;
  }

  private checkRange(buffer: DeviceBuffer, data: ArrayBufferView, offset: number, what: string): void {
    if (!ArrayBuffer.isView(data)) throw argError(`${what} takes a typed array`);
    const size = BUFFER_SIZE[buffer.dtype];
    if (data.byteLength % size !== 0) throw argError(`${what}: ${data.byteLength} bytes are not whole elements`);
    if (!Number.isSafeInteger(offset) || offset < 0 || offset + data.byteLength / size > buffer.length) {
      throw new WgitError('E_KERNEL_LENGTH', `${what}: range past the buffer's ${buffer.length} elements`, {
        offset,
        length: buffer.length,
      });
    }
  }

  async upload(buffer: DeviceBuffer, src: ArrayBufferView, offset = 0): Promise<void> {
    this.checkRange(buffer, src, offset, 'upload');
    return this.inner.upload(buffer, src, offset);
  }

  async download(buffer: DeviceBuffer, dst: ArrayBufferView, offset = 0): Promise<void> {
    this.checkRange(buffer, dst, offset, 'download');
    return this.inner.download(buffer, dst, offset);
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  // ------------------------------------------------------------ conversions

  async toF32(src: Uint8Array, dtype: KernelDType, dst: Float32Array): Promise<void> {
    checkBytes(src, 'toF32 source');
    checkF32(dst, 'toF32 destination');
    const kind = checkKind(dtype, 'toF32');
    const n = dst.length;
    checkLength(src.byteLength, n * KERNEL_DTYPE_SIZE[kind], `toF32 source bytes for ${n} ${kind} values`);
    this.aliasing([src], dst, kind === 'F32');
    return this.inner.toF32(src, kind, dst);
  }

  async fromF32(src: Float32Array, dtype: KernelDType, dst: Uint8Array): Promise<void> {
    checkF32(src, 'fromF32 source');
    checkBytes(dst, 'fromF32 destination');
    const kind = checkKind(dtype, 'fromF32');
    const n = src.length;
    checkLength(dst.byteLength, n * KERNEL_DTYPE_SIZE[kind], `fromF32 destination bytes for ${n} ${kind} values`);
    this.aliasing([src], dst, kind === 'F32');
    return this.inner.fromF32(src, kind, dst);
  }

  // ------------------------------------------------------------ elementwise

  async weightedSum(inputs: Float32Array[], weights: number[], out: Float32Array): Promise<void> {
    checkInputCount(inputs, 'weightedSum');
    checkF32(out, 'weightedSum output');
    for (const [i, x] of inputs.entries()) {
      checkLength(checkF32(x, `weightedSum input ${i}`).length, out.length, `input ${i}`);
    }
    checkWeights(weights, inputs.length, 'weightedSum weights');
    this.aliasing(inputs, out, true);
    return this.inner.weightedSum(inputs, weights, out);
  }

  async weightedSumTyped(
    inputs: Uint8Array[],
    dtype: KernelDType,
    weights: number[],
    outDtype: KernelDType,
    out: Uint8Array,
  ): Promise<void> {
    checkInputCount(inputs, 'weightedSumTyped');
    const inKind = checkKind(dtype, 'weightedSumTyped input');
    const outKind = checkKind(outDtype, 'weightedSumTyped output');
    checkBytes(out, 'weightedSumTyped output');
    if (out.byteLength % KERNEL_DTYPE_SIZE[outKind] !== 0) {
      throw new WgitError('E_KERNEL_LENGTH', `output of ${out.byteLength} bytes is not whole ${outKind} values`);
    }
    const n = out.byteLength / KERNEL_DTYPE_SIZE[outKind];
    for (const [i, x] of inputs.entries()) {
      checkLength(
        checkBytes(x, `weightedSumTyped input ${i}`).byteLength,
        n * KERNEL_DTYPE_SIZE[inKind],
        `input ${i} bytes`,
      );
    }
    checkWeights(weights, inputs.length, 'weightedSumTyped weights');
    // Each group of elements is read from every input before it is written,
    // so the output may be any one input exactly when the layouts match.
    this.aliasing(inputs, out, inKind === outKind);
    return this.inner.weightedSumTyped(inputs, inKind, weights, outKind, out);
  }

  async transferTyped(
    inputs: Uint8Array[],
    dtype: KernelDType,
    s: number,
    outDtype: KernelDType,
    out: Uint8Array,
  ): Promise<TransferSums> {
    if (!Array.isArray(inputs) || inputs.length !== 3) {
      throw argError(
        `transferTyped: 3 inputs (new, fine-tune, old), got ${Array.isArray(inputs) ? inputs.length : 'none'}`,
      );
    }
    const inKind = checkKind(dtype, 'transferTyped input');
    const outKind = checkKind(outDtype, 'transferTyped output');
    checkBytes(out, 'transferTyped output');
    if (out.byteLength % KERNEL_DTYPE_SIZE[outKind] !== 0) {
      throw new WgitError('E_KERNEL_LENGTH', `output of ${out.byteLength} bytes is not whole ${outKind} values`);
    }
    const n = out.byteLength / KERNEL_DTYPE_SIZE[outKind];
    for (const [i, x] of inputs.entries()) {
      checkLength(
        checkBytes(x, `transferTyped input ${i}`).byteLength,
        n * KERNEL_DTYPE_SIZE[inKind],
        `input ${i} bytes`,
      );
    }
    checkWeights([s], 1, 'transferTyped scale');
    // Like weightedSumTyped: every group of elements is read before it is written.
    this.aliasing(inputs, out, inKind === outKind);
    return this.inner.transferTyped(inputs, inKind, s, outKind, out);
  }

  async diffStats(a: Uint8Array, b: Uint8Array, dtype: KernelDType): Promise<DiffSums> {
    checkBytes(a, 'diffStats a');
    checkBytes(b, 'diffStats b');
    const kind = checkKind(dtype, 'diffStats');
    const size = KERNEL_DTYPE_SIZE[kind];
    if (a.byteLength % size !== 0) {
      throw new WgitError('E_KERNEL_LENGTH', `diffStats a: ${a.byteLength} bytes are not whole ${kind} values`, {
        bytes: a.byteLength,
        dtype: kind,
      });
    }
    checkLength(b.byteLength, a.byteLength, 'diffStats b bytes');
    return this.inner.diffStats(a, b, kind);
  }

  async sub(a: Float32Array, b: Float32Array, out: Float32Array): Promise<void> {
    checkF32(out, 'sub output');
    checkLength(checkF32(a, 'sub a').length, out.length, 'sub a');
    checkLength(checkF32(b, 'sub b').length, out.length, 'sub b');
    this.aliasing([a, b], out, true);
    return this.inner.sub(a, b, out);
  }

  async matmul(
    a: Float32Array,
    b: Float32Array,
    out: Float32Array,
    m: number,
    k: number,
    n: number,
    transA = false,
    transB = false,
  ): Promise<void> {
    for (const [v, what] of [
      [m, 'm'],
      [k, 'k'],
      [n, 'n'],
    ] as const)
      if (!Number.isInteger(v) || v < 1) throw argError(`matmul ${what} must be a positive integer, got ${String(v)}`);
    if (typeof transA !== 'boolean' || typeof transB !== 'boolean')
      throw argError('matmul transA/transB must be booleans');
    checkLength(checkF32(a, 'matmul a').length, m * k, 'matmul a');
    checkLength(checkF32(b, 'matmul b').length, k * n, 'matmul b');
    checkLength(checkF32(out, 'matmul output').length, m * n, 'matmul output');
    this.aliasing([a, b], out, false);
    return this.inner.matmul(a, b, out, m, k, n, transA, transB);
  }

  async axpy(a: Float32Array, s: number, b: Float32Array, out: Float32Array): Promise<void> {
    checkF32(out, 'axpy output');
    checkLength(checkF32(a, 'axpy a').length, out.length, 'axpy a');
    checkLength(checkF32(b, 'axpy b').length, out.length, 'axpy b');
    checkWeights([s], 1, 'axpy scale');
    this.aliasing([a, b], out, true);
    return this.inner.axpy(a, s, b, out);
  }

  // ------------------------------------------------------------ reductions

  async dot(a: Float32Array, b: Float32Array): Promise<number> {
    checkLength(checkF32(b, 'dot b').length, checkF32(a, 'dot a').length, 'dot b');
    return this.inner.dot(a, b);
  }

  async sumSq(a: Float32Array): Promise<number> {
    return this.inner.sumSq(checkF32(a, 'sumSq input'));
  }

  async sumAbs(a: Float32Array): Promise<number> {
    return this.inner.sumAbs(checkF32(a, 'sumAbs input'));
  }

  // ------------------------------------------------------------ selection

  async absHistogram(x: Float32Array, pass: 0 | 1, prefixHi: number, hist: Uint32Array): Promise<void> {
    checkF32(x, 'absHistogram input');
    if (pass !== 0 && pass !== 1) throw argError(`histogram pass must be 0 or 1, got ${String(pass)}`);
    if (!Number.isInteger(prefixHi) || prefixHi < 0 || prefixHi >= HIST_BINS) {
      throw argError(`histogram prefix must be an integer in [0, 65535], got ${prefixHi}`);
    }
    if (!(hist instanceof Uint32Array) || hist.length !== HIST_BINS) {
      throw argError('histogram must be a Uint32Array of 65,536 bins');
    }
    return this.inner.absHistogram(x, pass, prefixHi, hist);
  }

  async kthLargestAbs(arrays: Float32Array[], k: number): Promise<number> {
    if (!Array.isArray(arrays)) throw argError('kthLargestAbs takes an array of Float32Array');
    let total = 0;
    arrays.forEach((a, i) => {
      total += checkF32(a, `kthLargestAbs input ${i}`).length;
    });
    if (!Number.isSafeInteger(k) || k < 1 || k > total) {
      throw argError(`k must be an integer from 1 to ${total}, got ${k}`, { k, total });
    }
    return this.inner.kthLargestAbs(arrays, k);
  }

  // ------------------------------------------------------------ methods

  async ties(
    taus: Float32Array[],
    weights: number[],
    thresholds: number[],
    out: Float32Array,
    tieQuotas?: number[],
  ): Promise<void> {
    checkInputCount(taus, 'ties');
    checkF32(out, 'ties output');
    for (const [i, t] of taus.entries()) {
      checkLength(checkF32(t, `ties input ${i}`).length, out.length, `ties input ${i}`);
    }
    checkWeights(weights, taus.length, 'ties weights');
    if (!Array.isArray(thresholds) || thresholds.length !== taus.length) {
      throw argError(`ties thresholds: need ${taus.length} numbers, one per input`);
    }
    for (const t of thresholds) {
      if (typeof t !== 'number' || !(t >= 0)) throw argError(`ties threshold ${String(t)} is not a number ≥ 0`);
    }
    if (tieQuotas !== undefined) {
      if (!Array.isArray(tieQuotas) || tieQuotas.length !== taus.length) {
        throw argError(`ties tie quotas: need ${taus.length} integers, one per input`);
      }
      for (const q of tieQuotas) {
        if (!Number.isInteger(q) || q < -1 || q > 0x7fffffff)
          throw argError(`ties tie quota ${String(q)} is not an integer from -1 to 2^31 − 1`);
      }
    }
    this.aliasing(taus, out, true);
    return this.inner.ties(taus, weights, thresholds, out, tieQuotas);
  }

  async dareDrop(
    x: Float32Array,
    p: number,
    seed: number,
    stream: number,
    offset: number,
    out: Float32Array,
  ): Promise<void> {
    checkF32(out, 'dareDrop output');
    checkLength(checkF32(x, 'dareDrop input').length, out.length, 'dareDrop input');
    if (typeof p !== 'number' || !(p >= 0 && p < 1)) throw argError(`drop probability must be in [0, 1), got ${p}`);
    for (const [name, v] of [
      ['seed', seed],
      ['stream', stream],
    ] as const) {
      if (!Number.isInteger(v) || v < 0 || v >= 2 ** 32) throw argError(`${name} must be a u32, got ${v}`);
    }
    if (!Number.isSafeInteger(offset) || offset < 0 || offset + x.length > 2 ** 53) {
      throw argError(`offset must be an integer in [0, 2^53), got ${offset}`);
    }
    this.aliasing([x], out, true);
    return this.inner.dareDrop(x, p, seed, stream, offset, out);
  }
}

const wrapped = new WeakMap<Backend, Device>();

/** The backend behind the argument checks; one wrapper per backend, so devices compare by identity. */
export function checked(backend: Backend): Device {
  let d = wrapped.get(backend);
  if (!d) {
    d = new CheckedDevice(backend);
    wrapped.set(backend, d);
  }
  return d;
}
