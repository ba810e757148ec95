/**
 * Householder QR of a tall-skinny f32 matrix, computed in f64: Y (m×k,
 * row-major, m ≥ k) = Q·R with Q (m×k) orthonormal columns and R (k×k)
 * upper triangular. A column that is (numerically) zero gets the identity
 * reflection, so Q stays orthonormal when Y is rank deficient.
 */

export interface QR {
  /** m×k, row-major f32, orthonormal columns. */
  q: Float32Array;
  /** k×k, row-major f64, upper triangular. */
  r: Float64Array;
}

export function householderQR(y: Float32Array, m: number, k: number): QR {
  if (k > m) throw new RangeError(`householderQR needs m ≥ k, got ${m}×${k}`);
  // Column-major f64 working copy: column c is w[c·m .. c·m + m).
  const w = new Float64Array(m * k);
  for (let i = 0; i < m; i++) for (let c = 0; c < k; c++) w[c * m + i] = y[i * k + c];
  const tau = new Float64Array(k);
  const r = new Float64Array(k * k);
  for (let j = 0; j < k; j++) {
    const col = j * m;
    let norm2 = 0;
    for (let i = j; i < m; i++) norm2 += w[col + i] * w[col + i];
    const x0 = w[col + j];
    const norm = Math.sqrt(norm2);
    if (norm === 0) {
      tau[j] = 0;
      r[j * k + j] = 0;
    } else {
      const alpha = x0 > 0 ? -norm : norm;
      const v0 = x0 - alpha;
      const vnorm2 = norm2 - x0 * x0 + v0 * v0;
      w[col + j] = v0;
      tau[j] = 2 / vnorm2;
      r[j * k + j] = alpha;
    }
    for (let c = j + 1; c < k; c++) {
      const cc = c * m;
      if (tau[j] !== 0) {
        let s = 0;
        for (let i = j; i < m; i++) s += w[col + i] * w[cc + i];
        s *= tau[j];
        for (let i = j; i < m; i++) w[cc + i] -= s * w[col + i];
      }
      r[j * k + c] = w[cc + j];
    }
  }
  // Q = H₀·H₁·…·H_{k−1}·[I; 0], accumulated backwards, column-major.
  const qc = new Float64Array(m * k);
  for (let c = 0; c < k; c++) qc[c * m + c] = 1;
  for (let j = k - 1; j >= 0; j--) {
    if (tau[j] === 0) continue;
    const col = j * m;
    for (let c = j; c < k; c++) {
      const cc = c * m;
      let s = 0;
      for (let i = j; i < m; i++) s += w[col + i] * qc[cc + i];
      s *= tau[j];
      if (s !== 0) for (let i = j; i < m; i++) qc[cc + i] -= s * w[col + i];
    }
  }
  const q = new Float32Array(m * k);
  for (let c = 0; c < k; c++) for (let i = 0; i < m; i++) q[i * k + c] = qc[c * m + i];
  return { q, r };
}
