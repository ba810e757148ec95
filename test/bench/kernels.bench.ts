// Kernel throughput: bf16 → f32 conversion and the fused 3-input weighted
// sums, WASM pool vs single-thread WASM vs a plain TypeScript loop (one
// thread) vs a plain memory copy of the same bytes, all measured in this run.
// The SIMD gain (1 thread vs 1 thread) and the threading gain are reported
// apart.
//   pnpm bench kernels            (64 M elements)
//   WGIT_BENCH_N=16000000 pnpm bench kernels
import os from 'node:os';
import { type Device, getDevice } from '../../packages/core/src/index.js';

type Kernels = Device;
const getKernels = (o: { threads: number }) => getDevice({ device: 'cpu', ...o });
const handles = new Map<ArrayBufferView, Parameters<Device['free']>[0]>();
const view = <T extends Float32Array | Uint8Array>(k: Kernels, b: Parameters<Device['free']>[0]): T => {
  const v = k.hostView(b) as T;
  handles.set(v, b);
  return v;
};
const allocBytes = (k: Kernels, n: number) => view<Uint8Array>(k, k.alloc('U8', n));
const allocF32 = (k: Kernels, n: number) => view<Float32Array>(k, k.alloc('F32', n));

const N = Number(process.env.WGIT_BENCH_N ?? 64 * 2 ** 20);
const REPS = 5;
const gc = (globalThis as { gc?: () => void }).gc ?? (() => {});

function best(fn: () => unknown): number {
  let t = Number.POSITIVE_INFINITY;
  fn(); // warm-up: first touch of pages, JIT
  for (let i = 0; i < REPS; i++) {
    const t0 = performance.now();
    fn();
    t = Math.min(t, performance.now() - t0);
  }
  return t;
}

async function bestAsync(fn: () => Promise<unknown>): Promise<number> {
  let t = Number.POSITIVE_INFINITY;
  await fn();
  for (let i = 0; i < REPS; i++) {
    const t0 = performance.now();
    await fn();
    t = Math.min(t, performance.now() - t0);
  }
  return t;
}

function fillBf16(b: Uint8Array, seed: number): void {
  // Values of realistic weights: |x| around 1e-2, random signs and mantissas.
  const u = new Uint16Array(b.buffer, b.byteOffset, b.byteLength / 2);
  let s = seed;
  for (let i = 0; i < u.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    u[i] = 0x3c00 | ((s >>> 16) & 0x83ff);
  }
}

interface Buffers {
  bf: Uint8Array[]; // 3 bf16 inputs
  bfOut: Uint8Array;
  f: Float32Array[]; // 3 f32 inputs
  fOut: Float32Array;
}

async function allocate(k: Kernels): Promise<Buffers> {
  const bf = [0, 1, 2].map(() => allocBytes(k, N * 2));
  bf.forEach((b, i) => {
    fillBf16(b, i + 1);
  });
  const f = [0, 1, 2].map(() => allocF32(k, N));
  for (let i = 0; i < 3; i++) await k.toF32(bf[i], 'BF16', f[i]);
  return { bf, bfOut: allocBytes(k, N * 2), f, fOut: allocF32(k, N) };
}

function release(k: Kernels, b: Buffers): void {
  for (const v of [...b.bf, b.bfOut, ...b.f, b.fOut]) k.free(handles.get(v) as Parameters<Device['free']>[0]);
}

async function wasmTimes(k: Kernels, b: Buffers) {
  const w = [0.5, 0.3, 0.2];
  return {
    convert: await bestAsync(() => k.toF32(b.bf[0], 'BF16', b.fOut)),
    sumF32: await bestAsync(() => k.weightedSum(b.f, w, b.fOut)),
    sumBf16: await bestAsync(() => k.weightedSumTyped(b.bf, 'BF16', w, 'BF16', b.bfOut)),
  };
}

function tsTimes(b: Buffers) {
  const w = [0.5, 0.3, 0.2];
  const src16 = new Uint16Array(b.bf[0].buffer, b.bf[0].byteOffset, N);
  const out32 = new Uint32Array(b.fOut.buffer, b.fOut.byteOffset, N);
  const convert = best(() => {
    for (let i = 0; i < N; i++) out32[i] = src16[i] << 16;
  });
  const [x, y, z] = b.f;
  const o = b.fOut;
  const sumF32 = best(() => {
    for (let i = 0; i < N; i++) o[i] = w[0] * x[i] + w[1] * y[i] + w[2] * z[i];
  });
  const [p, q, r] = b.bf.map((v) => new Uint16Array(v.buffer, v.byteOffset, N));
  const ob = new Uint16Array(b.bfOut.buffer, b.bfOut.byteOffset, N);
  const f1 = new Float32Array(1);
  const u1 = new Uint32Array(f1.buffer);
  const sumBf16 = best(() => {
    for (let i = 0; i < N; i++) {
      u1[0] = p[i] << 16;
      let acc = w[0] * f1[0];
      u1[0] = q[i] << 16;
      acc += w[1] * f1[0];
      u1[0] = r[i] << 16;
      acc += w[2] * f1[0];
      f1[0] = acc;
      const bits = u1[0];
      ob[i] = (bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16;
    }
  });
  return { convert, sumF32, sumBf16 };
}

function copyTimes(b: Buffers) {
  const bytes = (v: ArrayBufferView) => new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  // N·2 bytes (a bf16 tensor), N·4 bytes (an f32 tensor), 3·N·2 and 3·N·4 (three inputs).
  const c2 = best(() => bytes(b.bfOut).set(bytes(b.bf[0])));
  const c4 = best(() => bytes(b.fOut).set(bytes(b.f[0])));
  const c6 = best(() => {
    for (const v of b.bf) bytes(b.bfOut).set(bytes(v));
  });
  const c12 = best(() => {
    for (const v of b.f) bytes(b.fOut).set(bytes(v));
  });
  return { c2, c4, c6, c12 };
}

const MB = 2 ** 20;
const gbps = (bytes: number, ms: number) => (bytes / ms / 1e6).toFixed(2);
const x = (a: number, b: number) => `${(a / b).toFixed(2)}×`;

const threadsWanted = Number(process.env.WGIT_THREADS ?? os.availableParallelism());
console.log(
  `kernels bench: N = ${N} elements (bf16 ${(N * 2) / MB} MiB, f32 ${(N * 4) / MB} MiB), ` +
    `${os.cpus().length} CPUs, pool threads ${threadsWanted}, best of ${REPS}`,
);

// Single-thread WASM first, in its own pool, which is then released.
let one: Awaited<ReturnType<typeof wasmTimes>>;
{
  const k1 = await getKernels({ threads: 1 });
  const b1 = await allocate(k1);
  one = await wasmTimes(k1, b1);
  release(k1, b1);
  await k1.close();
}
gc();

const k = await getKernels({ threads: threadsWanted });
const b = await allocate(k);
const pool = await wasmTimes(k, b);
const ts = tsTimes(b);
const copy = copyTimes(b);
await k.close();

type Row = [name: string, bytes: number, pool: number, one: number, ts: number, copyOut: number, copyIn: number];
const rows: Row[] = [
  // bytes = read + written by the kernel; copies: of the output size and of the input size
  ['bf16 → f32', N * 6, pool.convert, one.convert, ts.convert, copy.c4, copy.c2],
  ['Σ 3 f32 → f32', N * 16, pool.sumF32, one.sumF32, ts.sumF32, copy.c4, copy.c12],
  ['Σ 3 bf16 → bf16', N * 8, pool.sumBf16, one.sumBf16, ts.sumBf16, copy.c2, copy.c6],
];

console.log('\ntimes in ms (GB/s = bytes read + written per second; a copy of B bytes moves 2B)');
console.log(
  [
    'kernel'.padEnd(16),
    'WASM pool'.padStart(16),
    'WASM 1 thread'.padStart(16),
    'TS loop'.padStart(16),
    'copy out-size'.padStart(16),
    'copy in-size'.padStart(16),
  ].join(''),
);
for (const [name, bytes, p, o, t, co, ci] of rows) {
  const outBytes = name.endsWith('bf16') ? N * 2 : N * 4;
  const inBytes = bytes - outBytes;
  const cell = (ms: number, moved: number) => `${ms.toFixed(1)} (${gbps(moved, ms)})`.padStart(16);
  console.log(
    name.padEnd(16) + cell(p, bytes) + cell(o, bytes) + cell(t, bytes) + cell(co, 2 * outBytes) + cell(ci, 2 * inBytes),
  );
}
// The TS loop runs on one thread, so the like-for-like comparison with it is
// WASM on one thread (the SIMD kernel's gain); the pool's gain over one WASM
// thread is the threading gain, and the product of the two is what the pool
// gains over the loop.
console.log(
  `\nratios (goal: SIMD gain ≥ 5×, copy ≥ 0.5×)\n` +
    '  SIMD gain   = TS loop / WASM 1 thread (both one thread)\n' +
    `  threading   = WASM 1 thread / WASM pool (${threadsWanted} threads)\n` +
    '  pool vs TS  = TS loop / WASM pool (= SIMD gain × threading gain)\n' +
    '  vs copy     = time of a single-thread copy / WASM pool',
);
for (const [name, , p, o, t, co, ci] of rows) {
  console.log(
    `${name.padEnd(16)} SIMD gain ${x(t, o)}   threading ${x(o, p)}   pool vs TS ${x(t, p)}   vs copy(out size) ${x(co, p)}   vs copy(in size) ${x(ci, p)}`,
  );
}
