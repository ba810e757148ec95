import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { WgitError } from '../errors.js';
import { writeFileAtomic } from './atomic.js';
import { encodeSafetensorsHeader, quoteName, type TensorSpec } from './header.js';
import { SafetensorsWriter } from './writer.js';

/**
 * 5 GB (decimal), the default `max_shard_size` of transformers'
 * save_pretrained, so folders we write shard like the ones users download.
 */
export const DEFAULT_MAX_SHARD_BYTES = 5_000_000_000;

export const SINGLE_FILE_NAME = 'model.safetensors';
export const INDEX_FILE_NAME = 'model.safetensors.index.json';

export function shardFileName(i: number, count: number): string {
  return `model-${String(i + 1).padStart(5, '0')}-of-${String(count).padStart(5, '0')}.safetensors`;
}

/**
 * Groups tensors into shards the way transformers does: in order, starting a
 * new shard when the next tensor would push the current one over the limit
 * (a tensor larger than the limit gets a shard of its own).
 */
export function planShards(specs: TensorSpec[], maxShardBytes: number): TensorSpec[][] {
  const { tensors } = encodeSafetensorsHeader(specs, null);
  const shards: TensorSpec[][] = [];
  let current: TensorSpec[] = [];
  let bytes = 0;
  tensors.forEach((t, i) => {
    const n = t.end - t.begin;
    if (current.length > 0 && bytes + n > maxShardBytes) {
      shards.push(current);
      current = [];
      bytes = 0;
    }
    current.push(specs[i]);
    bytes += n;
  });
  if (current.length > 0 || shards.length === 0) shards.push(current);
  return shards;
}

/**
 * The index as transformers writes it: json.dumps(indent=2, sort_keys=True)
 * with ASCII escapes, plus a trailing newline.
 */
export function formatIndex(totalSize: number, weightMap: Record<string, string>): string {
  const byCodePoint = (a: string, b: string): number => {
    // Python sorts str by code point; JS compares UTF-16 units, which differs above U+FFFF.
    const x = [...a];
    const y = [...b];
    for (let i = 0; i < Math.min(x.length, y.length); i++) {
      const d = x[i].codePointAt(0)! - y[i].codePointAt(0)!;
      if (d !== 0) return d;
    }
    return x.length - y.length;
  };
  const sorted: Record<string, string> = {};
  for (const k of Object.keys(weightMap).sort(byCodePoint)) {
    Object.defineProperty(sorted, k, { value: weightMap[k], enumerable: true, writable: true, configurable: true });
  }
  const text = JSON.stringify({ metadata: { total_size: totalSize }, weight_map: sorted }, null, 2);
  return `${text.replace(/[^\x20-\x7e\n]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)}\n`;
}

/**
 * Writes a model folder: `model.safetensors` when everything fits one shard,
 * otherwise `model-0000i-of-0000n.safetensors` plus `model.safetensors.index.json`.
 * Tensors are written in spec order; each shard is atomic and the index is
 * written last, so a folder with an index has all its shards.
 */
export class ModelWriter {
  private shardIndex = 0;
  private inShard = 0;
  private current: SafetensorsWriter | null = null;
  private done = false;

  private constructor(
    readonly dir: string,
    private readonly shards: TensorSpec[][],
    private readonly metadata: Record<string, string> | undefined,
    private readonly totalSize: number,
  ) {}

  static async create(
    dir: string,
    specs: TensorSpec[],
    opts: { maxShardBytes?: number; metadata?: Record<string, string> } = {},
  ): Promise<ModelWriter> {
    const max = opts.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES;
    if (!Number.isSafeInteger(max) || max <= 0) {
      throw new WgitError('E_SAFETENSORS_WRITE', `${dir}: maxShardBytes must be a positive integer, got ${max}`, {
        path: dir,
      });
    }
    // Validates names, dtypes and shapes once, for the whole model (duplicates across shards included).
    const { dataLength } = encodeSafetensorsHeader(specs, opts.metadata ?? null, dir);
    await mkdir(dir, { recursive: true });
    return new ModelWriter(dir, planShards(specs, max), opts.metadata, dataLength);
  }

  /** Relative file names this writer produces, index last when sharded. */
  get files(): string[] {
    if (this.shards.length === 1) return [SINGLE_FILE_NAME];
    return [...this.shards.map((_, i) => shardFileName(i, this.shards.length)), INDEX_FILE_NAME];
  }

  private fileOf(i: number): string {
    return this.shards.length === 1 ? SINGLE_FILE_NAME : shardFileName(i, this.shards.length);
  }

  async write(name: string, data: Uint8Array): Promise<void> {
    if (this.done)
      throw new WgitError(
        'E_SAFETENSORS_WRITE',
        `${this.dir}: cannot write tensor ${quoteName(name)}: writer is closed`,
        { path: this.dir },
      );
    if (this.shardIndex >= this.shards.length || this.inShard >= this.shards[this.shardIndex].length) {
      throw new WgitError('E_SAFETENSORS_WRITE', `${this.dir}: tensor ${quoteName(name)} was not declared`, {
        path: this.dir,
      });
    }
    if (!this.current) {
      this.current = await SafetensorsWriter.create(
        join(this.dir, this.fileOf(this.shardIndex)),
        this.shards[this.shardIndex],
        this.metadata,
      );
    }
    await this.current.write(name, data);
    this.inShard++;
    if (this.inShard === this.shards[this.shardIndex].length) {
      await this.current.finish();
      this.current = null;
      this.shardIndex++;
      this.inShard = 0;
    }
  }

  async finish(): Promise<void> {
    if (this.done)
      throw new WgitError('E_SAFETENSORS_WRITE', `${this.dir}: cannot finish: writer is closed`, { path: this.dir });
    // A model without tensors is still one (empty) file.
    if (this.shards.length === 1 && this.shards[0].length === 0) {
      this.current = await SafetensorsWriter.create(join(this.dir, SINGLE_FILE_NAME), [], this.metadata);
      await this.current.finish();
      this.current = null;
      this.shardIndex = 1;
    }
    if (this.shardIndex !== this.shards.length) {
      const next = this.shards[this.shardIndex][this.inShard];
      throw new WgitError(
        'E_SAFETENSORS_WRITE',
        `${this.dir}: cannot finish: tensor ${quoteName(next.name)} not written`,
        { path: this.dir },
      );
    }
    this.done = true;
    if (this.shards.length > 1) {
      const weightMap: Record<string, string> = {};
      this.shards.forEach((specs, i) => {
        for (const s of specs) {
          Object.defineProperty(weightMap, s.name, {
            value: this.fileOf(i),
            enumerable: true,
            writable: true,
            configurable: true,
          });
        }
      });
      await writeFileAtomic(
        join(this.dir, INDEX_FILE_NAME),
        new TextEncoder().encode(formatIndex(this.totalSize, weightMap)),
      );
    }
  }

  /** Drops the shard being written; shards already finished stay (the index is never written). */
  async abort(): Promise<void> {
    this.done = true;
    await this.current?.abort();
    this.current = null;
  }
}
