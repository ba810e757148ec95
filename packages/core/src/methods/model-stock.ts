/**
 * Model Stock (Jang et al. 2024): with task vectors τᵢ = θᵢ − θ₀ (N ≥ 2),
 * cos φ the mean over pairs of ⟨τᵢ, τⱼ⟩ / max(‖τᵢ‖·‖τⱼ‖, 1e-6) (each clamped
 * to [−1, 1]); t = N·cos φ / (1 + (N − 1)·cos φ); θ = t·mean(θᵢ) + (1 − t)·θ₀.
 * Per tensor, the whole tensor as one vector (mergekit's default; its
 * `filter_wise` per-row variant is refused).
 */
import { defineGramMethod, taskGram } from './gram.js';
import { seedParam } from './params.js';
import type { MergeMethod } from './types.js';

/** t from the task vectors' Gram matrix. */
export function modelStockT(tg: number[][]): number {
  const n = tg.length;
  let sum = 0;
  let pairs = 0;
  for (let i = 0; i < n; i++)
    for (let j = i + 1; j < n; j++) {
      const norms = Math.sqrt(tg[i][i]) * Math.sqrt(tg[j][j]);
      sum += Math.min(1, Math.max(-1, tg[i][j] / Math.max(norms, 1e-6)));
      pairs++;
    }
  const cos = sum / pairs;
  return (n * cos) / (1 + (n - 1) * cos);
}

export const modelStock: MergeMethod = defineGramMethod({
  name: 'model-stock',
  description: 'moves the base toward the mean of the fine-tunes by t from the angle between their task vectors',
  reference: 'Jang et al. 2024, "Model Stock: all we need is just a few fine-tuned models"',
  params: [seedParam({ help: 'recorded in the recipe; model_stock draws nothing at random' })],
  needsBase: true,
  minInputs: 2,
  mergekitName: 'model_stock',
  // one t per row is not supported: mergekit's default only
  mergekitFixed: { filter_wise: false },
  coefficients(g) {
    const n = g.length - 1;
    const t = modelStockT(taskGram(g));
    return [...Array.from({ length: n }, () => t / n), 1 - t];
  },
});
