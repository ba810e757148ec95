import { createHash } from 'node:crypto';
import {
  type ModelSource,
  type ModelTensor,
  parseSafetensorsHeader,
  type SafetensorsHeader,
  WgitError,
} from '@wgit/core';
import { FolderChunks } from './backend/fs/chunks.js';
import type { ChunkStore } from './chunkstore.js';
import type { GitStore, TreeEntry } from './gitstore.js';
import { escapeName } from './names.js';
import { type ChunkRunner, plannedThreads, startRunner } from './pool.js';
import { decodeManifest, decodeRecord, type Manifest, type ShardEntry, type TensorRecord } from './records.js';
import { type SharedReadStats, SharedReads } from './shared-reads.js';

/** Tree paths of one tensor set (the commit's root, or groups/<name>/). */
export const MANIFEST = 'wgit.json';
export const TENSORS_DIR = 'tensors';
export const HEADERS_DIR = 'headers';
export const FILES_DIR = 'files';
export const GROUPS_DIR = 'groups';

/**
 * Side files up to this size are git blobs (readable with plain git); larger
 * ones (tokenizers, consolidated weights, archives) are streamed through the
 * chunk store like tensors, so memory stays bounded and they are compressed,
 * deduplicated and counted like everything else.
 */
export const SIDE_FILE_BLOB_MAX = 1 << 20;

export function sideFileTreePath(rel: string): string {
  return `${FILES_DIR}/${rel.split('/').map(escapeName).join('/')}`;
}

export function headerTreePath(shardFile: string): string {
  return `${HEADERS_DIR}/${escapeName(shardFile)}`;
}

export function tensorTreePath(name: string): string {
  return `${TENSORS_DIR}/${escapeName(name)}`;
}

/** The stored raw header of one shard, parsed and checked against the shard's recorded size. */
export async function readShardHeader(git: GitStore, set: TensorSet, shard: ShardEntry): Promise<SafetensorsHeader> {
  const he = await lookupPath(git, set.tree, headerTreePath(shard.file));
  if (he?.type !== 'blob') {
    throw new WgitError('E_CORRUPT', `commit ${set.commit.slice(0, 12)}: no header for ${shard.file}`, {
      commit: set.commit,
    });
  }
  return parseSafetensorsHeader(await git.readBlob(he.oid), shard.size, shard.file);
}

async function entriesOf(git: GitStore, treeOid: string): Promise<Map<string, TreeEntry>> {
  return new Map((await git.readTree(treeOid)).map((e) => [e.path, e]));
}

/** Looks up `a/b/c` below a tree. */
export async function lookupPath(git: GitStore, treeOid: string, treePath: string): Promise<TreeEntry | null> {
  let cur = treeOid;
  const segs = treePath.split('/');
  for (let i = 0; i < segs.length; i++) {
    const e = (await entriesOf(git, cur)).get(segs[i]);
    if (!e) return null;
    if (i === segs.length - 1) return e;
    if (e.type !== 'tree') return null;
    cur = e.oid;
  }
  return null;
}

export interface TensorSet {
  commit: string;
  group: string | null;
  tree: string;
  manifest: Manifest;
  /** Record blob oid per tensor name. */
  recordOids: Map<string, string>;
}

/** Reads the manifest and the record index of one tensor set, checking that they agree. */
export async function loadTensorSet(
  git: GitStore,
  commit: string,
  rootTree: string,
  group: string | null,
): Promise<TensorSet> {
  let tree = rootTree;
  if (group !== null) {
    const e = await lookupPath(git, rootTree, `${GROUPS_DIR}/${escapeName(group)}`);
    if (e?.type !== 'tree') {
      throw new WgitError('E_UNKNOWN_GROUP', `commit ${commit.slice(0, 12)} has no group ${JSON.stringify(group)}`, {
        commit,
        group,
      });
    }
    tree = e.oid;
  }
  const where = `${commit.slice(0, 12)}${group === null ? '' : `:${group}`}`;
  const top = await entriesOf(git, tree);
  const m = top.get(MANIFEST);
  if (m?.type !== 'blob') throw new WgitError('E_CORRUPT', `commit ${where} has no ${MANIFEST}`, { commit });
  const manifest = decodeManifest(await git.readBlob(m.oid), where);
  const recordOids = new Map<string, string>();
  const t = top.get(TENSORS_DIR);
  const byEntry = t && t.type === 'tree' ? await entriesOf(git, t.oid) : new Map<string, TreeEntry>();
  for (const name of manifest.tensors) {
    const e = byEntry.get(escapeName(name));
    if (e?.type !== 'blob') {
      throw new WgitError('E_CORRUPT', `commit ${where}: no record for tensor ${JSON.stringify(name)}`, {
        commit,
        tensor: name,
      });
    }
    recordOids.set(name, e.oid);
  }
  if (byEntry.size !== manifest.tensors.length) {
    throw new WgitError('E_CORRUPT', `commit ${where}: tensors/ holds records the manifest does not list`, { commit });
  }
  return { commit, group, tree, manifest, recordOids };
}

export function isChunkedSideFile(set: TensorSet, rel: string): boolean {
  return set.manifest.chunkedFiles?.includes(rel) ?? false;
}

/** The tree entry of a side file, which must be a blob. */
async function sideFileEntry(git: GitStore, set: TensorSet, rel: string): Promise<TreeEntry> {
  const e = await lookupPath(git, set.tree, sideFileTreePath(rel));
  if (e?.type !== 'blob') {
    throw new WgitError('E_CORRUPT', `commit ${set.commit.slice(0, 12)}: side file ${rel} is missing from the tree`, {
      commit: set.commit,
      file: rel,
    });
  }
  return e;
}

/** The record of a side file kept in the chunk store: U8, one dimension, named by its path. */
export async function readSideFileRecord(git: GitStore, set: TensorSet, rel: string): Promise<TensorRecord> {
  const e = await sideFileEntry(git, set, rel);
  const where = `${set.commit.slice(0, 12)}:files/${rel}`;
  const rec = decodeRecord(await git.readBlob(e.oid), where);
  if (rec.name !== rel || rec.dtype !== 'U8' || rec.shape.length !== 1) {
    throw new WgitError(
      'E_CORRUPT',
      `commit ${set.commit.slice(0, 12)}: record of side file ${rel} does not describe it`,
      {
        commit: set.commit,
        file: rel,
      },
    );
  }
  return rec;
}

/** Records of every chunked side file of a set (empty for format 1). */
export async function readSideFileRecords(git: GitStore, set: TensorSet): Promise<Map<string, TensorRecord>> {
  const out = new Map<string, TensorRecord>();
  for (const rel of set.manifest.chunkedFiles ?? []) out.set(rel, await readSideFileRecord(git, set, rel));
  return out;
}

/** A git-blob side file's bytes (small by construction; chunked ones go through readSideFileRecord). */
export async function readSideFileBlob(git: GitStore, set: TensorSet, rel: string): Promise<Uint8Array> {
  return git.readBlob((await sideFileEntry(git, set, rel)).oid);
}

export async function readRecord(git: GitStore, set: TensorSet, name: string): Promise<TensorRecord> {
  const oid = set.recordOids.get(name);
  if (oid === undefined) {
    throw new WgitError(
      'E_TENSOR_NOT_FOUND',
      `commit ${set.commit.slice(0, 12)} has no tensor ${JSON.stringify(name)}`,
      {
        commit: set.commit,
        tensor: name,
      },
    );
  }
  const rec = decodeRecord(await git.readBlob(oid), `${set.commit.slice(0, 12)}:${name}`);
  if (rec.name !== name) {
    throw new WgitError(
      'E_CORRUPT',
      `commit ${set.commit.slice(0, 12)}: record for ${JSON.stringify(name)} names ${JSON.stringify(rec.name)}`,
      {
        commit: set.commit,
        tensor: name,
      },
    );
  }
  return rec;
}

/** Reads all records with a little concurrency (loose-object reads are latency bound). */
export async function readAllRecords(git: GitStore, set: TensorSet): Promise<Map<string, TensorRecord>> {
  const out = new Map<string, TensorRecord>();
  const names = set.manifest.tensors;
  let next = 0;
  const worker = async () => {
    while (next < names.length) {
      const name = names[next++];
      out.set(name, await readRecord(git, set, name));
    }
  };
  await Promise.all(Array.from({ length: Math.min(8, names.length) }, worker));
  return out;
}

/** Adds the commit and tensor to a chunk error so the user learns what is damaged. */
export function tensorError(e: unknown, set: TensorSet, name: string): unknown {
  const err = e as { code?: string; message?: string; data?: Record<string, unknown> };
  if (err && (err.code === 'E_CORRUPT_CHUNK' || err.code === 'E_MISSING_CHUNK')) {
    return new WgitError(
      err.code,
      `commit ${set.commit.slice(0, 12)}, tensor ${JSON.stringify(name)}: ${err.message}`,
      {
        ...err.data,
        commit: set.commit,
        tensor: name,
        group: set.group,
      },
    );
  }
  return e;
}

/** The format-2 tensor hash: sha256 over the chunk ids' 32 raw bytes each, in chunk order. */
export function tensorHashOf(chunkIds: string[]): string {
  const h = createHash('sha256');
  for (const id of chunkIds) h.update(Buffer.from(id, 'hex'));
  return h.digest('hex');
}

function hashMismatch(set: TensorSet, rec: TensorRecord): WgitError {
  return new WgitError(
    'E_CORRUPT',
    `commit ${set.commit.slice(0, 12)}, tensor ${JSON.stringify(rec.name)}: bytes do not match the recorded sha256`,
    { commit: set.commit, tensor: rec.name },
  );
}

/** For format-2 records the chunk list is checked against the tensor hash up front; chunk reads check the bytes. */
export function checkChunkList(set: TensorSet, rec: TensorRecord): void {
  if (rec.format !== 1 && tensorHashOf(rec.chunks.map((c) => c.hash)) !== rec.sha256) throw hashMismatch(set, rec);
}

/**
 * Streams a tensor's raw bytes chunk by chunk, each chunk checked against its
 * hash, and the tensor against the record's sha256 (its chunk list, or for
 * format-1 records its bytes at the end).
 */
export async function streamTensor(
  chunks: ChunkStore,
  set: TensorSet,
  rec: TensorRecord,
  maxDepth: number,
  onChunk: (raw: Uint8Array, offset: number) => Promise<void> | void,
): Promise<void> {
  checkChunkList(set, rec);
  const h = rec.format === 1 ? createHash('sha256') : null;
  let off = 0;
  try {
    for (const c of rec.chunks) {
      const want = Math.min(rec.chunkSize, rec.byteLength - off);
      const raw = await chunks.get(c.hash, maxDepth, want);
      if (raw.length !== want) {
        throw new WgitError(
          'E_CORRUPT_CHUNK',
          `chunk ${c.hash.slice(0, 12)} has ${raw.length} bytes, expected ${want}`,
          { chunk: c.hash },
        );
      }
      h?.update(raw);
      await onChunk(raw, off);
      off += raw.length;
    }
  } catch (e) {
    throw tensorError(e, set, rec.name);
  }
  if (h && h.digest('hex') !== rec.sha256) throw hashMismatch(set, rec);
}

/**
 * One runner per chunk folder and thread count, shared by the StoreModels
 * open on it (a merge reads several revisions at once: one set of threads
 * serves them all, and their reads of one position are decoded together,
 * shared-reads.ts) and ended when the last of them closes.
 */
interface RunnerEntry {
  runner: Promise<ChunkRunner>;
  reads: Promise<SharedReads>;
  users: number;
}
const runners = new Map<string, RunnerEntry>();

function acquireRunner(key: string, start: () => Promise<ChunkRunner>): RunnerEntry {
  let entry = runners.get(key);
  if (!entry) {
    const runner = start();
    const made: RunnerEntry = { runner, reads: runner.then((r) => new SharedReads(r)), users: 0 };
    made.reads.catch(() => {});
    entry = made;
    runners.set(key, made);
    // A failed start is reported to the reads that asked for it; the next read tries again.
    runner.catch(() => {
      if (runners.get(key) === made) runners.delete(key);
    });
  }
  entry.users++;
  return entry;
}

async function releaseRunner(key: string, runner: Promise<ChunkRunner>): Promise<void> {
  const entry = runners.get(key);
  if (entry?.runner !== runner || --entry.users > 0) return;
  runners.delete(key);
  await (await runner.catch(() => null))?.close();
}

/**
 * A commit (or one of its groups) as a ModelSource: records up front, tensor
 * bytes on demand. Tensors of a local store are decoded on the chunk runner
 * (pool.ts, sized like checkout's, started on the first read and ended by
 * close()): all chunks of a tensor at once, straight into the caller's
 * buffer when it is shared memory (the WASM device's buffers are), else
 * through a few shared staging slots. Reads of several tensors and models
 * may be in flight together (the merge pipeline reads ahead); the revisions
 * open on one chunk folder read through one SharedReads, which decodes the
 * chunks they ask for at the same position together, each delta base once.
 */
export class StoreModel implements ModelSource {
  readonly root: string;
  readonly kind: 'file' | 'folder';
  readonly tensors: ModelTensor[];
  readonly sideFiles: string[];
  readonly indexFile: string | null;
  private readonly byName = new Map<string, ModelTensor>();
  private runner: Promise<ChunkRunner> | null = null;
  private reads: Promise<SharedReads> | null = null;
  private runnerKey = '';
  private closed = false;

  constructor(
    private readonly git: GitStore,
    private readonly chunks: ChunkStore,
    readonly set: TensorSet,
    readonly records: Map<string, TensorRecord>,
    private readonly maxDepth: number,
    /** `__metadata__` of the first shard's stored header. */
    readonly metadata: Record<string, string> | null = null,
  ) {
    this.root = `wgit:${set.commit}${set.group === null ? '' : `:${set.group}`}`;
    this.kind = set.manifest.kind;
    this.indexFile = set.manifest.index;
    this.sideFiles = set.manifest.files.filter((f) => f !== set.manifest.index).sort();
    this.tensors = set.manifest.tensors.map((name) => {
      const r = records.get(name)!;
      const t: ModelTensor = { name, dtype: r.dtype, shape: r.shape, byteLength: r.byteLength };
      this.byName.set(name, t);
      return t;
    });
  }

  get commit(): string {
    return this.set.commit;
  }

  get manifest(): Manifest {
    return this.set.manifest;
  }

  tensor(name: string): ModelTensor {
    const t = this.byName.get(name);
    if (!t) {
      throw new WgitError('E_TENSOR_NOT_FOUND', `${this.root}: no tensor ${JSON.stringify(name)}`, {
        commit: this.set.commit,
        tensor: name,
      });
    }
    return t;
  }

  record(name: string): TensorRecord {
    this.tensor(name);
    return this.records.get(name)!;
  }

  /**
   * The tensor hash of its record, prefixed by the record format: equal for
   * two records of equal bytes in one repository (same chunking), found
   * without reading a chunk. Different ids say nothing: read to compare.
   */
  contentId(name: string): string | null {
    const r = this.record(name);
    return `record${r.format}:${r.sha256}`;
  }

  /** A small side file's git blob id, or a chunked one's record hash. */
  async sideFileId(rel: string): Promise<string | null> {
    if (!this.set.manifest.files.includes(rel)) return null;
    if (!isChunkedSideFile(this.set, rel)) return `blob:${(await sideFileEntry(this.git, this.set, rel)).oid}`;
    const r = await readSideFileRecord(this.git, this.set, rel);
    return `record${r.format}:${r.sha256}`;
  }

  async readSideFile(rel: string): Promise<Uint8Array> {
    if (!this.set.manifest.files.includes(rel)) {
      throw new WgitError('E_NOT_FOUND', `${this.root}: no side file ${JSON.stringify(rel)}`, {
        commit: this.set.commit,
        file: rel,
      });
    }
    if (!isChunkedSideFile(this.set, rel)) return readSideFileBlob(this.git, this.set, rel);
    const rec = await readSideFileRecord(this.git, this.set, rel);
    const out = new Uint8Array(rec.byteLength);
    await streamTensor(this.chunks, this.set, rec, this.maxDepth, (raw, off) => {
      out.set(raw, off);
    });
    return out;
  }

  async readTensor(name: string, into?: Uint8Array): Promise<Uint8Array> {
    const rec = this.record(name);
    if (into && into.byteLength < rec.byteLength) {
      throw new WgitError(
        'E_BUFFER_TOO_SMALL',
        `${this.root}: tensor ${JSON.stringify(name)} needs ${rec.byteLength} bytes`,
        { tensor: name },
      );
    }
    const target = into ? into.subarray(0, rec.byteLength) : new Uint8Array(rec.byteLength);
    const reads = this.sharedReads();
    if (reads) {
      await this.readChunks(await reads, rec, target);
      return target;
    }
    await streamTensor(this.chunks, this.set, rec, this.maxDepth, (raw, off) => {
      target.set(raw, off);
    });
    return target;
  }

  /**
   * The chunk reader this model shares with the revisions open on its chunk
   * folder (and its runner), started on first use; null for stores that are
   * not a local folder.
   */
  private sharedReads(): Promise<SharedReads> | null {
    const backend = this.chunks.backend;
    if (this.closed || !(backend instanceof FolderChunks)) return null;
    if (!this.reads) {
      const bytes = this.set.manifest.rawBytes;
      const key = `${backend.dir}\0${plannedThreads(bytes)}`;
      const entry = acquireRunner(key, () => startRunner(bytes, backend.dir, backend.tmpDir, { unrefWhenIdle: true }));
      const started = entry.runner;
      entry.reads.catch(() => {
        if (this.runner === started) {
          this.runner = null;
          this.reads = null;
          void releaseRunner(key, started);
        }
      });
      this.runner = started;
      this.reads = entry.reads;
      this.runnerKey = key;
    }
    return this.reads;
  }

  /**
   * What the reads on this model's chunk folder cost so far (shared with the
   * revisions open there): chunks decoded, hashed and reused, and the memory
   * bases and staging took. Null before the first read, and for stores that
   * are not a local folder.
   */
  async readStats(): Promise<SharedReadStats | null> {
    return this.reads ? (await this.reads).stats : null;
  }

  /**
   * Decodes every chunk of a tensor on the runner into `target`, each checked
   * against its id, the chunk list against the tensor hash up front (format-1
   * records: the bytes at the end). All jobs settle before this returns or
   * throws, so no worker writes into `target` afterwards; the first failing
   * chunk in tensor order is the one reported.
   */
  private async readChunks(reads: SharedReads, rec: TensorRecord, target: Uint8Array): Promise<void> {
    checkChunkList(this.set, rec);
    const jobs: Promise<unknown>[] = [];
    for (let i = 0, off = 0; i < rec.chunks.length; i++) {
      const rawLength = Math.min(rec.chunkSize, rec.byteLength - off);
      const c = rec.chunks[i];
      jobs.push(
        reads.read({
          position: `${rec.name}\0${i}`,
          id: c.hash,
          rawLength,
          maxDepth: this.maxDepth,
          depth: c.depth,
          target: target.subarray(off, off + rawLength),
        }),
      );
      off += rawLength;
    }
    const settled = await Promise.allSettled(jobs);
    for (const r of settled) if (r.status === 'rejected') throw tensorError(r.reason, this.set, rec.name);
    if (rec.format === 1 && createHash('sha256').update(target).digest('hex') !== rec.sha256) {
      throw hashMismatch(this.set, rec);
    }
  }

  /** Lets go of the chunk runner (its threads end with the last model using them); later reads run on the calling thread. */
  async close(): Promise<void> {
    this.closed = true;
    const runner = this.runner;
    this.runner = null;
    this.reads = null;
    if (runner) await releaseRunner(this.runnerKey, runner);
  }
}
