/**
 * Objects that are a change to a model rather than a model: a diff vector, a
 * sparse delta, a low-rank basis, a robust weight signature. Each such kind
 * hands out a `DeltaView`: which tensors it changes (by adding s·Δ), which it
 * replaces whole or removes, and how to expand one tensor's Δ to dense f32.
 * One applier (`applyDelta`) then writes M + s·Δ for every kind, so `wgit
 * apply`, the checkout of an object commit and `rws apply/remove` share the
 * same rules: f32 arithmetic rounded once to the model's dtype, a shape
 * mismatch refused before anything is written.
 */
import type { Device } from '../device/index.js';
import { getDevice } from '../device/index.js';
import { dtypeSize, isFloatDType } from '../dtypes.js';
import { WgitError } from '../errors.js';
import { BufferPool, convertIn, convertOut, FolderSink, fillSink, prefetched, type Sink } from '../pipeline/index.js';
import type { ModelSource, TensorSpec } from '../safetensors/index.js';

/** Where an object's output goes and how it is computed. */
export interface DeltaIO {
  /** Where the tensors go: a sink (a store commit), else a folder. */
  sink?: Sink;
  outDir?: string;
  device?: Device;
  onProgress?: (e: { phase: string; done: number; total: number }) => void;
  maxShardBytes?: number;
  /** Whose side files the output gets (default: the model the object is applied onto). */
  sideFiles?: ModelSource;
}

/** What a change-to-a-model object does, tensor by tensor. */
export interface DeltaView {
  /** Tensors changed by adding s·Δ, with the model shape Δ has. */
  changes: ReadonlyMap<string, readonly number[]>;
  /** Tensors the object holds whole (read from `source` under the same name), replacing or adding. */
  replaced: ReadonlySet<string>;
  /** Tensors the object removes from the model. */
  removed: ReadonlySet<string>;
  /** The object's own tensors, for `replaced`. */
  source: ModelSource;
  /**
   * Reads what Δ of `name` is made of (its stored tensors), ahead of
   * `expand`; `parity` alternates so the next tensor's reads do not
   * overwrite this one's buffers.
   */
  load(name: string, pool: BufferPool, parity: number): Promise<Uint8Array[]>;
  /** Δ of `name` as dense f32 (length = the tensor's elements), from what `load` returned. */
  expand(name: string, loaded: Uint8Array[], pool: BufferPool, device: Device): Promise<Float32Array>;
}

export interface DeltaCounts {
  changed: number;
  replaced: number;
  removed: number;
  kept: number;
}

export const sameShape = (a: readonly number[], b: readonly number[]) =>
  a.length === b.length && a.every((x, i) => x === b[i]);

export function elementsOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/**
 * Streams `specs` through the sink (or a folder): `read` loads a tensor's
 * inputs (the next one while this one is computed: buffers alternate by
 * parity), `fill` computes its bytes from them.
 */
export async function writeTensors(
  io: DeltaIO,
  specs: TensorSpec[],
  carrier: ModelSource,
  fill: (spec: TensorSpec, raw: Uint8Array[], out: Uint8Array, pool: BufferPool, device: Device) => Promise<void>,
  read: (spec: TensorSpec, pool: BufferPool, parity: number) => Promise<Uint8Array[]>,
): Promise<void> {
  const device = io.device ?? (await getDevice({ device: 'auto' }));
  const sink = io.sink ?? new FolderSink(io.outDir as string);
  const pool = new BufferPool(device);
  try {
    await fillSink(sink, { specs, maxShardBytes: io.maxShardBytes }, carrier, async () => {
      let done = 0;
      const reads = prefetched(specs.length, async (t) => ({ spec: specs[t], raw: await read(specs[t], pool, t & 1) }));
      for await (const { spec, raw } of reads) {
        const out = pool.bytes('out', elementsOf(spec.shape) * dtypeSize(spec.dtype));
        await fill(spec, raw, out, pool, device);
        await sink.write(spec.name, out);
        io.onProgress?.({ phase: 'write', done: ++done, total: specs.length });
      }
    });
  } finally {
    pool.release();
  }
}

/** The output tensor list of M + s·Δ and the counts, checking shapes before anything is read. */
export function planApply(delta: DeltaView, onto: ModelSource): { specs: TensorSpec[]; counts: DeltaCounts } {
  const counts: DeltaCounts = { changed: 0, replaced: 0, removed: 0, kept: 0 };
  const specs: TensorSpec[] = [];
  for (const t of onto.tensors) {
    if (delta.removed.has(t.name)) {
      counts.removed++;
      continue;
    }
    if (delta.replaced.has(t.name)) {
      const own = delta.source.tensor(t.name);
      specs.push({ name: t.name, dtype: own.dtype, shape: own.shape });
      counts.replaced++;
      continue;
    }
    const shape = delta.changes.get(t.name);
    if (shape) {
      if (!sameShape(shape, t.shape) || !isFloatDType(t.dtype))
        throw new WgitError(
          'E_SHAPE_MISMATCH',
          `tensor ${JSON.stringify(t.name)}: the object changes shape [${shape}], the model has ${t.dtype}[${t.shape}]`,
          { tensor: t.name, expected: [...shape], found: t.shape },
        );
      counts.changed++;
    } else counts.kept++;
    specs.push({ name: t.name, dtype: t.dtype, shape: t.shape });
  }
  const ontoNames = new Set(onto.tensors.map((t) => t.name));
  for (const name of delta.replaced)
    if (!ontoNames.has(name)) {
      const own = delta.source.tensor(name);
      specs.push({ name, dtype: own.dtype, shape: own.shape });
      counts.replaced++;
    }
  const missing = [...delta.changes.keys()].filter((n) => !ontoNames.has(n));
  if (missing.length > 0)
    throw new WgitError(
      'E_SHAPE_MISMATCH',
      `the model has no tensor ${JSON.stringify(missing[0])}${missing.length > 1 ? ` (nor ${missing.length - 1} more)` : ''} that the object changes: is it of another architecture?`,
      { tensor: missing[0], missing: missing.length },
    );
  return { specs, counts };
}

/**
 * M + s·Δ in M's dtypes (f32 arithmetic: M + s·Δ by `axpy`, rounded once),
 * written to `io` with M's side files: tensors the object replaced take its
 * bytes, tensors it removed are left out, the rest stay as they are. A shape
 * mismatch (or a changed tensor M lacks) is E_SHAPE_MISMATCH before anything
 * is written.
 */
export async function applyDelta(
  delta: DeltaView,
  onto: ModelSource,
  scale: number,
  io: DeltaIO,
): Promise<DeltaCounts> {
  if (!Number.isFinite(scale))
    throw new WgitError('E_BAD_PARAM', `scale must be a finite number, got ${scale}`, { param: 'scale' });
  const { specs, counts } = planApply(delta, onto);
  await writeTensors(
    io,
    specs,
    io.sideFiles ?? onto,
    async (spec, [first, ...parts], out, pool, device) => {
      if (!delta.changes.has(spec.name) || delta.replaced.has(spec.name)) {
        out.set(first);
        return;
      }
      const m = await convertIn(pool, 'm', first, spec.dtype, device);
      const d = await delta.expand(spec.name, parts, pool, device);
      const sum = pool.f32('sum', m.length);
      await device.axpy(m, scale, d, sum);
      await convertOut(sum, spec.dtype, out, device);
    },
    async (spec, pool, parity) => {
      if (delta.replaced.has(spec.name))
        return [
          await delta.source.readTensor(spec.name, pool.bytes(`m${parity}`, delta.source.tensor(spec.name).byteLength)),
        ];
      const first = await onto.readTensor(spec.name, pool.bytes(`m${parity}`, onto.tensor(spec.name).byteLength));
      if (!delta.changes.has(spec.name)) return [first];
      return [first, ...(await delta.load(spec.name, pool, parity))];
    },
  );
  return counts;
}
