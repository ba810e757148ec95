import { WgitCommand } from '../base.js';
import { printable } from '../format.js';

export interface DoctorResult {
  /** What `--device auto` computes on here, and the notice it gives when that is the CPU. */
  auto: { device: 'gpu' | 'cpu'; notice?: string };
  gpu: {
    adapter?: {
      vendor: string;
      architecture: string;
      device: string;
      description: string;
      software: boolean;
      features: string[];
      limits: Record<string, number>;
    };
    /** Why no usable adapter: no-webgpu-module, no-vulkan-loader, no-icd, no-adapter, software-adapter. */
    missing?: string;
    detail?: string;
    vulkanLoader: string[];
    icds: { file: string; library: string }[];
    /** A three-element weighted sum on the GPU against the CPU reference, when an adapter is there. */
    selfTest?: { ok: boolean; message?: string };
  };
}

const KEY_LIMITS = [
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxComputeWorkgroupsPerDimension',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupStorageSize',
];

export default class Doctor extends WgitCommand {
  static override description =
    `Report the compute devices: the GPU adapter (driver, vendor, limits), what is missing when
there is none (webgpu module, Vulkan loader, Vulkan ICD, adapter), and which device \`auto\` picks.

A software adapter (Mesa's lavapipe) is usable with an explicit GPU device but never picked by
\`auto\` unless WGIT_GPU_ALLOW_SOFTWARE=1.`;
  static override examples = ['<%= config.bin %> doctor', '<%= config.bin %> doctor --json'];

  async run(): Promise<DoctorResult> {
    await this.parse(Doctor);
    const { autoChoice, getDevice, probeGpu, referenceDevice } = await import('@wgit/core');
    const choice = await autoChoice();
    const probe = await probeGpu();
    const result: DoctorResult = {
      auto: { device: choice.device, ...(choice.notice ? { notice: choice.notice } : {}) },
      gpu: { ...probe },
    };
    if (probe.adapter) {
      try {
        const gpu = await getDevice({ device: 'gpu' });
        const xs = [Float32Array.of(1.5, -2, 1e-40), Float32Array.of(0.1, 3, -0)];
        const [a, b] = [new Float32Array(3), new Float32Array(3)];
        await gpu.weightedSum(xs, [0.3, -1.7], a);
        await referenceDevice().weightedSum(xs, [0.3, -1.7], b);
        const same = Buffer.compare(Buffer.from(a.buffer), Buffer.from(b.buffer)) === 0;
        result.gpu.selfTest = same ? { ok: true } : { ok: false, message: `GPU ${[...a]} vs CPU ${[...b]}` };
        await gpu.close();
      } catch (e) {
        result.gpu.selfTest = { ok: false, message: (e as Error).message };
      }
    }
    if (!this.jsonEnabled()) this.print(result);
    return result;
  }

  private print(r: DoctorResult): void {
    const a = r.gpu.adapter;
    if (a) {
      this.log(`GPU adapter: ${printable(a.description || a.device)}${a.software ? ' (software)' : ''}`);
      this.log(
        `  vendor ${printable(a.vendor)}, architecture ${printable(a.architecture)}, device ${printable(a.device)}`,
      );
      for (const k of KEY_LIMITS) if (k in a.limits) this.log(`  ${k}: ${a.limits[k]}`);
      this.log(`  features: ${a.features.join(', ') || 'none'}`);
    } else this.log('GPU adapter: none');
    if (r.gpu.detail) this.log(`  ${printable(r.gpu.detail)}`);
    this.log(`Vulkan loader: ${r.gpu.vulkanLoader.map(printable).join(', ') || 'not found'}`);
    this.log(
      `Vulkan ICDs: ${r.gpu.icds.map((i) => `${printable(i.file)} → ${printable(i.library)}`).join(', ') || 'none'}`,
    );
    if (r.gpu.selfTest) {
      this.log(
        `GPU self-test: ${r.gpu.selfTest.ok ? 'ok (bit-identical to the CPU)' : `failed: ${r.gpu.selfTest.message}`}`,
      );
    }
    this.log(`auto picks: ${r.auto.device}${r.auto.notice ? ` (${printable(r.auto.notice)})` : ''}`);
  }
}
