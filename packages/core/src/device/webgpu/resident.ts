/**
 * Kernels on data that stays on the GPU (GPUBuffers of raw bytes), for the
 * GPU kernel benchmark: the elementwise shader of map.ts dispatched slice by
 * slice over buffer ranges, with no host transfer. Not part of the KernelSet.
 */
import type { KernelDType } from '../device.js';
import { KERNEL_DTYPE_SIZE } from '../device.js';
import { type GpuRuntime, uniforms } from './runtime.js';
import { WG } from './shaders/common.js';
import { type MapOp, mapShader } from './shaders/map.js';

/** Elements [first, first + n) of the inputs into the same range of `out`; queued, not awaited. */
export async function residentMap(
  rt: GpuRuntime,
  op: MapOp,
  inputs: GPUBuffer[],
  dtype: KernelDType,
  outDtype: KernelDType,
  out: GPUBuffer,
  first: number,
  n: number,
  weights: number[] = [],
): Promise<void> {
  const d = rt.device;
  const pipeline = await rt.pipeline(mapShader(op, dtype, outDtype));
  const size = KERNEL_DTYPE_SIZE[dtype];
  const outSize = KERNEL_DTYPE_SIZE[outDtype];
  const enc = d.createCommandEncoder();
  const temps: GPUBuffer[] = [];
  for (let start = 0; start < n; start += rt.slice) {
    const len = Math.min(rt.slice, n - start);
    const u = uniforms(len, weights);
    u[1] = 65535 * WG;
    const ub = rt.buffer(64, GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST);
    d.queue.writeBuffer(ub, 0, u);
    temps.push(ub);
    const range = (b: GPUBuffer, s: number) => ({
      buffer: b,
      offset: (first + start) * s,
      size: Math.ceil((len * s) / 4) * 4,
    });
    const entries: GPUBindGroupEntry[] = [{ binding: 0, resource: { buffer: ub } }];
    inputs.forEach((b, i) => {
      entries.push({ binding: i + 1, resource: range(b, size) });
    });
    entries.push({ binding: inputs.length + 1, resource: range(out, outSize) });
    const cp = enc.beginComputePass();
    cp.setPipeline(pipeline);
    cp.setBindGroup(0, d.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries }));
    cp.dispatchWorkgroups(Math.ceil(len / (2 * WG)));
    cp.end();
  }
  d.queue.submit([enc.finish()]);
  void d.queue.onSubmittedWorkDone().then(() => {
    for (const b of temps) b.destroy();
  });
}
