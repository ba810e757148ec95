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

/** A parameter value: a number or mergekit's list of {filter, value} entries. */
function paramValue(v: unknown, where: string, min = -Infinity, max = Infinity, perTensor = true): PerTensor<number> {
  const num = (x: unknown, w: string): number => {
    if (typeof x !== 'number' || !Number.isFinite(x))
      throw invalid(`${w} must be a number, got ${JSON.stringify(x)}`, { key: w });
    if (x < min || x > max) throw invalid(`${w} must be within [${min}, ${max}], got ${x}`, { key: w });
    return x;
  };
  if (!Array.isArray(v)) return num(v, where);
  if (!perTensor) throw invalid(`${where} must be a number`, { key: where });
  if (v.length === 0) throw invalid(`${where} is an empty list`, { key: where });
  if (v.every((e) => typeof e === 'number'))
    throw unsupported(`${where}: a gradient (list of numbers)`, { key: where });
  return v.map((e, i): TensorRule<number> => {
    if (!isObject(e)) throw invalid(`${where}[${i}] must be {filter, value}`, { key: where });
    for (const k of Object.keys(e))
      if (k !== 'filter' && k !== 'value') throw unsupported(`key ${JSON.stringify(k)} in ${where}[${i}]`, { key: k });
    if (!('value' in e)) throw invalid(`${where}[${i}] has no value`, { key: where });
    const rule: TensorRule<number> = { value: num(e.value, `${where}[${i}].value`) };
    if (e.filter !== undefined && e.filter !== null) {
      if (typeof e.filter !== 'string' || e.filter === '')
        throw invalid(`${where}[${i}].filter must be a non-empty string`, { key: where });
      rule.filter = e.filter;
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

const TOP_KEYS = new Set(['merge_method', 'models', 'base_model', 'parameters', 'dtype']);

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
  rescale(v) {
    if (v !== true) throw unsupported('rescale: false (DARE always rescales survivors here)', { key: 'rescale' });
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
    case 'enum':
      if (typeof v !== 'string' || !d.choices?.includes(v))
        throw invalid(`${where} must be one of ${(d.choices ?? []).join(', ')}`, { key: d.mergekit?.key });
      return v;
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
  if (m.needsBase && base === null) throw invalid(`${doc.merge_method} needs base_model`, { key: 'base_model' });
  if (!m.needsBase && base !== null) {
    warnings.push(`base_model is ignored by ${method}`);
    base = null;
  }

  let outDtype: DType | null = null;
  if (doc.dtype !== undefined) {
    if (typeof doc.dtype !== 'string' || !DTYPE_MAP[doc.dtype])
      throw unsupported(`dtype ${JSON.stringify(doc.dtype)}`, { key: 'dtype' });
    outDtype = DTYPE_MAP[doc.dtype];
  }

  const params: MergeParams = {};
  // per-model parameters given under `parameters`: every model's default
  const modelDefaults = new Map<ParamDecl, unknown>();
  if (doc.parameters !== undefined && doc.parameters !== null) {
    if (!isObject(doc.parameters)) throw invalid('parameters must be a mapping', { key: 'parameters' });
    for (const [k, v] of Object.entries(doc.parameters)) {
      const d = declFor(m, k);
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

  if (!Array.isArray(doc.models) || doc.models.length === 0)
    throw invalid('models must be a non-empty list', { key: 'models' });
  const perModel = m.params.filter((d) => d.scope === 'per-model' && d.mergekit);
  const models: string[] = [];
  const lists = new Map<ParamDecl, unknown[]>(perModel.map((d) => [d, []]));
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
    if (base !== null && ref === base) {
      // its task vector is zero; mergekit leaves the base out of the merge too
      warnings.push(`models[${i}] is the base model and is left out of the merge`);
      return;
    }
    models.push(ref);
    for (const d of perModel) {
      const v = given.has(d) ? given.get(d) : modelDefaults.has(d) ? modelDefaults.get(d) : mergekitDefault(d);
      lists.get(d)?.push(v);
    }
  });
  if (models.length === 0) throw invalid('no models left to merge besides the base model', { key: 'models' });
  for (const [d, list] of lists) params[d.name] = list;
  return { method, mergekitMethod: doc.merge_method, models, base, params, outDtype, warnings };
}

/** The value mergekit assumes for a per-model parameter no entry gives. */
function mergekitDefault(d: ParamDecl): unknown {
  if (d.mergekit?.default !== undefined) return d.mergekit.default;
  return typeof d.default === 'function' ? undefined : d.default;
}
