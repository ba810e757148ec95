import { isWgitError, type WgitError } from '@wgit/core';
import type { ChunkHeader } from '../chunk-file.js';
import type { GitCommit, GitStore } from '../gitstore.js';
import { loadTensorSet, readAllRecords, readSideFileRecords, type TensorSet } from '../model.js';

/** What reachability reads: git objects, and chunk headers (for delta bases). */
export interface ReachabilitySource {
  git: Pick<GitStore, 'readCommit' | 'readTree' | 'readBlob'>;
  chunks: { readHeader(id: string): Promise<ChunkHeader> };
}

/** Everything a set of commits needs, so a remote can send it, gc keep it and fsck check it. */
export interface Reachable {
  commits: Set<string>;
  trees: Set<string>;
  blobs: Set<string>;
  /** Every chunk a tensor or chunked side file names, plus the delta bases they need, present or not. */
  chunks: Set<string>;
}

/** A commit that could not be read while walking history. */
export interface UnreadableCommit {
  code: string;
  message: string;
  commit: string;
}

export function describeError(e: unknown): { code: string; message: string } {
  if (isWgitError(e)) return { code: e.code, message: e.message };
  return { code: 'E_CORRUPT', message: String((e as Error)?.message ?? e) };
}

/**
 * Commits reachable from `starts` (commit id and where it was found, for
 * messages) through their parents; order not guaranteed. Unreadable commits
 * go to `onBad` and end that line of history.
 */
export async function walkCommits(
  git: ReachabilitySource['git'],
  starts: Iterable<[string, string]>,
  onBad: (p: UnreadableCommit, e: unknown) => void,
): Promise<Map<string, GitCommit>> {
  const seen = new Map<string, GitCommit>();
  const stack = [...starts];
  while (stack.length > 0) {
    const [oid, from] = stack.pop()!;
    if (seen.has(oid)) continue;
    let c: GitCommit;
    try {
      c = await git.readCommit(oid);
    } catch (e) {
      const d = describeError(e);
      onBad({ code: d.code, message: `${from}: commit ${oid.slice(0, 12)}: ${d.message}`, commit: oid }, e);
      continue;
    }
    seen.set(oid, c);
    for (const p of c.parents) stack.push([p, `parent of ${oid.slice(0, 12)}`]);
  }
  return seen;
}

/** A commit's tensor sets: the root one, then each group. */
export async function tensorSetsOf(git: ReachabilitySource['git'], c: GitCommit): Promise<TensorSet[]> {
  const g = git as GitStore;
  const main = await loadTensorSet(g, c.oid, c.tree, null);
  const sets = [main];
  for (const name of main.manifest.groups) sets.push(await loadTensorSet(g, c.oid, c.tree, name));
  return sets;
}

/**
 * Chunk ids named by the commits' tensor and chunked side-file records, plus
 * the delta bases they need (read from chunk headers). `strict` throws when a
 * commit's records or a present chunk's header cannot be read; otherwise
 * those are skipped (fsck reports them its own way). A missing chunk is
 * listed and never fails: it is needed whether or not it is there.
 */
export async function reachableChunks(
  src: ReachabilitySource,
  commits: Iterable<GitCommit>,
  strict = false,
): Promise<Set<string>> {
  const g = src.git as GitStore;
  const live = new Set<string>();
  const doneTrees = new Set<string>();
  for (const c of commits) {
    if (doneTrees.has(c.tree)) continue;
    doneTrees.add(c.tree);
    try {
      for (const set of await tensorSetsOf(src.git, c)) {
        for (const rec of (await readAllRecords(g, set)).values()) for (const ch of rec.chunks) live.add(ch.hash);
        for (const rec of (await readSideFileRecords(g, set)).values()) for (const ch of rec.chunks) live.add(ch.hash);
      }
    } catch (e) {
      if (strict) throw e;
    }
  }
  const queue = [...live];
  while (queue.length > 0) {
    const id = queue.pop()!;
    try {
      const h = await src.chunks.readHeader(id);
      if (h.base && !live.has(h.base)) {
        live.add(h.base);
        queue.push(h.base);
      }
    } catch (e) {
      if (strict && (e as WgitError).code !== 'E_MISSING_CHUNK') throw e;
    }
  }
  return live;
}

/** Trees and blobs below the commits' root trees (every record, header, manifest and side file). */
export async function reachableObjects(
  git: ReachabilitySource['git'],
  commits: Iterable<GitCommit>,
): Promise<{ trees: Set<string>; blobs: Set<string> }> {
  const trees = new Set<string>();
  const blobs = new Set<string>();
  const walk = async (oid: string): Promise<void> => {
    if (trees.has(oid)) return;
    trees.add(oid);
    for (const e of await git.readTree(oid)) {
      if (e.type === 'tree') await walk(e.oid);
      else if (e.type === 'blob') blobs.add(e.oid);
    }
  };
  for (const c of commits) await walk(c.tree);
  return { trees, blobs };
}

/**
 * Everything the `roots` (commit ids: ref heads, reflog entries) need:
 * commits through their parents, trees and blobs, chunks with their delta
 * bases. Throws when part of that history cannot be read (a missing chunk
 * only shows up in `chunks`), since a partial answer would make gc delete or
 * a push leave out what is still needed.
 */
export async function reachable(src: ReachabilitySource, roots: Iterable<string>): Promise<Reachable> {
  const bad: unknown[] = [];
  const commits = await walkCommits(
    src.git,
    [...roots].map((oid) => [oid, 'root'] as [string, string]),
    (_, e) => bad.push(e),
  );
  if (bad.length > 0) throw bad[0];
  const { trees, blobs } = await reachableObjects(src.git, commits.values());
  const chunks = await reachableChunks(src, commits.values(), true);
  return { commits: new Set(commits.keys()), trees, blobs, chunks };
}
