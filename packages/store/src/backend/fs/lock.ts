import { constants as fsc } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { WgitError } from '@wgit/core';
import { HOST, isPidAlive, mapFsError } from '../../fsutil.js';

export interface LockOwner {
  pid: number;
  host: string;
  time: number;
}

export interface LockOptions {
  /** How long to wait for a live holder before giving up (ms). */
  waitMs?: number;
  /** A lock whose owner cannot be checked (other host, unreadable) is broken after this age (s). */
  staleSeconds?: number;
  what: string;
}

/** An exclusive lock file created with O_EXCL; its content names the owner so a dead owner's lock can be broken. */
export class LockFile {
  private constructor(readonly file: string) {}
  private released = false;

  static async acquire(file: string, opts: LockOptions): Promise<LockFile> {
    const waitMs = opts.waitMs ?? 10_000;
    const staleSeconds = opts.staleSeconds ?? 30;
    const deadline = Date.now() + waitMs;
    let delay = 5;
    for (;;) {
      try {
        const fh = await fsp.open(file, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o644);
        try {
          const owner: LockOwner = { pid: process.pid, host: HOST, time: Date.now() };
          await fh.write(`${JSON.stringify(owner)}\n`);
        } catch (e) {
          // An ownerless lock would block others until it ages out: take it back.
          await fh.close().catch(() => {});
          await fsp.unlink(file).catch(() => {});
          throw mapFsError(e, file);
        }
        await fh.close();
        return new LockFile(file);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw mapFsError(e, file);
      }
      const verdict = await inspectLock(file, staleSeconds);
      if (verdict.state === 'gone') continue;
      if (verdict.state === 'stale') {
        await breakLock(file, verdict.ino);
        continue;
      }
      if (Date.now() >= deadline) {
        const o = verdict.owner;
        const who = o ? `process ${o.pid} on ${o.host} since ${new Date(o.time).toISOString()}` : 'another process';
        throw new WgitError(
          'E_LOCKED',
          `${opts.what} is locked by ${who}; retry, or delete ${file} if no wgit process is running`,
          { lock: file, owner: o },
        );
      }
      await sleep(delay + Math.floor(Math.random() * delay));
      delay = Math.min(delay * 2, 100);
    }
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    await fsp.unlink(this.file).catch(() => {});
  }
}

type Verdict =
  | { state: 'gone' }
  | { state: 'stale'; ino: number; owner: LockOwner | null }
  | { state: 'live'; owner: LockOwner | null };

export function parseOwner(text: string): LockOwner | null {
  try {
    const o = JSON.parse(text.trim()) as LockOwner;
    if (Number.isInteger(o.pid) && o.pid > 0 && typeof o.host === 'string' && typeof o.time === 'number') return o;
  } catch {
    // A holder killed between creating and filling the lock leaves it empty.
  }
  return null;
}

/** Decides whether an existing lock belongs to a live process. */
export async function inspectLock(file: string, staleSeconds: number): Promise<Verdict> {
  let st: Awaited<ReturnType<typeof fsp.stat>>;
  let text: string;
  try {
    st = await fsp.stat(file);
    text = await fsp.readFile(file, 'utf8');
  } catch {
    return { state: 'gone' };
  }
  const owner = parseOwner(text);
  const ageS = (Date.now() - st.mtimeMs) / 1000;
  if (owner && owner.host === HOST) {
    return isPidAlive(owner.pid) ? { state: 'live', owner } : { state: 'stale', ino: st.ino, owner };
  }
  return ageS > staleSeconds ? { state: 'stale', ino: st.ino, owner } : { state: 'live', owner };
}

/**
 * Breaks a stale lock without racing another breaker: move it aside, and if
 * what we moved is not the lock we judged stale (someone broke it and took a
 * fresh one meanwhile), put that one back.
 */
async function breakLock(file: string, ino: number): Promise<void> {
  // The name ends in .lock so plain git never mistakes it for a ref.
  const aside = `${file}-broken-${process.pid}-${Math.random().toString(36).slice(2)}.lock`;
  try {
    await fsp.rename(file, aside);
  } catch {
    return;
  }
  try {
    const st = await fsp.stat(aside);
    if (st.ino !== ino) {
      await fsp.link(aside, file).catch(() => {});
    }
  } finally {
    await fsp.unlink(aside).catch(() => {});
  }
}
