import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { WgitError } from '@wgit/core/errors';
import { corrupt, HASH_RE, MAX_CHUNK_HEADER, missing } from '../../chunk-file.js';
import { fsyncDir, mapFsError, TempFile, tempName } from '../../fsutil.js';
import type { ChunkBackend } from '../types.js';

/**
 * Open flags for reading a chunk file: a symbolic link is refused (ELOOP)
 * instead of followed, and opening a FIFO does not block. What is opened must
 * then be a regular file (checkChunkStat): a FIFO, a device or a link to
 * /dev/zero where a chunk should be is reported, never read.
 */
const OPEN_CHUNK = fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK;

function openError(id: string, file: string, e: unknown): WgitError {
  const code = (e as NodeJS.ErrnoException)?.code;
  if (code === 'ENOENT' || code === 'ENOTDIR') return missing(id);
  if (code === 'ELOOP') return corrupt(id, `${file} is a symbolic link, not a chunk file`);
  return corrupt(id, `cannot open ${file} (${code ?? (e as Error)?.message})`);
}

/**
 * A chunk file must be a regular file no longer than `maxBytes`, so a
 * damaged or hostile store cannot make a reader allocate or read more than
 * one chunk.
 */
function checkChunkStat(id: string, file: string, st: fs.Stats, maxBytes: number): void {
  if (!st.isFile()) throw corrupt(id, `${file} is not a regular file`);
  if (st.size > maxBytes)
    throw corrupt(
      id,
      `${file} is larger (${st.size} bytes) than a chunk of ${maxBytes - MAX_CHUNK_HEADER} bytes can be`,
    );
}

/** The most bytes a chunk file holding `maxPayload` raw bytes can have. */
export function chunkFileLimit(maxPayload: number): number {
  return MAX_CHUNK_HEADER + maxPayload;
}

/** Reads `buf.length` bytes from the start of a chunk file. */
export function readChunkFullySync(fd: number, buf: Uint8Array, id: string): void {
  let off = 0;
  while (off < buf.length) {
    const n = fs.readSync(fd, buf, off, buf.length - off, off);
    if (n === 0) throw corrupt(id, 'file shrank while being read');
    off += n;
  }
}

async function readChunkFully(fh: fsp.FileHandle, buf: Uint8Array, id: string): Promise<void> {
  let off = 0;
  while (off < buf.length) {
    const { bytesRead } = await fh.read(buf, off, buf.length - off, off);
    if (bytesRead === 0) throw corrupt(id, 'file shrank while being read');
    off += bytesRead;
  }
}

/**
 * Gives a durable temp file its chunk name without ever replacing an intact
 * chunk file: other commits may reference the file already there, possibly
 * as the delta base of their own chunks, so it must keep its exact encoding.
 * A hard link fails when the name is taken (another writer placed the same
 * chunk first: ours is dropped). Only a file found damaged is replaced, by
 * rename. Where the file system has no hard links, rename when the name is
 * free. True when `tmp` became the chunk file.
 */
export async function placeChunk(tmp: string, target: string, replace: boolean): Promise<boolean> {
  if (replace) {
    await fsp.rename(tmp, target);
    return true;
  }
  try {
    await fsp.link(tmp, target);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') {
      await fsp.rm(tmp, { force: true });
      return false;
    }
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'EMLINK') throw e;
    const taken = await fsp.lstat(target).then(
      () => true,
      () => false,
    );
    if (taken) await fsp.rm(tmp, { force: true });
    else await fsp.rename(tmp, target);
    return !taken;
  }
  await fsp.rm(tmp, { force: true });
  return true;
}

/**
 * Chunk files in a local folder, `<dir>/ab/cdef…`. Besides the ChunkBackend
 * methods it offers what the local hot paths use directly (chunkio.ts in
 * worker threads, commit.ts flushChunks): paths, synchronous safe opens, and
 * placing a batch of temp files that were made durable together.
 */
export class FolderChunks implements ChunkBackend {
  constructor(
    readonly dir: string,
    readonly tmpDir: string,
  ) {}

  pathOf(id: string): string {
    return path.join(this.dir, id.slice(0, 2), id.slice(2));
  }

  /** Opens a chunk file for reading (see OPEN_CHUNK); the caller closes the descriptor. */
  openSync(id: string, maxBytes: number): { fd: number; size: number } {
    const file = this.pathOf(id);
    let fd: number;
    try {
      fd = fs.openSync(file, OPEN_CHUNK);
    } catch (e) {
      throw openError(id, file, e);
    }
    try {
      const st = fs.fstatSync(fd);
      checkChunkStat(id, file, st, maxBytes);
      return { fd, size: st.size };
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
  }

  /** Whether anything at all (even a damaged file or a link) sits at the chunk's path. */
  presentSync(id: string): boolean {
    try {
      fs.lstatSync(this.pathOf(id));
      return true;
    } catch {
      return false;
    }
  }

  private async open(id: string, maxBytes: number): Promise<{ fh: fsp.FileHandle; size: number } | null> {
    const file = this.pathOf(id);
    let fh: fsp.FileHandle;
    try {
      fh = await fsp.open(file, OPEN_CHUNK);
    } catch (e) {
      const err = openError(id, file, e);
      if (err.code === 'E_MISSING_CHUNK') return null;
      throw err;
    }
    try {
      const st = await fh.stat();
      checkChunkStat(id, file, st, maxBytes);
      return { fh, size: st.size };
    } catch (e) {
      await fh.close();
      throw e;
    }
  }

  async hasChunk(id: string): Promise<boolean> {
    try {
      await fsp.lstat(this.pathOf(id));
      return true;
    } catch {
      return false;
    }
  }

  async getChunk(id: string, maxBytes: number): Promise<Uint8Array | null> {
    const o = await this.open(id, maxBytes);
    if (!o) return null;
    try {
      const file = Buffer.allocUnsafe(o.size);
      await readChunkFully(o.fh, file, id);
      return file;
    } finally {
      await o.fh.close();
    }
  }

  async getChunkHead(id: string, n: number): Promise<{ head: Uint8Array; size: number } | null> {
    const o = await this.open(id, Number.MAX_SAFE_INTEGER);
    if (!o) return null;
    try {
      const head = Buffer.alloc(Math.min(o.size, n));
      await readChunkFully(o.fh, head, id);
      return { head, size: o.size };
    } finally {
      await o.fh.close();
    }
  }

  /** A durable temp file holding `bytes`, in the temp folder (same file system as the chunks). */
  private async durableTemp(id: string, bytes: Uint8Array): Promise<string> {
    const tmp = path.join(this.tmpDir, tempName('chunk'));
    const f = await TempFile.create(tmp, this.pathOf(id));
    try {
      await f.write(bytes);
      await f.finish();
    } catch (e) {
      await f.abort();
      throw e;
    }
    return tmp;
  }

  private async fanDir(id: string): Promise<string> {
    const dir = path.dirname(this.pathOf(id));
    await fsp.mkdir(dir, { recursive: true }).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'EEXIST' && e.code !== 'ENOTDIR') throw mapFsError(e, dir);
      throw new WgitError('E_CORRUPT', `chunk folder ${dir} is not a folder (run wgit fsck)`, { path: dir });
    });
    return dir;
  }

  async putChunkIfAbsent(id: string, bytes: Uint8Array): Promise<boolean> {
    const dir = await this.fanDir(id);
    const tmp = await this.durableTemp(id, bytes);
    try {
      const placed = await placeChunk(tmp, this.pathOf(id), false);
      if (placed) await fsyncDir(dir);
      return placed;
    } catch (e) {
      await fsp.rm(tmp, { force: true });
      throw mapFsError(e, this.pathOf(id));
    }
  }

  async replaceChunk(id: string, bytes: Uint8Array): Promise<void> {
    const dir = await this.fanDir(id);
    const tmp = await this.durableTemp(id, bytes);
    try {
      await placeChunk(tmp, this.pathOf(id), true);
      await fsyncDir(dir);
    } catch (e) {
      await fsp.rm(tmp, { force: true });
      throw mapFsError(e, this.pathOf(id));
    }
  }

  async listChunks(): Promise<string[]> {
    const out: string[] = [];
    let fans: string[];
    try {
      fans = await fsp.readdir(this.dir);
    } catch {
      return out;
    }
    for (const fan of fans) {
      if (!/^[0-9a-f]{2}$/.test(fan)) continue;
      for (const rest of await fsp.readdir(path.join(this.dir, fan)).catch(() => [] as string[])) {
        const id = fan + rest;
        if (HASH_RE.test(id)) out.push(id);
      }
    }
    return out.sort();
  }

  async chunkInfo(id: string): Promise<{ size: number; mtimeMs: number } | null> {
    try {
      const st = await fsp.lstat(this.pathOf(id));
      return { size: st.size, mtimeMs: st.mtimeMs };
    } catch {
      return null;
    }
  }

  async deleteChunk(id: string): Promise<void> {
    await fsp.unlink(this.pathOf(id)).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'ENOENT') throw mapFsError(e, this.pathOf(id));
    });
  }
}
