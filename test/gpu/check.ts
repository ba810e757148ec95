// The GPU kit's check (test/gpu/run.sh runs it bundled, on a machine with nothing but the GPU driver):
// the parity case table against the CPU reference backend (the oracle) on the GPU backend with the
// default slices and with 1,024-element slices, then the kernel benchmark on device-resident bf16
// data. Prints one JSON object. Elementwise kernels, selection, TIES and DARE must be bit-identical;
// the f64 sums within 2^-40·Σ|terms| + n·2^-126 (docs/gpu.md).
import { checked, type Device, type KernelDType, referenceDevice, residentMap, webgpuBackend } from '@wgit/core';

const allowSoftware = process.env.WGIT_GPU_ALLOW_SOFTWARE === '1';
const ref = referenceDevice();
const NAN = Number.NaN;
const INF = Number.POSITIVE_INFINITY;

function rng(seed: number) {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
}
function spread(n: number, seed: number, specials: number[] = []) {
  const r = rng(seed);
  return Float32Array.from({ length: n }, (_, i) =>
    specials.length && i % 37 === 5 ? specials[i % specials.length] : (r() - 0.5) * 2 ** Math.floor(r() * 20 - 12),
  );
}
const SP = [NAN, INF, -INF, -0, 1e-40, 2 ** -149, 65520, 3.4e38];
const cases: [string, Float32Array[]][] = [
  ['one', [Float32Array.of(1.5), Float32Array.of(-0.25), Float32Array.of(3)]],
  ['5', [spread(5, 1), spread(5, 2), spread(5, 3)]],
  ['1023 specials', [spread(1023, 4, SP), spread(1023, 5), spread(1023, 6)]],
  ['5001 specials', [spread(5001, 7, SP), spread(5001, 8, [-0, 2 ** -149]), spread(5001, 9)]],
  ['3079 finite', [spread(3079, 31, [1e-40, -0]), spread(3079, 32), spread(3079, 33)]],
  ['300007', [spread(300_007, 41), spread(300_007, 42), spread(300_007, 43)]],
];

const bytes = (v: ArrayBufferView) => Buffer.from(v.buffer, v.byteOffset, v.byteLength);
function sameF32(a: Float32Array, b: Float32Array): number {
  let bad = 0;
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < a.length; i++) if (ua[i] !== ub[i] && !(Number.isNaN(a[i]) && Number.isNaN(b[i]))) bad++;
  return bad;
}
const enc = (v: Float32Array, dt: KernelDType) => {
  const out = new Uint8Array(v.length * (dt === 'F32' ? 4 : 2));
  void ref.fromF32(v, dt, out);
  return out;
};

async function parity(gpu: Device, failures: string[]): Promise<number> {
  let checks = 0;
  const expect = (ok: boolean, what: string) => {
    checks++;
    if (!ok) failures.push(what);
  };
  for (const [name, [x, y, z]] of cases) {
    const n = x.length;
    const f32 = async (what: string, run: (d: Device, o: Float32Array) => Promise<void>) => {
      const [a, b] = [new Float32Array(n), new Float32Array(n)];
      await run(gpu, a);
      await run(ref, b);
      const bad = sameF32(a, b);
      expect(bad === 0, `${name}: ${what}: ${bad} elements differ`);
    };
    const raw = async (what: string, size: number, run: (d: Device, o: Uint8Array) => Promise<unknown>) => {
      const [a, b] = [new Uint8Array(n * size), new Uint8Array(n * size)];
      await run(gpu, a);
      await run(ref, b);
      expect(bytes(a).equals(bytes(b)), `${name}: ${what}: bytes differ`);
    };
    for (const dt of ['BF16', 'F16', 'F32'] as KernelDType[]) {
      const size = dt === 'F32' ? 4 : 2;
      await raw(`fromF32 ${dt}`, size, (d, o) => d.fromF32(x, dt, o));
      await f32(`toF32 ${dt}`, (d, o) => d.toF32(enc(y, dt), dt, o));
    }
    await f32('weightedSum', (d, o) => d.weightedSum([x, y, z], [0.5, -1.25, 3], o));
    await raw('weightedSumTyped BF16→F16', 2, (d, o) =>
      d.weightedSumTyped(
        [x, y, z].map((v) => enc(v, 'BF16')),
        'BF16',
        [0.25, 0.5, 0.25],
        'F16',
        o,
      ),
    );
    await f32('sub', (d, o) => d.sub(x, y, o));
    await f32('axpy', (d, o) => d.axpy(x, 0.3, z, o));
    await f32('ties', (d, o) => d.ties([x, y, z], [1, -0.5, 2], [0.01, 0, 2 ** -149], o));
    await f32('ties quotas', (d, o) => d.ties([x, y, z], [1, -0.5, 2], [0.5, 1, 0.5], o, [0, 3, -1]));
    await f32('dareDrop', (d, o) => d.dareDrop(x, 0.9, 42, 7, 2 ** 32 - 3, o));
    const hg = new Uint32Array(65536);
    const hr = new Uint32Array(65536);
    await gpu.absHistogram(x, 0, 0, hg);
    await ref.absHistogram(x, 0, 0, hr);
    expect(bytes(hg).equals(bytes(hr)), `${name}: absHistogram`);
    for (const k of [1, Math.ceil(n / 2), n]) {
      const [a, b] = [await gpu.kthLargestAbs([x, y], k), await ref.kthLargestAbs([x, y], k)];
      expect(Object.is(a, b), `${name}: kthLargestAbs ${k}: ${a} vs ${b}`);
    }
    for (const dt of ['BF16', 'F32'] as KernelDType[]) {
      const ins = [x, y, z].map((v) => enc(v, dt));
      const [oa, ob] = [new Uint8Array(n * 2), new Uint8Array(n * 2)];
      const sa = await gpu.transferTyped(ins, dt, 0.7, 'BF16', oa);
      const sb = await ref.transferTyped(ins, dt, 0.7, 'BF16', ob);
      expect(bytes(oa).equals(bytes(ob)), `${name}: transferTyped ${dt} bytes`);
      const da = await gpu.diffStats(ins[0], ins[1], dt);
      const db = await ref.diffStats(ins[0], ins[1], dt);
      expect(da.identical === db.identical && Object.is(da.maxAbsDelta, db.maxAbsDelta), `${name}: diffStats ${dt}`);
      for (const [ga, gb, scale] of [
        [sa.shift2, sb.shift2, sb.shift2],
        [da.sqA, db.sqA, db.sqA],
        [da.sqDelta, db.sqDelta, db.sqDelta],
      ]) {
        const ok = Number.isFinite(gb) ? Math.abs(ga - gb) <= 2 ** -40 * scale + n * 2 ** -126 : Object.is(ga, gb);
        expect(ok, `${name}: sums ${dt}: ${ga} vs ${gb}`);
      }
    }
  }
  return checks;
}

async function bench(n: number) {
  const be = await webgpuBackend({ allowSoftware });
  const d = be.rt.device;
  const mk = () => be.rt.buffer(n * 2, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST);
  const [a, b, c, out] = [mk(), mk(), mk(), mk()];
  const fill = new Uint16Array(Math.min(n, 1 << 22)).map((_, i) => 0x3f80 + (i % 97));
  for (const buf of [a, b, c])
    for (let s = 0; s < n; s += fill.length) d.queue.writeBuffer(buf, s * 2, fill, 0, Math.min(fill.length, n - s));
  await d.queue.onSubmittedWorkDone();
  const time = async (run: () => Promise<void>) => {
    await run();
    await d.queue.onSubmittedWorkDone();
    let best = Infinity;
    for (let r = 0; r < 5; r++) {
      const t0 = performance.now();
      await run();
      await d.queue.onSubmittedWorkDone();
      best = Math.min(best, (performance.now() - t0) / 1000);
    }
    return best;
  };
  const tSum = await time(() =>
    residentMap(be.rt, { kind: 'weighted', k: 3 }, [a, b, c], 'BF16', 'BF16', out, 0, n, [0.5, 0.3, 0.2]),
  );
  const layers = 32;
  const per = Math.floor(n / layers / 1024) * 1024;
  const tLines = await time(async () => {
    for (let l = 0; l < layers; l++) {
      const lambda = 0.2 + (0.8 * l) / (layers - 1);
      await residentMap(be.rt, { kind: 'weighted', k: 2 }, [a, b], 'BF16', 'BF16', out, l * per, per, [1, lambda]);
    }
  });
  await be.close();
  return {
    elements: n,
    weightedSum3_bf16: { seconds: tSum, GBps: (8 * n) / tSum / 1e9 },
    lines32layers_bf16: { seconds: tLines, GBps: (6 * per * layers) / tLines / 1e9 },
  };
}

const result: Record<string, unknown> = {};
const failures: string[] = [];
try {
  const big = await webgpuBackend({ allowSoftware });
  const info = big.rt.adapter.info;
  result.adapter = {
    vendor: info.vendor,
    architecture: info.architecture,
    device: info.device,
    description: info.description,
  };
  const small = await webgpuBackend({ allowSoftware, sliceElements: 1024 });
  let checks = 0;
  for (const be of [big, small]) checks += await parity(checked(be), failures);
  await big.close();
  await small.close();
  result.parity = { checks, failures: failures.slice(0, 50), ok: failures.length === 0 };
  result.bench = await bench(Number(process.env.GPU_BENCH_N ?? 1 << 26));
} catch (e) {
  result.error = e instanceof Error ? `${e.message}\n${e.stack}` : String(e);
}
process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
process.exit(result.error || failures.length ? 1 : 0);
