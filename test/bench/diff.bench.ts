/**
 * `wgit diff` vs reading both models: two bf16 Llama-shaped models (hidden
 * 2048, intermediate 5632, 4 KV heads, vocab 32000; WGIT_BENCH_LAYERS layers,
 * default 3: ~0.53 GB each; the base and a fine-tune of it, shared with the
 * transfer and rmm benches), timed in one process:
 *
 *   read          readTensor of every tensor of both models, the two sides
 *                 at once, into two reused device buffers (the baseline)
 *   diff          diffModels of the two (one fused `diffStats` pass a tensor)
 *   diff, separate kernels
 *                 diffModels with `fused: false`: conversion, Σ squares, dot,
 *                 difference, Σ Δ², largest |Δ| as separate passes (the
 *                 computation before the fused kernel)
 *
 * once from the safetensors files and once from the same two models committed
 * in a repository (Repository.openModel sources; skipped with
 * WGIT_BENCH_STORE=0). Inputs are read once first (page cache); rows are
 * interleaved, best of WGIT_BENCH_RUNS (default 3) wall times, with the CPU
 * time (all threads) of that run. Goal: read / diff ≥ 0.5.
 *
 *   node --conditions=wgit-source --import tsx test/bench/diff.bench.ts
 *   (WGIT_THREADS, default 2; WGIT_BENCH_LAYERS, default 3; WGIT_BENCH_RUNS, default 3)
 */
import * as fs from 'node:fs';
import { loadavg } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { diffModels, getDevice, type ModelSource, openModel } from '../../packages/core/src/index.js';
import { BufferPool } from '../../packages/core/src/pipeline/index.js';
import { Repository } from '../../packages/store/src/index.js';
import { llamaSpecs, llamaVersions } from './fixtures/llama.js';
import { machineLine, table } from './fixtures/synthetic.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const THREADS = Number(process.env.WGIT_THREADS ?? 2);
process.env.WGIT_THREADS = String(THREADS);
const LAYERS = Number(process.env.WGIT_BENCH_LAYERS ?? 3);
const RUNS = Number(process.env.WGIT_BENCH_RUNS ?? 3);
const STORE = process.env.WGIT_BENCH_STORE !== '0';
const cacheDir = path.join(root, '.bench', `transfer-llama-${LAYERS}l-bf16`);
const repoDir = path.join(root, '.bench', `diff-llama-${LAYERS}l-repo`);
const SIDES = ['old', 'ft'] as const;

/** The two models committed in order (old, then ft) in a repository of their own, kept between runs. */
async function prepareRepo(): Promise<{ repo: Repository; commits: string[] }> {
  const done = path.join(repoDir, 'complete.json');
  if (fs.existsSync(done)) {
    const commits = JSON.parse(fs.readFileSync(done, 'utf8')) as string[];
    return { repo: await Repository.open(path.join(repoDir, 'repo')), commits };
  }
  fs.rmSync(repoDir, { recursive: true, force: true });
  console.log(`committing both models into ${repoDir} …`);
  const repo = await Repository.init(path.join(repoDir, 'repo'));
  const commits: string[] = [];
  for (const n of SIDES) commits.push((await repo.commit({ path: path.join(cacheDir, n), message: n })).commit);
  fs.writeFileSync(done, JSON.stringify(commits));
  return { repo, commits };
}

interface Timing {
  wall: number;
  cpu: number;
}

async function timed(fn: () => Promise<void>): Promise<Timing> {
  (globalThis as { gc?: () => void }).gc?.();
  const c0 = process.cpuUsage();
  const t = process.hrtime.bigint();
  await fn();
  const wall = Number(process.hrtime.bigint() - t) / 1e9;
  const c = process.cpuUsage(c0);
  return { wall, cpu: (c.user + c.system) / 1e6 };
}

async function main(): Promise<void> {
  await llamaVersions(cacheDir, llamaSpecs(LAYERS));
  const load0 = loadavg()[0];
  const device = await getDevice({ device: 'cpu', threads: THREADS });
  const store = STORE ? await prepareRepo() : null;
  const open: Record<string, () => Promise<ModelSource[]>> = {
    files: () => Promise.all(SIDES.map((n) => openModel(path.join(cacheDir, n)))),
  };
  if (store) open.revisions = () => Promise.all(store.commits.map((c) => store.repo.openModel(c)));

  // Both sides at once, tensor by tensor, into two reused buffers of the device (as diff reads them).
  const pool = new BufferPool(device);
  const readBoth = async ([a, b]: ModelSource[]) => {
    for (const t of a.tensors) {
      await Promise.all([
        a.readTensor(t.name, pool.bytes('a', t.byteLength)),
        b.readTensor(t.name, pool.bytes('b', b.tensor(t.name).byteLength)),
      ]);
    }
  };
  let bytes = 0;
  for (const [source, opener] of Object.entries(open)) {
    const ms = await opener();
    bytes = ms[0].tensors.reduce((s, t) => s + t.byteLength, 0);
    await readBoth(ms); // page cache
    for (const m of ms) await m.close();
    console.log(`warmed ${source}`);
  }
  console.log(`inputs: 2 × ${(bytes / 1e9).toFixed(2)} GB bf16, ${THREADS} threads, best of ${RUNS}`);
  console.log(machineLine());

  const rows: [string, (ms: ModelSource[]) => Promise<void>][] = [
    ['read both', readBoth],
    [
      'diff (fused)',
      async ([a, b]) => {
        await diffModels(a, b, { device });
      },
    ],
    [
      'diff, separate kernels',
      async ([a, b]) => {
        await diffModels(a, b, { device, fused: false });
      },
    ],
  ];
  const best: Record<string, Timing> = {};
  try {
    for (let r = 0; r < RUNS; r++) {
      // interleaved, so a slow spell of the shared machine hits every row alike
      for (const [source, opener] of Object.entries(open)) {
        for (const [label, fn] of rows) {
          const ms = await opener();
          const t = await timed(() => fn(ms));
          for (const m of ms) await m.close();
          const key = `${label} | ${source}`;
          if (!best[key] || t.wall < best[key].wall) best[key] = t;
          console.log(`  run ${r + 1}: ${source}, ${label}: ${t.wall.toFixed(2)} s (cpu ${t.cpu.toFixed(2)} s)`);
        }
      }
    }
  } finally {
    pool.release();
    await device.close();
  }
  const out: (string | number)[][] = [['source', 'run', 'wall s', 'cpu s', 'GB/s (both models)', 'read / run']];
  for (const source of Object.keys(open)) {
    const read = best[`read both | ${source}`].wall;
    for (const [label] of rows) {
      const t = best[`${label} | ${source}`];
      out.push([source, label, t.wall, t.cpu, (2 * bytes) / 1e9 / t.wall, read / t.wall]);
    }
  }
  console.log(table(out));
  console.log(`load average: ${load0.toFixed(2)} at the start, ${loadavg()[0].toFixed(2)} at the end`);
  console.log('goal: read / diff ≥ 0.5 (diff at least half the speed of reading both models)');
}

await main();
