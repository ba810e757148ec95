/**
 * A robust weight signature (Cai et al. 2023): the part of a robust model's
 * update that is orthogonal to a clean model's update from the same init,
 * kept for the shallow blocks only and quantized. Patching a model M with
 * it is M + w·RWS (applyDelta: f32, rounded once to M's dtype); removing is
 * the same with −w. Computing it: rws-extract.ts.
 *
 * Stored form (version 1), per tensor `X` it changes (flat, row-major):
 *   bits 8:  `X::rws.range` F32[2] = [lo, step], `X::rws.q` U8[n], one code a byte;
 *   bits 4:  the same with `X::rws.q` U8[⌈n/2⌉], element 2i in the low nibble
 *            of byte i and element 2i+1 in the high nibble;
 *   bits 32: `X::rws.value` F32[n], the signature unquantized.
 * Code q stands for f32(lo + f32(q·step)). The header's meta records the
 * bits, the blocks kept and found, and the model shape of each tensor.
 */
import { WgitError } from '../errors.js';
import type { ModelSource } from '../safetensors/index.js';
import { applyDelta, type DeltaView, elementsOf } from './delta.js';
import type { ObjectHeader, ObjectKind, ObjectValue } from './kind.js';
import {
  codeBytes,
  dequantize,
  RWS_BITS,
  RWS_KIND,
  RWS_VERSION,
  type RwsBits,
  type RwsMeta,
  rwsCodesName,
  rwsRangeName,
  rwsValueName,
} from './rws-format.js';

export {
  codeBytes,
  dequantize,
  type QuantRange,
  quantize,
  quantRange,
  RWS_BITS,
  RWS_KIND,
  RWS_VERSION,
  type RwsBits,
  type RwsMeta,
  rwsCodesName,
  rwsRangeName,
  rwsValueName,
} from './rws-format.js';

export interface Rws extends ObjectValue {
  meta: RwsMeta;
  changes: Map<string, number[]>;
}

function corrupt(message: string, data: Record<string, unknown> = {}): WgitError {
  return new WgitError('E_CORRUPT', `robust weight signature: ${message}`, { kind: RWS_KIND, ...data });
}

function metaOf(header: ObjectHeader): RwsMeta {
  const m = header.meta as Partial<RwsMeta> | undefined;
  const shapeOk = (s: unknown) => Array.isArray(s) && s.every((x) => Number.isSafeInteger(x) && x >= 0);
  const ok =
    m &&
    RWS_BITS.includes(m.bits as RwsBits) &&
    Number.isSafeInteger(m.layers) &&
    Number.isSafeInteger(m.blocks) &&
    Array.isArray(m.shapes) &&
    m.shapes.every((e) => Array.isArray(e) && e.length === 2 && typeof e[0] === 'string' && shapeOk(e[1]));
  if (!ok) throw corrupt('its header lacks the bits, blocks or table of shapes');
  return m as RwsMeta;
}

/** Reads a stored form, checking that it holds exactly the tensors its table says, of the right sizes. */
export function decodeRws(source: ModelSource, header: ObjectHeader): Rws {
  const meta = metaOf(header);
  const changes = new Map(meta.shapes);
  const expected = new Map<string, [string, number]>();
  for (const [name, shape] of changes) {
    const n = elementsOf(shape);
    if (meta.bits === 32) expected.set(rwsValueName(name), ['F32', n]);
    else {
      expected.set(rwsRangeName(name), ['F32', 2]);
      expected.set(rwsCodesName(name), ['U8', codeBytes(n, meta.bits)]);
    }
  }
  for (const t of source.tensors) {
    const want = expected.get(t.name);
    if (!want) throw corrupt(`tensor ${JSON.stringify(t.name)} is not in its table`, { tensor: t.name });
    if (t.dtype !== want[0] || t.shape.length !== 1 || t.shape[0] !== want[1])
      throw corrupt(`tensor ${JSON.stringify(t.name)} is ${t.dtype}[${t.shape}], not ${want[0]}[${want[1]}]`, {
        tensor: t.name,
      });
    expected.delete(t.name);
  }
  const [missing] = expected.keys();
  if (missing !== undefined) throw corrupt(`tensor ${JSON.stringify(missing)} is missing`, { tensor: missing });
  return { header, source, meta, changes };
}

/** What patching a model with the signature does, tensor by tensor. */
export function rwsView(sig: Rws): DeltaView {
  const src = sig.source;
  const bits = sig.meta.bits;
  const read = async (name: string, slot: string, pool: Parameters<DeltaView['load']>[1]) =>
    src.readTensor(name, pool.bytes(slot, src.tensor(name).byteLength));
  return {
    changes: sig.changes,
    replaced: new Set(),
    removed: new Set(),
    source: src,
    load: async (name, pool, parity) =>
      bits === 32
        ? [await read(rwsValueName(name), `rv${parity}`, pool)]
        : [await read(rwsCodesName(name), `rq${parity}`, pool), await read(rwsRangeName(name), `rr${parity}`, pool)],
    expand: async (name, [first, range], pool) => {
      if (bits === 32) return new Float32Array(first.buffer, first.byteOffset, first.byteLength / 4);
      const r = new Float32Array(range.buffer, range.byteOffset, 2);
      if (!Number.isFinite(r[0]) || !Number.isFinite(r[1]) || r[1] < 0)
        throw corrupt(`tensor ${JSON.stringify(name)} has a bad range [${r[0]}, ${r[1]}]`, { tensor: name });
      const out = pool.f32('rws', elementsOf(sig.changes.get(name) as number[]));
      dequantize(first, bits, { lo: r[0], step: r[1] }, out);
      return out;
    },
  };
}

export const rws: ObjectKind<Rws> = {
  name: RWS_KIND,
  version: RWS_VERSION,
  description: 'a robust weight signature: the robust update orthogonal to the clean one, shallow blocks, quantized',
  async compute(opts) {
    const [robust, clean] = opts.inputs;
    if (!robust || !clean || !opts.base)
      throw new WgitError('E_BAD_PARAM', 'a signature needs a robust model, a clean model and their init', {
        param: 'inputs',
      });
    const { computeRws } = await import('./rws-extract.js');
    const report = await computeRws(robust, clean, opts.base, opts.params ?? {}, {
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
    return decodeRws(source, header);
  },
  async apply(value, opts) {
    if (!opts.onto)
      throw new WgitError('E_BAD_PARAM', 'a signature is applied onto a model: give the model', { param: 'onto' });
    const details = await applyDelta(rwsView(value), opts.onto, opts.scale ?? 1, {
      outDir: opts.outDir,
      maxShardBytes: opts.maxShardBytes,
    });
    return { outDir: opts.outDir, model: null, exact: false, details: { ...details } };
  },
  delta: rwsView,
  describe(value) {
    const m = value.meta;
    let elements = 0;
    for (const shape of value.changes.values()) elements += elementsOf(shape);
    return {
      kind: RWS_KIND,
      version: value.header.version,
      detected: false,
      description: `robust weight signature: ${value.changes.size} tensors (${elements} entries) of blocks 0–${m.layers - 1} of ${m.blocks}, ${m.bits === 32 ? 'f32' : `${m.bits}-bit`}`,
      models: 0,
      details: { bits: m.bits, layers: m.layers, blocks: m.blocks, tensors: value.changes.size, elements },
    };
  },
};
