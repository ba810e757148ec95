/**
 * Bytes written to disk by a merge that commits its result: a TIES merge of
 * two bf16 fine-tunes (~80 MB each, synthetic) run through the CLI
 * (`wgit merge … --base …`), once as it runs now (the result streamed into
 * the store, no model folder on disk) and once with WGIT_SCRATCH_COMMIT=1
 * (the result written to a scratch folder, then committed from there). The
 * figure is the CLI process's write_bytes − cancelled_write_bytes from
 * /proc/self/io at exit (all its threads), divided by the bytes the store
 * keeps for the result (the commit's storedBytes). The repository and the
 * scratch folder (TMPDIR) are on the same disk, under .bench/.
 *
 *   node --conditions=wgit-source --import tsx test/bench/commit-written-bytes.bench.ts
 *   (npx tsc -b packages/cli first: the CLI runs from its build)
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type DType, ModelWriter, type TensorSpec } from '../../packages/core/src/index.js';
import { Repository } from '../../packages/store/src/index.js';
import { bf16, bf16ToF32, bytesOf, machineLine, normalBf16, Rng, table } from './fixtures/synthetic.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const work = path.join(root, '.bench', 'commit-written-bytes');
const cli = path.join(root, 'packages', 'cli', 'bin', 'run.js');
const RUNS = Number(process.env.WGIT_BENCH_RUNS ?? 1);

/** ~40 M parameters (80 MB in bf16): 3 layers of a small Llama-shaped model. */
function specs(): TensorSpec[] {
  const h = 1024;
  const inter = 2816;
  const dtype: DType = 'BF16';
  const s: TensorSpec[] = [{ name: 'model.embed_tokens.weight', dtype, shape: [8000, h] }];
  for (let l = 0; l < 3; l++) {
    const p = `model.layers.${l}.`;
    s.push({ name: `${p}input_layernorm.weight`, dtype, shape: [h] });
    s.push({ name: `${p}mlp.down_proj.weight`, dtype, shape: [h, inter] });
    s.push({ name: `${p}mlp.gate_proj.weight`, dtype, shape: [inter, h] });
    s.push({ name: `${p}mlp.up_proj.weight`, dtype, shape: [inter, h] });
    s.push({ name: `${p}self_attn.o_proj.weight`, dtype, shape: [h, h] });
    s.push({ name: `${p}self_attn.q_proj.weight`, dtype, shape: [h, h] });
  }
  s.push({ name: 'model.norm.weight', dtype, shape: [h] });
  return s;
}

const numel = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

/** The base, and fine-tunes that move every weight a little (σ 0.002 on weights of σ 0.02). */
async function writeModel(dir: string, seed: number, base: Map<string, Uint16Array> | null) {
  const sp = specs();
  const w = await ModelWriter.create(dir, sp, { metadata: { format: 'pt' } });
  const out = new Map<string, Uint16Array>();
  const rng = new Rng(seed);
  for (const t of sp) {
    const n = numel(t.shape);
    let v: Uint16Array;
    if (!base) v = normalBf16(n, 0.02, rng);
    else {
      const b = base.get(t.name) as Uint16Array;
      v = new Uint16Array(n);
      for (let i = 0; i < n; i++) v[i] = bf16(bf16ToF32(b[i]) + 0.002 * rng.normal());
    }
    out.set(t.name, v);
    await w.write(t.name, bytesOf(v));
  }
  await w.finish();
  fs.writeFileSync(path.join(dir, 'config.json'), '{"model_type": "llama"}\n');
  return out;
}

const preload = `
import { readFileSync, writeFileSync } from 'node:fs';
process.on('exit', () => {
  try { writeFileSync(process.env.WGIT_BENCH_IO_OUT, readFileSync('/proc/self/io')); } catch {}
});
`;

function ioOf(file: string): { write: number; cancelled: number } {
  const text = fs.readFileSync(file, 'utf8');
  const field = (k: string) => Number(new RegExp(`^${k}: (\\d+)$`, 'm').exec(text)?.[1] ?? Number.NaN);
  return { write: field('write_bytes'), cancelled: field('cancelled_write_bytes') };
}

async function main(): Promise<void> {
  console.log(machineLine());
  fs.rmSync(work, { recursive: true, force: true });
  fs.mkdirSync(path.join(work, 'tmp'), { recursive: true });
  const repoDir = path.join(work, 'repo');
  const repo = await Repository.init(repoDir);
  const base = await writeModel(path.join(work, 'base'), 1, null);
  await writeModel(path.join(work, 'ft-a'), 2, base);
  await writeModel(path.join(work, 'ft-b'), 3, base);
  for (const m of ['base', 'ft-a', 'ft-b']) {
    await repo.commit({ path: path.join(work, m), branch: m, message: m });
    fs.rmSync(path.join(work, m), { recursive: true, force: true });
  }
  const preloadFile = path.join(work, 'io-at-exit.mjs');
  fs.writeFileSync(preloadFile, preload);

  const rows: (string | number)[][] = [['path', 'written MB', 'stored MB', 'written / stored', 'seconds']];
  for (const [label, scratch] of [
    ['scratch folder (WGIT_SCRATCH_COMMIT=1)', '1'],
    ['streamed into the store', '0'],
  ] as const) {
    let best: { written: number; stored: number; s: number } | null = null;
    for (let r = 0; r < RUNS; r++) {
      const ioOut = path.join(work, `io-${scratch}-${r}`);
      // Each run gets a fresh copy of the inputs' repository (the result's chunks must be new to it);
      // dirty pages of the copy are flushed first, so they are not counted against the run.
      const runRepo = path.join(work, `run-${scratch}-${r}`);
      fs.cpSync(repoDir, runRepo, { recursive: true });
      spawnSync('sync');
      const t = performance.now();
      const p = spawnSync(
        process.execPath,
        [
          '--import',
          preloadFile,
          cli,
          'merge',
          'ft-a',
          'ft-b',
          '--base',
          'base',
          '--method',
          'ties',
          '--branch',
          'result',
          '--json',
        ],
        {
          cwd: runRepo,
          encoding: 'utf8',
          env: {
            ...process.env,
            WGIT_SCRATCH_COMMIT: scratch,
            WGIT_BENCH_IO_OUT: ioOut,
            TMPDIR: path.join(work, 'tmp'),
          },
        },
      );
      const s = (performance.now() - t) / 1000;
      if (p.status !== 0) throw new Error(`wgit merge failed: ${p.stderr}`);
      const res = JSON.parse(p.stdout) as { storedBytes: number };
      const io = ioOf(ioOut);
      const written = io.write - io.cancelled;
      fs.rmSync(runRepo, { recursive: true, force: true });
      if (!best || written < best.written) best = { written, stored: res.storedBytes, s };
    }
    const b = best as { written: number; stored: number; s: number };
    rows.push([
      label,
      (b.written / 1e6).toFixed(1),
      (b.stored / 1e6).toFixed(1),
      (b.written / b.stored).toFixed(2),
      b.s.toFixed(1),
    ]);
  }
  console.log(table(rows));
  fs.rmSync(work, { recursive: true, force: true });
}

await main();
