// Randomized SVD: rank 64 of a 4096×4096 f32 matrix with a known decaying
// spectrum, A = U·diag(σ)·Vᵀ (U, V: random-sign, column-permuted Hadamard
// columns, so the optimal rank-64 error is known exactly), against
// torch.svd_lowrank(q = 74, niter = 2) on the same matrix and thread count,
// both measured in this run. Then object sizes: the matrix as the change of
// a one-tensor model, stored as a low-rank basis of rank 16 and 64 and as a
// dense f32 diff vector, with their relative errors.
//   pnpm bench svd           (WGIT_BENCH_SVD_N=2048 for a smaller matrix)
// The torch baseline needs Debian's python3-torch and libjemalloc2 (see
// docs/benchmarks.md); without them only wgit's figures are printed.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  computeDiffVector,
  computeLowRank,
  getDevice,
  openModel,
  randomizedSvd,
  writeSafetensors,
} from '../../packages/core/src/index.js';

const N = Number(process.env.WGIT_BENCH_SVD_N ?? 4096);
const L = 512; // components of the synthetic matrix
const RANK = 64;
const OVERSAMPLE = 10;
const POWER = 2;
const THREADS = Number(process.env.WGIT_THREADS ?? 2);
const REPS = 2;
const ROUNDS = Number(process.env.WGIT_BENCH_ROUNDS ?? 3);

/** Column `c` of the N×N Walsh–Hadamard matrix scaled to unit norm, at row `i`. */
const hadamard = (i: number, c: number) => {
  let x = i & c;
  let parity = 0;
  while (x) {
    parity ^= 1;
    x &= x - 1;
  }
  return parity ? -1 : 1;
};

function lcg(seed: number) {
  let x = seed >>> 0;
  return () => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return x / 2 ** 32;
  };
}

/** N×L orthonormal columns: D·H·P with random signs D and a random choice of L Hadamard columns P. */
function orthonormal(seed: number): Float32Array {
  const r = lcg(seed);
  const cols = [...Array(N).keys()];
  for (let i = N - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [cols[i], cols[j]] = [cols[j], cols[i]];
  }
  const signs = Array.from({ length: N }, () => (r() < 0.5 ? -1 : 1));
  const scale = 1 / Math.sqrt(N);
  const out = new Float32Array(N * L);
  for (let i = 0; i < N; i++) for (let c = 0; c < L; c++) out[i * L + c] = signs[i] * hadamard(i, cols[c]) * scale;
  return out;
}

async function main() {
  const device = await getDevice({ device: 'cpu', threads: THREADS });
  const sigma = Array.from({ length: L }, (_, i) => Math.exp(-i / 32));
  const optimal = Math.sqrt(sigma.slice(RANK).reduce((a, s) => a + s * s, 0) / sigma.reduce((a, s) => a + s * s, 0));
  const us = orthonormal(1);
  for (let i = 0; i < N; i++) for (let c = 0; c < L; c++) us[i * L + c] *= sigma[c];
  const v = orthonormal(2);
  const aBuf = device.alloc('F32', N * N);
  const a = device.hostView(aBuf);
  await device.matmul(us, v, a, N, L, N, false, true);

  const svd = () => randomizedSvd(device, a, N, N, { rank: RANK, oversample: OVERSAMPLE, powerIters: POWER });
  await svd();
  const result = await svd();
  // Error of the rank-64 truncation: ‖A − U_r·Σ_r·V_rᵀ‖ / ‖A‖ in f64.
  const { k, u, s, v: vv } = result;
  const ur = new Float32Array(N * RANK);
  const vr = new Float32Array(N * RANK);
  for (let i = 0; i < N; i++)
    for (let t = 0; t < RANK; t++) {
      ur[i * RANK + t] = u[i * k + t] * s[t];
      vr[i * RANK + t] = vv[i * k + t];
    }
  const approx = new Float32Array(N * N);
  await device.matmul(ur, vr, approx, N, RANK, N, false, true);
  let e2 = 0;
  let a2 = 0;
  for (let i = 0; i < N * N; i++) {
    e2 += (a[i] - approx[i]) ** 2;
    a2 += a[i] * a[i];
  }
  const err = Math.sqrt(e2 / a2);
  console.log(
    `wgit randomized SVD ${N}×${N} rank ${RANK} (k = ${k}, ${POWER} power iterations, ${THREADS} threads): ` +
      `error ${err.toExponential(4)} = ${(err / optimal).toFixed(5)}× optimal ${optimal.toExponential(4)}`,
  );

  const dir = mkdtempSync(join(tmpdir(), 'wgit-svd-bench-'));
  try {
    const file = join(dir, 'a.f32');
    writeFileSync(file, new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
    // Rounds alternate wgit and torch so that a change in the machine's load
    // hits both; each side keeps its best time over all rounds.
    let best = Number.POSITIVE_INFINITY;
    let torchBest = Number.POSITIVE_INFINITY;
    for (let round = 0; round < ROUNDS; round++) {
      let mine = Number.POSITIVE_INFINITY;
      for (let i = 0; i < REPS; i++) {
        const t0 = performance.now();
        await svd();
        mine = Math.min(mine, (performance.now() - t0) / 1000);
      }
      best = Math.min(best, mine);
      const py = spawnSync(
        '/usr/bin/python3',
        [
          join(import.meta.dirname, 'svd_torch.py'),
          file,
          ...[N, N, RANK, RANK + OVERSAMPLE, POWER, THREADS, REPS].map(String),
        ],
        {
          encoding: 'utf8',
          env: { ...process.env, LD_PRELOAD: 'libjemalloc.so.2', MALLOC_CONF: 'dirty_decay_ms:-1,muzzy_decay_ms:-1' },
        },
      );
      if (py.status !== 0) {
        console.log(
          `wgit: ${mine.toFixed(3)} s; torch baseline unavailable: ${(py.stderr || py.error?.message || '').trim().split('\n').pop()}`,
        );
        continue;
      }
      const t = JSON.parse(py.stdout.trim().split('\n').pop() as string);
      torchBest = Math.min(torchBest, t.seconds);
      console.log(
        `round ${round + 1}: wgit ${mine.toFixed(3)} s; torch ${t.torch} svd_lowrank(q=${RANK + OVERSAMPLE}, niter=${POWER}), ` +
          `${t.threads} threads, jemalloc: ${t.seconds.toFixed(3)} s, error ${t.error.toExponential(4)} = ${(t.error / optimal).toFixed(5)}× optimal; ` +
          `ratio ${(mine / t.seconds).toFixed(2)}×`,
      );
    }
    console.log(
      `best of ${ROUNDS}×${REPS}: wgit ${best.toFixed(3)} s, torch ${torchBest.toFixed(3)} s, time ratio wgit / torch ${(best / torchBest).toFixed(2)}×`,
    );
  } finally {
    await objectSizes(dir, a);
    rmSync(dir, { recursive: true, force: true });
    device.free(aBuf);
  }
}

const folderBytes = (d: string) => readdirSync(d).reduce((n, f) => n + statSync(join(d, f)).size, 0);

/** Base = 0, FT = A: the change is A; stored as low-rank bases and as a diff vector. */
async function objectSizes(dir: string, a: Float32Array): Promise<void> {
  const base = join(dir, 'base');
  const ft = join(dir, 'ft');
  mkdirSync(base);
  mkdirSync(ft);
  const bytes = (x: Float32Array) => new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
  await writeSafetensors(join(base, 'model.safetensors'), [
    { name: 'w', dtype: 'F32', shape: [N, N], data: bytes(new Float32Array(N * N)) },
  ]);
  await writeSafetensors(join(ft, 'model.safetensors'), [{ name: 'w', dtype: 'F32', shape: [N, N], data: bytes(a) }]);
  const [mb, mf] = [await openModel(base), await openModel(ft)];
  const dv = join(dir, 'dv');
  await computeDiffVector(mb, mf, { outDir: dv });
  console.log(`dense f32 diff vector: ${(folderBytes(dv) / 2 ** 20).toFixed(2)} MiB, error 0`);
  for (const rank of [16, 64]) {
    const out = join(dir, `lr${rank}`);
    const { report } = await computeLowRank(mb, mf, { rank }, { outDir: out });
    const size = folderBytes(out);
    console.log(
      `low-rank basis rank ${rank}: ${(size / 2 ** 20).toFixed(2)} MiB (${((100 * size) / folderBytes(dv)).toFixed(2)}% of the diff vector), ` +
        `relative error ${report.error.toExponential(4)}`,
    );
  }
  await Promise.all([mb.close(), mf.close()]);
}

await main();
