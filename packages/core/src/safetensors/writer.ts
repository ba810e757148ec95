import { open, rename, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { WgitError } from '../errors.js';
import { fsyncDir, tempPathFor, writeAll } from './atomic.js';
import { encodeSafetensorsHeader, quoteName, type TensorInfo, type TensorSpec } from './header.js';

type FileHandle = Awaited<ReturnType<typeof open>>;

/**
 * Streams a safetensors file: the header is written first (all specs are
 * known up front), then each tensor's bytes in spec order. Nothing appears
 * at `path` until finish() renames the synced temp file over it.
 */
export class SafetensorsWriter {
  private next = 0;
  private state: 'open' | 'finished' | 'aborted' = 'open';

  private constructor(
    readonly path: string,
    private readonly tmp: string,
    private fh: FileHandle | null,
    readonly tensors: TensorInfo[],
  ) {}

  static async create(
    path: string,
    specs: TensorSpec[],
    metadata?: Record<string, string> | null,
  ): Promise<SafetensorsWriter> {
    const { bytes, tensors } = encodeSafetensorsHeader(specs, metadata, path);
    const tmp = tempPathFor(path);
    const fh = await open(tmp, 'wx');
    try {
      await writeAll(fh, bytes);
    } catch (e) {
      await fh.close().catch(() => {});
      await unlink(tmp).catch(() => {});
      throw e;
    }
    return new SafetensorsWriter(path, tmp, fh, tensors);
  }

  /** Tensors declared but not yet written. */
  get remainingTensors(): number {
    return this.tensors.length - this.next;
  }

  async write(name: string, data: Uint8Array): Promise<void> {
    if (this.state !== 'open') this.misuse(`cannot write tensor ${quoteName(name)}: writer is ${this.state}`);
    const t = this.tensors[this.next];
    if (!t)
      this.misuse(`tensor ${quoteName(name)} was not declared (all ${this.tensors.length} tensors already written)`);
    if (t.name !== name) this.misuse(`expected tensor ${quoteName(t.name)} next, got ${quoteName(name)}`);
    if (data.byteLength !== t.end - t.begin) {
      this.misuse(
        `tensor ${quoteName(name)}: got ${data.byteLength} bytes, its shape and dtype need ${t.end - t.begin}`,
      );
    }
    try {
      await writeAll(this.fh!, data);
    } catch (e) {
      await this.abort();
      throw e;
    }
    this.next++;
  }

  async finish(): Promise<void> {
    if (this.state !== 'open') this.misuse(`cannot finish: writer is ${this.state}`);
    if (this.next !== this.tensors.length) {
      this.misuse(
        `cannot finish: ${this.tensors.length - this.next} tensors not written, next is ${quoteName(this.tensors[this.next].name)}`,
      );
    }
    try {
      await this.fh!.sync();
      await this.fh!.close();
      this.fh = null;
      await rename(this.tmp, this.path);
    } catch (e) {
      await this.abort();
      throw e;
    }
    this.state = 'finished';
    await fsyncDir(dirname(this.path));
  }

  /** Discards the temp file; safe to call more than once and after a failed write. */
  async abort(): Promise<void> {
    if (this.state !== 'open') return;
    this.state = 'aborted';
    await this.fh?.close().catch(() => {});
    this.fh = null;
    await unlink(this.tmp).catch(() => {});
  }

  private misuse(message: string): never {
    throw new WgitError('E_SAFETENSORS_WRITE', `${this.path}: ${message}`, { path: this.path });
  }
}

/** Writes a whole file at once (tensors in the given order). */
export async function writeSafetensors(
  path: string,
  tensors: (TensorSpec & { data: Uint8Array })[],
  metadata?: Record<string, string> | null,
): Promise<void> {
  const w = await SafetensorsWriter.create(
    path,
    tensors.map(({ name, dtype, shape }) => ({ name, dtype, shape })),
    metadata,
  );
  try {
    for (const t of tensors) await w.write(t.name, t.data);
    await w.finish();
  } catch (e) {
    await w.abort();
    throw e;
  }
}
