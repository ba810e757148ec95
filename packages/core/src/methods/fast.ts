/**
 * The kernel path of the registry methods: the same operations in the same
 * order as the plain functions (sparse-consensus.ts, linear.ts), run by the
 * device kernels (the WASM SIMD pool, or the reference) on buffers the device
 * owns. Tests check both paths give the same bytes.
 */
import type { Device, KernelDType } from '../device/index.js';
import { streamId } from '../device/rng.js';
import type { BufferPool } from '../pipeline/index.js';
import { linearCoefficients } from './linear.js';
import { keepCount } from './select.js';
import {
  combine,
  combineCoefficients,
  dareRescale,
  l1Norm,
  l1RescaleInPlace,
  magnitudeTieQuotas,
  trimInPlace,
} from './sparse-consensus.js';
import type { MergeMethod, TensorContext, TensorParams } from './types.js';

const MAX_KERNEL_INPUTS = 8;

export interface FastTensor {
  device: Device;
  method: MergeMethod;
  params: TensorParams;
  ctx: TensorContext;
  /** LiNeS post-step scale for this tensor, when on. */
  linesScale?: number;
}

/**
 * Merges one tensor on the device's kernels, writing `outBytes`. Returns
 * false (and does nothing) where the kernel set does not cover the case, so
 * the caller takes the plain path.
 */
export async function fastMergeTensor(
  f: FastTensor,
  raw: Uint8Array[],
  dtype: KernelDType,
  outDtype: KernelDType,
  outBytes: Uint8Array,
  pool: BufferPool,
): Promise<boolean> {
  const { device: k, method, params: p } = f;
  const n = p.weights.length;
  if (method.fast) return f.linesScale === undefined && method.fast(f, raw, dtype, outDtype, outBytes, pool);
  if (n > MAX_KERNEL_INPUTS) return false;
  if (method.name === 'linear') {
    if (f.linesScale !== undefined) return false;
    await k.weightedSumTyped(raw.slice(0, n), dtype, linearCoefficients(p.weights, p.normalize), outDtype, outBytes);
    return true;
  }
  const cfg = method.config;
  if (!cfg || raw.length !== n + 1) return false;
  const len = raw[n].byteLength / (dtype === 'F32' ? 4 : 2);
  const base = pool.f32('kb', len);
  await k.toF32(raw[n], dtype, base);
  const taus: Float32Array[] = [];
  for (let i = 0; i < n; i++) {
    const t = pool.f32(`kt${i}`, len);
    await k.toF32(raw[i], dtype, t);
    await k.sub(t, base, t);
    taus.push(t);
  }
  let thresholds = taus.map(() => 0);
  let quotas: number[] | undefined;
  if (cfg.sparsify === 'magnitude') {
    if (f.ctx.thresholds) {
      thresholds = f.ctx.thresholds;
      quotas = f.ctx.tieQuotas;
    } else {
      for (let i = 0; i < n; i++) {
        const d = p.density[i];
        if (d >= 1) continue;
        const kc = keepCount(d, len);
        thresholds[i] = kc <= 0 ? Number.POSITIVE_INFINITY : await k.kthLargestAbs([taus[i]], kc);
      }
      quotas = magnitudeTieQuotas(taus, p.density, thresholds);
    }
  } else if (cfg.sparsify === 'random') {
    const l1 = dareRescale(p) === 'l1';
    for (let i = 0; i < n; i++) {
      const drop = 1 - p.density[i];
      if (drop <= 0) continue;
      // the L1 rescale's sums and scale are the plain path's own loops (element order), for the same bits
      const before = l1 ? l1Norm(taus[i]) : 0;
      await k.dareDrop(taus[i], drop, p.seed, streamId(f.ctx.name, i), 0, taus[i]);
      if (l1) l1RescaleInPlace(taus[i], before);
    }
  }
  const merged = pool.f32('km', len);
  if (cfg.consensus === 'none') {
    if (cfg.sparsify === 'magnitude') return false;
    await k.weightedSum(taus, combineCoefficients(p.weights, p.normalize), merged);
  } else if (p.normalize) {
    await k.ties(taus, p.weights, thresholds, merged, quotas);
  } else {
    // unnormalized consensus has no kernel: trim, then the plain loop
    if (cfg.sparsify === 'magnitude') {
      for (let i = 0; i < n; i++) trimInPlace(taus[i], thresholds[i], quotas?.[i] ?? -1);
    }
    combine(cfg, taus, p.weights, p.normalize, merged);
  }
  await k.axpy(base, p.lambda, merged, merged);
  if (f.linesScale !== undefined) {
    const tmp = taus[0];
    await k.sub(merged, base, tmp);
    await k.axpy(base, f.linesScale, tmp, merged);
  }
  await k.fromF32(merged, outDtype, outBytes);
  return true;
}
