import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { type ErrorCode, WgitError } from '@wgit/core';

/**
 * Reads a small file the user named (a config, a recipe): it must be a
 * regular file of at most `maxBytes`. It is opened without blocking, so a
 * FIFO cannot hang the command, and checked through the open handle before
 * anything is read, so /dev/zero or a huge file is refused at once. A missing
 * file is E_NOT_FOUND; anything else refused is `code`.
 */
export async function readSmallFile(
  file: string,
  opts: { what: string; maxBytes: number; code: ErrorCode },
): Promise<Buffer> {
  const refuse = (why: string) =>
    new WgitError(opts.code, `${opts.what} ${JSON.stringify(file)} ${why}`, { path: file });
  let fh: Awaited<ReturnType<typeof open>>;
  try {
    fh = await open(file, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR')
      throw new WgitError('E_NOT_FOUND', `${opts.what} ${JSON.stringify(file)}: no such file`, { path: file });
    throw refuse(`cannot be opened (${code ?? String(e)})`);
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) {
      const kind = st.isDirectory()
        ? 'a folder'
        : st.isFIFO()
          ? 'a FIFO'
          : st.isCharacterDevice() || st.isBlockDevice()
            ? 'a device'
            : st.isSocket()
              ? 'a socket'
              : 'not a file';
      throw refuse(`is not a regular file (${kind})`);
    }
    if (st.size > opts.maxBytes) throw refuse(`is ${st.size} bytes, over the ${opts.maxBytes}-byte limit`);
    // The file may grow after the check: read at most one byte past the limit.
    const buf = Buffer.alloc(opts.maxBytes + 1);
    let n = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, n, buf.length - n, n);
      if (bytesRead === 0) break;
      n += bytesRead;
      if (n > opts.maxBytes) throw refuse(`is over the ${opts.maxBytes}-byte limit`);
    }
    return buf.subarray(0, n);
  } finally {
    await fh.close().catch(() => {});
  }
}
