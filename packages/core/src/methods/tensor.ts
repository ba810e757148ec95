import { WgitError } from '../errors.js';
import { tensorParams } from './params.js';
import { getMethod } from './registry.js';
import type { MergeParams, TensorContext } from './types.js';

/**
 * One tensor through a registry method, in plain TypeScript: the reference
 * the engine's fast paths (and a GPU path) are checked against.
 */
export function mergeTensor(
  method: string,
  params: MergeParams,
  inputs: Float32Array[],
  base?: Float32Array,
  ctx: TensorContext = { name: 'tensor' },
): Float32Array {
  const m = getMethod(method);
  if (m.needsBase && !base) throw new WgitError('E_BASE_REQUIRED', `${m.name} needs a base tensor`, { method: m.name });
  const len = inputs[0]?.length ?? 0;
  for (const x of [...inputs, ...(base ? [base] : [])]) {
    if (x.length !== len)
      throw new WgitError('E_SHAPE_MISMATCH', `${ctx.name}: inputs differ in length`, { tensor: ctx.name });
  }
  const resolved = m.resolve(params, inputs.length);
  const out = new Float32Array(len);
  m.build(tensorParams(resolved, ctx.name, ctx.layers ?? 0))(
    inputs,
    m.needsBase || m.optionalBase ? base : undefined,
    ctx,
    out,
  );
  return out;
}
