import { CODEC_WASM_BASE64 } from './wasm-binary.js';

// The ES2023 lib and @types/node 20 leave WebAssembly undeclared; these are
// the few members used here.
interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: unknown };
  validate(bytes: Uint8Array): boolean;
}
const wasmApi = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

/** The regrouping kernels of assembly/codec.ts, bound to one private memory. */
export interface KernelExports {
  memory: WasmMemory;
  split2(src: number, d0: number, d1: number, n: number, rot: number): void;
  merge2(s0: number, s1: number, dst: number, n: number, rot: number): void;
  split4(src: number, d0: number, d1: number, d2: number, d3: number, n: number, rot: number): void;
  merge4(s0: number, s1: number, s2: number, s3: number, dst: number, n: number, rot: number): void;
  splitN(src: number, dst: number, stride: number, n: number, w: number): void;
  mergeN(src: number, stride: number, dst: number, n: number, w: number): void;
  xorBytes(a: number, b: number, dst: number, len: number): void;
  countZero(p: number, len: number): number;
}

const PAGE = 65536;
// The module's own data (none today) lives in page 0; scratch starts after it.
const SCRATCH_BASE = PAGE;

let kernels: KernelExports | null = null;
let bytes: Uint8Array = new Uint8Array(0);

/**
 * Scratch layout for one segment of `segBytes` raw bytes: the element bytes,
 * the regrouped streams, and the parent's bytes for XOR, 64-byte aligned.
 * Sized by the largest segment seen; segments are capped (format.ts), so
 * this stays a few MiB whatever chunk sizes callers use.
 */
export interface Scratch {
  k: KernelExports;
  mem: Uint8Array;
  data: number;
  streams: number;
  base: number;
}

function load(): KernelExports {
  if (kernels) return kernels;
  const module = new wasmApi.Module(Buffer.from(CODEC_WASM_BASE64, 'base64'));
  kernels = new wasmApi.Instance(module, {}).exports as KernelExports;
  bytes = new Uint8Array(kernels.memory.buffer);
  return kernels;
}

export function scratch(segBytes: number): Scratch {
  const k = load();
  const region = (segBytes + 63) & ~63;
  const need = SCRATCH_BASE + 3 * region;
  if (k.memory.buffer.byteLength < need) {
    k.memory.grow(Math.ceil((need - k.memory.buffer.byteLength) / PAGE));
  }
  // grow() detaches the old buffer, and a view made before it reads as empty
  if (bytes.buffer !== k.memory.buffer) bytes = new Uint8Array(k.memory.buffer);
  return { k, mem: bytes, data: SCRATCH_BASE, streams: SCRATCH_BASE + region, base: SCRATCH_BASE + 2 * region };
}

/** Regroups `n` elements of width `w` at `src` into w streams of n bytes at `dst`, `dst + n`, …. */
export function split(s: Scratch, src: number, dst: number, n: number, w: number, rot: boolean): void {
  if (w === 2) s.k.split2(src, dst, dst + n, n, rot ? 1 : 0);
  else if (w === 4) s.k.split4(src, dst, dst + n, dst + 2 * n, dst + 3 * n, n, rot ? 1 : 0);
  else if (w === 1) s.mem.copyWithin(dst, src, src + n);
  else s.k.splitN(src, dst, n, n, w);
}

export function merge(s: Scratch, src: number, dst: number, n: number, w: number, rot: boolean): void {
  if (w === 2) s.k.merge2(src, src + n, dst, n, rot ? 1 : 0);
  else if (w === 4) s.k.merge4(src, src + n, src + 2 * n, src + 3 * n, dst, n, rot ? 1 : 0);
  else if (w === 1) s.mem.copyWithin(dst, src, src + n);
  else s.k.mergeN(src, n, dst, n, w);
}
