/**
 * DELLA (Deep et al. 2024), mergekit's `della` and `della_linear`: MagPrune
 * drops each task-vector entry with a probability that falls with its
 * magnitude rank, then the survivors are rescaled and merged.
 *
 *   per row of τᵢ = θᵢ − θ₀ (a 2-D tensor's rows; anything else as one row of m entries):
 *   r = rank by |τ| ascending, 0 … m − 1 (equal magnitudes: the earlier index ranks higher)
 *   p = (density − ε) + 2ε·r/(m − 1)        keep probability (p = density − ε when m = 1)
 *   keep ⇔ u ≥ 1 − p, u the counter-based uniform of (seed, tensor, input, index) (device/rng.ts)
 *   rescale: 'inverse' × 1/p per entry (the paper), 'l1' keeps Σ|τ| per tensor (mergekit), 'none'
 *
 * Then TIES sign election and disjoint sum (della, normalized by default) or
 * the weighted sum (della_linear); θ = θ₀ + λ·τ. density ≥ 1 keeps a task
 * vector whole and density ≤ 0 drops it; otherwise density ± ε must lie in (0, 1).
 */
import { dareCut, dareHash, streamId } from '../device/rng.js';
import { WgitError } from '../errors.js';
import {
  defineMethod,
  densityParam,
  lambdaParam,
  linesParam,
  normalizeParam,
  seedParam,
  weightsParam,
} from './params.js';
import { combine, l1Norm, l1RescaleInPlace } from './sparse-consensus.js';
import type { MergeMethod, ParamDecl, SparseConsensusConfig, TensorParams } from './types.js';

const fr = Math.fround;

/** |x| for ranking; a NaN entry ranks below every number. */
function mag(x: number): number {
  return Number.isNaN(x) ? -1 : Math.abs(x);
}

function checkWindow(density: number, epsilon: number, tensor: string): void {
  if (!(density + epsilon < 1 && density - epsilon > 0))
    throw new WgitError(
      'E_BAD_PARAM',
      `della: density ± epsilon must lie in (0, 1), got density ${density} and epsilon ${epsilon}${tensor ? ` for ${tensor}` : ''}`,
      { param: 'epsilon', density, epsilon },
    );
}

/** Per entry of a row-major tensor: the keep probability of MagPrune. */
export function dellaProbabilities(tau: Float32Array, rows: number, density: number, epsilon: number): Float64Array {
  const p = new Float64Array(tau.length);
  const m = tau.length / rows;
  const idx = new Uint32Array(m);
  for (let r = 0; r < rows; r++) {
    const off = r * m;
    for (let j = 0; j < m; j++) idx[j] = j;
    // ascending by |τ|; equal magnitudes: the later index first, so the earlier ranks higher
    idx.sort((a, b) => mag(tau[off + a]) - mag(tau[off + b]) || b - a);
    for (let k = 0; k < m; k++) p[off + idx[k]] = density - epsilon + (m > 1 ? (2 * epsilon * k) / (m - 1) : 0);
  }
  return p;
}

/** MagPrune on one task vector, in place (rescale 'inverse' or none; 'l1' is applied by the caller). */
export function dellaInPlace(
  tau: Float32Array,
  rows: number,
  density: number,
  epsilon: number,
  seed: number,
  stream: number,
  inverse: boolean,
): void {
  if (density >= 1) return;
  if (density <= 0) {
    tau.fill(0);
    return;
  }
  const p = dellaProbabilities(tau, rows, density, epsilon);
  for (let j = 0; j < tau.length; j++) {
    if (dareHash(seed, stream, j) >>> 8 >= dareCut(1 - p[j])) {
      if (inverse) tau[j] = fr(tau[j] * fr(1 / p[j]));
    } else tau[j] = 0;
  }
}

function epsilonParam(): ParamDecl {
  return {
    name: 'epsilon',
    type: 'number',
    scope: 'per-model',
    broadcast: true,
    perTensor: true,
    min: 0,
    max: 1,
    default: 0.15,
    required: false,
    help: 'half-width of the keep probabilities around density (smallest |τ|: density − ε, largest: density + ε)',
    cli: { flag: 'epsilon', description: 'della: spread of the keep probabilities around density' },
    mergekit: { key: 'epsilon', default: 0.15 },
  };
}

function dellaRescaleParam(): ParamDecl {
  return {
    name: 'rescale',
    type: 'enum',
    scope: 'global',
    perTensor: false,
    choices: ['inverse', 'l1', 'none'],
    default: 'inverse',
    required: false,
    help: "survivors × 1/p ('inverse', the paper), scaled to keep each task vector's L1 norm ('l1', mergekit), or left ('none')",
    cli: {
      flag: 'rescale',
      description: 'rescale of the survivors (DARE/DELLA: inverse, l1, none; breadcrumbs: none, l1)',
    },
    // mergekit rescales by default, and its rescale is the L1 one
    mergekit: { key: 'rescale', default: 'l1', values: { true: 'l1', false: 'none' } },
  };
}

function makeDella(name: string, mergekitName: string, consensus: 'none' | 'sum'): MergeMethod {
  const config: SparseConsensusConfig = { sparsify: 'none', consensus, defaultNormalize: consensus === 'sum' };
  return defineMethod({
    name,
    description:
      consensus === 'sum'
        ? 'drops task-vector entries at random, small ones more often, then merges them with TIES sign election'
        : 'drops task-vector entries at random, small ones more often, then adds them as in task arithmetic',
    reference:
      'Deep et al. 2024, "DELLA-Merging: reducing interference in model merging through magnitude-based sampling"',
    params: [
      weightsParam(),
      lambdaParam(),
      densityParam({ help: 'mean keep probability' }),
      epsilonParam(),
      dellaRescaleParam(),
      seedParam({ help: 'seed of the drop masks' }),
      normalizeParam({ default: consensus === 'sum' }),
      linesParam(),
    ],
    needsBase: true,
    minInputs: 1,
    mergekitName,
    build(tp: TensorParams) {
      const eps = (tp.extra?.epsilon as number[] | undefined) ?? tp.weights.map(() => 0.15);
      const rescale = (tp.extra?.rescale as string | undefined) ?? 'inverse';
      return (inputs, base, ctx, out) => {
        if (!base) throw new WgitError('E_BASE_REQUIRED', `${name} needs a base model`, { method: name });
        const shape = ctx.shape;
        const rows = shape && shape.length === 2 && shape[0] > 0 ? shape[0] : 1;
        const taus = inputs.map((x, i) => {
          const t = new Float32Array(base.length);
          for (let j = 0; j < t.length; j++) t[j] = fr(x[j] - base[j]);
          const d = tp.density[i];
          if (d >= 1) return t;
          if (d > 0) checkWindow(d, eps[i], ctx.name);
          const before = rescale === 'l1' ? l1Norm(t) : 0;
          dellaInPlace(t, rows, d, eps[i], tp.seed, streamId(ctx.name, i), rescale === 'inverse');
          if (rescale === 'l1') l1RescaleInPlace(t, before);
          return t;
        });
        combine(config, taus, tp.weights, tp.normalize, out);
        const lambda = fr(tp.lambda);
        for (let j = 0; j < out.length; j++) out[j] = fr(base[j] + fr(lambda * out[j]));
      };
    },
  });
}

export const della = makeDella('della', 'della', 'sum');
export const dellaLinear = makeDella('della-linear', 'della_linear', 'none');
