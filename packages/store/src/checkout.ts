import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { WgitError } from '@wgit/core';
import type { FolderChunks } from './backend/fs/chunks.js';
import { checkoutTempFolder, recordCheckoutTemp, releaseCheckoutTemp } from './checkout-temps.js';
import type { GetJob } from './chunkio.js';
import type { ChunkStore } from './chunkstore.js';
import { JobWindow } from './commit.js';
import { checkFault, fsyncDir, mapFsError } from './fsutil.js';
import type { GitStore } from './gitstore.js';
import {
  checkChunkList,
  isChunkedSideFile,
  lookupPath,
  readAllRecords,
  readShardHeader,
  readSideFileRecord,
  sideFileTreePath,
  streamTensor,
  type TensorSet,
  tensorError,
} from './model.js';
import { checkPathSet, checkRelPath } from './names.js';
import { startRunner } from './pool.js';
import type { TensorRecord } from './records.js';

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
 * Refuses a tensor set whose files could not be written safely side by side:
 * an unsafe shard or side-file path (checkRelPath), a path listed twice or
 * used as both a file and a folder, or a symbolic link or submodule entry
 * anywhere in its tree (wgit writes neither; git would check them out as
 * links). Runs before checkout creates anything, and in fsck.
 */
export async function checkSetPaths(git: GitStore, set: TensorSet): Promise<void> {
  const at = `commit ${set.commit.slice(0, 12)}${set.group ? ` (group ${set.group})` : ''}`;
  const m = set.manifest;
  const entries = [
    ...m.shards.map((s) => ({ path: s.file, what: 'shard' })),
    ...m.files.map((f) => ({ path: f, what: 'side file' })),
  ];
  try {
    for (const e of entries) checkRelPath(e.path, e.what);
    checkPathSet(entries);
  } catch (e) {
    const err = e as WgitError;
    throw new WgitError(err.code, `${at}: ${err.message}`, { ...err.data, commit: set.commit });
  }
  const walk = async (tree: string, prefix: string): Promise<void> => {
    for (const e of await git.readTree(tree)) {
      const where = `${prefix}${e.path}`;
      if (e.mode === '120000' || e.mode === '160000' || e.type === 'commit') {
        const kind = e.mode === '120000' ? 'a symbolic link' : 'a submodule';
        throw new WgitError('E_UNSAFE_PATH', `${at}: tree entry ${where} is ${kind}; wgit stores regular files only`, {
          commit: set.commit,
          path: where,
        });
      }
      if (e.type === 'tree') await walk(e.oid, `${where}/`);
    }
  };
  await walk(set.tree, '');
}

const outDirError = (shown: string, why: string) =>
  new WgitError('E_OUT_DIR', `cannot use output folder ${shown}: ${why}`, { path: shown });

/**
 * Where the output really goes, links resolved: a link to a folder is
 * followed (the link stays), a dangling link is refused, and so is any place
 * inside the repository's own folder.
 */
async function resolveOutput(shown: string, gitdir: string): Promise<string> {
  const missing: string[] = [];
  let cur = shown;
  for (;;) {
    try {
      await fsp.lstat(cur);
      break;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ELOOP') throw outDirError(shown, `${cur} leads through a loop of symbolic links`);
      // ENOTDIR: a file on the way; walking up finds it and says so below.
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw e;
      missing.unshift(path.basename(cur));
      cur = path.dirname(cur);
    }
  }
  let real: string;
  try {
    real = await fsp.realpath(cur);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ELOOP') throw outDirError(shown, `${cur} leads through a loop of symbolic links`);
    if (code === 'ENOENT') {
      const target = await fsp.readlink(cur).catch(() => null);
      throw outDirError(
        shown,
        target === null
          ? `${cur} leads through a symbolic link that points to nothing`
          : `${cur} is a symbolic link to ${target}, which does not exist`,
      );
    }
    if (code === 'ENOTDIR') throw outDirError(shown, `a part of ${cur} is not a folder`);
    throw e;
  }
  if (missing.length > 0 && !(await fsp.stat(real)).isDirectory()) throw outDirError(shown, `${cur} is not a folder`);
  const out = path.join(real, ...missing);
  const repo = await fsp.realpath(gitdir).catch(() => path.resolve(gitdir));
  if (out === repo || out.startsWith(repo + path.sep))
    throw new WgitError('E_UNSAFE_PATH', `output ${shown} lies in the repository folder ${repo}`, {
      path: shown,
    });
  return out;
}

/** A rename or rmdir at the end found the output taken: another checkout (or anyone) wrote there meanwhile. */
function taken(e: unknown, shown: string): unknown {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOTEMPTY' || code === 'EEXIST' || code === 'ENOTDIR' || code === 'EISDIR')
    return new WgitError(
      'E_OUTPUT_NOT_EMPTY',
      `output ${shown} was filled while this checkout ran (another checkout wrote there first)`,
      { path: shown },
    );
  return e;
}

/** Two paths of one commit that only differ where this file system does not look (case, Unicode form) collide. */
function collision(e: unknown, set: TensorSet): unknown {
  const err = e as NodeJS.ErrnoException;
  if (err?.code === 'EEXIST' || err?.code === 'ENOTDIR' || err?.code === 'EISDIR')
    return new WgitError(
      'E_UNSAFE_PATH',
      `commit ${set.commit.slice(0, 12)}: two of its paths are the same file on this file system (${path.basename(err.path ?? '?')})`,
      { commit: set.commit },
    );
  return e;
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
  chunks: ChunkStore<FolderChunks>,
  set: TensorSet,
  outDir: string,
  onProgress?: (e: { phase: string; done: number; total: number }) => void,
  tmpDir: string = chunks.backend.tmpDir,
): Promise<{ files: string[]; bytes: number }> {
  const shown = path.resolve(outDir);
  // Nothing is created before the commit's paths and the output are known to be safe.
  await checkSetPaths(git, set);
  const out = await resolveOutput(shown, git.gitdir);
  const state = await isEmptyDir(out);
  if (state === false)
    throw new WgitError('E_OUTPUT_NOT_EMPTY', `output ${shown} exists and is not an empty folder`, { path: shown });
  const m = set.manifest;
  const records = await readAllRecords(git, set);
  const parentDir = path.dirname(out);
  await fsp.mkdir(parentDir, { recursive: true }).catch((e) => {
    const mapped = mapFsError(e, parentDir);
    if (mapped !== e) throw mapped;
    throw outDirError(shown, `cannot create ${parentDir} (${(e as NodeJS.ErrnoException).code ?? e})`);
  });
  const tmp = checkoutTempFolder(out);
  const written: string[] = [];
  let bytes = 0;
  // Recorded before the folder exists, so a kill at any point leaves a folder gc can find.
  const marker = await recordCheckoutTemp(tmpDir, tmp);
  const runner = await startRunner(m.rawBytes, chunks.backend.dir, chunks.backend.tmpDir).catch(async (e) => {
    await releaseCheckoutTemp(marker);
    throw e;
  });
  const total = m.rawBytes;
  let done = 0;
  // The window of the file being written: workers write through its descriptor.
  let window = new JobWindow(runner.window);
  /** Queues the decode of every chunk of `rec` on the runner, written to `fd` from `start` on. */
  const submitChunks = async (
    rec: TensorRecord,
    fd: number,
    file: string,
    start: number,
    name: string,
    onWrote?: (n: number) => void,
  ): Promise<void> => {
    for (let i = 0, pos = start; i < rec.chunks.length; i++) {
      const rawLength = Math.min(rec.chunkSize, rec.byteLength - i * rec.chunkSize);
      const job: GetJob = { op: 'get', id: rec.chunks[i].hash, rawLength, fd, position: pos, file };
      pos += rawLength;
      await window.submit(
        () => runner.run(job),
        (n) => {
          onWrote?.(n);
          done += n;
          onProgress?.({ phase: 'checkout', done, total });
        },
        (e) => tensorError(e, set, name),
      );
    }
  };
  try {
    await fsp.mkdir(tmp);
    const seen = new Set<string>();
    const claim = (rel: string, what: string) => {
      const full = inside(tmp, rel, what);
      if (seen.has(full))
        throw new WgitError('E_UNSAFE_PATH', `commit ${set.commit.slice(0, 12)} lists ${JSON.stringify(rel)} twice`);
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
      window = new JobWindow(runner.window);
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
          checkFault(target, data.length);
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
          await submitChunks(rec, fh.fd, target, pos, name, wrote);
          pos += rec.byteLength;
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
      if (isChunkedSideFile(set, rel)) {
        // A large side file: its chunks are decoded on the runner straight into the file, like a tensor's.
        const rec = await readSideFileRecord(git, set, rel);
        checkChunkList(set, rec);
        await fsp.mkdir(path.dirname(target), { recursive: true });
        const fh = await fsp.open(target, 'wx');
        window = new JobWindow(runner.window);
        try {
          await submitChunks(rec, fh.fd, target, 0, rel);
          await window.drain();
          await fh.sync();
        } finally {
          await window.settle();
          await fh.close();
        }
        bytes += rec.byteLength;
        written.push(rel);
        continue;
      }
      const e = await lookupPath(git, set.tree, sideFileTreePath(rel));
      if (e?.type !== 'blob')
        throw new WgitError('E_CORRUPT', `commit ${set.commit.slice(0, 12)}: side file ${rel} is missing`);
      const data = await git.readBlob(e.oid);
      await fsp.mkdir(path.dirname(target), { recursive: true });
      const fh = await fsp.open(target, 'wx');
      try {
        checkFault(target, data.length);
        await fh.writeFile(data);
        await fh.sync();
      } finally {
        await fh.close();
      }
      bytes += data.length;
      written.push(rel);
    }
    await fsyncDir(tmp);
    if (state === true)
      await fsp.rmdir(out).catch((e) => {
        // Gone already: another checkout is between its rmdir and rename; the rename below tells.
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw taken(e, shown);
      });
    await fsp.rename(tmp, out).catch((e) => {
      throw taken(e, shown);
    });
    await fsyncDir(parentDir);
  } catch (e) {
    await fsp.rm(tmp, { recursive: true, force: true }).catch(() => {});
    throw collision(mapFsError(e, shown), set);
  } finally {
    await runner.close();
    await releaseCheckoutTemp(marker);
  }
  return { files: written.sort(), bytes };
}
