/**
 * Symmetric eigen-decomposition by cyclic Jacobi rotations, in f64. Meant for
 * the small Gram matrices of reversible merging (n ≤ 16 models): Jacobi is
 * simple, unconditionally stable and accurate for small eigenvalues, which is
 * what decides how many basis tensors are worth keeping.
 */
import { WgitError } from '../errors.js';

export interface Eigen {
  /** Eigenvalues, descending. */
  values: number[];
  /** vectors[i][k]: component i of the k-th eigenvector (columns match values). */
  vectors: number[][];
}

export function symmetricEigen(matrix: number[][], maxSweeps = 100): Eigen {
  const n = matrix.length;
  for (const row of matrix) {
    if (row.length !== n) throw new WgitError('E_BAD_PARAM', 'symmetricEigen: the matrix is not square');
  }
  const a = matrix.map((r) => r.slice());
  const v: number[][] = Array.from({ length: n }, (_, i) => Array.from({ length: n }, (_, j) => (i === j ? 1 : 0)));
  for (let sweep = 0; sweep < maxSweeps; sweep++) {
    let off = 0;
    let diag = 0;
    for (let i = 0; i < n; i++) {
      diag += a[i][i] * a[i][i];
      for (let j = i + 1; j < n; j++) off += a[i][j] * a[i][j];
    }
    if (off === 0 || off <= 1e-30 * diag) break;
    for (let p = 0; p < n; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = a[p][q];
        if (apq === 0) continue;
        // the rotation angle that zeroes a[p][q]; t = tan θ chosen as the smaller root for stability
        const theta = (a[q][q] - a[p][p]) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < n; k++) {
          const akp = a[k][p];
          const akq = a[k][q];
          a[k][p] = c * akp - s * akq;
          a[k][q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = a[p][k];
          const aqk = a[q][k];
          a[p][k] = c * apk - s * aqk;
          a[q][k] = s * apk + c * aqk;
        }
        for (let k = 0; k < n; k++) {
          const vkp = v[k][p];
          const vkq = v[k][q];
          v[k][p] = c * vkp - s * vkq;
          v[k][q] = s * vkp + c * vkq;
        }
      }
    }
  }
  const order = Array.from({ length: n }, (_, i) => i).sort((x, y) => a[y][y] - a[x][x]);
  return {
    values: order.map((k) => a[k][k]),
    vectors: v.map((row) => order.map((k) => row[k])),
  };
}
