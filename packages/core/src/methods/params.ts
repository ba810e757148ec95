import { WgitError } from '../errors.js';
import type { MergeParams, PerTensor, ResolvedParams, TensorParams, TensorRule } from './types.js';

export const DEFAULT_DENSITY = 0.2;

function bad(message: string, data: Record<string, unknown> = {}): WgitError {
  return new WgitError('E_BAD_PARAM', message, data);
}

function checkNumber(v: unknown, what: string, min = -Infinity, max = Infinity): number {
  if (typeof v !== 'number' || !Number.isFinite(v))
    throw bad(`${what} must be a finite number, got ${JSON.stringify(v)}`, { param: what });
  if (v < min || v > max) throw bad(`${what} must be within [${min}, ${max}], got ${v}`, { param: what });
  return v;
}

/** Validates a per-tensor value (a number, or a list of {filter, value} rules). */
export function checkPerTensor(v: unknown, what: string, min = -Infinity, max = Infinity): PerTensor<number> {
  if (!Array.isArray(v)) return checkNumber(v, what, min, max);
  if (v.length === 0) throw bad(`${what}: an empty rule list`, { param: what });
  return v.map((r, i) => {
    if (typeof r !== 'object' || r === null) throw bad(`${what}[${i}] must be {filter, value}`, { param: what });
    const rule = r as Record<string, unknown>;
    for (const k of Object.keys(rule))
      if (k !== 'filter' && k !== 'value') throw bad(`${what}[${i}]: unknown key ${k}`, { param: what });
    if (rule.filter !== undefined && (typeof rule.filter !== 'string' || rule.filter === ''))
      throw bad(`${what}[${i}].filter must be a non-empty string`, { param: what });
    const out: TensorRule<number> = { value: checkNumber(rule.value, `${what}[${i}].value`, min, max) };
    if (rule.filter !== undefined) out.filter = rule.filter as string;
    return out;
  });
}

/**
 * The value of a per-tensor parameter for one tensor: mergekit's rule — the
 * first rule whose filter is a substring of the name, or the first without a
 * filter; `fallback` when none matches.
 */
export function valueFor(v: PerTensor<number>, name: string, fallback: number): number {
  if (!Array.isArray(v)) return v;
  for (const r of v) if (r.filter === undefined || name.includes(r.filter)) return r.value;
  return fallback;
}

const KNOWN = new Set(['weights', 'lambda', 'density', 'drop', 'seed', 'trim', 'normalize', 'rank', 'lines']);

/** Shared validation for every method; `defaultNormalize` differs per method (as in mergekit). */
export function resolveCommon(p: MergeParams, nInputs: number, defaultNormalize: boolean): ResolvedParams {
  if (typeof p !== 'object' || p === null) throw bad('merge parameters must be an object');
  for (const k of Object.keys(p)) {
    if (!KNOWN.has(k)) throw bad(`unknown merge parameter ${k}`, { param: k });
  }
  let weights: PerTensor<number>[];
  if (p.weights === undefined) weights = Array.from({ length: nInputs }, () => 1);
  else {
    if (!Array.isArray(p.weights)) throw bad('weights must be a list, one per input model', { param: 'weights' });
    if (p.weights.length !== nInputs)
      throw bad(`weights: ${p.weights.length} given for ${nInputs} input models`, {
        param: 'weights',
        given: p.weights.length,
        inputs: nInputs,
      });
    weights = p.weights.map((w, i) => checkPerTensor(w, `weights[${i}]`));
  }
  const lambda = p.lambda === undefined ? 1 : checkPerTensor(p.lambda, 'lambda');
  if (p.density !== undefined && p.drop !== undefined) throw bad('give density or drop, not both', { param: 'drop' });
  let density: PerTensor<number>[];
  if (p.drop !== undefined) {
    const drop = checkNumber(p.drop, 'drop', 0, 1);
    if (drop >= 1) throw bad('drop must be below 1 (nothing would survive)', { param: 'drop' });
    density = Array.from({ length: nInputs }, () => 1 - drop);
  } else if (p.density === undefined) {
    density = Array.from({ length: nInputs }, () => DEFAULT_DENSITY);
  } else if (Array.isArray(p.density) && p.density.length > 0 && !isRuleObject(p.density[0])) {
    // a list of per-input values (each may itself be a rule list)
    if (p.density.length !== nInputs)
      throw bad(`density: ${p.density.length} values given for ${nInputs} input models`, { param: 'density' });
    density = (p.density as unknown[]).map((d, i) => checkPerTensor(d, `density[${i}]`, 0, 1));
  } else {
    const d = checkPerTensor(p.density, 'density', 0, 1);
    density = Array.from({ length: nInputs }, () => d);
  }
  let seed = 0;
  if (p.seed !== undefined) {
    if (!Number.isInteger(p.seed) || (p.seed as number) < 0 || (p.seed as number) > 0xffffffff)
      throw bad(`seed must be an integer in [0, 2^32), got ${JSON.stringify(p.seed)}`, { param: 'seed' });
    seed = p.seed as number;
  }
  const trim = p.trim ?? 'tensor';
  if (trim !== 'tensor' && trim !== 'model')
    throw bad(`trim must be 'tensor' or 'model', got ${JSON.stringify(trim)}`, { param: 'trim' });
  if (trim === 'model' && density.some((d) => Array.isArray(d)))
    throw bad('per-tensor density rules cannot be combined with model-wide trimming', { param: 'trim' });
  let normalize = defaultNormalize;
  if (p.normalize !== undefined) {
    if (typeof p.normalize !== 'boolean') throw bad('normalize must be true or false', { param: 'normalize' });
    normalize = p.normalize;
  }
  let rank = nInputs;
  if (p.rank !== undefined) {
    if (!Number.isInteger(p.rank) || (p.rank as number) < 1 || (p.rank as number) > nInputs)
      throw bad(`rank must be an integer in [1, ${nInputs}], got ${JSON.stringify(p.rank)}`, { param: 'rank' });
    rank = p.rank as number;
  }
  let lines: { beta: number } | null = null;
  if (p.lines !== undefined && p.lines !== null) {
    if (typeof p.lines !== 'object') throw bad('lines must be {beta}', { param: 'lines' });
    for (const k of Object.keys(p.lines)) if (k !== 'beta') throw bad(`lines: unknown key ${k}`, { param: 'lines' });
    lines = { beta: checkNumber(p.lines.beta, 'lines.beta') };
  }
  return { weights, lambda, density, seed, trim, normalize, rank, lines };
}

function isRuleObject(x: unknown): boolean {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/** The numbers for one tensor. */
export function tensorParams(r: ResolvedParams, name: string): TensorParams {
  return {
    weights: r.weights.map((w) => valueFor(w, name, 1)),
    lambda: valueFor(r.lambda, name, 1),
    density: r.density.map((d) => valueFor(d, name, DEFAULT_DENSITY)),
    seed: r.seed,
    normalize: r.normalize,
  };
}
