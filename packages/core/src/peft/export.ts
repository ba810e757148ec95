/**
 * `wgit export-lora`: a low-rank basis as a PEFT LoRA adapter folder. Each
 * factored tensor `M.weight` becomes module M with lora_A = A [r, in] and
 * lora_B = B [out, r] as stored (for `wgit lowrank`: B = U_r·√Σ_r,
 * A = √Σ_r·V_rᵀ); r is the most common rank and lora_alpha = r, so the
 * scaling is 1; a module of another rank or scale gets rank_pattern /
 * alpha_pattern entries that give back its own scaling exactly. Whatever
 * PEFT's LoRA cannot hold (dense, dropped, replaced or removed tensors,
 * embeddings, tensors not named `….weight`) is listed as skipped.
 */
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { WgitError } from '../errors.js';
import { factorNames, type LowRank } from '../objects/low-rank.js';
import { writeSafetensors } from '../safetensors/index.js';
import { ADAPTER_CONFIG, ADAPTER_WEIGHTS, type LoraConfig, leafOf, loraKeys, moduleOf } from './config.js';

export interface LoraExportReport {
  outDir: string;
  modules: { module: string; tensor: string; rank: number; scaling: number }[];
  skipped: { tensor: string; reason: string }[];
  config: LoraConfig;
}

const EMBEDDING = /embed|^wte$|^wpe$/;

function mostCommon(ranks: number[]): number {
  const counts = new Map<number, number>();
  for (const r of ranks) counts.set(r, (counts.get(r) ?? 0) + 1);
  return [...counts].sort((x, y) => y[1] - x[1] || y[0] - x[0])[0][0];
}

/** Writes the adapter to `outDir` (absent or empty); returns what went in and what was skipped. */
export async function exportLora(
  value: LowRank,
  outDir: string,
  opts: { baseModel?: string | null; taskType?: string | null } = {},
): Promise<LoraExportReport> {
  const m = value.meta;
  const skipped: LoraExportReport['skipped'] = [];
  for (const [list, reason] of [
    [m.dense, 'not 2-D: held as a dense difference, which a LoRA adapter cannot carry'],
    [m.dropped, 'dropped when the basis was made'],
    [m.replaced, 'held whole (new in the fine-tune or not float), which a LoRA adapter cannot carry'],
    [m.removed, 'removed by the fine-tune, which a LoRA adapter cannot express'],
  ] as const)
    for (const tensor of list) skipped.push({ tensor, reason });
  const picked: { module: string; tensor: string; rank: number; scale: number }[] = [];
  for (const tensor of m.lowRank) {
    const module = moduleOf(tensor);
    if (!module) skipped.push({ tensor, reason: 'not a module weight (the name does not end in .weight)' });
    else if (EMBEDDING.test(leafOf(module)))
      skipped.push({ tensor, reason: 'an embedding: PEFT adapts those with lora_embedding_A/B, not written here' });
    else
      picked.push({
        module,
        tensor,
        rank: value.source.tensor(factorNames(tensor).a).shape[0],
        scale: m.scales[tensor] ?? 1,
      });
  }
  if (picked.length === 0)
    throw new WgitError('E_BAD_PARAM', 'the low-rank basis has no factored module weight to export as a LoRA adapter', {
      param: 'rev',
    });
  if ((await readdir(outDir).catch(() => [])).length > 0)
    throw new WgitError('E_OUTPUT_NOT_EMPTY', `${outDir} is not empty; give a new folder for the adapter`, {
      path: outDir,
    });
  const r = mostCommon(picked.map((p) => p.rank));
  const rankPattern: Record<string, number> = {};
  const alphaPattern: Record<string, number> = {};
  for (const p of picked) {
    if (p.rank !== r) rankPattern[p.module] = p.rank;
    const alpha = p.scale * p.rank;
    if (alpha !== r) alphaPattern[p.module] = alpha;
  }
  const config: LoraConfig = {
    peft_type: 'LORA',
    task_type: opts.taskType ?? null,
    base_model_name_or_path: opts.baseModel ?? null,
    r,
    lora_alpha: r,
    target_modules: [...new Set(picked.map((p) => leafOf(p.module)))].sort(),
    rank_pattern: rankPattern,
    alpha_pattern: alphaPattern,
    use_rslora: false,
    fan_in_fan_out: false,
    lora_dropout: 0,
    bias: 'none',
    inference_mode: true,
    init_lora_weights: true,
    modules_to_save: null,
    layers_to_transform: null,
    layers_pattern: null,
    use_dora: false,
    revision: null,
  };
  const tensors = [];
  for (const p of picked) {
    const f = factorNames(p.tensor);
    const keys = loraKeys(p.module);
    for (const [key, name] of [
      [keys.a, f.a],
      [keys.b, f.b],
    ]) {
      const t = value.source.tensor(name);
      tensors.push({ name: key, dtype: t.dtype, shape: t.shape, data: await value.source.readTensor(name) });
    }
  }
  await mkdir(outDir, { recursive: true });
  await writeSafetensors(join(outDir, ADAPTER_WEIGHTS), tensors, { format: 'pt' });
  await writeFile(join(outDir, ADAPTER_CONFIG), `${JSON.stringify(config, null, 2)}\n`);
  return {
    outDir,
    modules: picked.map((p) => ({ module: p.module, tensor: p.tensor, rank: p.rank, scaling: p.scale })),
    skipped,
    config,
  };
}
