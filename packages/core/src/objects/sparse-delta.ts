/**
 * A sparse delta: per float tensor of a fine-tune FT over a base B, a few
 * (index, value) pairs of Δ = FT − B, in the manner of sparse fine-tuning
 * (Ansell et al. 2024). Applying it to a model M scatter-adds s·value at each
 * index (M + s·Δ in M's dtype, through applyDelta like every delta kind).
 *
 * Stored form (version 1), per tensor `X` the object changes:
 *   `X::sparse.index`  U32[k] (U64[k] when X has more than 2³² elements):
 *                      the flat row-major indices, sorted ascending,
 *                      delta-coded: the first index, then each index minus
 *                      the one before (every gap ≥ 1), so the words are small
 *                      and compress well;
 *   `X::sparse.value`  F32[k]: Δ at those indices, f32(FT) − f32(B) as one
 *                      f32 subtraction (what a diff vector holds there).
 *   `X`                (no suffix) a tensor held whole, FT's own bytes: non-
 *                      float tensors, and in exact mode a float tensor where
 *                      f32 arithmetic cannot carry FT's bits (see compute).
 * The header's meta records the mode (`exact` or `density`), the density,
 * and the model shape of every float tensor the object may change (the
 * stored tensors are flat). A tensor with nothing kept has no stored tensor.
 */
import { WgitError } from '../errors.js';
import type { ModelSource } from '../safetensors/index.js';
import { applyDelta, type DeltaView, elementsOf } from './delta.js';
import type { ObjectHeader, ObjectKind, ObjectValue } from './kind.js';
import {
  INDEX_SUFFIX,
  SPARSE_DELTA_KIND,
  SPARSE_DELTA_VERSION,
  type SparseDeltaMeta,
  sparseIndexName,
  sparseValueName,
  U32_GAP_LIMIT,
  VALUE_SUFFIX,
} from './sparse-format.js';

export {
  SPARSE_DELTA_KIND,
  SPARSE_DELTA_VERSION,
  type SparseDeltaMeta,
  sparseIndexName,
  sparseValueName,
  U32_GAP_LIMIT,
} from './sparse-format.js';

export interface SparseDelta extends ObjectValue {
  meta: SparseDeltaMeta;
  /** Tensors stored as (index, value) pairs, with their model shape. */
  changes: Map<string, number[]>;
  /** Tensors stored whole. */
  replaced: Set<string>;
}

function corrupt(message: string, data: Record<string, unknown> = {}): WgitError {
  return new WgitError('E_CORRUPT', `sparse delta: ${message}`, { kind: SPARSE_DELTA_KIND, ...data });
}

function metaOf(header: ObjectHeader): SparseDeltaMeta {
  const m = header.meta as Partial<SparseDeltaMeta> | undefined;
  const shapeOk = (s: unknown) => Array.isArray(s) && s.every((x) => Number.isSafeInteger(x) && x >= 0);
  const shapesOk =
    Array.isArray(m?.shapes) &&
    m.shapes.every((e) => Array.isArray(e) && e.length === 2 && typeof e[0] === 'string' && shapeOk(e[1]));
  const modeOk =
    (m?.mode === 'exact' && m.density === null) ||
    (m?.mode === 'density' && typeof m.density === 'number' && m.density > 0 && m.density <= 1);
  if (!m || !shapesOk || !modeOk) throw corrupt('its header lacks the mode, density or table of shapes');
  return m as SparseDeltaMeta;
}

/** Reads a stored form: every tensor is an index/value pair of a tensor in the table, or one held whole. */
export function decodeSparseDelta(source: ModelSource, header: ObjectHeader): SparseDelta {
  const meta = metaOf(header);
  const shapes = new Map(meta.shapes);
  const changes = new Map<string, number[]>();
  const replaced = new Set<string>();
  const values = new Set<string>();
  for (const t of source.tensors) {
    if (t.name.endsWith(INDEX_SUFFIX)) {
      const name = t.name.slice(0, -INDEX_SUFFIX.length);
      const shape = shapes.get(name);
      if (!shape) throw corrupt(`index tensor of ${JSON.stringify(name)}, which its table lacks`, { tensor: name });
      const wide = elementsOf(shape) > U32_GAP_LIMIT;
      if (t.dtype !== (wide ? 'U64' : 'U32') || t.shape.length !== 1)
        throw corrupt(`index tensor of ${JSON.stringify(name)} is ${t.dtype}[${t.shape}]`, { tensor: name });
      changes.set(name, shape);
    } else if (t.name.endsWith(VALUE_SUFFIX)) values.add(t.name.slice(0, -VALUE_SUFFIX.length));
    else replaced.add(t.name);
  }
  for (const [name] of changes) {
    const idx = source.tensor(sparseIndexName(name));
    const val = values.has(name) ? source.tensor(sparseValueName(name)) : null;
    if (val?.dtype !== 'F32' || val.shape.length !== 1 || val.shape[0] !== idx.shape[0])
      throw corrupt(`tensor ${JSON.stringify(name)} has no F32 values matching its ${idx.shape[0]} indices`, {
        tensor: name,
      });
    if (idx.shape[0] > elementsOf(changes.get(name) as number[]))
      throw corrupt(`tensor ${JSON.stringify(name)} keeps more entries than it has`, { tensor: name });
  }
  for (const name of values)
    if (!changes.has(name)) throw corrupt(`values of ${JSON.stringify(name)} without indices`, { tensor: name });
  return { header, source, meta, changes, replaced };
}

/**
 * Decodes delta-coded indices (U32 or U64 words) into `out`, checking that
 * they rise strictly and stay below `n`.
 */
export function decodeGaps(name: string, raw: Uint8Array, n: number, out: Float64Array | number[]): void {
  const k = out.length;
  const wide = raw.byteLength === k * 8;
  if (!wide && raw.byteLength !== k * 4) throw corrupt(`index tensor of ${JSON.stringify(name)} has the wrong size`);
  const words = wide
    ? new BigUint64Array(raw.buffer, raw.byteOffset, k)
    : new Uint32Array(raw.buffer, raw.byteOffset, k);
  let at = -1;
  for (let i = 0; i < k; i++) {
    const gap = Number(words[i]);
    at = i === 0 ? gap : at + gap;
    if ((i > 0 && gap < 1) || at >= n)
      throw corrupt(`index ${i} of ${JSON.stringify(name)} is out of order or out of range`, { tensor: name });
    out[i] = at;
  }
}

/** What applying a sparse delta does, tensor by tensor: Δ is −0 everywhere but at the stored indices. */
export function sparseDeltaView(delta: SparseDelta): DeltaView {
  const src = delta.source;
  return {
    changes: delta.changes,
    replaced: delta.replaced,
    removed: new Set(),
    source: src,
    load: async (name, pool, parity) => {
      const idx = src.tensor(sparseIndexName(name));
      const val = src.tensor(sparseValueName(name));
      return [
        await src.readTensor(idx.name, pool.bytes(`si${parity}`, idx.byteLength)),
        await src.readTensor(val.name, pool.bytes(`sv${parity}`, val.byteLength)),
      ];
    },
    expand: async (name, [idx, val], pool) => {
      const n = elementsOf(delta.changes.get(name) as number[]);
      const k = val.byteLength / 4;
      const at = new Float64Array(k);
      decodeGaps(name, idx, n, at);
      const values = new Float32Array(val.buffer, val.byteOffset, k);
      // −0 is the additive identity of IEEE arithmetic (x + −0 = x, −0 included), +0 is not.
      const dense = pool.f32('sparse', n).fill(-0);
      for (let i = 0; i < k; i++) dense[at[i]] = values[i];
      return dense;
    },
  };
}

export const sparseDelta: ObjectKind<SparseDelta> = {
  name: SPARSE_DELTA_KIND,
  version: SPARSE_DELTA_VERSION,
  description: 'a sparse delta: sorted delta-coded indices and f32 values of FT − B per tensor',
  async compute(opts) {
    const [ft] = opts.inputs;
    if (!ft || !opts.base)
      throw new WgitError('E_BAD_PARAM', 'a sparse delta needs a fine-tune and its base', { param: 'inputs' });
    const { computeSparseDelta } = await import('./sparse-compute.js');
    const report = await computeSparseDelta(ft, opts.base, opts.params ?? {}, {
      outDir: opts.outDir,
      maxShardBytes: opts.maxShardBytes,
    });
    return { header: report.header, report };
  },
  async encode(value, outDir) {
    const { writeModelCopy } = await import('./checkpoint.js');
    await writeModelCopy(value.source, outDir);
    return value.header;
  },
  async decode(source, header) {
    return decodeSparseDelta(source, header);
  },
  async apply(value, opts) {
    if (!opts.onto)
      throw new WgitError('E_BAD_PARAM', 'a sparse delta is applied onto a model: give the model (--onto)', {
        param: 'onto',
      });
    const details = await applyDelta(sparseDeltaView(value), opts.onto, opts.scale ?? 1, {
      outDir: opts.outDir,
      maxShardBytes: opts.maxShardBytes,
    });
    return { outDir: opts.outDir, model: null, exact: false, details: { ...details } };
  },
  delta: sparseDeltaView,
  describe(value) {
    let entries = 0;
    let elements = 0;
    for (const [name, shape] of value.changes) {
      entries += value.source.tensor(sparseIndexName(name)).shape[0];
      elements += elementsOf(shape);
    }
    const m = value.meta;
    const how = m.mode === 'exact' ? 'exact' : `density ${m.density}`;
    return {
      kind: SPARSE_DELTA_KIND,
      version: value.header.version,
      detected: false,
      description: `sparse delta (${how}): ${entries} of ${elements} entries in ${value.changes.size} tensors, ${value.replaced.size} held whole`,
      models: 0,
      details: {
        mode: m.mode,
        density: m.density,
        entries,
        elements,
        tensors: value.changes.size,
        replaced: [...value.replaced],
      },
    };
  },
};
