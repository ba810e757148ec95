/** The merge methods, mergekit-style: one object per method, looked up by name. */
import { WgitError } from '../errors.js';
import { dareLinear, dareTies } from './dare.js';
import { linear } from './linear.js';
import { rmm } from './rmm-method.js';
import { taskArithmetic } from './task-arithmetic.js';
import { ties } from './ties.js';
import type { MergeMethod } from './types.js';

export const METHODS: readonly MergeMethod[] = [linear, taskArithmetic, ties, dareLinear, dareTies, rmm];

export function getMethod(name: string): MergeMethod {
  const m = METHODS.find((x) => x.name === name);
  if (!m) {
    throw new WgitError(
      'E_UNKNOWN_METHOD',
      `unknown merge method ${JSON.stringify(name)} (known: ${METHODS.map((x) => x.name).join(', ')})`,
      {
        method: name,
      },
    );
  }
  return m;
}
