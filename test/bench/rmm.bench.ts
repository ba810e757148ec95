/**
 * Reversible merge benchmark: rmm of two fine-tunes onto their base (full
 * basis, the default) on the bf16 Llama-shaped models of the transfer bench
 * (hidden 2048, intermediate 5632, 4 KV heads, vocab 32000;
 * WGIT_BENCH_LAYERS layers, default 3: ~0.53 GB per version), timed against
 * a linear merge of the same three models in the same run. Each figure is
 * the best of WGIT_BENCH_RUNS runs (default 3), inputs in the page cache,
 * outputs on /dev/shm when it has room. Rows: the linear merge (reads three
 * models, writes one), task arithmetic with normalised weights (rmm's plain
 * checkout alone) and rmm on the device kernels (merged model and basis
 * group, two passes over the inputs). The per-element path rmm ran before
 * the kernels is gone; its figures are in docs/benchmarks.md.
 *
 *   node --conditions=wgit-source --import tsx test/bench/rmm.bench.ts
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  type Device,
  getDevice,
  type MergeReport,
  type ModelSource,
  mergeModels,
  openModel,
} from '../../packages/core/src/index.js';
import { llamaSpecs, llamaVersions } from './fixtures/llama.js';
import { interleavedBest, machineLine, ratioTable, treeBytes } from './fixtures/synthetic.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const THREADS = Number(process.env.WGIT_THREADS ?? 2);
const LAYERS = Number(process.env.WGIT_BENCH_LAYERS ?? 3);
const RUNS = Number(process.env.WGIT_BENCH_RUNS ?? 3);
/** The transfer bench's models: `old` is the base, `ft` and `new` are two fine-tunes of it. */
const cacheDir = path.join(root, '.bench', `transfer-llama-${LAYERS}l-bf16`);

function outRoot(): string {
  try {
    const st = fs.statfsSync('/dev/shm');
    if (st.bavail * st.bsize > 8e9) return fs.mkdtempSync(path.join('/dev/shm', 'wgit-bench-'));
  } catch {}
  return fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-bench-'));
}

type RmmFigures = { rank: number; basisTensors: number; models: { relError: number; fixes: number }[] };

async function main(): Promise<void> {
  await llamaVersions(cacheDir, llamaSpecs(LAYERS));
  const [old, ft, nu] = await Promise.all(['old', 'ft', 'new'].map((n) => openModel(path.join(cacheDir, n))));
  const device = await getDevice({ device: 'cpu', threads: THREADS });
  // page cache: read every input once
  for (const m of [old, ft, nu] as ModelSource[]) for (const t of m.tensors) await m.readTensor(t.name);
  const bytes = ft.tensors.reduce((s, t) => s + t.byteLength, 0);
  const out = outRoot();
  console.log(`inputs: 3 × ${(bytes / 1e9).toFixed(2)} GB bf16, ${THREADS} threads, output in ${out}`);
  console.log(machineLine());
  let i = 0;
  const fresh = () => path.join(out, `o${i++}`);
  const clean = (d: string) => fs.rmSync(d, { recursive: true, force: true });
  let times: Record<string, number> = {};
  let figures: RmmFigures | undefined;
  let written = 0;
  const rmm = async (dev: Device) => {
    const d = fresh();
    const g = fresh();
    const rep = (await mergeModels({
      inputs: [ft, nu],
      base: old,
      method: 'rmm',
      outDir: d,
      groupDir: g,
      device: dev,
    })) as MergeReport & { rmm?: RmmFigures };
    figures = rep.rmm;
    written = treeBytes(d) + treeBytes(g);
    clean(d);
    clean(g);
  };
  try {
    times = await interleavedBest(RUNS, [
      [
        'linear merge',
        async () => {
          const d = fresh();
          await mergeModels({ inputs: [ft, nu, old], method: 'linear', outDir: d, device });
          clean(d);
        },
      ],
      [
        'task arithmetic (rmm plain checkout)',
        async () => {
          const d = fresh();
          const params = { normalize: true };
          await mergeModels({ inputs: [ft, nu], base: old, method: 'task-arithmetic', params, outDir: d, device });
          clean(d);
        },
      ],
      ['rmm, full basis (device kernels)', () => rmm(device)],
    ]);
  } finally {
    clean(out);
    for (const m of [old, ft, nu]) await m.close();
    await device.close();
  }
  console.log(`\n${ratioTable(times, RUNS, 'linear merge')}`);
  if (figures) {
    const per = figures.models.map((m, k) => `input ${k}: rel. error ${m.relError.toExponential(3)}, ${m.fixes} fixes`);
    console.log(`rmm: rank ${figures.rank}, ${figures.basisTensors} basis tensors; ${per.join('; ')}`);
  }
  console.log(`rmm writes ${(written / 1e9).toFixed(2)} GB (merged model + group); goal: rmm / linear ≤ 1.3×`);
}

await main();
