/**
 * Finding a GPU: loads Dawn (the `webgpu` package) only when asked, asks it
 * for an adapter, and when there is none says which piece is missing — the
 * Vulkan loader library, an installable client driver (ICD) manifest, or an
 * adapter — so `getDevice({ device: 'gpu' })` and `wgit doctor` can name it.
 * A software adapter (Mesa's lavapipe, any fallback adapter) is reported as
 * such: `auto` never takes one unless WGIT_GPU_ALLOW_SOFTWARE=1.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { WgitError } from '../../errors.js';

/** Why no usable adapter was found (E_DEVICE_UNAVAILABLE's data.reason). */
export type GpuMissing = 'no-webgpu-module' | 'no-vulkan-loader' | 'no-icd' | 'no-adapter' | 'software-adapter';

export interface AdapterReport {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** A CPU implementation (lavapipe / SwiftShader) or a fallback adapter. */
  software: boolean;
  features: string[];
  limits: Record<string, number>;
}

export interface GpuProbe {
  /** The adapter, when Dawn gave one (software or not). */
  adapter?: AdapterReport;
  /** Set when there is no adapter, or only a software one. */
  missing?: GpuMissing;
  /** One line: what is missing and what to install. */
  detail?: string;
  /** Vulkan loader libraries found (Linux), and ICD manifests with the driver each names. */
  vulkanLoader: string[];
  icds: { file: string; library: string }[];
}

/** The module's entry points; `gpu` must stay referenced for the whole life of every device made from it. */
export interface DawnRuntime {
  gpu: GPU;
}

let runtime: Promise<DawnRuntime> | undefined;

/** Loads Dawn once per process; the GPU object is kept here for the life of the process (Dawn crashes if it is collected). */
export function loadDawn(): Promise<DawnRuntime> {
  runtime ??= (async () => {
    let mod: { create: (flags: string[]) => GPU; globals: object };
    try {
      mod = (await import('webgpu')) as typeof mod;
    } catch (e) {
      runtime = undefined;
      throw new WgitError(
        'E_DEVICE_UNAVAILABLE',
        `the webgpu module (Dawn) cannot be loaded: ${(e as Error).message}`,
        {
          reason: 'no-webgpu-module' satisfies GpuMissing,
        },
      );
    }
    // GPUBufferUsage, GPUMapMode, … as globals, as in a browser.
    for (const [k, v] of Object.entries(mod.globals)) {
      if (!(k in globalThis)) (globalThis as Record<string, unknown>)[k] = v;
    }
    return { gpu: mod.create([]) };
  })();
  return runtime;
}

const LIB_DIRS = [
  '/usr/lib/x86_64-linux-gnu',
  '/usr/lib/aarch64-linux-gnu',
  '/lib/x86_64-linux-gnu',
  '/lib/aarch64-linux-gnu',
  '/usr/lib64',
  '/usr/lib',
  '/usr/local/lib',
];
const ICD_DIRS = ['/usr/share/vulkan/icd.d', '/etc/vulkan/icd.d', '/usr/local/share/vulkan/icd.d'];

/** libvulkan.so.1 on LD_LIBRARY_PATH or the usual library folders (Linux only; empty elsewhere). */
export function findVulkanLoader(env = process.env): string[] {
  if (process.platform !== 'linux') return [];
  const dirs = [...(env.LD_LIBRARY_PATH ?? '').split(':').filter(Boolean), ...LIB_DIRS];
  return [...new Set(dirs.map((d) => join(d, 'libvulkan.so.1')).filter((f) => existsSync(f)))];
}

/** Vulkan ICD manifests (VK_DRIVER_FILES / VK_ICD_FILENAMES, else the standard folders) and the library each loads. */
export function findIcds(env = process.env): { file: string; library: string }[] {
  const listed = (env.VK_DRIVER_FILES ?? env.VK_ICD_FILENAMES ?? '').split(':').filter(Boolean);
  const files = listed.length
    ? listed.filter((f) => existsSync(f))
    : ICD_DIRS.flatMap((d) => {
        try {
          return readdirSync(d)
            .filter((f) => f.endsWith('.json'))
            .map((f) => join(d, f));
        } catch {
          return [];
        }
      });
  return files.map((file) => {
    let library = '?';
    try {
      library = String(JSON.parse(readFileSync(file, 'utf8'))?.ICD?.library_path ?? '?');
    } catch {}
    return { file, library };
  });
}

/**
 * GPU device nodes (Linux): /dev/nvidia0…, /dev/dri/renderD…, /dev/dxg (WSL). With none, no
 * hardware adapter can answer, so `auto` decides without loading Dawn. Undefined elsewhere.
 */
export function gpuDeviceNodes(): string[] | undefined {
  if (process.platform !== 'linux') return undefined;
  const list = (dir: string, re: RegExp) => {
    try {
      return readdirSync(dir)
        .filter((f) => re.test(f))
        .map((f) => join(dir, f));
    } catch {
      return [];
    }
  };
  return [...list('/dev', /^(nvidia\d+|dxg)$/), ...list('/dev/dri', /^renderD\d+$/)];
}

/** True for an adapter that computes on the CPU. */
export function isSoftware(info: { architecture?: string; device?: string; description?: string }, fallback: boolean) {
  const text = `${info.architecture ?? ''} ${info.device ?? ''} ${info.description ?? ''}`.toLowerCase();
  return fallback || /software|llvmpipe|lavapipe|swiftshader|\bcpu\b/.test(text);
}

function limitsOf(adapter: GPUAdapter): Record<string, number> {
  const out: Record<string, number> = {};
  const proto = Object.getPrototypeOf(adapter.limits);
  for (const k of Object.keys(Object.getOwnPropertyDescriptors(proto))) {
    const v = (adapter.limits as unknown as Record<string, unknown>)[k];
    if (typeof v === 'number') out[k] = v;
  }
  return out;
}

/** Describes an adapter Dawn gave. */
export function reportAdapter(adapter: GPUAdapter): AdapterReport {
  const info = adapter.info as GPUAdapterInfo & { isFallbackAdapter?: boolean };
  return {
    vendor: info.vendor,
    architecture: info.architecture,
    device: info.device,
    description: info.description,
    software: isSoftware(info, info.isFallbackAdapter === true),
    features: [...adapter.features].map(String).sort(),
    limits: limitsOf(adapter),
  };
}

/** Asks Dawn for its best adapter (high performance). */
export async function requestAdapter(): Promise<GPUAdapter | null> {
  const { gpu } = await loadDawn();
  return gpu.requestAdapter({ powerPreference: 'high-performance' });
}

/** What this machine offers: the adapter (if any), or the first missing piece. Never throws. */
export async function probeGpu(): Promise<GpuProbe> {
  const vulkanLoader = findVulkanLoader();
  const icds = findIcds();
  const base: GpuProbe = { vulkanLoader, icds };
  let adapter: GPUAdapter | null;
  try {
    adapter = await requestAdapter();
  } catch (e) {
    return { ...base, missing: 'no-webgpu-module', detail: (e as Error).message };
  }
  if (adapter) {
    const report = reportAdapter(adapter);
    if (!report.software) return { ...base, adapter: report };
    return {
      ...base,
      adapter: report,
      missing: 'software-adapter',
      detail: `only a software adapter (${report.description || report.device}) is available: no GPU driver's Vulkan ICD`,
    };
  }
  if (process.platform === 'linux' && vulkanLoader.length === 0) {
    return {
      ...base,
      missing: 'no-vulkan-loader',
      detail: 'no Vulkan loader (libvulkan.so.1) on LD_LIBRARY_PATH or in the system library folders',
    };
  }
  if (process.platform === 'linux' && icds.length === 0) {
    const where = process.env.VK_DRIVER_FILES
      ? 'VK_DRIVER_FILES'
      : process.env.VK_ICD_FILENAMES
        ? 'VK_ICD_FILENAMES'
        : ICD_DIRS.join(', ');
    return {
      ...base,
      missing: 'no-icd',
      detail: `no Vulkan ICD manifest (*.json) in ${where}: the GPU driver's Vulkan part is not installed`,
    };
  }
  return {
    ...base,
    missing: 'no-adapter',
    detail: `the Vulkan loader and ${icds.length} ICD manifest(s) are present, but no adapter answered (${icds
      .map((i) => i.library)
      .join(', ')})`,
  };
}
