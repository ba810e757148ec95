/**
 * What every WASM kernel call stands on: the module compiled once, one
 * shared WebAssembly memory per pool with its arena, the process's worker
 * threads with this pool's kernel handler installed, placement of host
 * arrays into that memory, and the split of a call into block-aligned
 * ranges, one per worker. pool.ts builds the kernel set on it.
 */
import { readFileSync } from 'node:fs';
import { isWgitError, WgitError } from '../../errors.js';
import { acquireWorkerPool, type WorkerPool } from '../../workers/pool.js';
import { BUFFER_SIZE, type BufferDType, type DeviceBuffer, type HostView } from '../device.js';
import { Arena } from './arena.js';
import { type WasmMemory, type WasmModule, wasm } from './wasm.js';

/**
 * Both layouts (src/device/wasm under tsx, dist/device/wasm when built) sit
 * three levels below the package root, where wasm/ and worker/ live.
 */
const WASM_URL = new URL('../../../wasm/kernels.wasm', import.meta.url);
/** The kernel handler installed in the process's worker threads (workers/pool.ts). */
const HANDLER_URL = new URL('../../../worker/kernels.js', import.meta.url);

/** Must equal BLOCK in assembly/kernels.ts: ranges start on block boundaries. */
export const BLOCK = 1024;
/** 4 BLOCK-long f32 buffers, then 8 i32 (the ties kernel's tie quotas at a block's start). */
export const SCRATCH_BYTES = 4 * BLOCK * 4 + 64;

export type Exports = Record<string, (...args: number[]) => number | undefined>;

/** A view resolved to a wasm address, with the copy-out/release to do afterwards. */
export interface Placed {
  ptr: number;
  done(copyOut: boolean): void;
}

export const checkedOut = new WeakSet<DeviceBuffer>();
let compiled: WasmModule | null = null;
let handlerSeq = 0;

export function loadModule(): WasmModule {
  if (compiled) return compiled;
  let bytes: Buffer;
  try {
    bytes = readFileSync(WASM_URL);
  } catch {
    throw new WgitError(
      'E_KERNEL_MISSING',
      `kernel module ${WASM_URL.pathname} is missing: run \`pnpm build\` in packages/core`,
      { path: WASM_URL.pathname },
    );
  }
  compiled = new wasm.Module(bytes);
  return compiled;
}

export abstract class WasmRuntime {
  readonly threads: number;
  readonly memory: WasmMemory;
  protected readonly arena: Arena;
  protected readonly main: Exports;
  /** The process's worker threads (workers/pool.ts), the kernel handler under `handlerKey`; null for 1 thread. */
  protected workers: WorkerPool | null = null;
  protected readonly handlerKey: string;
  protected readonly parallelMin: number;
  protected readonly key: string;
  protected readonly scratch: number;
  protected closed = false;
  protected failure: WgitError | null = null;

  protected constructor(threads: number, parallelMin: number, key: string) {
    this.threads = threads;
    this.parallelMin = parallelMin;
    this.key = key;
    this.handlerKey = `kernels/${key}/${++handlerSeq}`;
    const module = loadModule();
    this.memory = new wasm.Memory({ initial: 256, maximum: 65536, shared: true });
    const instance = new wasm.Instance(module, { env: { memory: this.memory } });
    this.main = instance.exports as unknown as Exports;
    this.arena = new Arena(this.memory, Math.max(65536, this.main.heapBase() as number));
    // Slot 0 is the calling thread, slot 1 + w worker w.
    this.scratch = this.arena.alloc(SCRATCH_BYTES * (threads + 1));
  }

  /**
   * Installs this pool's kernel handler in the process's worker threads
   * (none for one thread); `onBroken` runs when a worker dies while the pool
   * is open.
   */
  protected async attachWorkers(onBroken: () => void): Promise<void> {
    if (this.threads <= 1) return;
    const module = loadModule();
    const workers = await acquireWorkerPool(this.threads);
    try {
      // Every worker instantiates the same module on this pool's memory.
      await workers.install(this.handlerKey, HANDLER_URL, { module, memory: this.memory });
    } catch (e) {
      await workers.release();
      throw e;
    }
    this.workers = workers;
    workers.onBreak((err) => {
      if (this.closed) return;
      this.failure = err;
      onBroken();
    });
  }

  /** Marks the pool closed and takes its handler (and so its memory) out of the workers, which stay for the process. */
  protected async detachWorkers(): Promise<void> {
    this.closed = true;
    const workers = this.workers;
    if (!workers) return;
    try {
      await workers.uninstall(this.handlerKey);
    } finally {
      await workers.release();
    }
  }

  protected closedError(): WgitError {
    return new WgitError('E_KERNEL_CLOSED', 'the kernel pool was closed');
  }

  protected live(): void {
    if (this.closed) throw this.closedError();
    if (this.failure) throw this.failure;
  }

  /** One kernel call on worker `w`; a failure inside WebAssembly becomes E_KERNEL_TRAP, E_WORKER_EXIT stays. */
  protected send(workers: WorkerPool, w: number, fn: string, args: number[]): Promise<number> {
    return workers.run<number>(this.handlerKey, { fn, args }, { worker: w }).catch((e: unknown) => {
      if (isWgitError(e)) throw e;
      throw new WgitError('E_KERNEL_TRAP', `kernel ${fn} failed: ${e instanceof Error ? e.message : String(e)}`);
    });
  }

  protected callMain(fn: string, args: number[]): number {
    try {
      return (this.main[fn](...args) as number | undefined) ?? 0;
    } catch (e) {
      throw new WgitError('E_KERNEL_TRAP', `kernel ${fn} failed: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  /**
   * Runs `build`'s calls over [0, n): on this thread when small, else one
   * block-aligned range per worker. Results come back in range order.
   */
  protected async parallel(
    fn: string,
    n: number,
    build: (start: number, count: number, scratch: number, slot: number) => number[][],
  ): Promise<number[]> {
    this.live();
    const workers = this.workers;
    if (!workers || n < this.parallelMin) {
      return build(0, n, this.scratch, 0).map((args) => this.callMain(fn, args));
    }
    const w = workers.threads;
    const chunk = Math.ceil(n / w / BLOCK) * BLOCK;
    const jobs: Promise<number[]>[] = [];
    for (let r = 0; r * chunk < n; r++) {
      const start = r * chunk;
      const count = Math.min(chunk, n - start);
      const calls = build(start, count, this.scratch + SCRATCH_BYTES * (r + 1), r + 1);
      // Range r on worker r: slot r + 1's scratch space is that thread's alone.
      jobs.push(Promise.all(calls.map((args) => this.send(workers, r, fn, args))));
    }
    // Wait for every range even when one fails: the caller frees staging
    // space afterwards, and a straggler must not write into reused memory.
    const settled = await Promise.allSettled(jobs);
    const failed = settled.find((r) => r.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
    return settled.flatMap((r) => (r as PromiseFulfilledResult<number[]>).value);
  }

  // ------------------------------------------------------------ memory

  alloc<D extends BufferDType>(dtype: D, length: number): DeviceBuffer<D> {
    this.live();
    const off = this.arena.alloc(length * BUFFER_SIZE[dtype]);
    const view = (
      dtype === 'F32' ? new Float32Array(this.arena.buffer, off, length) : new Uint8Array(this.arena.buffer, off, length)
    ) as HostView<D>;
    const buffer: DeviceBuffer<D> = { dtype, length, view };
    checkedOut.add(buffer);
    return buffer;
  }

  free(buffer: DeviceBuffer): void {
    const view = buffer?.view;
    const size = view && checkedOut.has(buffer) && this.arena.owns(view) ? this.arena.sizeOf(view.byteOffset) : undefined;
    if (!view || size === undefined || view.byteLength > size) {
      throw new WgitError('E_KERNEL_BAD_FREE', 'free() takes a buffer allocated by this device and not yet freed');
    }
    checkedOut.delete(buffer);
    this.arena.release(view.byteOffset);
  }

  async upload(buffer: DeviceBuffer, src: ArrayBufferView, offset: number): Promise<void> {
    const view = buffer.view as ArrayBufferView;
    const at = view.byteOffset + offset * BUFFER_SIZE[buffer.dtype];
    new Uint8Array(view.buffer, at, src.byteLength).set(new Uint8Array(src.buffer, src.byteOffset, src.byteLength));
  }

  async download(buffer: DeviceBuffer, dst: ArrayBufferView, offset: number): Promise<void> {
    const view = buffer.view as ArrayBufferView;
    const at = view.byteOffset + offset * BUFFER_SIZE[buffer.dtype];
    new Uint8Array(dst.buffer, dst.byteOffset, dst.byteLength).set(new Uint8Array(view.buffer, at, dst.byteLength));
  }

  sameMemory(a: ArrayBufferView, b: ArrayBufferView): boolean {
    return this.arena.owns(a) && this.arena.owns(b);
  }

  /** Gives the wasm address of `view`, copying it into scratch space when it is an ordinary array. */
  protected place(view: ArrayBufferView, copyIn: boolean): Placed {
    if (this.arena.owns(view)) return { ptr: view.byteOffset, done: () => {} };
    const bytes = view.byteLength;
    const ptr = this.arena.alloc(bytes);
    const src = new Uint8Array(view.buffer, view.byteOffset, bytes);
    if (copyIn) new Uint8Array(this.arena.buffer, ptr, bytes).set(src);
    return {
      ptr,
      done: (copyOut) => {
        if (copyOut) src.set(new Uint8Array(this.arena.buffer, ptr, bytes));
        this.arena.release(ptr);
      },
    };
  }

  /**
   * Places inputs and the output, runs, copies the output back if it was
   * staged, and releases staging space whatever happens. Aliasing was
   * checked above the backend (checked.ts, with sameMemory).
   */
  protected async withPlaced<T>(
    inputs: ArrayBufferView[],
    out: ArrayBufferView | null,
    body: (inPtrs: number[], outPtr: number) => Promise<T>,
  ): Promise<T> {
    const placed: Placed[] = [];
    try {
      for (const v of inputs) placed.push(this.place(v, true));
      const outPlaced = out ? this.place(out, false) : null;
      if (outPlaced) placed.push(outPlaced);
      const r = await body(
        placed.slice(0, inputs.length).map((p) => p.ptr),
        outPlaced ? outPlaced.ptr : 0,
      );
      if (outPlaced) {
        placed.pop();
        outPlaced.done(true);
      }
      return r;
    } finally {
      for (const p of placed) p.done(false);
    }
  }
}
