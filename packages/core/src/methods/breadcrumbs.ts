/**
 * Model Breadcrumbs (Davari & Belilovsky 2023), mergekit's `breadcrumbs` and
 * `breadcrumbs_ties`: each task vector τᵢ = θᵢ − θ₀ loses its largest
 * entries (the outliers, a `gamma` fraction) and its smallest, keeping
 * k = ⌊density·N⌋ entries, as mergekit's magnitude_outliers does:
 *
 *   n_top = ⌊gamma·N⌋, n_bot = N − k − n_top (if negative: n_top += n_bot, n_bot = 0)
 *   ranked by |τ| descending (equal magnitudes: the earlier index ranks higher),
 *   the entries at ranks [n_top, n_top + k) are kept, every other one is zeroed.
 *
 * Then the weighted sum (breadcrumbs) or TIES sign election and disjoint sum
 * (breadcrumbs_ties), θ = θ₀ + λ·τ. density ≥ 1 leaves a task vector whole.
 */
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

/**
 * The indices of `x[from, from + len)` (relative to `from`) by |x| descending;
 * equal magnitudes keep index order (the earlier ranks higher).
 */
export function descendingOrder(x: Float32Array, from = 0, len = x.length - from): Uint32Array {
  const idx = new Uint32Array(len);
  for (let j = 0; j < len; j++) idx[j] = j;
  idx.sort((a, b) => mag(x[from + b]) - mag(x[from + a]) || a - b);
  return idx;
}

/** The ranks [lo, hi) that magnitude_outliers keeps for N entries. */
export function breadcrumbsRange(n: number, density: number, gamma: number): [number, number] {
  const k = Math.floor(density * n);
  let top = Math.floor(gamma * n);
  const bot = n - k - top;
  if (bot < 0) top += bot;
  return [top, top + k];
}

/** Breadcrumbs on one task vector, in place. */
export function breadcrumbsInPlace(tau: Float32Array, density: number, gamma: number): void {
  if (density >= 1) return;
  const [lo, hi] = breadcrumbsRange(tau.length, density, gamma);
  const order = descendingOrder(tau);
  for (let r = 0; r < order.length; r++) if (r < lo || r >= hi) tau[order[r]] = 0;
}

function gammaParam(): ParamDecl {
  return {
    name: 'gamma',
    type: 'number',
    scope: 'per-model',
    broadcast: true,
    perTensor: true,
    min: 0,
    max: 1,
    default: 0.01,
    required: false,
    help: 'fraction of each task vector dropped from the top (largest |τ|, the outliers)',
    cli: {
      flag: 'gamma',
      description: 'breadcrumbs: fraction of largest-|τ| entries dropped (one value, or one per input)',
    },
    mergekit: { key: 'gamma', default: 0.01 },
  };
}

/** mergekit's `rescale` for breadcrumbs: off by default; true scales each pruned task vector to keep its L1 norm. */
function breadcrumbsRescaleParam(): ParamDecl {
  return {
    name: 'rescale',
    type: 'enum',
    scope: 'global',
    perTensor: false,
    choices: ['none', 'l1'],
    default: 'none',
    required: false,
    help: "after pruning, leave the survivors ('none') or scale them to keep each task vector's L1 norm ('l1')",
    cli: {
      flag: 'rescale',
      description: 'rescale of the survivors (DARE/DELLA: inverse, l1, none; breadcrumbs: none, l1)',
    },
    mergekit: { key: 'rescale', values: { true: 'l1', false: 'none' } },
  };
}

function makeBreadcrumbs(name: string, mergekitName: string, consensus: 'none' | 'sum'): MergeMethod {
  const config: SparseConsensusConfig = { sparsify: 'none', consensus, defaultNormalize: false };
  return defineMethod({
    name,
    description:
      consensus === 'none'
        ? 'drops the largest (outlier) and smallest entries of each task vector, then adds them as in task arithmetic'
        : 'drops the largest (outlier) and smallest entries of each task vector, then merges them with TIES sign election',
    reference: 'Davari & Belilovsky 2023, "Model Breadcrumbs: scaling multi-task model merging with sparse masks"',
    params: [
      weightsParam(),
      lambdaParam(),
      densityParam({ help: 'fraction of each task vector kept, below the dropped outliers' }),
      gammaParam(),
      breadcrumbsRescaleParam(),
      seedParam({ help: 'recorded in the recipe; breadcrumbs draws nothing at random' }),
      normalizeParam(),
      linesParam(),
    ],
    needsBase: true,
    minInputs: 1,
    mergekitName,
    build(tp: TensorParams) {
      const gamma = (tp.extra?.gamma as number[] | undefined) ?? tp.weights.map(() => 0.01);
      const l1 = tp.extra?.rescale === 'l1';
      return (inputs, base, _ctx, out) => {
        if (!base) throw new WgitError('E_BASE_REQUIRED', `${name} needs a base model`, { method: name });
        const taus = inputs.map((x, i) => {
          const t = new Float32Array(base.length);
          for (let j = 0; j < t.length; j++) t[j] = fr(x[j] - base[j]);
          if (tp.density[i] >= 1) return t;
          const before = l1 ? l1Norm(t) : 0;
          breadcrumbsInPlace(t, tp.density[i], gamma[i]);
          if (l1) l1RescaleInPlace(t, before);
          return t;
        });
        combine(config, taus, tp.weights, tp.normalize, out);
        const lambda = fr(tp.lambda);
        for (let j = 0; j < out.length; j++) out[j] = fr(base[j] + fr(lambda * out[j]));
      };
    },
  });
}

export const breadcrumbs = makeBreadcrumbs('breadcrumbs', 'breadcrumbs', 'none');
export const breadcrumbsTies = makeBreadcrumbs('breadcrumbs-ties', 'breadcrumbs_ties', 'sum');
