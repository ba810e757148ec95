import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { WgitError } from '@wgit/core';
import type { FolderChunks } from './backend/fs/chunks.js';
import { inspectLock } from './backend/fs/lock.js';
import { checkSetPaths } from './checkout.js';
import { isCheckoutMarker, removeStaleCheckoutTemps } from './checkout-temps.js';
import { ChunkStore } from './chunkstore.js';
import type { GitStore } from './gitstore.js';
import {
  lookupPath,
  readAllRecords,
  readShardHeader,
  readSideFileRecords,
  sideFileTreePath,
  streamTensor,
  type TensorSet,
} from './model.js';
import { describeError as describe, reachableChunks, tensorSetsOf, walkCommits } from './ops/reachability.js';
import { readShallow } from './shallow.js';

/**
 * What fsck and gc need from a repository. Passed in rather than imported,
 * so that the repository facade sits above its operations.
 */
export interface MaintainedRepository {
  readonly gitdir: string;
  readonly tmpDir: string;
  readonly git: GitStore;
  readonly chunks: ChunkStore<FolderChunks>;
  /** Reads HEAD, throwing when it is not a symbolic ref to a branch. */
  currentBranch(): Promise<string>;
  rootCommits(): Promise<{ refs: Map<string, string>; reflog: Set<string> }>;
  staleTemps(): Promise<string[]>;
  staleLocks(): Promise<string[]>;
}

export interface FsckProblem {
  code: string;
  message: string;
  commit?: string;
  tensor?: string;
  /** A side file kept in the chunk store. */
  file?: string;
  group?: string | null;
  chunk?: string;
  ref?: string;
}

export interface FsckResult {
  ok: boolean;
  commits: number;
  tensors: number;
  chunks: number;
  problems: FsckProblem[];
  warnings: string[];
  unreachableChunks: number;
  /**
   * A shallow clone (`clone --depth 1`): the commits fetched whole, and how
   * many tensors of the other commits have no chunks here, as expected.
   */
  shallow?: { complete: string[]; tensorsWithoutChunks: number };
}

/** Unreferenced chunks younger than this many seconds are kept by gc (override with `graceSeconds`). */
export const DEFAULT_GC_GRACE_SECONDS = 14 * 24 * 3600;

export interface GcResult {
  chunksRemoved: number;
  chunksKept: number;
  /** Unreferenced chunks kept because they are younger than the grace period. */
  chunksYoung: number;
  bytesFreed: number;
  tempFilesRemoved: number;
  /** Temp folders of killed checkouts (partial models beside their output) removed. */
  checkoutTempsRemoved: number;
  locksRemoved: number;
}

type Progress = { onProgress?: (e: { phase: string; done: number; total: number }) => void };

/**
 * Checks everything reachable: refs, commits, trees, manifests, records,
 * every chunk (decoded through its delta chain and re-hashed) and every
 * tensor's sha256. Each damaged tensor is reported with its commit.
 */
export async function fsckRepository(repo: MaintainedRepository, opts: Progress = {}): Promise<FsckResult> {
  const problems: FsckProblem[] = [];
  const warnings: string[] = [];
  try {
    await repo.currentBranch();
  } catch (e) {
    problems.push({ ...describe(e), ref: 'HEAD' });
  }
  let roots: Awaited<ReturnType<MaintainedRepository['rootCommits']>>;
  try {
    roots = await repo.rootCommits();
  } catch (e) {
    problems.push(describe(e));
    roots = { refs: new Map(), reflog: new Set() };
  }
  const starts: [string, string][] = [...roots.refs].map(([ref, oid]) => [oid, ref]);
  for (const oid of roots.reflog) starts.push([oid, 'reflog']);
  const commits = await walkCommits(repo.git, starts, (p) => problems.push(p));
  const shallow = await readShallow(repo.gitdir);
  let shallowTensors = 0;
  // A store of its own: every chunk is read from disk once in this run, then delta bases come from memory.
  const chunks = new ChunkStore(repo.chunks.backend, 64 * 1024 * 1024);

  const chunkOk = new Map<string, string | null>(); // chunk → null when good, else the error message
  const tensorOk = new Map<string, FsckProblem | null>();
  let tensorCount = 0;
  const total = commits.size;
  let done = 0;
  for (const c of commits.values()) {
    let sets: TensorSet[];
    try {
      sets = await tensorSetsOf(repo.git, c);
    } catch (e) {
      problems.push({ ...describe(e), commit: c.oid });
      continue;
    }
    for (const set of sets) {
      let records: Awaited<ReturnType<typeof readAllRecords>>;
      let fileRecords: Awaited<ReturnType<typeof readSideFileRecords>>;
      try {
        records = await readAllRecords(repo.git, set);
        // Large side files are chunk records too, checked the same way.
        fileRecords = await readSideFileRecords(repo.git, set);
        await checkBlobs(repo, set);
      } catch (e) {
        problems.push({ ...describe(e), commit: c.oid, group: set.group });
        continue;
      }
      const all = [...records.values(), ...fileRecords.values()];
      for (const rec of all) {
        const isTensor = records.get(rec.name) === rec;
        if (isTensor) tensorCount++;
        const key = `${rec.sha256}:${rec.byteLength}:${rec.chunks.map((x) => x.hash).join(',')}`;
        let verdict = tensorOk.get(key);
        if (verdict === undefined) {
          verdict = null;
          try {
            await streamTensor(chunks, set, rec, 255, () => {});
            for (const ch of rec.chunks) chunkOk.set(ch.hash, null);
          } catch (e) {
            const d = describe(e);
            verdict = { code: d.code, message: d.message, chunk: (e as WgitError).data?.chunk as string | undefined };
            if (verdict.chunk) chunkOk.set(verdict.chunk, d.message);
          }
          tensorOk.set(key, verdict);
        }
        if (verdict && shallow && verdict.code === 'E_MISSING_CHUNK' && !shallow.complete.includes(c.oid)) {
          shallowTensors++;
          continue;
        }
        if (verdict) {
          const where = `commit ${c.oid.slice(0, 12)}${set.group ? ` (group ${set.group})` : ''}, ${isTensor ? 'tensor' : 'side file'} ${JSON.stringify(rec.name)}`;
          const why = verdict.message.replace(/^commit [0-9a-f]+(?: \(group [^)]*\))?, tensor "(?:[^"\\]|\\.)*": /, '');
          problems.push({
            code: verdict.code,
            message: `${where}: ${why}`,
            commit: c.oid,
            ...(isTensor ? { tensor: rec.name } : { file: rec.name }),
            group: set.group,
            chunk: verdict.chunk,
          });
        }
      }
    }
    opts.onProgress?.({ phase: 'fsck', done: ++done, total });
  }

  for (const t of await repo.staleTemps()) warnings.push(`stale temp file .wgit/wgit/tmp/${t} (wgit gc removes it)`);
  for (const l of await repo.staleLocks())
    warnings.push(`stale lock .wgit/${l} (its process is gone; the next writer breaks it)`);
  if (shallow && shallowTensors > 0)
    warnings.push(
      `shallow clone (--depth 1): ${shallowTensors} tensors of older commits have no chunks here, as expected; wgit fetch brings them`,
    );
  const all = await repo.chunks.list();
  const reachable = await reachableChunks(repo, commits.values());
  return {
    ok: problems.length === 0,
    commits: commits.size,
    tensors: tensorCount,
    chunks: chunkOk.size,
    problems,
    warnings,
    unreachableChunks: all.filter((id) => !reachable.has(id)).length,
    ...(shallow ? { shallow: { complete: shallow.complete, tensorsWithoutChunks: shallowTensors } } : {}),
  };
}

/**
 * Paths safe to check out (no `.git`, no duplicates, no links or submodules
 * in the tree); side files and shard headers: present, intact (the git layer
 * re-hashes blobs), headers parseable.
 */
async function checkBlobs(repo: MaintainedRepository, set: TensorSet): Promise<void> {
  await checkSetPaths(repo.git, set);
  const at = `commit ${set.commit.slice(0, 12)}${set.group ? ` (group ${set.group})` : ''}`;
  for (const rel of set.manifest.files) {
    const e = await lookupPath(repo.git, set.tree, sideFileTreePath(rel));
    if (e?.type !== 'blob') throw new WgitError('E_CORRUPT', `${at}: side file ${rel} is missing`);
    await repo.git.readBlob(e.oid);
  }
  for (const s of set.manifest.shards) {
    const h = await readShardHeader(repo.git, set, s);
    const names = [...h.tensors].sort((a, b) => a.begin - b.begin).map((t) => t.name);
    if (names.join('\0') !== s.tensors.join('\0'))
      throw new WgitError('E_CORRUPT', `${at}: header of ${s.file} disagrees with the manifest`);
  }
}

/**
 * Deletes chunks that no ref, tag or reflog entry reaches (directly or as a
 * delta base), temp files of dead processes, and stale locks. Refuses to
 * delete anything when the history cannot be read completely.
 */
export async function gcRepository(
  repo: MaintainedRepository,
  opts: Progress & { graceSeconds?: number } = {},
): Promise<GcResult> {
  const grace = opts.graceSeconds ?? DEFAULT_GC_GRACE_SECONDS;
  const cutoff = Date.now() - grace * 1000;
  const roots = await repo.rootCommits();
  const starts: [string, string][] = [...roots.refs].map(([ref, oid]) => [oid, ref]);
  for (const oid of roots.reflog) starts.push([oid, 'reflog']);
  const bad: FsckProblem[] = [];
  const commits = await walkCommits(repo.git, starts, (p) => bad.push(p));
  if (bad.length > 0) {
    throw new WgitError('E_CORRUPT', `gc stopped, history is damaged (${bad[0].message}); run wgit fsck`, {
      problems: bad,
    });
  }
  let live: Set<string>;
  try {
    live = await reachableChunks(repo, commits.values(), true);
  } catch (e) {
    throw new WgitError('E_CORRUPT', `gc stopped, cannot read every commit (${describe(e).message}); run wgit fsck`);
  }
  const all = await repo.chunks.list();
  let chunksRemoved = 0;
  let chunksYoung = 0;
  let bytesFreed = 0;
  let n = 0;
  for (const id of all) {
    opts.onProgress?.({ phase: 'gc', done: ++n, total: all.length });
    if (live.has(id)) continue;
    try {
      const st = await repo.chunks.backend.chunkInfo(id);
      if (!st) continue;
      // Young unreferenced chunks stay: a writer gc cannot see (another host
      // on a shared folder) may be about to reference them.
      if (st.mtimeMs > cutoff) {
        chunksYoung++;
        continue;
      }
      await repo.chunks.backend.deleteChunk(id);
      chunksRemoved++;
      bytesFreed += st.size;
    } catch {
      // Already gone.
    }
  }
  let tempFilesRemoved = 0;
  // Killed checkouts' temp folders go before their markers; a marker whose
  // process may still live (another host) stays, and so does its folder.
  const checkouts = await removeStaleCheckoutTemps(repo.tmpDir);
  bytesFreed += checkouts.bytes;
  for (const t of await repo.staleTemps()) {
    if (isCheckoutMarker(t)) continue;
    const full = path.join(repo.tmpDir, t);
    try {
      const st = await fsp.stat(full);
      await fsp.rm(full, { recursive: true, force: true });
      tempFilesRemoved++;
      bytesFreed += st.isFile() ? st.size : 0;
    } catch {
      // Raced with another cleaner.
    }
  }
  let locksRemoved = 0;
  for (const l of await repo.staleLocks()) {
    const full = path.join(repo.gitdir, l);
    if (full.endsWith('gc.lock')) continue;
    if ((await inspectLock(full, 30)).state === 'stale') {
      await fsp.unlink(full).catch(() => {});
      locksRemoved++;
    }
  }
  return {
    chunksRemoved,
    chunksKept: all.length - chunksRemoved,
    chunksYoung,
    bytesFreed,
    tempFilesRemoved,
    checkoutTempsRemoved: checkouts.removed.length,
    locksRemoved,
  };
}
