/**
 * Merge benchmark: three bf16 fine-tunes of a ~1.1 B parameter Llama-shaped
 * model (hidden 2048, intermediate 5632, 22 layers, 4 KV heads, vocab 32000;
 * 2.2 GB each, sharded at 1 GB) plus their base, merged with linear, ties
 * and dare-ties by wgit's engine and by the same per-tensor merge in PyTorch
 * (test/bench/merge_torch.py, Debian's python3-torch), in the same run, with
 * the same number of threads. Each merge runs in its own process so peak RSS
 * is per run. The models are cached in .bench/.
 *
 * Rows:
 * - `wgit merge` (the CLI, whole process) in a repository holding the four
 *   models (base on main, each fine-tune on a branch of its own from it):
 *   once from the revisions, once from the folders; either way it writes the
 *   merged model into the store and commits it, as users run it;
 * - the torch script (whole process, from the folders) run as production torch
 *   runs, with jemalloc as a caching allocator (LD_PRELOAD, decay off), writing
 *   its output file next to the repository (same file system);
 * - the library call alone (mergeModels on the folders, output on /dev/shm
 *   when it has room), for where the time goes.
 *
 *   pnpm bench merge            (WGIT_BENCH_LAYERS=4 for a quick, smaller run)
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { getDevice, ModelWriter, mergeModels, openModel } from '../../packages/core/src/index.js';
import { llamaSpecs, numel } from './fixtures/llama.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const THREADS = Number(process.env.WGIT_THREADS ?? 2);
const LAYERS = Number(process.env.WGIT_BENCH_LAYERS ?? 22);
const cacheDir = path.join(root, '.bench', `llama-${LAYERS}l-bf16`);
const METHODS = (process.env.WGIT_BENCH_METHODS ?? 'linear,ties,dare-ties').split(',');
const DENSITY = 0.2;

const specs = () => llamaSpecs(LAYERS);

/** bf16 bit patterns of 65,536 draws from normal(0, sd), indexed by 16 random bits. */
function normalTable(sd: number): Uint16Array {
  const t = new Uint16Array(65536);
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  for (let i = 0; i < 65536; i++) {
    // inverse-CDF-free: Box–Muller on a fixed lattice gives a deterministic, well-spread table
    const u1 = (i + 0.5) / 65536;
    const u2 = ((i * 40503) % 65536) / 65536;
    f[0] = sd * Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
    t[i] = (u[0] + 0x7fff + ((u[0] >>> 16) & 1)) >>> 16;
  }
  return t;
}

async function generate(): Promise<void> {
  if (fs.existsSync(path.join(cacheDir, 'complete'))) return;
  fs.rmSync(cacheDir, { recursive: true, force: true });
  const sp = specs();
  const total = sp.reduce((s, t) => s + numel(t.shape), 0);
  console.log(`generating 4 checkpoints of ${(total / 1e9).toFixed(2)} B parameters into ${cacheDir} …`);
  const baseTable = normalTable(0.02);
  const pertTable = new Float32Array(65536);
  const nt = normalTable(0.002);
  for (let i = 0; i < 65536; i++) pertTable[i] = new Float32Array(new Uint32Array([nt[i] << 16]).buffer)[0];
  const names = ['base', 'ft0', 'ft1', 'ft2'];
  const writers = await Promise.all(
    names.map((n) => ModelWriter.create(path.join(cacheDir, n), sp, { maxShardBytes: 1e9 })),
  );
  const config = JSON.stringify({
    model_type: 'llama',
    hidden_size: 2048,
    intermediate_size: 5632,
    num_hidden_layers: LAYERS,
    vocab_size: 32000,
  });
  for (const n of names) fs.writeFileSync(path.join(cacheDir, n, 'config.json'), config);
  let state = 0x12345678;
  const next = () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return state >>> 0;
  };
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  for (const t of sp) {
    const n = numel(t.shape);
    const base = new Uint16Array(n);
    const isNorm = t.shape.length === 1;
    for (let j = 0; j < n; j += 2) {
      const r = next();
      base[j] = isNorm ? 0x3f80 : baseTable[r & 0xffff];
      if (j + 1 < n) base[j + 1] = isNorm ? 0x3f80 : baseTable[r >>> 16];
    }
    await writers[0].write(t.name, new Uint8Array(base.buffer));
    for (let m = 1; m < 4; m++) {
      const ft = new Uint16Array(n);
      for (let j = 0; j < n; j++) {
        u[0] = base[j] << 16;
        f[0] += pertTable[(next() >>> 7) & 0xffff] * (m === 3 ? 2 : 1);
        ft[j] = (u[0] + 0x7fff + ((u[0] >>> 16) & 1)) >>> 16;
      }
      await writers[m].write(t.name, new Uint8Array(ft.buffer));
    }
  }
  for (const w of writers) await w.finish();
  fs.writeFileSync(path.join(cacheDir, 'complete'), `${total}\n`);
}

interface RunResult {
  seconds: number;
  maxRssKb: number;
  wallSeconds: number;
}

/** Child mode: one merge, timings and peak RSS as JSON on stdout. */
async function child(method: string, outDir: string): Promise<void> {
  const t0 = performance.now();
  const inputs = await Promise.all(['ft0', 'ft1', 'ft2'].map((n) => openModel(path.join(cacheDir, n))));
  const base = method === 'linear' ? undefined : await openModel(path.join(cacheDir, 'base'));
  await getDevice({ device: 'cpu', threads: THREADS });
  const params = method === 'linear' ? {} : { density: DENSITY, seed: 0 };
  const report = await mergeModels({ inputs, base, method, params, outDir });
  const seconds = (performance.now() - t0) / 1000;
  for (const m of [...inputs, ...(base ? [base] : [])]) await m.close();
  (await getDevice({ device: 'cpu' })).close();
  console.log(JSON.stringify({ seconds, maxRssKb: process.resourceUsage().maxRSS, timings: report.timings }));
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): RunResult {
  const t0 = performance.now();
  const r = spawnSync(cmd, args, { cwd: root, env: { ...process.env, ...env }, encoding: 'utf8', maxBuffer: 1 << 24 });
  const wallSeconds = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed:\n${r.stderr}`);
  const last = r.stdout.trim().split('\n').pop() as string;
  return { ...JSON.parse(last), wallSeconds };
}

const BIN = path.join(root, 'packages', 'cli', 'bin', 'run.js');
const repoDir = `${cacheDir}-repo`;

function wgitCli(args: string[], env: NodeJS.ProcessEnv = {}): { seconds: number; json: Record<string, unknown> } {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [BIN, ...args, '--json'], {
    cwd: repoDir,
    env: { ...process.env, WGIT_AUTHOR_DATE: '1700000000', ...env },
    encoding: 'utf8',
    maxBuffer: 1 << 26,
  });
  const seconds = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`wgit ${args.join(' ')} failed:\n${r.stdout}\n${r.stderr}`);
  return { seconds, json: JSON.parse(r.stdout) };
}

/** The four models in a repository: base on main, ft0..ft2 each on its own branch from it (cached). */
function ensureRepo(): void {
  if (fs.existsSync(path.join(repoDir, 'complete'))) return;
  fs.rmSync(repoDir, { recursive: true, force: true });
  fs.mkdirSync(repoDir, { recursive: true });
  console.log(`committing the four models into ${repoDir} …`);
  wgitCli(['init', '.']);
  wgitCli(['commit', path.join(cacheDir, 'base'), '-m', 'base']);
  for (const n of ['ft0', 'ft1', 'ft2']) {
    wgitCli(['branch', n, 'main']);
    wgitCli(['commit', path.join(cacheDir, n), '-b', n, '-m', n]);
  }
  fs.writeFileSync(path.join(repoDir, 'complete'), '');
}

/** jemalloc for the torch baseline when it loads here; null (glibc malloc) otherwise. */
function jemallocEnv(): NodeJS.ProcessEnv | null {
  const env = { LD_PRELOAD: 'libjemalloc.so.2', MALLOC_CONF: 'dirty_decay_ms:-1,muzzy_decay_ms:-1' };
  const r = spawnSync('/usr/bin/python3', ['-c', 'import torch'], {
    env: { ...process.env, ...env },
    encoding: 'utf8',
  });
  return r.status === 0 && !/cannot be preloaded/.test(r.stderr) ? env : null;
}

function outRoot(): string {
  const shm = '/dev/shm';
  try {
    if (fs.statfsSync(shm).bavail * fs.statfsSync(shm).bsize > 6e9)
      return fs.mkdtempSync(path.join(shm, 'wgit-bench-'));
  } catch {}
  return fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-bench-'));
}

async function main(): Promise<void> {
  if (process.argv[2] === '--child') return child(process.argv[3], process.argv[4]);
  await generate();
  const cliOk = fs.existsSync(path.join(root, 'packages', 'cli', 'dist', 'commands', 'merge.js'));
  if (cliOk) ensureRepo();
  else console.log('CLI not built (packages/cli/dist missing): wgit merge rows skipped; run pnpm build first');
  const torchOk = spawnSync('/usr/bin/python3', ['-c', 'import torch'], { encoding: 'utf8' }).status === 0;
  const jemalloc = torchOk ? jemallocEnv() : null;
  if (torchOk && !jemalloc) console.log('warning: libjemalloc.so.2 not loadable: torch runs on glibc malloc');
  const out = outRoot();
  const bytes = fs
    .readdirSync(path.join(cacheDir, 'ft0'))
    .reduce((s, f) => s + fs.statSync(path.join(cacheDir, 'ft0', f)).size, 0);
  console.log(
    `inputs: 3 × ${(bytes / 1e9).toFixed(2)} GB bf16 (+ base for ties/dare-ties), ${THREADS} threads, output in ${out}`,
  );
  const rows: string[][] = [];
  try {
    // Both sides are timed with their inputs in the page cache: read every input once first.
    const warm = spawnSync('sh', [
      '-c',
      `cat ${['ft0', 'ft1', 'ft2', 'base'].map((n) => `'${path.join(cacheDir, n)}'/*.safetensors`).join(' ')} > /dev/null`,
    ]);
    if (warm.status !== 0) console.log('warning: could not pre-read the inputs; the first run may read from disk');
    for (const method of METHODS) {
      const wOut = path.join(out, `wgit-${method}`);
      const w = run(
        process.execPath,
        ['--conditions=wgit-source', '--import', 'tsx', fileURLToPath(import.meta.url), '--child', method, wOut],
        {
          WGIT_THREADS: String(THREADS),
        },
      );
      fs.rmSync(wOut, { recursive: true, force: true });
      // The command end to end: from revisions, then from the folders; each commits its result.
      const flags =
        method === 'linear' ? ['--method', method] : ['--method', method, '--density', String(DENSITY), '--seed', '0'];
      const cli = (from: 'revs' | 'files') => {
        if (!cliOk) return null;
        const branch = `bench-${method}-${from}`;
        const inputs =
          from === 'revs' ? ['ft0', 'ft1', 'ft2'] : ['ft0', 'ft1', 'ft2'].map((n) => path.join(cacheDir, n));
        const base = method === 'linear' ? [] : ['--base', from === 'revs' ? 'main' : path.join(cacheDir, 'base')];
        const r = wgitCli(['merge', ...inputs, ...base, ...flags, '--branch', branch, '-m', branch], {
          WGIT_THREADS: String(THREADS),
        });
        // Not timed: drop the merged commit so the cached repository does not grow.
        wgitCli(['branch', branch, '--delete']);
        wgitCli(['gc', '--grace', '0']);
        return r.seconds;
      };
      const cliRevs = cli('revs');
      const cliFiles = cli('files');
      let t: RunResult | null = null;
      if (torchOk) {
        // Next to the repository: the same file system wgit merge commits to.
        const tOut = path.join(path.dirname(repoDir), `torch-${method}-${process.pid}.safetensors`);
        const dirs = ['ft0', 'ft1', 'ft2'].map((n) => path.join(cacheDir, n));
        t = run(
          '/usr/bin/python3',
          [
            path.join(root, 'test/bench/merge_torch.py'),
            method,
            tOut,
            path.join(cacheDir, 'base'),
            ...dirs,
            '--density',
            String(DENSITY),
            '--threads',
            String(THREADS),
          ],
          jemalloc ?? {},
        );
        fs.rmSync(tOut, { force: true });
      }
      const f = (x: number | null | undefined) => (x == null ? 'n/a' : x.toFixed(2));
      const ratio = (a: number | null, b: number | undefined) => (a == null || b == null ? 'n/a' : (a / b).toFixed(2));
      rows.push([
        method,
        f(cliRevs),
        f(cliFiles),
        f(t?.wallSeconds),
        ratio(cliRevs, t?.wallSeconds),
        ratio(cliFiles, t?.wallSeconds),
        f(w.seconds),
        f(t?.seconds),
        ratio(w.seconds, t?.seconds),
        (w.maxRssKb / 1024).toFixed(0),
        t ? (t.maxRssKb / 1024).toFixed(0) : 'n/a',
      ]);
      console.log(
        `  ${method}: wgit merge revs ${f(cliRevs)} s, files ${f(cliFiles)} s; library ${w.seconds.toFixed(2)} s (process ${w.wallSeconds.toFixed(2)} s)${t ? `, torch ${t.seconds.toFixed(2)} s (process ${t.wallSeconds.toFixed(2)} s)` : ''}`,
      );
    }
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
  const head = [
    'method',
    'wgit merge revs s',
    'wgit merge files s',
    'torch process s',
    'revs/torch',
    'files/torch',
    'library s',
    'torch merge s',
    'library/torch',
    'library RSS MB',
    'torch RSS MB',
  ];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) => `| ${r.map((c, i) => c.padStart(widths[i])).join(' | ')} |`;
  console.log(line(head));
  console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
  for (const r of rows) console.log(line(r));
  console.log(
    `goal: wgit/torch ≤ 0.5 (same threads, inputs in the page cache). "wgit merge" = the CLI process, result committed; ` +
      `"torch process" = the script's process under ${jemalloc ? 'jemalloc' : 'glibc malloc'}, output beside the repository; ` +
      '"library"/"torch merge" = the merge call inside each process (library output on /dev/shm when it fits)',
  );
}

await main();
