/**
 * Transfer benchmark: fine-tuning transfer (θ_new + s·(θ_ft − θ_old)) on a
 * bf16 Llama-shaped model (hidden 2048, intermediate 5632, 4 KV heads, vocab
 * 32000; WGIT_BENCH_LAYERS layers, default 3: ~0.53 GB per version), timed
 * against a linear merge of the same three inputs in the same run. Each
 * figure is the best of WGIT_BENCH_RUNS runs (default 3), inputs in the page
 * cache, outputs on /dev/shm when it has room. Rows: transfer on the device
 * kernels (the default), transfer with every tensor on the plain per-element
 * loop (kernelMinElements ∞, the computation as it ran before the kernel
 * path), and the linear merge.
 *
 *   node --conditions=wgit-source --import tsx test/bench/transfer.bench.ts
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  getDevice,
  type ModelSource,
  mergeModels,
  openModel,
  referenceDevice,
  transferModel,
} from '../../packages/core/src/index.js';
import { llamaSpecs, llamaVersions } from './fixtures/llama.js';
import { interleavedBest, machineLine, ratioTable } from './fixtures/synthetic.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const THREADS = Number(process.env.WGIT_THREADS ?? 2);
const LAYERS = Number(process.env.WGIT_BENCH_LAYERS ?? 3);
const RUNS = Number(process.env.WGIT_BENCH_RUNS ?? 3);
const cacheDir = path.join(root, '.bench', `transfer-llama-${LAYERS}l-bf16`);

const specs = () => llamaSpecs(LAYERS);

/** Old base normal(0, 0.02); the fine-tune and the new base each add normal(0, 0.002) noise of their own. */
const generate = () => llamaVersions(cacheDir, specs());

function outRoot(): string {
  try {
    const st = fs.statfsSync('/dev/shm');
    if (st.bavail * st.bsize > 3e9) return fs.mkdtempSync(path.join('/dev/shm', 'wgit-bench-'));
  } catch {}
  return fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-bench-'));
}

async function main(): Promise<void> {
  await generate();
  const [old, ft, nu] = await Promise.all(['old', 'ft', 'new'].map((n) => openModel(path.join(cacheDir, n))));
  const device = await getDevice({ device: 'cpu', threads: THREADS });
  // page cache: read every input once
  for (const m of [old, ft, nu] as ModelSource[]) for (const t of m.tensors) await m.readTensor(t.name);
  const bytes = ft.tensors.reduce((s, t) => s + t.byteLength, 0);
  const out = outRoot();
  console.log(`inputs: 3 × ${(bytes / 1e9).toFixed(2)} GB bf16, ${THREADS} threads, output in ${out}`);
  console.log(machineLine());
  let i = 0;
  const fresh = () => {
    const d = path.join(out, `o${i++}`);
    return d;
  };
  const clean = (d: string) => fs.rmSync(d, { recursive: true, force: true });
  let times: Record<string, number> = {};
  let kernelTensors = 0;
  try {
    times = await interleavedBest(RUNS, [
      [
        'linear merge',
        async () => {
          const d = fresh();
          await mergeModels({ inputs: [ft, old, nu], method: 'linear', outDir: d, device });
          clean(d);
        },
      ],
      [
        'transfer (device kernels)',
        async () => {
          const d = fresh();
          const rep = await transferModel({ ft, from: old, onto: nu, outDir: d, device });
          kernelTensors = rep.engine?.kernelTensors ?? 0;
          clean(d);
        },
      ],
      [
        'transfer, s = 0.5 (device kernels)',
        async () => {
          const d = fresh();
          await transferModel({ ft, from: old, onto: nu, scale: 0.5, outDir: d, device });
          clean(d);
        },
      ],
      [
        'transfer (plain per-element loop)',
        async () => {
          const d = fresh();
          await transferModel({
            ft,
            from: old,
            onto: nu,
            outDir: d,
            device: referenceDevice(),
            kernelMinElements: Number.POSITIVE_INFINITY,
          });
          clean(d);
        },
      ],
    ]);
  } finally {
    clean(out);
    for (const m of [old, ft, nu]) await m.close();
    await device.close();
  }
  console.log(`\n${ratioTable(times, RUNS, 'linear merge')}`);
  console.log(`kernel tensors per transfer: ${kernelTensors} of ${ft.tensors.length}; goal: transfer / linear ≤ 1.3×`);
}

await main();
