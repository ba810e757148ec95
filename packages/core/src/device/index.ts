export { AbsSelector } from './abs-selector.js';
export { checked } from './checked.js';
export type {
  Backend,
  BufferDType,
  Device,
  DeviceBuffer,
  DiffSums,
  HostView,
  KernelDType,
  KernelSet,
  TransferSums,
} from './device.js';
export { TRANSFER_BLOCK } from './device.js';
export * as reference from './reference.js';
export { dareCut, dareHash, dareKeys, dareScale, fmix32, streamId } from './rng.js';
export {
  type AutoChoice,
  autoChoice,
  type CpuBackend,
  type DeviceKind,
  type DeviceOptions,
  deviceDefault,
  getDevice,
  probeGpu,
  referenceDevice,
  softwareAllowed,
} from './select.js';
export { ARENA_ALIGN } from './wasm/arena.js';
export type { KernelOptions } from './wasm/pool.js';
export type { WasmMemory } from './wasm/wasm.js';
export { WebGpuBackend, type WebGpuOptions, webgpuBackend } from './webgpu/index.js';
export type { AdapterReport, GpuMissing, GpuProbe } from './webgpu/probe.js';
export { residentMap } from './webgpu/resident.js';
