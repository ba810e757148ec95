/**
 * A low-rank basis: a change to a model held, per 2-D tensor W (out × in),
 * as two factors with Δ_W = s·B·A — B (out × r) stored as `W.lora_B`, A
 * (r × in) as `W.lora_A`, s the tensor's scale (1 unless an imported
 * adapter's lora_alpha / r says otherwise). Other float tensors that changed
 * are held as dense f32 differences under their own name, or dropped (left
 * as the model has them); tensors new in the fine-tune are kept whole
 * ("replaced"), tensors it lost are removed. Made by `wgit lowrank` (a
 * randomized SVD of each Δ, lowrank/compute.ts) or `wgit import-lora` (a PEFT
 * adapter, peft/lora.ts); applied by the shared applier (delta.ts).
 */
import { isFloatDType } from '../dtypes.js';
import { WgitError } from '../errors.js';
import { convertIn } from '../pipeline/index.js';
import { applyDelta, type DeltaCounts, type DeltaIO, type DeltaView } from './delta.js';
import type { ObjectHeader, ObjectKind, ObjectValue } from './kind.js';
import { factorNames, LOW_RANK_KIND, LOW_RANK_VERSION, type LowRankMeta } from './lowrank/format.js';

export { factorNames, LOW_RANK_KIND, LOW_RANK_VERSION, type LowRankMeta } from './lowrank/format.js';

export interface LowRank extends ObjectValue {
  meta: LowRankMeta;
}

const names = (x: unknown): x is string[] => Array.isArray(x) && x.every((n) => typeof n === 'string');

function metaOf(header: ObjectHeader): LowRankMeta {
  const m = header.meta as Partial<LowRankMeta> | undefined;
  const scalesOk =
    m?.scales !== null &&
    typeof m?.scales === 'object' &&
    Object.values(m.scales).every((v) => typeof v === 'number' && Number.isFinite(v));
  if (
    !m ||
    !names(m.lowRank) ||
    !names(m.dense) ||
    !names(m.dropped) ||
    !names(m.replaced) ||
    !names(m.removed) ||
    !scalesOk ||
    typeof m.params !== 'object'
  )
    throw new WgitError('E_CORRUPT', 'a low-rank basis without its table of factored, dense and replaced tensors', {
      kind: LOW_RANK_KIND,
    });
  return m as LowRankMeta;
}

/** Checks the stored tensors against the table; returns the value. */
function decodeLowRank(source: LowRank['source'], header: ObjectHeader): LowRank {
  const meta = metaOf(header);
  const bad = (name: string, what: string) =>
    new WgitError('E_CORRUPT', `low-rank basis tensor ${JSON.stringify(name)}: ${what}`, { tensor: name });
  const has = new Set(source.tensors.map((t) => t.name));
  for (const name of meta.lowRank) {
    const { a, b } = factorNames(name);
    if (!has.has(a) || !has.has(b)) throw bad(name, 'a factor is missing');
    const ta = source.tensor(a);
    const tb = source.tensor(b);
    if (ta.shape.length !== 2 || tb.shape.length !== 2 || !isFloatDType(ta.dtype) || !isFloatDType(tb.dtype))
      throw bad(name, 'factors must be 2-D float tensors');
    if (ta.shape[0] !== tb.shape[1] || ta.shape[0] < 1)
      throw bad(name, `factor ranks differ: A is [${ta.shape}], B is [${tb.shape}]`);
  }
  for (const name of meta.dense) {
    if (!has.has(name)) throw bad(name, 'the dense difference is missing');
    if (!isFloatDType(source.tensor(name).dtype)) throw bad(name, 'a dense difference must be float');
  }
  for (const name of meta.replaced) if (!has.has(name)) throw bad(name, 'the replacing tensor is missing');
  return { header, source, meta };
}

/** The rank each factored tensor is stored at. */
export function ranksOf(value: LowRank): Map<string, number> {
  return new Map(value.meta.lowRank.map((n) => [n, value.source.tensor(factorNames(n).a).shape[0]]));
}

/** What applying a low-rank basis does, tensor by tensor: Δ = s·B·A expanded by the device's matmul. */
export function lowRankView(value: LowRank): DeltaView {
  const src = value.source;
  const factored = new Set(value.meta.lowRank);
  const changes = new Map<string, readonly number[]>();
  for (const name of value.meta.lowRank) {
    const { a, b } = factorNames(name);
    changes.set(name, [src.tensor(b).shape[0], src.tensor(a).shape[1]]);
  }
  for (const name of value.meta.dense) changes.set(name, src.tensor(name).shape);
  const read = (name: string, slot: string, pool: Parameters<DeltaView['load']>[1]) =>
    src.readTensor(name, pool.bytes(slot, src.tensor(name).byteLength));
  return {
    changes,
    replaced: new Set(value.meta.replaced),
    removed: new Set(value.meta.removed),
    source: src,
    async load(name, pool, parity) {
      if (!factored.has(name)) return [await read(name, `d${parity}`, pool)];
      const { a, b } = factorNames(name);
      return [await read(a, `la${parity}`, pool), await read(b, `lb${parity}`, pool)];
    },
    async expand(name, loaded, pool, device) {
      if (!factored.has(name)) return convertIn(pool, 'dense', loaded[0], src.tensor(name).dtype, device);
      const { a, b } = factorNames(name);
      const [r, cols] = src.tensor(a).shape;
      const rows = src.tensor(b).shape[0];
      const fa = await convertIn(pool, 'fa', loaded[0], src.tensor(a).dtype, device);
      const fb = await convertIn(pool, 'fb', loaded[1], src.tensor(b).dtype, device);
      const out = pool.f32('product', rows * cols);
      await device.matmul(fb, fa, out, rows, r, cols);
      const s = value.meta.scales[name] ?? 1;
      if (s !== 1) for (let i = 0; i < out.length; i++) out[i] = Math.fround(out[i] * s);
      return out;
    },
  };
}

/** M + s·Δ in M's dtypes, as a model written to `io` (see applyDelta). */
export function applyLowRank(
  value: LowRank,
  onto: LowRank['source'],
  scale: number,
  io: DeltaIO,
): Promise<DeltaCounts> {
  return applyDelta(lowRankView(value), onto, scale, io);
}

export const lowRank: ObjectKind<LowRank> = {
  name: LOW_RANK_KIND,
  version: LOW_RANK_VERSION,
  description: 'a low-rank basis: per 2-D tensor factors B·A of the change, other changes dense or dropped',
  async compute(opts) {
    const [ft, second] = opts.inputs;
    const base = opts.base ?? second;
    if (!ft || !base)
      throw new WgitError('E_BAD_PARAM', 'a low-rank basis needs a fine-tuned model and its base', { param: 'inputs' });
    const { computeLowRank } = await import('./lowrank/compute.js');
    const { header, report } = await computeLowRank(base, ft, opts.params ?? {}, {
      outDir: opts.outDir,
      maxShardBytes: opts.maxShardBytes,
    });
    return { header, report };
  },
  async encode(value, outDir) {
    const { writeModelCopy } = await import('./checkpoint.js');
    await writeModelCopy(value.source, outDir);
    return value.header;
  },
  async decode(source, header) {
    return decodeLowRank(source, header);
  },
  async apply(value, opts) {
    if (!opts.onto)
      throw new WgitError('E_BAD_PARAM', 'a low-rank basis is applied onto a model: give the model (--onto)', {
        param: 'onto',
      });
    const details = await applyLowRank(value, opts.onto, opts.scale ?? 1, {
      outDir: opts.outDir,
      maxShardBytes: opts.maxShardBytes,
    });
    return { outDir: opts.outDir, model: null, exact: false, details: { ...details } };
  },
  delta: lowRankView,
  describe(value) {
    const m = value.meta;
    const ranks = [...ranksOf(value).values()];
    const span =
      ranks.length === 0
        ? ''
        : ` (rank ${Math.min(...ranks)}${Math.max(...ranks) > Math.min(...ranks) ? `–${Math.max(...ranks)}` : ''})`;
    return {
      kind: LOW_RANK_KIND,
      version: value.header.version,
      detected: false,
      description:
        `low-rank basis: ${m.lowRank.length} tensors as factors${span}, ${m.dense.length} dense, ` +
        `${m.dropped.length} dropped, ${m.replaced.length} replaced, ${m.removed.length} removed`,
      models: 0,
      details: { ...m, ranks: Object.fromEntries(ranksOf(value)) },
    };
  },
};
