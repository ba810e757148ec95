import { type ModelSource, type ObjectHeader, type ObjectSummary, resolveObject } from '@wgit/core';
import type { GitCommit, GitStore } from '../gitstore.js';
import { loadTensorSet, readAllRecords } from '../model.js';

/** A commit as log and readCommit report it. */
export interface CommitInfo {
  commit: string;
  parents: string[];
  message: string;
  timestamp: number;
  recipe: Record<string, unknown> | null;
  groups: string[];
}

export interface LogEntry extends CommitInfo {
  author: string;
  rawBytes: number;
}

export interface ShowTensor {
  name: string;
  dtype: string;
  shape: number[];
  byteLength: number;
  storedBytes: number;
  chunks: number;
  encodings: Record<string, number>;
  maxDepth: number;
}

export interface ShowResult extends LogEntry {
  kind: 'file' | 'folder';
  /** What the shown tensor set holds, as its object kind describes it. */
  object: ObjectSummary & { header: ObjectHeader };
  /** The object kind of each group, from its manifest (or recognised from its tensors in older repositories). */
  groupKinds: Record<string, string>;
  shards: string[];
  files: string[];
  tensors: ShowTensor[];
  storedBytes: number;
}

/** What reading history needs of a repository. */
export interface HistorySource {
  readonly git: GitStore;
  openModel(commit: string, group?: string): Promise<ModelSource>;
}

/** One commit's log line: its metadata and what its manifest says of the whole model. */
export async function logEntry(git: GitStore, c: GitCommit): Promise<LogEntry> {
  const set = await loadTensorSet(git, c.oid, c.tree, null);
  return {
    commit: c.oid,
    parents: c.parents,
    message: c.message.replace(/\n$/, ''),
    timestamp: c.committer.timestamp,
    author: `${c.author.name} <${c.author.email}>`,
    recipe: set.manifest.recipe,
    groups: set.manifest.groups,
    rawBytes: set.manifest.rawBytes,
  };
}

/** The commits reachable from `start`, newest first (git log's default order for a DAG), at most `limit`. */
export async function logFrom(git: GitStore, start: string, limit = Number.POSITIVE_INFINITY): Promise<LogEntry[]> {
  const out: LogEntry[] = [];
  const seen = new Set<string>([start]);
  const queue: GitCommit[] = [await git.readCommit(start)];
  while (queue.length > 0 && out.length < limit) {
    queue.sort((a, b) => b.committer.timestamp - a.committer.timestamp);
    const c = queue.shift()!;
    out.push(await logEntry(git, c));
    for (const p of c.parents) {
      if (seen.has(p)) continue;
      seen.add(p);
      queue.push(await git.readCommit(p));
    }
  }
  return out;
}

/** Everything `wgit show` prints of a commit's tensor set (the model, or one group): records, object kind, files. */
export async function showCommit(src: HistorySource, commit: string, group?: string): Promise<ShowResult> {
  const { git } = src;
  const c = await git.readCommit(commit);
  const entry = await logEntry(git, c);
  const set = await loadTensorSet(git, commit, c.tree, group ?? null);
  const records = await readAllRecords(git, set);
  const resolved = resolveObject(set.manifest.object, set.manifest.tensors);
  const source = await src.openModel(commit, group);
  let object: ShowResult['object'];
  try {
    const value = await resolved.kind.decode(source, resolved.header);
    object = { ...resolved.kind.describe(value), detected: resolved.detected, header: resolved.header };
  } finally {
    await source.close();
  }
  const groupKinds: Record<string, string> = {};
  for (const g of set.manifest.groups) {
    const gs = await loadTensorSet(git, commit, c.tree, g).catch(() => null);
    if (gs) groupKinds[g] = resolveObject(gs.manifest.object, gs.manifest.tensors).kind.name;
  }
  const tensors: ShowTensor[] = set.manifest.tensors.map((name) => {
    const r = records.get(name)!;
    const encodings: Record<string, number> = {};
    for (const ch of r.chunks) encodings[ch.encoding] = (encodings[ch.encoding] ?? 0) + 1;
    return {
      name,
      dtype: r.dtype,
      shape: r.shape,
      byteLength: r.byteLength,
      storedBytes: r.chunks.reduce((a, ch) => a + ch.stored, 0),
      chunks: r.chunks.length,
      encodings,
      maxDepth: r.chunks.reduce((a, ch) => Math.max(a, ch.depth), 0),
    };
  });
  return {
    ...entry,
    rawBytes: set.manifest.rawBytes,
    kind: set.manifest.kind,
    object,
    groupKinds,
    shards: set.manifest.shards.map((s) => s.file),
    files: set.manifest.files,
    tensors,
    storedBytes: tensors.reduce((a, t) => a + t.storedBytes, 0),
  };
}
