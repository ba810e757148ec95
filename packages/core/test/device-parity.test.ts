// Every kernel, through every backend getDevice can give here, on one table
// of cases: specials (NaN, ±Inf, subnormals, −0), ties at a threshold, empty
// and one-element tensors, sizes that are no multiple of the SIMD width or of
// a worker range. Elementwise kernels, selections and DARE masks must agree
// bit for bit with the reference backend; reductions within a stated bound.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, renameSync, statSync } from 'node:fs';
import { before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  autoChoice,
  type Device,
  getDevice,
  getMethod,
  isWgitError,
  type KernelDType,
  type MergeParams,
  referenceDevice,
  sparseConsensusTensor,
  tensorParams,
  toF32,
} from '@wgit/core';
import { fastMergeTensor } from '../src/methods/fast.js';
import { BufferPool } from '../src/pipeline/index.js';
import { gpuUnderTest } from './gpu-device.js';

const root = fileURLToPath(new URL('..', import.meta.url));

function ensureWasm(): void {
  const wasm = `${root}wasm/kernels.wasm`;
  const src = `${root}assembly/kernels.ts`;
  if (existsSync(wasm) && statSync(wasm).mtimeMs >= statSync(src).mtimeMs) return;
  const tmp = `${wasm}.tmp-${process.pid}`;
  const asc = `${root}node_modules/assemblyscript/bin/asc.js`;
  const r = spawnSync(
    process.execPath,
    [asc, 'assembly/kernels.ts', '--config', 'asconfig.json', '--target', 'release', '--outFile', tmp],
    { cwd: root, encoding: 'utf8' },
  );
  assert.equal(r.status, 0, r.stderr);
  renameSync(tmp, wasm);
}

const hasCode = (code: string) => (e: unknown) => isWgitError(e) && e.code === code;

/** Deterministic generator (xorshift32). */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
}

const f32 = (xs: number[]) => Float32Array.from(xs);
const NAN = Number.NaN;
const INF = Number.POSITIVE_INFINITY;
const SUB = 1e-40; // f32 subnormal
const MIN_SUB = 2 ** -149;

function spread(n: number, seed: number, specials: number[] = []): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    out[i] =
      specials.length && i % 37 === 5 ? specials[i % specials.length] : (r() - 0.5) * 2 ** Math.floor(r() * 20 - 12);
  }
  return out;
}

/**
 * The table: each case is three same-length f32 vectors (inputs to every
 * kernel; the kernel-specific tests below read what they need).
 */
const CASES: { name: string; xs: Float32Array[] }[] = [
  { name: 'empty', xs: [f32([]), f32([]), f32([])] },
  { name: 'one element', xs: [f32([1.5]), f32([-0.25]), f32([3])] },
  { name: 'one NaN', xs: [f32([NAN]), f32([1]), f32([-1])] },
  {
    name: 'specials',
    xs: [
      f32([NAN, INF, -INF, -0, 0, SUB, -SUB, MIN_SUB, 65504, 65520, 3.4e38, -1e-7, 1]),
      f32([1, -1, 2, -0, -0, SUB, SUB, -MIN_SUB, -65504, 1, -3.4e38, 1e-7, NAN]),
      f32([0.5, 0.5, 0.5, 0, -0, -SUB, 0, MIN_SUB, 1, -65520, 3.4e38, 0, -INF]),
    ],
  },
  {
    name: 'ties at a threshold',
    xs: [
      f32([1, -1, 1, -1, 0.5, -0.5, 2, -2, 1]),
      f32([-1, 1, 1, -1, 1, 1, -2, 2, 0]),
      f32([1, 1, -1, 1, -1, 1, 2, 2, -1]),
    ],
  },
  { name: '5 elements (not a multiple of 4)', xs: [spread(5, 1), spread(5, 2), spread(5, 3)] },
  { name: '1023 elements with specials', xs: [spread(1023, 4, [NAN, -0, SUB]), spread(1023, 5), spread(1023, 6)] },
  {
    name: '5001 elements (ranges not block aligned)',
    xs: [spread(5001, 7, [INF, -INF, NAN]), spread(5001, 8, [-0, MIN_SUB]), spread(5001, 9)],
  },
  {
    // diffStats pairs x with y: NaN on both sides and on one, Inf − Inf, −0 against +0, subnormals
    name: 'diff pairs: NaN both sides / one side, Inf − Inf, −0 vs +0, subnormals',
    xs: [
      f32([NAN, NAN, 1, INF, -INF, INF, -0, 0, SUB, MIN_SUB, -SUB, 1, 2, 3.4e38, 65504, -7, 0.1]),
      f32([NAN, 1, NAN, INF, -INF, 1, 0, -0, SUB, -MIN_SUB, SUB, 1, 2.5, 3.4e38, 65520, -7.5, 0.1]),
      f32([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
    ],
  },
  {
    name: '2 blocks + 7 elements, finite (subnormals, −0)',
    xs: [spread(2055, 31, [SUB, -0, MIN_SUB]), spread(2055, 32, [-SUB, 0]), spread(2055, 33, [-0])],
  },
];

interface Backend {
  name: string;
  device: Device;
  /** Reductions: exact, or within this relative bound of the reference (a different summation order). */
  reduceExact: boolean;
  /**
   * transferTyped / diffStats sums: the reference's bits (CPU backends), or within
   * GPU_SUMS_BOUND (the GPU's double-f32 block partials; docs/gpu.md).
   */
  sumsExact: boolean;
}

const backends: Backend[] = [];

before(async () => {
  ensureWasm();
  backends.push({ name: 'reference', device: referenceDevice(), reduceExact: true, sumsExact: true });
  backends.push({
    name: 'wasm, 1 thread',
    device: await getDevice({ device: 'cpu', threads: 1 }),
    reduceExact: true,
    sumsExact: true,
  });
  // parallelMin 1: every call is split across workers, in block-aligned ranges.
  backends.push({
    name: 'wasm, 3 workers',
    device: await getDevice({ device: 'cpu', threads: 3, parallelMin: 1 }),
    reduceExact: false,
    sumsExact: true,
  });
  // The GPU backend (lavapipe in CI), with 1,024-element slices so that every case of more than
  // 1,024 elements crosses slices and both staging sets. Absent only off CI on a machine without one.
  const gpu = await gpuUnderTest();
  if (gpu) backends.push({ name: 'webgpu, 1,024-element slices', device: gpu, reduceExact: false, sumsExact: false });
});

/** Bit-exact f32 comparison; NaN matches NaN (JavaScript does not keep payloads through Float32Array writes). */
function sameF32(actual: Float32Array, expected: Float32Array, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  const a = new Uint32Array(actual.buffer, actual.byteOffset, actual.length);
  const e = new Uint32Array(expected.buffer, expected.byteOffset, expected.length);
  for (let i = 0; i < a.length; i++) {
    if (a[i] === e[i] || (Number.isNaN(actual[i]) && Number.isNaN(expected[i]))) continue;
    assert.fail(`${what}: element ${i} is ${actual[i]} (0x${a[i].toString(16)}), expected ${expected[i]}`);
  }
}

function sameBytes(actual: Uint8Array, expected: Uint8Array, what: string): void {
  assert.deepEqual(Buffer.from(actual), Buffer.from(expected), what);
}

function sameReduction(actual: number, expected: number, exact: boolean, what: string): void {
  if (Number.isNaN(expected) || !Number.isFinite(expected) || exact) {
    assert.ok(Object.is(actual, expected) || actual === expected, `${what}: ${actual} vs ${expected}`);
    return;
  }
  // A threaded sum adds the same f64 terms in another grouping: |error| ≤ n·ε·Σ|terms|.
  assert.ok(
    Math.abs(actual - expected) <= 1e-12 * Math.max(1, Math.abs(expected)) * 64,
    `${what}: ${actual} vs ${expected}`,
  );
}

/**
 * The GPU's f64 sums (double-f32 block partials added on the host in block order): within
 * 2^-40 of the sum of the terms' magnitudes, plus 2^-126 per element for terms below f32's
 * normal range, which the GPU may lose (docs/gpu.md). Inf and NaN must match exactly.
 */
function closeSum(actual: number, expected: number, absTerms: number, n: number, what: string): void {
  if (!Number.isFinite(expected)) {
    assert.ok(Object.is(actual, expected) || (Number.isNaN(actual) && Number.isNaN(expected)), `${what}: ${actual}`);
    return;
  }
  const bound = 2 ** -40 * absTerms + n * 2 ** -126;
  assert.ok(Math.abs(actual - expected) <= bound, `${what}: ${actual} vs ${expected} (bound ${bound})`);
}

/** Same f64 bits, or both NaN: sums that must not depend on the backend or the thread count. */
function sameSum(actual: number, expected: number, what: string): void {
  assert.ok(
    Object.is(actual, expected) || (Number.isNaN(actual) && Number.isNaN(expected)),
    `${what}: ${actual} vs ${expected}`,
  );
}

/**
 * The transfer sums as docs/kernels.md defines them, written out here: per
 * block of 1,024, local element i into lane i mod 4 over the block's
 * multiple-of-4 prefix, (l0 + l1) + (l2 + l3), the block's rest in order, then
 * the blocks in order. Terms: (new − old)·Δ, (new − old)², Δ², old², with
 * Δ = f32(ft − old) and new − old in f64.
 */
function blockOrderSums(nw: Float32Array, ft: Float32Array, old: Float32Array, magnitudes = false): number[] {
  const totals = [0, 0, 0, 0];
  for (let b0 = 0; b0 < nw.length; b0 += 1024) {
    const m = Math.min(1024, nw.length - b0);
    const body = m - (m % 4);
    const lane = [0, 1, 2, 3].map(() => [0, 0, 0, 0]);
    const terms = (j: number) => {
      const d = Math.fround(ft[j] - old[j]);
      const sh = nw[j] - old[j];
      const t = [sh * d, sh * sh, d * d, old[j] * old[j]];
      return magnitudes ? t.map(Math.abs) : t;
    };
    for (let i = 0; i < body; i++) {
      const t = terms(b0 + i);
      for (let q = 0; q < 4; q++) lane[q][i % 4] += t[q];
    }
    const block = lane.map((l) => l[0] + l[1] + (l[2] + l[3]));
    for (let i = body; i < m; i++) {
      const t = terms(b0 + i);
      for (let q = 0; q < 4; q++) block[q] += t[q];
    }
    for (let q = 0; q < 4; q++) totals[q] += block[q];
  }
  return totals;
}

/**
 * The diff figures as docs/kernels.md defines them, computed here from the
 * stored bytes: values decoded with the dtype module's `toF32` (not the
 * kernels'), δ = f32(b − a), Σ δ², Σ a², Σ b², Σ a·b in the transfer's block
 * order, the largest non-NaN |δ| (0 when none), equal elements by their bytes.
 */
function diffDefinition(ra: Uint8Array, rb: Uint8Array, dt: KernelDType, magnitudes = false) {
  const size = dt === 'F32' ? 4 : 2;
  const a = toF32(ra, dt);
  const b = toF32(rb, dt);
  const n = a.length;
  const sums = [0, 0, 0, 0];
  for (let b0 = 0; b0 < n; b0 += 1024) {
    const m = Math.min(1024, n - b0);
    const body = m - (m % 4);
    const lane = [0, 1, 2, 3].map(() => [0, 0, 0, 0]);
    const terms = (j: number) => {
      const d = Math.fround(b[j] - a[j]);
      const t = [d * d, a[j] * a[j], b[j] * b[j], a[j] * b[j]];
      return magnitudes ? t.map(Math.abs) : t;
    };
    for (let i = 0; i < body; i++) {
      const t = terms(b0 + i);
      for (let q = 0; q < 4; q++) lane[q][i % 4] += t[q];
    }
    const block = lane.map((l) => l[0] + l[1] + (l[2] + l[3]));
    for (let i = body; i < m; i++) {
      const t = terms(b0 + i);
      for (let q = 0; q < 4; q++) block[q] += t[q];
    }
    for (let q = 0; q < 4; q++) sums[q] += block[q];
  }
  let maxAbsDelta = 0;
  let identical = 0;
  for (let j = 0; j < n; j++) {
    const d = Math.abs(Math.fround(b[j] - a[j]));
    if (!Number.isNaN(d)) maxAbsDelta = Math.max(maxAbsDelta, d);
    if (Buffer.compare(ra.subarray(j * size, (j + 1) * size), rb.subarray(j * size, (j + 1) * size)) === 0) identical++;
  }
  return { sqDelta: sums[0], sqA: sums[1], sqB: sums[2], dot: sums[3], maxAbsDelta, identical };
}

/** Runs `fn` on every backend and compares each result with the reference's. */
async function parity<T>(
  what: string,
  fn: (d: Device) => Promise<T>,
  compare: (actual: T, expected: T, b: Backend, label: string) => void,
): Promise<void> {
  const expected = await fn(backends[0].device);
  for (const b of backends.slice(1)) compare(await fn(b.device), expected, b, `${what} on ${b.name}`);
}

describe('device parity: every backend, one table', () => {
  for (const c of CASES) {
    describe(c.name, () => {
      const [x, y, z] = c.xs;
      const n = x.length;

      test('conversions', async () => {
        for (const dt of ['BF16', 'F16', 'F32'] as KernelDType[]) {
          const size = dt === 'F32' ? 4 : 2;
          await parity(
            `fromF32 ${dt}`,
            async (d) => {
              const out = new Uint8Array(n * size);
              await d.fromF32(x, dt, out);
              return out;
            },
            (a, e, _b, label) => sameBytes(a, e, label),
          );
          const bytes = new Uint8Array(n * size);
          await referenceDevice().fromF32(y, dt, bytes);
          await parity(
            `toF32 ${dt}`,
            async (d) => {
              const out = new Float32Array(n);
              await d.toF32(bytes, dt, out);
              return out;
            },
            (a, e, _b, label) => sameF32(a, e, label),
          );
        }
      });

      test('weighted sums, sub, axpy', async () => {
        const elementwise: [string, (d: Device, out: Float32Array) => Promise<void>][] = [
          ['weightedSum', (d, out) => d.weightedSum([x, y, z], [0.5, -1.25, 3], out)],
          ['weightedSum 1 input', (d, out) => d.weightedSum([x], [0.1], out)],
          ['sub', (d, out) => d.sub(x, y, out)],
          ['axpy', (d, out) => d.axpy(x, 0.3, z, out)],
        ];
        for (const [name, run] of elementwise) {
          await parity(
            name,
            async (d) => {
              const out = new Float32Array(n);
              await run(d, out);
              return out;
            },
            (a, e, _b, label) => sameF32(a, e, label),
          );
        }
        const bf = [x, y, z].map((v) => {
          const b = new Uint8Array(n * 2);
          void referenceDevice().fromF32(v, 'BF16', b);
          return b;
        });
        await parity(
          'weightedSumTyped BF16 → F16',
          async (d) => {
            const out = new Uint8Array(n * 2);
            await d.weightedSumTyped(bf, 'BF16', [0.25, 0.5, 0.25], 'F16', out);
            return out;
          },
          (a, e, _b, label) => sameBytes(a, e, label),
        );
      });

      test('transferTyped: fused transfer, same bytes as sub + axpy, same sums everywhere', async () => {
        // inputs [new, ft, old] = [x, y, z], through each stored dtype
        for (const dt of ['BF16', 'F16', 'F32'] as KernelDType[]) {
          const size = dt === 'F32' ? 4 : 2;
          const raw = [x, y, z].map((v) => {
            const b = new Uint8Array(n * size);
            void referenceDevice().fromF32(v, dt, b);
            return b;
          });
          // the values the kernel reads: the stored values decoded to f32
          const [xn, xf, xo] = raw.map((b) => {
            const v = new Float32Array(n);
            void referenceDevice().toF32(b, dt, v);
            return v;
          });
          const wantSums = blockOrderSums(xn, xf, xo);
          const absSums = blockOrderSums(xn, xf, xo, true);
          for (const outDt of ['BF16', 'F16', 'F32'] as KernelDType[]) {
            for (const s of [1, 0.3, -1.75]) {
              const outSize = outDt === 'F32' ? 4 : 2;
              // today's composition on the reference device: Δ = ft − old, new + s·Δ, then round
              const ref = referenceDevice();
              const delta = new Float32Array(n);
              await ref.sub(xf, xo, delta);
              const acc = new Float32Array(n);
              await ref.axpy(xn, s, delta, acc);
              const wantBytes = new Uint8Array(n * outSize);
              await ref.fromF32(acc, outDt, wantBytes);
              for (const b of backends) {
                const label = `transferTyped ${dt} → ${outDt}, s = ${s} on ${b.name}`;
                const out = new Uint8Array(n * outSize);
                const sums = await b.device.transferTyped(raw, dt, s, outDt, out);
                sameBytes(out, wantBytes, label);
                const got = [sums.dot, sums.shift2, sums.delta2, sums.old2];
                ['dot', 'shift2', 'delta2', 'old2'].forEach((k, q) => {
                  if (b.sumsExact) sameSum(got[q], wantSums[q], `${label}: ${k}`);
                  else closeSum(got[q], wantSums[q], absSums[q], n, `${label}: ${k}`);
                });
              }
            }
          }
        }
      });

      test('diffStats: one pass, the defined figures, same bits on every backend and split', async () => {
        // pairs (a, b): x against y; x against itself (every element equal, NaN included);
        // z against a copy of it holding x at every third element
        const mixed = Float32Array.from(z, (v, j) => (j % 3 === 0 ? x[j] : v));
        const pairs: [string, Float32Array, Float32Array][] = [
          ['x → y', x, y],
          ['x → x', x, x],
          ['z → z with x at every third', z, mixed],
        ];
        for (const dt of ['BF16', 'F16', 'F32'] as KernelDType[]) {
          const size = dt === 'F32' ? 4 : 2;
          const raw = (v: Float32Array) => {
            const r = new Uint8Array(n * size);
            void referenceDevice().fromF32(v, dt, r);
            return r;
          };
          for (const [pair, pa, pb] of pairs) {
            const ra = raw(pa);
            const rb = raw(pb);
            const want = diffDefinition(ra, rb, dt);
            const mag = diffDefinition(ra, rb, dt, true);
            for (const b of backends) {
              const label = `diffStats ${dt} ${pair} on ${b.name}`;
              const got = await b.device.diffStats(ra, rb, dt);
              for (const k of ['sqDelta', 'sqA', 'sqB', 'dot'] as const) {
                if (b.sumsExact) sameSum(got[k], want[k], `${label}: ${k}`);
                else closeSum(got[k], want[k], mag[k], n, `${label}: ${k}`);
              }
              assert.ok(Object.is(got.maxAbsDelta, want.maxAbsDelta), `${label}: maxAbsDelta ${got.maxAbsDelta}`);
              assert.equal(got.identical, want.identical, `${label}: identical`);
            }
          }
        }
      });

      test('reductions', async () => {
        for (const [name, run] of [
          ['dot', (d: Device) => d.dot(x, y)],
          ['sumSq', (d: Device) => d.sumSq(x)],
          ['sumAbs', (d: Device) => d.sumAbs(z)],
        ] as const) {
          await parity(name, run, (a, e, b, label) => sameReduction(a, e, b.reduceExact, label));
        }
      });

      test('selection: absHistogram and kthLargestAbs (NaN never ranked)', async () => {
        await parity(
          'absHistogram pass 0',
          async (d) => {
            const h = new Uint32Array(65536);
            await d.absHistogram(x, 0, 0, h);
            return h;
          },
          (a, e, _b, label) => assert.deepEqual(a, e, label),
        );
        const nonNaN = [...x, ...y]
          .filter((v) => !Number.isNaN(v))
          .map(Math.abs)
          .sort((p, q) => q - p);
        for (const k of [1, 2, Math.ceil(n / 2), n, 2 * n].filter((k) => k >= 1 && k <= 2 * n)) {
          // The definition: the k-th largest of the non-NaN magnitudes, 0 past them.
          const want = k <= nonNaN.length ? nonNaN[k - 1] : 0;
          for (const b of backends) {
            const got = await b.device.kthLargestAbs([x, y], k);
            assert.ok(Object.is(got, want) || got === want, `kthLargestAbs k=${k} on ${b.name}: ${got} vs ${want}`);
          }
        }
      });

      test('ties (trim, elect, disjoint mean)', async () => {
        const thresholds = [
          [0, 0, 0],
          [1, 0.5, 1],
          [INF, 0, MIN_SUB],
        ];
        // signed weights: a negative weight flips an input's vote; [1, -1, …] can cancel the divisor
        const weightSets = [
          [0.5, 1, 2],
          [1, -0.5, 2],
          [1, -1, 0.5],
          [-1, -0.5, -2],
        ];
        // tie quotas: only the first q entries equal to a threshold survive (by index over the call,
        // across the pool's ranges); the data repeats magnitudes, so every threshold has ties
        const tied = [x, y, z].map((v) =>
          Float32Array.from(v, (a) => (Number.isFinite(a) ? Math.round(a * 2) / 2 : a)),
        );
        for (const quotas of [
          [0, 3, -1],
          [1, 0, 7],
          [-1, -1, -1],
        ]) {
          await parity(
            `ties tie quotas ${quotas}`,
            async (d) => {
              const out = new Float32Array(n);
              await d.ties(tied, [1, -0.5, 2], [0.5, 1, 0.5], out, quotas);
              return out;
            },
            (a, e, _b, label) => sameF32(a, e, label),
          );
        }
        for (const thr of thresholds) {
          for (const ws of weightSets) {
            await parity(
              `ties thresholds ${thr} weights ${ws}`,
              async (d) => {
                const out = new Float32Array(n);
                await d.ties([x, y, z], ws, thr, out);
                return out;
              },
              (a, e, _b, label) => sameF32(a, e, label),
            );
          }
        }
      });

      test('DARE masks and rescale', async () => {
        for (const [p, offset] of [
          [0, 0],
          [0.5, 0],
          [0.9, 2 ** 32 - 3],
        ]) {
          await parity(
            `dareDrop p=${p}`,
            async (d) => {
              const out = new Float32Array(n);
              await d.dareDrop(x, p, 42, 7, offset, out);
              return out;
            },
            (a, e, _b, label) => sameF32(a, e, label),
          );
        }
      });
    });
  }

  test('every backend refuses the same bad arguments with the same codes', async () => {
    for (const b of backends) {
      const d = b.device;
      await assert.rejects(d.sub(f32([1]), f32([1, 2]), f32([0])), hasCode('E_KERNEL_LENGTH'), b.name);
      await assert.rejects(d.weightedSum([], [], f32([])), hasCode('E_KERNEL_ARG'), b.name);
      await assert.rejects(d.kthLargestAbs([f32([1])], 2), hasCode('E_KERNEL_ARG'), b.name);
      const buf = new Float32Array(8);
      await assert.rejects(
        d.sub(buf.subarray(0, 4), buf.subarray(0, 4), buf.subarray(1, 5)),
        hasCode('E_KERNEL_ALIAS'),
      );
      assert.throws(() => d.alloc('F32', -1), hasCode('E_KERNEL_ARG'));
      // Fresh device memory is not zeroed (the WASM pool reuses freed blocks): write it whole first.
      const h = d.alloc('F32', 3);
      await d.upload(h, f32([9, 9, 9]), 0);
      await d.upload(h, f32([1, 2]), 1);
      const back = new Float32Array(3);
      await d.download(h, back, 0);
      assert.deepEqual([...back], [9, 1, 2], b.name);
      await assert.rejects(d.upload(h, f32([1, 2, 3]), 1), hasCode('E_KERNEL_LENGTH'));
      d.free(h);
      assert.throws(() => d.free(h), hasCode('E_KERNEL_BAD_FREE'), b.name);
    }
  });
});

describe('transferTyped: sums independent of backend and thread count', () => {
  /** The plain element-order f64 sums, the quantities the report takes. */
  const naive = (nw: Float32Array, ft: Float32Array, old: Float32Array) => {
    const t = [0, 0, 0, 0];
    for (let j = 0; j < nw.length; j++) {
      const d = Math.fround(ft[j] - old[j]);
      const sh = nw[j] - old[j];
      t[0] += sh * d;
      t[1] += sh * sh;
      t[2] += d * d;
      t[3] += old[j] * old[j];
    }
    return t;
  };
  const bytes = (v: Float32Array) => new Uint8Array(v.buffer, v.byteOffset, v.byteLength);

  test('300,007 elements: 1 thread, 2 threads and 3 workers give the same bytes and sums as the reference', async () => {
    const n = 300_007; // over the default parallelMin (262,144): 2 threads split it too
    const [xn, xf, xo] = [41, 42, 43].map((seed) => spread(n, seed));
    const devices: [string, Device][] = [
      ['reference', referenceDevice()],
      ['wasm, 1 thread', await getDevice({ device: 'cpu', threads: 1 })],
      ['wasm, 2 threads', await getDevice({ device: 'cpu', threads: 2 })],
      ['wasm, 3 workers', await getDevice({ device: 'cpu', threads: 3, parallelMin: 1 })],
    ];
    const want = blockOrderSums(xn, xf, xo);
    const plain = naive(xn, xf, xo);
    let first: Uint8Array | null = null;
    for (const [name, d] of devices) {
      const out = new Uint8Array(n * 2);
      const sums = await d.transferTyped([xn, xf, xo].map(bytes), 'F32', 0.5, 'BF16', out);
      if (first) sameBytes(out, first, name);
      else first = out;
      [sums.dot, sums.shift2, sums.delta2, sums.old2].forEach((v, q) => {
        sameSum(v, want[q], `${name}: sum ${q}`);
        // the same sum as the element order, up to rounding: |error| ≤ n·ε·Σ|terms|
        assert.ok(
          Math.abs(v - plain[q]) <= n * 2 ** -52 * Math.abs(plain[q]) + 1e-300,
          `${name}: sum ${q} ≈ ${plain[q]}`,
        );
      });
    }
  });

  test('sums that no order can round equal the element-order sums exactly', async () => {
    // small integers: every term and partial sum is exact in f64
    const n = 4099;
    const r = rng(77);
    const ints = () => Float32Array.from({ length: n }, () => Math.floor(r() * 64) - 32);
    const [xn, xf, xo] = [ints(), ints(), ints()];
    const plain = naive(xn, xf, xo);
    for (const b of backends) {
      const sums = await b.device.transferTyped([xn, xf, xo].map(bytes), 'F32', 1, 'F32', new Uint8Array(n * 4));
      assert.deepEqual([sums.dot, sums.shift2, sums.delta2, sums.old2], plain, b.name);
    }
  });

  test('in place: the output may be one input exactly (same dtype)', async () => {
    const n = 3001;
    const xs = [51, 52, 53].map((seed) => spread(n, seed, [NAN, -0, SUB]));
    for (const dt of ['F32', 'BF16'] as KernelDType[]) {
      const size = dt === 'F32' ? 4 : 2;
      const raw = xs.map((v) => {
        const b = new Uint8Array(n * size);
        void referenceDevice().fromF32(v, dt, b);
        return b;
      });
      for (const b of backends) {
        const out = new Uint8Array(n * size);
        const want = await b.device.transferTyped(raw, dt, 0.7, dt, out);
        for (const i of [0, 1, 2]) {
          const ins = raw.map((v) => v.slice());
          const got = await b.device.transferTyped(ins, dt, 0.7, dt, ins[i]);
          sameBytes(ins[i], out, `${dt} on ${b.name}: in place over input ${i}`);
          assert.deepEqual(got, want, `${dt} on ${b.name}: sums in place over input ${i}`);
        }
      }
    }
  });

  test('every backend refuses the same bad transferTyped calls', async () => {
    const three = () => [new Uint8Array(8), new Uint8Array(8), new Uint8Array(8)];
    for (const b of backends) {
      const d = b.device;
      await assert.rejects(
        d.transferTyped(three().slice(0, 2), 'BF16', 1, 'BF16', new Uint8Array(8)),
        hasCode('E_KERNEL_ARG'),
        b.name,
      );
      await assert.rejects(
        d.transferTyped(three(), 'BF16', 1, 'BF16', new Uint8Array(6)),
        hasCode('E_KERNEL_LENGTH'),
        b.name,
      );
      await assert.rejects(
        d.transferTyped(three(), 'BF16', 1, 'F32', new Uint8Array(6)),
        hasCode('E_KERNEL_LENGTH'),
        b.name,
      );
      await assert.rejects(
        d.transferTyped(three(), 'I8' as KernelDType, 1, 'BF16', new Uint8Array(8)),
        hasCode('E_KERNEL_DTYPE'),
        b.name,
      );
      await assert.rejects(
        d.transferTyped(three(), 'BF16', NAN, 'BF16', new Uint8Array(8)),
        hasCode('E_KERNEL_ARG'),
        b.name,
      );
      await assert.rejects(
        d.transferTyped(three(), 'BF16', INF, 'BF16', new Uint8Array(8)),
        hasCode('E_KERNEL_ARG'),
        b.name,
      );
      const buf = new Uint8Array(32);
      const ins = [buf.subarray(0, 8), new Uint8Array(8), new Uint8Array(8)];
      await assert.rejects(
        d.transferTyped(ins, 'BF16', 1, 'BF16', buf.subarray(2, 10)),
        hasCode('E_KERNEL_ALIAS'),
        b.name,
      );
      // in place needs the same layout: BF16 in, F16 out over an input is refused
      await assert.rejects(
        d.transferTyped(ins, 'BF16', 1, 'F16', buf.subarray(0, 8)),
        hasCode('E_KERNEL_ALIAS'),
        b.name,
      );
    }
  });
});

describe('diffStats: hand-computed figures, splits, refusals', () => {
  const raw = (xs: number[], dt: KernelDType) => {
    const r = new Uint8Array(xs.length * (dt === 'F32' ? 4 : 2));
    void referenceDevice().fromF32(Float32Array.from(xs), dt, r);
    return r;
  };

  test('NaN on both sides is identical, NaN on one side and Inf − Inf are never the largest |δ|', async () => {
    for (const dt of ['BF16', 'F16', 'F32'] as KernelDType[]) {
      for (const b of backends) {
        const got = await b.device.diffStats(
          raw([NAN, NAN, 1, INF, -INF, 5], dt),
          raw([NAN, 1, NAN, INF, -INF, 3], dt),
          dt,
        );
        const label = `${dt} on ${b.name}`;
        assert.equal(got.identical, 3, `${label}: NaN, Inf and −Inf equal themselves bit for bit`);
        assert.equal(got.maxAbsDelta, 2, `${label}: |3 − 5|, the only δ that is not NaN`);
        for (const k of ['sqDelta', 'sqA', 'sqB', 'dot'] as const) assert.ok(Number.isNaN(got[k]), `${label}: ${k}`);
        const nanOnly = await b.device.diffStats(raw([NAN, INF], dt), raw([NAN, INF], dt), dt);
        assert.deepEqual(
          { max: nanOnly.maxAbsDelta, identical: nanOnly.identical },
          { max: 0, identical: 2 },
          `${label}: no δ that is not NaN gives 0`,
        );
      }
    }
  });

  test('−0 against +0: δ = 0 but not identical; subnormals are not flushed', async () => {
    // the smallest positive subnormal of each dtype is 2^-e
    for (const [dt, e] of [
      ['F32', 149],
      ['BF16', 133],
      ['F16', 24],
    ] as [KernelDType, number][]) {
      for (const b of backends) {
        const label = `${dt} on ${b.name}`;
        const z = await b.device.diffStats(raw([-0, 0, 3, 1.5, -2], dt), raw([0, -0, 3, -1, -2], dt), dt);
        assert.deepEqual(
          z,
          { sqDelta: 6.25, sqA: 9 + 2.25 + 4, sqB: 9 + 1 + 4, dot: 9 - 1.5 + 4, maxAbsDelta: 2.5, identical: 2 },
          label,
        );
        const tiny = 2 ** -e;
        const t = await b.device.diffStats(raw([tiny, 0], dt), raw([-tiny, 0], dt), dt);
        if (!b.sumsExact) {
          // the GPU's f32 partials cannot hold 2^-298: the elementwise figures stay exact,
          // the sums within closeSum's bound (docs/gpu.md)
          assert.deepEqual({ max: t.maxAbsDelta, identical: t.identical }, { max: 2 ** (1 - e), identical: 1 }, label);
          const want = { sqDelta: 2 ** (2 - 2 * e), sqA: 2 ** (-2 * e), sqB: 2 ** (-2 * e), dot: -(2 ** (-2 * e)) };
          for (const k of ['sqDelta', 'sqA', 'sqB', 'dot'] as const)
            closeSum(t[k], want[k], Math.abs(want[k]), 2, label);
          continue;
        }
        assert.deepEqual(
          t,
          {
            sqDelta: 2 ** (2 - 2 * e),
            sqA: 2 ** (-2 * e),
            sqB: 2 ** (-2 * e),
            dot: -(2 ** (-2 * e)),
            maxAbsDelta: 2 ** (1 - e),
            identical: 1,
          },
          label,
        );
      }
    }
  });

  test('empty and one element', async () => {
    for (const b of backends) {
      const empty = await b.device.diffStats(new Uint8Array(0), new Uint8Array(0), 'BF16');
      assert.deepEqual(empty, { sqDelta: 0, sqA: 0, sqB: 0, dot: 0, maxAbsDelta: 0, identical: 0 }, b.name);
      const one = await b.device.diffStats(raw([1.5], 'F32'), raw([-0.25], 'F32'), 'F32');
      assert.deepEqual(
        one,
        { sqDelta: 1.75 ** 2, sqA: 2.25, sqB: 0.0625, dot: -0.375, maxAbsDelta: 1.75, identical: 0 },
        b.name,
      );
    }
  });

  test('300,007 elements: 1 thread, 2 threads and 3 workers give the reference bits', async () => {
    const n = 300_007; // over the default parallelMin (262,144): 2 threads split it too
    const devices: [string, Device][] = [
      ['reference', referenceDevice()],
      ['wasm, 1 thread', await getDevice({ device: 'cpu', threads: 1 })],
      ['wasm, 2 threads', await getDevice({ device: 'cpu', threads: 2 })],
      ['wasm, 3 workers', await getDevice({ device: 'cpu', threads: 3, parallelMin: 1 })],
    ];
    // finite (NaN would make every sum NaN; the table covers it): −0 and subnormals among them
    const a = spread(n, 61, [-0, SUB, MIN_SUB]);
    // b: a fine-tune of a, with a third of the elements left as they are
    const d = spread(n, 62);
    const b = Float32Array.from(a, (v, j) => (j % 3 === 0 ? v : Math.fround(v + d[j] * 0.01)));
    for (const dt of ['BF16', 'F32'] as KernelDType[]) {
      const ra = raw([...a], dt);
      const rb = raw([...b], dt);
      const want = diffDefinition(ra, rb, dt);
      assert.ok(want.identical >= n / 3, `${dt}: a third at least is unchanged`);
      assert.ok(want.sqDelta > 0 && Number.isFinite(want.sqDelta + want.sqA + want.sqB + want.dot), dt);
      for (const [name, dev] of devices) {
        const got = await dev.diffStats(ra, rb, dt);
        const label = `${dt} on ${name}`;
        for (const k of ['sqDelta', 'sqA', 'sqB', 'dot'] as const) sameSum(got[k], want[k], `${label}: ${k}`);
        assert.equal(got.maxAbsDelta, want.maxAbsDelta, `${label}: maxAbsDelta`);
        assert.equal(got.identical, want.identical, `${label}: identical`);
      }
    }
  });

  test('block sums equal the element-order sums where no order can round', async () => {
    // small integers: every term and partial sum is exact in f64
    const n = 5003;
    const r = rng(78);
    const ints = () => Array.from({ length: n }, () => Math.floor(r() * 64) - 32);
    const [a, b] = [ints(), ints()];
    const plain = { sqDelta: 0, sqA: 0, sqB: 0, dot: 0, maxAbsDelta: 0, identical: 0 };
    for (let j = 0; j < n; j++) {
      const d = b[j] - a[j];
      plain.sqDelta += d * d;
      plain.sqA += a[j] * a[j];
      plain.sqB += b[j] * b[j];
      plain.dot += a[j] * b[j];
      plain.maxAbsDelta = Math.max(plain.maxAbsDelta, Math.abs(d));
      if (a[j] === b[j]) plain.identical++;
    }
    for (const dt of ['BF16', 'F16', 'F32'] as KernelDType[]) {
      for (const be of backends)
        assert.deepEqual(await be.device.diffStats(raw(a, dt), raw(b, dt), dt), plain, be.name);
    }
  });

  test('every backend refuses the same bad diffStats calls', async () => {
    for (const b of backends) {
      const d = b.device;
      await assert.rejects(d.diffStats(new Uint8Array(8), new Uint8Array(6), 'BF16'), hasCode('E_KERNEL_LENGTH'));
      await assert.rejects(d.diffStats(new Uint8Array(6), new Uint8Array(6), 'F32'), hasCode('E_KERNEL_LENGTH'));
      await assert.rejects(d.diffStats(new Uint8Array(3), new Uint8Array(3), 'F16'), hasCode('E_KERNEL_LENGTH'));
      await assert.rejects(
        d.diffStats(new Uint8Array(8), new Uint8Array(8), 'I8' as KernelDType),
        hasCode('E_KERNEL_DTYPE'),
      );
      await assert.rejects(
        d.diffStats(new Float32Array(2) as unknown as Uint8Array, new Uint8Array(8), 'F32'),
        hasCode('E_KERNEL_ARG'),
      );
    }
  });
});

describe('getDevice', () => {
  test('auto takes what autoChoice says; cpu gives the WASM pool; an unknown device is refused', async () => {
    await assert.rejects(getDevice({ device: 'tpu' as 'cpu' }), hasCode('E_KERNEL_ARG'));
    const choice = await autoChoice();
    const auto = await getDevice({ device: 'auto' });
    assert.equal(auto.name, choice.device === 'gpu' ? 'webgpu' : 'wasm');
    if (choice.device === 'cpu') assert.equal(await getDevice({ device: 'cpu' }), auto);
    assert.equal((await getDevice({ device: 'cpu', backend: 'reference' })).name, 'reference');
  });
});

describe('one NaN policy on every path', () => {
  // A task vector holding a NaN: the plain TypeScript merge (sparseConsensusTensor)
  // and the device path (fastMergeTensor) on every backend must give the same bits.
  const len = 4099;
  const base = spread(len, 11);
  const inputs = [0, 1, 2].map((i) => {
    const t = spread(len, 20 + i);
    const v = new Float32Array(len);
    for (let j = 0; j < len; j++) v[j] = Math.fround(base[j] + t[j]);
    return v;
  });
  inputs[0][17] = NAN;
  inputs[1][400] = NAN;
  inputs[2][4000] = INF;
  const bytesOf = (v: Float32Array) => new Uint8Array(v.buffer.slice(v.byteOffset, v.byteOffset + v.byteLength));

  for (const [method, params] of [
    ['ties', { density: 0.3 }],
    ['ties', { density: 1 }],
    ['ties', { density: 0.3, weights: [1, -0.5, 2] }],
    ['ties', { density: 1, weights: [1, -1, 0.5] }],
    ['dare-ties', { density: 0.5, seed: 3 }],
    ['dare-ties', { density: 0.5, seed: 3, weights: [1, -0.5, 2], normalize: true }],
    ['dare-linear', { density: 0.5, seed: 3 }],
    ['task-arithmetic', {}],
  ] as const) {
    test(`${method} ${JSON.stringify(params)}: kernels on and off agree`, async () => {
      const m = getMethod(method);
      const resolved = m.resolve(params as MergeParams, inputs.length);
      const tp = tensorParams(resolved, 'w');
      const plain = new Float32Array(len);
      assert.ok(m.config);
      sparseConsensusTensor(m.config, tp, inputs, base, { name: 'w' }, plain);
      for (const b of backends) {
        const pool = new BufferPool(b.device);
        const out = new Uint8Array(len * 4);
        const done = await fastMergeTensor(
          { device: b.device, method: m, params: tp, ctx: { name: 'w' } },
          [...inputs, base].map(bytesOf),
          'F32',
          'F32',
          out,
          pool,
        );
        assert.ok(done, `${b.name} took the device path`);
        sameF32(new Float32Array(out.buffer), plain, `${method} on ${b.name}`);
        pool.release();
      }
    });
  }
});
