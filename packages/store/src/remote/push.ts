import { isWgitError, WgitError } from '@wgit/core';
import type { FolderBackend, FolderRefs } from '../backend/fs/index.js';
import type { StorageBackend } from '../backend/types.js';
import type { ChunkStore } from '../chunkstore.js';
import type { GitStore } from '../gitstore.js';
import { currentIdentity } from '../identity.js';
import { reachable } from '../ops/reachability.js';
import { OID_RE } from './gitobj.js';
import { ProgressMeter, parallel, type TransferProgress } from './progress.js';

/** What remote operations need of the local repository (Repository satisfies it). */
export interface RemoteHost {
  readonly gitdir: string;
  readonly tmpDir: string;
  readonly git: GitStore;
  readonly chunks: ChunkStore;
  readonly backend: FolderBackend;
  readonly refs: FolderRefs;
  resolve(rev: string): Promise<string>;
}

export interface RefUpdate {
  /** Full local ref name (`refs/heads/main`, `refs/tags/v1`). */
  local: string;
  /** Full remote ref name. */
  remote: string;
}

export interface RefUpdateResult {
  ref: string;
  old: string | null;
  new: string;
  status: 'created' | 'fast-forward' | 'forced' | 'up-to-date';
}

export interface PushResult {
  updates: RefUpdateResult[];
  sent: { objects: number; chunks: number; bytes: number };
  /** What the remote had already. */
  present: { objects: number; chunks: number };
  seconds: number;
}

export const transferParallelism = (): number => {
  const n = Number(process.env.WGIT_REMOTE_PARALLEL ?? 8);
  return Number.isInteger(n) && n > 0 && n <= 64 ? n : 8;
};

/** Whether `ancestor` is `descendant` or one of its ancestors, in the local history (false when history is missing). */
export async function isAncestor(git: GitStore, ancestor: string, descendant: string): Promise<boolean> {
  const seen = new Set<string>();
  const stack = [descendant];
  while (stack.length > 0) {
    const c = stack.pop()!;
    if (c === ancestor) return true;
    if (seen.has(c)) continue;
    seen.add(c);
    try {
      stack.push(...(await git.readCommit(c)).parents);
    } catch {
      // A commit we do not have: that line of history cannot reach the ancestor here.
    }
  }
  return false;
}

/** A remote ref's value, or E_REMOTE_CORRUPT when it does not hold an object id. */
export async function readRemoteRef(remote: StorageBackend, name: string): Promise<string | null> {
  let v: string | null;
  try {
    v = await remote.refs.readRef(name);
  } catch (e) {
    if (isWgitError(e) && e.code === 'E_CORRUPT')
      throw new WgitError('E_REMOTE_CORRUPT', `remote ref ${name} does not hold an object id`, { ref: name });
    throw e;
  }
  if (v !== null && !OID_RE.test(v))
    throw new WgitError('E_REMOTE_CORRUPT', `remote ref ${name} does not hold an object id`, { ref: name });
  return v;
}

function nonFastForward(ref: string, why: string): WgitError {
  return new WgitError(
    'E_NON_FAST_FORWARD',
    `${ref}: ${why}; fetch and build on the remote's commits first, or push with --force`,
    { ref },
  );
}

/**
 * Sends the commits, trees, blobs and chunks (delta bases included) the
 * updates need and the remote lacks, in parallel, then moves each remote ref
 * by compare-and-swap from the value the push started from. Nothing moves a
 * ref before everything it names is stored, so an interrupted push leaves the
 * remote's refs as they were and the next push sends only what is missing.
 */
export async function push(
  host: RemoteHost,
  remote: StorageBackend,
  updates: RefUpdate[],
  opts: { force?: boolean; onProgress?: (p: TransferProgress) => void; trackingPrefix?: string } = {},
): Promise<PushResult> {
  const meter = new ProgressMeter(opts.onProgress);
  const planned: { u: RefUpdate; oid: string; old: string | null; status: RefUpdateResult['status'] }[] = [];
  for (const u of updates) {
    const oid = await host.refs.readRef(u.local);
    if (!oid) throw new WgitError('E_UNKNOWN_REVISION', `no local ref ${u.local} to push`, { ref: u.local });
    const old = await readRemoteRef(remote, u.remote);
    let status: RefUpdateResult['status'];
    if (old === oid) status = 'up-to-date';
    else if (old === null) status = 'created';
    else if (u.remote.startsWith('refs/tags/')) {
      if (!opts.force) throw nonFastForward(u.remote, 'the remote tag points elsewhere');
      status = 'forced';
    } else if (await isAncestor(host.git, old, oid)) status = 'fast-forward';
    else if (opts.force) status = 'forced';
    else throw nonFastForward(u.remote, `the remote has ${old.slice(0, 12)}, which is not in the pushed history`);
    planned.push({ u, oid, old, status });
  }
  const roots = planned.filter((p) => p.status !== 'up-to-date').map((p) => p.oid);
  const result: PushResult = {
    updates: [],
    sent: { objects: 0, chunks: 0, bytes: 0 },
    present: { objects: 0, chunks: 0 },
    seconds: 0,
  };
  if (roots.length > 0) {
    const need = await reachable(host, roots);
    const [haveObjects, haveChunks] = await Promise.all([
      remote.objects.listObjects().then((l) => new Set(l)),
      remote.chunks.listChunks().then((l) => new Set(l)),
    ]);
    const objects = [...need.blobs, ...need.trees, ...need.commits].filter((o) => !haveObjects.has(o));
    const chunks = [...need.chunks].filter((c) => !haveChunks.has(c));
    result.present.objects = need.blobs.size + need.trees.size + need.commits.size - objects.length;
    result.present.chunks = need.chunks.size - chunks.length;
    for (const c of chunks) meter.bytesTotal += (await host.backend.chunks.chunkInfo(c))?.size ?? 0;
    meter.objectsTotal = objects.length + chunks.length;
    const n = transferParallelism();
    meter.phase = 'chunks';
    await parallel(chunks, n, async (id) => {
      const bytes = await host.backend.chunks.getChunk(id, Number.MAX_SAFE_INTEGER);
      if (!bytes) throw new WgitError('E_MISSING_CHUNK', `chunk ${id.slice(0, 12)} is missing locally (run wgit fsck)`);
      if (await remote.chunks.putChunkIfAbsent(id, bytes)) {
        result.sent.chunks++;
        result.sent.bytes += bytes.length;
      }
      meter.add(bytes.length);
    });
    meter.phase = 'objects';
    // Commits last: a remote that lists a commit has its trees and blobs (helps a later push's listing).
    const byKind = [objects.filter((o) => !need.commits.has(o)), objects.filter((o) => need.commits.has(o))];
    for (const group of byKind)
      await parallel(group, n, async (oid) => {
        const bytes = await host.backend.objects.getObject(oid);
        if (!bytes) throw new WgitError('E_CORRUPT', `object ${oid.slice(0, 12)} is missing locally (run wgit fsck)`);
        if (await remote.objects.putObjectIfAbsent(oid, bytes)) {
          result.sent.objects++;
          result.sent.bytes += bytes.length;
        }
        meter.bytesTotal += bytes.length;
        meter.add(bytes.length);
      });
  }
  meter.phase = 'refs';
  const identity = currentIdentity();
  for (const p of planned) {
    if (p.status !== 'up-to-date') {
      try {
        await remote.refs.compareAndSwapRef(
          p.u.remote,
          p.old,
          p.oid,
          { message: `push: ${p.status}`, identity },
          { movedCode: 'E_NON_FAST_FORWARD' },
        );
      } catch (e) {
        if (isWgitError(e) && e.code === 'E_NON_FAST_FORWARD')
          throw nonFastForward(p.u.remote, 'another push moved the remote ref while this one ran');
        throw e;
      }
    }
    result.updates.push({ ref: p.u.remote, old: p.old, new: p.oid, status: p.status });
    if (opts.trackingPrefix && p.u.remote.startsWith('refs/heads/'))
      await setTracking(host, `${opts.trackingPrefix}${p.u.remote.slice('refs/heads/'.length)}`, p.oid, 'push');
  }
  meter.tick(true);
  result.seconds = meter.snapshot().elapsedSeconds;
  return result;
}

/** Moves a remote-tracking ref (`refs/remotes/<remote>/<branch>`) to what the remote was seen to hold. */
export async function setTracking(host: RemoteHost, name: string, oid: string, why: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    const cur = await host.refs.readRef(name);
    if (cur === oid) return;
    try {
      await host.refs.compareAndSwapRef(name, cur, oid, { message: `${why}: tracking`, identity: currentIdentity() });
      return;
    } catch (e) {
      if (!(isWgitError(e) && e.code === 'E_BRANCH_MOVED') || attempt >= 3) throw e;
    }
  }
}
