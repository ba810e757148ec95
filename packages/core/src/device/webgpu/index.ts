/**
 * Starting the WebGPU backend: an adapter (software ones only when asked),
 * a device with the adapter's storage limits, and the backend on it.
 */
import { WgitError } from '../../errors.js';
import { WebGpuBackend } from './backend.js';
import { type GpuProbe, loadDawn, probeGpu, reportAdapter } from './probe.js';
import { GpuRuntime } from './runtime.js';

export interface WebGpuOptions {
  /** Accept a software adapter (lavapipe). Default: only when WGIT_GPU_ALLOW_SOFTWARE=1. */
  allowSoftware?: boolean;
  /** Elements per slice (a multiple of 1,024; default and maximum 8 Mi, capped by the binding limit). */
  sliceElements?: number;
}

function unavailable(probe: GpuProbe): WgitError {
  return new WgitError('E_DEVICE_UNAVAILABLE', `no usable GPU: ${probe.detail ?? 'no adapter'}`, {
    device: 'gpu',
    reason: probe.missing ?? 'no-adapter',
  });
}

/** A started WebGPU backend, or E_DEVICE_UNAVAILABLE naming what is missing. */
export async function webgpuBackend(opts: WebGpuOptions = {}): Promise<WebGpuBackend> {
  const probe = await probeGpu();
  const ok = probe.adapter && (!probe.adapter.software || opts.allowSoftware);
  if (!ok) throw unavailable(probe);
  const { gpu } = await loadDawn();
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) throw unavailable({ ...probe, missing: 'no-adapter', detail: 'the adapter went away' });
  const want = ['maxStorageBufferBindingSize', 'maxBufferSize', 'maxComputeWorkgroupsPerDimension'] as const;
  const requiredLimits: Record<string, number> = {};
  for (const k of want) requiredLimits[k] = adapter.limits[k];
  let device: GPUDevice;
  try {
    device = await adapter.requestDevice({ requiredLimits });
  } catch (e) {
    throw new WgitError('E_DEVICE_UNAVAILABLE', `the GPU adapter would not open a device: ${(e as Error).message}`, {
      device: 'gpu',
      reason: 'no-device',
      adapter: reportAdapter(adapter).description,
    });
  }
  return new WebGpuBackend(new GpuRuntime(gpu, adapter, device, opts.sliceElements));
}

export { WebGpuBackend } from './backend.js';
export { type AdapterReport, type GpuMissing, type GpuProbe, probeGpu } from './probe.js';
