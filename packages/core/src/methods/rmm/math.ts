/** Reversible merge: the per-tensor linear algebra (basis decomposition) and the tensor operations, composed from the device kernels. */

import { type Device, referenceDevice } from '../../device/index.js';
import { symmetricEigen } from '../eigen.js';
import { combine, combineCoefficients } from '../sparse-consensus.js';
import type { SparseConsensusConfig, TensorParams } from '../types.js';

export const fr = Math.fround;

/** The plain checkout: task arithmetic with weights normalised by their sum (the mean of the task updates by default). */
export const RMM_MERGED_CONFIG: SparseConsensusConfig = { sparsify: 'none', consensus: 'none', defaultNormalize: true };
export const RMM_MAX_INPUTS = 16;
/** Name of the group the basis is written to, beside the merged model. */
export const RMM_GROUP = 'rmm';

/** Eigen-directions carrying less than this fraction of the updates' energy are dropped. */
export const RMM_EIGEN_EPS = 1e-12;

/**
 * Elements per reduction call. Every f64 sum of the method (Gram entries,
 * error figures) is the device's `dot`/`sumSq` over consecutive pieces of this
 * size, added in order from 0: a call this small runs as one range on every
 * backend (the pool splits a call across threads from 262,144 elements), so
 * the sums, and with them the basis, are the same bits whatever the thread count.
 */
export const RMM_SUM_PIECE = 1 << 16;

/** Elements per block of the elementwise work: a multiple of RMM_SUM_PIECE. */
export const BLOCK = 1 << 21;

/** Inputs one weightedSum call takes (the device's limit). */
export const KERNEL_INPUTS = 8;

export interface Decomposition {
  /** p × n: basis tensor k = Σᵢ combo[k][i]·Δᵢ. */
  combo: number[][];
  /** n × p coefficients. */
  coeffs: number[][];
  /** Eigenvalues kept (after the merged direction), descending. */
  eigenvalues: number[];
  /** Whether basis 0 is the merged direction. */
  mergedFirst: boolean;
}

/**
 * The basis as linear combinations of the updates, from their Gram matrix and
 * the merge coefficients mc (m = Σ mcᵢΔᵢ). Pure f64 math on n×n matrices.
 */
export function decompose(gram: number[][], mc: number[], rank: number, eps = RMM_EIGEN_EPS): Decomposition {
  const n = gram.length;
  let trace = 0;
  for (let i = 0; i < n; i++) trace += gram[i][i];
  const combo: number[][] = [];
  const coeffs: number[][] = Array.from({ length: n }, () => []);
  if (trace <= 0) return { combo, coeffs, eigenvalues: [], mergedFirst: false };
  const gc = gram.map((row) => row.reduce((s, g, j) => s + g * mc[j], 0));
  const mm = mc.reduce((s, c, i) => s + c * gc[i], 0);
  let residual = gram;
  let mergedFirst = false;
  if (
    mm >
    eps *
      trace *
      Math.max(
        1,
        mc.reduce((s, c) => s + c * c, 0),
      )
  ) {
    const norm = Math.sqrt(mm);
    const a = gc.map((x) => x / norm);
    const u = mc.map((c) => c / norm);
    combo.push(u);
    for (let i = 0; i < n; i++) coeffs[i].push(a[i]);
    residual = gram.map((row, i) => row.map((g, j) => g - a[i] * a[j]));
    mergedFirst = true;
  }
  const eig = symmetricEigen(residual);
  const eigenvalues: number[] = [];
  for (let k = 0; k < n && combo.length < rank; k++) {
    const lam = eig.values[k];
    if (!(lam > eps * trace)) break;
    const q = eig.vectors.map((row) => row[k]);
    const s = Math.sqrt(lam);
    // residual Rᵢ = Δᵢ − aᵢu expressed over the Δ's
    const c = q.map((x) => x / s);
    if (mergedFirst) {
      const qa = q.reduce((acc, x, i) => acc + x * coeffs[i][0], 0);
      for (let i = 0; i < n; i++) c[i] -= (qa * combo[0][i]) / s;
    }
    combo.push(c);
    for (let i = 0; i < n; i++) coeffs[i].push(q[i] * s);
    eigenvalues.push(lam);
  }
  return { combo, coeffs, eigenvalues, mergedFirst };
}

// ---------------------------------------------------------------------------
// the tensor operations, composed from the device kernels

/** acc + Σ aⱼbⱼ: the device's dot over pieces of RMM_SUM_PIECE elements, added in order (f64). */
export async function dotPieces(device: Device, a: Float32Array, b: Float32Array, acc = 0): Promise<number> {
  for (let o = 0; o < a.length; o += RMM_SUM_PIECE) {
    const e = Math.min(a.length, o + RMM_SUM_PIECE);
    acc += await device.dot(a.subarray(o, e), b.subarray(o, e));
  }
  return acc;
}

/** acc + Σ aⱼ², as dotPieces. */
export async function sumSqPieces(device: Device, a: Float32Array, acc = 0): Promise<number> {
  for (let o = 0; o < a.length; o += RMM_SUM_PIECE)
    acc += await device.sumSq(a.subarray(o, Math.min(a.length, o + RMM_SUM_PIECE)));
  return acc;
}

/** out = Σ wᵢxᵢ (one or more terms), f32, left to right: weightedSum, continued by axpy past its inputs. */
export async function linearCombination(
  device: Device,
  xs: Float32Array[],
  ws: number[],
  out: Float32Array,
): Promise<void> {
  const k = Math.min(xs.length, KERNEL_INPUTS);
  await device.weightedSum(xs.slice(0, k), ws.slice(0, k), out);
  for (let i = k; i < xs.length; i++) await device.axpy(out, ws[i], xs[i], out);
}

/** Gram matrix ⟨Δᵢ,Δⱼ⟩ of the updates (f64 sums in RMM_SUM_PIECE pieces). */
export async function gramMatrix(deltas: Float32Array[], device: Device = referenceDevice()): Promise<number[][]> {
  const g = Array.from({ length: deltas.length }, () => new Array<number>(deltas.length).fill(0));
  await addGram(device, deltas, g);
  return g;
}

export async function addGram(device: Device, deltas: Float32Array[], g: number[][]): Promise<void> {
  for (let i = 0; i < deltas.length; i++) {
    for (let k = i; k < deltas.length; k++) {
      g[i][k] = await dotPieces(device, deltas[i], deltas[k], g[i][k]);
      g[k][i] = g[i][k];
    }
  }
}

/** Basis tensor Σᵢ combo[i]·Δᵢ, in f32 (the stored values). */
export async function basisTensor(
  deltas: Float32Array[],
  combo: number[],
  out: Float32Array,
  device: Device = referenceDevice(),
): Promise<void> {
  await linearCombination(device, deltas, combo, out);
}

/**
 * θ₀ + Σ_k c_k M_k in f32: the update Σ_k c_k M_k first (left to right), then
 * one addition of the base — one weighted sum over [M_0 … M_{p−1}, θ₀] with
 * weights [c_0 … c_{p−1}, 1]. The same code runs at merge time and at recovery.
 */
export async function reconstruct(
  base: Float32Array,
  basis: Float32Array[],
  coeffs: number[],
  out: Float32Array,
  device: Device = referenceDevice(),
): Promise<void> {
  await linearCombination(device, [...basis, base], [...coeffs, 1], out);
}

/**
 * θ₀ + Σ_k c_k M_k summed in f64 and rounded once to f32: how groups with a
 * table of version 1 (kind versions 0 and 1) were reconstructed, their fixes
 * computed against it. Kept to recover those groups byte for byte.
 */
export function reconstructF64(base: Float32Array, basis: Float32Array[], coeffs: number[], out: Float32Array): void {
  for (let j = 0; j < out.length; j++) {
    let s = base[j] as number;
    for (let k = 0; k < basis.length; k++) s += coeffs[k] * basis[k][j];
    out[j] = s;
  }
}

/** The plain checkout θ₀ + λ·Σ cᵢΔᵢ: the operations of the engine's kernel path for task arithmetic, in its order. */
export async function mergedValues(
  device: Device,
  tp: TensorParams,
  base: Float32Array,
  deltas: Float32Array[],
  out: Float32Array,
): Promise<void> {
  if (deltas.length <= KERNEL_INPUTS)
    await device.weightedSum(deltas, combineCoefficients(tp.weights, tp.normalize), out);
  else combine(RMM_MERGED_CONFIG, deltas, tp.weights, tp.normalize, out); // the engine's plain path past the kernel's inputs
  await device.axpy(base, tp.lambda, out, out);
}

/** One tensor's raw bytes per model (inputs, then the base), worked on block by block. */
