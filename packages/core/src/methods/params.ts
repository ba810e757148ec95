/**
 * Merge parameters, declared per method (see ParamDecl in types.ts).
 *
 * A method lists the parameters it takes next to its code, mostly with the
 * shared declarations below (weights, lambda, density …), and is made with
 * defineMethod. Everything else derives from those lists: validation and
 * defaults here, the recorded recipe (the resolved object), the mergekit YAML
 * mapping (mergekit.ts) and the `wgit merge` flags (the CLI's merge command).
 */
import { WgitError } from '../errors.js';
import { blockIndex } from './lines.js';
import type {
  Gradient,
  MergeMethod,
  MergeParams,
  ParamDecl,
  PerTensor,
  ResolvedParams,
  TensorParams,
  TensorRule,
} from './types.js';

export const DEFAULT_DENSITY = 0.2;

/** mergekit's default density when a config gives none (it keeps everything). */
export const MERGEKIT_DEFAULT_DENSITY = 1;

function bad(message: string, data: Record<string, unknown> = {}): WgitError {
  return new WgitError('E_BAD_PARAM', message, data);
}

function checkNumber(v: unknown, what: string, min = -Infinity, max = Infinity, maxExclusive = false): number {
  if (typeof v !== 'number' || !Number.isFinite(v))
    throw bad(`${what} must be a finite number, got ${JSON.stringify(v)}`, { param: what });
  if (v < min || v > max || (maxExclusive && v >= max))
    throw bad(`${what} must be within [${min}, ${max}${maxExclusive ? ')' : ']'}, got ${v}`, { param: what });
  return v;
}

/** A list of numbers: a gradient (mergekit's anchors), as opposed to a list of {filter, value} rules. */
export function isGradient(v: unknown): v is Gradient {
  return Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === 'number');
}

/** A list of {filter, value} rules. */
export function isRuleList(v: unknown): v is TensorRule<number>[] {
  return Array.isArray(v) && v.length > 0 && isRuleObject(v[0]);
}

function checkScalarOrGradient(
  v: unknown,
  what: string,
  min: number,
  max: number,
  maxExclusive: boolean,
): number | Gradient {
  if (!Array.isArray(v)) return checkNumber(v, what, min, max, maxExclusive);
  if (!isGradient(v)) throw bad(`${what} must be a number or a gradient (a list of numbers)`, { param: what });
  return v.map((x, i) => checkNumber(x, `${what}[${i}]`, min, max, maxExclusive));
}

/**
 * Validates a per-tensor value: a number, a gradient (a list of numbers), or
 * a list of {filter, value} rules whose values are numbers or gradients.
 */
export function checkPerTensor(
  v: unknown,
  what: string,
  min = -Infinity,
  max = Infinity,
  maxExclusive = false,
): PerTensor<number> {
  if (!Array.isArray(v) || isGradient(v)) return checkScalarOrGradient(v, what, min, max, maxExclusive);
  if (v.length === 0) throw bad(`${what}: an empty rule list`, { param: what });
  return v.map((r, i) => {
    if (typeof r !== 'object' || r === null || Array.isArray(r))
      throw bad(`${what}[${i}] must be {filter, value}`, { param: what });
    const rule = r as Record<string, unknown>;
    for (const k of Object.keys(rule))
      if (k !== 'filter' && k !== 'value') throw bad(`${what}[${i}]: unknown key ${k}`, { param: what });
    if (rule.filter !== undefined && (typeof rule.filter !== 'string' || rule.filter === ''))
      throw bad(`${what}[${i}].filter must be a non-empty string`, { param: what });
    const out: TensorRule<number> = {
      value: checkScalarOrGradient(rule.value, `${what}[${i}].value`, min, max, maxExclusive),
    };
    if (rule.filter !== undefined) out.filter = rule.filter as string;
    return out;
  });
}

/**
 * A gradient's value at t ∈ [0, 1], as mergekit evaluates it: the anchors
 * sit at k/(n−1); between two, linear interpolation (1 − f)·a + f·b in f64.
 */
export function gradientAt(g: readonly number[], t: number): number {
  if (g.length === 1) return g[0];
  const scaled = t * (g.length - 1);
  const i0 = Math.min(g.length - 1, Math.max(0, Math.floor(scaled)));
  const i1 = Math.min(g.length - 1, i0 + 1);
  const frac = scaled - i0;
  return (1 - frac) * g[i0] + frac * g[i1];
}

/**
 * Where a tensor sits for gradients, t ∈ [0, 1]: layer i of `layers` gets
 * i/(layers − 1), the only layer of a one-layer model 1, a tensor outside the
 * layers (embeddings, final norm, head) 0 — mergekit's rule.
 */
export function gradientPosition(name: string, layers: number): number {
  const b = blockIndex(name);
  if (b === null || layers <= 0) return 0;
  return layers > 1 ? b / (layers - 1) : 1;
}

/** Whether a rule's filter matches a tensor name: a substring, or `"*"` / no filter for every tensor. */
export function filterMatches(filter: string | undefined, name: string): boolean {
  return filter === undefined || filter === '*' || name.includes(filter);
}

/**
 * The value of a per-tensor parameter for one tensor at gradient position
 * `t`: mergekit's rule — the first rule whose filter is a substring of the
 * name (or `"*"`, or none); a gradient is interpolated at t; `fallback` when
 * no rule matches.
 */
export function valueFor(v: PerTensor<number>, name: string, fallback: number, t = 0): number {
  if (typeof v === 'number') return v;
  if (isGradient(v)) return gradientAt(v, t);
  for (const r of v as TensorRule<number>[]) {
    if (!filterMatches(r.filter, name)) continue;
    return typeof r.value === 'number' ? r.value : gradientAt(r.value, t);
  }
  return fallback;
}

// ---------------------------------------------------------------------------
// Shared declarations. A method takes them as they are or with its own
// default and help; a parameter only one method has is declared in its file.

type Overrides = Partial<ParamDecl>;

export function weightsParam(o: Overrides = {}): ParamDecl {
  return {
    name: 'weights',
    type: 'number',
    scope: 'per-model',
    perTensor: true,
    default: 1,
    required: false,
    help: 'per input model; default 1 each',
    cli: { flag: 'weights', description: 'one weight per input, comma separated (or the flag repeated)' },
    mergekit: { key: 'weight', default: 1 },
    ...o,
  };
}

export function lambdaParam(o: Overrides = {}): ParamDecl {
  return {
    name: 'lambda',
    type: 'number',
    scope: 'global',
    perTensor: true,
    default: 1,
    required: false,
    help: 'scale of the merged task vector',
    cli: { flag: 'lambda', description: 'scale of the merged task vector' },
    mergekit: { key: 'lambda' },
    ...o,
  };
}

export function densityParam(o: Overrides = {}): ParamDecl {
  return {
    name: 'density',
    type: 'number',
    scope: 'per-model',
    broadcast: true,
    perTensor: true,
    min: 0,
    max: 1,
    default: DEFAULT_DENSITY,
    required: false,
    help: 'fraction of each task vector kept',
    cli: { flag: 'density', description: 'TIES/DARE: fraction of each task vector kept (one value, or one per input)' },
    mergekit: { key: 'density', default: MERGEKIT_DEFAULT_DENSITY },
    ...o,
  };
}

export function dropParam(o: Overrides = {}): ParamDecl {
  return {
    name: 'drop',
    type: 'number',
    scope: 'global',
    perTensor: false,
    min: 0,
    max: 1,
    maxExclusive: true,
    default: null,
    required: false,
    help: 'drop probability (1 − density)',
    alternativeTo: { name: 'density', convert: (v) => 1 - v },
    cli: { flag: 'drop', description: 'DARE: drop probability (1 − density)' },
    ...o,
  };
}

export function seedParam(o: Overrides = {}): ParamDecl {
  return {
    name: 'seed',
    type: 'integer',
    scope: 'global',
    perTensor: false,
    min: 0,
    max: 0xffffffff,
    default: 0,
    required: false,
    help: 'seed of every random choice; recorded in the recipe',
    cli: { flag: 'seed', description: 'seed of every random choice (DARE), an integer' },
    ...o,
  };
}

export function trimParam(o: Overrides = {}): ParamDecl {
  return {
    name: 'trim',
    type: 'enum',
    scope: 'global',
    perTensor: false,
    choices: ['tensor', 'model'],
    default: 'tensor',
    required: false,
    help: 'top-k per tensor (mergekit) or over the whole model (paper; one extra pass)',
    check: (r) => {
      if (r.trim === 'model' && r.density.some((d) => Array.isArray(d)))
        throw bad('per-tensor density (rules or gradients) cannot be combined with model-wide trimming', {
          param: 'trim',
        });
    },
    cli: { flag: 'trim', description: 'TIES trimming scope' },
    ...o,
  };
}

/**
 * DARE's rescale of the survivors: 'inverse' multiplies them by 1/(1−p) (the
 * paper; the default, so recipes recorded before this parameter existed give
 * the same bytes), 'l1' scales each tensor's task vector so its L1 norm is
 * that of the undropped one (mergekit's rescale).
 */
export function rescaleParam(o: Overrides = {}): ParamDecl {
  return {
    name: 'rescale',
    type: 'enum',
    scope: 'global',
    perTensor: false,
    choices: ['inverse', 'l1'],
    default: 'inverse',
    required: false,
    help: "DARE survivors × 1/(1−p) ('inverse') or scaled to keep each task vector's L1 norm per tensor ('l1')",
    cli: { flag: 'rescale', description: 'DARE rescale: inverse (× 1/(1−p)) or l1 (keep Σ|τ| per tensor)' },
    // mergekit's `rescale: true` is the L1 rescale on its main branch; `false` (no rescale) is refused
    mergekit: { key: 'rescale', values: { true: 'l1' } },
    ...o,
  };
}

export function normalizeParam(o: Overrides = {}): ParamDecl {
  return {
    name: 'normalize',
    type: 'boolean',
    scope: 'global',
    perTensor: false,
    default: false,
    required: false,
    help: 'divide by the sum of the weights that took part',
    cli: { flag: 'normalize', description: 'divide by the sum of the weights' },
    mergekit: { key: 'normalize' },
    ...o,
  };
}

export function rankParam(o: Overrides = {}): ParamDecl {
  return {
    name: 'rank',
    type: 'integer',
    scope: 'global',
    perTensor: false,
    min: 1,
    max: 'inputs',
    default: (n: number) => n,
    required: false,
    help: 'basis tensors kept per tensor, 1..n (n = exact recovery)',
    cli: { flag: 'rank', description: 'rmm: basis tensors kept per tensor (default: all = exact)' },
    ...o,
  };
}

export function linesParam(o: Overrides = {}): ParamDecl {
  return {
    name: 'lines',
    type: 'object',
    scope: 'global',
    perTensor: false,
    fields: { beta: { default: 1, help: 'LiNeS β', cli: { description: 'LiNeS β (with --lines)' } } },
    default: null,
    required: false,
    help: 'LiNeS post-step {beta}',
    cli: { flag: 'lines', description: 'apply LiNeS depth scaling to the merged task vector' },
    ...o,
  };
}

// ---------------------------------------------------------------------------
// Resolution.

/**
 * The values the engine works with when a method does not take a parameter:
 * each one leaves the computation as if the parameter did not exist. They
 * keep the recorded recipe one shape for every method.
 */
function neutral(n: number): ResolvedParams {
  return {
    weights: Array.from({ length: n }, () => 1),
    lambda: 1,
    density: Array.from({ length: n }, () => 1),
    seed: 0,
    trim: 'tensor',
    normalize: false,
    rank: n,
    lines: null,
  };
}

const FIXED = new Set(Object.keys(neutral(0)));

/** Parameter name → the methods that declare it (filled by defineMethod). */
const owners = new Map<string, Set<string>>();

/** Names declared with scope 'per-model' (their resolved value is a list, one per input). */
const perModelNames = new Set<string>();

/** The methods (made with defineMethod) that declare a parameter of this name. */
export function paramOwners(name: string): string[] {
  return [...(owners.get(name) ?? [])].sort();
}

function defaultOf(d: ParamDecl, n: number): unknown {
  const v = typeof d.default === 'function' ? d.default(n) : d.default;
  if (d.scope === 'per-model' && typeof d.default !== 'function') return Array.from({ length: n }, () => v);
  return v;
}

function isRuleObject(x: unknown): boolean {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function checkOne(d: ParamDecl, v: unknown, what: string, n: number): unknown {
  const max = d.max === 'inputs' ? n : (d.max ?? Infinity);
  const min = d.min ?? -Infinity;
  switch (d.type) {
    case 'number':
      if (d.perTensor) return checkPerTensor(v, what, min, max, d.maxExclusive);
      return checkNumber(v, what, min, max, d.maxExclusive);
    case 'integer':
      if (!Number.isInteger(v) || (v as number) < min || (v as number) > max || (d.maxExclusive && v === max))
        throw bad(
          `${what} must be an integer in [${min}, ${max}${d.maxExclusive ? ')' : ']'}, got ${JSON.stringify(v)}`,
          {
            param: d.name,
          },
        );
      return v;
    case 'boolean':
      if (typeof v !== 'boolean') throw bad(`${what} must be true or false`, { param: d.name });
      return v;
    case 'enum':
      if (typeof v !== 'string' || !d.choices?.includes(v))
        throw bad(`${what} must be ${(d.choices ?? []).map((c) => `'${c}'`).join(' or ')}, got ${JSON.stringify(v)}`, {
          param: d.name,
        });
      return v;
    case 'object': {
      if (v === null) return null;
      const fields = d.fields ?? {};
      if (!isRuleObject(v)) throw bad(`${what} must be {${Object.keys(fields).join(', ')}}`, { param: d.name });
      const o = v as Record<string, unknown>;
      for (const k of Object.keys(o)) if (!(k in fields)) throw bad(`${what}: unknown key ${k}`, { param: d.name });
      const out: Record<string, number> = {};
      for (const [k, f] of Object.entries(fields))
        out[k] = o[k] === undefined ? f.default : checkNumber(o[k], `${what}.${k}`);
      return out;
    }
  }
}

function checkValue(d: ParamDecl, v: unknown, n: number): unknown {
  if (d.scope === 'global') return checkOne(d, v, d.name, n);
  // per model: a list with one value per input; with broadcast, one value (or one rule list) for all
  const perInput = Array.isArray(v) && v.length > 0 && !isRuleObject(v[0]);
  if (!perInput) {
    if (!d.broadcast) throw bad(`${d.name} must be a list, one per input model`, { param: d.name });
    const one = checkOne(d, v, d.name, n);
    return Array.from({ length: n }, () => one);
  }
  const list = v as unknown[];
  if (list.length !== n)
    throw bad(`${d.name}: ${list.length} given for ${n} input models`, {
      param: d.name,
      given: list.length,
      inputs: n,
    });
  return list.map((x, i) => checkOne(d, x, `${d.name}[${i}]`, n));
}

/** A rule list of a parameter outside the fixed set gets its default as the last rule, so every tensor has a value. */
function withFallback(d: ParamDecl, v: unknown, n: number): unknown {
  const def = defaultOf(d, n);
  const close = (x: unknown, dv: unknown) =>
    isRuleList(x) && typeof dv === 'number' && !x.some((r) => r.filter === undefined || r.filter === '*')
      ? [...x, { value: dv }]
      : x;
  if (d.scope === 'per-model' && Array.isArray(v) && Array.isArray(def) && !isRuleObject(v[0]))
    return v.map((x, i) => close(x, def[i]));
  return close(v, def);
}

/**
 * Validates a method's parameters against its declarations and fills in
 * defaults. A parameter the method does not declare is refused, naming the
 * methods that do take it.
 */
export function resolveParams(method: Pick<MergeMethod, 'name' | 'params'>, p: MergeParams, n: number): ResolvedParams {
  if (typeof p !== 'object' || p === null || Array.isArray(p)) throw bad('merge parameters must be an object');
  const decls = new Map(method.params.map((d) => [d.name, d]));
  for (const [k, v] of Object.entries(p)) {
    if (v === undefined || decls.has(k)) continue;
    if (v === null && FIXED.has(k)) continue;
    const others = paramOwners(k).filter((m) => m !== method.name);
    if (others.length === 0) throw bad(`unknown merge parameter ${k}`, { param: k, method: method.name });
    throw bad(`${method.name} takes no ${k} (${others.join(', ')} ${others.length === 1 ? 'takes' : 'take'} it)`, {
      param: k,
      method: method.name,
    });
  }
  const r = neutral(n);
  const out = r as Record<string, unknown>;
  // second spellings last, so that they replace the default of what they stand for
  const order = [...method.params].sort((a, b) => Number(!!a.alternativeTo) - Number(!!b.alternativeTo));
  for (const d of order) {
    const given = p[d.name];
    if (d.alternativeTo) {
      if (given === undefined) continue;
      if (p[d.alternativeTo.name] !== undefined)
        throw bad(`give ${d.alternativeTo.name} or ${d.name}, not both`, { param: d.name });
      const v = d.alternativeTo.convert(checkValue(d, given, n) as number);
      const target = decls.get(d.alternativeTo.name);
      out[d.alternativeTo.name] = target?.scope === 'per-model' ? Array.from({ length: n }, () => v) : v;
      continue;
    }
    if (given === undefined) {
      if (d.required) throw bad(`${method.name} needs ${d.name}`, { param: d.name, method: method.name });
      out[d.name] = defaultOf(d, n);
    } else {
      const v = checkValue(d, given, n);
      out[d.name] = FIXED.has(d.name) ? v : withFallback(d, v, n);
    }
  }
  for (const d of method.params) d.check?.(r);
  return r;
}

export interface MethodSpec extends Omit<MergeMethod, 'resolve'> {
  /** Checks on the number of inputs beyond minInputs; throws E_BAD_PARAM. */
  checkInputs?: (nInputs: number) => void;
}

/**
 * Makes a registry method from its declaration: `resolve` validates against
 * `params`. Every parameter name a method declares becomes known, so other
 * methods refuse it by name.
 */
export function defineMethod(spec: MethodSpec): MergeMethod {
  const names = new Set<string>();
  for (const d of spec.params) {
    if (names.has(d.name)) throw new Error(`${spec.name}: parameter ${d.name} declared twice`);
    names.add(d.name);
    const s = owners.get(d.name) ?? new Set<string>();
    s.add(spec.name);
    owners.set(d.name, s);
    if (d.scope === 'per-model') perModelNames.add(d.name);
  }
  const { checkInputs, ...rest } = spec;
  const method: MergeMethod = {
    ...rest,
    resolve(p: MergeParams, nInputs: number) {
      checkInputs?.(nInputs);
      return resolveParams(method, p, nInputs);
    },
  };
  return method;
}

/** A per-tensor value (number, gradient, rule list) for one tensor; anything else as it is. */
function tensorValue(v: unknown, name: string, t: number): unknown {
  if (isGradient(v) || isRuleList(v)) return valueFor(v as PerTensor<number>, name, Number.NaN, t);
  return v;
}

/**
 * The numbers for one tensor. `layers` is the number of layers the model's
 * tensors are spread over (gradients are interpolated by layer); 0 evaluates
 * every gradient at its first anchor; `t` overrides the position (slices).
 */
export function tensorParams(
  r: ResolvedParams,
  name: string,
  layers = 0,
  t = gradientPosition(name, layers),
): TensorParams {
  const tp: TensorParams = {
    weights: r.weights.map((w) => valueFor(w, name, 1, t)),
    lambda: valueFor(r.lambda, name, 1, t),
    density: r.density.map((d) => valueFor(d, name, DEFAULT_DENSITY, t)),
    seed: r.seed,
    normalize: r.normalize,
  };
  for (const [k, v] of Object.entries(r)) {
    if (FIXED.has(k)) continue;
    tp.extra ??= {};
    tp.extra[k] =
      perModelNames.has(k) && Array.isArray(v) ? v.map((x) => tensorValue(x, name, t)) : tensorValue(v, name, t);
  }
  return tp;
}
