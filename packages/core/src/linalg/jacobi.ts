/**
 * SVD of a small dense f64 matrix by one-sided Jacobi (Hestenes): rotations
 * of column pairs until every pair is orthogonal to working precision, then
 * σⱼ = ‖column j‖, uⱼ = column j / σⱼ. Accurate to high relative precision,
 * fine for the k×k matrices of a randomized SVD (k ≤ a few hundred).
 */

export interface SmallSVD {
  /** m×p row-major, p = min(m, n); a column for σ = 0 is zero. */
  u: Float64Array;
  /** p values, descending. */
  s: Float64Array;
  /** n×p row-major. */
  v: Float64Array;
}

const MAX_SWEEPS = 60;

/** SVD of a (m×n, row-major, m ≥ n): a = u·diag(s)·vᵀ. */
export function jacobiSVD(a: Float64Array, m: number, n: number): SmallSVD {
  if (n > m) throw new RangeError(`jacobiSVD needs m ≥ n, got ${m}×${n}`);
  // Columns of a and of v, column-major.
  const g = new Float64Array(m * n);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) g[j * m + i] = a[i * n + j];
  const v = new Float64Array(n * n);
  for (let j = 0; j < n; j++) v[j * n + j] = 1;
  const eps = 2.220446049250313e-16;
  for (let sweep = 0; sweep < MAX_SWEEPS; sweep++) {
    let rotated = false;
    for (let p = 0; p < n - 1; p++)
      for (let q = p + 1; q < n; q++) {
        let alpha = 0;
        let beta = 0;
        let gamma = 0;
        const cp = p * m;
        const cq = q * m;
        for (let i = 0; i < m; i++) {
          alpha += g[cp + i] * g[cp + i];
          beta += g[cq + i] * g[cq + i];
          gamma += g[cp + i] * g[cq + i];
        }
        if (gamma === 0 || Math.abs(gamma) <= eps * Math.sqrt(alpha * beta)) continue;
        rotated = true;
        const zeta = (beta - alpha) / (2 * gamma);
        const t = Math.sign(zeta || 1) / (Math.abs(zeta) + Math.sqrt(1 + zeta * zeta));
        const c = 1 / Math.sqrt(1 + t * t);
        const s = c * t;
        for (let i = 0; i < m; i++) {
          const x = g[cp + i];
          const y = g[cq + i];
          g[cp + i] = c * x - s * y;
          g[cq + i] = s * x + c * y;
        }
        const vp = p * n;
        const vq = q * n;
        for (let i = 0; i < n; i++) {
          const x = v[vp + i];
          const y = v[vq + i];
          v[vp + i] = c * x - s * y;
          v[vq + i] = s * x + c * y;
        }
      }
    if (!rotated) break;
  }
  const norms = new Float64Array(n);
  for (let j = 0; j < n; j++) {
    let s = 0;
    for (let i = 0; i < m; i++) s += g[j * m + i] * g[j * m + i];
    norms[j] = Math.sqrt(s);
  }
  const order = [...norms.keys()].sort((x, y) => norms[y] - norms[x]);
  const u = new Float64Array(m * n);
  const s = new Float64Array(n);
  const vo = new Float64Array(n * n);
  order.forEach((j, col) => {
    s[col] = norms[j];
    if (norms[j] > 0) for (let i = 0; i < m; i++) u[i * n + col] = g[j * m + i] / norms[j];
    for (let i = 0; i < n; i++) vo[i * n + col] = v[j * n + i];
  });
  return { u, s, v: vo };
}
