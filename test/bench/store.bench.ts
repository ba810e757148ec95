// Commit / checkout throughput and peak memory of the repository, against a
// plain file copy of the same model measured in the same run.
// Run: pnpm bench store   (WGIT_BENCH_MIB=N to change the model size, default 256)
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Repository } from '../../packages/store/src/index.js';
import { rng } from '../../packages/store/test/helpers.js';

process.env.WGIT_AUTHOR_DATE = '1700000000';
const MIB = Number(process.env.WGIT_BENCH_MIB ?? 256);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-bench-'));

/** Writes a bf16 model tensor by tensor, never holding more than one 4 MiB block. */
function writeModel(file: string, tensors: number, seed: number, base?: string): void {
  const per = Math.floor((MIB * 1048576) / tensors / 2);
  const header: Record<string, unknown> = {};
  for (let t = 0; t < tensors; t++)
    header[`layers.${t}.weight`] = { dtype: 'BF16', shape: [per], data_offsets: [t * per * 2, (t + 1) * per * 2] };
  let json = JSON.stringify(header);
  while ((8 + json.length) % 8) json += ' ';
  const fd = fs.openSync(file, 'w');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  fs.writeSync(fd, len);
  fs.writeSync(fd, json);
  const r = rng(seed);
  const block = Buffer.alloc(4 * 1048576);
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  const baseFd = base ? fs.openSync(base, 'r') : -1;
  let pos = 8 + json.length;
  for (let left = tensors * per * 2; left > 0; left -= block.length) {
    const n = Math.min(block.length, left);
    if (baseFd >= 0) {
      fs.readSync(baseFd, block, 0, n, pos);
      for (let i = 0; i < n; i += 2) if (r() < 0.1) block[i] ^= 1 + Math.floor(r() * 7);
    } else {
      for (let i = 0; i < n; i += 2) {
        f[0] = (r() + r() + r() - 1.5) * 0.04;
        block.writeUInt16LE(u[0] >>> 16, i);
      }
    }
    fs.writeSync(fd, block, 0, n);
    pos += n;
  }
  if (baseFd >= 0) fs.closeSync(baseFd);
  fs.closeSync(fd);
}

const rssMiB = () => process.resourceUsage().maxRSS / 1024;
const rows: [string, string, string, string][] = [];
function row(name: string, bytes: number, ms: number, note = '') {
  rows.push([name, `${(ms / 1000).toFixed(2)} s`, `${(bytes / 1048576 / (ms / 1000)).toFixed(0)} MiB/s`, note]);
}

const base = path.join(dir, 'base.safetensors');
const ft = path.join(dir, 'ft.safetensors');
writeModel(base, 16, 1);
writeModel(ft, 16, 2, base);
const size = fs.statSync(base).size;
global.gc?.();
const rss0 = rssMiB();

let t = performance.now();
fs.copyFileSync(base, path.join(dir, 'copy.safetensors'));
row('baseline: fs.copyFile', size, performance.now() - t);

const repo = await Repository.init(path.join(dir, 'repo'));
t = performance.now();
const c1 = await repo.commit({ path: base, message: 'base' });
row('commit base', size, performance.now() - t, `stored ${(c1.storedBytes / size).toFixed(3)} of raw`);
t = performance.now();
const c2 = await repo.commit({ path: ft, message: 'ft' });
row('commit fine-tune (deltas)', size, performance.now() - t, `new ${(c2.newBytes / size).toFixed(3)} of raw`);
t = performance.now();
await repo.checkout('main', path.join(dir, 'out'));
row('checkout fine-tune', size, performance.now() - t);
t = performance.now();
const f = await repo.fsck();
row('fsck (2 commits)', 2 * size, performance.now() - t, f.ok ? 'ok' : 'PROBLEMS');

console.log(`model: ${(size / 1048576).toFixed(0)} MiB bf16, 16 tensors, chunk 4 MiB, ${os.cpus().length} cores`);
console.log('| step | time | throughput | note |\n|---|---|---|---|');
for (const r of rows) console.log(`| ${r.join(' | ')} |`);
console.log(
  `peak RSS: ${rss0.toFixed(0)} MiB before the repository work, ${rssMiB().toFixed(0)} MiB after (model ${(size / 1048576).toFixed(0)} MiB)`,
);
fs.rmSync(dir, { recursive: true, force: true });
