import { randomBytes } from 'node:crypto';
import { mkdir, open, rename, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';

type FileHandle = Awaited<ReturnType<typeof open>>;

/** `<target>.tmp-<pid>-<random>`: unique per process and call, beside the target so rename stays on one filesystem. */
export function tempPathFor(target: string): string {
  return `${target}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
}

export async function writeAll(fh: FileHandle, data: Uint8Array): Promise<void> {
  let done = 0;
  while (done < data.byteLength) {
    // Node caps one write at 2 GiB.
    const { bytesWritten } = await fh.write(data, done, Math.min(data.byteLength - done, 1 << 30));
    done += bytesWritten;
  }
}

/** Makes a rename durable: without syncing the folder a crash can forget the new name. */
export async function fsyncDir(dir: string): Promise<void> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(dir, 'r');
    await fh.sync();
  } catch {
    // Some filesystems refuse fsync on folders; the rename itself is still atomic.
  } finally {
    await fh?.close();
  }
}

export interface AtomicWriteOptions {
  /** The temp file (on the target's file system); default `tempPathFor(target)`, beside it. */
  tempPath?: string;
  /** Called just before the bytes are written (the store's fault injection in tests). */
  beforeWrite?: (target: string, bytes: number) => void;
  /** Create the target's folder when it is missing. */
  mkdirs?: boolean;
  /** fsync the target's folder after the rename (default true; the store batches these). */
  syncDir?: boolean;
}

/**
 * Temp file + fsync + rename, so readers see the old file or the whole new
 * one: the one atomic write of core and store.
 */
export async function writeFileAtomic(
  target: string,
  data: Uint8Array | string,
  opts: AtomicWriteOptions = {},
): Promise<void> {
  const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data;
  const tmp = opts.tempPath ?? tempPathFor(target);
  let fh: FileHandle | null = await open(tmp, 'wx', 0o644);
  try {
    opts.beforeWrite?.(target, bytes.byteLength);
    await writeAll(fh, bytes);
    await fh.sync();
    await fh.close();
    fh = null;
    try {
      await rename(tmp, target);
    } catch (e) {
      if (!opts.mkdirs || (e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      await mkdir(dirname(target), { recursive: true });
      await rename(tmp, target);
    }
  } catch (e) {
    if (fh) await fh.close().catch(() => {});
    await unlink(tmp).catch(() => {});
    throw e;
  }
  if (opts.syncDir !== false) await fsyncDir(dirname(target));
}
