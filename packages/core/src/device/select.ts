/**
 * Picks the device a run computes on. `cpu` is the WASM SIMD worker pool
 * (the reference backend when asked for by `backend: 'reference'` or
 * WGIT_KERNELS=0); `gpu` fails loudly until a GPU backend is built in;
 * `auto` is `cpu`. A backend that cannot start is an error, never a silent
 * fallback to another one.
 */
import { WgitError } from '../errors.js';
import { checked } from './checked.js';
import type { Device } from './device.js';
import { referenceBackend } from './reference.js';
import { type KernelOptions, wasmBackend } from './wasm/pool.js';

export type DeviceKind = 'cpu' | 'gpu' | 'auto';
export type CpuBackend = 'wasm' | 'reference';

export interface DeviceOptions extends KernelOptions {
  /** Default 'auto'. */
  device?: DeviceKind;
  /** The CPU backend (default 'wasm'; env WGIT_KERNELS=0 selects 'reference'). */
  backend?: CpuBackend;
}

/** The plain TypeScript device (synchronous: it needs no module or workers). */
export function referenceDevice(): Device {
  return checked(referenceBackend);
}

/** The device for these options; one per configuration, shared by every caller. */
export async function getDevice(opts: DeviceOptions = {}): Promise<Device> {
  const kind = opts.device ?? 'auto';
  if (kind === 'gpu') {
    throw new WgitError('E_DEVICE_UNAVAILABLE', 'no GPU backend is available in this build; use --device cpu', {
      device: kind,
    });
  }
  if (kind !== 'cpu' && kind !== 'auto') {
    throw new WgitError('E_KERNEL_ARG', `device must be cpu, gpu or auto, got ${JSON.stringify(kind)}`, {
      device: kind,
    });
  }
  const backend = opts.backend ?? (process.env.WGIT_KERNELS === '0' ? 'reference' : 'wasm');
  if (backend === 'reference') return referenceDevice();
  if (backend !== 'wasm') {
    throw new WgitError('E_KERNEL_ARG', `CPU backend must be wasm or reference, got ${JSON.stringify(backend)}`, {
      backend,
    });
  }
  return checked(await wasmBackend({ threads: opts.threads, parallelMin: opts.parallelMin }));
}
