import { randomBytes } from 'node:crypto';
import { open, rename, unlink } from 'node:fs/promises';
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

/** Temp file + fsync + rename, so readers see the old file or the whole new one. */
export async function writeFileAtomic(target: string, data: Uint8Array | string): Promise<void> {
  const tmp = tempPathFor(target);
  const fh = await open(tmp, 'wx');
  try {
    await writeAll(fh, typeof data === 'string' ? new TextEncoder().encode(data) : data);
    await fh.sync();
    await fh.close();
    await rename(tmp, target);
  } catch (e) {
    await fh.close().catch(() => {});
    await unlink(tmp).catch(() => {});
    throw e;
  }
  await fsyncDir(dirname(target));
}
