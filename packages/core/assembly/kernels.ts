// WebAssembly SIMD kernels for wgit. Every function works on one range of
// elements in the shared memory; the JavaScript pool splits big arrays into
// ranges, one per worker. No allocation happens here: callers pass scratch
// space, so the same module can run on many threads over one memory.
//
// Element kinds used by the typed entry points: 0 = F32, 1 = BF16, 2 = F16.

const KIND_F32: i32 = 0;
const KIND_BF16: i32 = 1;
const KIND_F16: i32 = 2;

/** Elements per block of the blocked kernels; blocks stay in L1 cache. */
const BLOCK: i32 = 1024;

export function heapBase(): usize {
  return __heap_base;
}

export function blockSize(): i32 {
  return BLOCK;
}

// ---------------------------------------------------------------- conversions

export function copyBytes(dst: usize, src: usize, n: i32): void {
  memory.copy(dst, src, <usize>n);
}

export function bf16ToF32(src: usize, dst: usize, n: i32): void {
  let i: i32 = 0;
  for (; i + 8 <= n; i += 8) {
    const v = v128.load(src + (<usize>i << 1));
    v128.store(dst + (<usize>i << 2), i32x4.shl(i32x4.extend_low_i16x8_u(v), 16));
    v128.store(dst + (<usize>i << 2), i32x4.shl(i32x4.extend_high_i16x8_u(v), 16), 16);
  }
  for (; i < n; i++) store<u32>(dst + (<usize>i << 2), (<u32>load<u16>(src + (<usize>i << 1))) << 16);
}

@inline function f16x4ToF32(h: v128): v128 {
  const sign = i32x4.shl(v128.and(h, i32x4.splat(0x8000)), 16);
  let o = i32x4.shl(v128.and(h, i32x4.splat(0x7fff)), 13);
  const e = v128.and(o, i32x4.splat(0x0f800000));
  o = i32x4.add(o, i32x4.splat(0x38000000));
  // Inf/NaN: push the exponent the rest of the way to 255.
  o = i32x4.add(o, v128.and(i32x4.eq(e, i32x4.splat(0x0f800000)), i32x4.splat(0x38000000)));
  // Zero/subnormal: build 2^-14·(1 + m/1024) and subtract 2^-14, exact in f32.
  const sub = f32x4.sub(i32x4.add(o, i32x4.splat(0x00800000)), f32x4.splat(<f32>6.103515625e-5));
  o = v128.bitselect(sub, o, i32x4.eq(e, i32x4.splat(0)));
  return v128.or(o, sign);
}

export function f16ToF32(src: usize, dst: usize, n: i32): void {
  let i: i32 = 0;
  for (; i + 8 <= n; i += 8) {
    const v = v128.load(src + (<usize>i << 1));
    v128.store(dst + (<usize>i << 2), f16x4ToF32(i32x4.extend_low_i16x8_u(v)));
    v128.store(dst + (<usize>i << 2), f16x4ToF32(i32x4.extend_high_i16x8_u(v)), 16);
  }
  for (; i < n; i++) {
    const h = i32x4.splat(<i32>load<u16>(src + (<usize>i << 1)));
    store<i32>(dst + (<usize>i << 2), i32x4.extract_lane(f16x4ToF32(h), 0));
  }
}

@inline function f32x4ToBf16(b: v128): v128 {
  const hi = i32x4.shr_u(b, 16);
  const rounded = i32x4.shr_u(i32x4.add(b, i32x4.add(i32x4.splat(0x7fff), v128.and(hi, i32x4.splat(1)))), 16);
  // x != x only for NaN: one compare, where an unsigned integer compare is several on x86.
  return v128.bitselect(v128.or(hi, i32x4.splat(0x40)), rounded, f32x4.ne(b, b));
}

export function f32ToBf16(src: usize, dst: usize, n: i32): void {
  let i: i32 = 0;
  for (; i + 8 <= n; i += 8) {
    const a = f32x4ToBf16(v128.load(src + (<usize>i << 2)));
    const b = f32x4ToBf16(v128.load(src + (<usize>i << 2), 16));
    v128.store(dst + (<usize>i << 1), i16x8.narrow_i32x4_u(a, b));
  }
  for (; i < n; i++) {
    const r = f32x4ToBf16(i32x4.splat(load<i32>(src + (<usize>i << 2))));
    store<u16>(dst + (<usize>i << 1), <u16>i32x4.extract_lane(r, 0));
  }
}

@inline function f32x4ToF16(b: v128): v128 {
  const sign = v128.and(i32x4.shr_u(b, 16), i32x4.splat(0x8000));
  const a = v128.and(b, i32x4.splat(0x7fffffff));
  // Normal range: re-bias the exponent (127 → 15) and round the 13 dropped bits to even.
  const odd = v128.and(i32x4.shr_u(a, 13), i32x4.splat(1));
  let r = i32x4.shr_u(i32x4.add(i32x4.sub(a, i32x4.splat(0x38000000)), i32x4.add(i32x4.splat(0xfff), odd)), 13);
  // Subnormal results: adding 0.5 puts the f16 quantum 2^-24 at the f32 ulp,
  // so the f32 adder's own RNE does the rounding.
  const s = i32x4.sub(f32x4.add(a, f32x4.splat(0.5)), i32x4.splat(0x3f000000));
  r = v128.bitselect(s, r, i32x4.lt_s(a, i32x4.splat(0x38800000)));
  // ≥ 65520 (halfway to 65536) overflows; this also catches ±inf.
  r = v128.bitselect(i32x4.splat(0x7c00), r, i32x4.ge_s(a, i32x4.splat(0x477ff000)));
  const nan = v128.or(i32x4.splat(0x7e00), v128.and(i32x4.shr_u(a, 13), i32x4.splat(0x3ff)));
  r = v128.bitselect(nan, r, i32x4.gt_s(a, i32x4.splat(0x7f800000)));
  return v128.or(r, sign);
}

export function f32ToF16(src: usize, dst: usize, n: i32): void {
  let i: i32 = 0;
  for (; i + 8 <= n; i += 8) {
    const a = f32x4ToF16(v128.load(src + (<usize>i << 2)));
    const b = f32x4ToF16(v128.load(src + (<usize>i << 2), 16));
    v128.store(dst + (<usize>i << 1), i16x8.narrow_i32x4_u(a, b));
  }
  for (; i < n; i++) {
    const r = f32x4ToF16(i32x4.splat(load<i32>(src + (<usize>i << 2))));
    store<u16>(dst + (<usize>i << 1), <u16>i32x4.extract_lane(r, 0));
  }
}

// --------------------------------------------------------------- elementwise

@inline function pick(i: i32, p0: usize, p1: usize, p2: usize, p3: usize, p4: usize, p5: usize, p6: usize, p7: usize): usize {
  switch (i) {
    case 0: return p0;
    case 1: return p1;
    case 2: return p2;
    case 3: return p3;
    case 4: return p4;
    case 5: return p5;
    case 6: return p6;
    default: return p7;
  }
}

@inline function pickF(i: i32, w0: f32, w1: f32, w2: f32, w3: f32, w4: f32, w5: f32, w6: f32, w7: f32): f32 {
  switch (i) {
    case 0: return w0;
    case 1: return w1;
    case 2: return w2;
    case 3: return w3;
    case 4: return w4;
    case 5: return w5;
    case 6: return w6;
    default: return w7;
  }
}

// Generic element access for the fused weighted sum. The element kind is a
// type parameter so every (input, output) pair compiles to its own loop with
// no branches inside: f32 stands for F32, u16 for BF16, i16 for F16.

@inline function loadLo<T>(p: usize, j: i32): v128 {
  if (isFloat<T>()) return v128.load(p + (<usize>j << 2));
  const u = i32x4.extend_low_i16x8_u(v128.load(p + (<usize>j << 1)));
  return isSigned<T>() ? f16x4ToF32(u) : i32x4.shl(u, 16);
}

@inline function loadHi<T>(p: usize, j: i32): v128 {
  if (isFloat<T>()) return v128.load(p + (<usize>j << 2), 16);
  const u = i32x4.extend_high_i16x8_u(v128.load(p + (<usize>j << 1)));
  return isSigned<T>() ? f16x4ToF32(u) : i32x4.shl(u, 16);
}

@inline function loadOne<T>(p: usize, j: i32): v128 {
  if (isFloat<T>()) return f32x4.splat(load<f32>(p + (<usize>j << 2)));
  const u = i32x4.splat(<i32>load<u16>(p + (<usize>j << 1)));
  return isSigned<T>() ? f16x4ToF32(u) : i32x4.shl(u, 16);
}

@inline function store8<T>(p: usize, j: i32, a: v128, b: v128): void {
  if (isFloat<T>()) {
    v128.store(p + (<usize>j << 2), a);
    v128.store(p + (<usize>j << 2), b, 16);
  } else if (isSigned<T>()) {
    v128.store(p + (<usize>j << 1), i16x8.narrow_i32x4_u(f32x4ToF16(a), f32x4ToF16(b)));
  } else {
    v128.store(p + (<usize>j << 1), i16x8.narrow_i32x4_u(f32x4ToBf16(a), f32x4ToBf16(b)));
  }
}

@inline function storeOne<T>(p: usize, j: i32, a: v128): void {
  if (isFloat<T>()) store<f32>(p + (<usize>j << 2), f32x4.extract_lane(a, 0));
  else if (isSigned<T>()) store<u16>(p + (<usize>j << 1), <u16>i32x4.extract_lane(f32x4ToF16(a), 0));
  else store<u16>(p + (<usize>j << 1), <u16>i32x4.extract_lane(f32x4ToBf16(a), 0));
}

/** Input i's pointer is at table + 4i, its splatted weight at table + 32 + 16i. */
function wsum<I, O>(out: usize, n: i32, k: i32, table: usize): void {
  const p0 = load<usize>(table);
  const w0 = v128.load(table + 32);
  let j: i32 = 0;
  for (; j + 8 <= n; j += 8) {
    let a = f32x4.mul(loadLo<I>(p0, j), w0);
    let b = f32x4.mul(loadHi<I>(p0, j), w0);
    for (let i: i32 = 1; i < k; i++) {
      const p = load<usize>(table + (<usize>i << 2));
      const w = v128.load(table + 32 + (<usize>i << 4));
      a = f32x4.add(a, f32x4.mul(loadLo<I>(p, j), w));
      b = f32x4.add(b, f32x4.mul(loadHi<I>(p, j), w));
    }
    store8<O>(out, j, a, b);
  }
  for (; j < n; j++) {
    let a = f32x4.mul(loadOne<I>(p0, j), w0);
    for (let i: i32 = 1; i < k; i++) {
      const p = load<usize>(table + (<usize>i << 2));
      a = f32x4.add(a, f32x4.mul(loadOne<I>(p, j), v128.load(table + 32 + (<usize>i << 4))));
    }
    storeOne<O>(out, j, a);
  }
}

/**
 * out = Σ wᵢ·xᵢ over k ≤ 8 inputs in one pass, reading inKind and writing
 * outKind directly. Sum order ((w₀x₀ + w₁x₁) + w₂x₂) + …, each step rounded
 * to f32. scratch: 160 bytes per calling thread for the pointer/weight table.
 */
export function weightedSum(
  out: usize, outKind: i32, inKind: i32, n: i32, k: i32, scratch: usize,
  p0: usize, p1: usize, p2: usize, p3: usize, p4: usize, p5: usize, p6: usize, p7: usize,
  w0: f32, w1: f32, w2: f32, w3: f32, w4: f32, w5: f32, w6: f32, w7: f32,
): void {
  for (let i: i32 = 0; i < 8; i++) {
    store<usize>(scratch + (<usize>i << 2), pick(i, p0, p1, p2, p3, p4, p5, p6, p7));
    v128.store(scratch + 32 + (<usize>i << 4), f32x4.splat(pickF(i, w0, w1, w2, w3, w4, w5, w6, w7)));
  }
  switch (inKind * 3 + outKind) {
    case KIND_F32 * 3 + KIND_F32: wsum<f32, f32>(out, n, k, scratch); break;
    case KIND_F32 * 3 + KIND_BF16: wsum<f32, u16>(out, n, k, scratch); break;
    case KIND_F32 * 3 + KIND_F16: wsum<f32, i16>(out, n, k, scratch); break;
    case KIND_BF16 * 3 + KIND_F32: wsum<u16, f32>(out, n, k, scratch); break;
    case KIND_BF16 * 3 + KIND_BF16: wsum<u16, u16>(out, n, k, scratch); break;
    case KIND_BF16 * 3 + KIND_F16: wsum<u16, i16>(out, n, k, scratch); break;
    case KIND_F16 * 3 + KIND_F32: wsum<i16, f32>(out, n, k, scratch); break;
    case KIND_F16 * 3 + KIND_BF16: wsum<i16, u16>(out, n, k, scratch); break;
    default: wsum<i16, i16>(out, n, k, scratch);
  }
}

// ------------------------------------------------------------------ transfer
// Fine-tuning transfer: out = new + s·(ft − old) in f32, with the closeness
// sums in f64 written per block (src/device/device.ts, TransferSums, is the
// definition; reference.ts transferF32 the scalar form).

/** Four elements (16-bit kinds: 8 bytes, so nothing past them is read). */
@inline function load4<T>(p: usize, j: i32): v128 {
  if (isFloat<T>()) return v128.load(p + (<usize>j << 2));
  const u = i32x4.extend_low_i16x8_u(v128.load64_zero(p + (<usize>j << 1)));
  return isSigned<T>() ? f16x4ToF32(u) : i32x4.shl(u, 16);
}

@inline function store4<T>(p: usize, j: i32, a: v128): void {
  if (isFloat<T>()) v128.store(p + (<usize>j << 2), a);
  else if (isSigned<T>()) {
    const h = f32x4ToF16(a);
    v128.store64_lane(p + (<usize>j << 1), i16x8.narrow_i32x4_u(h, h), 0);
  } else {
    const h = f32x4ToBf16(a);
    v128.store64_lane(p + (<usize>j << 1), i16x8.narrow_i32x4_u(h, h), 0);
  }
}

/**
 * One range [0, n) starting on a block boundary of the whole call; block b
 * of the range writes its four sums (dot, shift2, delta2, old2) at
 * partials + 32·b. Element i of a block adds into lane i mod 4 (f64x2 pairs
 * lo = lanes 0, 1 and hi = lanes 2, 3), lanes combine as (l0 + l1) + (l2 + l3),
 * then the block's last n mod 4 elements add in order.
 */
function xfer<I, O>(out: usize, n: i32, s: f32, pn: usize, pf: usize, po: usize, partials: usize): void {
  const sv = f32x4.splat(s);
  for (let b0: i32 = 0; b0 < n; b0 += BLOCK) {
    const end = min(n, b0 + BLOCK);
    const body = end - ((end - b0) & 3);
    let dLo = f64x2.splat(0);
    let dHi = f64x2.splat(0);
    let sLo = f64x2.splat(0);
    let sHi = f64x2.splat(0);
    let lLo = f64x2.splat(0);
    let lHi = f64x2.splat(0);
    let oLo = f64x2.splat(0);
    let oHi = f64x2.splat(0);
    let j: i32 = b0;
    // eight at a time (one 16-byte load per 16-bit input), then one group of four
    for (; j + 8 <= body; j += 8) {
      const nw = loadLo<I>(pn, j);
      const o = loadLo<I>(po, j);
      const d = f32x4.sub(loadLo<I>(pf, j), o);
      const nw2 = loadHi<I>(pn, j);
      const o2 = loadHi<I>(po, j);
      const d2 = f32x4.sub(loadHi<I>(pf, j), o2);
      store8<O>(out, j, f32x4.add(nw, f32x4.mul(d, sv)), f32x4.add(nw2, f32x4.mul(d2, sv)));
      let oL = f64x2.promote_low_f32x4(o);
      let oH = highPair(o);
      let dL = f64x2.promote_low_f32x4(d);
      let dH = highPair(d);
      let shL = f64x2.sub(f64x2.promote_low_f32x4(nw), oL);
      let shH = f64x2.sub(highPair(nw), oH);
      dLo = f64x2.add(dLo, f64x2.mul(shL, dL));
      dHi = f64x2.add(dHi, f64x2.mul(shH, dH));
      sLo = f64x2.add(sLo, f64x2.mul(shL, shL));
      sHi = f64x2.add(sHi, f64x2.mul(shH, shH));
      lLo = f64x2.add(lLo, f64x2.mul(dL, dL));
      lHi = f64x2.add(lHi, f64x2.mul(dH, dH));
      oLo = f64x2.add(oLo, f64x2.mul(oL, oL));
      oHi = f64x2.add(oHi, f64x2.mul(oH, oH));
      oL = f64x2.promote_low_f32x4(o2);
      oH = highPair(o2);
      dL = f64x2.promote_low_f32x4(d2);
      dH = highPair(d2);
      shL = f64x2.sub(f64x2.promote_low_f32x4(nw2), oL);
      shH = f64x2.sub(highPair(nw2), oH);
      dLo = f64x2.add(dLo, f64x2.mul(shL, dL));
      dHi = f64x2.add(dHi, f64x2.mul(shH, dH));
      sLo = f64x2.add(sLo, f64x2.mul(shL, shL));
      sHi = f64x2.add(sHi, f64x2.mul(shH, shH));
      lLo = f64x2.add(lLo, f64x2.mul(dL, dL));
      lHi = f64x2.add(lHi, f64x2.mul(dH, dH));
      oLo = f64x2.add(oLo, f64x2.mul(oL, oL));
      oHi = f64x2.add(oHi, f64x2.mul(oH, oH));
    }
    for (; j < body; j += 4) {
      const nw = load4<I>(pn, j);
      const o = load4<I>(po, j);
      const d = f32x4.sub(load4<I>(pf, j), o);
      store4<O>(out, j, f32x4.add(nw, f32x4.mul(d, sv)));
      const oL = f64x2.promote_low_f32x4(o);
      const oH = highPair(o);
      const dL = f64x2.promote_low_f32x4(d);
      const dH = highPair(d);
      const shL = f64x2.sub(f64x2.promote_low_f32x4(nw), oL);
      const shH = f64x2.sub(highPair(nw), oH);
      dLo = f64x2.add(dLo, f64x2.mul(shL, dL));
      dHi = f64x2.add(dHi, f64x2.mul(shH, dH));
      sLo = f64x2.add(sLo, f64x2.mul(shL, shL));
      sHi = f64x2.add(sHi, f64x2.mul(shH, shH));
      lLo = f64x2.add(lLo, f64x2.mul(dL, dL));
      lHi = f64x2.add(lHi, f64x2.mul(dH, dH));
      oLo = f64x2.add(oLo, f64x2.mul(oL, oL));
      oHi = f64x2.add(oHi, f64x2.mul(oH, oH));
    }
    let bd = lanes(dLo, dHi);
    let bs = lanes(sLo, sHi);
    let bl = lanes(lLo, lHi);
    let bo = lanes(oLo, oHi);
    for (; j < end; j++) {
      const nw = loadOne<I>(pn, j);
      const o = loadOne<I>(po, j);
      const d = f32x4.sub(loadOne<I>(pf, j), o);
      storeOne<O>(out, j, f32x4.add(nw, f32x4.mul(d, sv)));
      const ov = <f64>f32x4.extract_lane(o, 0);
      const dv = <f64>f32x4.extract_lane(d, 0);
      const sh = <f64>f32x4.extract_lane(nw, 0) - ov;
      bd += sh * dv;
      bs += sh * sh;
      bl += dv * dv;
      bo += ov * ov;
    }
    store<f64>(partials, bd);
    store<f64>(partials, bs, 8);
    store<f64>(partials, bl, 16);
    store<f64>(partials, bo, 24);
    partials += 32;
  }
}

/**
 * out = new + s·(ft − old) over n elements reading inKind and writing
 * outKind directly; per-block closeness sums at `partials` (32 bytes a block).
 */
export function transfer(
  out: usize, outKind: i32, inKind: i32, n: i32, s: f32, pn: usize, pf: usize, po: usize, partials: usize,
): void {
  switch (inKind * 3 + outKind) {
    case KIND_F32 * 3 + KIND_F32: xfer<f32, f32>(out, n, s, pn, pf, po, partials); break;
    case KIND_F32 * 3 + KIND_BF16: xfer<f32, u16>(out, n, s, pn, pf, po, partials); break;
    case KIND_F32 * 3 + KIND_F16: xfer<f32, i16>(out, n, s, pn, pf, po, partials); break;
    case KIND_BF16 * 3 + KIND_F32: xfer<u16, f32>(out, n, s, pn, pf, po, partials); break;
    case KIND_BF16 * 3 + KIND_BF16: xfer<u16, u16>(out, n, s, pn, pf, po, partials); break;
    case KIND_BF16 * 3 + KIND_F16: xfer<u16, i16>(out, n, s, pn, pf, po, partials); break;
    case KIND_F16 * 3 + KIND_F32: xfer<i16, f32>(out, n, s, pn, pf, po, partials); break;
    case KIND_F16 * 3 + KIND_BF16: xfer<i16, u16>(out, n, s, pn, pf, po, partials); break;
    default: xfer<i16, i16>(out, n, s, pn, pf, po, partials);
  }
}

// ------------------------------------------------------------------- diff
// `wgit diff`'s figures of a pair of tensors in one pass over their raw bytes
// (src/device/device.ts, DiffSums, is the definition; reference.ts diffStats
// the scalar form): δ = f32(b − a); Σ δ², Σ a², Σ b², Σ a·b in f64 in the
// transfer's block order; the largest non-NaN |δ|; bit-identical elements.

/** Four zero-extended 16-bit patterns as f32 (i16 stands for F16, u16 for BF16). */
@inline function decode4<T>(u: v128): v128 {
  return isSigned<T>() ? f16x4ToF32(u) : i32x4.shl(u, 16);
}

/**
 * One range [0, n) starting on a block boundary of the whole call; block b
 * of the range writes six f64 at partials + 48·b: Σ δ², Σ a², Σ b², Σ a·b,
 * max |δ| (NaN not ranked, 0 when none) and the count of elements whose
 * stored bits are equal. Sums: element i of a block adds into lane i mod 4
 * (f64x2 pairs lo = lanes 0, 1 and hi = lanes 2, 3), lanes combine as
 * (l0 + l1) + (l2 + l3), then the block's last n mod 4 elements add in order.
 */
function diffBlocks<T>(n: i32, pa: usize, pb: usize, partials: usize): void {
  for (let b0: i32 = 0; b0 < n; b0 += BLOCK) {
    const end = min(n, b0 + BLOCK);
    const body = end - ((end - b0) & 3);
    let dLo = f64x2.splat(0);
    let dHi = f64x2.splat(0);
    let aLo = f64x2.splat(0);
    let aHi = f64x2.splat(0);
    let bLo = f64x2.splat(0);
    let bHi = f64x2.splat(0);
    let xLo = f64x2.splat(0);
    let xHi = f64x2.splat(0);
    // pmax(m, x) = m < x ? x : m: a NaN x never replaces m, which starts at 0
    let mx = f32x4.splat(0);
    // equal elements: i32x4.eq / i16x8.eq give −1 per equal lane, subtracted
    // (at most 256 per i32 lane and 128 per i16 lane in a block)
    let same = i32x4.splat(0);
    let same16 = i16x8.splat(0);
    let j: i32 = b0;
    // eight at a time (one 16-byte load per 16-bit input), then one group of four
    for (; j + 8 <= body; j += 8) {
      let a0: v128;
      let a1: v128;
      let y0: v128;
      let y1: v128;
      if (isFloat<T>()) {
        a0 = v128.load(pa + (<usize>j << 2));
        a1 = v128.load(pa + (<usize>j << 2), 16);
        y0 = v128.load(pb + (<usize>j << 2));
        y1 = v128.load(pb + (<usize>j << 2), 16);
        same = i32x4.sub(same, i32x4.eq(a0, y0));
        same = i32x4.sub(same, i32x4.eq(a1, y1));
      } else {
        const ra = v128.load(pa + (<usize>j << 1));
        const rb = v128.load(pb + (<usize>j << 1));
        same16 = i16x8.sub(same16, i16x8.eq(ra, rb));
        a0 = decode4<T>(i32x4.extend_low_i16x8_u(ra));
        a1 = decode4<T>(i32x4.extend_high_i16x8_u(ra));
        y0 = decode4<T>(i32x4.extend_low_i16x8_u(rb));
        y1 = decode4<T>(i32x4.extend_high_i16x8_u(rb));
      }
      const d0 = f32x4.sub(y0, a0);
      const d1 = f32x4.sub(y1, a1);
      mx = f32x4.pmax(mx, f32x4.abs(d0));
      mx = f32x4.pmax(mx, f32x4.abs(d1));
      let dL = f64x2.promote_low_f32x4(d0);
      let dH = highPair(d0);
      let aL = f64x2.promote_low_f32x4(a0);
      let aH = highPair(a0);
      let yL = f64x2.promote_low_f32x4(y0);
      let yH = highPair(y0);
      dLo = f64x2.add(dLo, f64x2.mul(dL, dL));
      dHi = f64x2.add(dHi, f64x2.mul(dH, dH));
      aLo = f64x2.add(aLo, f64x2.mul(aL, aL));
      aHi = f64x2.add(aHi, f64x2.mul(aH, aH));
      bLo = f64x2.add(bLo, f64x2.mul(yL, yL));
      bHi = f64x2.add(bHi, f64x2.mul(yH, yH));
      xLo = f64x2.add(xLo, f64x2.mul(aL, yL));
      xHi = f64x2.add(xHi, f64x2.mul(aH, yH));
      dL = f64x2.promote_low_f32x4(d1);
      dH = highPair(d1);
      aL = f64x2.promote_low_f32x4(a1);
      aH = highPair(a1);
      yL = f64x2.promote_low_f32x4(y1);
      yH = highPair(y1);
      dLo = f64x2.add(dLo, f64x2.mul(dL, dL));
      dHi = f64x2.add(dHi, f64x2.mul(dH, dH));
      aLo = f64x2.add(aLo, f64x2.mul(aL, aL));
      aHi = f64x2.add(aHi, f64x2.mul(aH, aH));
      bLo = f64x2.add(bLo, f64x2.mul(yL, yL));
      bHi = f64x2.add(bHi, f64x2.mul(yH, yH));
      xLo = f64x2.add(xLo, f64x2.mul(aL, yL));
      xHi = f64x2.add(xHi, f64x2.mul(aH, yH));
    }
    for (; j < body; j += 4) {
      let a0: v128;
      let y0: v128;
      if (isFloat<T>()) {
        a0 = v128.load(pa + (<usize>j << 2));
        y0 = v128.load(pb + (<usize>j << 2));
        same = i32x4.sub(same, i32x4.eq(a0, y0));
      } else {
        // 8 bytes each, so nothing past the four elements is read
        const ua = i32x4.extend_low_i16x8_u(v128.load64_zero(pa + (<usize>j << 1)));
        const ub = i32x4.extend_low_i16x8_u(v128.load64_zero(pb + (<usize>j << 1)));
        same = i32x4.sub(same, i32x4.eq(ua, ub));
        a0 = decode4<T>(ua);
        y0 = decode4<T>(ub);
      }
      const d0 = f32x4.sub(y0, a0);
      mx = f32x4.pmax(mx, f32x4.abs(d0));
      const dL = f64x2.promote_low_f32x4(d0);
      const dH = highPair(d0);
      const aL = f64x2.promote_low_f32x4(a0);
      const aH = highPair(a0);
      const yL = f64x2.promote_low_f32x4(y0);
      const yH = highPair(y0);
      dLo = f64x2.add(dLo, f64x2.mul(dL, dL));
      dHi = f64x2.add(dHi, f64x2.mul(dH, dH));
      aLo = f64x2.add(aLo, f64x2.mul(aL, aL));
      aHi = f64x2.add(aHi, f64x2.mul(aH, aH));
      bLo = f64x2.add(bLo, f64x2.mul(yL, yL));
      bHi = f64x2.add(bHi, f64x2.mul(yH, yH));
      xLo = f64x2.add(xLo, f64x2.mul(aL, yL));
      xHi = f64x2.add(xHi, f64x2.mul(aH, yH));
    }
    let sd = lanes(dLo, dHi);
    let sa = lanes(aLo, aHi);
    let sb = lanes(bLo, bHi);
    let sx = lanes(xLo, xHi);
    let m = f32x4.extract_lane(mx, 0);
    const m1 = f32x4.extract_lane(mx, 1);
    const m2 = f32x4.extract_lane(mx, 2);
    const m3 = f32x4.extract_lane(mx, 3);
    if (m1 > m) m = m1;
    if (m2 > m) m = m2;
    if (m3 > m) m = m3;
    let count: i32 =
      i32x4.extract_lane(same, 0) + i32x4.extract_lane(same, 1) + i32x4.extract_lane(same, 2) + i32x4.extract_lane(same, 3);
    if (!isFloat<T>()) {
      const s4 = i32x4.extadd_pairwise_i16x8_u(same16);
      count += i32x4.extract_lane(s4, 0) + i32x4.extract_lane(s4, 1) + i32x4.extract_lane(s4, 2) + i32x4.extract_lane(s4, 3);
    }
    for (; j < end; j++) {
      const a = f32x4.extract_lane(loadOne<T>(pa, j), 0);
      const y = f32x4.extract_lane(loadOne<T>(pb, j), 0);
      if (isFloat<T>()) {
        if (load<u32>(pa + (<usize>j << 2)) == load<u32>(pb + (<usize>j << 2))) count++;
      } else if (load<u16>(pa + (<usize>j << 1)) == load<u16>(pb + (<usize>j << 1))) count++;
      const d = y - a;
      const ad = abs<f32>(d);
      if (ad > m) m = ad;
      const dv = <f64>d;
      const av = <f64>a;
      const yv = <f64>y;
      sd += dv * dv;
      sa += av * av;
      sb += yv * yv;
      sx += av * yv;
    }
    store<f64>(partials, sd);
    store<f64>(partials, sa, 8);
    store<f64>(partials, sb, 16);
    store<f64>(partials, sx, 24);
    store<f64>(partials, <f64>m, 32);
    store<f64>(partials, <f64>count, 40);
    partials += 48;
  }
}

/** diff figures of a against b, n elements of `kind` from block 0 of the range; 48 bytes a block at `partials`. */
export function diffStats(kind: i32, n: i32, pa: usize, pb: usize, partials: usize): void {
  if (kind == KIND_F32) diffBlocks<f32>(n, pa, pb, partials);
  else if (kind == KIND_BF16) diffBlocks<u16>(n, pa, pb, partials);
  else diffBlocks<i16>(n, pa, pb, partials);
}

/** out = a − b */
export function sub(a: usize, b: usize, out: usize, n: i32): void {
  let j: i32 = 0;
  for (; j + 4 <= n; j += 4) {
    const o = <usize>j << 2;
    v128.store(out + o, f32x4.sub(v128.load(a + o), v128.load(b + o)));
  }
  for (; j < n; j++) {
    const o = <usize>j << 2;
    store<f32>(out + o, load<f32>(a + o) - load<f32>(b + o));
  }
}

/** out = a + s·b */
export function axpy(a: usize, b: usize, out: usize, n: i32, s: f32): void {
  const sv = f32x4.splat(s);
  let j: i32 = 0;
  for (; j + 4 <= n; j += 4) {
    const o = <usize>j << 2;
    v128.store(out + o, f32x4.add(v128.load(a + o), f32x4.mul(v128.load(b + o), sv)));
  }
  for (; j < n; j++) {
    const o = <usize>j << 2;
    store<f32>(out + o, load<f32>(a + o) + load<f32>(b + o) * s);
  }
}

// ---------------------------------------------------------------- reductions
// Four f64 lane sums (element j goes to lane j mod 4), combined as
// (l0 + l1) + (l2 + l3), then the tail added in order. Products of two f32
// are exact in f64, so only the sums round.

@inline function lanes(lo: v128, hi: v128): f64 {
  return (f64x2.extract_lane(lo, 0) + f64x2.extract_lane(lo, 1)) + (f64x2.extract_lane(hi, 0) + f64x2.extract_lane(hi, 1));
}

@inline function highPair(v: v128): v128 {
  return f64x2.promote_low_f32x4(i32x4.shuffle(v, v, 2, 3, 0, 1));
}

export function dot(a: usize, b: usize, n: i32): f64 {
  let lo = f64x2.splat(0);
  let hi = f64x2.splat(0);
  let j: i32 = 0;
  for (; j + 4 <= n; j += 4) {
    const o = <usize>j << 2;
    const va = v128.load(a + o);
    const vb = v128.load(b + o);
    lo = f64x2.add(lo, f64x2.mul(f64x2.promote_low_f32x4(va), f64x2.promote_low_f32x4(vb)));
    hi = f64x2.add(hi, f64x2.mul(highPair(va), highPair(vb)));
  }
  let r = lanes(lo, hi);
  for (; j < n; j++) r += <f64>load<f32>(a + (<usize>j << 2)) * <f64>load<f32>(b + (<usize>j << 2));
  return r;
}

export function sumSq(a: usize, n: i32): f64 {
  let lo = f64x2.splat(0);
  let hi = f64x2.splat(0);
  let j: i32 = 0;
  for (; j + 4 <= n; j += 4) {
    const va = v128.load(a + (<usize>j << 2));
    const l = f64x2.promote_low_f32x4(va);
    const h = highPair(va);
    lo = f64x2.add(lo, f64x2.mul(l, l));
    hi = f64x2.add(hi, f64x2.mul(h, h));
  }
  let r = lanes(lo, hi);
  for (; j < n; j++) {
    const x = <f64>load<f32>(a + (<usize>j << 2));
    r += x * x;
  }
  return r;
}

export function sumAbs(a: usize, n: i32): f64 {
  let lo = f64x2.splat(0);
  let hi = f64x2.splat(0);
  let j: i32 = 0;
  for (; j + 4 <= n; j += 4) {
    const va = f32x4.abs(v128.load(a + (<usize>j << 2)));
    lo = f64x2.add(lo, f64x2.promote_low_f32x4(va));
    hi = f64x2.add(hi, highPair(va));
  }
  let r = lanes(lo, hi);
  for (; j < n; j++) r += Math.abs(<f64>load<f32>(a + (<usize>j << 2)));
  return r;
}

// ----------------------------------------------------------- radix selection

/**
 * Histogram of |x| bit patterns (sign bit dropped, so order of patterns is
 * order of magnitudes). Pass 0 counts bits 30..15 (65,536 bins); pass 1
 * counts bits 14..0 (32,768 bins) of the values whose bits 30..15 equal
 * `prefix`. Counts are added to `hist` (u32), so calls can stream.
 */
export function absHistogram(x: usize, n: i32, pass: i32, prefix: i32, hist: usize): void {
  if (pass == 0) {
    for (let j: i32 = 0; j < n; j++) {
      const a = load<u32>(x + (<usize>j << 2)) & 0x7fffffff;
      // NaN is never ranked (docs/kernels.md, NaN policy): not counted.
      if (a > 0x7f800000) continue;
      const p = hist + (<usize>(a >>> 15) << 2);
      store<u32>(p, load<u32>(p) + 1);
    }
    return;
  }
  const want = i32x4.splat(prefix);
  let j: i32 = 0;
  for (; j + 4 <= n; j += 4) {
    const v = v128.and(v128.load(x + (<usize>j << 2)), i32x4.splat(0x7fffffff));
    // Most values miss the chosen bin: test four at once before counting.
    if (!v128.any_true(i32x4.eq(i32x4.shr_u(v, 15), want))) continue;
    for (let t: i32 = 0; t < 4; t++) countLow(load<u32>(x + (<usize>(j + t) << 2)), prefix, hist);
  }
  for (; j < n; j++) countLow(load<u32>(x + (<usize>j << 2)), prefix, hist);
}

@inline function countLow(bits: u32, prefix: i32, hist: usize): void {
  const a = bits & 0x7fffffff;
  if (<i32>(a >>> 15) == prefix && a <= 0x7f800000) {
    const p = hist + (<usize>(a & 0x7fff) << 2);
    store<u32>(p, load<u32>(p) + 1);
  }
}

// ----------------------------------------------------------------------- TIES

/** Number of entries with |x| = thr (bit-equal magnitudes; NaN never counts): the ties of a TIES threshold. */
export function countAbsEqual(x: usize, n: i32, thr: f32): i32 {
  const tv = f32x4.splat(thr);
  let c = i32x4.splat(0);
  let j: i32 = 0;
  for (; j + 4 <= n; j += 4) c = i32x4.sub(c, f32x4.eq(f32x4.abs(v128.load(x + (<usize>j << 2))), tv));
  let total = i32x4.extract_lane(c, 0) + i32x4.extract_lane(c, 1) + i32x4.extract_lane(c, 2) + i32x4.extract_lane(c, 3);
  for (; j < n; j++) if (abs<f32>(load<f32>(x + (<usize>j << 2))) == thr) total++;
  return total;
}

/**
 * The kept-lane mask of one vector of task-vector entries: |t| ≥ thr and
 * t ≠ 0, where a lane with |t| = thr also needs a unit of the input's tie
 * quota (lanes in index order). `quota` points at the input's remaining
 * quota (an i32; -1: unlimited), updated.
 */
@inline function keptMask(t: v128, thr: v128, quota: usize): v128 {
  const a = f32x4.abs(t);
  let keep = v128.and(f32x4.ge(a, thr), f32x4.ne(t, f32x4.splat(0)));
  let q = load<i32>(quota);
  if (q < 0) return keep;
  const eq = v128.and(f32x4.eq(a, thr), keep);
  if (!v128.any_true(eq)) return keep;
  let drop = i32x4.splat(0);
  if (i32x4.extract_lane(eq, 0) != 0) { if (q > 0) q--; else drop = i32x4.replace_lane(drop, 0, -1); }
  if (i32x4.extract_lane(eq, 1) != 0) { if (q > 0) q--; else drop = i32x4.replace_lane(drop, 1, -1); }
  if (i32x4.extract_lane(eq, 2) != 0) { if (q > 0) q--; else drop = i32x4.replace_lane(drop, 2, -1); }
  if (i32x4.extract_lane(eq, 3) != 0) { if (q > 0) q--; else drop = i32x4.replace_lane(drop, 3, -1); }
  store<i32>(quota, q);
  return v128.andnot(keep, drop);
}

/**
 * TIES trim + sign election + disjoint mean over k ≤ 8 task vectors (see
 * reference.ts for the scalar definition). q0…q7: the number of entries equal
 * to the threshold each input keeps in this call, first by index (-1: all).
 * scratch: 4·BLOCK f32, then 16 i32.
 */
export function ties(
  out: usize, n: i32, k: i32, scratch: usize,
  p0: usize, p1: usize, p2: usize, p3: usize, p4: usize, p5: usize, p6: usize, p7: usize,
  w0: f32, w1: f32, w2: f32, w3: f32, w4: f32, w5: f32, w6: f32, w7: f32,
  t0: f32, t1: f32, t2: f32, t3: f32, t4: f32, t5: f32, t6: f32, t7: f32,
  q0: i32, q1: i32, q2: i32, q3: i32, q4: i32, q5: i32, q6: i32, q7: i32,
): void {
  const sBuf = scratch;
  const numBuf = scratch + (<usize>BLOCK << 2);
  const denBuf = scratch + (<usize>BLOCK << 3);
  const anyBuf = scratch + (<usize>BLOCK << 2) * 3;
  // quotas at the block's start (both passes over a block make the same choices), and a working copy
  const qStart = scratch + (<usize>BLOCK << 4);
  const qWork = qStart + 32;
  store<i32>(qStart, q0); store<i32>(qStart, q1, 4); store<i32>(qStart, q2, 8); store<i32>(qStart, q3, 12);
  store<i32>(qStart, q4, 16); store<i32>(qStart, q5, 20); store<i32>(qStart, q6, 24); store<i32>(qStart, q7, 28);
  const zero = f32x4.splat(0);
  for (let start: i32 = 0; start < n; start += BLOCK) {
    // Whole vectors only inside the block; the last partial vector is done
    // with padded lanes that are never stored.
    const m = min(BLOCK, n - start);
    const mv = (m + 3) & ~3;
    memory.fill(sBuf, 0, <usize>mv << 2);
    memory.fill(numBuf, 0, <usize>mv << 2);
    memory.fill(denBuf, 0, <usize>mv << 2);
    memory.fill(anyBuf, 0, <usize>mv << 2);
    memory.copy(qWork, qStart, 32);
    for (let i: i32 = 0; i < k; i++) {
      const x = pick(i, p0, p1, p2, p3, p4, p5, p6, p7) + (<usize>start << 2);
      const w = f32x4.splat(pickF(i, w0, w1, w2, w3, w4, w5, w6, w7));
      const thr = f32x4.splat(pickF(i, t0, t1, t2, t3, t4, t5, t6, t7));
      const quota = qWork + (<usize>i << 2);
      for (let j: i32 = 0; j < mv; j += 4) {
        const o = <usize>j << 2;
        const t = loadPartial(x + o, m - j);
        const kept = v128.and(t, keptMask(t, thr, quota));
        v128.store(sBuf + o, f32x4.add(v128.load(sBuf + o), f32x4.mul(w, kept)));
      }
    }
    for (let i: i32 = 0; i < k; i++) {
      const x = pick(i, p0, p1, p2, p3, p4, p5, p6, p7) + (<usize>start << 2);
      const w = f32x4.splat(pickF(i, w0, w1, w2, w3, w4, w5, w6, w7));
      const thr = f32x4.splat(pickF(i, t0, t1, t2, t3, t4, t5, t6, t7));
      const quota = qStart + (<usize>i << 2);
      for (let j: i32 = 0; j < mv; j += 4) {
        const o = <usize>j << 2;
        const t = loadPartial(x + o, m - j);
        const kept = v128.and(t, keptMask(t, thr, quota));
        // agreement compares the sign of the weighted entry wᵢτ̂ᵢ with the elected sign
        const wk = f32x4.mul(w, kept);
        const plus = f32x4.ge(v128.load(sBuf + o), zero);
        const agree = v128.bitselect(f32x4.gt(wk, zero), f32x4.lt(wk, zero), plus);
        v128.store(numBuf + o, f32x4.add(v128.load(numBuf + o), v128.and(wk, agree)));
        v128.store(denBuf + o, f32x4.add(v128.load(denBuf + o), v128.and(w, agree)));
        v128.store(anyBuf + o, v128.or(v128.load(anyBuf + o), agree));
      }
    }
    const dst = out + (<usize>start << 2);
    let j: i32 = 0;
    for (; j + 4 <= m; j += 4) {
      const o = <usize>j << 2;
      // a zero divisor (weights cancelling) counts as 1
      const num = v128.load(numBuf + o);
      const den = v128.load(denBuf + o);
      const q = v128.bitselect(num, f32x4.div(num, den), f32x4.eq(den, zero));
      v128.store(dst + o, v128.and(q, v128.load(anyBuf + o)));
    }
    for (; j < m; j++) {
      const o = <usize>j << 2;
      const num = load<f32>(numBuf + o);
      const den = load<f32>(denBuf + o);
      const r = load<u32>(anyBuf + o) != 0 ? (den == 0 ? num : num / den) : <f32>0;
      store<f32>(dst + o, r);
    }
  }
}

/** Loads up to 4 f32 without reading past the end (missing lanes are 0, which TIES ignores). */
@inline function loadPartial(p: usize, left: i32): v128 {
  if (left >= 4) return v128.load(p);
  let v = f32x4.splat(0);
  v = f32x4.replace_lane(v, 0, load<f32>(p));
  if (left > 1) v = f32x4.replace_lane(v, 1, load<f32>(p, 4));
  if (left > 2) v = f32x4.replace_lane(v, 2, load<f32>(p, 8));
  return v;
}

// ------------------------------------------------------------------------ DARE
// Counter-based RNG, defined in src/device/rng.ts (keep the two in step).

@inline function fmix(h: v128): v128 {
  h = v128.xor(h, i32x4.shr_u(h, 16));
  h = i32x4.mul(h, i32x4.splat(<i32>0x85ebca6b));
  h = v128.xor(h, i32x4.shr_u(h, 13));
  h = i32x4.mul(h, i32x4.splat(<i32>0xc2b2ae35));
  return v128.xor(h, i32x4.shr_u(h, 16));
}

@inline function fmix32(h: u32): u32 {
  h ^= h >>> 16;
  h *= 0x85ebca6b;
  h ^= h >>> 13;
  h *= 0xc2b2ae35;
  h ^= h >>> 16;
  return h;
}

/**
 * out[j] = keep ? x[j]·scale : 0 with keep ⇔ (hash(seed, stream, idx) >>> 8) ≥ cut,
 * idx = (idxHi·2^32 + idxLo + j); the caller keeps idxLo + n within 2^32.
 */
export function dareDrop(x: usize, out: usize, n: i32, seed: u32, stream: u32, idxLo: u32, idxHi: u32, cut: u32, scale: f32): void {
  const k1 = fmix32(fmix32(seed ^ 0x243f6a88) ^ stream ^ 0x85a308d3);
  const k2 = fmix32(k1 ^ idxHi ^ 0x13198a2e);
  const k1v = i32x4.splat(<i32>k1);
  const k2v = i32x4.splat(<i32>k2);
  const cutv = i32x4.splat(<i32>cut);
  const sv = f32x4.splat(scale);
  let idx = i32x4.add(i32x4.splat(<i32>idxLo), i32x4(0, 1, 2, 3));
  const four = i32x4.splat(4);
  let j: i32 = 0;
  for (; j + 4 <= n; j += 4) {
    const h = fmix(v128.xor(fmix(v128.xor(idx, k2v)), k1v));
    const keep = i32x4.ge_u(i32x4.shr_u(h, 8), cutv);
    const o = <usize>j << 2;
    v128.store(out + o, v128.and(f32x4.mul(v128.load(x + o), sv), keep));
    idx = i32x4.add(idx, four);
  }
  for (; j < n; j++) {
    const h = fmix32(fmix32((idxLo + <u32>j) ^ k2) ^ k1);
    const o = <usize>j << 2;
    store<f32>(out + o, (h >>> 8) >= cut ? load<f32>(x + o) * scale : <f32>0);
  }
}

// ---------------------------------------------------------------- matmul (matmul.ts)

export { matmulPackBytes, matmulRows, matmulShared } from './matmul';
