import { constants as fsc } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { WgitError } from '@wgit/core';
import { HOST, isPidAlive, mapFsError, parseTempName, tempName } from '../../fsutil.js';
import { inspectLock, LockFile } from './lock.js';

/** How long a gc lock is trusted without a live owner on this host. */
const GC_LOCK_STALE_SECONDS = 3600;
/** The same for a ref lock. */
const REF_LOCK_STALE_SECONDS = 30;

/**
 * Who is working in a local `.wgit` folder: every writer leaves a marker
 * file in the temp folder (named with its host and pid) while it has chunks
 * that no ref reaches yet, and gc runs under `wgit/gc.lock` only when no
 * live writer is left. Temp files and locks whose process is gone are
 * reported stale (status) and removed (gc).
 */
export class FolderActivity {
  readonly gcLock: string;

  constructor(
    readonly gitdir: string,
    readonly wgitDir: string,
    readonly tmpDir: string,
  ) {
    this.gcLock = path.join(wgitDir, 'gc.lock');
  }

  /**
   * Marks this process as writing, so gc never runs while a commit has chunks
   * that no ref reaches yet. Returns the function that removes the mark.
   */
  async beginWrite(): Promise<() => Promise<void>> {
    await fsp.mkdir(this.tmpDir, { recursive: true });
    const marker = path.join(this.tmpDir, tempName('active'));
    try {
      const fh = await fsp.open(marker, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL);
      await fh.close();
    } catch (e) {
      throw mapFsError(e, marker);
    }
    const release = () => fsp.unlink(marker).catch(() => {});
    const gc = await inspectLock(this.gcLock, GC_LOCK_STALE_SECONDS);
    if (gc.state === 'live') {
      await release();
      throw new WgitError('E_LOCKED', `wgit gc is running (process ${gc.owner?.pid ?? '?'}); retry when it is done`);
    }
    return release;
  }

  /** Runs `fn` under the gc lock, once no other live process is writing. */
  async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const lock = await LockFile.acquire(this.gcLock, {
      what: 'the repository (gc)',
      waitMs: 0,
      staleSeconds: GC_LOCK_STALE_SECONDS,
    });
    try {
      const live = (await this.liveTemps()).filter((n) => parseTempName(n)?.pid !== process.pid);
      if (live.length > 0) {
        const pid = parseTempName(live[0])?.pid;
        throw new WgitError(
          'E_LOCKED',
          `another wgit process (pid ${pid}) is writing to the repository; run gc when it is done`,
        );
      }
      return await fn();
    } finally {
      await lock.release();
    }
  }

  /** Entries in the temp folder that belong to a live process on this host. */
  private async liveTemps(): Promise<string[]> {
    const names = await fsp.readdir(this.tmpDir).catch(() => [] as string[]);
    return names.filter((n) => {
      const t = parseTempName(n);
      return t && t.host === HOST.replace(/[^A-Za-z0-9]/g, '_') && isPidAlive(t.pid);
    });
  }

  /** Temp files left by processes that are gone. */
  async staleTemps(): Promise<string[]> {
    const names = await fsp.readdir(this.tmpDir).catch(() => [] as string[]);
    const live = new Set(await this.liveTemps());
    return names.filter((n) => !live.has(n)).sort();
  }

  /** Lock files (refs, gc) whose owner is gone, relative to the git folder. */
  async staleLocks(): Promise<string[]> {
    const out: string[] = [];
    const walk = async (dir: string): Promise<void> => {
      for (const e of await fsp.readdir(dir, { withFileTypes: true }).catch(() => [])) {
        const full = path.join(dir, e.name);
        if (e.isDirectory()) await walk(full);
        else if (e.name.endsWith('.lock')) {
          const v = await inspectLock(full, REF_LOCK_STALE_SECONDS);
          if (v.state === 'stale') out.push(path.relative(this.gitdir, full));
        }
      }
    };
    await walk(path.join(this.gitdir, 'refs'));
    if ((await inspectLock(this.gcLock, GC_LOCK_STALE_SECONDS)).state === 'stale')
      out.push(path.relative(this.gitdir, this.gcLock));
    return out.sort();
  }
}
