import { createHash } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { type LocalModel, openModel, WgitError } from '@wgit/core';
import { type ChunkStore, sha256hex } from './chunkstore.js';
import type { RepoConfig } from './config.js';
import { mapFsError } from './fsutil.js';
import type { GitStore } from './gitstore.js';
import { headerTreePath, MANIFEST, readAllRecords, sideFileTreePath, type TensorSet, tensorTreePath } from './model.js';
import { checkRelPath } from './names.js';
import {
  type ChunkRef,
  encodeManifest,
  encodeRecord,
  type Manifest,
  type ShardEntry,
  type TensorRecord,
} from './records.js';

export interface StoreContext {
  git: GitStore;
  chunks: ChunkStore;
  config: RepoConfig;
  /** Chunk ids this operation created, so a failed commit can take them back. */
  created: string[];
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

async function readAt(fh: fsp.FileHandle, buf: Uint8Array, position: number, file: string): Promise<void> {
  let off = 0;
  while (off < buf.length) {
    const { bytesRead } = await fh.read(buf, off, buf.length - off, position + off);
    if (bytesRead === 0) {
      throw new WgitError('E_SAFETENSORS_TRUNCATED', `${file} shrank while being committed`, { path: file });
    }
    off += bytesRead;
  }
}

/**
 * Stores one model (the commit's main tensor set, or a group) chunk by
 * chunk: memory stays at a couple of chunks whatever the model size. Each
 * chunk is offered to the codec with the parent's chunk at the same
 * position as a delta base when name, dtype and shape match.
 */
export async function storeModel(
  ctx: StoreContext,
  model: LocalModel,
  parent: { set: TensorSet; git: GitStore } | null,
  recipe: Record<string, unknown> | null,
  groups: string[],
): Promise<StoredSet> {
  const { chunks, config } = ctx;
  const cs = config.chunkSize;
  const entries = new Map<string, string>();
  const parentRecords = parent ? await readAllRecords(parent.git, parent.set).catch(() => null) : null;
  let rawBytes = 0;
  let storedBytes = 0;
  let newBytes = 0;
  const buf = new Uint8Array(cs);
  const shards: ShardEntry[] = [];

  for (const h of model.shards) {
    const rel = model.kind === 'file' ? path.basename(h.path) : posixRel(model.root, h.path);
    checkRelPath(rel, 'shard');
    const byOffset = [...h.tensors].sort((a, b) => a.begin - b.begin);
    shards.push({ file: rel, size: h.fileSize, tensors: byOffset.map((t) => t.name) });
    entries.set(headerTreePath(rel), await ctx.git.writeBlob(h.headerBytes));
    let fh: fsp.FileHandle;
    try {
      fh = await fsp.open(h.path, 'r');
    } catch (e) {
      throw mapFsError(e, h.path);
    }
    try {
      for (const t of h.tensors) {
        const byteLength = t.end - t.begin;
        const pr = parentRecords?.get(t.name);
        const sameShape =
          pr &&
          pr.dtype === t.dtype &&
          pr.chunkSize === cs &&
          pr.shape.length === t.shape.length &&
          pr.shape.every((d, i) => d === t.shape[i]);
        const tensorHash = createHash('sha256');
        const refs: ChunkRef[] = [];
        for (let off = 0, i = 0; off < byteLength; off += cs, i++) {
          const n = Math.min(cs, byteLength - off);
          const raw = buf.subarray(0, n);
          await readAt(fh, raw, h.dataStart + t.begin + off, h.path);
          tensorHash.update(raw);
          const id = sha256hex(raw);
          let base: { id: string; raw: Uint8Array; depth: number } | null = null;
          const pc = sameShape ? pr.chunks[i] : undefined;
          if (pc && pc.hash !== id && !(await chunks.has(id))) {
            // A damaged parent chunk only costs compression here; fsck reports it.
            try {
              const head = await chunks.readHeader(pc.hash);
              base = { id: pc.hash, raw: await chunks.get(pc.hash), depth: head.depth };
            } catch {
              base = null;
            }
          }
          const put = await chunks.put(id, raw, t.dtype, base, config.maxDeltaDepth);
          if (put.created) {
            ctx.created.push(id);
            newBytes += put.stored;
          }
          storedBytes += put.stored;
          refs.push({ hash: id, encoding: put.encoding, stored: put.stored, depth: put.depth });
          ctx.progress.done += n;
          ctx.onProgress?.({ phase: 'chunks', done: ctx.progress.done, total: ctx.progress.total });
        }
        const rec: TensorRecord = {
          format: 1,
          name: t.name,
          dtype: t.dtype,
          shape: t.shape,
          byteLength,
          sha256: tensorHash.digest('hex'),
          chunkSize: cs,
          chunks: refs,
        };
        entries.set(tensorTreePath(t.name), await ctx.git.writeBlob(encodeRecord(rec)));
        rawBytes += byteLength;
      }
    } finally {
      await fh.close();
    }
  }

  const files = [...model.sideFiles];
  if (model.indexFile && !files.includes(model.indexFile)) files.push(model.indexFile);
  files.sort();
  for (const rel of files) {
    checkRelPath(rel, 'side file');
    entries.set(sideFileTreePath(rel), await ctx.git.writeBlob(await model.readSideFile(rel)));
  }
  const manifest: Manifest = {
    format: 1,
    kind: model.kind,
    shards,
    tensors: model.tensors.map((t) => t.name),
    index: model.indexFile ?? null,
    files,
    rawBytes,
    recipe,
    groups,
  };
  entries.set(MANIFEST, await ctx.git.writeBlob(encodeManifest(manifest)));
  return { entries, manifest, tensors: model.tensors.length, rawBytes, storedBytes, newBytes };
}

export async function openInput(p: string): Promise<LocalModel> {
  return openModel(path.resolve(p));
}
