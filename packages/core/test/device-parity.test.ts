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
  type Device,
  getDevice,
  getMethod,
  isWgitError,
  type KernelDType,
  referenceDevice,
  sparseConsensusTensor,
  tensorParams,
} from '@wgit/core';
import { fastMergeTensor } from '../src/methods/fast.js';
import { BufferPool } from '../src/pipeline/index.js';

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
];

interface Backend {
  name: string;
  device: Device;
  /** Reductions: exact, or within this relative bound of the reference (a different summation order). */
  reduceExact: boolean;
}

const backends: Backend[] = [];

before(async () => {
  ensureWasm();
  backends.push({ name: 'reference', device: referenceDevice(), reduceExact: true });
  backends.push({ name: 'wasm, 1 thread', device: await getDevice({ device: 'cpu', threads: 1 }), reduceExact: true });
  // parallelMin 1: every call is split across workers, in block-aligned ranges.
  backends.push({
    name: 'wasm, 3 workers',
    device: await getDevice({ device: 'cpu', threads: 3, parallelMin: 1 }),
    reduceExact: false,
  });
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
        for (const thr of thresholds) {
          await parity(
            `ties thresholds ${thr}`,
            async (d) => {
              const out = new Float32Array(n);
              await d.ties([x, y, z], [0.5, 1, 2], thr, out);
              return out;
            },
            (a, e, _b, label) => sameF32(a, e, label),
          );
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

describe('getDevice', () => {
  test('gpu fails loudly; auto and cpu give the WASM pool; an unknown device is refused', async () => {
    await assert.rejects(getDevice({ device: 'gpu' }), hasCode('E_DEVICE_UNAVAILABLE'));
    await assert.rejects(getDevice({ device: 'tpu' as 'cpu' }), hasCode('E_KERNEL_ARG'));
    assert.equal((await getDevice({ device: 'auto' })).name, 'wasm');
    assert.equal(await getDevice({ device: 'cpu' }), await getDevice({ device: 'auto' }));
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
    ['dare-ties', { density: 0.5, seed: 3 }],
    ['dare-linear', { density: 0.5, seed: 3 }],
    ['task-arithmetic', {}],
  ] as const) {
    test(`${method} ${JSON.stringify(params)}: kernels on and off agree`, async () => {
      const m = getMethod(method);
      const resolved = m.resolve(params, inputs.length);
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
