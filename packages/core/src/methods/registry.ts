/**
 * The merge methods, mergekit-style: one object per method, looked up by name.
 * Adding a method is its file (code plus its declared parameters, made with
 * defineMethod) and one line here; validation, the recipe, the mergekit YAML
 * mapping and the `wgit merge` flags follow from the declaration.
 */
import { WgitError } from '../errors.js';
import { breadcrumbs, breadcrumbsTies } from './breadcrumbs.js';
import { dareLinear, dareTies } from './dare.js';
import { della, dellaLinear } from './della.js';
import { karcher } from './karcher.js';
import { linear } from './linear.js';
import { modelStock } from './model-stock.js';
import { nuslerp } from './nuslerp.js';
import { passthrough } from './passthrough.js';
import { rmm } from './rmm.js';
import { sce } from './sce.js';
import { slerp } from './slerp.js';
import { taskArithmetic } from './task-arithmetic.js';
import { ties } from './ties.js';
import type { MergeMethod } from './types.js';

const registered: MergeMethod[] = [
  linear,
  taskArithmetic,
  ties,
  dareLinear,
  dareTies,
  rmm,
  slerp,
  nuslerp,
  modelStock,
  passthrough,
  breadcrumbs,
  breadcrumbsTies,
  della,
  dellaLinear,
  sce,
  karcher,
];

export const METHODS: readonly MergeMethod[] = registered;

export function getMethod(name: string): MergeMethod {
  const m = registered.find((x) => x.name === name);
  if (!m) {
    throw new WgitError(
      'E_UNKNOWN_METHOD',
      `unknown merge method ${JSON.stringify(name)} (known: ${registered.map((x) => x.name).join(', ')})`,
      {
        method: name,
      },
    );
  }
  return m;
}

/**
 * Adds a method at run time (an embedding program, a test) and returns the
 * function that removes it again. The CLI's flags are built from the methods
 * registered when it loads.
 */
export function registerMethod(m: MergeMethod): () => void {
  if (registered.some((x) => x.name === m.name)) throw new Error(`merge method ${m.name} is registered already`);
  registered.push(m);
  return () => {
    const i = registered.indexOf(m);
    if (i >= 0) registered.splice(i, 1);
  };
}
