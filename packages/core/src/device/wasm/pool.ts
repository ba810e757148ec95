import { WgitError } from '../../errors.js';
import { defaultThreads } from '../../workers/pool.js';
import {
  type Backend,
  type DiffSums,
  HIST_BINS,
  KERNEL_DTYPE_SIZE as KIND_SIZE,
  type KernelDType,
  MAX_INPUTS,
  type TransferSums,
} from '../device.js';
import { dareCut, dareScale } from '../rng.js';
import { BLOCK, WasmRuntime } from './runtime.js';

/** Below this many elements a call runs on the calling thread: a worker round trip costs more. */
const DEFAULT_PARALLEL_MIN = 1 << 18;
/**
 * A matmul splits its rows across the workers from parallelMin × this many
 * multiply-adds (2²⁶ by default): below that a worker round trip costs more
 * than the product.
 */
const MATMUL_PARALLEL_FACTOR = 256;
/** Rows a worker takes at a time from a parallel matmul. */
const MATMUL_CHUNK = 128;
const KIND: Record<KernelDType, number> = { F32: 0, BF16: 1, F16: 2 };

export interface KernelOptions {
  /**
   * Worker threads for large calls; default the process's thread count
   * (WGIT_THREADS, else os.availableParallelism() up to 8), whose workers the
   * store's chunk jobs share. 1 = no workers.
   */
  threads?: number;
  /** Element count from which a call is split across the workers (default 262,144). */
  parallelMin?: number;
}

const pools = new Map<string, Promise<KernelPool>>();

function resolveThreads(opts: KernelOptions): number {
  const t = opts.threads ?? defaultThreads();
  if (!Number.isInteger(t) || t < 1 || t > 256) {
    throw new WgitError('E_KERNEL_THREADS', `thread count must be an integer from 1 to 256, got ${String(t)}`, {
      threads: t,
    });
  }
  return t;
}

/**
 * The shared WASM pool for these options (one per thread count and
 * threshold), unchecked: getDevice puts it behind checked().
 */
export function wasmBackend(opts: KernelOptions = {}): Promise<Backend> {
  const threads = resolveThreads(opts);
  const parallelMin = opts.parallelMin ?? DEFAULT_PARALLEL_MIN;
  if (!Number.isInteger(parallelMin) || parallelMin < 1) {
    throw new WgitError('E_KERNEL_ARG', `parallelMin must be a positive integer, got ${parallelMin}`, { parallelMin });
  }
  const key = `${threads}/${parallelMin}`;
  let p = pools.get(key);
  if (!p) {
    p = KernelPool.start(threads, parallelMin, key);
    pools.set(key, p);
    p.catch(() => pools.delete(key));
  }
  return p;
}

function pad<T>(xs: T[], fill: T): T[] {
  const r = xs.slice();
  while (r.length < MAX_INPUTS) r.push(fill);
  return r;
}

class KernelPool extends WasmRuntime implements Backend {
  readonly name = 'wasm';
  readonly kind = 'cpu';

  static async start(threads: number, parallelMin: number, key: string): Promise<KernelPool> {
    const pool = new KernelPool(threads, parallelMin, key);
    // A broken pool is not handed out again; the next getDevice starts afresh.
    await pool.attachWorkers(() => pools.delete(key));
    return pool;
  }

  // ------------------------------------------------------------ conversions

  async toF32(src: Uint8Array, dtype: KernelDType, dst: Float32Array): Promise<void> {
    const kind = dtype;
    const n = dst.length;
    const fn = kind === 'BF16' ? 'bf16ToF32' : kind === 'F16' ? 'f16ToF32' : 'copyBytes';
    const size = KIND_SIZE[kind];
    await this.withPlaced(
      [src],
      dst,
      async ([s], d) => {
        await this.parallel(fn, n, (start, count) =>
          fn === 'copyBytes' ? [[d + start * 4, s + start * 4, count * 4]] : [[s + start * size, d + start * 4, count]],
        );
      },
    );
  }

  async fromF32(src: Float32Array, dtype: KernelDType, dst: Uint8Array): Promise<void> {
    const kind = dtype;
    const n = src.length;
    const fn = kind === 'BF16' ? 'f32ToBf16' : kind === 'F16' ? 'f32ToF16' : 'copyBytes';
    const size = KIND_SIZE[kind];
    await this.withPlaced(
      [src],
      dst,
      async ([s], d) => {
        await this.parallel(fn, n, (start, count) =>
          fn === 'copyBytes' ? [[d + start * 4, s + start * 4, count * 4]] : [[s + start * 4, d + start * size, count]],
        );
      },
    );
  }

  // ------------------------------------------------------------ elementwise

  async weightedSum(inputs: Float32Array[], weights: number[], out: Float32Array): Promise<void> {
    return this.runWeighted(inputs, 'F32', weights, 'F32', out, out.length);
  }

  async weightedSumTyped(
    inputs: Uint8Array[],
    dtype: KernelDType,
    weights: number[],
    outDtype: KernelDType,
    out: Uint8Array,
  ): Promise<void> {
    const n = out.byteLength / KIND_SIZE[outDtype];
    return this.runWeighted(inputs, dtype, weights, outDtype, out, n);
  }

  private async runWeighted(
    inputs: ArrayBufferView[],
    inKind: KernelDType,
    weights: number[],
    outKind: KernelDType,
    out: ArrayBufferView,
    n: number,
  ): Promise<void> {
    const inSize = KIND_SIZE[inKind];
    const outSize = KIND_SIZE[outKind];
    // Each group of 8 elements is read from every input before it is
    // written, so the output may be any one input exactly (same layout).
    await this.withPlaced(
      inputs,
      out,
      async (ptrs, o) => {
        const ws = pad(weights, 0);
        await this.parallel('weightedSum', n, (start, count, scratch) => [
          [
            o + start * outSize,
            KIND[outKind],
            KIND[inKind],
            count,
            inputs.length,
            scratch,
            ...pad(
              ptrs.map((p) => p + start * inSize),
              0,
            ),
            ...ws,
          ],
        ]);
      },
    );
  }

  async transferTyped(
    inputs: Uint8Array[],
    dtype: KernelDType,
    s: number,
    outDtype: KernelDType,
    out: Uint8Array,
  ): Promise<TransferSums> {
    this.live();
    const n = out.byteLength / KIND_SIZE[outDtype];
    const inSize = KIND_SIZE[dtype];
    const outSize = KIND_SIZE[outDtype];
    const blocks = Math.ceil(n / BLOCK);
    // Four f64 sums per block, written by whichever thread ran the block and
    // added here in block order: the result does not depend on the split.
    const partials = this.arena.alloc(blocks * 32);
    let misaligned = false;
    try {
      await this.withPlaced(inputs, out, async ([pn, pf, po], o) => {
        await this.parallel('transfer', n, (start, count) => {
          if (start % BLOCK !== 0) misaligned = true;
          return [
            [
              o + start * outSize,
              KIND[outDtype],
              KIND[dtype],
              count,
              s,
              pn + start * inSize,
              pf + start * inSize,
              po + start * inSize,
              partials + Math.floor(start / BLOCK) * 32,
            ],
          ];
        });
      });
      if (misaligned) throw new WgitError('E_KERNEL_INTERNAL', 'transfer ranges must start on block boundaries');
      const p = new Float64Array(this.arena.buffer, partials, blocks * 4);
      let dot = 0;
      let shift2 = 0;
      let delta2 = 0;
      let old2 = 0;
      for (let b = 0; b < p.length; b += 4) {
        dot += p[b];
        shift2 += p[b + 1];
        delta2 += p[b + 2];
        old2 += p[b + 3];
      }
      return { dot, shift2, delta2, old2 };
    } finally {
      this.arena.release(partials);
    }
  }

  async diffStats(a: Uint8Array, b: Uint8Array, dtype: KernelDType): Promise<DiffSums> {
    this.live();
    const size = KIND_SIZE[dtype];
    const n = a.byteLength / size;
    const blocks = Math.ceil(n / BLOCK);
    // Six f64 per block (Σδ², Σa², Σb², Σa·b, max |δ|, equal elements), written
    // by whichever thread ran the block and combined here in block order: the
    // result does not depend on the split.
    const perBlock = 6;
    const partials = this.arena.alloc(blocks * perBlock * 8);
    let misaligned = false;
    try {
      await this.withPlaced([a, b], null, async ([pa, pb]) => {
        await this.parallel('diffStats', n, (start, count) => {
          if (start % BLOCK !== 0) misaligned = true;
          return [
            [
              KIND[dtype],
              count,
              pa + start * size,
              pb + start * size,
              partials + Math.floor(start / BLOCK) * perBlock * 8,
            ],
          ];
        });
      });
      if (misaligned) throw new WgitError('E_KERNEL_INTERNAL', 'diff ranges must start on block boundaries');
      const p = new Float64Array(this.arena.buffer, partials, blocks * perBlock);
      let sqDelta = 0;
      let sqA = 0;
      let sqB = 0;
      let dot = 0;
      let maxAbsDelta = 0;
      let identical = 0;
      for (let i = 0; i < p.length; i += perBlock) {
        sqDelta += p[i];
        sqA += p[i + 1];
        sqB += p[i + 2];
        dot += p[i + 3];
        if (p[i + 4] > maxAbsDelta) maxAbsDelta = p[i + 4];
        identical += p[i + 5];
      }
      return { sqDelta, sqA, sqB, dot, maxAbsDelta, identical };
    } finally {
      this.arena.release(partials);
    }
  }

  async sub(a: Float32Array, b: Float32Array, out: Float32Array): Promise<void> {
    await this.withPlaced(
      [a, b],
      out,
      async ([pa, pb], po) => {
        await this.parallel('sub', out.length, (s, c) => [[pa + s * 4, pb + s * 4, po + s * 4, c]]);
      },
    );
  }

  async axpy(a: Float32Array, s: number, b: Float32Array, out: Float32Array): Promise<void> {
    await this.withPlaced(
      [a, b],
      out,
      async ([pa, pb], po) => {
        await this.parallel('axpy', out.length, (st, c) => [[pa + st * 4, pb + st * 4, po + st * 4, c, s]]);
      },
    );
  }

  // ------------------------------------------------------------ matmul

  /**
   * op(a)·op(b) by assembly/matmul.ts: transposes are strides. Once m·k·n
   * reaches parallelMin · MATMUL_PARALLEL_FACTOR, the workers take chunks of
   * MATMUL_CHUNK output rows from a shared counter (a worker that gets less
   * CPU takes fewer), each with its own packing area.
   */
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
    this.live();
    const [sai, sap] = transA ? [1, m] : [k, 1];
    const [sbp, sbj] = transB ? [1, k] : [n, 1];
    await this.withPlaced([a, b], out, async ([pa, pb], po) => {
      const workers = this.workers;
      const packBytes = this.main.matmulPackBytes() as number;
      if (!workers || m < 2 * MATMUL_CHUNK || m * k * n < this.parallelMin * MATMUL_PARALLEL_FACTOR) {
        const pack = this.arena.alloc(packBytes);
        try {
          this.callMain('matmulRows', [pa, sai, sap, pb, sbp, sbj, po, n, 0, m, k, n, pack]);
        } finally {
          this.arena.release(pack);
        }
        return;
      }
      // Every worker takes chunks of rows from one shared counter until none is left.
      const counter = this.arena.alloc(64);
      const packs = Array.from({ length: workers.threads }, () => this.arena.alloc(packBytes));
      try {
        new Int32Array(this.arena.buffer, counter, 1)[0] = 0;
        const settled = await Promise.allSettled(
          packs.map((pack, w) =>
            this.send(workers, w, 'matmulShared', [pa, sai, sap, pb, sbp, sbj, po, n, m, k, n, pack, counter, MATMUL_CHUNK]),
          ),
        );
        const failed = settled.find((r) => r.status === 'rejected');
        if (failed) throw (failed as PromiseRejectedResult).reason;
      } finally {
        for (const p of packs) this.arena.release(p);
        this.arena.release(counter);
      }
    });
  }

  // ------------------------------------------------------------ reductions

  private async reduce(fn: string, arrays: Float32Array[]): Promise<number> {
    const n = arrays[0].length;
    return this.withPlaced(
      arrays,
      null,
      async (ptrs) => {
        const parts = await this.parallel(fn, n, (s, c) => [[...ptrs.map((p) => p + s * 4), c]]);
        // Fixed order, so a given thread count always gives the same bits.
        let total = 0;
        for (const p of parts) total += p;
        return total;
      },
    );
  }

  async dot(a: Float32Array, b: Float32Array): Promise<number> {
    return this.reduce('dot', [a, b]);
  }

  async sumSq(a: Float32Array): Promise<number> {
    return this.reduce('sumSq', [a]);
  }

  async sumAbs(a: Float32Array): Promise<number> {
    return this.reduce('sumAbs', [a]);
  }

  // ------------------------------------------------------------ selection

  /**
   * One zeroed 65,536-bin u32 histogram per slot, taken from the arena for
   * one call (the free list makes this cheap after the first), so that
   * concurrent selections never share counters.
   */
  private allocHistograms(): number {
    const base = this.arena.alloc(HIST_BINS * 4 * (this.threads + 1));
    new Uint32Array(this.arena.buffer, base, HIST_BINS * (this.threads + 1)).fill(0);
    return base;
  }

  /** Runs one histogram pass over `x`, adding into the slot histograms at `base`. */
  private async histogramInto(x: Float32Array, pass: 0 | 1, prefix: number, base: number): Promise<void> {
    await this.withPlaced(
      [x],
      null,
      async ([p]) => {
        await this.parallel('absHistogram', x.length, (s, c, _scratch, slot) => [
          [p + s * 4, c, pass, prefix, base + slot * HIST_BINS * 4],
        ]);
      },
    );
  }

  /** Adds every slot histogram at `base` into `into` and clears them. */
  private drainHistograms(base: number, into: Uint32Array | Float64Array): void {
    for (let slot = 0; slot <= this.threads; slot++) {
      const h = new Uint32Array(this.arena.buffer, base + slot * HIST_BINS * 4, HIST_BINS);
      for (let b = 0; b < HIST_BINS; b++) if (h[b] !== 0) into[b] += h[b];
      h.fill(0);
    }
  }

  async absHistogram(x: Float32Array, pass: 0 | 1, prefixHi: number, hist: Uint32Array): Promise<void> {
    this.live();
    const base = this.allocHistograms();
    try {
      await this.histogramInto(x, pass, prefixHi, base);
      this.drainHistograms(base, hist);
    } finally {
      this.arena.release(base);
    }
  }

  async kthLargestAbs(arrays: Float32Array[], k: number): Promise<number> {
    this.live();
    const base = this.allocHistograms();
    const pass = async (which: 0 | 1, prefix: number): Promise<Float64Array> => {
      // f64 totals: a whole model can put more than 2^32 values in one bin;
      // the u32 slot histograms are drained before they could overflow.
      const totals = new Float64Array(HIST_BINS);
      let sinceDrain = 0;
      for (const a of arrays) {
        if (sinceDrain + a.length >= 2 ** 32) {
          this.drainHistograms(base, totals);
          sinceDrain = 0;
        }
        await this.histogramInto(a, which, prefix, base);
        sinceDrain += a.length;
      }
      this.drainHistograms(base, totals);
      return totals;
    };
    const pick = (counts: Float64Array, bins: number, want: number): { bin: number; left: number } | null => {
      let above = 0;
      for (let b = bins - 1; b >= 0; b--) {
        if (above + counts[b] >= want) return { bin: b, left: want - above };
        above += counts[b];
      }
      return null;
    };
    let hi: { bin: number; left: number } | null;
    let lo: { bin: number; left: number } | null;
    try {
      hi = pick(await pass(0, 0), HIST_BINS, k);
      // Fewer than k entries that are not NaN: every one of them is kept.
      if (!hi) return 0;
      lo = pick(await pass(1, hi.bin), HIST_BINS / 2, hi.left);
      if (!lo) throw new WgitError('E_KERNEL_INTERNAL', 'histogram counts do not add up');
    } finally {
      this.arena.release(base);
    }
    const bits = new Uint32Array([(hi.bin << 15) | lo.bin]);
    return new Float32Array(bits.buffer)[0];
  }

  // ------------------------------------------------------------ methods

  async ties(
    taus: Float32Array[],
    weights: number[],
    thresholds: number[],
    out: Float32Array,
    tieQuotas?: number[],
  ): Promise<void> {
    const quotas = taus.map((_t, i) => tieQuotas?.[i] ?? -1);
    await this.withPlaced(
      taus,
      out,
      async (ptrs, o) => {
        // Exactly the first quota ties over the whole call: count each range's ties first,
        // then hand each range its share of the quota in range order.
        let perRange: number[][] | null = null;
        if (quotas.some((q) => q >= 0)) {
          const limited = quotas.flatMap((q, i) => (q >= 0 ? [i] : []));
          const counts = await this.parallel('countAbsEqual', out.length, (s, c) =>
            limited.map((i) => [ptrs[i] + s * 4, c, thresholds[i]]),
          );
          perRange = [];
          const left = [...quotas];
          for (let r = 0; r * limited.length < counts.length; r++) {
            const q = quotas.map(() => -1);
            limited.forEach((i, x) => {
              q[i] = Math.min(left[i], counts[r * limited.length + x]);
              left[i] -= q[i];
            });
            perRange.push(q);
          }
        }
        await this.parallel('ties', out.length, (s, c, scratch, slot) => [
          [
            o + s * 4,
            c,
            taus.length,
            scratch,
            ...pad(
              ptrs.map((p) => p + s * 4),
              0,
            ),
            ...pad(weights, 0),
            ...pad(thresholds, 0),
            ...pad(perRange ? perRange[Math.max(slot - 1, 0)] : quotas, -1),
          ],
        ]);
      },
    );
  }

  async dareDrop(
    x: Float32Array,
    p: number,
    seed: number,
    stream: number,
    offset: number,
    out: Float32Array,
  ): Promise<void> {
    if (p === 0) {
      // Exactly the identity (a multiply by 1 could still touch NaN payloads).
      if (x !== out) await this.fromF32(x, 'F32', new Uint8Array(out.buffer, out.byteOffset, out.byteLength));
      return;
    }
    const cut = dareCut(p);
    const scale = dareScale(p);
    await this.withPlaced(
      [x],
      out,
      async ([px], po) => {
        await this.parallel('dareDrop', x.length, (s, c) => {
          // The kernel counts indices in u32: split where the low word wraps.
          const calls: number[][] = [];
          let at = s;
          while (at < s + c) {
            const index = offset + at;
            const hi = Math.floor(index / 2 ** 32);
            const lo = index - hi * 2 ** 32;
            const len = Math.min(s + c - at, 2 ** 32 - lo);
            calls.push([px + at * 4, po + at * 4, len, seed, stream, lo, hi, cut, scale]);
            at += len;
          }
          return calls;
        });
      },
    );
  }

  async close(): Promise<void> {
    if (this.closed) return;
    if (pools.get(this.key)) pools.delete(this.key);
    await this.detachWorkers();
  }
}
