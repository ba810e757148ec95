/**
 * The device seam: every hot loop of wgit runs through one `Device`, whatever
 * computes it (plain TypeScript, the WASM SIMD pool, later a GPU). A backend
 * owns its buffers and implements the kernel set; `checked()` validates the
 * arguments once, above every backend, so backends only compute.
 *
 * NaN policy (all backends, all paths — docs/kernels.md):
 * - arithmetic kernels (conversions, weighted sums, transfer, sub, axpy,
 *   reductions, DARE survivors) propagate NaN by IEEE rules, payload kept
 *   where the format allows;
 * - magnitude selection (absHistogram, kthLargestAbs, TIES trimming) never
 *   ranks a NaN: it is not a large magnitude, it is not counted, and a k
 *   beyond the non-NaN entries gives the threshold 0;
 * - sign consensus (ties) treats a NaN entry as 0: it never survives the
 *   trim, never votes and never joins the mean.
 */

/** Element types the conversion kernels read and write. */
export type KernelDType = 'BF16' | 'F16' | 'F32';

/**
 * The closeness sums of one transfer call, each in f64 over the elements j:
 * dot = Σ (newⱼ − oldⱼ)·Δⱼ, shift2 = Σ (newⱼ − oldⱼ)², delta2 = Σ Δⱼ²,
 * old2 = Σ oldⱼ², where Δⱼ = f32(ftⱼ − oldⱼ) and newⱼ − oldⱼ is taken in f64.
 * Order (every backend): the elements split into blocks of TRANSFER_BLOCK
 * from element 0; in a block, local element i adds into lane i mod 4 over the
 * block's multiple-of-4 prefix, the lanes combine as (l0 + l1) + (l2 + l3),
 * then the rest of the block adds in order; the block sums then add in block
 * order, starting from 0.
 */
export interface TransferSums {
  dot: number;
  shift2: number;
  delta2: number;
  old2: number;
}

/** Elements per block of the transfer sums (TransferSums) and the diff sums (DiffSums). */
export const TRANSFER_BLOCK = 1024;

/**
 * The figures `wgit diff` takes of one pair of tensors a, b (same dtype and
 * length), from one pass over their raw bytes. With aⱼ, bⱼ the decoded f32
 * values and δⱼ = f32(bⱼ − aⱼ) (the f32 subtraction `sub` does):
 * sqDelta = Σ δⱼ², sqA = Σ aⱼ², sqB = Σ bⱼ², dot = Σ aⱼ·bⱼ, in f64 and in the
 * TransferSums block order, so identical on every backend and thread count;
 * maxAbsDelta = max |δⱼ| over the δⱼ that are not NaN (0 when there are none:
 * magnitude selection never ranks a NaN); identical = the number of elements
 * whose stored bits are equal (so −0 and +0 differ, and a NaN equals the same
 * NaN), exact.
 */
export interface DiffSums {
  sqDelta: number;
  sqA: number;
  sqB: number;
  dot: number;
  maxAbsDelta: number;
  identical: number;
}

/** Element types of device buffers: f32 values or raw bytes. */
export type BufferDType = 'F32' | 'U8';

export type HostView<D extends BufferDType> = D extends 'F32' ? Float32Array : Uint8Array;

/**
 * Memory owned by a device. `view` is a host array onto the device's own
 * memory when the backend can give one without copying (both CPU backends);
 * it is undefined where the memory is not host visible (a GPU), and then
 * `upload` / `download` move the bytes.
 */
export interface DeviceBuffer<D extends BufferDType = BufferDType> {
  readonly dtype: D;
  readonly length: number;
  readonly view: HostView<D> | undefined;
}

/**
 * The kernel set. Arguments are host arrays; a `view` of a buffer this device
 * allocated is passed without a copy, any other array is staged (correct,
 * slower). Outputs may be exactly one of the inputs (in place) where noted;
 * partial overlap is refused. Gather and scatter will join here.
 */
export interface KernelSet {
  toF32(src: Uint8Array, dtype: KernelDType, dst: Float32Array): Promise<void>;
  fromF32(src: Float32Array, dtype: KernelDType, dst: Uint8Array): Promise<void>;
  /** out = Σ wᵢ·xᵢ, 1..8 inputs, f32 arithmetic summed left to right; out may be one of the inputs. */
  weightedSum(inputs: Float32Array[], weights: number[], out: Float32Array): Promise<void>;
  /** weightedSum reading `dtype` inputs and writing `outDtype` directly (RNE), one pass. */
  weightedSumTyped(
    inputs: Uint8Array[],
    dtype: KernelDType,
    weights: number[],
    outDtype: KernelDType,
    out: Uint8Array,
  ): Promise<void>;
  /**
   * Fine-tuning transfer in one pass: out = new + s·Δ with Δ = ft − old, f32
   * arithmetic in that order (Δ, then s·Δ, then the sum) rounded to `outDtype`
   * (RNE), reading the three inputs as `dtype` bytes ([new, ft, old]). Returns
   * the closeness sums in f64 (TRANSFER_SUMS order: per 1,024-element block,
   * then the blocks in order), identical on every backend and thread count.
   * The output may be one of the inputs exactly when dtype = outDtype.
   */
  transferTyped(
    inputs: Uint8Array[],
    dtype: KernelDType,
    s: number,
    outDtype: KernelDType,
    out: Uint8Array,
  ): Promise<TransferSums>;
  /**
   * The diff figures of a against b (DiffSums) in one pass over their raw
   * `dtype` bytes: Σ δ², Σ a², Σ b², Σ a·b in f64 (block order, identical on
   * every backend and thread count), the largest non-NaN |δ| and the count of
   * bit-identical elements, with δ = f32(b − a).
   */
  diffStats(a: Uint8Array, b: Uint8Array, dtype: KernelDType): Promise<DiffSums>;
  /** out = a − b */
  sub(a: Float32Array, b: Float32Array, out: Float32Array): Promise<void>;
  /** out = a + s·b */
  axpy(a: Float32Array, s: number, b: Float32Array, out: Float32Array): Promise<void>;
  /** Σ aᵢbᵢ, Σ aᵢ², Σ |aᵢ| accumulated in f64; deterministic for a given backend and thread count. */
  dot(a: Float32Array, b: Float32Array): Promise<number>;
  sumSq(a: Float32Array): Promise<number>;
  sumAbs(a: Float32Array): Promise<number>;
  /** Adds to `hist` (65,536 bins) bits 30..15 of |x| (pass 0) or bits 14..0 of those in bin `prefixHi` (pass 1); NaN is not counted. */
  absHistogram(x: Float32Array, pass: 0 | 1, prefixHi: number, hist: Uint32Array): Promise<void>;
  /** Exact k-th largest |x| over all arrays together (k = 1 is the maximum), NaN not ranked; 0 when fewer than k non-NaN entries. */
  kthLargestAbs(arrays: Float32Array[], k: number): Promise<number>;
  /**
   * TIES trim / elect / disjoint mean (see reference.ts); thresholds 0 keep every non-zero, non-NaN entry.
   * tieQuotas[i] ≥ 0 keeps only the first tieQuotas[i] entries with |τᵢ| equal to thresholds[i] (flat
   * index order over the call), so exactly k survive; -1 (or none given) keeps every tie.
   */
  ties(
    taus: Float32Array[],
    weights: number[],
    thresholds: number[],
    out: Float32Array,
    tieQuotas?: number[],
  ): Promise<void>;
  /**
   * out (m×n) = op(a)·op(b), f32, row-major: op(a) is a (m×k) or, with
   * transA, the transpose of a stored as k×m; op(b) is b (k×n) or, with
   * transB, the transpose of b stored as n×k. Each output element is a sum
   * of k products accumulated in f32 or wider, in an order the backend picks
   * (blocking, lanes): results agree across backends to rounding, not bit for
   * bit. out must not overlap a or b. See docs/kernels.md and matmul() in
   * reference.ts (the oracle: f64 sums in index order, rounded once).
   */
  matmul(
    a: Float32Array,
    b: Float32Array,
    out: Float32Array,
    m: number,
    k: number,
    n: number,
    transA?: boolean,
    transB?: boolean,
  ): Promise<void>;
  /** DARE: drop with probability p (rng.ts), rescale survivors; x[0] is element `offset` of the tensor. */
  dareDrop(x: Float32Array, p: number, seed: number, stream: number, offset: number, out: Float32Array): Promise<void>;
}

/** What a backend implements: memory plus the kernel set, with arguments already checked. */
export interface Backend extends KernelSet {
  /** 'reference' (plain TypeScript), 'wasm' (SIMD worker pool), … */
  readonly name: string;
  readonly kind: 'cpu' | 'gpu';
  readonly threads: number;
  alloc<D extends BufferDType>(dtype: D, length: number): DeviceBuffer<D>;
  /** Releases a buffer this backend allocated (E_KERNEL_BAD_FREE otherwise). */
  free(buffer: DeviceBuffer): void;
  /** Copies `src` into the buffer from element `offset`. */
  upload(buffer: DeviceBuffer, src: ArrayBufferView, offset: number): Promise<void>;
  /** Copies the buffer from element `offset` into `dst`. */
  download(buffer: DeviceBuffer, dst: ArrayBufferView, offset: number): Promise<void>;
  /**
   * True when the two views lie in the same memory even though their
   * ArrayBuffers differ (a grown WebAssembly memory hands out a new buffer);
   * lets the overlap check see aliasing only the backend knows about.
   */
  sameMemory?(a: ArrayBufferView, b: ArrayBufferView): boolean;
  close(): Promise<void>;
}

/** A backend behind the argument checks: what getDevice hands out. */
export interface Device extends Backend {
  /** The buffer's host view; E_KERNEL_ARG where the backend has none (a GPU). */
  hostView<D extends BufferDType>(buffer: DeviceBuffer<D>): HostView<D>;
}

export const BUFFER_SIZE: Record<BufferDType, number> = { F32: 4, U8: 1 };
export const KERNEL_DTYPE_SIZE: Record<KernelDType, number> = { F32: 4, BF16: 2, F16: 2 };
export const MAX_INPUTS = 8;
export const HIST_BINS = 65536;
