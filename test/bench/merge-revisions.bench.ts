/**
 * Merging revisions vs merging files: two bf16 fine-tunes of a Llama-shaped
 * model (hidden 2048, intermediate 5632, 4 KV heads, vocab 32000; 3 layers by
 * default, ~0.5 GB each) and their base, merged with linear and with TIES
 * (base given), once from safetensors files and once from the same models
 * committed in a repository (Repository.openModel sources), in the same run,
 * with the same threads. Prints the ratio revisions/files per method; the
 * goal is ≤ 1.3. Also the CPU seconds of the process (all threads) for the
 * same runs: on a shared machine they move less with the load than wall
 * time. Models and the repository are cached in .bench/, outputs go to
 * /dev/shm when it has room.
 *
 *   node --conditions=wgit-source --import tsx test/bench/merge-revisions.bench.ts
 *   (WGIT_THREADS, default 2; WGIT_BENCH_LAYERS, default 3; WGIT_BENCH_RUNS, default 2)
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { getDevice, type ModelSource, ModelWriter, mergeModels, openModel } from '../../packages/core/src/index.js';
import { Repository } from '../../packages/store/src/index.js';
import { llamaSpecs } from './fixtures/llama.js';
import { bf16, bytesOf, machineLine, Rng, table } from './fixtures/synthetic.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const THREADS = Number(process.env.WGIT_THREADS ?? 2);
process.env.WGIT_THREADS = String(THREADS);
const LAYERS = Number(process.env.WGIT_BENCH_LAYERS ?? 3);
const RUNS = Number(process.env.WGIT_BENCH_RUNS ?? 2);
const cacheDir = path.join(root, '.bench', `merge-revisions-${LAYERS}l-bf16`);
const NAMES = ['base', 'ft0', 'ft1'] as const;

const specs = () => llamaSpecs(LAYERS);

interface Cached {
  commits: Record<(typeof NAMES)[number], string>;
}

/** The three models as files, and the same three committed in order (base, ft0, ft1) in one repository. */
async function prepare(): Promise<Cached> {
  const done = path.join(cacheDir, 'complete.json');
  if (fs.existsSync(done)) return JSON.parse(fs.readFileSync(done, 'utf8'));
  fs.rmSync(cacheDir, { recursive: true, force: true });
  const sp = specs();
  console.log(`generating base + 2 fine-tunes (${LAYERS} layers) into ${cacheDir} …`);
  const writers = await Promise.all(NAMES.map((n) => ModelWriter.create(path.join(cacheDir, n), sp)));
  const rng = new Rng(7);
  for (const t of sp) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    const isNorm = t.shape.length === 1;
    const base = new Uint16Array(n);
    const vals = new Float32Array(n);
    for (let j = 0; j < n; j++) {
      vals[j] = isNorm ? 1 : 0.02 * rng.normal();
      base[j] = bf16(vals[j]);
    }
    await writers[0].write(t.name, bytesOf(base));
    for (let m = 1; m < 3; m++) {
      const ft = new Uint16Array(n);
      for (let j = 0; j < n; j++) ft[j] = bf16(vals[j] + 0.002 * rng.normal());
      await writers[m].write(t.name, bytesOf(ft));
    }
  }
  for (const w of writers) await w.finish();
  console.log('committing them …');
  const repo = await Repository.init(path.join(cacheDir, 'repo'));
  const commits = {} as Cached['commits'];
  for (const n of NAMES) commits[n] = (await repo.commit({ path: path.join(cacheDir, n), message: n })).commit;
  const c: Cached = { commits };
  fs.writeFileSync(done, JSON.stringify(c));
  return c;
}

/** The least wall time of `runs` runs, and the least CPU time (all threads of the process) among them. */
async function bestOf(runs: number, fn: () => Promise<void>): Promise<{ wall: number; cpu: number }> {
  let wall = Number.POSITIVE_INFINITY;
  let cpu = Number.POSITIVE_INFINITY;
  for (let r = 0; r < runs; r++) {
    (globalThis as { gc?: () => void }).gc?.();
    const c0 = process.cpuUsage();
    const t = process.hrtime.bigint();
    await fn();
    wall = Math.min(wall, Number(process.hrtime.bigint() - t) / 1e9);
    const c = process.cpuUsage(c0);
    cpu = Math.min(cpu, (c.user + c.system) / 1e6);
  }
  return { wall, cpu };
}

function outRoot(): string {
  try {
    const s = fs.statfsSync('/dev/shm');
    if (s.bavail * s.bsize > 3e9) return fs.mkdtempSync(path.join('/dev/shm', 'wgit-bench-'));
  } catch {}
  return fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-bench-'));
}

async function main(): Promise<void> {
  const cached = await prepare();
  const repo = await Repository.open(path.join(cacheDir, 'repo'));
  const bytes = fs
    .readdirSync(path.join(cacheDir, 'ft0'))
    .reduce((s, f) => s + fs.statSync(path.join(cacheDir, 'ft0', f)).size, 0);
  const out = outRoot();
  console.log(
    `inputs: 2 × ${(bytes / 1e9).toFixed(2)} GB bf16 (+ base for ties), ${THREADS} threads, best of ${RUNS}, output in ${out}`,
  );
  // Files and chunks are read once first, so both sides start from the page cache.
  for (const n of NAMES) {
    for (const f of fs.readdirSync(path.join(cacheDir, n))) fs.readFileSync(path.join(cacheDir, n, f));
  }
  for (const n of NAMES) {
    const m = await repo.openModel(cached.commits[n]);
    for (const t of m.tensors) await m.readTensor(t.name);
    await m.close();
  }
  await getDevice({ device: 'cpu', threads: THREADS });
  const open: Record<string, (n: (typeof NAMES)[number]) => Promise<ModelSource>> = {
    files: (n) => openModel(path.join(cacheDir, n)),
    revisions: (n) => repo.openModel(cached.commits[n]),
  };
  const rows: (string | number)[][] = [
    ['method', 'files s', 'revisions s', 'revisions/files', 'files cpu s', 'revisions cpu s', 'cpu ratio'],
  ];
  try {
    for (const method of ['linear', 'ties']) {
      const seconds: Record<string, { wall: number; cpu: number }> = {};
      for (const side of ['files', 'revisions']) {
        seconds[side] = await bestOf(RUNS, async () => {
          const outDir = path.join(out, `${method}-${side}`);
          const inputs = await Promise.all(['ft0', 'ft1'].map((n) => open[side](n as 'ft0' | 'ft1')));
          const base = method === 'linear' ? undefined : await open[side]('base');
          await mergeModels({
            inputs,
            base,
            method,
            params: method === 'linear' ? {} : { density: 0.2, seed: 0 },
            outDir,
          });
          for (const m of [...inputs, ...(base ? [base] : [])]) await m.close();
          fs.rmSync(outDir, { recursive: true, force: true });
        });
        console.log(
          `  ${method} from ${side}: ${seconds[side].wall.toFixed(2)} s (cpu ${seconds[side].cpu.toFixed(2)} s)`,
        );
      }
      const { files, revisions } = seconds;
      rows.push([
        method,
        files.wall,
        revisions.wall,
        revisions.wall / files.wall,
        files.cpu,
        revisions.cpu,
        revisions.cpu / files.cpu,
      ]);
    }
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
    (await getDevice({ device: 'cpu' })).close();
  }
  console.log(table(rows));
  console.log('goal: revisions/files ≤ 1.3 (same run, same threads, inputs in the page cache)');
  console.log(machineLine());
}

await main();
