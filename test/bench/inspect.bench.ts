// `wgit inspect` on a ~1 GB sharded bf16 folder (headers only), against the
// floor any CLI pays here: a bare `node -e ''` start and `head -c` reading the
// same header bytes. Also times the ModelWriter that builds the folder against
// a plain write of the same bytes.
//   pnpm bench inspect
//   WGIT_BENCH_LAYERS=4 pnpm bench inspect      (smaller folder)
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { summarize } from '../../packages/cli/src/inspect-model.js';
import { ModelWriter, openModel, planShards, type TensorSpec } from '../../packages/core/src/safetensors/index.js';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const BIN = path.join(ROOT, 'packages', 'cli', 'bin', 'run.js');
const LAYERS = Number(process.env.WGIT_BENCH_LAYERS ?? 28);
const REPS = Number(process.env.WGIT_BENCH_REPS ?? 15);

/** A small Llama-shaped model: hidden 1024, MLP 4096, vocab 32000, bf16 (~1.03 GB at 28 layers). */
function llamaSpecs(layers: number): TensorSpec[] {
  const h = 1024;
  const f = 4096;
  const specs: TensorSpec[] = [{ name: 'model.embed_tokens.weight', dtype: 'BF16', shape: [32000, h] }];
  for (let l = 0; l < layers; l++) {
    const p = `model.layers.${l}`;
    for (const m of ['q_proj', 'k_proj', 'v_proj', 'o_proj'])
      specs.push({ name: `${p}.self_attn.${m}.weight`, dtype: 'BF16', shape: [h, h] });
    specs.push({ name: `${p}.mlp.gate_proj.weight`, dtype: 'BF16', shape: [f, h] });
    specs.push({ name: `${p}.mlp.up_proj.weight`, dtype: 'BF16', shape: [f, h] });
    specs.push({ name: `${p}.mlp.down_proj.weight`, dtype: 'BF16', shape: [h, f] });
    specs.push({ name: `${p}.input_layernorm.weight`, dtype: 'BF16', shape: [h] });
    specs.push({ name: `${p}.post_attention_layernorm.weight`, dtype: 'BF16', shape: [h] });
  }
  specs.push({ name: 'model.norm.weight', dtype: 'BF16', shape: [h] });
  specs.push({ name: 'lm_head.weight', dtype: 'BF16', shape: [32000, h] });
  return specs;
}

interface Timing {
  best: number;
  median: number;
  /** Best CPU time (ms), for processes. */
  cpu?: number;
}

function stats(samples: number[]): { best: number; median: number } {
  const s = [...samples].sort((a, b) => a - b);
  return { best: s[0], median: s[Math.floor(s.length / 2)] };
}

async function timeAsync(fn: () => Promise<unknown>): Promise<Timing> {
  await fn();
  const t: number[] = [];
  for (let i = 0; i < REPS; i++) {
    const t0 = performance.now();
    await fn();
    t.push(performance.now() - t0);
  }
  return stats(t);
}

const TIME = fs.existsSync('/usr/bin/time') ? '/usr/bin/time' : null;

/**
 * Wall time of a child process, and its CPU time (user + sys, through
 * /usr/bin/time when present): on a busy machine wall time mostly measures
 * the other processes, CPU time much less so.
 */
function timeProcess(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): Timing {
  const run = (): [number, number] => {
    const t0 = performance.now();
    const r = TIME
      ? spawnSync(TIME, ['-f', 'wgit-cpu %U %S', cmd, ...args], {
          env,
          stdio: ['ignore', 'ignore', 'pipe'],
          encoding: 'utf8',
        })
      : spawnSync(cmd, args, { env, stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
    const wall = performance.now() - t0;
    if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr}`);
    const m = /wgit-cpu ([\d.]+) ([\d.]+)/.exec(r.stderr ?? '');
    return [wall, m ? (Number(m[1]) + Number(m[2])) * 1000 : Number.NaN];
  };
  run();
  const runs = Array.from({ length: REPS }, run);
  return { ...stats(runs.map((r) => r[0])), cpu: stats(runs.map((r) => r[1])).best };
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-bench-'));
try {
  const dir = path.join(tmp, 'model');
  const specs = llamaSpecs(LAYERS);
  const sizes = specs.map((s) => s.shape.reduce((a, b) => a * b, 1) * 2);
  const total = sizes.reduce((a, b) => a + b, 0);
  // One pseudo-random buffer, sliced per tensor: real bytes on disk without generating 1 GB.
  const pool = new Uint8Array(Math.max(...sizes));
  let s = 12345;
  for (let i = 0; i < pool.length; i += 4) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    pool[i] = s & 0xff;
    pool[i + 1] = 0x3c | ((s >>> 8) & 0x80);
    pool[i + 2] = (s >>> 16) & 0xff;
    pool[i + 3] = 0x3c | ((s >>> 24) & 0x80);
  }

  let t0 = performance.now();
  // The smallest shard limit that still gives 4 shards (greedy packing needs some slack over total / 4).
  let maxShardBytes = Math.ceil(total / 4);
  while (planShards(specs, maxShardBytes).length > 4) maxShardBytes += 1 << 20;
  const w = await ModelWriter.create(dir, specs, { maxShardBytes });
  for (let i = 0; i < specs.length; i++) await w.write(specs[i].name, pool.subarray(0, sizes[i]));
  await w.finish();
  const writeMs = performance.now() - t0;
  // Baseline: the same bytes through plain appends to one file plus one fsync.
  t0 = performance.now();
  const fd = fs.openSync(path.join(tmp, 'plain.bin'), 'w');
  for (const n of sizes) fs.writeSync(fd, pool, 0, n);
  fs.fsyncSync(fd);
  fs.closeSync(fd);
  const plainMs = performance.now() - t0;
  fs.rmSync(path.join(tmp, 'plain.bin'));

  const model = await openModel(dir);
  const headerBytes = model.shards.map((h) => h.dataStart);
  const shardFiles = model.shards.map((h) => h.path);
  await model.close();

  const lib = await timeAsync(async () => {
    const m = await openModel(dir);
    summarize(m);
    await m.close();
  });
  const fast = timeProcess(process.execPath, [BIN, 'inspect', dir, '--json']);
  const viaOclif = timeProcess(process.execPath, [BIN, 'inspect', dir, '--json'], {
    ...process.env,
    WGIT_NO_FAST_PATH: '1',
  });
  const nodeStart = timeProcess(process.execPath, ['-e', '']);
  const headScript = shardFiles.map((f, i) => `head -c ${headerBytes[i]} '${f}' >/dev/null`).join('; ');
  const head = timeProcess('sh', ['-c', headScript]);

  const gb = (n: number) => (n / 1e9).toFixed(3);
  console.log(
    `folder: ${specs.length} tensors in ${shardFiles.length} shards, ${gb(total)} GB of bf16, headers ${headerBytes.join(' + ')} bytes`,
  );
  console.log(`machine: ${os.cpus().length} cores, load average ${os.loadavg()[0].toFixed(1)}, ${REPS} runs each\n`);
  const rows: [string, Timing][] = [
    ['openModel + summary, in process', lib],
    ['wgit inspect DIR --json (fast path)', fast],
    ['wgit inspect DIR --json (through oclif)', viaOclif],
    ["baseline: node -e ''", nodeStart],
    [`baseline: sh + head -c of the ${shardFiles.length} headers`, head],
  ];
  const cpuCell = (t: Timing) => (t.cpu === undefined || Number.isNaN(t.cpu) ? '' : t.cpu.toFixed(0));
  console.log(`${'what'.padEnd(42)}${'best ms'.padStart(10)}${'median ms'.padStart(12)}${'CPU ms'.padStart(9)}`);
  for (const [what, t] of rows) {
    console.log(
      `${what.padEnd(42)}${t.best.toFixed(1).padStart(10)}${t.median.toFixed(1).padStart(12)}${cpuCell(t).padStart(9)}`,
    );
  }
  console.log(
    `\nCLI over bare node start (best wall): fast path +${(fast.best - nodeStart.best).toFixed(1)} ms, oclif +${(viaOclif.best - nodeStart.best).toFixed(1)} ms`,
  );
  if (fast.cpu !== undefined && nodeStart.cpu !== undefined && !Number.isNaN(fast.cpu)) {
    console.log(
      `CLI over bare node start (CPU): fast path +${(fast.cpu - nodeStart.cpu).toFixed(0)} ms, oclif +${(viaOclif.cpu! - nodeStart.cpu).toFixed(0)} ms`,
    );
  }
  console.log(
    `ModelWriter: ${gb(total)} GB in ${(writeMs / 1000).toFixed(2)} s (${(total / writeMs / 1e6).toFixed(2)} GB/s); plain write + fsync of the same bytes: ${(plainMs / 1000).toFixed(2)} s (${(total / plainMs / 1e6).toFixed(2)} GB/s)`,
  );
} finally {
  fs.rmSync(tmp, { recursive: true, force: true });
}
