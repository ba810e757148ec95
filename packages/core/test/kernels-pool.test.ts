import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, renameSync, statSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  ARENA_ALIGN,
  type Device,
  type DeviceBuffer,
  type DeviceOptions,
  dareCut,
  dareHash,
  dareScale,
  fmix32,
  getDevice,
  isWgitError,
  type KernelDType,
  streamId,
} from '@wgit/core';

const root = fileURLToPath(new URL('..', import.meta.url));

function ensureWasm(): void {
  const wasm = `${root}wasm/kernels.wasm`;
  const src = `${root}assembly/kernels.ts`;
  if (existsSync(wasm) && statSync(wasm).mtimeMs >= statSync(src).mtimeMs) return;
  const tmp = `${wasm}.tmp-${process.pid}`;
  const r = spawnSync(
    process.execPath,
    [
      `${root}node_modules/assemblyscript/bin/asc.js`,
      'assembly/kernels.ts',
      '--config',
      'asconfig.json',
      '--target',
      'release',
      '--outFile',
      tmp,
    ],
    { cwd: root, encoding: 'utf8' },
  );
  assert.equal(r.status, 0, r.stderr);
  renameSync(tmp, wasm);
}

const hasCode = (code: string) => (e: unknown) => isWgitError(e) && e.code === code;

let k: Device;
const getKernels = (o: DeviceOptions = {}) => getDevice({ device: 'cpu', ...o });

/** Views on device buffers, and the handles that free them (kept after free, to test double frees). */
const handles = new Map<ArrayBufferView, DeviceBuffer>();
function allocF32(n: number): Float32Array {
  const b = k.alloc('F32', n);
  const v = k.hostView(b);
  handles.set(v, b);
  return v;
}
function allocBytes(n: number): Uint8Array {
  const b = k.alloc('U8', n);
  const v = k.hostView(b);
  handles.set(v, b);
  return v;
}
function free(v: Float32Array | Uint8Array): void {
  k.free(handles.get(v) ?? { dtype: v instanceof Float32Array ? 'F32' : 'U8', length: v.length, view: v });
}

before(async () => {
  ensureWasm();
  k = await getKernels({ threads: 2, parallelMin: 1 });
});

after(async () => {
  await k.close();
});

describe('RNG definition', () => {
  // An independent BigInt transcription of the documented formula.
  const M = 2n ** 32n;
  const fmix = (h: bigint): bigint => {
    h ^= h >> 16n;
    h = (h * 0x85ebca6bn) % M;
    h ^= h >> 13n;
    h = (h * 0xc2b2ae35n) % M;
    h ^= h >> 16n;
    return h;
  };
  const hash = (seed: number, stream: number, index: number): number => {
    const idx = BigInt(index);
    const k1 = fmix(fmix(BigInt(seed) ^ 0x243f6a88n) ^ BigInt(stream) ^ 0x85a308d3n);
    const k2 = fmix(k1 ^ (idx >> 32n) ^ 0x13198a2en);
    return Number(fmix(fmix((idx % M) ^ k2) ^ k1));
  };

  test('dareHash follows the documented formula', () => {
    const cases: [number, number, number][] = [
      [0, 0, 0],
      [1, 2, 3],
      [0xffffffff, 0xdeadbeef, 2 ** 32 - 1],
      [42, 7, 2 ** 32],
      [42, 7, 2 ** 40 + 12345],
      [123456789, 987654321, 2 ** 53 - 1],
    ];
    for (const [s, st, i] of cases) assert.equal(dareHash(s, st, i), hash(s, st, i), `${s}/${st}/${i}`);
    for (let i = 0; i < 1000; i++) assert.equal(dareHash(9, 8, i * 7919), hash(9, 8, i * 7919));
  });

  test('fmix32 (Math.imul) agrees with the BigInt transcription', () => {
    for (const v of [0, 1, 0x12345678, 0x7fffffff, 0x80000000, 0xffffffff])
      assert.equal(fmix32(v), Number(fmix(BigInt(v))));
    let v = 1;
    for (let i = 0; i < 1000; i++) {
      v = (v * 48271) % 0x7fffffff;
      assert.equal(fmix32(v * 2), Number(fmix(BigInt(v * 2))));
    }
    assert.equal(fmix32(0), 0, 'the finalizer fixes 0, which is why the keys xor in constants');
  });

  test('cut and scale', () => {
    assert.equal(dareCut(0), 0);
    assert.equal(dareCut(0.5), 2 ** 23);
    assert.equal(dareCut(1 / 3), Math.ceil(2 ** 24 / 3));
    assert.equal(dareScale(0.5), 2);
    assert.equal(dareScale(0.1), Math.fround(1 / 0.9));
  });

  test('streamId separates names and inputs, and is stable', () => {
    const ids = new Set<number>();
    for (const name of ['model.embed_tokens.weight', 'lm_head.weight', 'layers.0.mlp', 'layers.1.mlp', 'ü', '']) {
      for (const input of [0, 1, 2]) {
        const id = streamId(name, input);
        assert.ok(Number.isInteger(id) && id >= 0 && id < 2 ** 32);
        assert.equal(streamId(name, input), id);
        ids.add(id);
      }
    }
    assert.equal(ids.size, 18);
  });
});

describe('shared memory', () => {
  test('allocations are page aligned, reused after free, and survive growth', async () => {
    assert.equal(ARENA_ALIGN, 4096);
    const a = allocF32(1000);
    assert.equal(a.byteOffset % 4096, 0);
    assert.ok(a.buffer instanceof SharedArrayBuffer);
    a.fill(3.5);
    const offset = a.byteOffset;
    free(a);
    const b = allocBytes(4000);
    assert.equal(b.byteOffset, offset, 'a freed block of the same size is reused');
    // 300 MB forces the memory to grow; earlier views stay usable.
    b.fill(9);
    const big = allocF32(75_000_000);
    assert.ok(big.buffer.byteLength >= 300_000_000);
    assert.equal(b[3999], 9);
    big[big.length - 1] = 1;
    const out = allocF32(1);
    await k.sub(big.subarray(big.length - 1), new Float32Array([0.25]), out);
    assert.equal(out[0], 0.75);
    free(out);
    free(big);
    free(b);
    // Coalescing: two neighbours freed make room for one allocation of both sizes.
    const c = allocBytes(8192);
    const d = allocBytes(8192);
    const cOff = c.byteOffset;
    free(c);
    free(d);
    const e = allocBytes(16384);
    assert.equal(e.byteOffset, cOff);
    free(e);
  });

  test('free rejects foreign views and double frees', () => {
    assert.throws(() => free(new Float32Array(4)), hasCode('E_KERNEL_BAD_FREE'));
    const a = allocF32(10);
    assert.throws(() => free(a.subarray(1)), hasCode('E_KERNEL_BAD_FREE'));
    free(a);
    assert.throws(() => free(a), hasCode('E_KERNEL_BAD_FREE'));
  });

  test('reads with fs land directly in pool memory', async () => {
    const { mkdtempSync, writeFileSync, rmSync, openSync, readSync, closeSync } = await import('node:fs');
    const os = await import('node:os');
    const path = await import('node:path');
    const dir = mkdtempSync(path.join(os.tmpdir(), 'wgit-'));
    try {
      const vals = new Float32Array([1, -2, 0.5, 3]);
      const bf = new Uint8Array(8);
      await k.fromF32(vals, 'BF16', bf);
      writeFileSync(path.join(dir, 'x.bin'), bf);
      const dst = allocBytes(8);
      const fd = openSync(path.join(dir, 'x.bin'), 'r');
      readSync(fd, dst, 0, 8, 0);
      closeSync(fd);
      const f = allocF32(4);
      await k.toF32(dst, 'BF16', f);
      assert.deepEqual([...f], [1, -2, 0.5, 3]);
      free(f);
      free(dst);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('argument checks', () => {
  const f = (n: number) => new Float32Array(n);
  test('bad dtypes, lengths, counts and values raise stable codes', async () => {
    await assert.rejects(k.toF32(new Uint8Array(4), 'I8' as KernelDType, f(4)), hasCode('E_KERNEL_DTYPE'));
    await assert.rejects(k.toF32(new Uint8Array(6), 'BF16', f(4)), hasCode('E_KERNEL_LENGTH'));
    await assert.rejects(k.fromF32(f(4), 'F16', new Uint8Array(7)), hasCode('E_KERNEL_LENGTH'));
    await assert.rejects(k.weightedSum([], [], f(1)), hasCode('E_KERNEL_ARG'));
    await assert.rejects(
      k.weightedSum(
        Array.from({ length: 9 }, () => f(2)),
        Array(9).fill(1),
        f(2),
      ),
      hasCode('E_KERNEL_ARG'),
    );
    await assert.rejects(k.weightedSum([f(2), f(2)], [1], f(2)), hasCode('E_KERNEL_ARG'));
    await assert.rejects(k.weightedSum([f(2)], [Number.NaN], f(2)), hasCode('E_KERNEL_ARG'));
    await assert.rejects(k.weightedSum([f(2), f(3)], [1, 1], f(2)), hasCode('E_KERNEL_LENGTH'));
    await assert.rejects(k.weightedSum([new Uint8Array(8) as never], [1], f(2)), hasCode('E_KERNEL_ARG'));
    await assert.rejects(
      k.weightedSumTyped([new Uint8Array(4)], 'BF16', [1], 'F32', new Uint8Array(4)),
      hasCode('E_KERNEL_LENGTH'),
    );
    await assert.rejects(k.sub(f(2), f(2), f(3)), hasCode('E_KERNEL_LENGTH'));
    await assert.rejects(k.axpy(f(2), Number.POSITIVE_INFINITY, f(2), f(2)), hasCode('E_KERNEL_ARG'));
    await assert.rejects(k.dot(f(2), f(3)), hasCode('E_KERNEL_LENGTH'));
    await assert.rejects(k.absHistogram(f(2), 2 as 0, 0, new Uint32Array(65536)), hasCode('E_KERNEL_ARG'));
    await assert.rejects(k.absHistogram(f(2), 0, 0, new Uint32Array(100)), hasCode('E_KERNEL_ARG'));
    await assert.rejects(k.ties([f(2)], [1], [-1], f(2)), hasCode('E_KERNEL_ARG'));
    await assert.rejects(k.ties([f(2)], [1], [], f(2)), hasCode('E_KERNEL_ARG'));
    await assert.rejects(k.dareDrop(f(2), 1, 0, 0, 0, f(2)), hasCode('E_KERNEL_ARG'));
    await assert.rejects(k.dareDrop(f(2), -0.1, 0, 0, 0, f(2)), hasCode('E_KERNEL_ARG'));
    await assert.rejects(k.dareDrop(f(2), 0.5, 2 ** 32, 0, 0, f(2)), hasCode('E_KERNEL_ARG'));
    await assert.rejects(k.dareDrop(f(2), 0.5, 0, 0, -1, f(2)), hasCode('E_KERNEL_ARG'));
    assert.throws(() => allocF32(-1), hasCode('E_KERNEL_ARG'));
    // wasm32 memory ends at 4 GiB.
    assert.throws(() => allocF32(2 ** 30 + 1), hasCode('E_KERNEL_OOM'));
  });

  test('overlapping output and input is refused unless exactly in place', async () => {
    const buf = allocF32(2048);
    const a = buf.subarray(0, 1024);
    const shifted = buf.subarray(1, 1025);
    await assert.rejects(k.sub(a, a, shifted), hasCode('E_KERNEL_ALIAS'));
    await assert.rejects(
      k.weightedSum([buf.subarray(1024), a], [1, 1], buf.subarray(512, 1536)),
      hasCode('E_KERNEL_ALIAS'),
    );
    buf.fill(1);
    await k.weightedSum([buf.subarray(1024), a], [1, 2], a);
    assert.equal(a[5], 3, 'in place into an input other than the first');
    const bytes = new Uint8Array(buf.buffer, buf.byteOffset, 4096);
    await assert.rejects(k.toF32(bytes.subarray(0, 2048), 'BF16', a), hasCode('E_KERNEL_ALIAS'));
    a.fill(2);
    await k.sub(a, new Float32Array(1024).fill(0.5), a);
    assert.equal(a[1023], 1.5);
    free(buf);
    // Ordinary arrays are staged, so aliasing them is harmless.
    const plain = new Float32Array([1, 2, 3]);
    await k.axpy(plain, 2, plain, plain);
    assert.deepEqual([...plain], [3, 6, 9]);
  });

  test('thread counts from options and WGIT_THREADS are checked', async () => {
    await assert.rejects(getKernels({ threads: 0 }), hasCode('E_KERNEL_THREADS'));
    await assert.rejects(getKernels({ threads: 1.5 }), hasCode('E_KERNEL_THREADS'));
    const saved = process.env.WGIT_THREADS;
    try {
      // The environment variable is text: decimal integers only, one code for every env variable.
      for (const bad of ['many', '0x4', ' 4', '04', '1.5', '0']) {
        process.env.WGIT_THREADS = bad;
        await assert.rejects(getKernels(), hasCode('E_BAD_ENV'), bad);
      }
    } finally {
      if (saved === undefined) delete process.env.WGIT_THREADS;
      else process.env.WGIT_THREADS = saved;
    }
  });
});

describe('pool lifecycle', () => {
  test('getDevice is a singleton per configuration; close ends it', async () => {
    const p1 = await getKernels({ threads: 2, parallelMin: 7 });
    const p2 = await getKernels({ threads: 2, parallelMin: 7 });
    assert.equal(p1, p2);
    assert.equal(p1.threads, 2);
    await p1.close();
    await assert.rejects(p1.dot(new Float32Array(8), new Float32Array(8)), hasCode('E_KERNEL_CLOSED'));
    const p3 = await getKernels({ threads: 2, parallelMin: 7 });
    assert.notEqual(p3, p1);
    assert.equal(await p3.sumAbs(new Float32Array([1, -2, 3, -4, 5, -6, 7, -8, 9])), 45);
    await p3.close();
  });

  test('WGIT_THREADS sets the default thread count', async () => {
    const saved = process.env.WGIT_THREADS;
    process.env.WGIT_THREADS = '3';
    try {
      const p = await getKernels({ parallelMin: 11 });
      assert.equal(p.threads, 3);
      await p.close();
    } finally {
      if (saved === undefined) delete process.env.WGIT_THREADS;
      else process.env.WGIT_THREADS = saved;
    }
  });

  test('a process that never closes the pool still exits, and waits for pending work', () => {
    const script = `
      const { getDevice } = await import(${JSON.stringify(`${root}src/index.ts`)});
      const k = await getDevice({ device: 'cpu', threads: 2, parallelMin: 1 });
      const x = new Float32Array(3_000_000).fill(2);
      // Top-level await on a worker result: the process must wait for it, then exit.
      console.log(await k.sumAbs(x));
    `;
    const r = spawnSync(
      process.execPath,
      ['--conditions=wgit-source', '--import', 'tsx', '--input-type=module', '-e', script],
      {
        encoding: 'utf8',
        timeout: 60_000,
      },
    );
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), '6000000');
  });
});
