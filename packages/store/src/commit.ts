import { createHash } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { type LocalModel, type ObjectHeader, openModel, WgitError } from '@wgit/core';
import { type FolderChunks, placeChunk } from './backend/fs/chunks.js';
import type { PutDone, PutJob } from './chunkio.js';
import type { RepoConfig } from './config.js';
import { datasyncFile, fsyncDir } from './fsutil.js';
import type { GitStore } from './gitstore.js';
import {
  headerTreePath,
  MANIFEST,
  readAllRecords,
  SIDE_FILE_BLOB_MAX,
  sideFileTreePath,
  type TensorSet,
  tensorHashOf,
  tensorTreePath,
} from './model.js';
import { checkRelPath } from './names.js';
import type { ChunkRunner } from './pool.js';
import {
  type ChunkRef,
  encodeManifest,
  encodeRecord,
  type Manifest,
  manifestFormat,
  RECORD_FORMAT,
  type ShardEntry,
  type TensorRecord,
} from './records.js';

export interface StoreContext {
  git: GitStore;
  /** The local chunk folder: new chunks are batched there as temp files, then placed together. */
  chunks: FolderChunks;
  config: RepoConfig;
  runner: ChunkRunner;
  /** Chunks written to temp files, not yet durable: chunk id → temp file. */
  pending: Map<string, string>;
  /** Chunk ids whose existing file was found damaged: their new file replaces it. */
  replacing: Set<string>;
  /** Temp files of chunks that another job of this commit also wrote; removed at the end. */
  duplicates: string[];
  /**
   * fdatasync of each new temp file, started as soon as it is written so the
   * disk works while the CPUs encode (dirty pages would otherwise wait for
   * the final fsync); settled promises, the error kept as the value.
   */
  syncs: Map<string, Promise<unknown>>;
  syncLimit: <T>(task: () => Promise<T>) => Promise<T>;
  onProgress?: (e: { phase: string; done: number; total: number }) => void;
  progress: { done: number; total: number };
}

export interface StoredSet {
  entries: Map<string, string>; // tree path (relative to the set) → blob oid
  manifest: Manifest;
  tensors: number;
  rawBytes: number;
  storedBytes: number;
  newBytes: number;
}

function posixRel(root: string, file: string): string {
  return path.relative(root, file).split(path.sep).join('/');
}

/**
 * Takes a finished chunk job into the commit: a new temp file becomes
 * pending (its fdatasync started at once), a second copy of a chunk another
 * job made is a duplicate to remove; the record gets its chunk entry.
 */
export function chunkStored(
  ctx: StoreContext,
  totals: { storedBytes: number; newBytes: number },
  rec: TensorRecord,
  i: number,
  rawLength: number,
  r: PutDone,
): void {
  if (r.tmp) {
    // Two threads can meet the same new chunk; the first to report keeps it.
    if (ctx.pending.has(r.id)) ctx.duplicates.push(r.tmp);
    else {
      const tmp = r.tmp;
      ctx.pending.set(r.id, tmp);
      if (r.replaces) ctx.replacing.add(r.id);
      ctx.syncs.set(
        tmp,
        ctx.syncLimit(() => datasyncFile(tmp)).catch((e: unknown) => e ?? new Error('fdatasync failed')),
      );
      totals.newBytes += r.stored;
    }
  }
  totals.storedBytes += r.stored;
  rec.chunks[i] = { hash: r.id, encoding: r.encoding, stored: r.stored, depth: r.depth };
  ctx.progress.done += rawLength;
  ctx.onProgress?.({ phase: 'chunks', done: ctx.progress.done, total: ctx.progress.total });
}

/**
 * Keeps up to `size` jobs in flight and hands their results, in submission
 * order, to the caller's callbacks. The first failure stops new submissions;
 * `drain`/`settle` wait for every job already started, so the temp files
 * they made are known before anything is cleaned up.
 */
export class JobWindow {
  private readonly queue: Promise<void>[] = [];
  private failure: { e: unknown } | null = null;
  constructor(private readonly size: number) {}

  /** Starts `start()` unless a job failed already: a job must never run after its caller gave up (checkout closes the file it writes to). */
  async submit<T>(
    start: () => Promise<T>,
    onDone: (r: T) => void,
    onError: (e: unknown) => unknown = (e) => e,
  ): Promise<void> {
    this.rethrow();
    const prev = this.queue[this.queue.length - 1];
    // Results are taken in order even though workers finish out of order.
    const settled = start().then(
      (r) => ({ ok: true as const, r }),
      (e) => ({ ok: false as const, e }),
    );
    this.queue.push(
      (async () => {
        await prev;
        const s = await settled;
        if (this.failure) return;
        if (s.ok) {
          try {
            onDone(s.r);
          } catch (e) {
            this.failure = { e };
          }
        } else this.failure = { e: onError(s.e) };
      })(),
    );
    if (this.queue.length >= this.size) await this.queue.shift();
    this.rethrow();
  }

  private rethrow(): void {
    if (this.failure) throw this.failure.e;
  }

  async drain(): Promise<void> {
    await this.settle();
    this.rethrow();
  }

  /** Waits for the jobs in flight without throwing (cleanup after an error). */
  async settle(): Promise<void> {
    await Promise.all(this.queue.splice(0));
  }
}

/**
 * Stores one model (the commit's main tensor set, or a group) chunk by
 * chunk on the context's runner: memory stays at a few chunks per thread
 * whatever the model size. Each chunk is offered to the codec with the
 * parent's chunk at the same position as a delta base when name, dtype and
 * shape match. Side files larger than SIDE_FILE_BLOB_MAX go through the
 * same chunk pipeline (dtype U8); smaller ones are git blobs. New chunks stay
 * in temp files until flushChunks.
 */
export async function storeModel(
  ctx: StoreContext,
  model: LocalModel,
  parent: { set: TensorSet; git: GitStore } | null,
  recipe: Record<string, unknown> | null,
  groups: string[],
  object?: ObjectHeader,
): Promise<StoredSet> {
  const { config } = ctx;
  const cs = config.chunkSize;
  const entries = new Map<string, string>();
  const parentRecords = parent ? await readAllRecords(parent.git, parent.set).catch(() => null) : null;
  const totals = { rawBytes: 0, storedBytes: 0, newBytes: 0 };
  const shards: ShardEntry[] = [];
  const records: TensorRecord[] = [];
  const fileRecords: TensorRecord[] = [];
  const window = new JobWindow(ctx.runner.window);

  /** Queues the chunks of `byteLength` bytes at `start` of `file`; the record's chunk list fills in as they finish. */
  const submitRange = async (
    rec: TensorRecord,
    file: string,
    start: number,
    bases: ChunkRef[] | null,
  ): Promise<void> => {
    for (let off = 0, i = 0; off < rec.byteLength; off += cs, i++) {
      const n = Math.min(cs, rec.byteLength - off);
      const job: PutJob = {
        op: 'put',
        file,
        position: start + off,
        length: n,
        dtype: rec.dtype,
        base: bases?.[i]?.hash ?? null,
        maxDepth: config.maxDeltaDepth,
      };
      await window.submit(
        () => ctx.runner.run(job),
        (r) => chunkStored(ctx, totals, rec, i, n, r),
      );
    }
    totals.rawBytes += rec.byteLength;
  };
  const newRecord = (name: string, dtype: TensorRecord['dtype'], shape: number[], byteLength: number) => ({
    format: RECORD_FORMAT,
    name,
    dtype,
    shape,
    byteLength,
    sha256: '', // set once every chunk id is known
    chunkSize: cs,
    chunks: new Array<ChunkRef>(Math.ceil(byteLength / cs)),
  });

  const files = [...model.sideFiles];
  if (model.indexFile && !files.includes(model.indexFile)) files.push(model.indexFile);
  files.sort();
  for (const rel of files) checkRelPath(rel, 'side file');

  try {
    for (const h of model.shards) {
      const rel = model.kind === 'file' ? path.basename(h.path) : posixRel(model.root, h.path);
      checkRelPath(rel, 'shard');
      const byOffset = [...h.tensors].sort((a, b) => a.begin - b.begin);
      shards.push({ file: rel, size: h.fileSize, tensors: byOffset.map((t) => t.name) });
      entries.set(headerTreePath(rel), await ctx.git.writeBlob(h.headerBytes));
      for (const t of h.tensors) {
        const rec = newRecord(t.name, t.dtype, t.shape, t.end - t.begin);
        records.push(rec);
        const pr = parentRecords?.get(t.name);
        const sameShape =
          pr &&
          pr.dtype === t.dtype &&
          pr.chunkSize === cs &&
          pr.shape.length === t.shape.length &&
          pr.shape.every((d, i) => d === t.shape[i]);
        await submitRange(rec, h.path, h.dataStart + t.begin, sameShape ? pr.chunks : null);
      }
    }
    for (const rel of files) {
      const size = model.sideFileSizes.get(rel) ?? 0;
      if (size <= SIDE_FILE_BLOB_MAX) continue;
      const rec = newRecord(rel, 'U8', [size], size);
      fileRecords.push(rec);
      await submitRange(rec, model.sideFilePath(rel), 0, null);
    }
    await window.drain();
  } finally {
    await window.settle();
  }
  for (const rec of records) {
    rec.sha256 = tensorHashOf(rec.chunks.map((c) => c.hash));
    entries.set(tensorTreePath(rec.name), await ctx.git.writeBlob(encodeRecord(rec)));
  }
  for (const rec of fileRecords) {
    rec.sha256 = tensorHashOf(rec.chunks.map((c) => c.hash));
    entries.set(sideFileTreePath(rec.name), await ctx.git.writeBlob(encodeRecord(rec)));
  }
  const chunked = new Set(fileRecords.map((r) => r.name));
  for (const rel of files) {
    if (chunked.has(rel)) continue;
    const data = await model.readSideFile(rel);
    if (data.length > SIDE_FILE_BLOB_MAX)
      throw new WgitError('E_SAFETENSORS_TRUNCATED', `side file ${rel} grew while being committed`, { file: rel });
    const isNew = (await ctx.git.typeOf(gitBlobId(data))) === null;
    entries.set(sideFileTreePath(rel), await ctx.git.writeBlob(data));
    totals.rawBytes += data.length;
    totals.storedBytes += data.length;
    if (isNew) totals.newBytes += data.length;
  }
  const manifest: Manifest = {
    format: manifestFormat({ chunkedFiles: chunked.size > 0, object: object !== undefined }),
    kind: model.kind,
    shards,
    tensors: model.tensors.map((t) => t.name),
    index: model.indexFile ?? null,
    files,
    rawBytes: totals.rawBytes,
    recipe,
    groups,
    ...(chunked.size > 0 ? { chunkedFiles: [...chunked].sort() } : {}),
    ...(object ? { object } : {}),
  };
  entries.set(MANIFEST, await ctx.git.writeBlob(encodeManifest(manifest)));
  return { entries, manifest, tensors: model.tensors.length, ...totals };
}

/** The id git gives a blob holding `data`. */
export function gitBlobId(data: Uint8Array): string {
  return createHash('sha1').update(`blob ${data.length}\0`).update(data).digest('hex');
}

/** Bytes a commit of `model` streams through the chunk pipeline: its tensors and its large side files. */
export function chunkedBytes(model: LocalModel): number {
  let n = model.tensors.reduce((s, t) => s + t.byteLength, 0);
  for (const size of model.sideFileSizes.values()) if (size > SIDE_FILE_BLOB_MAX) n += size;
  return n;
}

export async function openInput(p: string): Promise<LocalModel> {
  return openModel(path.resolve(p));
}

async function forEachLimit<T>(items: T[], limit: number, fn: (x: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  const lane = async () => {
    while (next < items.length) await fn(items[next++]);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
}

/**
 * Makes the chunks written so far durable and gives them their names: every
 * temp file's fdatasync (started in storeModel) must have finished, then it
 * is renamed, then the folders holding the new names are fsynced. A chunk
 * file under its final name is therefore always complete, even after a power
 * cut, which matters because writers trust an existing chunk file instead of
 * writing it again. Runs before the commit object is written.
 */
export async function flushChunks(ctx: StoreContext): Promise<void> {
  const jobs = [...ctx.pending];
  for (const [, tmp] of jobs) {
    const err = await (ctx.syncs.get(tmp) ?? datasyncFile(tmp));
    if (err) throw err;
  }
  ctx.syncs.clear();
  const dirs = new Set<string>();
  for (const [id, tmp] of jobs) {
    const target = ctx.chunks.pathOf(id);
    const dir = path.dirname(target);
    if (!dirs.has(dir)) {
      await fsp.mkdir(dir, { recursive: true }).catch((e: NodeJS.ErrnoException) => {
        if (e.code !== 'EEXIST' && e.code !== 'ENOTDIR') throw e;
        throw new WgitError('E_CORRUPT', `chunk folder ${dir} is not a folder (run wgit fsck)`, { path: dir });
      });
      dirs.add(dir);
    }
    await placeChunk(tmp, target, ctx.replacing.has(id));
    ctx.pending.delete(id);
  }
  await forEachLimit([...dirs, ctx.chunks.dir], 8, fsyncDir);
  await discardTemps(ctx);
}

/** Removes the temp files of chunks that are not kept: duplicates, and after a failure the pending ones. */
export async function discardTemps(ctx: StoreContext, pendingToo = false): Promise<void> {
  const files = ctx.duplicates.splice(0);
  if (pendingToo) {
    await Promise.all(ctx.syncs.values());
    ctx.syncs.clear();
    files.push(...ctx.pending.values());
    ctx.pending.clear();
  }
  await forEachLimit(files, 8, (f) => fsp.rm(f, { force: true }));
}
