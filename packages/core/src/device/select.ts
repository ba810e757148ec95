/**
 * Picks the device a run computes on. `cpu` is the WASM SIMD worker pool
 * (the reference backend when asked for by `backend: 'reference'` or
 * WGIT_KERNELS=0); `gpu` is the WebGPU backend on the best adapter Dawn
 * finds, software adapters (lavapipe) included, or E_DEVICE_UNAVAILABLE
 * naming what is missing; `auto` takes a hardware GPU adapter when there is
 * one (a software adapter only with WGIT_GPU_ALLOW_SOFTWARE=1) and the CPU
 * otherwise, with a one-line notice. A backend that cannot start is an
 * error, never a silent fallback to another one.
 */
import { WgitError } from '../errors.js';
import { checked } from './checked.js';
import type { Device } from './device.js';
import { referenceBackend } from './reference.js';
import { type KernelOptions, wasmBackend } from './wasm/pool.js';
import type { GpuProbe } from './webgpu/probe.js';

export type DeviceKind = 'cpu' | 'gpu' | 'auto';
export type CpuBackend = 'wasm' | 'reference';

export interface DeviceOptions extends KernelOptions {
  /** Default 'auto'. */
  device?: DeviceKind;
  /** The CPU backend (default 'wasm'; env WGIT_KERNELS=0 selects 'reference'). */
  backend?: CpuBackend;
  /** GPU: elements per slice (tests use small slices to exercise the slicing). */
  sliceElements?: number;
  /**
   * Where `auto`'s notice goes when it falls back to the CPU (once per
   * process). Default: stderr when stderr is a terminal, else nowhere (so
   * scripted output stays clean); `autoChoice()` gives the same line.
   */
  onNotice?: (line: string) => void;
}

/** What `auto` picks on this machine, and why. */
export interface AutoChoice {
  device: 'gpu' | 'cpu';
  /** The adapter `auto` takes or turns down. */
  adapter?: string;
  /** When the CPU is picked: the one-line notice. */
  notice?: string;
  probe: GpuProbe;
}

/** The plain TypeScript device (synchronous: it needs no module or workers). */
export function referenceDevice(): Device {
  return checked(referenceBackend);
}

let autoPick: Promise<AutoChoice> | undefined;
let noticed = false;

/**
 * What `auto` takes here, probed once per process. WGIT_DEVICE=cpu skips the probe; so does a
 * Linux machine with no GPU device node (unless software adapters are allowed), so Dawn is only
 * loaded where a hardware adapter could answer.
 */
export function autoChoice(): Promise<AutoChoice> {
  autoPick ??= (async (): Promise<AutoChoice> => {
    const cpu = (detail: string, probe: GpuProbe, adapter?: string): AutoChoice => ({
      device: 'cpu',
      adapter,
      probe,
      notice: `wgit: computing on the CPU: ${detail}`,
    });
    if (process.env.WGIT_DEVICE === 'cpu') return { device: 'cpu', probe: { vulkanLoader: [], icds: [] } };
    const m = await import('./webgpu/probe.js');
    const nodes = m.gpuDeviceNodes();
    if (nodes && nodes.length === 0 && !softwareAllowed()) {
      const detail = 'no GPU device node (/dev/nvidia*, /dev/dri/renderD*, /dev/dxg)';
      return cpu(detail, { vulkanLoader: m.findVulkanLoader(), icds: m.findIcds(), missing: 'no-adapter', detail });
    }
    const probe = await m.probeGpu();
    const a = probe.adapter;
    const adapter = a ? a.description || `${a.vendor} ${a.device}` : undefined;
    if (a && (!a.software || softwareAllowed())) return { device: 'gpu', adapter, probe };
    return cpu(probe.detail ?? 'no GPU', probe, adapter);
  })();
  return autoPick;
}

/** Everything Dawn and the system say about GPUs here (`wgit doctor`); loads Dawn. Never throws. */
export async function probeGpu(): Promise<GpuProbe> {
  return (await import('./webgpu/probe.js')).probeGpu();
}

/** WGIT_GPU_ALLOW_SOFTWARE=1: `auto` may take a software adapter (tests on lavapipe). */
export function softwareAllowed(env = process.env): boolean {
  return env.WGIT_GPU_ALLOW_SOFTWARE === '1';
}

const gpuDevices = new Map<string, Promise<Device>>();

async function gpuDevice(opts: DeviceOptions, allowSoftware: boolean): Promise<Device> {
  const key = `${allowSoftware}:${opts.sliceElements ?? ''}`;
  let d = gpuDevices.get(key);
  if (!d) {
    d = import('./webgpu/index.js').then(async (m) =>
      checked(await m.webgpuBackend({ allowSoftware, sliceElements: opts.sliceElements })),
    );
    d.catch(() => gpuDevices.delete(key));
    gpuDevices.set(key, d);
  }
  return d;
}

/**
 * The process's choice for callers that ask for `auto`: WGIT_DEVICE (cpu,
 * gpu or auto; the CLI's --device sets it), else auto.
 */
export function deviceDefault(env = process.env): DeviceKind {
  const v = env.WGIT_DEVICE;
  if (v === undefined || v === '') return 'auto';
  if (v === 'cpu' || v === 'gpu' || v === 'auto') return v;
  throw new WgitError('E_BAD_ENV', `WGIT_DEVICE must be cpu, gpu or auto, got ${JSON.stringify(v)}`, {
    name: 'WGIT_DEVICE',
  });
}

/** The device for these options; one per configuration, shared by every caller. */
export async function getDevice(opts: DeviceOptions = {}): Promise<Device> {
  let kind = opts.device ?? 'auto';
  if (kind === 'auto' && opts.backend === undefined) kind = deviceDefault();
  if (kind !== 'cpu' && kind !== 'auto' && kind !== 'gpu') {
    throw new WgitError('E_KERNEL_ARG', `device must be cpu, gpu or auto, got ${JSON.stringify(kind)}`, {
      device: kind,
    });
  }
  if (kind === 'gpu') return gpuDevice(opts, true);
  if (kind === 'auto' && opts.backend === undefined) {
    const choice = await autoChoice();
    if (choice.device === 'gpu') return gpuDevice(opts, true);
    if (choice.notice && !noticed) {
      const sink = opts.onNotice ?? (process.stderr.isTTY ? (l: string) => process.stderr.write(`${l}\n`) : undefined);
      if (sink) {
        noticed = true;
        sink(choice.notice);
      }
    }
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
