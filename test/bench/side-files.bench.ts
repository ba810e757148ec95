// Peak memory (max RSS) and time of committing and checking out a model
// folder with one large side file (default 2 GiB, SIDE_GB to change), through
// the CLI, against baselines on the same file in the same run: reading it
// whole into memory (what a git blob of it costs) and `zstd -1`.
//   pnpm bench side-files
import { execFileSync, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { writeSafetensors } from '../../packages/core/src/index.js';
import { BENCH_DIR } from './fixtures/real-weights.js';
import { hasCommand, machineLine, Rng, table } from './fixtures/synthetic.js';

const ROOT = new URL('../..', import.meta.url).pathname;
const BIN = join(ROOT, 'packages', 'cli', 'bin', 'run.js');
const GB = Number(process.env.SIDE_GB ?? 2);
const bytes = Math.round(GB * 2 ** 30);

if (!existsSync(join(ROOT, 'packages', 'cli', 'dist'))) throw new Error('run pnpm build first');
mkdirSync(BENCH_DIR, { recursive: true });
const dir = mkdtempSync(join(BENCH_DIR, 'wgit-side-bench-'));
try {
  const model = join(dir, 'model');
  execFileSync('mkdir', ['-p', model]);
  await writeSafetensors(join(model, 'model.safetensors'), [
    { name: 'w', dtype: 'F32', shape: [256, 256], data: new Uint8Array(256 * 256 * 4) },
  ]);
  // A side file that compresses somewhat (a consolidated checkpoint or an archive would be
  // harder, a tokenizer easier): random bytes over a 64-symbol alphabet.
  const rng = new Rng(5);
  const seed = Buffer.alloc(16 << 20);
  for (let i = 0; i < seed.length; i++) seed[i] = (rng.uniform() * 64) | 0;
  const block = Buffer.alloc(seed.length);
  const fd = openSync(join(model, 'consolidated.bin'), 'w');
  for (let done = 0, k = 0; done < bytes; done += block.length, k++) {
    // Each block differs from the others, so nothing deduplicates.
    for (let i = 0; i < block.length; i++) block[i] = 48 + ((seed[i] + k * 7 + (i >> 12)) & 63);
    writeSync(fd, block, 0, Math.min(block.length, bytes - done));
  }
  closeSync(fd);

  /** Runs a command under GNU time: seconds and max RSS in MiB. */
  const measure = (cmd: string[], cwd = dir): { s: number; rssMiB: number } => {
    const r = spawnSync('/usr/bin/time', ['-f', '%e %M', ...cmd], { cwd, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`${cmd.join(' ')}: ${r.stderr}`);
    const [s, kb] = r.stderr.trim().split('\n').pop()!.split(' ').map(Number);
    return { s, rssMiB: kb / 1024 };
  };
  const file = join(model, 'consolidated.bin');
  const rows: (string | number)[][] = [['operation', 'seconds', 'max RSS MiB']];
  // readFileSync refuses files over 2 GiB: read into one array piece by piece, as a whole-blob store must hold it.
  const readWholeJs = `const fs = require('fs'); const fd = fs.openSync(${JSON.stringify(file)}, 'r');
const buf = new Uint8Array(fs.fstatSync(fd).size);
for (let off = 0; off < buf.length; ) off += fs.readSync(fd, buf, off, Math.min(1 << 30, buf.length - off), off);`;
  const readWhole = measure([process.execPath, '-e', readWholeJs]);
  rows.push(['baseline: read the file whole into one array (node)', readWhole.s, readWhole.rssMiB]);
  let zstdS: number | undefined;
  if (hasCommand('zstd')) {
    const z = measure(['zstd', '-1', '-q', '-f', '-T1', file, '-o', join(dir, 'c.zst')]);
    rows.push(['baseline: zstd -1 of the file', z.s, z.rssMiB]);
    zstdS = z.s;
  }
  const repo = join(dir, 'repo');
  execFileSync(process.execPath, [BIN, 'init', repo]);
  const commit = measure([process.execPath, BIN, 'commit', model, '-m', 'big side file', '--json'], repo);
  rows.push(['wgit commit (folder with the side file)', commit.s, commit.rssMiB]);
  const checkout = measure([process.execPath, BIN, 'checkout', 'HEAD', '--out', join(dir, 'out'), '--json'], repo);
  rows.push(['wgit checkout', checkout.s, checkout.rssMiB]);
  const same = spawnSync('cmp', [file, join(dir, 'out', 'consolidated.bin')]).status === 0;
  console.log(machineLine());
  console.log(`side file: ${GB} GiB; checkout byte-identical: ${same}`);
  console.log(table(rows));
  console.log(
    `commit RSS / read-whole RSS: ${(commit.rssMiB / readWhole.rssMiB).toFixed(3)}; commit time / zstd -1 time: ${(commit.s / (zstdS ?? Number.NaN)).toFixed(2)}`,
  );
} finally {
  rmSync(dir, { recursive: true, force: true });
}
