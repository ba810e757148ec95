// The compiler setup has no DOM lib and @types/node 20 does not declare the
// WebAssembly global, so the few pieces used here are typed locally.

export interface WasmMemory {
  readonly buffer: ArrayBufferLike;
  grow(pages: number): number;
}

// biome-ignore lint/suspicious/noEmptyInterface: an opaque handle
export interface WasmModule {}

interface WasmApi {
  Memory: new (d: { initial: number; maximum?: number; shared?: boolean }) => WasmMemory;
  Module: new (bytes: Uint8Array) => WasmModule;
  Instance: new (m: WasmModule, imports: object) => { exports: Record<string, unknown> };
}

export const wasm: WasmApi = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;
