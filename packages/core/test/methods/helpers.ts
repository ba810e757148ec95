// Test helpers: tiny models written with core's writer into temp folders,
// and independent bf16 encode/decode (bit tricks, not the code under test).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { type DType, openModel, writeSafetensors } from '../../src/index.js';

export function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-'));
}

const f = new Float32Array(1);
const u = new Uint32Array(f.buffer);

export function bf16Round(x: number): number {
  f[0] = x;
  const b = u[0];
  const r = (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
  u[0] = (r << 16) >>> 0;
  return f[0];
}

export function encode(values: ArrayLike<number>, dtype: DType): Uint8Array {
  if (dtype === 'F32') return new Uint8Array(Float32Array.from(values).buffer);
  if (dtype === 'BF16') {
    const out = new Uint16Array(values.length);
    for (let i = 0; i < values.length; i++) {
      f[0] = values[i];
      const b = u[0];
      out[i] = (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
    }
    return new Uint8Array(out.buffer);
  }
  if (dtype === 'I64') {
    const out = new BigInt64Array(values.length);
    for (let i = 0; i < values.length; i++) out[i] = BigInt(values[i]);
    return new Uint8Array(out.buffer);
  }
  throw new Error(`encode: ${dtype}`);
}

export function decode(bytes: Uint8Array, dtype: DType): Float32Array {
  const copy = bytes.slice();
  if (dtype === 'F32') return new Float32Array(copy.buffer);
  if (dtype === 'BF16') {
    const h = new Uint16Array(copy.buffer);
    const out = new Float32Array(h.length);
    const v = new Uint32Array(out.buffer);
    for (let i = 0; i < h.length; i++) v[i] = h[i] << 16;
    return out;
  }
  throw new Error(`decode: ${dtype}`);
}

export interface T {
  name: string;
  dtype: DType;
  shape: number[];
  values: number[] | Float32Array;
}

/** Writes a model folder (model.safetensors + config.json) and returns its path. */
export async function writeModel(
  dir: string,
  tensors: T[],
  sideFiles: Record<string, string> = { 'config.json': '{"model_type":"toy"}' },
  metadata: Record<string, string> | null = null,
): Promise<string> {
  fs.mkdirSync(dir, { recursive: true });
  await writeSafetensors(
    path.join(dir, 'model.safetensors'),
    tensors.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, data: encode(t.values, t.dtype) })),
    metadata,
  );
  for (const [rel, text] of Object.entries(sideFiles)) {
    fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
    fs.writeFileSync(path.join(dir, rel), text);
  }
  return dir;
}

/** Deterministic normal-ish numbers (sum of uniforms from a small LCG). */
export function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  const uni = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
  return () => (uni() + uni() + uni() + uni() - 2) * 1.7;
}

export function randomValues(n: number, r: () => number, scale = 1): number[] {
  return Array.from({ length: n }, () => r() * scale);
}

/** Reads every tensor of a model as raw bytes, by name. */
export async function readAll(p: string): Promise<Map<string, { dtype: DType; shape: number[]; bytes: Uint8Array }>> {
  const m = await openModel(p);
  const out = new Map<string, { dtype: DType; shape: number[]; bytes: Uint8Array }>();
  for (const t of m.tensors) out.set(t.name, { dtype: t.dtype, shape: t.shape, bytes: await m.readTensor(t.name) });
  await m.close();
  return out;
}

/** A Llama-shaped toy: 3 blocks, embeddings, a head, a norm and an integer buffer. */
export function llamaToy(r: () => number, dtype: DType = 'BF16', scale = 0.02): T[] {
  const ts: T[] = [{ name: 'model.embed_tokens.weight', dtype, shape: [8, 4], values: randomValues(32, r, scale) }];
  for (let l = 0; l < 3; l++) {
    ts.push({
      name: `model.layers.${l}.self_attn.q_proj.weight`,
      dtype,
      shape: [4, 4],
      values: randomValues(16, r, scale),
    });
    ts.push({ name: `model.layers.${l}.mlp.up_proj.weight`, dtype, shape: [6, 4], values: randomValues(24, r, scale) });
    ts.push({
      name: `model.layers.${l}.input_layernorm.weight`,
      dtype,
      shape: [4],
      values: randomValues(4, r, scale).map((x) => 1 + x),
    });
  }
  ts.push({ name: 'model.norm.weight', dtype, shape: [4], values: randomValues(4, r, scale).map((x) => 1 + x) });
  ts.push({ name: 'lm_head.weight', dtype, shape: [8, 4], values: randomValues(32, r, scale) });
  ts.push({ name: 'model.step', dtype: 'I64', shape: [1], values: [7] });
  return ts;
}

/** The same model with each float tensor perturbed (a "fine-tune"). */
export function perturb(ts: T[], r: () => number, scale: number): T[] {
  return ts.map((t) =>
    t.dtype === 'I64'
      ? { ...t, values: [Number(t.values[0]) + 1] }
      : { ...t, values: Array.from(t.values, (v) => v + r() * scale) },
  );
}
