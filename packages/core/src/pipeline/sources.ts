/**
 * Model sources in: checks that the models agree, then streams their tensors
 * in order, reading tensor t+1 of every model while the caller works on t.
 */
import { isFloatDType } from '../dtypes.js';
import { WgitError } from '../errors.js';
import type { ModelSource } from '../safetensors/index.js';
import { type BufferPool, toF32Into } from './buffers.js';

function describe(m: ModelSource): string {
  return m.root;
}

/**
 * Checks that every model has the same tensor names, shapes and dtypes as the
 * first one, before any work: E_TENSOR_MISMATCH lists the first differing
 * names, E_SHAPE_MISMATCH / E_DTYPE_MISMATCH name the tensor.
 */
export function validateModels(models: ModelSource[]): void {
  if (models.length === 0) throw new WgitError('E_BAD_PARAM', 'no input models', {});
  const ref = models[0];
  const refNames = new Set(ref.tensors.map((t) => t.name));
  for (const m of models.slice(1)) {
    const names = new Set(m.tensors.map((t) => t.name));
    const missing = [...refNames].filter((n) => !names.has(n));
    const extra = [...names].filter((n) => !refNames.has(n));
    if (missing.length || extra.length) {
      const show = (xs: string[]) => xs.slice(0, 5).join(', ') + (xs.length > 5 ? `, … (${xs.length} in all)` : '');
      const parts: string[] = [];
      if (missing.length) parts.push(`missing in ${describe(m)}: ${show(missing)}`);
      if (extra.length) parts.push(`only in ${describe(m)}: ${show(extra)}`);
      throw new WgitError(
        'E_TENSOR_MISMATCH',
        `models differ in their tensors (vs ${describe(ref)}); ${parts.join('; ')}`,
        {
          model: m.root,
          reference: ref.root,
          missing: missing.slice(0, 20),
          extra: extra.slice(0, 20),
        },
      );
    }
    for (const t of ref.tensors) {
      const o = m.tensor(t.name);
      if (o.shape.length !== t.shape.length || o.shape.some((d, i) => d !== t.shape[i])) {
        throw new WgitError(
          'E_SHAPE_MISMATCH',
          `tensor ${t.name}: shape [${o.shape}] in ${describe(m)} vs [${t.shape}] in ${describe(ref)}`,
          { tensor: t.name, model: m.root, shape: o.shape, expected: t.shape },
        );
      }
      if (o.dtype !== t.dtype) {
        throw new WgitError(
          'E_DTYPE_MISMATCH',
          `tensor ${t.name}: dtype ${o.dtype} in ${describe(m)} vs ${t.dtype} in ${describe(ref)}`,
          {
            tensor: t.name,
            model: m.root,
            dtype: o.dtype,
            expected: t.dtype,
          },
        );
      }
    }
  }
}

export interface LoadedTensor {
  name: string;
  index: number;
  /** Raw bytes per model, in the order the models were given. */
  raw: Uint8Array[];
}

/** Runs read(t+1) while the caller works on the result of read(t). */
export async function* prefetched<T>(count: number, read: (t: number) => Promise<T>): AsyncGenerator<T> {
  const start = (t: number): Promise<T> => {
    const p = read(t);
    // a read abandoned because the consumer stopped early must not become an unhandled rejection
    p.catch(() => {});
    return p;
  };
  let next = count > 0 ? start(0) : null;
  try {
    for (let t = 0; t < count; t++) {
      const value = await (next as Promise<T>);
      next = t + 1 < count ? start(t + 1) : null;
      yield value;
    }
  } finally {
    // a consumer that stops early must not free buffers a read is still filling
    if (next) await next.catch(() => {});
  }
}

/** Reads tensor t+1 of every model while the caller works on tensor t. */
export function streamTensors(
  models: ModelSource[],
  names: string[],
  pool: BufferPool,
  tag = 'r',
): AsyncGenerator<LoadedTensor> {
  return prefetched(names.length, async (t) => {
    const parity = t & 1;
    const raw = await Promise.all(
      models.map((m, i) => m.readTensor(names[t], pool.bytes(`${tag}${parity}.${i}`, m.tensor(names[t]).byteLength))),
    );
    return { name: names[t], index: t, raw };
  });
}

/** Calls fn with every float tensor's f32 values (inputs, then base last), streaming. */
export async function forEachFloatTensor(
  models: ModelSource[],
  fn: (name: string, values: Float32Array[]) => void | Promise<void>,
  pool: BufferPool,
): Promise<void> {
  const ref = models[0];
  const names = ref.tensors.filter((t) => isFloatDType(t.dtype)).map((t) => t.name);
  for await (const lt of streamTensors(models, names, pool, 'p')) {
    const dtype = ref.tensor(lt.name).dtype;
    const values = lt.raw.map((r, i) => toF32Into(pool, `pf${i}`, r, dtype));
    await fn(lt.name, values);
  }
}
