// Weight codec: compression ratio and single-core encode/decode throughput on
// real f16 weights, bf16 derived from them, a 256 MB synthetic bf16 set, and
// a real retrain pair (XOR delta), against zstd -3 (in process and the CLI)
// on the same bytes in the same run.
//   pnpm bench codec          (CODEC_BENCH_MB=64 for a quicker synthetic set)
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type DType, dtypeSize, openModel } from '../../packages/core/src/index.js';
import { decodeChunk, type EncodedChunk, encodeChunk } from '../../packages/store/src/codec/index.js';
import { ensureRealWeights } from './fixtures/real-weights.js';
import { bestOf, bytesOf, hasCommand, machineLine, normalBf16, Rng, table } from './fixtures/synthetic.js';

// zstd-napi is a dependency of the store package, not of the workspace root
const zstd = createRequire(new URL('../../packages/store/package.json', import.meta.url))(
  'zstd-napi/binding.js',
) as typeof import('../../packages/store/node_modules/zstd-napi/binding.js');

const CHUNK = 4 << 20; // the repository's default chunk size
// Best of RUNS; small sets get more runs because their first passes are spent warming the JIT.
const runsFor = (bytes: number) => (bytes < 64e6 ? 8 : 3);

interface DataSet {
  name: string;
  dtype: DType;
  chunks: Uint8Array[];
  bases?: Uint8Array[];
}

function total(chunks: Uint8Array[]): number {
  return chunks.reduce((t, c) => t + c.length, 0);
}

/** Splits a tensor at CHUNK multiples, as the repository does. */
function chunksOf(data: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let o = 0; o < data.length; o += CHUNK) out.push(data.slice(o, Math.min(data.length, o + CHUNK)));
  return out;
}

async function loadFloatTensors(files: string[], dtype: DType): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for (const f of files) {
    const m = await openModel(f);
    for (const t of m.tensors) if (t.dtype === dtype) out.push(...chunksOf(await m.readTensor(t.name)));
    await m.close();
  }
  return out;
}

/** Pairs each tensor of `file` with the same-named, same-sized tensor of `baseFile`. */
async function loadPair(
  baseFile: string,
  file: string,
  dtype: DType,
): Promise<{ chunks: Uint8Array[]; bases: Uint8Array[] }> {
  const a = await openModel(baseFile);
  const b = await openModel(file);
  const chunks: Uint8Array[] = [];
  const bases: Uint8Array[] = [];
  for (const t of b.tensors) {
    const at = a.tensors.find((x) => x.name === t.name);
    if (t.dtype !== dtype || !at || at.dtype !== t.dtype || at.byteLength !== t.byteLength) continue;
    chunks.push(...chunksOf(await b.readTensor(t.name)));
    bases.push(...chunksOf(await a.readTensor(t.name)));
  }
  await a.close();
  await b.close();
  return { chunks, bases };
}

/** Order-0 entropy bound of the codec's byte streams, chunk by chunk (what a per-chunk Huffman code can reach at best). */
function entropyBound(set: DataSet): number {
  const w = dtypeSize(set.dtype);
  let bits = 0;
  let bytes = 0;
  for (let c = 0; c < set.chunks.length; c++) {
    const chunk = set.chunks[c];
    const base = set.bases?.[c];
    const n = Math.floor(chunk.length / w);
    const counts = Array.from({ length: w }, () => new Float64Array(256));
    for (let i = 0; i < n; i++) {
      let x = 0;
      for (let k = w - 1; k >= 0; k--) x = x * 256 + (chunk[i * w + k] ^ (base ? base[i * w + k] : 0));
      if (set.dtype === 'BF16') x = ((x << 1) | (x >>> 15)) & 0xffff;
      for (let k = 0; k < w; k++) counts[k][Math.floor(x / 256 ** k) & 0xff]++;
    }
    for (const h of counts) for (const v of h) if (v) bits -= v * Math.log2(v / n);
    bytes += chunk.length;
  }
  return (8 * bytes) / bits;
}

interface Result {
  ratio: number;
  enc: number;
  dec: number;
  encInto?: number;
  decInto?: number;
}

function runCodec(set: DataSet): Result {
  const bytes = total(set.chunks);
  const RUNS = runsFor(bytes);
  let encoded: EncodedChunk[] = [];
  const enc = bestOf(RUNS, () => {
    encoded = set.chunks.map((c, i) => encodeChunk(c, set.dtype, set.bases?.[i]));
  });
  const out = new Uint8Array(CHUNK);
  const encInto = bestOf(RUNS, () => {
    for (let i = 0; i < set.chunks.length; i++) encodeChunk(set.chunks[i], set.dtype, set.bases?.[i], { into: out });
  });
  const baseOf = (i: number) => (encoded[i].encoding === 'xor-zipnn' ? set.bases?.[i] : undefined);
  for (let i = 0; i < encoded.length; i++) {
    const back = decodeChunk(encoded[i], set.dtype, set.chunks[i].length, baseOf(i));
    if (!Buffer.from(back).equals(Buffer.from(set.chunks[i])))
      throw new Error(`${set.name}: chunk ${i} does not round-trip`);
  }
  const dec = bestOf(RUNS, () => {
    for (let i = 0; i < encoded.length; i++) decodeChunk(encoded[i], set.dtype, set.chunks[i].length, baseOf(i));
  });
  const into = new Uint8Array(CHUNK);
  const decInto = bestOf(RUNS, () => {
    for (let i = 0; i < encoded.length; i++) {
      const n = set.chunks[i].length;
      decodeChunk(encoded[i], set.dtype, n, baseOf(i), into.subarray(0, n));
    }
  });
  const stored = encoded.reduce((t, e) => t + e.payload.length, 0);
  return {
    ratio: bytes / stored,
    enc: bytes / enc / 1e9,
    dec: bytes / dec / 1e9,
    encInto: bytes / encInto / 1e9,
    decInto: bytes / decInto / 1e9,
  };
}

function runZstdNapi(set: DataSet): Result {
  const bytes = total(set.chunks);
  const RUNS = runsFor(bytes);
  const cctx = new zstd.CCtx();
  const dctx = new zstd.DCtx();
  const dst = new Uint8Array(zstd.compressBound(CHUNK));
  let frames: Uint8Array[] = [];
  const enc = bestOf(RUNS, () => {
    frames = set.chunks.map((c) => dst.slice(0, cctx.compress(dst, c, 3)));
  });
  const out = new Uint8Array(CHUNK);
  const dec = bestOf(RUNS, () => {
    for (const f of frames) dctx.decompress(out, f);
  });
  return { ratio: bytes / frames.reduce((t, f) => t + f.length, 0), enc: bytes / enc / 1e9, dec: bytes / dec / 1e9 };
}

function runZstdCli(set: DataSet, dir: string): Result | null {
  if (!hasCommand('zstd')) return null;
  const bytes = total(set.chunks);
  const RUNS = runsFor(bytes);
  const file = join(dir, 'set.bin');
  writeFileSync(file, Buffer.concat(set.chunks));
  const enc = bestOf(RUNS, () => execFileSync('zstd', ['-3', '-T1', '-q', '-f', file, '-o', `${file}.zst`]));
  const size = statSync(`${file}.zst`).size;
  const dec = bestOf(RUNS, () =>
    execFileSync('zstd', ['-d', '-T1', '-q', '-c', `${file}.zst`], { stdio: ['ignore', 'ignore', 'inherit'] }),
  );
  rmSync(file);
  rmSync(`${file}.zst`);
  return { ratio: bytes / size, enc: bytes / enc / 1e9, dec: bytes / dec / 1e9 };
}

async function main(): Promise<void> {
  console.log(machineLine());
  const sets: DataSet[] = [];
  const real = await ensureRealWeights();
  if (real) {
    sets.push({
      name: 'real f16 (mediapipe pose lite+full+heavy)',
      dtype: 'F16',
      chunks: await loadFloatTensors(real.f16, 'F16'),
    });
    sets.push({
      name: 'real bf16 (same weights, f16->bf16 RNE)',
      dtype: 'BF16',
      chunks: await loadFloatTensors(real.bf16, 'BF16'),
    });
    const heavy = real.lineages.find((l) => l.name.includes('heavy'));
    if (heavy) {
      const pair = await loadPair(heavy.files[1], heavy.files[2], 'F16');
      sets.push({ name: 'real f16 retrain pair, with base (pose heavy 0.4->0.5)', dtype: 'F16', ...pair });
    }
  } else {
    console.log('real weights unavailable (npm packages could not be fetched): real-weight rows skipped');
  }
  const mb = Number(process.env.CODEC_BENCH_MB ?? 256);
  const rng = new Rng(42);
  const synthetic: Uint8Array[] = [];
  for (let done = 0; done < mb << 20; done += CHUNK) synthetic.push(bytesOf(normalBf16(CHUNK / 2, 0.02, rng)));
  sets.push({ name: `synthetic bf16 normal(0,0.02), ${mb} MB`, dtype: 'BF16', chunks: synthetic });

  const dir = mkdtempSync(join(tmpdir(), 'wgit-bench-'));
  const rows: (string | number)[][] = [
    [
      'data set',
      'MB',
      'entropy bound',
      'wgit ratio',
      'enc GB/s',
      'enc into',
      'dec GB/s',
      'dec into',
      'zstd-napi -3 ratio',
      'enc',
      'dec',
      'zstd CLI -3 ratio',
      'enc',
      'dec',
    ],
  ];
  try {
    for (const set of sets) {
      const ours = runCodec(set);
      const napi = runZstdNapi(set);
      const cli = runZstdCli(set, dir);
      rows.push([
        set.name,
        total(set.chunks) / 1e6,
        entropyBound(set),
        ours.ratio,
        ours.enc,
        ours.encInto ?? Number.NaN,
        ours.dec,
        ours.decInto ?? Number.NaN,
        napi.ratio,
        napi.enc,
        napi.dec,
        cli?.ratio ?? Number.NaN,
        cli?.enc ?? Number.NaN,
        cli?.dec ?? Number.NaN,
      ]);
      console.error(`done: ${set.name}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  console.log(
    'single thread, 4 MiB chunks; ratio = raw / stored; "enc"/"dec" return a fresh buffer per chunk (all kept),\n' +
      '"enc into"/"dec into" reuse one caller buffer (the into option), which skips fresh-page faults;\n' +
      'entropy bound = raw bits / order-0 entropy of the byte streams per chunk; zstd CLI timings include process start',
  );
  console.log(table(rows));
}

await main();
