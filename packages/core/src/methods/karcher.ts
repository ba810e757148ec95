/**
 * Karcher mean, mergekit's `karcher`: the Riemannian mean of the inputs'
 * directions on the unit sphere, times the mean of their norms. Per tensor,
 * each input as one flattened vector vᵢ, nᵢ = ‖vᵢ‖, uᵢ = vᵢ/nᵢ (0 when nᵢ = 0);
 * the inputs with nᵢ > tol take part, each with weight aᵢ = 1/#those:
 *
 *   u = Σ aᵢuᵢ / ‖Σ aᵢuᵢ‖  (the first taking part when that norm is below tol)
 *   repeat max_iter times:
 *     T = Σ aᵢ · θᵢ/sin θᵢ · (uᵢ − cos θᵢ · u),  θᵢ = arccos clamp(⟨u, uᵢ⟩, −1, 1), terms with θᵢ < tol left out
 *     stop when ‖T‖ < tol; else u = cos‖T‖·u + sin‖T‖·T/‖T‖, then u /= ‖u‖ (when ‖u‖ > tol)
 *   θ = (Σᵢ nᵢ / N) · u      (N counts every input, zero ones too)
 *
 * u stays a combination of the inputs, so the iteration runs on coefficient
 * vectors with the Gram matrix as the inner product (gram.ts): f64
 * coefficients, one weighted sum over the tensors.
 */
import { defineGramMethod } from './gram.js';
import { seedParam } from './params.js';
import type { MergeMethod } from './types.js';

/** Coefficients of the Karcher mean on the inputs, from their Gram matrix. */
export function karcherCoefficients(g: number[][], maxIter: number, tol: number): number[] {
  const n = g.length;
  if (n === 1) return [1];
  const ip = (a: number[], b: number[]) => {
    let s = 0;
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) s += a[i] * g[i][j] * b[j];
    return s;
  };
  const norms = g.map((row, i) => Math.sqrt(Math.max(row[i], 0)));
  const unit = (i: number) => Array.from({ length: n }, (_, k) => (k === i && norms[i] !== 0 ? 1 / norms[i] : 0));
  const valid = norms.flatMap((x, i) => (x > tol ? [i] : []));
  if (valid.length === 0) return new Array<number>(n).fill(0);
  const a = 1 / valid.length;
  let u = new Array<number>(n).fill(0);
  for (const i of valid) u[i] += a / norms[i];
  const nu = Math.sqrt(Math.max(ip(u, u), 0));
  u = nu < tol ? unit(valid[0]) : u.map((x) => x / nu);
  for (let it = 0; it < maxIter; it++) {
    const t = new Array<number>(n).fill(0);
    for (const i of valid) {
      const ui = unit(i);
      const d = Math.min(1, Math.max(-1, ip(u, ui)));
      const th = Math.acos(d);
      if (th < tol) continue;
      const f = (a * th) / Math.sin(th);
      for (let k = 0; k < n; k++) t[k] += f * (ui[k] - d * u[k]);
    }
    const nt = Math.sqrt(Math.max(ip(t, t), 0));
    if (nt < tol) break;
    u = u.map((x, k) => Math.cos(nt) * x + (Math.sin(nt) * t[k]) / nt);
    const un = Math.sqrt(Math.max(ip(u, u), 0));
    if (un > tol) u = u.map((x) => x / un);
  }
  const s = norms.reduce((acc, x) => acc + x / n, 0);
  return u.map((x) => s * x);
}

export const karcher: MergeMethod = defineGramMethod({
  name: 'karcher',
  description: 'the Riemannian mean of the inputs on the unit sphere, scaled to their mean norm',
  reference: 'Karcher 1977, "Riemannian center of mass and mollifier smoothing"; mergekit karcher',
  params: [
    {
      name: 'max_iter',
      type: 'integer',
      scope: 'global',
      perTensor: false,
      min: 0,
      max: 10000,
      default: 10,
      required: false,
      help: 'most iterations of the mean on the sphere',
      cli: { flag: 'max-iter', description: 'karcher: most iterations' },
      mergekit: { key: 'max_iter', default: 10 },
    },
    {
      name: 'tol',
      type: 'number',
      scope: 'global',
      perTensor: false,
      min: 0,
      default: 1e-5,
      required: false,
      help: 'stops when the step is shorter; inputs with a norm at or below it take no part',
      cli: { flag: 'tol', description: 'karcher: convergence tolerance' },
      mergekit: { key: 'tol', default: 1e-5 },
    },
    seedParam({ help: 'recorded in the recipe; karcher draws nothing at random' }),
  ],
  needsBase: false,
  minInputs: 1,
  mergekitName: 'karcher',
  coefficients(g, tp) {
    return karcherCoefficients(g, (tp.extra?.max_iter as number) ?? 10, (tp.extra?.tol as number) ?? 1e-5);
  },
});
