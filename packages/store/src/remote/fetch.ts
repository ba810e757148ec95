import * as path from 'node:path';
import { isWgitError, WgitError } from '@wgit/core';
import type { StorageBackend } from '../backend/types.js';
import { MAX_CHUNK_HEADER, parseChunkHeader } from '../chunk-file.js';
import { fsyncDir } from '../fsutil.js';
import { checkRefName } from '../names.js';
import { reachableChunks, walkCommits } from '../ops/reachability.js';
import { startRunner } from '../pool.js';
import { clearShallow, markShallow } from '../shallow.js';
import { type ObjectLinks, OID_RE, parseLinks, verifyAndParse } from './gitobj.js';
import { ProgressMeter, parallel, type TransferProgress } from './progress.js';
import { type RemoteHost, setTracking, transferParallelism } from './push.js';

export interface FetchResult {
  /** Remote branches and where their tracking refs now point. */
  branches: { branch: string; tracking: string; old: string | null; new: string }[];
  tags: { tag: string; commit: string; status: 'new' | 'same' | 'kept-local' }[];
  received: { objects: number; chunks: number; bytes: number };
  seconds: number;
}

/** The largest chunk file a remote may hand us: the biggest chunk size a repository allows, plus its header. */
const MAX_REMOTE_CHUNK = MAX_CHUNK_HEADER + (1 << 30);

function remoteError(what: string, why: string, data: Record<string, unknown>): WgitError {
  return new WgitError('E_REMOTE_CORRUPT', `remote ${what} ${why}; nothing was updated`, data);
}

/** The remote's branches and tags, names and ids checked (a hostile remote cannot name a ref outside its folder). */
export async function remoteRefs(
  remote: StorageBackend,
): Promise<{ heads: Map<string, string>; tags: Map<string, string> }> {
  const check = async (prefix: 'refs/heads/' | 'refs/tags/', kind: 'branch' | 'tag') => {
    const out = new Map<string, string>();
    for (const [full, oid] of await remote.refs.listRefs(prefix)) {
      const short = full.slice(prefix.length);
      try {
        checkRefName(short, kind);
      } catch {
        throw remoteError(`${kind} ${JSON.stringify(short.slice(0, 100))}`, 'has an invalid name', { ref: full });
      }
      if (!OID_RE.test(oid)) throw remoteError(`ref ${full}`, 'does not hold an object id', { ref: full });
      out.set(short, oid);
    }
    return out;
  };
  return { heads: await check('refs/heads/', 'branch'), tags: await check('refs/tags/', 'tag') };
}

/**
 * Copies every git object the tips reach and the local store lacks, each
 * checked against its id before it is placed. Walks through local objects
 * too (an interrupted fetch may have left a commit without its tree), in
 * parallel. Returns the commits reached.
 */
async function fetchObjects(
  host: RemoteHost,
  remote: StorageBackend,
  tips: string[],
  meter: ProgressMeter,
  received: FetchResult['received'],
): Promise<Set<string>> {
  const commits = new Set<string>();
  const expect = new Map<string, ObjectLinks['type']>(tips.map((t) => [t, 'commit']));
  const pending = [...expect.keys()];
  const dirs = new Set<string>();
  const waiters: (() => void)[] = [];
  const wake = () => {
    for (const w of waiters.splice(0)) w();
  };
  let active = 0;
  let failure: { e: unknown } | null = null;
  const visit = async (oid: string) => {
    const kind = expect.get(oid)!;
    let links: ObjectLinks;
    const local = await host.backend.objects.getObject(oid);
    if (local) links = parseLinks(oid, local);
    else {
      const bytes = await remote.objects.getObject(oid);
      if (!bytes) throw remoteError(`${kind} ${oid}`, 'is missing', { oid });
      links = verifyAndParse(oid, bytes, kind);
      if (links.type !== kind)
        throw remoteError(`object ${oid}`, `is a ${links.type} where a ${kind} belongs`, { oid });
      await host.backend.objects.place(oid, bytes, false);
      dirs.add(path.dirname(host.backend.objects.pathOf(oid)));
      received.objects++;
      received.bytes += bytes.length;
      meter.add(bytes.length);
    }
    if (kind === 'commit') commits.add(oid);
    const next: [string[], ObjectLinks['type']][] = [
      [links.commits, 'commit'],
      [links.trees, 'tree'],
      [links.blobs, 'blob'],
    ];
    for (const [ids, t] of next)
      for (const id of ids) {
        if (expect.has(id)) continue;
        expect.set(id, t);
        pending.push(id);
      }
  };
  const worker = async () => {
    for (;;) {
      if (failure) return;
      const oid = pending.pop();
      if (oid === undefined) {
        if (active === 0) return wake();
        await new Promise<void>((r) => waiters.push(r));
        continue;
      }
      active++;
      try {
        await visit(oid);
      } catch (e) {
        failure ??= { e };
      } finally {
        active--;
        wake();
      }
    }
  };
  await Promise.all(Array.from({ length: transferParallelism() }, worker));
  if (failure) throw (failure as { e: unknown }).e;
  for (const d of dirs) await fsyncDir(d);
  return commits;
}

/**
 * Fetches chunk files the local store lacks, delta bases first, each decoded
 * through its chain and hashed against its id before it is placed: a corrupt
 * remote chunk never enters. The decoding and hashing run on the process's
 * worker threads (pool.ts), bases read from the local store where they were
 * placed first, so the transfers go on while chunks are checked.
 */
async function fetchChunks(
  host: RemoteHost,
  remote: StorageBackend,
  wanted: string[],
  meter: ProgressMeter,
  received: FetchResult['received'],
): Promise<void> {
  const local = host.backend.chunks;
  // The runner works on this many bytes, about: chunks are 4 MiB unless a repository chose otherwise.
  const runner = await startRunner(wanted.length * 4 * 1024 * 1024, local.dir, local.tmpDir);
  const inflight = new Map<string, Promise<void>>();
  const one = (id: string): Promise<void> => {
    let p = inflight.get(id);
    if (!p) {
      p = (async () => {
        if (await local.hasChunk(id)) return;
        const bytes = await remote.chunks.getChunk(id, MAX_REMOTE_CHUNK);
        if (!bytes) throw remoteError(`chunk ${id}`, 'is missing', { chunk: id });
        let base: string | null;
        try {
          base = parseChunkHeader(id, bytes.subarray(0, MAX_CHUNK_HEADER), bytes.length).base;
        } catch (e) {
          throw remoteError(`chunk ${id}`, `is damaged: ${(e as Error).message}`, { chunk: id });
        }
        if (base) await one(base);
        try {
          await runner.run({ op: 'verify', id, bytes, maxDepth: 255 });
        } catch (e) {
          if (isWgitError(e) && (e.code === 'E_CORRUPT_CHUNK' || e.code === 'E_MISSING_CHUNK'))
            throw remoteError(`chunk ${id}`, `is damaged: ${e.message}`, { chunk: id });
          throw e;
        }
        await local.putChunkIfAbsent(id, bytes);
        received.chunks++;
        received.bytes += bytes.length;
        meter.add(bytes.length);
      })();
      inflight.set(id, p);
    }
    return p;
  };
  try {
    await parallel(wanted, transferParallelism(), one);
  } finally {
    await runner.close();
  }
}

/**
 * Brings the remote's branches (as `refs/remotes/<name>/<branch>`) and new
 * tags into the local repository. Objects and chunks are verified before
 * they enter; refs move only once everything they reach is stored. With
 * `depth: 1`, chunks are fetched only for the branch and tag tips (the
 * history's commits, trees and records still come whole: they are small).
 */
export async function fetchRemote(
  host: RemoteHost,
  remote: StorageBackend,
  opts: {
    name: string;
    depth?: number;
    onProgress?: (p: TransferProgress) => void;
    branches?: string[];
    /** The remote's URL, as the shallow marker records it. */
    url?: string;
  },
): Promise<FetchResult> {
  const meter = new ProgressMeter(opts.onProgress);
  const received = { objects: 0, chunks: 0, bytes: 0 };
  const { heads, tags } = await remoteRefs(remote);
  if (opts.branches) for (const b of heads.keys()) if (!opts.branches.includes(b)) heads.delete(b);
  const tips = [...new Set([...heads.values(), ...tags.values()])];
  meter.phase = 'objects';
  const commits = await fetchObjects(host, remote, tips, meter, received);
  const src = {
    git: host.git,
    chunks: {
      readHeader: async (id: string) => host.chunks.readHeader(id),
    },
  };
  const walked =
    opts.depth === 1
      ? await Promise.all(tips.map((t) => host.git.readCommit(t)))
      : [
          ...(
            await walkCommits(
              host.git,
              [...commits].map((c) => [c, 'fetched'] as [string, string]),
              () => {},
            )
          ).values(),
        ];
  const needed = await reachableChunks(src, walked, true);
  const missing: string[] = [];
  for (const id of needed) if (!(await host.backend.chunks.hasChunk(id))) missing.push(id);
  meter.phase = 'chunks';
  meter.objectsTotal = received.objects + missing.length;
  await fetchChunks(host, remote, missing, meter, received);
  // A shallow fetch says which commits it brought whole (fsck expects the others' chunks to be absent);
  // a full one has brought every chunk of the remote's history.
  if (opts.depth === 1) await markShallow(host.gitdir, host.tmpDir, tips, opts.url ?? opts.name);
  else await clearShallow(host.gitdir);
  const result: FetchResult = { branches: [], tags: [], received, seconds: 0 };
  for (const [branch, oid] of heads) {
    const tracking = `refs/remotes/${opts.name}/${branch}`;
    const old = await host.refs.readRef(tracking);
    await setTracking(host, tracking, oid, 'fetch');
    result.branches.push({ branch, tracking, old, new: oid });
  }
  for (const [tag, oid] of tags) {
    const full = `refs/tags/${tag}`;
    const cur = await host.refs.readRef(full);
    if (cur === oid) result.tags.push({ tag, commit: oid, status: 'same' });
    else if (cur !== null) result.tags.push({ tag, commit: cur, status: 'kept-local' });
    else {
      await setTracking(host, full, oid, 'fetch');
      result.tags.push({ tag, commit: oid, status: 'new' });
    }
  }
  meter.tick(true);
  result.seconds = meter.snapshot().elapsedSeconds;
  return result;
}
