import { randomBytes } from 'node:crypto';
import { constants as fsc } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { hostname } from 'node:os';
import * as path from 'node:path';
import { isMainThread } from 'node:worker_threads';
import { writeFileAtomic } from '@wgit/core/atomic';
import { WgitError } from '@wgit/core/errors';
import { parseInteger } from '@wgit/core/parse';

/**
 * Test hook for fault injection: called before every file write the store
 * makes; throwing from it simulates a failing disk (e.g. ENOSPC) without
 * filling one.
 */
export type WriteFaultHook = (file: string, bytes: number) => void;
let writeFaultHook: WriteFaultHook | null = null;

export function setWriteFaultHook(hook: WriteFaultHook | null): void {
  writeFaultHook = hook;
}

/** The hook lives in this thread's memory: while one is set, chunk work stays on this thread (pool.ts). */
export function hasWriteFaultHook(): boolean {
  return writeFaultHook !== null;
}

/**
 * Test-only free-space budget: fault injection for a full disk that reaches
 * every thread, without root or a real full file system. While one is set,
 * each file write the store makes (chunks, records, checked-out files), on
 * this thread and in the chunk workers, first takes its size from the budget
 * with one atomic subtraction; a write the budget cannot cover fails with
 * ENOSPC, as on a full disk, and so does every later one. The budget lives in
 * a SharedArrayBuffer that chunk runners hand to their workers when they
 * install (pool.ts), so, unlike the hook, it keeps chunk work on the workers.
 * Set with setWriteBudget() or, for a whole process (the CLI),
 * WGIT_TEST_WRITE_BUDGET=BYTES; unset, writes pay one null check.
 */
export interface WriteBudgetState {
  /** Bytes still allowed (negative once a write has been refused). */
  left: number;
  /** Writes refused, and how many of them were on worker threads. */
  refused: number;
  refusedInWorkers: number;
}
// Slots: 0 bytes left, 1 writes refused, 2 writes refused on a worker thread.
let writeBudgetSlots: BigInt64Array | null = null;

export function setWriteBudget(bytes: number | null): void {
  if (bytes === null) {
    writeBudgetSlots = null;
    return;
  }
  if (!Number.isSafeInteger(bytes) || bytes < 0) throw new RangeError(`write budget must be a byte count: ${bytes}`);
  writeBudgetSlots = new BigInt64Array(new SharedArrayBuffer(3 * 8));
  writeBudgetSlots[0] = BigInt(bytes);
}

/** The budget's memory, for chunk runners to hand to their workers; null when none is set. */
export function writeBudgetBuffer(): SharedArrayBuffer | null {
  return (writeBudgetSlots?.buffer as SharedArrayBuffer | undefined) ?? null;
}

export function writeBudgetState(): WriteBudgetState | null {
  const b = writeBudgetSlots;
  if (!b) return null;
  return {
    left: Number(Atomics.load(b, 0)),
    refused: Number(Atomics.load(b, 1)),
    refusedInWorkers: Number(Atomics.load(b, 2)),
  };
}

if (isMainThread) {
  // Workers get the main thread's buffer instead (a copy of the variable would be a second budget).
  const v = process.env.WGIT_TEST_WRITE_BUDGET;
  if (v !== undefined && v !== '')
    setWriteBudget(
      parseInteger(v, {
        what: 'WGIT_TEST_WRITE_BUDGET',
        code: 'E_BAD_ENV',
        min: 0,
        max: Number.MAX_SAFE_INTEGER,
        data: { name: 'WGIT_TEST_WRITE_BUDGET' },
      }),
    );
}

/** Wraps a worker's copy of the budget's memory (ChunkIO); null stays null. */
export function writeBudgetSlotsOf(buf: SharedArrayBuffer | null | undefined): BigInt64Array | null {
  return buf ? new BigInt64Array(buf) : null;
}

/**
 * Called before every file write the store makes: runs the fault hook and
 * charges the write budget (this thread's, or the one a worker was handed).
 */
export function checkFault(file: string, bytes: number, budget: BigInt64Array | null = writeBudgetSlots): void {
  if (writeFaultHook) writeFaultHook(file, bytes);
  if (budget === null) return;
  const n = BigInt(bytes);
  if (Atomics.sub(budget, 0, n) >= n) return;
  Atomics.add(budget, 1, 1n);
  if (!isMainThread) Atomics.add(budget, 2, 1n);
  throw Object.assign(new Error(`ENOSPC: no space left on device, write ${file}`), {
    code: 'ENOSPC',
    errno: -28,
    syscall: 'write',
    path: file,
  });
}

export const HOST = hostname();

/** Temp files carry the writer's host and pid so gc can tell a dead writer's leftovers from live work. */
export function tempName(purpose: string): string {
  return `${purpose}-${HOST.replace(/[^A-Za-z0-9]/g, '_')}-${process.pid}-${randomBytes(6).toString('hex')}`;
}

export function parseTempName(name: string): { host: string; pid: number } | null {
  const m = /^[a-z]+-([A-Za-z0-9_]+)-(\d+)-[0-9a-f]{12}(?:\.d)?$/.exec(name);
  return m ? { host: m[1], pid: Number(m[2]) } : null;
}

export function isPidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: the process exists but belongs to someone else.
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Turns low-level write failures into stable codes; a full disk is common enough to deserve its own. */
export function mapFsError(e: unknown, what: string): unknown {
  const code = (e as NodeJS.ErrnoException)?.code;
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new WgitError('E_DISK_FULL', `no space left on device while writing ${what}`, { path: what });
  }
  return e;
}

async function writeAllFd(fh: fsp.FileHandle, data: Uint8Array, file: string): Promise<void> {
  checkFault(file, data.length);
  let off = 0;
  while (off < data.length) {
    const { bytesWritten } = await fh.write(data, off, data.length - off);
    off += bytesWritten;
  }
}

/**
 * Writes `data` to `target` atomically (core's one atomic write): a temp file
 * in `tmpDir` (same file system, where gc finds what a killed writer left),
 * fsync, rename. A crash leaves either the old file or the new one, plus at
 * worst a temp file that gc removes. Callers fsync the folders they batch.
 */
export async function atomicWrite(tmpDir: string, target: string, data: Uint8Array | string): Promise<void> {
  try {
    await writeFileAtomic(target, data, {
      tempPath: path.join(tmpDir, tempName('w')),
      beforeWrite: checkFault,
      mkdirs: true,
      syncDir: false,
    });
  } catch (e) {
    throw mapFsError(e, target);
  }
}

/** A streamed temp file: chunks are appended, then `commit` fsyncs and renames it into place. */
export class TempFile {
  private constructor(
    readonly tmp: string,
    private fh: fsp.FileHandle | null,
    private readonly label: string,
  ) {}
  bytes = 0;

  static async create(tmpPath: string, label: string): Promise<TempFile> {
    try {
      const fh = await fsp.open(tmpPath, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o644);
      return new TempFile(tmpPath, fh, label);
    } catch (e) {
      throw mapFsError(e, label);
    }
  }

  async write(data: Uint8Array): Promise<void> {
    try {
      await writeAllFd(this.fh!, data, this.label);
      this.bytes += data.length;
    } catch (e) {
      throw mapFsError(e, this.label);
    }
  }

  async finish(): Promise<void> {
    try {
      await this.fh!.sync();
      await this.fh!.close();
      this.fh = null;
    } catch (e) {
      throw mapFsError(e, this.label);
    }
  }

  async abort(): Promise<void> {
    if (this.fh) await this.fh.close().catch(() => {});
    this.fh = null;
    await fsp.unlink(this.tmp).catch(() => {});
  }
}

export async function exists(p: string): Promise<boolean> {
  try {
    await fsp.lstat(p);
    return true;
  } catch {
    return false;
  }
}

export async function fsyncDir(dir: string): Promise<void> {
  try {
    const fh = await fsp.open(dir, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch {
    // Some file systems refuse fsync on directories; the rename is still atomic.
  }
}

/** Runs at most `n` of the given tasks at once. */
export function limiter(n: number): <T>(task: () => Promise<T>) => Promise<T> {
  let active = 0;
  const waiting: (() => void)[] = [];
  return async (task) => {
    while (active >= n) await new Promise<void>((resolve) => waiting.push(resolve));
    active++;
    try {
      return await task();
    } finally {
      active--;
      waiting.shift()?.();
    }
  };
}

/** fdatasync of a closed file: its data (and size) reach the disk. */
export async function datasyncFile(file: string): Promise<void> {
  const fh = await fsp.open(file, 'r+');
  try {
    await fh.datasync();
  } finally {
    await fh.close();
  }
}
