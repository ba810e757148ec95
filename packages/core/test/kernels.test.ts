import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, renameSync, statSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  type DeviceBuffer,
  getDevice,
  isWgitError,
  type KernelDType,
  type Device as Kernels,
  reference,
} from '@wgit/core';
import { dareKeeps, tiesMerged } from './oracles.js';

// The kernels need packages/core/wasm/kernels.wasm; `pnpm test` builds it,
// this keeps `node scripts/test.mjs kernels` working on a fresh checkout.
function ensureWasm(): void {
  const root = fileURLToPath(new URL('..', import.meta.url));
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

/** Deterministic generator (xorshift32) so failures reproduce. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
}

const SPECIALS = [
  Number.NaN,
  Number.POSITIVE_INFINITY,
  Number.NEGATIVE_INFINITY,
  -0,
  0,
  1e-40,
  -3e-45,
  65504,
  65520,
  -1e-7,
  3.4e38,
];

/** Values spread over many magnitudes, with special values sprinkled in. */
function data(n: number, seed: number, specials = true): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    out[i] = specials && i % 97 === 13 ? SPECIALS[i % SPECIALS.length] : (r() - 0.5) * 2 ** Math.floor(r() * 24 - 16);
  }
  return out;
}

/** Random bit patterns: every exponent, NaN payloads, subnormals. */
function randomBits(bytes: number, seed: number): Uint8Array {
  const r = rng(seed);
  const out = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i++) out[i] = Math.floor(r() * 256);
  return out;
}

/** Bit-exact f32 comparison, where any NaN matches any NaN (JS canonicalises NaN payloads). */
function assertSameF32(actual: Float32Array, expected: Float32Array, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  const a = new Uint32Array(actual.buffer, actual.byteOffset, actual.length);
  const e = new Uint32Array(expected.buffer, expected.byteOffset, expected.length);
  for (let i = 0; i < a.length; i++) {
    if (a[i] === e[i]) continue;
    if (Number.isNaN(actual[i]) && Number.isNaN(expected[i])) continue;
    assert.fail(
      `${what}: element ${i} is ${actual[i]} (0x${a[i].toString(16)}), expected ${expected[i]} (0x${e[i].toString(16)})`,
    );
  }
}

function assertSameBytes(actual: Uint8Array, expected: Uint8Array, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  const i = Buffer.from(actual.buffer, actual.byteOffset, actual.length).compare(
    Buffer.from(expected.buffer, expected.byteOffset, expected.length),
  );
  if (i !== 0) {
    let k = 0;
    while (actual[k] === expected[k]) k++;
    assert.fail(`${what}: first difference at byte ${k}: ${actual[k]} vs ${expected[k]}`);
  }
}

const BIG = 1_000_007;
const LENGTHS = [0, 1, 3, 4, 5, 1023, 5000, BIG];
const SIZE: Record<KernelDType, number> = { F32: 4, BF16: 2, F16: 2 };

interface Setup {
  name: string;
  k: Kernels;
  /** Copies `x` into pool memory when `inPool`, else returns it (the staged path). */
  put<T extends Float32Array | Uint8Array>(x: T): T;
  release(): void;
}

let single: Kernels;
let threaded: Kernels;
const setups: Setup[] = [];

before(async () => {
  ensureWasm();
  single = await getDevice({ device: 'cpu', threads: 1 });
  // parallelMin 1: every call goes through the workers, split in block-aligned ranges.
  threaded = await getDevice({ device: 'cpu', threads: 3, parallelMin: 1 });
  for (const [name, k, inPool] of [
    ['single thread, ordinary arrays', single, false],
    ['3 workers, pool memory', threaded, true],
  ] as const) {
    const owned: DeviceBuffer[] = [];
    setups.push({
      name,
      k,
      put<T extends Float32Array | Uint8Array>(x: T): T {
        if (!inPool) return x;
        const b = k.alloc(x instanceof Float32Array ? 'F32' : 'U8', x.length);
        const v = k.hostView(b) as T;
        v.set(x as never);
        owned.push(b);
        return v;
      },
      release() {
        for (const v of owned.splice(0)) k.free(v);
      },
    });
  }
});

after(async () => {
  await single.close();
  await threaded.close();
});

describe('conversions', () => {
  for (const dtype of ['BF16', 'F16', 'F32'] as const) {
    test(`toF32 from ${dtype} matches the reference bit for bit`, async () => {
      for (const s of setups) {
        for (const n of LENGTHS) {
          const src = s.put(randomBits(n * SIZE[dtype], n + 1));
          const dst = s.put(new Float32Array(n).fill(7));
          await s.k.toF32(src, dtype, dst);
          const exp = new Float32Array(n);
          reference.toF32(src, dtype, exp);
          assertSameBytes(
            new Uint8Array(dst.buffer, dst.byteOffset, n * 4),
            new Uint8Array(exp.buffer),
            `${s.name} n=${n}`,
          );
          s.release();
        }
      }
    });

    test(`fromF32 to ${dtype} matches the reference bit for bit`, async () => {
      for (const s of setups) {
        for (const n of LENGTHS) {
          const bits = randomBits(n * 4, n + 2);
          const vals = new Float32Array(bits.buffer);
          // Half random bit patterns, half values in the target's range (subnormals, ties).
          const ranged = data(n, n + 3);
          for (let i = 0; i < n; i += 2) vals[i] = ranged[i];
          const src = s.put(vals);
          const dst = s.put(new Uint8Array(n * SIZE[dtype]));
          await s.k.fromF32(src, dtype, dst);
          const exp = new Uint8Array(n * SIZE[dtype]);
          reference.fromF32(vals, dtype, exp);
          assertSameBytes(dst, exp, `${s.name} n=${n}`);
          s.release();
        }
      }
    });
  }

  test('conversion ties round to even in the kernels too', async () => {
    // Halfway between bf16 1.0 (0x3f80) and 0x3f81, and between 0x3f81 and 0x3f82.
    const vals = new Float32Array(new Uint32Array([0x3f808000, 0x3f818000, 0x3f808001, 0x7f7fffff]).buffer);
    for (const s of setups) {
      const out = new Uint8Array(8);
      await s.k.fromF32(vals, 'BF16', out);
      assert.deepEqual([...new Uint16Array(out.buffer)], [0x3f80, 0x3f82, 0x3f81, 0x7f80]);
      const h = new Uint8Array(6);
      await s.k.fromF32(new Float32Array([2049, 2051, 1e6]), 'F16', h);
      // f16 spacing at 2048 is 2: 2049 ties to 2048 (even), 2051 to 2052.
      assert.deepEqual([...new Uint16Array(h.buffer)], [0x6800, 0x6802, 0x7c00]);
    }
  });
});

describe('elementwise', () => {
  test('weightedSum of 1, 3 and 8 inputs matches the reference', async () => {
    for (const s of setups) {
      for (const n of LENGTHS) {
        for (const count of [1, 3, 8]) {
          const xs = Array.from({ length: count }, (_, i) => data(n, 100 * count + i + n));
          const ws = Array.from({ length: count }, (_, i) => (i % 2 ? -0.3 : 0.7) / (i + 1));
          const out = s.put(new Float32Array(n));
          await s.k.weightedSum(
            xs.map((x) => s.put(x)),
            ws,
            out,
          );
          const exp = new Float32Array(n);
          reference.weightedSum(xs, ws, exp);
          assertSameF32(out, exp, `${s.name} n=${n} k=${count}`);
          s.release();
        }
      }
    }
  });

  test('weightedSum in place into inputs[0]', async () => {
    for (const s of setups) {
      const x0 = data(BIG, 1);
      const x1 = data(BIG, 2);
      const exp = new Float32Array(BIG);
      reference.weightedSum([x0, x1], [0.5, 0.5], exp);
      const a = s.put(x0.slice());
      await s.k.weightedSum([a, s.put(x1)], [0.5, 0.5], a);
      assertSameF32(a, exp, s.name);
      s.release();
    }
  });

  const typedCases: [KernelDType, KernelDType][] = [
    ['BF16', 'BF16'],
    ['F16', 'F16'],
    ['BF16', 'F32'],
    ['F32', 'BF16'],
    ['F16', 'BF16'],
  ];
  for (const [inD, outD] of typedCases) {
    test(`weightedSumTyped ${inD} → ${outD} matches the reference`, async () => {
      for (const s of setups) {
        for (const n of LENGTHS) {
          const xs = [0, 1, 2].map((i) => {
            const b = new Uint8Array(n * SIZE[inD]);
            reference.fromF32(data(n, 7 * i + n), inD, b);
            return b;
          });
          const ws = [0.5, 0.25, 0.25];
          const out = s.put(new Uint8Array(n * SIZE[outD]));
          await s.k.weightedSumTyped(
            xs.map((x) => s.put(x)),
            inD,
            ws,
            outD,
            out,
          );
          const exp = new Uint8Array(n * SIZE[outD]);
          reference.weightedSumTyped(xs, inD, ws, outD, exp);
          if (outD === 'F32') {
            assertSameF32(
              new Float32Array(out.buffer, out.byteOffset, n),
              new Float32Array(exp.buffer),
              `${s.name} n=${n}`,
            );
          } else {
            // NaN results may differ in payload between wasm and JS; compare decoded.
            const a = new Float32Array(n);
            const e = new Float32Array(n);
            reference.toF32(out, outD, a);
            reference.toF32(exp, outD, e);
            assertSameF32(a, e, `${s.name} n=${n}`);
          }
          s.release();
        }
      }
    });
  }

  test('sub and axpy match the reference', async () => {
    for (const s of setups) {
      for (const n of LENGTHS) {
        const a = data(n, n + 11);
        const b = data(n, n + 12);
        const out = s.put(new Float32Array(n));
        await s.k.sub(s.put(a), s.put(b), out);
        const exp = new Float32Array(n);
        reference.sub(a, b, exp);
        assertSameF32(out, exp, `sub ${s.name} n=${n}`);
        await s.k.axpy(s.put(a), -0.7, s.put(b), out);
        reference.axpy(a, -0.7, b, exp);
        assertSameF32(out, exp, `axpy ${s.name} n=${n}`);
        s.release();
      }
    }
  });
});

describe('reductions', () => {
  test('single-thread dot, sumSq, sumAbs are bit-identical to the reference', async () => {
    for (const n of LENGTHS) {
      const a = data(n, n + 21, false);
      const b = data(n, n + 22, false);
      assert.equal(await single.dot(a, b), reference.dot(a, b), `dot n=${n}`);
      assert.equal(await single.sumSq(a), reference.sumSq(a), `sumSq n=${n}`);
      assert.equal(await single.sumAbs(a), reference.sumAbs(a), `sumAbs n=${n}`);
    }
  });

  test('threaded reductions agree with a naive f64 sum and repeat exactly', async () => {
    for (const n of LENGTHS) {
      const a = data(n, n + 31, false);
      const b = data(n, n + 32, false);
      let dot = 0;
      let sq = 0;
      let abs = 0;
      for (let i = 0; i < n; i++) {
        dot += a[i] * b[i];
        sq += a[i] * a[i];
        abs += Math.abs(a[i]);
      }
      const close = (x: number, y: number, scale: number, what: string) =>
        assert.ok(Math.abs(x - y) <= 1e-12 * scale, `${what}: ${x} vs ${y}`);
      const d1 = await threaded.dot(a, b);
      close(d1, dot, sq + 1, `dot n=${n}`);
      close(await threaded.sumSq(a), sq, sq, `sumSq n=${n}`);
      close(await threaded.sumAbs(a), abs, abs, `sumAbs n=${n}`);
      assert.equal(await threaded.dot(a, b), d1, 'same thread count, same bits');
    }
    assert.equal(await single.sumAbs(new Float32Array([-1, Number.NaN])), Number.NaN);
  });
});

describe('k-th largest |x|', () => {
  test('absHistogram matches the reference, accumulating', async () => {
    const x = data(BIG, 41);
    for (const k of [single, threaded]) {
      const got = new Uint32Array(65536);
      const exp = new Uint32Array(65536);
      await k.absHistogram(x, 0, 0, got);
      await k.absHistogram(x.subarray(0, 999), 0, 0, got);
      reference.absHistogram(x, 0, 0, exp);
      reference.absHistogram(x.subarray(0, 999), 0, 0, exp);
      assert.deepEqual(got, exp);
      const bits = new Uint32Array(x.buffer);
      const prefix = (bits[500] & 0x7fffffff) >>> 15;
      got.fill(0);
      exp.fill(0);
      await k.absHistogram(x, 1, prefix, got);
      reference.absHistogram(x, 1, prefix, exp);
      assert.deepEqual(got, exp);
      assert.ok(got.reduce((p, q) => p + q, 0) >= 1);
    }
  });

  test('kthLargestAbs equals sorting, over one or many arrays', async () => {
    const r = rng(5);
    const arrays = [data(BIG, 51, false), data(3, 52, false), data(0, 1), data(1023, 53, false), data(5, 54, false)];
    arrays[3][100] = Number.NEGATIVE_INFINITY;
    arrays[3][200] = 1e-45;
    arrays[1][2] = -3e38;
    // Duplicates and both zeros: ranks fall inside runs of equal magnitudes.
    for (let i = 0; i < 5000; i++) arrays[0][Math.floor(r() * BIG)] = i % 2 ? 0.125 : -0.125;
    for (let i = 0; i < 100; i++) arrays[0][i] = i % 2 ? -0 : 0;
    // Typed-array sort is numeric and fast; reversed to descending order.
    const mags = new Float32Array(arrays.reduce((n, a) => n + a.length, 0));
    let at = 0;
    for (const a of arrays) for (const v of a) mags[at++] = Math.abs(v);
    mags.sort().reverse();
    const total = mags.length;
    const ks = [1, 2, 7, Math.floor(total * 0.2), Math.floor(total / 2), total - 50, total];
    for (let i = 0; i < 5; i++) ks.push(1 + Math.floor(r() * total));
    for (const k of [single, threaded]) {
      for (const rank of ks) {
        assert.equal(await k.kthLargestAbs(arrays, rank), mags[rank - 1], `k=${rank}`);
      }
      for (const n of [1, 3, 4, 5, 1023]) {
        const one = data(n, n + 60, false);
        const sorted = [...one].map(Math.abs).sort((p, q) => q - p);
        for (const rank of [1, Math.ceil(n / 2), n]) {
          assert.equal(await k.kthLargestAbs([one], rank), sorted[rank - 1], `n=${n} k=${rank}`);
        }
      }
    }
    // Concurrent selections on one pool do not share counters.
    const [c1, c2] = await Promise.all([
      threaded.kthLargestAbs(arrays, ks[3]),
      threaded.kthLargestAbs([arrays[0]], 12345),
    ]);
    assert.equal(c1, mags[ks[3] - 1]);
    assert.equal(c2, Float32Array.from(arrays[0], Math.abs).sort().reverse()[12344]);
    // NaN is never ranked (docs/kernels.md, NaN policy); past the non-NaN entries the answer is 0.
    const withNaN = new Float32Array([1, Number.NaN, Number.POSITIVE_INFINITY, -2]);
    for (const k of [single, threaded]) {
      assert.equal(await k.kthLargestAbs([withNaN], 1), Number.POSITIVE_INFINITY);
      assert.equal(await k.kthLargestAbs([withNaN], 2), 2);
      assert.equal(await k.kthLargestAbs([withNaN], 3), 1);
      assert.equal(await k.kthLargestAbs([withNaN], 4), 0);
    }
    // The reference implementation agrees as well.
    assert.equal(reference.kthLargestAbs(arrays, ks[3]), mags[ks[3] - 1]);
  });

  test('kthLargestAbs rejects ranks outside 1..N', async () => {
    for (const bad of [0, 4, 1.5, Number.NaN]) {
      await assert.rejects(
        single.kthLargestAbs([new Float32Array(3)], bad),
        (e) => isWgitError(e) && e.code === 'E_KERNEL_ARG',
      );
    }
  });
});

describe('TIES', () => {
  test('hand-computed three-model example', async () => {
    const t1 = new Float32Array([0.5, -0.2, 0.1, 0, 0.3, -0.4]);
    const t2 = new Float32Array([0.3, 0.4, -0.3, 0, -0.1, -0.2]);
    const t3 = new Float32Array([-0.6, 0.1, -0.05, 0, 0.2, 0.1]);
    // Thresholds: model 1 keeps |x| ≥ 0.2 (drops 0.1), model 2 keeps ≥ 0.3
    // (drops -0.2, -0.1), model 3 keeps everything non-zero. Weights 1, 1, 2.
    //  j=0: 0.5, 0.3, -0.6 → s = 0.5+0.3-1.2 = -0.4 → γ=− → only model 3: (2·-0.6)/2 = -0.6
    //  j=1: -0.2, 0.4, 0.1 → s = -0.2+0.4+0.2 = 0.4 → γ=+ → models 2, 3: (0.4+0.2)/3 = 0.2
    //  j=2: (0.1 dropped), -0.3, -0.05 → s < 0 → models 2, 3: (-0.3-0.1)/3
    //  j=3: all zero → 0
    //  j=4: 0.3, (-0.1 dropped), 0.2 → s > 0 → models 1, 3: (0.3+0.4)/3
    //  j=5: -0.4, (-0.2 dropped), 0.1 → s = -0.4+0.2 = -0.2 → model 1 only: -0.4
    const expected = [-0.6, 0.2, -0.4 / 3, 0, 0.7 / 3, -0.4];
    for (const k of [single, threaded]) {
      const out = new Float32Array(6);
      await k.ties([t1, t2, t3], [1, 1, 2], [0.2, 0.3, 0], out);
      for (let j = 0; j < 6; j++)
        assert.ok(Math.abs(out[j] - expected[j]) < 1e-6, `j=${j}: ${out[j]} vs ${expected[j]}`);
      assert.ok(Object.is(out[3], 0));
    }
  });

  // Every branch of the definition, worked by hand with values exact in binary:
  // kept above, at and below the threshold; zeros, −0 and NaN never kept; the
  // election at s > 0, s < 0 and s = 0 (+); a negative weight's vote; a zero
  // Σw among the agreeing inputs; no agreeing input; tie quotas −1, 0 and 2.
  const branchCases: {
    what: string;
    taus: number[][];
    w: number[];
    thr: number[];
    quotas?: number[];
    want: number[];
  }[] = [
    {
      what: 'trim and election, weights 1 1 2, thresholds ½ ½ ¼',
      taus: [
        [0.75, 1, 1, 0.25, Number.NaN],
        [0.5, -1, -1, -0.25, 0.5],
        [0.125, -0.5, 0, 0.125, -0.25],
      ],
      w: [1, 1, 2],
      thr: [0.5, 0.5, 0.25],
      // j0: 0.75 (above), 0.5 (at), 0.125 dropped → s > 0 → (0.75 + 0.5) / 2
      // j1: 1, −1, −0.5·2 → s = −1 → inputs 2, 3: (−1 − 1) / (1 + 2)
      // j2: 1, −1, 0 → s = 0 → + → input 1: 1 / 1
      // j3: everything below its threshold → none agrees → +0
      // j4: NaN never kept; 0.5, −0.25·2 → s = 0 → + → input 2: 0.5 / 1
      want: [0.625, Math.fround(-2 / 3), 1, 0, 0.5],
    },
    {
      what: 'zeros and −0 are never kept, even at threshold 0',
      taus: [
        [0, -0, 0.25],
        [-0, 0.5, 0],
      ],
      w: [1, 1],
      thr: [0, 0],
      want: [0, 0.5, 0.25],
    },
    {
      what: 'a negative weight flips the vote; a zero Σw leaves the sum',
      taus: [
        [0.5, 0.5, -0.25],
        [0.5, -1, 0.5],
      ],
      w: [1, -1],
      thr: [0, 0],
      // j0: 0.5, −0.5 → s = 0 → + → input 1: 0.5 / 1
      // j1: 0.5, 1 → both agree, Σw = 0 → 1.5; j2: −0.25, −0.5 → both, Σw = 0 → −0.75
      want: [0.5, 1.5, -0.75],
    },
    {
      what: 'tie quota 2: the first two entries at the threshold, by index',
      taus: [[0.5, 0.75, -0.5, 0.5, 0.5]],
      w: [1],
      thr: [0.5],
      quotas: [2],
      want: [0.5, 0.75, -0.5, 0, 0],
    },
    {
      what: 'tie quota 0: none at the threshold',
      taus: [[0.5, 0.75, -0.5, 0.5, 0.5]],
      w: [1],
      thr: [0.5],
      quotas: [0],
      want: [0, 0.75, 0, 0, 0],
    },
    {
      what: 'tie quota −1: every entry at the threshold',
      taus: [[0.5, 0.75, -0.5, 0.5, 0.5]],
      w: [1],
      thr: [0.5],
      quotas: [-1],
      want: [0.5, 0.75, -0.5, 0.5, 0.5],
    },
  ];
  test('every branch, worked by hand, on the reference and the kernels', async () => {
    for (const c of branchCases) {
      const taus = c.taus.map((t) => Float32Array.from(t));
      const want = Float32Array.from(c.want);
      const ref = new Float32Array(want.length);
      reference.ties(taus, c.w, c.thr, ref, c.quotas);
      assertSameF32(ref, want, `reference: ${c.what}`);
      for (const k of [single, threaded]) {
        const out = new Float32Array(want.length);
        await k.ties(taus, c.w, c.thr, out, c.quotas);
        assertSameF32(out, want, `kernels: ${c.what}`);
      }
    }
  });

  test('the reference equals a plain loop on random data (threshold trim, election, disjoint mean)', () => {
    for (const n of [1, 5, 5000]) {
      for (const count of [1, 3, 8]) {
        const taus = Array.from({ length: count }, (_, i) => data(n, 700 + i + n));
        for (const t of taus) for (let j = 0; j < n; j += 5) t[j] = 0;
        const ws = Array.from({ length: count }, (_, i) => (i % 3 === 2 ? -0.5 : 1 + i / 4));
        const thr = Array.from({ length: count }, (_, i) => (i === 0 ? 0 : 2 ** -(i + 8)));
        const kept = taus.map((t, i) => Array.from(t, (v) => v !== 0 && Math.abs(v) >= Math.fround(thr[i])));
        const exp = new Float32Array(n);
        reference.ties(taus, ws, thr, exp);
        assertSameF32(exp, tiesMerged(taus, kept, ws), `n=${n} k=${count}`);
      }
    }
  });

  test('random inputs match the reference; in place into an input', async () => {
    for (const s of setups) {
      for (const n of LENGTHS) {
        for (const count of [1, 3, 8]) {
          const taus = Array.from({ length: count }, (_, i) => data(n, 300 + i + n));
          // Make ties and exact zeros common so the election is exercised.
          for (const t of taus) for (let j = 0; j < n; j += 5) t[j] = 0;
          const ws = Array.from({ length: count }, (_, i) => 1 + i / 4);
          const thr = Array.from({ length: count }, (_, i) => (i === 0 ? 0 : 2 ** -(i + 8)));
          const out = s.put(new Float32Array(n));
          await s.k.ties(
            taus.map((t) => s.put(t)),
            ws,
            thr,
            out,
          );
          const exp = new Float32Array(n);
          reference.ties(taus, ws, thr, exp);
          assertSameF32(out, exp, `${s.name} n=${n} k=${count}`);
          s.release();
        }
      }
    }
    const a = data(5000, 9);
    const b = data(5000, 10);
    const exp = new Float32Array(5000);
    reference.ties([a, b], [1, 1], [0, 0], exp);
    await threaded.ties([a, b], [1, 1], [0, 0], a);
    assertSameF32(a, exp, 'in place');
  });
});

describe('DARE', () => {
  test('matches the reference and is deterministic across paths', async () => {
    for (const s of setups) {
      for (const n of LENGTHS) {
        const x = data(n, n + 71);
        const out = s.put(new Float32Array(n));
        await s.k.dareDrop(s.put(x), 0.4, 1234, 99, 17, out);
        const exp = new Float32Array(n);
        reference.dareDrop(x, 0.4, 1234, 99, 17, exp);
        assertSameF32(out, exp, `${s.name} n=${n}`);
        s.release();
      }
    }
  });

  test('chunked processing gives the whole-tensor mask', async () => {
    const x = data(BIG, 81, false);
    const whole = new Float32Array(BIG);
    await threaded.dareDrop(x, 0.9, 7, 42, 0, whole);
    const pieces = new Float32Array(BIG);
    const cuts = [0, 1, 333, 4096, 500_001, BIG];
    for (let i = 0; i + 1 < cuts.length; i++) {
      const [a, b] = [cuts[i], cuts[i + 1]];
      await single.dareDrop(x.subarray(a, b), 0.9, 7, 42, a, pieces.subarray(a, b));
    }
    assertSameF32(pieces, whole, 'chunked');
  });

  test('drop rate ≈ p, survivors scaled by 1/(1−p), p = 0 is the identity', async () => {
    const n = BIG;
    const x = new Float32Array(n).fill(1.5);
    for (const p of [0.1, 0.5, 0.9]) {
      const out = new Float32Array(n);
      await threaded.dareDrop(x, p, 3, 5, 0, out);
      let dropped = 0;
      const kept = Math.fround(1.5 * Math.fround(1 / (1 - p)));
      for (const v of out) {
        if (v === 0) dropped++;
        else assert.equal(v, kept);
      }
      // 6 standard deviations of a binomial proportion.
      const sd = Math.sqrt((p * (1 - p)) / n);
      assert.ok(Math.abs(dropped / n - p) < 6 * sd, `p=${p}: dropped ${dropped / n}`);
    }
    const bits = randomBits(4003 * 4, 3);
    const src = new Float32Array(bits.buffer);
    const out = new Float32Array(4003);
    await single.dareDrop(src, 0, 1, 2, 3, out);
    assertSameBytes(new Uint8Array(out.buffer), bits, 'p = 0 keeps every bit, NaN payloads included');
  });

  test('seeds and streams give independent masks; indices past 2^32 work', async () => {
    const x = new Float32Array(100_000).fill(1);
    const masks = [];
    for (const [seed, stream] of [
      [1, 1],
      [2, 1],
      [1, 2],
    ]) {
      const out = new Float32Array(x.length);
      await single.dareDrop(x, 0.5, seed, stream, 0, out);
      masks.push(out);
    }
    for (const [i, j] of [
      [0, 1],
      [0, 2],
      [1, 2],
    ]) {
      let same = 0;
      for (let t = 0; t < x.length; t++) if (masks[i][t] === masks[j][t]) same++;
      // Independent fair masks agree on about half the entries.
      assert.ok(Math.abs(same / x.length - 0.5) < 0.01, `masks ${i},${j} agree on ${same}`);
    }
    // A range that crosses index 2^32 is split inside the pool; the reference
    // computes every index independently.
    const y = data(3000, 91, false);
    const offset = 2 ** 32 - 1000;
    const got = new Float32Array(3000);
    await threaded.dareDrop(y, 0.3, 11, 12, offset, got);
    for (let j = 0; j < 3000; j++) {
      const keep = dareKeeps(11, 12, offset + j, 0.3);
      assert.equal(got[j], keep ? Math.fround(y[j] * Math.fround(1 / 0.7)) : 0, `index ${offset + j}`);
    }
  });
});
