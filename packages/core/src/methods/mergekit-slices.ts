/**
 * mergekit's `slices:` in a config: each slice lists sources, a model and
 * its `layer_range` [a, b). The recipe keeps the model references once each
 * (`models`) and the slices as indices into them; slices.ts runs them.
 */
import { WgitError } from '../errors.js';

export interface RecipeSlice {
  sources: { model: number; layers: [number, number] }[];
}

function unsupported(what: string, data: Record<string, unknown> = {}): WgitError {
  return new WgitError('E_MERGEKIT_UNSUPPORTED', `mergekit config: ${what} is not supported`, data);
}

function invalid(what: string, data: Record<string, unknown> = {}): WgitError {
  return new WgitError('E_MERGEKIT_INVALID', `mergekit config: ${what}`, data);
}

const isObject = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);

/**
 * The slices of a config and the models they use (first appearance order;
 * `first`, when given and used, comes first). Slice-level `parameters`,
 * `base_model`, `residual_weight` and per-source `parameters` are refused by name.
 */
export function parseSlices(v: unknown, first: string | null): { models: string[]; slices: RecipeSlice[] } {
  if (!Array.isArray(v) || v.length === 0) throw invalid('slices must be a non-empty list', { key: 'slices' });
  const refs: string[] = [];
  const raw = v.map((sl, s) => {
    if (!isObject(sl)) throw invalid(`slices[${s}] must be a mapping with sources`, { key: 'slices' });
    for (const k of Object.keys(sl))
      if (k !== 'sources') throw unsupported(`key ${JSON.stringify(k)} in slices[${s}]`, { key: k });
    if (!Array.isArray(sl.sources) || sl.sources.length === 0)
      throw invalid(`slices[${s}].sources must be a non-empty list`, { key: 'sources' });
    return sl.sources.map((src: unknown, i: number) => {
      const where = `slices[${s}].sources[${i}]`;
      if (!isObject(src)) throw invalid(`${where} must be a mapping`, { key: 'sources' });
      for (const k of Object.keys(src))
        if (k !== 'model' && k !== 'layer_range') throw unsupported(`key ${JSON.stringify(k)} in ${where}`, { key: k });
      if (typeof src.model !== 'string' || src.model.trim() === '')
        throw invalid(`${where}.model must be a model reference`, { key: 'model' });
      const r = src.layer_range;
      if (
        !Array.isArray(r) ||
        r.length !== 2 ||
        !r.every((x) => Number.isInteger(x) && (x as number) >= 0) ||
        (r[0] as number) >= (r[1] as number)
      )
        throw invalid(`${where}.layer_range must be [start, end] with 0 ≤ start < end`, { key: 'layer_range' });
      if (!refs.includes(src.model)) refs.push(src.model);
      return { ref: src.model as string, layers: [r[0], r[1]] as [number, number] };
    });
  });
  const models = first !== null && refs.includes(first) ? [first, ...refs.filter((r) => r !== first)] : refs;
  const slices = raw.map((sources) => {
    // the base (t = 0) first in every slice, as mergekit's slerp orders them
    const sorted =
      first === null ? sources : [...sources].sort((a, b) => Number(b.ref === first) - Number(a.ref === first));
    return { sources: sorted.map((x) => ({ model: models.indexOf(x.ref), layers: x.layers })) };
  });
  return { models, slices };
}
