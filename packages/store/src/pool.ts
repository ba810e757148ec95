import { WgitError } from '@wgit/core/errors';
import { parseInteger } from '@wgit/core/parse';
import { acquireWorkerPool, defaultThreads, type WorkerPool } from '@wgit/core/workers';
import { ChunkIO, type ChunkJob, type JobResult } from './chunkio.js';
import { hasWriteFaultHook, writeBudgetBuffer } from './fsutil.js';

/**
 * Runs chunk jobs (chunkio.ts) on the process's worker threads
 * (@wgit/core/workers, the same threads the WASM kernels use), or on the
 * calling thread for small models, where starting workers (loading the
 * codec's WebAssembly and zstd in each) would cost more than the whole
 * operation.
 */
export interface ChunkRunner {
  readonly threads: number;
  /** How many jobs to keep queued so no worker waits on the caller. */
  readonly window: number;
  run<J extends ChunkJob>(job: J): Promise<JobResult<J>>;
  close(): Promise<void>;
}

const DEFAULT_MIN_BYTES = 48 << 20;

/**
 * Thread count: the process's (WGIT_THREADS, else the machine's parallelism,
 * at most 8: beyond that the disk, not the codec, is the limit). Models
 * smaller than WGIT_PARALLEL_MIN_BYTES (default 48 MiB) run on the calling
 * thread, and so does everything while a test's write fault hook is set
 * (a function cannot cross threads; the write budget, shared memory, can).
 */
export function plannedThreads(totalBytes: number): number {
  const threads = defaultThreads();
  const v = process.env.WGIT_PARALLEL_MIN_BYTES;
  const minBytes =
    v === undefined || v === ''
      ? DEFAULT_MIN_BYTES
      : parseInteger(v, {
          what: 'WGIT_PARALLEL_MIN_BYTES',
          code: 'E_BAD_ENV',
          min: 0,
          max: Number.MAX_SAFE_INTEGER,
          data: { name: 'WGIT_PARALLEL_MIN_BYTES' },
        });
  return totalBytes >= minBytes && !hasWriteFaultHook() ? threads : 1;
}

class InlineRunner implements ChunkRunner {
  readonly threads = 1;
  readonly window = 1;
  private readonly io: ChunkIO;
  constructor(chunksDir: string, tmpDir: string) {
    this.io = new ChunkIO(chunksDir, tmpDir, writeBudgetBuffer());
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

/** chunk-worker.ts, as the workers load it: the .ts source under tsx, the .js file in dist/. */
const HANDLER_URL = new URL(
  import.meta.url.endsWith('.ts') ? './chunk-worker.ts' : './chunk-worker.js',
  import.meta.url,
);

export interface RunnerOptions {
  /**
   * Let the process exit while no job is in flight. Every runner does so now
   * (the process's workers are unreferenced while idle); kept for callers.
   */
  unrefWhenIdle?: boolean;
}

let runnerSeq = 0;

/**
 * A runner on the process's worker pool: its own chunk handler (one ChunkIO
 * per worker over this chunk folder) installed under a key of its own, so
 * that concurrent operations never share a ChunkIO's per-operation state,
 * and uninstalled by close(); the workers stay for the process. Jobs go to
 * the least loaded worker.
 */
class PoolRunner implements ChunkRunner {
  private closed = false;
  readonly window: number;

  private constructor(
    private readonly pool: WorkerPool,
    private readonly key: string,
  ) {
    this.window = pool.threads * 2;
  }

  get threads(): number {
    return this.pool.threads;
  }

  static async start(n: number, chunksDir: string, tmpDir: string): Promise<PoolRunner> {
    const pool = await acquireWorkerPool(n);
    const key = `chunks/${++runnerSeq}/${chunksDir}`;
    try {
      await pool.install(key, HANDLER_URL, { chunksDir, tmpDir, budget: writeBudgetBuffer() });
    } catch (e) {
      await pool.release();
      throw e;
    }
    return new PoolRunner(pool, key);
  }

  run<J extends ChunkJob>(job: J): Promise<JobResult<J>> {
    if (this.closed) {
      return Promise.reject(new WgitError('E_INTERNAL', 'chunk runner used after close', { key: this.key }));
    }
    return this.pool.run<JobResult<J>>(this.key, job);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // The workers close this runner's files after the jobs already sent.
    try {
      await this.pool.uninstall(this.key);
    } finally {
      await this.pool.release();
    }
  }
}

/** A runner sized for an operation over `totalBytes` of tensor data. */
export async function startRunner(
  totalBytes: number,
  chunksDir: string,
  tmpDir: string,
  _opts: RunnerOptions = {},
): Promise<ChunkRunner> {
  const threads = plannedThreads(totalBytes);
  if (threads <= 1) return new InlineRunner(chunksDir, tmpDir);
  return PoolRunner.start(threads, chunksDir, tmpDir);
}
