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
import type { MergeParams, PerTensor, TensorRule } from './types.js';

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

const METHOD_MAP: Record<string, string> = {
  linear: 'linear',
  task_arithmetic: 'task-arithmetic',
  ties: 'ties',
  dare_linear: 'dare-linear',
  dare_ties: 'dare-ties',
};

const DTYPE_MAP: Record<string, DType> = { float32: 'F32', float16: 'F16', bfloat16: 'BF16' };

/** mergekit's default density when a config gives none (it keeps everything). */
export const MERGEKIT_DEFAULT_DENSITY = 1;

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
function paramValue(v: unknown, where: string, min = -Infinity, max = Infinity): PerTensor<number> {
  const num = (x: unknown, w: string): number => {
    if (typeof x !== 'number' || !Number.isFinite(x))
      throw invalid(`${w} must be a number, got ${JSON.stringify(x)}`, { key: w });
    if (x < min || x > max) throw invalid(`${w} must be within [${min}, ${max}], got ${x}`, { key: w });
    return x;
  };
  if (!Array.isArray(v)) return num(v, where);
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
const GLOBAL_PARAMS = new Set(['normalize', 'int8_mask', 'lambda', 'weight', 'density', 'rescale']);
const MODEL_PARAMS = new Set(['weight', 'density']);

export function normalizeMergekit(doc: unknown, source = 'config'): MergekitRecipe {
  if (!isObject(doc)) throw invalid(`${source} must be a mapping at the top level`, { source });
  for (const k of Object.keys(doc)) if (!TOP_KEYS.has(k)) throw unsupported(`key ${JSON.stringify(k)}`, { key: k });
  const warnings: string[] = [];
  if (typeof doc.merge_method !== 'string') throw invalid('merge_method is missing', { key: 'merge_method' });
  const method = METHOD_MAP[doc.merge_method];
  if (!method)
    throw unsupported(`merge_method ${JSON.stringify(doc.merge_method)}`, {
      key: 'merge_method',
      method: doc.merge_method,
    });
  const needsBase = method !== 'linear';

  let base: string | null = null;
  if (doc.base_model !== undefined && doc.base_model !== null) base = modelRef(doc.base_model, 'base_model');
  if (needsBase && base === null) throw invalid(`${doc.merge_method} needs base_model`, { key: 'base_model' });
  if (!needsBase && base !== null) {
    warnings.push('base_model is ignored by linear');
    base = null;
  }

  let outDtype: DType | null = null;
  if (doc.dtype !== undefined) {
    if (typeof doc.dtype !== 'string' || !DTYPE_MAP[doc.dtype])
      throw unsupported(`dtype ${JSON.stringify(doc.dtype)}`, { key: 'dtype' });
    outDtype = DTYPE_MAP[doc.dtype];
  }

  const params: MergeParams = {};
  let defaultWeight: PerTensor<number> = 1;
  let defaultDensity: PerTensor<number> = MERGEKIT_DEFAULT_DENSITY;
  let densityGiven = false;
  if (doc.parameters !== undefined && doc.parameters !== null) {
    if (!isObject(doc.parameters)) throw invalid('parameters must be a mapping', { key: 'parameters' });
    for (const [k, v] of Object.entries(doc.parameters)) {
      if (!GLOBAL_PARAMS.has(k)) throw unsupported(`parameter ${JSON.stringify(k)}`, { key: k });
      if (k === 'normalize') {
        if (typeof v !== 'boolean') throw invalid('parameters.normalize must be true or false', { key: k });
        params.normalize = v;
      } else if (k === 'int8_mask') {
        if (typeof v !== 'boolean') throw invalid('parameters.int8_mask must be true or false', { key: k });
        warnings.push(
          "int8_mask ignored: wgit keeps its masks in memory per tensor, so mergekit's memory saving does not apply",
        );
      } else if (k === 'rescale') {
        if (v !== true) throw unsupported('rescale: false (DARE always rescales survivors here)', { key: k });
      } else if (k === 'lambda') {
        params.lambda = paramValue(v, 'parameters.lambda');
      } else if (k === 'weight') {
        defaultWeight = paramValue(v, 'parameters.weight');
      } else if (k === 'density') {
        defaultDensity = paramValue(v, 'parameters.density', 0, 1);
        densityGiven = true;
      }
    }
  }
  if (method === 'linear' && params.lambda !== undefined)
    throw unsupported('parameter "lambda" with linear', { key: 'lambda' });

  if (!Array.isArray(doc.models) || doc.models.length === 0)
    throw invalid('models must be a non-empty list', { key: 'models' });
  const models: string[] = [];
  const weights: PerTensor<number>[] = [];
  const density: PerTensor<number>[] = [];
  doc.models.forEach((entry: unknown, i: number) => {
    if (!isObject(entry)) throw invalid(`models[${i}] must be a mapping with a model key`, { key: 'models' });
    for (const k of Object.keys(entry))
      if (k !== 'model' && k !== 'parameters')
        throw unsupported(`key ${JSON.stringify(k)} in models[${i}]`, { key: k });
    const ref = modelRef(entry.model, `models[${i}].model`);
    let w = defaultWeight;
    let d = defaultDensity;
    if (entry.parameters !== undefined && entry.parameters !== null) {
      if (!isObject(entry.parameters))
        throw invalid(`models[${i}].parameters must be a mapping`, { key: 'parameters' });
      for (const [k, v] of Object.entries(entry.parameters)) {
        if (!MODEL_PARAMS.has(k)) throw unsupported(`parameter ${JSON.stringify(k)} in models[${i}]`, { key: k });
        if (k === 'weight') w = paramValue(v, `models[${i}].parameters.weight`);
        else {
          d = paramValue(v, `models[${i}].parameters.density`, 0, 1);
          densityGiven = true;
        }
      }
    }
    if (base !== null && ref === base) {
      // its task vector is zero; mergekit leaves the base out of the merge too
      warnings.push(`models[${i}] is the base model and is left out of the merge`);
      return;
    }
    models.push(ref);
    weights.push(w);
    density.push(d);
  });
  if (models.length === 0) throw invalid('no models left to merge besides the base model', { key: 'models' });
  params.weights = weights;
  const sparsifies = method === 'ties' || method === 'dare-ties' || method === 'dare-linear';
  if (sparsifies) params.density = density;
  else if (densityGiven) throw unsupported(`parameter "density" with ${doc.merge_method}`, { key: 'density' });
  if (method === 'linear' && params.normalize === undefined) params.normalize = true;
  return { method, mergekitMethod: doc.merge_method, models, base, params, outDtype, warnings };
}
