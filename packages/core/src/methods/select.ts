/** Magnitude selection for TIES trimming; the selector itself is the device's (device/abs-selector.ts). */
export { AbsSelector, kthLargestAbs } from '../device/abs-selector.js';

/**
 * TIES trim threshold for keeping the top `density` fraction of `count`
 * entries: mergekit keeps k = ⌊density·count⌋. Entries with |τ| above the
 * threshold survive, and of those equal to it the first by flat index, so
 * exactly k do (magnitudeTieQuotas, the engine's model-wide quotas).
 */
export function keepCount(density: number, count: number): number {
  return Math.floor(density * count);
}
