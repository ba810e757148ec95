import * as fs from 'node:fs';
import * as path from 'node:path';

/** Deterministic PRNG (mulberry32) so test models are the same on every run. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** bf16 weights ~ N(0, 0.02)-ish, as truncated f32 bits. */
export function bf16Weights(count: number, seed: number): Uint8Array {
  const r = rng(seed);
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  const out = new Uint8Array(count * 2);
  for (let i = 0; i < count; i++) {
    f[0] = (r() + r() + r() - 1.5) * 0.04;
    const bits = u[0] >>> 16;
    out[2 * i] = bits & 0xff;
    out[2 * i + 1] = bits >>> 8;
  }
  return out;
}

/** A fine-tune: nudges the low mantissa bits of a fraction of the bf16 values. */
export function fineTune(base: Uint8Array, fraction: number, seed: number): Uint8Array {
  const r = rng(seed);
  const out = new Uint8Array(base);
  for (let i = 0; i < out.length; i += 2) if (r() < fraction) out[i] ^= 1 + Math.floor(r() * 7);
  return out;
}

export interface RawTensor {
  name: string;
  dtype: string;
  shape: number[];
  data: Uint8Array;
}

/**
 * Builds a safetensors file by hand (independently of core's writer): data
 * laid out in `order` (default: reversed), header keys in the given order,
 * JSON padded with spaces to a multiple of 8 as the reference writer does.
 */
export function buildSafetensors(
  tensors: RawTensor[],
  opts: { metadata?: Record<string, string>; order?: number[] } = {},
): Uint8Array {
  const order = opts.order ?? tensors.map((_, i) => tensors.length - 1 - i);
  const offsets = new Map<number, [number, number]>();
  let pos = 0;
  for (const i of order) {
    offsets.set(i, [pos, pos + tensors[i].data.length]);
    pos += tensors[i].data.length;
  }
  const parts: string[] = [];
  if (opts.metadata) parts.push(`"__metadata__":${JSON.stringify(opts.metadata)}`);
  tensors.forEach((t, i) => {
    parts.push(
      `${JSON.stringify(t.name)}:{"dtype":"${t.dtype}","shape":[${t.shape.join(',')}],"data_offsets":[${offsets.get(i)!.join(',')}]}`,
    );
  });
  let json = `{${parts.join(',')}}`;
  while ((8 + Buffer.byteLength(json)) % 8 !== 0) json += ' ';
  const jb = Buffer.from(json);
  const out = Buffer.alloc(8 + jb.length + pos);
  out.writeBigUInt64LE(BigInt(jb.length), 0);
  jb.copy(out, 8);
  for (const i of order) Buffer.from(tensors[i].data).copy(out, 8 + jb.length + offsets.get(i)![0]);
  return out;
}

/** A transformers-style sharded folder: shards, model.safetensors.index.json, side files. */
export function writeShardedFolder(dir: string, shards: RawTensor[][], side: Record<string, string>): void {
  fs.mkdirSync(dir, { recursive: true });
  const weightMap: Record<string, string> = {};
  let total = 0;
  shards.forEach((ts, i) => {
    const file = `model-${String(i + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`;
    fs.writeFileSync(path.join(dir, file), buildSafetensors(ts, { metadata: { format: 'pt' } }));
    for (const t of ts) {
      weightMap[t.name] = file;
      total += t.data.length;
    }
  });
  fs.writeFileSync(
    path.join(dir, 'model.safetensors.index.json'),
    JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2),
  );
  for (const [rel, text] of Object.entries(side)) {
    fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
    fs.writeFileSync(path.join(dir, rel), text);
  }
}

/** Every file under a folder → its bytes, keyed by relative POSIX path. */
export function readTreeFiles(dir: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  const walk = (d: string, rel: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p, `${rel}${e.name}/`);
      else out.set(`${rel}${e.name}`, fs.readFileSync(p));
    }
  };
  walk(dir, '');
  return out;
}

/** The error code a promise rejects with, or 'no error'. */
export async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
  } catch (e) {
    return (e as { code?: string }).code;
  }
  return 'no error';
}

/** Sets environment variables (undefined: unset); the returned function restores them. */
export function withEnv(vars: Record<string, string | undefined>): () => void {
  const old = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  for (const [k, v] of Object.entries(vars)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  return () => {
    for (const [k, v] of Object.entries(old)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  };
}
