// Commit and checkout throughput on a ≥ 2 GB sharded bf16 checkpoint, against
// `cat FILES > /dev/null` (reading) and `cp` (reading + writing) of the same
// files in the same run, page cache warm for all. Library calls always; the
// CLI too when packages/cli/dist exists (pnpm build).
//   pnpm bench store-throughput      (THROUGHPUT_GB=0.5 for a quicker run)
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type DType, ModelWriter } from '../../packages/core/src/index.js';
import { BENCH_DIR } from './fixtures/real-weights.js';
import { bestOf, bytesOf, machineLine, normalBf16, Rng, table } from './fixtures/synthetic.js';

const ROOT = new URL('../..', import.meta.url).pathname;
const CHUNK = 4 << 20; // the repository's chunk size

interface Spec {
  name: string;
  shape: number[];
}

function llamaSpecs(hidden: number, inter: number, layers: number, vocab: number): Spec[] {
  const s: Spec[] = [{ name: 'model.embed_tokens.weight', shape: [vocab, hidden] }];
  for (let l = 0; l < layers; l++) {
    const p = `model.layers.${l}.`;
    s.push({ name: `${p}input_layernorm.weight`, shape: [hidden] });
    for (const m of ['q', 'k', 'v', 'o']) s.push({ name: `${p}self_attn.${m}_proj.weight`, shape: [hidden, hidden] });
    s.push({ name: `${p}post_attention_layernorm.weight`, shape: [hidden] });
    s.push({ name: `${p}mlp.gate_proj.weight`, shape: [inter, hidden] });
    s.push({ name: `${p}mlp.up_proj.weight`, shape: [inter, hidden] });
    s.push({ name: `${p}mlp.down_proj.weight`, shape: [hidden, inter] });
  }
  s.push({ name: 'model.norm.weight', shape: [hidden] });
  s.push({ name: 'lm_head.weight', shape: [vocab, hidden] });
  return s;
}

/**
 * Unique content for every tensor without drawing a billion normals: a 16M
 * element pool of normal(0, 0.02) bf16 values read through an affine
 * permutation (odd multiplier mod 2^24) drawn afresh for every 2^24-element
 * segment of every tensor, so the value distribution stays that of trained
 * weights and no 4 MiB block of a weight matrix repeats (checked below: a
 * repeated chunk is stored once and skips its fsync, which would flatter
 * wgit). Only the norm vectors (4 KiB each, all 1.0) repeat, as they do in
 * a freshly initialised model.
 */
async function ensureCheckpoint(gb: number): Promise<string> {
  const layers = Math.max(1, Math.round((gb * 18) / 2.1));
  const dir = join(BENCH_DIR, `throughput-v2-l${layers}`);
  if (existsSync(join(dir, 'model.safetensors.index.json')) || existsSync(join(dir, 'model.safetensors'))) return dir;
  rmSync(dir, { recursive: true, force: true });
  const specs = llamaSpecs(2048, 5632, layers, 32000).map((s) => ({ ...s, dtype: 'BF16' as DType }));
  console.error(`generating a ${layers}-layer bf16 checkpoint in ${dir} …`);
  const POOL = 1 << 24;
  const pool = normalBf16(POOL, 0.02, new Rng(7));
  const rng = new Rng(8);
  const blocks = new Map<string, string>(); // sha256 of every 4 MiB block of a weight matrix
  const w = await ModelWriter.create(dir, specs, { maxShardBytes: 500_000_000 });
  for (const s of specs) {
    const n = s.shape.reduce((a, b) => a * b, 1);
    const out = new Uint16Array(n);
    if (s.shape.length === 1)
      out.fill(0x3f80); // norms start at 1.0
    else {
      for (let seg = 0; seg < n; seg += POOL) {
        const a = (rng.u32() | 1) & (POOL - 1);
        const b = rng.u32() & (POOL - 1);
        const end = Math.min(n, seg + POOL);
        for (let i = seg; i < end; i++) out[i] = pool[(Math.imul(i - seg, a) + b) & (POOL - 1)];
      }
      for (let o = 0; o < out.byteLength; o += CHUNK) {
        const id = createHash('sha256')
          .update(bytesOf(out).subarray(o, Math.min(out.byteLength, o + CHUNK)))
          .digest('base64');
        if (blocks.has(id)) throw new Error(`generated data repeats: ${s.name} at byte ${o} equals ${blocks.get(id)}`);
        blocks.set(id, `${s.name} at byte ${o}`);
      }
    }
    await w.write(s.name, bytesOf(out));
  }
  await w.finish();
  return dir;
}

function filesOf(dir: string): string[] {
  return readdirSync(dir)
    .sort()
    .map((f) => join(dir, f));
}

function sh(script: string, args: string[]): void {
  execFileSync('sh', ['-c', script, 'sh', ...args], { stdio: ['ignore', 'ignore', 'inherit'] });
}

function sameTree(a: string, b: string): boolean {
  const fa = readdirSync(a).sort();
  const fb = readdirSync(b).sort();
  if (fa.join('\n') !== fb.join('\n')) return false;
  try {
    for (const f of fa) execFileSync('cmp', ['-s', join(a, f), join(b, f)]);
    return true;
  } catch {
    return false;
  }
}

async function main(): Promise<void> {
  console.log(machineLine());
  const gb = Number(process.env.THROUGHPUT_GB ?? 2.1);
  const src = await ensureCheckpoint(gb);
  const files = filesOf(src);
  const bytes = files.reduce((t, f) => t + statSync(f).size, 0);
  const work = mkdtempSync(join(tmpdir(), 'wgit-bench-'));
  const rows: (string | number)[][] = [['operation', 'GB', 'seconds', 'GB/s', 'vs cat', 'vs cp']];
  try {
    sh('cat "$@" > /dev/null', files); // warm the page cache for every contender
    const cat = bestOf(2, () => sh('cat "$@" > /dev/null', files));
    const cpDst = join(work, 'cp');
    const cp = bestOf(2, () => {
      rmSync(cpDst, { recursive: true, force: true });
      sh('cp -r "$1" "$2"', [src, cpDst]);
    });
    // wgit makes what it writes durable (fsync) before it reports success; cp does not.
    const cpSync = bestOf(2, () => {
      rmSync(cpDst, { recursive: true, force: true });
      sh('cp -r "$1" "$2" && sync "$2"/*', [src, cpDst]);
    });
    rmSync(cpDst, { recursive: true, force: true });
    rows[0].push('vs cp+sync');
    const row = (name: string, s: number) =>
      rows.push([name, bytes / 1e9, s, bytes / s / 1e9, cat / s, cp / s, cpSync / s]);
    row('cat FILES > /dev/null', cat);
    row('cp -r', cp);
    row('cp -r, then sync the copies', cpSync);

    const { Repository } = await import('../../packages/store/src/index.js');
    const repoDir = join(work, 'repo');
    mkdirSync(repoDir);
    const repo = await Repository.init(repoDir);
    let t = process.hrtime.bigint();
    const c = await repo.commit({ path: src, message: 'checkpoint' });
    row('wgit commit (library)', Number(process.hrtime.bigint() - t) / 1e9);
    const outDir = join(work, 'out');
    t = process.hrtime.bigint();
    await repo.checkout(c.commit, outDir);
    row('wgit checkout (library)', Number(process.hrtime.bigint() - t) / 1e9);
    if (!sameTree(src, outDir)) throw new Error('checkout is not byte-identical to the committed folder');
    const stored = c.storedBytes;
    rmSync(outDir, { recursive: true, force: true });
    rmSync(repoDir, { recursive: true, force: true });

    const cli = join(ROOT, 'packages', 'cli', 'bin', 'run.js');
    if (existsSync(join(ROOT, 'packages', 'cli', 'dist', 'commands', 'commit.js'))) {
      const cliRepo = join(work, 'cli-repo');
      mkdirSync(cliRepo);
      const run = (args: string[]) =>
        execFileSync(process.execPath, [cli, ...args], { cwd: cliRepo, stdio: ['ignore', 'pipe', 'inherit'] });
      run(['init', '--json']);
      t = process.hrtime.bigint();
      const out = JSON.parse(run(['commit', src, '-m', 'checkpoint', '--json']).toString()) as { commit: string };
      row('wgit commit (CLI, incl. start-up)', Number(process.hrtime.bigint() - t) / 1e9);
      t = process.hrtime.bigint();
      run(['checkout', out.commit, '--out', join(work, 'cli-out'), '--json']);
      row('wgit checkout (CLI, incl. start-up)', Number(process.hrtime.bigint() - t) / 1e9);
      if (!sameTree(src, join(work, 'cli-out'))) throw new Error('CLI checkout is not byte-identical');
    } else {
      console.log('CLI not built (packages/cli/dist missing): CLI rows skipped; run pnpm build first');
    }
    console.log(
      `checkpoint: ${files.length} files, ${(bytes / 1e9).toFixed(2)} GB; wgit stored ${(stored / 1e9).toFixed(2)} GB`,
    );
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  console.log(
    `GB/s over the checkpoint size; "vs X" = X's seconds / our seconds (goal >= 0.5); threads: ${process.env.WGIT_THREADS ?? 'default'}`,
  );
  console.log(table(rows));
}

await main();
