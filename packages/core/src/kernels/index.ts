export { ARENA_ALIGN } from './arena.js';
export { getKernels, type KernelOptions, type Kernels } from './pool.js';
export type { KernelDType } from './reference.js';
export * as reference from './reference.js';
export { dareCut, dareHash, dareKeys, dareScale, fmix32, streamId } from './rng.js';
export type { WasmMemory } from './wasm.js';
