import { randomBytes } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { WgitError } from '@wgit/core';
import type { GetJob } from './chunkio.js';
import type { ChunkStore } from './chunkstore.js';
import { JobWindow } from './commit.js';
import { fsyncDir, mapFsError } from './fsutil.js';
import type { GitStore } from './gitstore.js';
import {
  checkChunkList,
  lookupPath,
  readAllRecords,
  readShardHeader,
  sideFileTreePath,
  streamTensor,
  type TensorSet,
  tensorError,
} from './model.js';
import { checkRelPath } from './names.js';
import { startRunner } from './pool.js';

const SYNC_EVERY = 64 << 20;

async function isEmptyDir(dir: string): Promise<boolean | null> {
  try {
    const st = await fsp.stat(dir);
    if (!st.isDirectory()) return false;
    return (await fsp.readdir(dir)).length === 0;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}

/** Joins a checked relative path below a folder and makes sure the result really is below it. */
function inside(dir: string, rel: string, what: string): string {
  checkRelPath(rel, what);
  const full = path.resolve(dir, ...rel.split('/'));
  if (!full.startsWith(dir + path.sep)) {
    throw new WgitError('E_UNSAFE_PATH', `${what} path escapes the output folder: ${JSON.stringify(rel)}`, {
      path: rel,
    });
  }
  return full;
}

/**
 * Writes a commit's files into a temp folder beside `outDir` and renames it
 * into place at the end, so a failure (a corrupt chunk, a full disk) leaves
 * no partial output. Shards are rebuilt from their stored raw header bytes
 * followed by the tensors in data-offset order, which gives the original
 * file byte for byte.
 */
export async function checkoutSet(
  git: GitStore,
  chunks: ChunkStore,
  set: TensorSet,
  outDir: string,
  onProgress?: (e: { phase: string; done: number; total: number }) => void,
): Promise<{ files: string[]; bytes: number }> {
  const out = path.resolve(outDir);
  const state = await isEmptyDir(out);
  if (state === false)
    throw new WgitError('E_OUTPUT_NOT_EMPTY', `output ${out} exists and is not an empty folder`, { path: out });
  const m = set.manifest;
  const records = await readAllRecords(git, set);
  const parentDir = path.dirname(out);
  await fsp.mkdir(parentDir, { recursive: true }).catch((e) => {
    throw mapFsError(e, parentDir);
  });
  const tmp = path.join(parentDir, `.${path.basename(out)}.wgit-tmp-${process.pid}-${randomBytes(6).toString('hex')}`);
  const written: string[] = [];
  let bytes = 0;
  const runner = await startRunner(m.rawBytes, chunks.dir, chunks.tmpDir);
  const total = m.rawBytes;
  let done = 0;
  try {
    await fsp.mkdir(tmp);
    const seen = new Set<string>();
    const claim = (rel: string, what: string) => {
      const full = inside(tmp, rel, what);
      if (seen.has(full))
        throw new WgitError('E_CORRUPT', `commit ${set.commit.slice(0, 12)} lists ${JSON.stringify(rel)} twice`);
      seen.add(full);
      return full;
    };
    for (const shard of m.shards) {
      const target = claim(shard.file, 'shard');
      // The stored header must describe exactly the records we are about to write.
      const header = await readShardHeader(git, set, shard);
      const headerBytes = header.headerBytes;
      const byOffset = [...header.tensors].sort((a, b) => a.begin - b.begin);
      if (byOffset.length !== shard.tensors.length)
        throw new WgitError(
          'E_CORRUPT',
          `commit ${set.commit.slice(0, 12)}: header of ${shard.file} disagrees with the manifest`,
        );
      byOffset.forEach((t, i) => {
        const r = records.get(shard.tensors[i]);
        const ok =
          r &&
          t.name === r.name &&
          t.dtype === r.dtype &&
          t.end - t.begin === r.byteLength &&
          t.shape.join(',') === r.shape.join(',');
        if (!ok)
          throw new WgitError(
            'E_CORRUPT',
            `commit ${set.commit.slice(0, 12)}: header of ${shard.file} disagrees with tensor ${JSON.stringify(t.name)}`,
          );
      });
      await fsp.mkdir(path.dirname(target), { recursive: true });
      const fh = await fsp.open(target, 'wx');
      const window = new JobWindow(runner.window);
      // Writeback in the background every SYNC_EVERY bytes keeps the disk busy
      // while chunks decode, so the final fsync finds little left to do.
      let unsynced = 0;
      let background: Promise<unknown> | null = null;
      const wrote = (n: number) => {
        unsynced += n;
        if (background === null && unsynced >= SYNC_EVERY) {
          unsynced = 0;
          background = fh.datasync().then(
            () => {
              background = null;
            },
            (e: unknown) => e,
          );
        }
      };
      try {
        let pos = 0;
        const write = async (data: Uint8Array) => {
          let off = 0;
          while (off < data.length) {
            const { bytesWritten } = await fh.write(data, off, data.length - off, pos);
            off += bytesWritten;
            pos += bytesWritten;
          }
        };
        await write(headerBytes);
        for (const name of shard.tensors) {
          const rec = records.get(name)!;
          if (rec.format === 1) {
            // Older records hash the tensor's bytes as a whole: stream it in order on this thread.
            await window.drain();
            await streamTensor(chunks, set, rec, 255, async (raw) => {
              await write(raw);
              done += raw.length;
              onProgress?.({ phase: 'checkout', done, total });
            });
            continue;
          }
          checkChunkList(set, rec);
          for (let i = 0; i < rec.chunks.length; i++) {
            const rawLength = Math.min(rec.chunkSize, rec.byteLength - i * rec.chunkSize);
            const job: GetJob = { op: 'get', id: rec.chunks[i].hash, rawLength, fd: fh.fd, position: pos };
            pos += rawLength;
            await window.submit(
              () => runner.run(job),
              (n) => {
                wrote(n);
                done += n;
                onProgress?.({ phase: 'checkout', done, total });
              },
              (e) => tensorError(e, set, name),
            );
          }
        }
        await window.drain();
        const err = await background;
        if (err) throw err;
        if (pos !== shard.size)
          throw new WgitError(
            'E_CORRUPT',
            `commit ${set.commit.slice(0, 12)}: ${shard.file} rebuilt to ${pos} bytes, expected ${shard.size}`,
          );
        await fh.sync();
        bytes += pos;
      } finally {
        // Workers write through this descriptor: none may be in flight when it closes.
        await window.settle();
        await background;
        await fh.close();
      }
      written.push(shard.file);
    }
    for (const rel of m.files) {
      const target = claim(rel, 'side file');
      const e = await lookupPath(git, set.tree, sideFileTreePath(rel));
      if (e?.type !== 'blob')
        throw new WgitError('E_CORRUPT', `commit ${set.commit.slice(0, 12)}: side file ${rel} is missing`);
      const data = await git.readBlob(e.oid);
      await fsp.mkdir(path.dirname(target), { recursive: true });
      const fh = await fsp.open(target, 'wx');
      try {
        await fh.writeFile(data);
        await fh.sync();
      } finally {
        await fh.close();
      }
      bytes += data.length;
      written.push(rel);
    }
    await fsyncDir(tmp);
    if (state === true) await fsp.rmdir(out);
    await fsp.rename(tmp, out);
    await fsyncDir(parentDir);
  } catch (e) {
    await fsp.rm(tmp, { recursive: true, force: true }).catch(() => {});
    throw mapFsError(e, out);
  } finally {
    await runner.close();
  }
  return { files: written.sort(), bytes };
}
