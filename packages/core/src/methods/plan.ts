/**
 * The resolved plan of a merge, without computing it (`wgit merge --dry-run`):
 * per group of tensors that get the same numbers, the method, the parameters
 * after filters and gradients, and the inputs. Only headers are read.
 */
import { isFloatDType } from '../dtypes.js';
import { WgitError } from '../errors.js';
import type { ModelTensor } from '../safetensors/index.js';
import { countBlocks } from './lines.js';
import { tensorParams } from './params.js';
import { getMethod } from './registry.js';
import type { MergeParams, ResolvedParams } from './types.js';

export interface PlanGroup {
  method: string;
  /** The numbers these tensors are merged with (weights, density … per input; method extras). */
  params: Record<string, unknown>;
  /** The models each tensor of the group is computed from, by label (inputs in order, then the base). */
  inputs: string[];
  /** The tensors, in model order. */
  tensors: string[];
}

export interface MergePlan {
  method: string;
  /** The parameters after validation and defaults, as the recipe records them. */
  params: ResolvedParams;
  /** Number of layers gradients are interpolated over. */
  layers: number;
  groups: PlanGroup[];
  /** Integer/bool tensors: taken from the first model. */
  copied: string[];
}

export interface MergePlanOptions {
  method: string;
  params?: MergeParams;
  /** The first input's tensors (header only). */
  tensors: readonly Pick<ModelTensor, 'name' | 'dtype' | 'shape'>[];
  /** Labels of the inputs in order (revisions, paths). */
  inputs: string[];
  base?: string | null;
  /** Gradient position per tensor (a sliced merge); default: by layer. */
  positions?: ReadonlyMap<string, number>;
}

/** Groups the tensors by the numbers they would be merged with; nothing is read but names and dtypes. */
export function mergePlan(opts: MergePlanOptions): MergePlan {
  const m = getMethod(opts.method);
  if (opts.inputs.length < m.minInputs)
    throw new WgitError('E_BAD_PARAM', `${m.name} needs at least ${m.minInputs} input model(s)`, { method: m.name });
  const resolved = m.resolve(opts.params ?? {}, opts.inputs.length);
  const layers = countBlocks(opts.tensors.map((t) => t.name));
  const inputs = m.needsBase && opts.base ? [...opts.inputs, opts.base] : [...opts.inputs];
  const declared = new Set(m.params.map((d) => d.name));
  const groups = new Map<string, PlanGroup>();
  const copied: string[] = [];
  for (const t of opts.tensors) {
    if (!isFloatDType(t.dtype)) {
      copied.push(t.name);
      continue;
    }
    const tp = tensorParams(resolved, t.name, layers, opts.positions?.get(t.name));
    const { extra, ...fixed } = tp;
    const all: Record<string, unknown> = { ...fixed, ...(extra ?? {}) };
    // only what the method takes
    const params = Object.fromEntries(Object.entries(all).filter(([k]) => declared.has(k)));
    const key = JSON.stringify(params);
    let g = groups.get(key);
    if (!g) {
      g = { method: m.name, params, inputs, tensors: [] };
      groups.set(key, g);
    }
    g.tensors.push(t.name);
  }
  return { method: m.name, params: resolved, layers, groups: [...groups.values()], copied };
}
