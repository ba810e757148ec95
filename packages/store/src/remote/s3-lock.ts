import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { WgitError } from '@wgit/core';
import type { S3Store } from './s3-client.js';

/** How long a lock object counts (ms); a holder moves one ref in well under a second. */
export const LOCK_TTL_MS = 60_000;

/**
 * A lock for servers that ignore conditional writes (s3rver, some
 * S3-compatible stores), built only from plain PUT, LIST and DELETE on a
 * strongly consistent store: each contender PUTs its own key
 * `locks/<ref>/<expiry>-<owner>` (no overwrite is possible, the owner part is
 * random), then LISTs the folder. It holds the lock only if its key is the
 * only live one there; otherwise it deletes its key and backs off for a
 * random while. Two contenders can both back off (then they retry), but both
 * cannot hold: whichever PUT finished second lists after the first's PUT, and
 * sees it. Keys past their expiry belong to dead owners and are deleted.
 */
export async function acquireLockObject(
  s3: S3Store,
  ref: string,
  opts: { waitMs?: number } = {},
): Promise<{ release(): Promise<void> }> {
  const folder = `locks/${ref}/`;
  const owner = `${hostname()
    .replace(/[^A-Za-z0-9.-]/g, '_')
    .slice(0, 40)}.${process.pid}.${randomBytes(6).toString('hex')}`;
  const deadline = Date.now() + (opts.waitMs ?? Number(process.env.WGIT_S3_LOCK_WAIT_MS ?? 60_000));
  let delay = 20;
  for (;;) {
    const expires = Date.now() + LOCK_TTL_MS;
    const mine = `${folder}${String(expires).padStart(15, '0')}-${owner}`;
    await s3.put(mine, JSON.stringify({ owner, expires }));
    const now = Date.now();
    let rivals = 0;
    for (const o of await s3.list(folder)) {
      if (o.rel === mine) continue;
      const exp = Number(/^(\d{15})-/.exec(o.rel.slice(folder.length))?.[1] ?? 0);
      if (exp < now) await s3.delete(o.rel);
      else rivals++;
    }
    if (rivals === 0) {
      let released = false;
      return {
        release: async () => {
          if (released) return;
          released = true;
          await s3.delete(mine);
        },
      };
    }
    await s3.delete(mine);
    if (Date.now() > deadline)
      throw new WgitError('E_REMOTE_LOCKED', `${s3.url}: ref ${ref} stayed locked by another pusher; re-run the push`, {
        ref,
      });
    await sleep(delay + Math.random() * delay * 2);
    delay = Math.min(delay * 2, 500);
  }
}
