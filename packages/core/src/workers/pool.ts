/**
 * The process's worker threads: one pool, shared by the WASM kernels
 * (device/wasm/pool.ts) and the store's chunk jobs. Every worker runs the
 * same host script (worker/host.js); what a worker can do is installed into
 * it as a handler module: `install(key, url, data)` makes every worker
 * `import(url)` and keep what its exported `install(data)` returns, a
 * function `(payload) => result` (optionally with a `close()`), under `key`.
 * `run(key, payload)` sends one job to the least loaded worker, or to the
 * one asked for.
 *
 * One thread count for the whole process (defaultThreads: WGIT_THREADS, else
 * the machine's parallelism, at most 8); a caller that asks for another
 * count gets a pool of its own, closed when its last user releases it.
 * Idle workers are unreferenced: the pool keeps the process alive exactly
 * while a job is in flight. A worker that dies fails its jobs with
 * E_WORKER_EXIT; its pool is broken from then on (every later job fails the
 * same way, the other workers end once their jobs are answered) and the
 * next acquireWorkerPool starts a new one.
 */
import os from 'node:os';
import { type TransferListItem, Worker } from 'node:worker_threads';
import { WgitError } from '../errors.js';
import { parseInteger } from '../parse.js';
import { fromWire, type WireError } from './wire.js';

/** src/workers under tsx and dist/workers when built both sit two levels below the package root. */
const HOST_URL = new URL('../../worker/host.js', import.meta.url);
const MAX_THREADS = 256;

/** What a handler module's `install(data)` returns. */
export type WorkerHandler<P = unknown, R = unknown> = ((payload: P) => R | Promise<R>) & {
  close?(): void | Promise<void>;
};

export interface RunOptions {
  /** Run on this worker (0 … threads - 1) instead of the least loaded one. */
  worker?: number;
  /** Buffers moved to the worker rather than copied. */
  transfer?: readonly TransferListItem[];
}

/**
 * The process's thread count: WGIT_THREADS (an integer from 1 to 256), else
 * os.availableParallelism(), at most 8 (beyond that the disk and memory
 * bandwidth, not the cores, are the limit).
 */
export function defaultThreads(): number {
  const v = process.env.WGIT_THREADS;
  if (v === undefined || v === '') return Math.min(8, os.availableParallelism());
  return parseInteger(v, {
    what: 'WGIT_THREADS',
    code: 'E_BAD_ENV',
    min: 1,
    max: MAX_THREADS,
    data: { name: 'WGIT_THREADS' },
  });
}

function isDefault(threads: number): boolean {
  try {
    return threads === defaultThreads();
  } catch {
    return false;
  }
}

/**
 * Worker options: no flags of the parent but its export conditions (so
 * `@wgit/*` resolves to the same files in the workers); others, such as
 * --input-type or --eval, would stop the host from starting.
 */
function workerArgv(): string[] {
  const out: string[] = [];
  const argv = process.execArgv;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a.startsWith('--conditions=') || (a.startsWith('-C') && a.length > 2)) out.push(a);
    else if ((a === '--conditions' || a === '-C') && i + 1 < argv.length) out.push(a, argv[++i]);
  }
  return out;
}

/** tsx's loader API, for handler modules given as .ts URLs, when this module itself runs from source. */
function tsxApi(): string | null {
  if (!import.meta.url.endsWith('.ts')) return null;
  try {
    return import.meta.resolve('tsx/esm/api');
  } catch {
    return null;
  }
}

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
}

interface Slot {
  worker: Worker;
  threadId: number;
  pending: Map<number, Pending>;
  /** Set when the pool ends this worker on purpose: its exit is no failure. */
  ending: boolean;
  exited: boolean;
}

type Reply = { ready: true; threadId: number } | { id: number; result?: unknown; error?: WireError };

const pools = new Map<number, WorkerPool>();

/**
 * The pool of `threads` workers (default: defaultThreads()), started on first
 * use and shared by every caller asking for the same count. Each acquire is
 * matched by one release().
 */
export async function acquireWorkerPool(threads: number = defaultThreads()): Promise<WorkerPool> {
  if (!Number.isInteger(threads) || threads < 1 || threads > MAX_THREADS) {
    throw new WgitError('E_INTERNAL', `worker thread count must be an integer from 1 to ${MAX_THREADS}`, { threads });
  }
  let pool = pools.get(threads);
  if (!pool || pool.failure || pool.closed) {
    pool = new WorkerPool(threads);
    pools.set(threads, pool);
  }
  pool.users++;
  try {
    await pool.ready;
  } catch (e) {
    pool.users--;
    throw e;
  }
  return pool;
}

export class WorkerPool {
  readonly threads: number;
  /** Resolves once every worker has started. */
  readonly ready: Promise<void>;
  /** Acquires not yet released. */
  users = 0;
  /** The first worker failure; set, the pool takes no more work. */
  failure: WgitError | null = null;
  closed = false;
  private readonly slots: Slot[] = [];
  private readonly keys = new Set<string>();
  private readonly breakListeners = new Set<(e: WgitError) => void>();
  private nextId = 1;

  constructor(threads: number) {
    this.threads = threads;
    const workerData = { tsx: tsxApi() };
    const execArgv = workerArgv();
    const started: Promise<void>[] = [];
    for (let i = 0; i < threads; i++) {
      const worker = new Worker(HOST_URL, { workerData, execArgv });
      const slot: Slot = { worker, threadId: worker.threadId, pending: new Map(), ending: false, exited: false };
      this.slots.push(slot);
      started.push(this.listen(slot));
    }
    this.ready = Promise.all(started).then(
      () => {},
      (e) => {
        this.break(e);
        throw e;
      },
    );
    // The acquirer sees a failed start; nobody else need.
    this.ready.catch(() => {});
  }

  /** The workers' thread ids, worker 0 first. */
  get threadIds(): number[] {
    return this.slots.map((s) => s.threadId);
  }

  /** Calls `fn` once if the pool breaks; returns the function that stops listening. */
  onBreak(fn: (e: WgitError) => void): () => void {
    this.breakListeners.add(fn);
    return () => this.breakListeners.delete(fn);
  }

  private listen(slot: Slot): Promise<void> {
    return new Promise((resolve, reject) => {
      let ready = false;
      let why = '';
      slot.worker.on('message', (m: Reply) => {
        if ('ready' in m) {
          ready = true;
          // Idle workers must not keep the process alive; see post().
          slot.worker.unref();
          resolve();
          return;
        }
        const p = slot.pending.get(m.id);
        if (!p) return;
        slot.pending.delete(m.id);
        if (slot.pending.size === 0) slot.worker.unref();
        if (m.error) p.reject(fromWire(m.error));
        else p.resolve(m.result);
      });
      slot.worker.on('error', (e) => {
        why = e instanceof Error ? e.message : String(e);
      });
      slot.worker.on('exit', (code) => {
        slot.exited = true;
        if (slot.ending && slot.pending.size === 0) return;
        const err = new WgitError(
          'E_WORKER_EXIT',
          `worker thread ${slot.threadId} stopped (exit code ${code}${why ? `: ${why}` : ''})`,
          { threadId: slot.threadId, exitCode: code, ...(why ? { reason: why } : {}) },
        );
        for (const p of slot.pending.values()) p.reject(err);
        slot.pending.clear();
        if (!ready) reject(err);
        if (!slot.ending) this.break(err);
      });
    });
  }

  /** Marks the pool broken and lets the other workers go once they have answered their jobs. */
  private break(err: WgitError): void {
    if (this.failure || this.closed) return;
    this.failure = err;
    if (pools.get(this.threads) === this) pools.delete(this.threads);
    for (const fn of this.breakListeners) fn(err);
    this.breakListeners.clear();
    void this.end();
  }

  private live(): void {
    if (this.failure) throw this.failure;
    if (this.closed) throw new WgitError('E_INTERNAL', 'the worker pool was closed', { threads: this.threads });
  }

  private post(slot: Slot, msg: Record<string, unknown>, transfer?: readonly TransferListItem[]): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const id = this.nextId++;
      // Keep the event loop alive exactly while a worker owes a result.
      if (slot.pending.size === 0) slot.worker.ref();
      slot.pending.set(id, { resolve, reject });
      try {
        slot.worker.postMessage({ ...msg, id }, transfer);
      } catch (e) {
        slot.pending.delete(id);
        if (slot.pending.size === 0) slot.worker.unref();
        reject(e);
      }
    });
  }

  /**
   * Installs the handler module at `url` under `key` in every worker, each
   * calling its `install(data)`. A key is installed once; uninstall frees it.
   */
  async install(key: string, url: URL | string, data?: unknown): Promise<void> {
    this.live();
    if (this.keys.has(key)) {
      throw new WgitError('E_INTERNAL', `worker handler ${key} is already installed`, { key });
    }
    this.keys.add(key);
    const href = url instanceof URL ? url.href : url;
    const results = await Promise.allSettled(
      this.slots.map((s) => this.post(s, { op: 'install', key, url: href, data })),
    );
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) {
      await this.uninstall(key);
      throw (failed as PromiseRejectedResult).reason;
    }
  }

  /** Removes the handler under `key` from every worker, calling its close(); jobs sent before it run first. */
  async uninstall(key: string): Promise<void> {
    if (!this.keys.delete(key) || this.failure || this.closed) return;
    const results = await Promise.allSettled(this.slots.map((s) => this.post(s, { op: 'uninstall', key })));
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
  }

  /** Runs one job on the handler under `key`; its errors keep their WgitError code and data. */
  run<R = unknown>(key: string, payload: unknown, opts: RunOptions = {}): Promise<R> {
    try {
      this.live();
      if (!this.keys.has(key)) throw new WgitError('E_INTERNAL', `no worker handler ${key}`, { key });
    } catch (e) {
      return Promise.reject(e);
    }
    let slot: Slot;
    if (opts.worker !== undefined) {
      slot = this.slots[opts.worker];
      if (!slot) {
        return Promise.reject(
          new WgitError('E_INTERNAL', `no worker ${opts.worker} in a pool of ${this.threads}`, { worker: opts.worker }),
        );
      }
    } else {
      slot = this.slots[0];
      for (const s of this.slots) if (s.pending.size < slot.pending.size) slot = s;
    }
    return this.post(slot, { op: 'run', key, payload }, opts.transfer) as Promise<R>;
  }

  /**
   * Ends one acquire. A pool of the process's thread count stays for the
   * process (its idle workers hold nothing open); another ends with its last user.
   */
  async release(): Promise<void> {
    this.users = Math.max(0, this.users - 1);
    if (this.users === 0 && !this.closed && !this.failure && !isDefault(this.threads)) await this.close();
  }

  /** Ends every worker once it has answered its jobs, after its handlers have closed. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (pools.get(this.threads) === this) pools.delete(this.threads);
    await this.end();
  }

  private async end(): Promise<void> {
    this.keys.clear();
    await Promise.all(
      this.slots.map(async (slot) => {
        if (slot.exited) return;
        // Queued behind the jobs already sent: they are answered first.
        await this.post(slot, { op: 'shutdown' }).catch(() => {});
        slot.ending = true;
        if (!slot.exited) await slot.worker.terminate();
      }),
    );
  }
}
