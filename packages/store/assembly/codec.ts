// Byte regrouping kernels for the weight codec (see docs/codec.md).
//
// The JS side owns the memory layout: every function takes byte offsets into
// this module's linear memory and never allocates. Element streams are
// produced 16 or 32 bytes at a time with v128 shuffles because a plain JS byte
// loop runs at well under 1 GB/s, far below what the entropy coder sustains.
// Each SIMD loop is followed by a scalar loop for the last few elements, so
// any element count is valid.

// Two-byte elements. `rot` rotates each 16-bit word left by one bit first, so
// for bf16 the high byte holds the 8 exponent bits and the low byte holds the
// 7 mantissa bits followed by the sign (ZipNN's bit rotation).
export function split2(src: usize, d0: usize, d1: usize, n: usize, rot: bool): void {
  let i: usize = 0;
  const simdEnd = n & ~(<usize>15);
  if (rot) {
    for (; i < simdEnd; i += 16) {
      let a = v128.load(src + 2 * i);
      let b = v128.load(src + 2 * i + 16);
      a = v128.or(i16x8.shl(a, 1), i16x8.shr_u(a, 15));
      b = v128.or(i16x8.shl(b, 1), i16x8.shr_u(b, 15));
      v128.store(d0 + i, i8x16.shuffle(a, b, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30));
      v128.store(d1 + i, i8x16.shuffle(a, b, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31));
    }
  } else {
    for (; i < simdEnd; i += 16) {
      const a = v128.load(src + 2 * i);
      const b = v128.load(src + 2 * i + 16);
      v128.store(d0 + i, i8x16.shuffle(a, b, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30));
      v128.store(d1 + i, i8x16.shuffle(a, b, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31));
    }
  }
  for (; i < n; i++) {
    let x = <u32>load<u16>(src + 2 * i);
    if (rot) x = ((x << 1) | (x >> 15)) & 0xffff;
    store<u8>(d0 + i, <u8>x);
    store<u8>(d1 + i, <u8>(x >> 8));
  }
}

export function merge2(s0: usize, s1: usize, dst: usize, n: usize, rot: bool): void {
  let i: usize = 0;
  const simdEnd = n & ~(<usize>15);
  if (rot) {
    for (; i < simdEnd; i += 16) {
      const a = v128.load(s0 + i);
      const b = v128.load(s1 + i);
      let lo = i8x16.shuffle(a, b, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
      let hi = i8x16.shuffle(a, b, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
      lo = v128.or(i16x8.shr_u(lo, 1), i16x8.shl(lo, 15));
      hi = v128.or(i16x8.shr_u(hi, 1), i16x8.shl(hi, 15));
      v128.store(dst + 2 * i, lo);
      v128.store(dst + 2 * i + 16, hi);
    }
  } else {
    for (; i < simdEnd; i += 16) {
      const a = v128.load(s0 + i);
      const b = v128.load(s1 + i);
      v128.store(dst + 2 * i, i8x16.shuffle(a, b, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23));
      v128.store(dst + 2 * i + 16, i8x16.shuffle(a, b, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31));
    }
  }
  for (; i < n; i++) {
    let x = <u32>load<u8>(s0 + i) | ((<u32>load<u8>(s1 + i)) << 8);
    if (rot) x = ((x >> 1) | (x << 15)) & 0xffff;
    store<u16>(dst + 2 * i, <u16>x);
  }
}

// Four-byte elements: a 4x4 byte transpose in two shuffle stages. With `rot`
// each 32-bit word is rotated left by one bit so stream 3 is the f32 exponent.
export function split4(src: usize, d0: usize, d1: usize, d2: usize, d3: usize, n: usize, rot: bool): void {
  let i: usize = 0;
  const simdEnd = n & ~(<usize>15);
  for (; i < simdEnd; i += 16) {
    const p = src + 4 * i;
    let v0 = v128.load(p);
    let v1 = v128.load(p + 16);
    let v2 = v128.load(p + 32);
    let v3 = v128.load(p + 48);
    if (rot) {
      v0 = v128.or(i32x4.shl(v0, 1), i32x4.shr_u(v0, 31));
      v1 = v128.or(i32x4.shl(v1, 1), i32x4.shr_u(v1, 31));
      v2 = v128.or(i32x4.shl(v2, 1), i32x4.shr_u(v2, 31));
      v3 = v128.or(i32x4.shl(v3, 1), i32x4.shr_u(v3, 31));
    }
    const t0 = i8x16.shuffle(v0, v1, 0, 4, 8, 12, 16, 20, 24, 28, 1, 5, 9, 13, 17, 21, 25, 29);
    const t1 = i8x16.shuffle(v0, v1, 2, 6, 10, 14, 18, 22, 26, 30, 3, 7, 11, 15, 19, 23, 27, 31);
    const t2 = i8x16.shuffle(v2, v3, 0, 4, 8, 12, 16, 20, 24, 28, 1, 5, 9, 13, 17, 21, 25, 29);
    const t3 = i8x16.shuffle(v2, v3, 2, 6, 10, 14, 18, 22, 26, 30, 3, 7, 11, 15, 19, 23, 27, 31);
    v128.store(d0 + i, i8x16.shuffle(t0, t2, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23));
    v128.store(d1 + i, i8x16.shuffle(t0, t2, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31));
    v128.store(d2 + i, i8x16.shuffle(t1, t3, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23));
    v128.store(d3 + i, i8x16.shuffle(t1, t3, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31));
  }
  for (; i < n; i++) {
    let x = load<u32>(src + 4 * i);
    if (rot) x = rotl<u32>(x, 1);
    store<u8>(d0 + i, <u8>x);
    store<u8>(d1 + i, <u8>(x >> 8));
    store<u8>(d2 + i, <u8>(x >> 16));
    store<u8>(d3 + i, <u8>(x >> 24));
  }
}

export function merge4(s0: usize, s1: usize, s2: usize, s3: usize, dst: usize, n: usize, rot: bool): void {
  let i: usize = 0;
  const simdEnd = n & ~(<usize>15);
  for (; i < simdEnd; i += 16) {
    const a0 = v128.load(s0 + i);
    const a1 = v128.load(s1 + i);
    const a2 = v128.load(s2 + i);
    const a3 = v128.load(s3 + i);
    const t0 = i8x16.shuffle(a0, a1, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
    const t1 = i8x16.shuffle(a2, a3, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
    const t2 = i8x16.shuffle(a0, a1, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
    const t3 = i8x16.shuffle(a2, a3, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
    let v0 = i8x16.shuffle(t0, t1, 0, 8, 16, 24, 1, 9, 17, 25, 2, 10, 18, 26, 3, 11, 19, 27);
    let v1 = i8x16.shuffle(t0, t1, 4, 12, 20, 28, 5, 13, 21, 29, 6, 14, 22, 30, 7, 15, 23, 31);
    let v2 = i8x16.shuffle(t2, t3, 0, 8, 16, 24, 1, 9, 17, 25, 2, 10, 18, 26, 3, 11, 19, 27);
    let v3 = i8x16.shuffle(t2, t3, 4, 12, 20, 28, 5, 13, 21, 29, 6, 14, 22, 30, 7, 15, 23, 31);
    if (rot) {
      v0 = v128.or(i32x4.shr_u(v0, 1), i32x4.shl(v0, 31));
      v1 = v128.or(i32x4.shr_u(v1, 1), i32x4.shl(v1, 31));
      v2 = v128.or(i32x4.shr_u(v2, 1), i32x4.shl(v2, 31));
      v3 = v128.or(i32x4.shr_u(v3, 1), i32x4.shl(v3, 31));
    }
    const p = dst + 4 * i;
    v128.store(p, v0);
    v128.store(p + 16, v1);
    v128.store(p + 32, v2);
    v128.store(p + 48, v3);
  }
  for (; i < n; i++) {
    let x =
      <u32>load<u8>(s0 + i) |
      ((<u32>load<u8>(s1 + i)) << 8) |
      ((<u32>load<u8>(s2 + i)) << 16) |
      ((<u32>load<u8>(s3 + i)) << 24);
    if (rot) x = rotr<u32>(x, 1);
    store<u32>(dst + 4 * i, x);
  }
}

// Any element width (8-byte types use this): streams are `stride` bytes apart,
// stream k at `dst + k * stride`. Not on the bf16 hot path, so scalar.
export function splitN(src: usize, dst: usize, stride: usize, n: usize, w: usize): void {
  for (let i: usize = 0; i < n; i++) {
    const p = src + i * w;
    for (let k: usize = 0; k < w; k++) store<u8>(dst + k * stride + i, load<u8>(p + k));
  }
}

export function mergeN(src: usize, stride: usize, dst: usize, n: usize, w: usize): void {
  for (let i: usize = 0; i < n; i++) {
    const p = dst + i * w;
    for (let k: usize = 0; k < w; k++) store<u8>(p + k, load<u8>(src + k * stride + i));
  }
}

// dst = a XOR b over len bytes; dst may equal a or b.
export function xorBytes(a: usize, b: usize, dst: usize, len: usize): void {
  let i: usize = 0;
  const simdEnd = len & ~(<usize>63);
  for (; i < simdEnd; i += 64) {
    v128.store(dst + i, v128.xor(v128.load(a + i), v128.load(b + i)));
    v128.store(dst + i + 16, v128.xor(v128.load(a + i + 16), v128.load(b + i + 16)));
    v128.store(dst + i + 32, v128.xor(v128.load(a + i + 32), v128.load(b + i + 32)));
    v128.store(dst + i + 48, v128.xor(v128.load(a + i + 48), v128.load(b + i + 48)));
  }
  for (; i < len; i++) store<u8>(dst + i, load<u8>(a + i) ^ load<u8>(b + i));
}

// Number of zero bytes in [p, p + len): the encoder uses it to tell a
// mostly-zero XOR stream (long runs, worth LZ matching) from a dense one.
export function countZero(p: usize, len: usize): usize {
  let i: usize = 0;
  let acc = i8x16.splat(0);
  let total: usize = 0;
  const zero = i8x16.splat(0);
  const simdEnd = len & ~(<usize>15);
  let inBatch = 0;
  for (; i < simdEnd; i += 16) {
    // eq gives -1 per zero byte; subtracting counts up, flushed before a lane can wrap
    acc = i8x16.sub(acc, i8x16.eq(v128.load(p + i), zero));
    if (++inBatch === 255) {
      total += sumLanes(acc);
      acc = i8x16.splat(0);
      inBatch = 0;
    }
  }
  total += sumLanes(acc);
  for (; i < len; i++) if (load<u8>(p + i) === 0) total++;
  return total;
}

function sumLanes(v: v128): usize {
  const s16 = i16x8.extadd_pairwise_i8x16_u(v);
  const s32 = i32x4.extadd_pairwise_i16x8_u(s16);
  return <usize>(
    (i32x4.extract_lane(s32, 0) + i32x4.extract_lane(s32, 1) + i32x4.extract_lane(s32, 2) + i32x4.extract_lane(s32, 3))
  );
}
