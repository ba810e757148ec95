/**
 * A diff vector Δ = B − A, stored as an object: per tensor that both models
 * hold with the same shape and a float dtype, the f32 difference of their
 * values (one f32 subtraction per element); every other tensor of B (integer
 * or bool, reshaped, or new in B) is kept as B's bytes ("replaced"); tensors
 * of A that B dropped are listed ("removed"). Applying it to a model M gives
 * M + s·Δ in M's dtypes: with s = 1 onto A, B again (bit for bit where the
 * f32 difference is exact, as it is for bf16 and f16 values within 2¹⁶ and
 * 2¹³ of each other in magnitude).
 */
import { type DType, isFloatDType } from '../dtypes.js';
import { WgitError } from '../errors.js';
import { convertIn } from '../pipeline/index.js';
import type { ModelSource, TensorSpec } from '../safetensors/index.js';
import { applyDelta, type DeltaCounts, type DeltaIO, type DeltaView, sameShape, writeTensors } from './delta.js';
import type { ObjectHeader, ObjectKind, ObjectValue } from './kind.js';

export const DIFF_VECTOR_KIND = 'diff-vector';

export interface DiffVectorMeta {
  /** Tensors held as f32 differences. */
  deltas: number;
  /** Tensors held as B's own bytes (not float, reshaped, or new in B). */
  replaced: string[];
  /** Tensors of A that B does not have. */
  removed: string[];
}

export interface DiffVector extends ObjectValue {
  meta: DiffVectorMeta;
}

/** Where a diff vector's tensors (or a model made from one) go. */
export type DiffVectorIO = DeltaIO;

function metaOf(header: ObjectHeader): DiffVectorMeta {
  const m = header.meta as Partial<DiffVectorMeta> | undefined;
  const names = (x: unknown) => Array.isArray(x) && x.every((n) => typeof n === 'string');
  if (!m || !Number.isInteger(m.deltas) || !names(m.replaced) || !names(m.removed))
    throw new WgitError('E_CORRUPT', 'a diff vector without its table of replaced and removed tensors', {
      kind: DIFF_VECTOR_KIND,
    });
  return m as DiffVectorMeta;
}

/** The stored tensors and the header of B − A, from the two tensor lists alone (nothing is read). */
export function planDiffVector(a: ModelSource, b: ModelSource): { specs: TensorSpec[]; header: ObjectHeader } {
  const inA = new Map(a.tensors.map((t) => [t.name, t]));
  const replaced: string[] = [];
  const specs: TensorSpec[] = b.tensors.map((tb) => {
    const ta = inA.get(tb.name);
    if (ta && isFloatDType(ta.dtype) && isFloatDType(tb.dtype) && sameShape(ta.shape, tb.shape))
      return { name: tb.name, dtype: 'F32' as DType, shape: tb.shape };
    replaced.push(tb.name);
    return { name: tb.name, dtype: tb.dtype, shape: tb.shape };
  });
  const bNames = new Set(b.tensors.map((t) => t.name));
  const meta: DiffVectorMeta = {
    deltas: specs.length - replaced.length,
    replaced,
    removed: a.tensors.filter((t) => !bNames.has(t.name)).map((t) => t.name),
  };
  return { specs, header: { kind: DIFF_VECTOR_KIND, version: 1, meta: { ...meta } } };
}

/** Δ = B − A as a diff-vector object written to `io`; returns its header (B's side files go with it). */
export async function computeDiffVector(a: ModelSource, b: ModelSource, io: DiffVectorIO): Promise<ObjectHeader> {
  const { specs, header } = planDiffVector(a, b);
  const isReplaced = new Set((header.meta as unknown as DiffVectorMeta).replaced);
  await writeTensors(
    io,
    specs,
    b,
    async (spec, [rb, ra], out, pool, device) => {
      if (isReplaced.has(spec.name)) {
        out.set(rb);
        return;
      }
      const vb = await convertIn(pool, 'vb', rb, b.tensor(spec.name).dtype, device);
      const va = await convertIn(pool, 'va', ra, a.tensor(spec.name).dtype, device);
      const d = new Float32Array(out.buffer, out.byteOffset, vb.length);
      await device.sub(vb, va, d);
    },
    async (spec, pool, parity) => {
      const tb = b.tensor(spec.name);
      const rb = await b.readTensor(spec.name, pool.bytes(`b${parity}`, tb.byteLength));
      const raw = [rb];
      if (!isReplaced.has(spec.name)) {
        const ta = a.tensor(spec.name);
        raw.push(await a.readTensor(spec.name, pool.bytes(`a${parity}`, ta.byteLength)));
      }
      return raw;
    },
  );
  return header;
}

/** What applying a diff vector does, tensor by tensor (delta.ts). */
export function diffVectorView(delta: DiffVector): DeltaView {
  const d = delta.source;
  const replaced = new Set(delta.meta.replaced);
  const changes = new Map<string, readonly number[]>();
  for (const t of d.tensors) if (!replaced.has(t.name)) changes.set(t.name, t.shape);
  return {
    changes,
    replaced,
    removed: new Set(delta.meta.removed),
    source: d,
    load: async (name, pool, parity) => [await d.readTensor(name, pool.bytes(`d${parity}`, d.tensor(name).byteLength))],
    expand: async (_name, [raw]) => new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4),
  };
}

/**
 * B − A as a diff vector that is never stored: the same tensors as
 * planDiffVector's, each Δ computed when it is applied (f32(B) − f32(A), the
 * f32 subtraction computeDiffVector stores). A transfer commit stands for its
 * FT − FROM this way.
 */
export function liveDiffView(a: ModelSource, b: ModelSource): DeltaView {
  const { header } = planDiffVector(a, b);
  const meta = header.meta as unknown as DiffVectorMeta;
  const replaced = new Set(meta.replaced);
  const changes = new Map<string, readonly number[]>();
  for (const t of b.tensors) if (!replaced.has(t.name)) changes.set(t.name, t.shape);
  return {
    changes,
    replaced,
    removed: new Set(meta.removed),
    source: b,
    load: async (name, pool, parity) => [
      await b.readTensor(name, pool.bytes(`b${parity}`, b.tensor(name).byteLength)),
      await a.readTensor(name, pool.bytes(`a${parity}`, a.tensor(name).byteLength)),
    ],
    expand: async (name, [rb, ra], pool, device) => {
      const vb = await convertIn(pool, 'vb', rb, b.tensor(name).dtype, device);
      const va = await convertIn(pool, 'va', ra, a.tensor(name).dtype, device);
      const d = pool.f32('d', vb.length);
      await device.sub(vb, va, d);
      return d;
    },
  };
}

/**
 * M + s·Δ in M's dtypes (f32 arithmetic, rounded once), as a model written
 * to `io` with M's side files: tensors Δ replaced take Δ's bytes, tensors Δ
 * removed are left out, tensors Δ does not name stay as they are. A float
 * tensor of Δ whose shape differs from M's is E_SHAPE_MISMATCH, naming it,
 * before anything is written.
 */
export function applyDiffVector(
  delta: DiffVector,
  onto: ModelSource,
  scale: number,
  io: DiffVectorIO,
): Promise<DeltaCounts> {
  return applyDelta(diffVectorView(delta), onto, scale, io);
}

export const diffVector: ObjectKind<DiffVector> = {
  name: DIFF_VECTOR_KIND,
  version: 1,
  description: 'a diff vector B − A: f32 differences, with the tensors B replaced or removed',
  async compute(opts) {
    const [a, b] = opts.inputs;
    if (!a || !b) throw new WgitError('E_BAD_PARAM', 'a diff vector needs two models, A and B', { param: 'inputs' });
    const header = await computeDiffVector(a, b, { outDir: opts.outDir, maxShardBytes: opts.maxShardBytes });
    return { header, report: header.meta };
  },
  async encode(value, outDir) {
    const { writeModelCopy } = await import('./checkpoint.js');
    await writeModelCopy(value.source, outDir);
    return value.header;
  },
  async decode(source, header) {
    const meta = metaOf(header);
    for (const t of source.tensors)
      if (!meta.replaced.includes(t.name) && t.dtype !== 'F32')
        throw new WgitError('E_CORRUPT', `diff vector tensor ${JSON.stringify(t.name)} is ${t.dtype}, not F32`, {
          tensor: t.name,
        });
    return { header, source, meta };
  },
  async apply(value, opts) {
    if (!opts.onto)
      throw new WgitError('E_BAD_PARAM', 'a diff vector is applied onto a model: give the model (--onto)', {
        param: 'onto',
      });
    const details = await applyDiffVector(value, opts.onto, opts.scale ?? 1, {
      outDir: opts.outDir,
      maxShardBytes: opts.maxShardBytes,
    });
    return { outDir: opts.outDir, model: null, exact: false, details: { ...details } };
  },
  delta: diffVectorView,
  describe(value) {
    const m = value.meta;
    return {
      kind: DIFF_VECTOR_KIND,
      version: value.header.version,
      detected: false,
      description: `diff vector: ${m.deltas} f32 differences, ${m.replaced.length} tensors replaced, ${m.removed.length} removed`,
      models: 0,
      details: { ...m },
    };
  },
};
