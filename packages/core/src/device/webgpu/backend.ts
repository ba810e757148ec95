/**
 * The WebGPU backend (Dawn): every kernel of the set runs as WGSL compute
 * shaders over slices of the call's arrays (runtime.ts). Buffers this
 * backend allocates are host memory with a view (what the pipeline reads
 * files into); each kernel call streams its inputs to the GPU and its
 * results back, slice by slice. Elementwise kernels, conversions, selection,
 * TIES and DARE give the reference's bits; the f64 sums come from per-block
 * double-f32 partials added on the host in block order, within the bound
 * stated in docs/gpu.md (WGSL has no f64). Host-side work is only the glue
 * named at each kernel: adding block partials, histogram counts and the
 * tie-count prefix.
 */
import { WgitError } from '../../errors.js';
import {
  type Backend,
  BUFFER_SIZE,
  type BufferDType,
  type DeviceBuffer,
  type DiffSums,
  HIST_BINS,
  type HostView,
  KERNEL_DTYPE_SIZE,
  type KernelDType,
  type TransferSums,
} from '../device.js';
import { dareCut, dareKeys, dareScale } from '../rng.js';
import { gpuMatmul } from './matmul.js';
import { bytesOf, type GpuRuntime, SLICE_MAX, sliced, uniforms } from './runtime.js';
import { WG } from './shaders/common.js';
import { type MapOp, mapShader } from './shaders/map.js';
import { SUMS_BLOCK, SUMS_WORDS, type SumsMode, sumsShader } from './shaders/sums.js';
import { kthFromHistograms, runTies } from './ties.js';

const mapGroups = (len: number) => Math.ceil(len / (2 * WG));
const owned = new WeakSet<DeviceBuffer>();

export class WebGpuBackend implements Backend {
  readonly name = 'webgpu';
  readonly kind = 'gpu' as const;
  readonly threads = 1;

  constructor(readonly rt: GpuRuntime) {}

  // ------------------------------------------------------------ memory (host staging)

  alloc<D extends BufferDType>(dtype: D, length: number): DeviceBuffer<D> {
    const view = (dtype === 'F32' ? new Float32Array(length) : new Uint8Array(length)) as HostView<D>;
    const buffer: DeviceBuffer<D> = { dtype, length, view };
    owned.add(buffer);
    return buffer;
  }

  free(buffer: DeviceBuffer): void {
    if (!owned.delete(buffer)) {
      throw new WgitError('E_KERNEL_BAD_FREE', 'free() takes a buffer allocated by this device and not yet freed');
    }
  }

  async upload(buffer: DeviceBuffer, src: ArrayBufferView, offset: number): Promise<void> {
    const view = buffer.view as ArrayBufferView;
    const at = view.byteOffset + offset * BUFFER_SIZE[buffer.dtype];
    new Uint8Array(view.buffer, at, src.byteLength).set(bytesOf(src));
  }

  async download(buffer: DeviceBuffer, dst: ArrayBufferView, offset: number): Promise<void> {
    const view = buffer.view as ArrayBufferView;
    const at = view.byteOffset + offset * BUFFER_SIZE[buffer.dtype];
    bytesOf(dst).set(new Uint8Array(view.buffer, at, dst.byteLength));
  }

  async close(): Promise<void> {
    this.rt.device.destroy();
  }

  // ------------------------------------------------------------ elementwise

  /** One elementwise op over `inputs` (`dtype` bytes) into `out` (`outDtype` bytes). */
  private async map(
    op: MapOp,
    inputs: ArrayBufferView[],
    dtype: KernelDType,
    outDtype: KernelDType,
    out: ArrayBufferView,
    weights: number[] = [],
  ): Promise<void> {
    const size = KERNEL_DTYPE_SIZE[dtype];
    const outSize = KERNEL_DTYPE_SIZE[outDtype];
    const n = out.byteLength / outSize;
    if (n === 0) return;
    const pipeline = await this.rt.pipeline(mapShader(op, dtype, outDtype));
    const dst = bytesOf(out);
    await this.rt.stream({
      n,
      inputs: inputs.map((x) => sliced(x, size, this.rt.slice)),
      outputs: [
        {
          bytes: (len) => len * outSize,
          take: (start, len, data) => dst.set(data.subarray(0, len * outSize), start * outSize),
        },
      ],
      passes: [{ pipeline, groups: mapGroups, inputs: inputs.map((_x, i) => i), outputs: [0] }],
      uniforms: (_start, len) => uniforms(len, weights),
    });
  }

  toF32(src: Uint8Array, dtype: KernelDType, dst: Float32Array): Promise<void> {
    return this.map({ kind: 'copy' }, [src], dtype, 'F32', dst);
  }

  fromF32(src: Float32Array, dtype: KernelDType, dst: Uint8Array): Promise<void> {
    return this.map({ kind: 'copy' }, [src], 'F32', dtype, dst);
  }

  weightedSum(inputs: Float32Array[], weights: number[], out: Float32Array): Promise<void> {
    return this.map({ kind: 'weighted', k: inputs.length }, inputs, 'F32', 'F32', out, weights);
  }

  weightedSumTyped(
    inputs: Uint8Array[],
    dtype: KernelDType,
    weights: number[],
    outDtype: KernelDType,
    out: Uint8Array,
  ): Promise<void> {
    return this.map({ kind: 'weighted', k: inputs.length }, inputs, dtype, outDtype, out, weights);
  }

  sub(a: Float32Array, b: Float32Array, out: Float32Array): Promise<void> {
    return this.map({ kind: 'sub' }, [a, b], 'F32', 'F32', out);
  }

  axpy(a: Float32Array, s: number, b: Float32Array, out: Float32Array): Promise<void> {
    return this.map({ kind: 'axpy' }, [a, b], 'F32', 'F32', out, [s]);
  }

  // ------------------------------------------------------------ block sums

  /**
   * Runs the sums shader (and, for the transfer, the output map in the same
   * slice) and returns the per-block partials, 12 words a block, in block order.
   */
  private async blockPartials(
    mode: SumsMode,
    inputs: ArrayBufferView[],
    dtype: KernelDType,
    n: number,
    withMap?: { op: MapOp; outDtype: KernelDType; out: Uint8Array; weights: number[] },
  ): Promise<Uint32Array> {
    const blocks = Math.ceil(n / SUMS_BLOCK);
    const partials = new Uint32Array(blocks * SUMS_WORDS);
    if (n === 0) return partials;
    const size = KERNEL_DTYPE_SIZE[dtype];
    const sums = await this.rt.pipeline(sumsShader(mode, dtype));
    const ins = inputs.map((_x, i) => i);
    const passes = [
      { pipeline: sums, groups: (len: number) => Math.ceil(len / SUMS_BLOCK), inputs: ins, outputs: [0] },
    ];
    const outputs = [
      {
        bytes: (len: number) => Math.ceil(len / SUMS_BLOCK) * SUMS_WORDS * 4,
        take: (start: number, len: number, data: Uint8Array) => {
          const words = new Uint32Array(data.buffer, data.byteOffset, Math.ceil(len / SUMS_BLOCK) * SUMS_WORDS);
          partials.set(words, (start / SUMS_BLOCK) * SUMS_WORDS);
        },
      },
    ];
    if (withMap) {
      const outSize = KERNEL_DTYPE_SIZE[withMap.outDtype];
      const dst = withMap.out;
      passes.push({
        pipeline: await this.rt.pipeline(mapShader(withMap.op, dtype, withMap.outDtype)),
        groups: mapGroups,
        inputs: ins,
        outputs: [1],
      });
      outputs.push({
        bytes: (len) => len * outSize,
        take: (start, len, data) => dst.set(data.subarray(0, len * outSize), start * outSize),
      });
    }
    await this.rt.stream({
      n,
      inputs: inputs.map((x) => sliced(x, size, this.rt.slice)),
      outputs,
      passes,
      uniforms: (_start, len) => uniforms(len, withMap?.weights ?? []),
    });
    return partials;
  }

  /** Host glue: each block's hi + lo in f64, then the blocks in order from 0 (quantities 0…count−1). */
  private static total(partials: Uint32Array, count: number): number[] {
    const f = new Float32Array(partials.buffer, partials.byteOffset, partials.length);
    const totals = new Array<number>(count).fill(0);
    for (let o = 0; o < f.length; o += SUMS_WORDS) {
      for (let q = 0; q < count; q++) totals[q] += f[o + 2 * q] + f[o + 2 * q + 1];
    }
    return totals;
  }

  async transferTyped(
    inputs: Uint8Array[],
    dtype: KernelDType,
    s: number,
    outDtype: KernelDType,
    out: Uint8Array,
  ): Promise<TransferSums> {
    const n = out.byteLength / KERNEL_DTYPE_SIZE[outDtype];
    const partials = await this.blockPartials('transfer', inputs, dtype, n, {
      op: { kind: 'transfer' },
      outDtype,
      out,
      weights: [s],
    });
    const [dot, shift2, delta2, old2] = WebGpuBackend.total(partials, 4);
    return { dot, shift2, delta2, old2 };
  }

  async diffStats(a: Uint8Array, b: Uint8Array, dtype: KernelDType): Promise<DiffSums> {
    const n = a.byteLength / KERNEL_DTYPE_SIZE[dtype];
    const partials = await this.blockPartials('diff', [a, b], dtype, n);
    const [sqDelta, sqA, sqB, dot] = WebGpuBackend.total(partials, 4);
    const f = new Float32Array(partials.buffer);
    let maxAbsDelta = 0;
    let identical = 0;
    for (let o = 0; o < partials.length; o += SUMS_WORDS) {
      maxAbsDelta = Math.max(maxAbsDelta, f[o + 8]);
      identical += partials[o + 9];
    }
    return { sqDelta, sqA, sqB, dot, maxAbsDelta, identical };
  }

  /** Tiled f32 matmul (matmul.ts); blocks sized to the binding limit. */
  matmul(
    a: Float32Array,
    b: Float32Array,
    out: Float32Array,
    m: number,
    k: number,
    n: number,
    transA = false,
    transB = false,
  ): Promise<void> {
    return gpuMatmul(this.rt, a, b, out, m, k, n, transA, transB);
  }

  async dot(a: Float32Array, b: Float32Array): Promise<number> {
    return WebGpuBackend.total(await this.blockPartials('dot', [a, b], 'F32', a.length), 1)[0];
  }

  async sumSq(a: Float32Array): Promise<number> {
    return WebGpuBackend.total(await this.blockPartials('sumSq', [a], 'F32', a.length), 1)[0];
  }

  async sumAbs(a: Float32Array): Promise<number> {
    return WebGpuBackend.total(await this.blockPartials('sumAbs', [a], 'F32', a.length), 1)[0];
  }

  // ------------------------------------------------------------ selection, TIES, DARE

  absHistogram(x: Float32Array, pass: 0 | 1, prefixHi: number, hist: Uint32Array): Promise<void> {
    return kthFromHistograms.histogram(this.rt, x, pass, prefixHi, hist);
  }

  kthLargestAbs(arrays: Float32Array[], k: number): Promise<number> {
    return kthFromHistograms.kth(this.rt, arrays, k);
  }

  ties(
    taus: Float32Array[],
    weights: number[],
    thresholds: number[],
    out: Float32Array,
    tieQuotas?: number[],
  ): Promise<void> {
    return runTies(this.rt, taus, weights, thresholds, out, tieQuotas);
  }

  async dareDrop(x: Float32Array, p: number, seed: number, stream: number, offset: number, out: Float32Array) {
    const n = x.length;
    if (n === 0) return;
    const { DARE_WGSL } = await import('./shaders/select.js');
    const pipeline = await this.rt.pipeline(DARE_WGSL);
    const { k1 } = dareKeys(seed >>> 0, stream >>> 0, 0);
    const cut = dareCut(p);
    const scale = dareScale(p);
    const dst = bytesOf(out);
    await this.rt.stream({
      n,
      inputs: [sliced(x, 4, this.rt.slice)],
      outputs: [{ bytes: (len) => len * 4, take: (start, len, data) => dst.set(data.subarray(0, len * 4), start * 4) }],
      passes: [{ pipeline, groups: (len) => Math.ceil(len / WG), inputs: [0], outputs: [0] }],
      uniforms: (start, len) => {
        const index = offset + start;
        const hi = Math.floor(index / 2 ** 32);
        return uniforms(len, [scale], [cut, k1, index - hi * 2 ** 32, hi, p === 0 ? 1 : 0]);
      },
    });
  }
}

export { HIST_BINS, SLICE_MAX };
