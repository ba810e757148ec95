/**
 * PEFT's LoRA adapter layout, as PEFT saves it (`save_pretrained`):
 * `adapter_config.json` (peft_type "LORA", r, lora_alpha, target_modules,
 * base_model_name_or_path, rank_pattern, alpha_pattern, use_rslora,
 * fan_in_fan_out, …) and `adapter_model.safetensors` with, per adapted
 * module M (a Linear whose weight is the model tensor `M.weight`, [out, in]),
 * `base_model.model.M.lora_A.weight` [r, in] and
 * `base_model.model.M.lora_B.weight` [out, r]. The change to `M.weight` is
 * scaling·B·A (transposed when fan_in_fan_out: the weight is stored
 * [in, out]), scaling = lora_alpha / r, or lora_alpha / √r with rsLoRA; r and
 * lora_alpha per module come from rank_pattern / alpha_pattern, whose first
 * key (in order) matching the module name as `(.*\.)?(key)$` wins.
 */
import { WgitError } from '../errors.js';

export const ADAPTER_CONFIG = 'adapter_config.json';
export const ADAPTER_WEIGHTS = 'adapter_model.safetensors';
const PREFIX = 'base_model.model.';
const KEY = /^base_model\.model\.(.+)\.lora_(A|B)\.weight$/;

/** The fields of adapter_config.json wgit reads and writes. */
export interface LoraConfig {
  peft_type: 'LORA';
  r: number;
  lora_alpha: number;
  target_modules: string[] | string | null;
  base_model_name_or_path: string | null;
  rank_pattern: Record<string, number>;
  alpha_pattern: Record<string, number>;
  use_rslora: boolean;
  fan_in_fan_out: boolean;
  [field: string]: unknown;
}

/** The adapter keys of module M. */
export function loraKeys(module: string): { a: string; b: string } {
  return { a: `${PREFIX}${module}.lora_A.weight`, b: `${PREFIX}${module}.lora_B.weight` };
}

/** Module and factor of an adapter key; null for a key that is not a LoRA factor. */
export function parseLoraKey(key: string): { module: string; factor: 'A' | 'B' } | null {
  const m = KEY.exec(key);
  return m ? { module: m[1], factor: m[2] as 'A' | 'B' } : null;
}

/** A model tensor `M.weight` ↔ module M; null for other tensors. */
export function moduleOf(tensor: string): string | null {
  return tensor.endsWith('.weight') && tensor.length > '.weight'.length ? tensor.slice(0, -'.weight'.length) : null;
}

/** The leaf name of a module (`model.layers.0.self_attn.q_proj` → `q_proj`). */
export const leafOf = (module: string) => module.slice(module.lastIndexOf('.') + 1);

function badAdapter(message: string, data: Record<string, unknown> = {}): WgitError {
  return new WgitError('E_BAD_ADAPTER', message, data);
}

/** PEFT's pattern lookup: the value of the first key k with `(.*\.)?(k)$` matching the module, else undefined. */
export function patternValue(patterns: Record<string, number>, module: string): number | undefined {
  for (const [key, value] of Object.entries(patterns)) {
    let re: RegExp;
    try {
      re = new RegExp(`^(.*\\.)?(${key})$`);
    } catch {
      throw badAdapter(`adapter pattern ${JSON.stringify(key)} is not a regular expression`, { pattern: key });
    }
    if (re.test(module)) return value;
  }
  return undefined;
}

/** Rank, alpha and scaling of one module under the config. */
export function moduleScaling(config: LoraConfig, module: string): { r: number; alpha: number; scaling: number } {
  const r = patternValue(config.rank_pattern, module) ?? config.r;
  const alpha = patternValue(config.alpha_pattern, module) ?? config.lora_alpha;
  return { r, alpha, scaling: config.use_rslora ? alpha / Math.sqrt(r) : alpha / r };
}

const isNumberMap = (x: unknown): x is Record<string, number> =>
  typeof x === 'object' &&
  x !== null &&
  !Array.isArray(x) &&
  Object.values(x).every((v) => typeof v === 'number' && Number.isFinite(v) && v > 0);

/** Parses adapter_config.json's text, checking what wgit relies on (E_BAD_ADAPTER). */
export function parseLoraConfig(text: string): LoraConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw badAdapter(`${ADAPTER_CONFIG} is not valid JSON`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw badAdapter(`${ADAPTER_CONFIG} is not an object`);
  const c = raw as Record<string, unknown>;
  if (c.peft_type !== 'LORA')
    throw badAdapter(`${ADAPTER_CONFIG} has peft_type ${JSON.stringify(c.peft_type)}, not "LORA"`, {
      peftType: c.peft_type,
    });
  if (!Number.isInteger(c.r) || (c.r as number) < 1)
    throw badAdapter(`${ADAPTER_CONFIG}: r must be a positive integer, got ${JSON.stringify(c.r)}`);
  const alpha = c.lora_alpha ?? 8;
  if (typeof alpha !== 'number' || !Number.isFinite(alpha))
    throw badAdapter(`${ADAPTER_CONFIG}: lora_alpha must be a number, got ${JSON.stringify(alpha)}`);
  const patterns = { rank_pattern: c.rank_pattern ?? {}, alpha_pattern: c.alpha_pattern ?? {} };
  for (const [field, v] of Object.entries(patterns))
    if (!isNumberMap(v)) throw badAdapter(`${ADAPTER_CONFIG}: ${field} must map names to positive numbers`);
  for (const field of ['use_rslora', 'fan_in_fan_out'])
    if (c[field] !== undefined && typeof c[field] !== 'boolean')
      throw badAdapter(`${ADAPTER_CONFIG}: ${field} must be true or false`);
  if (c.use_dora === true)
    throw badAdapter(`${ADAPTER_CONFIG}: DoRA adapters (use_dora) are not low-rank changes alone`);
  return {
    ...c,
    peft_type: 'LORA',
    r: c.r as number,
    lora_alpha: alpha,
    target_modules: (c.target_modules as LoraConfig['target_modules']) ?? null,
    base_model_name_or_path: typeof c.base_model_name_or_path === 'string' ? c.base_model_name_or_path : null,
    rank_pattern: patterns.rank_pattern as Record<string, number>,
    alpha_pattern: patterns.alpha_pattern as Record<string, number>,
    use_rslora: c.use_rslora === true,
    fan_in_fan_out: c.fan_in_fan_out === true,
  };
}
