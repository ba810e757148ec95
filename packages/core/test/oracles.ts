// Independent oracles for the merge methods' tests: plain loops and sorting
// written from the definitions in docs/kernels.md and docs/methods/, sharing no
// code with the product (no kthLargestAbs, no dareHash, no mergeTensor). A test
// that checks the product against the product proves only that it is
// deterministic; these let it prove the product right.

const fr = Math.fround;

// ---- DARE's counter-based mask (docs/kernels.md) ---------------------------

function fmix(h: number): number {
  h = (h ^ (h >>> 16)) >>> 0;
  h = Math.imul(h, 0x85ebca6b) >>> 0;
  h = (h ^ (h >>> 13)) >>> 0;
  h = Math.imul(h, 0xc2b2ae35) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}

/** The stream of one (tensor, input): FNV-1a over the name's UTF-8 bytes, mixed with the input index. */
export function dareStream(name: string, input: number): number {
  let h = 0x811c9dc5;
  for (const b of Buffer.from(name, 'utf8')) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return fmix((h ^ Math.imul(input + 1, 0x9e3779b1)) >>> 0);
}

/** Whether element `index` survives a drop of probability p: u = (hash >>> 8) / 2^24 ≥ p. */
export function dareKeeps(seed: number, stream: number, index: number, p: number): boolean {
  const hi = Math.floor(index / 2 ** 32);
  const lo = index % 2 ** 32;
  const k1 = fmix(fmix((seed ^ 0x243f6a88) >>> 0) ^ stream ^ 0x85a308d3);
  const k2 = fmix((k1 ^ hi ^ 0x13198a2e) >>> 0);
  const h = fmix((fmix((lo ^ k2) >>> 0) ^ k1) >>> 0);
  return (h >>> 8) / 2 ** 24 >= p;
}

// ---- magnitude trim ---------------------------------------------------------

/** The k-th largest |x| by sorting (k = 1 the largest); +∞ for k = 0, 0 past the end. */
export function kthLargestBySort(arrays: ArrayLike<number>[], k: number): number {
  if (k <= 0) return Number.POSITIVE_INFINITY;
  const all = arrays.flatMap((a) => Array.from(a, Math.abs)).filter((v) => !Number.isNaN(v));
  all.sort((p, q) => q - p);
  return k > all.length ? 0 : all[k - 1];
}

/** Keeps exactly the top k non-zero entries by |x|, ties by position (a stable sort). */
export function topKMask(x: ArrayLike<number>, k: number): boolean[] {
  const order = Array.from({ length: x.length }, (_v, j) => j)
    .filter((j) => x[j] !== 0 && !Number.isNaN(x[j]))
    .sort((p, q) => Math.abs(x[q]) - Math.abs(x[p]));
  const keep = Array.from({ length: x.length }, () => false);
  for (const j of order.slice(0, k)) keep[j] = true;
  return keep;
}

/** A model-wide top-k mask over several tensors (tensor order, then flat index), split back per tensor. */
export function topKMaskAcross(xs: ArrayLike<number>[], k: number): boolean[][] {
  const flat = xs.flatMap((x) => Array.from(x));
  const keep = topKMask(flat, k);
  const out: boolean[][] = [];
  let at = 0;
  for (const x of xs) {
    out.push(keep.slice(at, at + x.length));
    at += x.length;
  }
  return out;
}

// ---- sign election and disjoint mean ---------------------------------------

/**
 * TIES' merged task vector from kept masks, in f32 step by step:
 * wτ̂ᵢ = f32(wᵢ·τᵢ) where kept, else 0; s = Σ wτ̂ᵢ; γ = s ≥ 0 ? + : −; the agreeing
 * inputs are those whose wτ̂ᵢ is non-zero with sign γ; normalize: Σ wτ̂ / Σ w over
 * them (a zero Σ w leaves the sum), else the sum; 0 where none agrees.
 */
export function tiesMerged(
  taus: ArrayLike<number>[],
  kept: boolean[][],
  weights: number[],
  normalize = true,
): Float32Array {
  const n = taus[0].length;
  const w = weights.map(fr);
  const out = new Float32Array(n);
  for (let j = 0; j < n; j++) {
    const wt = taus.map((t, i) => (kept[i][j] ? fr(w[i] * t[j]) : 0));
    let s = 0;
    for (const v of wt) s = fr(s + v);
    let num = 0;
    let den = 0;
    let agree = 0;
    wt.forEach((v, i) => {
      if (s >= 0 ? v > 0 : v < 0) {
        num = fr(num + v);
        den = fr(den + w[i]);
        agree++;
      }
    });
    out[j] = agree === 0 ? 0 : !normalize || den === 0 ? num : fr(num / den);
  }
  return out;
}
