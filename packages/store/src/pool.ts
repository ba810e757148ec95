import os from 'node:os';
import { Worker } from 'node:worker_threads';
import { isWgitError, WgitError, type WgitErrorCode } from '@wgit/core/errors';
import { parseInteger } from '@wgit/core/parse';
import { ChunkIO, type ChunkJob, type JobResult } from './chunkio.js';
import { hasWriteFaultHook } from './fsutil.js';

/**
 * Runs chunk jobs (chunkio.ts) on a few worker threads, or on the calling
 * thread for small models, where starting workers (loading the codec's
 * WebAssembly and zstd in each) would cost more than the whole operation.
 */
export interface ChunkRunner {
  readonly threads: number;
  /** How many jobs to keep queued so no worker waits on the caller. */
  readonly window: number;
  run<J extends ChunkJob>(job: J): Promise<JobResult<J>>;
  close(): Promise<void>;
}

/** An error as it crosses the thread boundary: WgitErrors keep code and data, fs errors their errno code. */
export interface WireError {
  wgit: boolean;
  code?: string;
  message: string;
  data?: Record<string, unknown>;
}

export function toWire(e: unknown): WireError {
  if (isWgitError(e)) return { wgit: true, code: e.code, message: e.message, data: e.data };
  const x = e as NodeJS.ErrnoException;
  return { wgit: false, code: typeof x?.code === 'string' ? x.code : undefined, message: String(x?.message ?? e) };
}

export function fromWire(w: WireError): Error {
  if (w.wgit) return new WgitError((w.code ?? 'E_INTERNAL') as WgitErrorCode, w.message, w.data);
  return Object.assign(new Error(w.message), w.code ? { code: w.code } : {});
}

const DEFAULT_MIN_BYTES = 48 << 20;

function intFromEnv(name: string, min: number, max: number): number | null {
  const v = process.env[name];
  if (v === undefined || v === '') return null;
  return parseInteger(v, { what: name, code: 'E_BAD_ENV', min, max, data: { name } });
}

/**
 * Thread count: WGIT_THREADS, else the machine's parallelism (at most 8:
 * beyond that the disk, not the codec, is the limit). Models smaller than
 * WGIT_PARALLEL_MIN_BYTES (default 48 MiB) run on the calling thread, and so
 * does everything while a test's write fault hook is set.
 */
export function plannedThreads(totalBytes: number): number {
  const threads = intFromEnv('WGIT_THREADS', 1, 256) ?? Math.min(8, os.availableParallelism());
  const minBytes = intFromEnv('WGIT_PARALLEL_MIN_BYTES', 0, Number.MAX_SAFE_INTEGER) ?? DEFAULT_MIN_BYTES;
  return totalBytes >= minBytes && !hasWriteFaultHook() ? threads : 1;
}

class InlineRunner implements ChunkRunner {
  readonly threads = 1;
  readonly window = 1;
  private readonly io: ChunkIO;
  constructor(chunksDir: string, tmpDir: string) {
    this.io = new ChunkIO(chunksDir, tmpDir);
  }
  run<J extends ChunkJob>(job: J): Promise<JobResult<J>> {
    try {
      return Promise.resolve(this.io.run(job));
    } catch (e) {
      return Promise.reject(e);
    }
  }
  async close(): Promise<void> {
    this.io.close();
  }
}

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
}

interface PoolWorker {
  worker: Worker;
  pending: Map<number, Pending>;
}

type WorkerReply = { ready: true } | { closed: true } | { seq: number; result?: unknown; error?: WireError };

function spawnWorker(chunksDir: string, tmpDir: string): Worker {
  const here = import.meta.url;
  const workerData = { chunksDir, tmpDir };
  if (!here.endsWith('.ts')) return new Worker(new URL('./chunk-worker.js', here), { workerData });
  // Running from source (tests, benchmarks): tsx's loader hooks are not
  // inherited by workers, so the worker registers them before loading its entry.
  const tsx = import.meta.resolve('tsx/esm/api');
  const entry = new URL('./chunk-worker.ts', here).href;
  const code = `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(entry)}); })`;
  return new Worker(code, { eval: true, workerData });
}

export interface RunnerOptions {
  /**
   * Let the process exit while no job is in flight, for pools that live as
   * long as an object (StoreModel) rather than one operation.
   */
  unrefWhenIdle?: boolean;
}

class PoolRunner implements ChunkRunner {
  private seq = 0;
  private broken: Error | null = null;
  private inFlight = 0;
  private unrefWhenIdle = false;
  readonly window: number;

  private constructor(private readonly workers: PoolWorker[]) {
    this.window = workers.length * 2;
  }

  get threads(): number {
    return this.workers.length;
  }

  static async start(n: number, chunksDir: string, tmpDir: string, opts: RunnerOptions = {}): Promise<PoolRunner> {
    const workers: PoolWorker[] = [];
    const ready: Promise<void>[] = [];
    for (let i = 0; i < n; i++) {
      const pw: PoolWorker = { worker: spawnWorker(chunksDir, tmpDir), pending: new Map() };
      workers.push(pw);
      ready.push(
        new Promise((resolve, reject) => {
          pw.worker.once('message', (m: WorkerReply) => ('ready' in m ? resolve() : reject(new Error('bad worker'))));
          pw.worker.once('error', reject);
        }),
      );
    }
    try {
      await Promise.all(ready);
    } catch (e) {
      await Promise.all(workers.map((w) => w.worker.terminate()));
      throw e;
    }
    const pool = new PoolRunner(workers);
    for (const pw of workers) pool.listen(pw);
    if (opts.unrefWhenIdle) {
      pool.unrefWhenIdle = true;
      for (const pw of workers) pw.worker.unref();
    }
    return pool;
  }

  /** Counts jobs in flight; an idle pool of `unrefWhenIdle` does not hold the process open. */
  private track(delta: number): void {
    const was = this.inFlight;
    this.inFlight += delta;
    if (!this.unrefWhenIdle) return;
    if (was === 0 && this.inFlight > 0) for (const w of this.workers) w.worker.ref();
    else if (was > 0 && this.inFlight === 0) for (const w of this.workers) w.worker.unref();
  }

  private listen(pw: PoolWorker): void {
    pw.worker.on('message', (m: WorkerReply) => {
      if (!('seq' in m)) return;
      const p = pw.pending.get(m.seq);
      if (!p) return;
      pw.pending.delete(m.seq);
      this.track(-1);
      if (m.error) p.reject(fromWire(m.error));
      else p.resolve(m.result);
    });
    const fail = (e: Error) => {
      this.broken ??= e;
      for (const p of pw.pending.values()) p.reject(e);
      this.track(-pw.pending.size);
      pw.pending.clear();
    };
    pw.worker.on('error', fail);
    pw.worker.on('exit', (code) => fail(new Error(`chunk worker exited (code ${code})`)));
  }

  run<J extends ChunkJob>(job: J): Promise<JobResult<J>> {
    if (this.broken) return Promise.reject(this.broken);
    let pw = this.workers[0];
    for (const w of this.workers) if (w.pending.size < pw.pending.size) pw = w;
    const seq = ++this.seq;
    return new Promise((resolve, reject) => {
      pw.pending.set(seq, { resolve: resolve as (v: unknown) => void, reject });
      this.track(1);
      pw.worker.postMessage({ seq, job });
    });
  }

  async close(): Promise<void> {
    // Closing waits on the workers' answers, which an unreferenced worker would not wait for.
    if (this.unrefWhenIdle) for (const pw of this.workers) pw.worker.ref();
    await Promise.all(
      this.workers.map(async (pw) => {
        // Let the worker close its file descriptors before it goes.
        if (!this.broken) {
          await new Promise<void>((resolve) => {
            const onMsg = (m: WorkerReply) => {
              if ('closed' in m) {
                pw.worker.off('message', onMsg);
                resolve();
              }
            };
            pw.worker.on('message', onMsg);
            pw.worker.once('exit', () => resolve());
            pw.worker.postMessage({ close: true });
          });
        }
        await pw.worker.terminate();
      }),
    );
  }
}

/** A runner sized for an operation over `totalBytes` of tensor data. */
export async function startRunner(
  totalBytes: number,
  chunksDir: string,
  tmpDir: string,
  opts: RunnerOptions = {},
): Promise<ChunkRunner> {
  const threads = plannedThreads(totalBytes);
  if (threads <= 1) return new InlineRunner(chunksDir, tmpDir);
  return PoolRunner.start(threads, chunksDir, tmpDir, opts);
}
