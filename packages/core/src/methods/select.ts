/** Magnitude selection for TIES trimming; the selector itself is the device's (device/abs-selector.ts). */
export { AbsSelector, kthLargestAbs } from '../device/abs-selector.js';

/**
 * TIES trim threshold for keeping the top `density` fraction of `count`
 * entries: mergekit keeps k = ⌊density·count⌋. Entries with |τ| ≥ threshold
 * survive (ties at the threshold all survive, so slightly more than k may).
 */
export function keepCount(density: number, count: number): number {
  return Math.floor(density * count);
}
