/**
 * mergekit YAML configs for the methods mergekit and wgit share. The parser
 * returns a normalized recipe the engine consumes; model references stay
 * strings for the caller (the CLI) to resolve as revisions or paths.
 * Anything mergekit would do that we do not is refused by name
 * (E_MERGEKIT_UNSUPPORTED) instead of being silently ignored.
 */
import { parseDocument, visit } from 'yaml';
import type { DType } from '../dtypes.js';
import { WgitError } from '../errors.js';
import { isDecimalText } from '../parse.js';
import { parseSlices, type RecipeSlice } from './mergekit-slices.js';
import { MERGEKIT_DEFAULT_DENSITY } from './params.js';
import { METHODS } from './registry.js';
import type { MergeMethod, MergeParams, ParamDecl, PerTensor, TensorRule } from './types.js';

export { MERGEKIT_DEFAULT_DENSITY };

export interface MergekitRecipe {
  /** wgit registry name. */
  method: string;
  /** mergekit's name, as written. */
  mergekitMethod: string;
  /** Input model references, in order (the base model excluded). */
  models: string[];
  base: string | null;
  params: MergeParams;
  outDtype: DType | null;
  warnings: string[];
  /**
   * mergekit's `slices`: per output slice, a model per input position (an
   * index into `models`) and its layer range [a, b). The merge then runs on
   * the sliced models (slicedInputs); `models` lists each model once.
   */
  slices?: RecipeSlice[];
}

const DTYPE_MAP: Record<string, DType> = { float32: 'F32', float16: 'F16', bfloat16: 'BF16' };

const MAX_CONFIG_BYTES = 1 << 20;

function unsupported(what: string, data: Record<string, unknown> = {}): WgitError {
  return new WgitError('E_MERGEKIT_UNSUPPORTED', `mergekit config: ${what} is not supported`, data);
}

function invalid(what: string, data: Record<string, unknown> = {}): WgitError {
  return new WgitError('E_MERGEKIT_INVALID', `mergekit config: ${what}`, data);
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/**
 * A parameter value: a number, a gradient (mergekit's list of numbers,
 * interpolated over the layers), or mergekit's list of {filter, value}
 * entries whose values are numbers or gradients.
 */
function paramValue(v: unknown, where: string, min = -Infinity, max = Infinity, perTensor = true): PerTensor<number> {
  const num = (x: unknown, w: string): number => {
    if (typeof x !== 'number' || !Number.isFinite(x))
      throw invalid(`${w} must be a number, got ${JSON.stringify(x)}`, { key: w });
    if (x < min || x > max) throw invalid(`${w} must be within [${min}, ${max}], got ${x}`, { key: w });
    return x;
  };
  const scalar = (x: unknown, w: string): number | number[] => {
    if (!Array.isArray(x)) return num(x, w);
    if (x.length === 0) throw invalid(`${w} is an empty gradient`, { key: w });
    return x.map((e, i) => num(e, `${w}[${i}]`));
  };
  if (!Array.isArray(v)) return num(v, where);
  if (!perTensor) throw invalid(`${where} must be a number`, { key: where });
  if (v.length === 0) throw invalid(`${where} is an empty list`, { key: where });
  if (v.every((e) => typeof e === 'number' || typeof e === 'string')) return scalar(v, where);
  return v.map((e, i): TensorRule<number> => {
    if (!isObject(e)) throw invalid(`${where}[${i}] must be {filter, value}`, { key: where });
    for (const k of Object.keys(e))
      if (k !== 'filter' && k !== 'value') throw unsupported(`key ${JSON.stringify(k)} in ${where}[${i}]`, { key: k });
    if (!('value' in e)) throw invalid(`${where}[${i}] has no value`, { key: where });
    const rule: TensorRule<number> = { value: scalar(e.value, `${where}[${i}].value`) };
    if (e.filter !== undefined && e.filter !== null) {
      if (typeof e.filter !== 'string' || e.filter === '')
        throw invalid(`${where}[${i}].filter must be a non-empty string`, { key: where });
      // mergekit's wildcard: "*" matches every tensor, like an entry without filter
      if (e.filter !== '*') rule.filter = e.filter;
    }
    return rule;
  });
}

function modelRef(v: unknown, where: string): string {
  if (typeof v !== 'string' || v.trim() === '')
    throw invalid(`${where} must be a model reference (a revision or a path)`, { key: where });
  return v;
}

/**
 * Parses a mergekit YAML document into a recipe for mergeModels. Numbers must
 * be written in decimal: YAML's hex and octal forms (`0x10`, `0o10`), `.inf`
 * and `.nan`, and leading zeros (`010`, octal to mergekit's YAML 1.1 reader)
 * stay text, so they are refused where a number is expected.
 */
export function parseMergekitYaml(text: string, source = 'config'): MergekitRecipe {
  if (typeof text !== 'string') throw invalid('not text');
  if (text.length > MAX_CONFIG_BYTES) throw invalid(`${source} is over ${MAX_CONFIG_BYTES} bytes`);
  let doc: unknown;
  try {
    const parsed = parseDocument(text, { uniqueKeys: true, prettyErrors: false });
    if (parsed.errors.length > 0) throw parsed.errors[0];
    visit(parsed, {
      Scalar(_key, node) {
        if (typeof node.value === 'number' && !isDecimalText(node.source ?? '')) node.value = node.source;
      },
    });
    doc = parsed.toJS({ maxAliasCount: 100 });
  } catch (e) {
    throw invalid(`${source} is not valid YAML: ${(e as Error).message.split('\n')[0]}`, { source });
  }
  return normalizeMergekit(doc, source);
}

const TOP_KEYS = new Set(['merge_method', 'models', 'slices', 'base_model', 'parameters', 'dtype', 'out_dtype']);

/**
 * Per-model keys mergekit requires for every method mapped here (its methods
 * declare `weight` required): a model that gets no value, from its own entry
 * or from `parameters`, is an error there, so it is one here too.
 */
const MERGEKIT_REQUIRED = new Set(['weight']);

/** A dtype key's value, or null when the key is absent. */
function dtypeOf(v: unknown, key: string): DType | null {
  if (v === undefined || v === null) return null;
  if (typeof v !== 'string' || !DTYPE_MAP[v]) throw unsupported(`${key} ${JSON.stringify(v)}`, { key });
  return DTYPE_MAP[v];
}

/**
 * A per-model value as mergekit evaluates it for each tensor: the model's own
 * setting, then the global one under `parameters`, then `fallback` (mergekit's
 * default). A filter list that matches no tensor at one level falls through to
 * the next, so the lists are chained, and what a tensor matching nothing gets
 * is made explicit as a last entry without filter. With `missing` (the key is
 * required) a value that leaves some tensors without one throws
 * `missing(filters)`: the filters, none when no value is given at all.
 */
function chainValue(
  own: unknown,
  global: unknown,
  fallback: unknown,
  missing?: (filters: string[]) => WgitError,
): unknown {
  const rules: TensorRule<number>[] = [];
  for (const v of [own, global]) {
    if (v === undefined) continue;
    // a number or a gradient applies to every tensor
    if (!Array.isArray(v) || v.every((x) => typeof x === 'number')) {
      if (rules.length === 0) return v;
      rules.push({ value: v as number | number[] });
      return rules;
    }
    for (const r of v as TensorRule<number>[]) {
      if (r.filter === undefined) {
        if (rules.length === 0) return r.value;
        rules.push(r);
        return rules;
      }
      rules.push(r);
    }
  }
  if (missing) throw missing(rules.map((r) => r.filter as string));
  if (rules.length === 0) return fallback;
  if (typeof fallback === 'number') rules.push({ value: fallback });
  return rules;
}

/**
 * mergekit keys under `parameters` that map to no wgit parameter, for every
 * method: each either changes nothing here (a warning) or must say what wgit
 * does anyway.
 */
const MERGEKIT_ONLY: Record<string, (v: unknown, warnings: string[]) => void> = {
  int8_mask(v, warnings) {
    if (typeof v !== 'boolean') throw invalid('parameters.int8_mask must be true or false', { key: 'int8_mask' });
    warnings.push(
      "int8_mask ignored: wgit keeps its masks in memory per tensor, so mergekit's memory saving does not apply",
    );
  },
};

/** The registry method mergekit calls `name`, if any. */
function methodByMergekitName(name: string): MergeMethod | undefined {
  return METHODS.find((m) => m.mergekitName === name);
}

/** The declaration behind a mergekit key for this method, or undefined. */
function declFor(m: MergeMethod, key: string): ParamDecl | undefined {
  return m.params.find((d) => d.mergekit?.key === key);
}

/** Whether any registered method maps the key, at a model (`perModel`) or at the top level. */
function anyMethodMaps(key: string, perModel: boolean): boolean {
  return METHODS.some((m) => {
    const d = declFor(m, key);
    return d !== undefined && (!perModel || d.scope === 'per-model');
  });
}

/** A value of a declared parameter as written in the config; errors are mergekit's codes. */
function declValue(d: ParamDecl, v: unknown, where: string): unknown {
  switch (d.type) {
    case 'number': {
      const max = typeof d.max === 'number' ? d.max : Infinity;
      return paramValue(v, where, d.min, max, d.perTensor);
    }
    case 'boolean':
      if (typeof v !== 'boolean') throw invalid(`${where} must be true or false`, { key: d.mergekit?.key });
      return v;
    case 'integer':
      if (!Number.isInteger(v)) throw invalid(`${where} must be an integer`, { key: d.mergekit?.key });
      return v;
    case 'enum': {
      const spelled = d.mergekit?.values;
      if (spelled && Object.hasOwn(spelled, String(v))) return spelled[String(v)];
      if (typeof v !== 'string' || !d.choices?.includes(v)) {
        const also = spelled ? Object.keys(spelled) : [];
        throw invalid(`${where} must be one of ${[...also, ...(d.choices ?? [])].join(', ')}`, {
          key: d.mergekit?.key,
        });
      }
      return v;
    }
    default:
      throw unsupported(`${where}`, { key: d.mergekit?.key });
  }
}

export function normalizeMergekit(doc: unknown, source = 'config'): MergekitRecipe {
  if (!isObject(doc)) throw invalid(`${source} must be a mapping at the top level`, { source });
  for (const k of Object.keys(doc)) if (!TOP_KEYS.has(k)) throw unsupported(`key ${JSON.stringify(k)}`, { key: k });
  const warnings: string[] = [];
  if (typeof doc.merge_method !== 'string') throw invalid('merge_method is missing', { key: 'merge_method' });
  const m = methodByMergekitName(doc.merge_method);
  if (!m)
    throw unsupported(`merge_method ${JSON.stringify(doc.merge_method)}`, {
      key: 'merge_method',
      method: doc.merge_method,
    });
  const method = m.name;

  let base: string | null = null;
  if (doc.base_model !== undefined && doc.base_model !== null) base = modelRef(doc.base_model, 'base_model');
  if ((m.needsBase || m.mergekitBaseIsInput) && base === null)
    throw invalid(`${doc.merge_method} needs base_model`, { key: 'base_model' });
  // a method without a base (linear) merges base_model as one more input, as mergekit does;
  // slerp's base_model is its first input (t = 0)
  const baseInput = m.mergekitBaseIsInput ? base : null;
  const extraInput = !m.needsBase && !m.optionalBase ? base : null;
  if (!m.needsBase && !m.optionalBase) base = null;

  // mergekit's `dtype` is the dtype it computes in and `out_dtype` the one it
  // writes, which is the compute dtype when out_dtype is not given. wgit
  // computes in float32 whatever the dtypes.
  const computeDtype = dtypeOf(doc.dtype, 'dtype');
  const outDtype = dtypeOf(doc.out_dtype, 'out_dtype') ?? computeDtype;
  if (computeDtype !== null && computeDtype !== 'F32')
    warnings.push(
      `dtype ${doc.dtype}: wgit computes in float32 and writes ${doc.out_dtype ?? doc.dtype}; mergekit computes in ${doc.dtype}, so results can differ in the last bits`,
    );

  const params: MergeParams = {};
  // per-model parameters given under `parameters`: every model's default
  const modelDefaults = new Map<ParamDecl, unknown>();
  if (doc.parameters !== undefined && doc.parameters !== null) {
    if (!isObject(doc.parameters)) throw invalid('parameters must be a mapping', { key: 'parameters' });
    for (const [k, v] of Object.entries(doc.parameters)) {
      const d = declFor(m, k);
      if (!d && m.mergekitFixed && Object.hasOwn(m.mergekitFixed, k)) {
        if (v !== m.mergekitFixed[k])
          throw unsupported(`parameter ${k}: ${JSON.stringify(v)} with ${doc.merge_method}`, { key: k });
        continue;
      }
      if (!d) {
        const only = MERGEKIT_ONLY[k];
        if (only) {
          only(v, warnings);
          continue;
        }
        if (anyMethodMaps(k, false))
          throw unsupported(`parameter ${JSON.stringify(k)} with ${doc.merge_method}`, { key: k });
        throw unsupported(`parameter ${JSON.stringify(k)}`, { key: k });
      }
      const value = declValue(d, v, `parameters.${k}`);
      if (d.scope === 'per-model') modelDefaults.set(d, value);
      else params[d.name] = value;
    }
  }
  for (const d of m.params)
    if (d.scope === 'global' && d.mergekit?.default !== undefined && params[d.name] === undefined)
      params[d.name] = d.mergekit.default;

  if (doc.slices !== undefined && doc.models !== undefined)
    throw invalid('give models or slices, not both', { key: 'slices' });
  const perModel = m.params.filter((d) => d.scope === 'per-model' && d.mergekit);
  const models: string[] = [];
  const lists = new Map<ParamDecl, unknown[]>(perModel.map((d) => [d, []]));
  const addInput = (ref: string, given: Map<ParamDecl, unknown>, who: string, hint: (key: string) => string) => {
    models.push(ref);
    for (const d of perModel) {
      const key = d.mergekit?.key as string;
      const missing = (filters: string[]) =>
        invalid(
          filters.length === 0
            ? `${who}: no ${key} (mergekit requires one); ${hint(key)}`
            : `${who}: no ${key} for tensors matching none of the filters ${filters.map((f) => JSON.stringify(f)).join(', ')}; ${hint(key)}`,
          { key, model: ref },
        );
      const required = MERGEKIT_REQUIRED.has(key);
      const v = chainValue(given.get(d), modelDefaults.get(d), mergekitDefault(d), required ? missing : undefined);
      lists.get(d)?.push(v);
    }
  };
  if (doc.slices !== undefined) {
    if (m.needsBase || m.optionalBase)
      throw unsupported(`slices with ${doc.merge_method} (a method with a base_model)`, { key: 'slices' });
    const { models: refs, slices } = parseSlices(doc.slices, baseInput);
    if (baseInput !== null && !refs.includes(baseInput))
      throw invalid(`base_model ${baseInput} is not among the slices' sources`, { key: 'base_model' });
    const width = slices[0].sources.length;
    for (let i = 0; i < width; i++)
      addInput(`slices source ${i}`, new Map(), `slices source ${i}`, (key) => `give parameters.${key}`);
    for (const [d, list] of lists) params[d.name] = list;
    return { method, mergekitMethod: doc.merge_method, models: refs, base: null, params, outDtype, warnings, slices };
  }
  if (!Array.isArray(doc.models) || doc.models.length === 0)
    throw invalid('models must be a non-empty list', { key: 'models' });
  doc.models.forEach((entry: unknown, i: number) => {
    if (!isObject(entry)) throw invalid(`models[${i}] must be a mapping with a model key`, { key: 'models' });
    for (const k of Object.keys(entry))
      if (k !== 'model' && k !== 'parameters')
        throw unsupported(`key ${JSON.stringify(k)} in models[${i}]`, { key: k });
    const ref = modelRef(entry.model, `models[${i}].model`);
    const given = new Map<ParamDecl, unknown>();
    if (entry.parameters !== undefined && entry.parameters !== null) {
      if (!isObject(entry.parameters))
        throw invalid(`models[${i}].parameters must be a mapping`, { key: 'parameters' });
      for (const [k, v] of Object.entries(entry.parameters)) {
        const d = declFor(m, k);
        if (d?.scope !== 'per-model') {
          if (!d && anyMethodMaps(k, true))
            throw unsupported(`parameter ${JSON.stringify(k)} with ${doc.merge_method}`, { key: k });
          throw unsupported(`parameter ${JSON.stringify(k)} in models[${i}]`, { key: k });
        }
        given.set(d, declValue(d, v, `models[${i}].parameters.${k}`));
      }
    }
    if (base !== null && ref === base && baseInput === null) {
      // its task vector is zero; mergekit leaves the base out of the merge too
      warnings.push(`models[${i}] is the base model and is left out of the merge`);
      return;
    }
    addInput(
      ref,
      given,
      `models[${i}] (${ref})`,
      (key) => `give models[${i}].parameters.${key}, an entry without filter, or parameters.${key}`,
    );
  });
  if (extraInput !== null && !models.includes(extraInput)) {
    warnings.push(`base_model ${extraInput} is merged as one more input, as mergekit does for ${doc.merge_method}`);
    addInput(
      extraInput,
      new Map(),
      `base_model ${extraInput}`,
      (key) =>
        `${doc.merge_method} merges it as one more input: list it under models with a ${key}, or give parameters.${key}`,
    );
  }
  if (baseInput !== null && !models.includes(baseInput)) {
    warnings.push(`base_model ${baseInput} is not under models: merged as the first input, as mergekit does`);
    addInput(baseInput, new Map(), `base_model ${baseInput}`, (key) => `list it under models with a ${key}`);
  }
  if (baseInput !== null) {
    // the base goes first (t = 0)
    const at = models.indexOf(baseInput);
    models.unshift(...models.splice(at, 1));
    for (const list of lists.values()) list.unshift(...list.splice(at, 1));
  }
  if (models.length === 0) throw invalid('no models left to merge besides the base model', { key: 'models' });
  for (const [d, list] of lists) params[d.name] = list;
  return { method, mergekitMethod: doc.merge_method, models, base, params, outDtype, warnings };
}

/** The value mergekit assumes for a per-model parameter no entry gives. */
function mergekitDefault(d: ParamDecl): unknown {
  if (d.mergekit?.default !== undefined) return d.mergekit.default;
  return typeof d.default === 'function' ? undefined : d.default;
}
