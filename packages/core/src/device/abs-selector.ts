/**
 * Exact k-th largest |x| over one or many f32 arrays, by radix selection on
 * the IEEE bit pattern: for non-negative floats the bit pattern orders like
 * the value, so two histogram passes (bits 30..15, then 14..0 inside the
 * chosen bin) find the exact value without sorting or copying. The same
 * two-pass structure streams over a whole model (model-wide TIES trimming)
 * where the data does not fit in memory at once.
 */

const HI_BINS = 1 << 16;
const LO_BINS = 1 << 15;

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** Bits of |x| for every element of x, as a view that shares x's buffer. */
function absBits(x: Float32Array): Uint32Array {
  return new Uint32Array(x.buffer, x.byteOffset, x.length);
}

export class AbsSelector {
  private hi = new Float64Array(HI_BINS);
  private lo = new Float64Array(LO_BINS);
  private prefix = -1;
  private remaining = 0;
  /** Number of elements seen in pass 0 (NaNs excluded). */
  count = 0;
  /** Number of elements seen in pass 0, NaNs included: the N of a density. */
  total = 0;

  /** Pass 0: histogram of the upper bits of |x|. NaN is ignored (never selected). */
  addPass0(x: Float32Array): void {
    const bits = absBits(x);
    const hi = this.hi;
    for (let i = 0; i < bits.length; i++) {
      const b = bits[i] & 0x7fffffff;
      if (b > 0x7f800000) continue;
      hi[b >>> 15]++;
    }
    this.count += countNonNaN(bits);
    this.total += bits.length;
  }

  /**
   * After pass 0: choose the bin holding the k-th largest. Returns true when a
   * second pass is needed, false when the answer is already known (k out of range).
   */
  choose(k: number): boolean {
    if (k <= 0 || k > this.count) {
      this.prefix = -1;
      this.remaining = k;
      return false;
    }
    let seen = 0;
    for (let bin = HI_BINS - 1; bin >= 0; bin--) {
      const c = this.hi[bin];
      if (seen + c >= k) {
        this.prefix = bin;
        this.remaining = k - seen;
        return true;
      }
      seen += c;
    }
    throw new Error('unreachable: histogram count mismatch');
  }

  /** Pass 1: histogram of the lower bits of the elements in the chosen bin. */
  addPass1(x: Float32Array): void {
    if (this.prefix < 0) return;
    const bits = absBits(x);
    const lo = this.lo;
    const prefix = this.prefix;
    for (let i = 0; i < bits.length; i++) {
      const b = bits[i] & 0x7fffffff;
      if (b >>> 15 === prefix && b <= 0x7f800000) lo[b & (LO_BINS - 1)]++;
    }
  }

  /** The k-th largest |x| (+Infinity when k ≤ 0, 0 when k exceeds the count). */
  result(): number {
    if (this.prefix < 0) return this.remaining <= 0 ? Number.POSITIVE_INFINITY : 0;
    let seen = 0;
    for (let bin = LO_BINS - 1; bin >= 0; bin--) {
      seen += this.lo[bin];
      if (seen >= this.remaining) {
        u32[0] = ((this.prefix << 15) | bin) >>> 0;
        return f32[0];
      }
    }
    throw new Error('unreachable: pass 1 histogram is short');
  }

  /**
   * After pass 1: how many elements have |x| equal to the k-th largest
   * (`ties`) and how many of those the top k takes (`keep`); null when k was
   * out of range (k ≤ 0: nothing is kept; k past the count: everything).
   */
  tieCounts(): { ties: number; keep: number } | null {
    if (this.prefix < 0) return null;
    let seen = 0;
    for (let bin = LO_BINS - 1; bin >= 0; bin--) {
      const c = this.lo[bin];
      if (seen + c >= this.remaining) return { ties: c, keep: this.remaining - seen };
      seen += c;
    }
    throw new Error('unreachable: pass 1 histogram is short');
  }
}

function countNonNaN(bits: Uint32Array): number {
  let n = 0;
  for (let i = 0; i < bits.length; i++) if ((bits[i] & 0x7fffffff) <= 0x7f800000) n++;
  return n;
}

/** Exact k-th largest |x| over the arrays (k is 1-based). */
export function kthLargestAbs(arrays: Float32Array[], k: number): number {
  const s = new AbsSelector();
  for (const a of arrays) s.addPass0(a);
  if (s.choose(k)) for (const a of arrays) s.addPass1(a);
  return s.result();
}
