// Blocked f32 matrix product for the `matmul` kernel (KernelSet.matmul):
// out rows [i0, i1) of op(A)·op(B), with op(A)[i, p] = a[i·sai + p·sap] and
// op(B)[p, j] = b[p·sbp + j·sbj] (element strides, so transposes are only
// strides). Blocks of B (KC × NC) and A (MC × KC) are packed into `pack`
// (MATMUL_PACK_BYTES, one area per thread) as 8-column (a last 1–4 columns:
// 4-column) and 4-row panels, and a 4×8 (4×4) register tile accumulates KC
// products per element in f32 lanes.
// Sums over p run block by block in index order within each lane.

const MC: i32 = 64;
const KC: i32 = 256;
const NC: i32 = 512;
const TILE_BYTES: usize = 128;

/** Bytes of packing space one call needs. */
export function matmulPackBytes(): i32 {
  return (KC * NC + MC * KC) * 4 + <i32>TILE_BYTES;
}

@inline function fma(c: v128, a: v128, b: v128): v128 {
  return f32x4.add(c, f32x4.mul(a, b));
}

@inline function put(ptr: usize, v: v128, acc: bool): void {
  v128.store(ptr, acc ? f32x4.add(v128.load(ptr), v) : v);
}

function tile(
  pa: usize,
  pb: usize,
  kc: i32,
  out: usize,
  ldo: i32,
  row: i32,
  col: i32,
  mr: i32,
  nr: i32,
  acc: bool,
  tmp: usize,
): void {
  let c00 = f32x4.splat(0);
  let c01 = f32x4.splat(0);
  let c10 = f32x4.splat(0);
  let c11 = f32x4.splat(0);
  let c20 = f32x4.splat(0);
  let c21 = f32x4.splat(0);
  let c30 = f32x4.splat(0);
  let c31 = f32x4.splat(0);
  for (let p: i32 = 0; p < kc; p++) {
    const b0 = v128.load(pb);
    const b1 = v128.load(pb, 16);
    let a = v128.load32_splat(pa);
    c00 = fma(c00, a, b0);
    c01 = fma(c01, a, b1);
    a = v128.load32_splat(pa, 4);
    c10 = fma(c10, a, b0);
    c11 = fma(c11, a, b1);
    a = v128.load32_splat(pa, 8);
    c20 = fma(c20, a, b0);
    c21 = fma(c21, a, b1);
    a = v128.load32_splat(pa, 12);
    c30 = fma(c30, a, b0);
    c31 = fma(c31, a, b1);
    pa += 16;
    pb += 32;
  }
  if (mr == 4 && nr == 8) {
    const stride = <usize>ldo << 2;
    let o = out + ((<usize>row * <usize>ldo + <usize>col) << 2);
    put(o, c00, acc);
    put(o + 16, c01, acc);
    o += stride;
    put(o, c10, acc);
    put(o + 16, c11, acc);
    o += stride;
    put(o, c20, acc);
    put(o + 16, c21, acc);
    o += stride;
    put(o, c30, acc);
    put(o + 16, c31, acc);
    return;
  }
  v128.store(tmp, c00);
  v128.store(tmp, c01, 16);
  v128.store(tmp, c10, 32);
  v128.store(tmp, c11, 48);
  v128.store(tmp, c20, 64);
  v128.store(tmp, c21, 80);
  v128.store(tmp, c30, 96);
  v128.store(tmp, c31, 112);
  for (let r: i32 = 0; r < mr; r++)
    for (let c: i32 = 0; c < nr; c++) {
      const o = out + ((<usize>(row + r) * <usize>ldo + <usize>(col + c)) << 2);
      const v = load<f32>(tmp + (<usize>(r * 8 + c) << 2));
      store<f32>(o, acc ? load<f32>(o) + v : v);
    }
}

/** The 4×4 tile of a last panel of at most 4 columns (B panel 4 wide). */
function tile4(
  pa: usize,
  pb: usize,
  kc: i32,
  out: usize,
  ldo: i32,
  row: i32,
  col: i32,
  mr: i32,
  nr: i32,
  acc: bool,
  tmp: usize,
): void {
  let c0 = f32x4.splat(0);
  let c1 = f32x4.splat(0);
  let c2 = f32x4.splat(0);
  let c3 = f32x4.splat(0);
  for (let p: i32 = 0; p < kc; p++) {
    const b0 = v128.load(pb);
    c0 = fma(c0, v128.load32_splat(pa), b0);
    c1 = fma(c1, v128.load32_splat(pa, 4), b0);
    c2 = fma(c2, v128.load32_splat(pa, 8), b0);
    c3 = fma(c3, v128.load32_splat(pa, 12), b0);
    pa += 16;
    pb += 16;
  }
  v128.store(tmp, c0);
  v128.store(tmp, c1, 32);
  v128.store(tmp, c2, 64);
  v128.store(tmp, c3, 96);
  for (let r: i32 = 0; r < mr; r++)
    for (let c: i32 = 0; c < nr; c++) {
      const o = out + ((<usize>(row + r) * <usize>ldo + <usize>(col + c)) << 2);
      const v = load<f32>(tmp + (<usize>(r * 8 + c) << 2));
      store<f32>(o, acc ? load<f32>(o) + v : v);
    }
}

/** Packs columns [jc + jp, jc + jp + width) of B's rows [pc, pc + kc) as one panel, zero past nc. */
function packBPanel(b: usize, sbp: i32, sbj: i32, panel: usize, pc: i32, jc: i32, kc: i32, nc: i32, jp: i32, width: i32): void {
  for (let p: i32 = 0; p < kc; p++) {
    const d = panel + (<usize>(p * width) << 2);
    const src = b + (<usize>((pc + p) * sbp) << 2);
    for (let jj: i32 = 0; jj < width; jj++) {
      const j = jp + jj;
      store<f32>(d + (<usize>jj << 2), j < nc ? load<f32>(src + (<usize>((jc + j) * sbj) << 2)) : 0);
    }
  }
}

/** Packs A rows [ic, ic + mc) × [pc, pc + kc) into 4-row panels, reading along rows (sap = 1 is contiguous). */
function packARows(a: usize, sai: i32, sap: i32, pa: usize, ic: i32, pc: i32, mc: i32, mcp: i32, kc: i32): void {
  const step = <usize>sap << 2;
  for (let ip: i32 = 0; ip < mcp; ip += 4) {
    const panel = pa + (<usize>(ip * kc) << 2);
    for (let ii: i32 = 0; ii < 4; ii++) {
      const i = ip + ii;
      let d = panel + (<usize>ii << 2);
      if (i < mc) {
        let s = a + (<usize>((ic + i) * sai + pc * sap) << 2);
        for (let p: i32 = 0; p < kc; p++) {
          store<f32>(d, load<f32>(s));
          s += step;
          d += 16;
        }
      } else
        for (let p: i32 = 0; p < kc; p++) {
          store<f32>(d, 0);
          d += 16;
        }
    }
  }
}

/** The same panels when A's rows are its stored columns (a transposed A, sai = 1): reads along i. */
function packAColumns(a: usize, sap: i32, pa: usize, ic: i32, pc: i32, mc: i32, mcp: i32, kc: i32): void {
  for (let p: i32 = 0; p < kc; p++) {
    const src = a + (<usize>((pc + p) * sap + ic) << 2);
    for (let i: i32 = 0; i < mcp; i++) {
      const d = pa + (<usize>((i >> 2) * kc * 4 + p * 4 + (i & 3)) << 2);
      store<f32>(d, i < mc ? load<f32>(src + (<usize>i << 2)) : 0);
    }
  }
}

export function matmulRows(
  a: usize,
  sai: i32,
  sap: i32,
  b: usize,
  sbp: i32,
  sbj: i32,
  out: usize,
  ldo: i32,
  i0: i32,
  i1: i32,
  k: i32,
  n: i32,
  pack: usize,
): void {
  const pb = pack;
  const pa = pack + (<usize>(KC * NC) << 2);
  const tmp = pa + (<usize>(MC * KC) << 2);
  for (let jc: i32 = 0; jc < n; jc += NC) {
    const nc = min(NC, n - jc);
    // 8-column panels; a last remainder of 1–4 columns gets a 4-wide panel.
    const nfull = nc & ~7;
    const narrow = nc - nfull > 0 && nc - nfull <= 4;
    const ncp = narrow ? nfull + 4 : (nc + 7) & ~7;
    for (let pc: i32 = 0; pc < k; pc += KC) {
      const kc = min(KC, k - pc);
      for (let jp: i32 = 0; jp < ncp; jp += 8)
        packBPanel(b, sbp, sbj, pb + (<usize>(jp * kc) << 2), pc, jc, kc, nc, jp, narrow && jp == nfull ? 4 : 8);
      for (let ic: i32 = i0; ic < i1; ic += MC) {
        const mc = min(MC, i1 - ic);
        const mcp = (mc + 3) & ~3;
        if (sai == 1) packAColumns(a, sap, pa, ic, pc, mc, mcp, kc);
        else packARows(a, sai, sap, pa, ic, pc, mc, mcp, kc);
        for (let ip: i32 = 0; ip < mcp; ip += 4)
          for (let jp: i32 = 0; jp < ncp; jp += 8) {
            const tpa = pa + (<usize>(ip * kc) << 2);
            const tpb = pb + (<usize>(jp * kc) << 2);
            const mr = min(4, mc - ip);
            const nr = min(8, nc - jp);
            if (narrow && jp == nfull) tile4(tpa, tpb, kc, out, ldo, ic + ip, jc + jp, mr, nr, pc > 0, tmp);
            else tile(tpa, tpb, kc, out, ldo, ic + ip, jc + jp, mr, nr, pc > 0, tmp);
          }
      }
    }
  }
}

/**
 * Rows of op(A)·op(B) handed out `chunk` at a time from the shared i32
 * counter at `counter` (atomically), until all m rows are taken: every
 * thread of a call runs this with its own packing area, so a thread that
 * gets less CPU time takes fewer chunks.
 */
export function matmulShared(
  a: usize,
  sai: i32,
  sap: i32,
  b: usize,
  sbp: i32,
  sbj: i32,
  out: usize,
  ldo: i32,
  m: i32,
  k: i32,
  n: i32,
  pack: usize,
  counter: usize,
  chunk: i32,
): void {
  while (true) {
    const i0 = atomic.add<i32>(counter, chunk);
    if (i0 >= m) break;
    matmulRows(a, sai, sap, b, sbp, sbj, out, ldo, i0, min(m, i0 + chunk), k, n, pack);
  }
}
