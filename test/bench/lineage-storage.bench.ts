// Bytes wgit stores for a model lineage, against (a) raw copies, (b) zstd -3
// of each file, (b') zstd -3 --patch-from the model committed before (the
// delta-aware baseline), (c) 64 KB content-defined-chunking dedupe across the
// lineage, each unique chunk compressed with zstd -3 (a Xet-style chunk store;
// the uncompressed unique bytes are printed too),
// (d) the wgit codec without deltas, twice: as payload bytes alone (every
// 4 MiB chunk encoded alone, identical chunks stored once) and as the same
// repository with deltas switched off (maxDeltaDepth 0), which pays the same
// per-tensor metadata as wgit and is the comparison "beats all" uses.
// wgit = a real repository: init, then commit each model in order on one
// branch, then the bytes of every file under .wgit.
//   pnpm bench lineage-storage      (LINEAGE_LAYERS=2 for a quicker run)
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { openModel } from '../../packages/core/src/index.js';
import { encodeChunk } from '../../packages/store/src/codec/index.js';
import { CdcDedupe } from './fixtures/cdc.js';
import { DEFAULT_LINEAGE, ensureLineage } from './fixtures/lineage.js';
import { ensureRealWeights } from './fixtures/real-weights.js';
import { hasCommand, machineLine, table, treeBytes } from './fixtures/synthetic.js';

const CHUNK = 4 << 20;

interface Lineage {
  name: string;
  files: string[];
}

function rawBytes(files: string[]): number {
  return files.reduce((t, f) => t + statSync(f).size, 0);
}

function zstdBytes(files: string[], dir: string): number {
  if (!hasCommand('zstd')) return Number.NaN;
  let total = 0;
  for (const f of files) {
    const out = join(dir, `${basename(f)}.zst`);
    execFileSync('zstd', ['-3', '-T0', '-q', '-f', f, '-o', out]);
    total += statSync(out).size;
    rmSync(out);
  }
  return total;
}

/** `zstd -3` of the first model, then each model as `zstd -3 --patch-from=` the one committed before it. */
function zstdPatchBytes(files: string[], dir: string): number {
  if (!hasCommand('zstd')) return Number.NaN;
  let total = 0;
  files.forEach((f, i) => {
    const out = join(dir, `${basename(f)}.patch.zst`);
    const args = ['-3', '-T0', '-q', '-f', f, '-o', out];
    // --patch-from needs a window covering the parent: --long sized to the larger of the two files.
    if (i > 0) {
      const size = Math.max(statSync(f).size, statSync(files[i - 1]).size);
      args.unshift(`--patch-from=${files[i - 1]}`, `--long=${Math.max(10, Math.min(31, Math.ceil(Math.log2(size))))}`);
    }
    execFileSync('zstd', args, { maxBuffer: 1 << 20 });
    total += statSync(out).size;
    rmSync(out);
  });
  return total;
}

/** zstd -3 of one chunk (zstd-napi, the store's own binding): the compressed size. */
const zstd3 = (() => {
  interface Binding {
    CCtx: new () => {
      setParameter(p: number, v: number): void;
      compress2(dst: Uint8Array, src: Uint8Array): number;
    };
    CParameter: { compressionLevel: number };
    compressBound(n: number): number;
  }
  const zstd = createRequire(new URL('../../packages/store/package.json', import.meta.url))(
    'zstd-napi/binding.js',
  ) as Binding;
  const c = new zstd.CCtx();
  c.setParameter(zstd.CParameter.compressionLevel, 3);
  let dst = new Uint8Array(0);
  return (chunk: Uint8Array): number => {
    const bound = zstd.compressBound(chunk.length);
    if (dst.length < bound) dst = new Uint8Array(bound);
    return c.compress2(dst, chunk);
  };
})();

function cdcBytes(files: string[]): { bytes: number; zstdBytes: number; avgChunk: number } {
  const d = new CdcDedupe(zstd3);
  for (const f of files) d.add(readFileSync(f));
  return { bytes: d.uniqueBytes, zstdBytes: d.compressedBytes, avgChunk: d.totalBytes / d.chunks };
}

/** Codec alone: each tensor cut at 4 MiB like the repository, encoded without a base; identical raw chunks counted once. */
async function codecNoDeltaBytes(files: string[]): Promise<number> {
  const seen = new Set<string>();
  let total = 0;
  for (const f of files) {
    const m = await openModel(f);
    total += m.shards.reduce((t, s) => t + s.dataStart, 0); // headers, kept as they are
    for (const t of m.tensors) {
      const data = await m.readTensor(t.name);
      for (let o = 0; o < data.length; o += CHUNK) {
        const c = data.subarray(o, Math.min(data.length, o + CHUNK));
        const id = createHash('sha256').update(c).digest('base64');
        if (seen.has(id)) continue;
        seen.add(id);
        total += encodeChunk(c, t.dtype).payload.length;
      }
    }
    await m.close();
  }
  return total;
}

async function wgitBytes(
  files: string[],
  dir: string,
  maxDeltaDepth?: number,
): Promise<{ bytes: number; seconds: number } | string> {
  let store: typeof import('../../packages/store/src/index.js');
  try {
    store = await import('../../packages/store/src/index.js');
  } catch (e) {
    return `repository unavailable: ${(e as Error).message.split('\n')[0]}`;
  }
  const root = join(dir, 'repo');
  const t = process.hrtime.bigint();
  const repo = await store.Repository.init(root, maxDeltaDepth === undefined ? {} : { maxDeltaDepth });
  for (const f of files) await repo.commit({ path: f, message: basename(f) });
  const seconds = Number(process.hrtime.bigint() - t) / 1e9;
  const bytes = treeBytes(join(root, '.wgit'));
  rmSync(root, { recursive: true, force: true });
  return { bytes, seconds };
}

async function main(): Promise<void> {
  console.log(machineLine());
  const layers = Number(process.env.LINEAGE_LAYERS ?? DEFAULT_LINEAGE.layers);
  const lineages: Lineage[] = [
    {
      name: `synthetic llama-like bf16, base + ${DEFAULT_LINEAGE.fineTunes} fine-tunes (${layers} layers)`,
      files: await ensureLineage({ ...DEFAULT_LINEAGE, layers }),
    },
  ];
  const real = await ensureRealWeights();
  if (real) lineages.push(...real.lineages);
  else console.log('real weights unavailable (npm packages could not be fetched): real lineages skipped');

  const rows: (string | number)[][] = [
    [
      'lineage',
      'models',
      'raw MB',
      'wgit MB',
      'vs raw',
      'vs zstd -3',
      'vs zstd patch-from',
      'vs CDC 64K + zstd',
      'vs codec no delta',
      'vs repo no delta',
      'beats all',
      'zstd MB',
      'zstd patch MB',
      'CDC + zstd MB',
      'CDC raw MB',
      'codec MB',
      'repo no delta MB',
      'commit s',
    ],
  ];
  const notes: string[] = [];
  for (const l of lineages) {
    const dir = mkdtempSync(join(tmpdir(), 'wgit-bench-'));
    try {
      const raw = rawBytes(l.files);
      const z = zstdBytes(l.files, dir);
      const zp = zstdPatchBytes(l.files, dir);
      const cdc = cdcBytes(l.files);
      const codec = await codecNoDeltaBytes(l.files);
      const w = await wgitBytes(l.files, dir);
      // The same repository with deltas switched off: the codec alone, paying the same metadata as wgit.
      const noDelta = await wgitBytes(l.files, dir, 0);
      const nd = typeof noDelta === 'string' ? Number.NaN : noDelta.bytes;
      if (typeof w === 'string') {
        notes.push(`${l.name}: ${w}`);
        rows.push([
          l.name,
          l.files.length,
          raw / 1e6,
          '-',
          '-',
          '-',
          '-',
          '-',
          '-',
          '-',
          '-',
          z / 1e6,
          zp / 1e6,
          cdc.zstdBytes / 1e6,
          cdc.bytes / 1e6,
          codec / 1e6,
          '-',
          '-',
        ]);
      } else {
        const beats = w.bytes < raw && w.bytes < z && w.bytes < zp && w.bytes < cdc.zstdBytes && w.bytes < nd;
        rows.push([
          l.name,
          l.files.length,
          raw / 1e6,
          w.bytes / 1e6,
          raw / w.bytes,
          z / w.bytes,
          zp / w.bytes,
          cdc.zstdBytes / w.bytes,
          codec / w.bytes,
          nd / w.bytes,
          beats ? 'yes' : 'NO',
          z / 1e6,
          zp / 1e6,
          cdc.zstdBytes / 1e6,
          cdc.bytes / 1e6,
          codec / 1e6,
          nd / 1e6,
          w.seconds,
        ]);
      }
      notes.push(`${l.name}: CDC average chunk ${(cdc.avgChunk / 1024).toFixed(1)} KiB`);
      console.error(`done: ${l.name}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  console.log('"vs X" = bytes of X / bytes wgit stored (higher is better for wgit); wgit MB = every file under .wgit');
  console.log(table(rows));
  for (const n of notes) console.log(n);
}

await main();
