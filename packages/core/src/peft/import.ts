/**
 * `wgit import-lora`: a PEFT LoRA adapter folder read as a low-rank basis of
 * a base model. Module M changes the base tensor `M.weight` by
 * scaling·B·A (config.ts); the factors are stored as they are (any float
 * dtype), or, with fan_in_fan_out (weights stored [in, out]), as Aᵀ and Bᵀ
 * in f32 so that the stored B'·A' is the change in the weight's own layout.
 * The adapter must fit the base: every module's weight present, 2-D, float,
 * of the factors' shape (E_ADAPTER_MISMATCH, naming it), checked before
 * anything is written.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type DType, isFloatDType } from '../dtypes.js';
import { WgitError } from '../errors.js';
import { type DeltaIO, writeTensors } from '../objects/delta.js';
import type { ObjectHeader } from '../objects/kind.js';
import { factorNames, LOW_RANK_KIND, LOW_RANK_VERSION, type LowRankMeta } from '../objects/low-rank.js';
import { convertIn } from '../pipeline/index.js';
import { type ModelSource, type ModelTensor, openModel, type TensorSpec } from '../safetensors/index.js';
import {
  ADAPTER_CONFIG,
  ADAPTER_WEIGHTS,
  type LoraConfig,
  moduleScaling,
  parseLoraConfig,
  parseLoraKey,
} from './config.js';

export interface LoraAdapter {
  dir: string;
  config: LoraConfig;
  /** adapter_model.safetensors. */
  source: ModelSource;
  /** Module → its two factors, in the file's order. */
  modules: Map<string, { a: ModelTensor; b: ModelTensor }>;
}

export interface LoraModule {
  module: string;
  /** The base tensor it changes. */
  tensor: string;
  rank: number;
  scaling: number;
  transpose: boolean;
}

const badAdapter = (message: string, data: Record<string, unknown> = {}) =>
  new WgitError('E_BAD_ADAPTER', message, data);

/** Reads an adapter folder's config and factor list (the factors' bytes stay on disk). */
export async function openLoraAdapter(dir: string): Promise<LoraAdapter> {
  const text = await readFile(join(dir, ADAPTER_CONFIG), 'utf8').catch(() => {
    throw badAdapter(`${dir} has no ${ADAPTER_CONFIG}: is it a PEFT adapter folder?`, { path: dir });
  });
  const config = parseLoraConfig(text);
  const file = join(dir, ADAPTER_WEIGHTS);
  let source: ModelSource;
  try {
    source = await openModel(file);
  } catch (e) {
    if (!(e instanceof WgitError) || e.code !== 'E_NOT_FOUND') throw e;
    throw badAdapter(`${dir} has no readable ${ADAPTER_WEIGHTS} (adapters saved as .bin are not read)`, { path: dir });
  }
  const parts = new Map<string, { a?: ModelTensor; b?: ModelTensor }>();
  for (const t of source.tensors) {
    const key = parseLoraKey(t.name);
    if (!key) {
      await source.close();
      throw badAdapter(
        `adapter tensor ${JSON.stringify(t.name)} is not a LoRA factor base_model.model.<module>.lora_A/B.weight`,
        { tensor: t.name },
      );
    }
    const p = parts.get(key.module) ?? {};
    p[key.factor === 'A' ? 'a' : 'b'] = t;
    parts.set(key.module, p);
  }
  const modules = new Map<string, { a: ModelTensor; b: ModelTensor }>();
  for (const [module, { a, b }] of parts) {
    const fail = (what: string) => badAdapter(`adapter module ${JSON.stringify(module)}: ${what}`, { module });
    if (!a || !b) throw fail(`lora_${a ? 'B' : 'A'}.weight is missing`);
    if (a.shape.length !== 2 || b.shape.length !== 2 || !isFloatDType(a.dtype) || !isFloatDType(b.dtype))
      throw fail('factors must be 2-D float tensors');
    if (a.shape[0] !== b.shape[1] || a.shape[0] < 1)
      throw fail(`lora_A is [${a.shape}] and lora_B is [${b.shape}]: their ranks differ`);
    const { r } = moduleScaling(config, module);
    if (a.shape[0] !== r) throw fail(`the config gives rank ${r}, the factors have rank ${a.shape[0]}`);
    modules.set(module, { a, b });
  }
  if (modules.size === 0) throw badAdapter(`${ADAPTER_WEIGHTS} holds no LoRA factors`, { path: dir });
  return { dir, config, source, modules };
}

/** Which base tensor each module changes, checked against the base; the low-rank header. */
export function planLoraImport(
  adapter: LoraAdapter,
  base: ModelSource,
): { header: ObjectHeader; modules: LoraModule[] } {
  const byName = new Map(base.tensors.map((t) => [t.name, t]));
  const modules: LoraModule[] = [];
  for (const [module, { a, b }] of adapter.modules) {
    const tensor = `${module}.weight`;
    const w = byName.get(tensor);
    if (!w)
      throw new WgitError(
        'E_ADAPTER_MISMATCH',
        `the adapter changes module ${JSON.stringify(module)}, but the base has no tensor ${JSON.stringify(tensor)}`,
        { module, tensor },
      );
    const transpose = adapter.config.fan_in_fan_out;
    const want = transpose ? [a.shape[1], b.shape[0]] : [b.shape[0], a.shape[1]];
    if (w.shape.length !== 2 || w.shape[0] !== want[0] || w.shape[1] !== want[1] || !isFloatDType(w.dtype))
      throw new WgitError(
        'E_ADAPTER_MISMATCH',
        `tensor ${JSON.stringify(tensor)} is ${w.dtype}[${w.shape}] in the base; the adapter's factors make [${want}]`,
        { module, tensor, expected: want, found: w.shape },
      );
    const { scaling } = moduleScaling(adapter.config, module);
    modules.push({ module, tensor, rank: a.shape[0], scaling, transpose });
  }
  const order = new Map(base.tensors.map((t, i) => [t.name, i]));
  modules.sort((x, y) => (order.get(x.tensor) as number) - (order.get(y.tensor) as number));
  const c = adapter.config;
  const meta: LowRankMeta = {
    lowRank: modules.map((m) => m.tensor),
    scales: Object.fromEntries(modules.filter((m) => m.scaling !== 1).map((m) => [m.tensor, m.scaling])),
    dense: [],
    dropped: [],
    replaced: [],
    removed: [],
    params: {
      source: 'peft-lora',
      r: c.r,
      lora_alpha: c.lora_alpha,
      use_rslora: c.use_rslora,
      fan_in_fan_out: c.fan_in_fan_out,
      rank_pattern: c.rank_pattern,
      alpha_pattern: c.alpha_pattern,
      base_model_name_or_path: c.base_model_name_or_path,
    },
  };
  return { header: { kind: LOW_RANK_KIND, version: LOW_RANK_VERSION, meta: { ...meta } }, modules };
}

/** The adapter as a low-rank basis of `base`, written to `io`. */
export async function importLora(
  adapter: LoraAdapter,
  base: ModelSource,
  io: DeltaIO,
): Promise<{ header: ObjectHeader; modules: LoraModule[] }> {
  const { header, modules } = planLoraImport(adapter, base);
  const from = new Map<string, { t: ModelTensor; transpose: boolean }>();
  const specs: TensorSpec[] = [];
  for (const m of modules) {
    const { a, b } = adapter.modules.get(m.module) as { a: ModelTensor; b: ModelTensor };
    const names = factorNames(m.tensor);
    // Stored A' (r × cols) and B' (rows × r): A, B as they are, or Bᵀ and Aᵀ.
    const [sa, sb] = m.transpose ? [b, a] : [a, b];
    for (const [name, t] of [
      [names.a, sa],
      [names.b, sb],
    ] as const) {
      specs.push({
        name,
        dtype: m.transpose ? ('F32' as DType) : t.dtype,
        shape: m.transpose ? [t.shape[1], t.shape[0]] : t.shape,
      });
      from.set(name, { t, transpose: m.transpose });
    }
  }
  await writeTensors(
    io,
    specs,
    adapter.source,
    async (spec, [raw], out, pool, device) => {
      const { t, transpose } = from.get(spec.name) as { t: ModelTensor; transpose: boolean };
      if (!transpose) {
        out.set(raw);
        return;
      }
      const v = await convertIn(pool, 'factor', raw, t.dtype, device);
      const [rows, cols] = t.shape;
      const o = new Float32Array(out.buffer, out.byteOffset, rows * cols);
      for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) o[j * rows + i] = v[i * cols + j];
    },
    async (spec, pool, parity) => {
      const { t } = from.get(spec.name) as { t: ModelTensor };
      return [await adapter.source.readTensor(t.name, pool.bytes(`f${parity}`, t.byteLength))];
    },
  );
  return { header, modules };
}
