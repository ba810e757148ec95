/**
 * The GPU side of the WebGPU backend: one GPUDevice, compiled pipelines,
 * and the slice stream every kernel runs through. A call's tensors are cut
 * into slices no larger than the device's storage-binding limit (and at most
 * SLICE_MAX elements, so every dispatch stays under 65,535 workgroups); two
 * sets of slice buffers alternate, so the upload of slice s + 1 is queued
 * while slice s computes, and each slice's results come back with one
 * mapAsync of its read-back buffer.
 */
import { WgitError } from '../../errors.js';
import { WG } from './shaders/common.js';

/** Elements per slice at most: 8 Mi (32 MiB of f32 per binding); a multiple of the 1,024-element block. */
export const SLICE_MAX = 8 * 1024 * 1024;

export interface StreamInput {
  /** The host bytes of elements [start, start + len) (or a fixed array for every slice). */
  data: (start: number, len: number) => Uint8Array;
  /** The most bytes `data` returns for any slice. */
  maxBytes: number;
}

export interface StreamOutput {
  bytes: (len: number) => number;
  /** Zero the buffer before each slice (atomic counters). */
  clear?: boolean;
  /** Receives the slice's bytes (a view valid only during the call). */
  take: (start: number, len: number, data: Uint8Array) => void;
}

export interface StreamPass {
  pipeline: GPUComputePipeline;
  /** Workgroups for a slice of `len` elements (at most 65,535). */
  groups: (len: number) => number;
  /** Indices into the job's inputs and outputs, bound in that order after the uniforms. */
  inputs: number[];
  outputs: number[];
}

export interface StreamJob {
  n: number;
  inputs: StreamInput[];
  outputs: StreamOutput[];
  passes: StreamPass[];
  /** 16 u32 of uniforms for the slice at `start` of `len` elements (word 1 is set here). */
  uniforms: (start: number, len: number) => Uint32Array;
}

const align4 = (n: number) => Math.max(4, Math.ceil(n / 4) * 4);

export class GpuRuntime {
  readonly slice: number;
  private pipelines = new Map<string, Promise<GPUComputePipeline>>();
  lost: string | undefined;

  /** `gpu` is held so Dawn's instance lives as long as this device. */
  constructor(
    readonly gpu: GPU,
    readonly adapter: GPUAdapter,
    readonly device: GPUDevice,
    sliceElements?: number,
  ) {
    const limit = Math.min(device.limits.maxStorageBufferBindingSize, device.limits.maxBufferSize);
    const fit = Math.floor(limit / 4 / 1024) * 1024;
    this.slice = Math.max(1024, Math.min(SLICE_MAX, fit, sliceElements ?? SLICE_MAX));
    this.slice -= this.slice % 1024;
    void device.lost.then((info) => {
      this.lost = info.message || String(info.reason);
    });
  }

  pipeline(code: string): Promise<GPUComputePipeline> {
    let p = this.pipelines.get(code);
    if (!p) {
      const module = this.device.createShaderModule({ code });
      p = this.device.createComputePipelineAsync({ layout: 'auto', compute: { module, entryPoint: 'main' } });
      p.catch(() => this.pipelines.delete(code));
      this.pipelines.set(code, p);
    }
    return p;
  }

  buffer(size: number, usage: number): GPUBuffer {
    return this.device.createBuffer({ size: align4(size), usage });
  }

  private check(): void {
    if (this.lost !== undefined) {
      throw new WgitError('E_DEVICE_ERROR', `the GPU device was lost: ${this.lost}`, { reason: 'lost' });
    }
  }

  /** Runs `job` over its n elements slice by slice; resolves when every slice's results were taken. */
  async stream(job: StreamJob): Promise<void> {
    this.check();
    if (job.n === 0) return;
    const d = this.device;
    d.pushErrorScope('out-of-memory');
    d.pushErrorScope('validation');
    const S = GPUBufferUsage.STORAGE;
    const sliceBytes = job.outputs.map((o) => align4(o.bytes(Math.min(this.slice, job.n))));
    const offsets: number[] = [];
    let total = 0;
    for (const b of sliceBytes) {
      offsets.push(total);
      total += b;
    }
    const sets = [0, 1].map(() => ({
      uniform: this.buffer(64, GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST),
      inputs: job.inputs.map((i) => this.buffer(i.maxBytes, S | GPUBufferUsage.COPY_DST)),
      outputs: sliceBytes.map((b) => this.buffer(b, S | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST)),
      readback: this.buffer(total, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST),
      pending: undefined as Promise<void> | undefined,
    }));
    const failures: unknown[] = [];
    try {
      for (let s = 0, start = 0; start < job.n; s++, start += this.slice) {
        const len = Math.min(this.slice, job.n - start);
        const set = sets[s & 1];
        if (set.pending) await set.pending;
        const u = job.uniforms(start, len);
        job.inputs.forEach((inp, i) => {
          const bytes = inp.data(start, len);
          if (bytes.byteLength === 0) return;
          if (bytes.byteLength % 4 === 0) d.queue.writeBuffer(set.inputs[i], 0, bytes, 0, bytes.byteLength);
          else {
            const padded = new Uint8Array(align4(bytes.byteLength));
            padded.set(bytes);
            d.queue.writeBuffer(set.inputs[i], 0, padded);
          }
        });
        const enc = d.createCommandEncoder();
        job.outputs.forEach((o, i) => {
          if (o.clear) enc.clearBuffer(set.outputs[i]);
        });
        // Dispatches are one-dimensional (SLICE_MAX keeps them under 65,535 workgroups): word 1, the
        // threads of a dispatch row, only matters were a second dimension ever used.
        u[1] = 65535 * WG;
        d.queue.writeBuffer(set.uniform, 0, u);
        for (const pass of job.passes) {
          const groups = pass.groups(len);
          const entries: GPUBindGroupEntry[] = [{ binding: 0, resource: { buffer: set.uniform } }];
          for (const i of pass.inputs) entries.push({ binding: entries.length, resource: { buffer: set.inputs[i] } });
          for (const i of pass.outputs) entries.push({ binding: entries.length, resource: { buffer: set.outputs[i] } });
          const bind = d.createBindGroup({ layout: pass.pipeline.getBindGroupLayout(0), entries });
          const cp = enc.beginComputePass();
          cp.setPipeline(pass.pipeline);
          cp.setBindGroup(0, bind);
          cp.dispatchWorkgroups(groups);
          cp.end();
        }
        job.outputs.forEach((o, i) => {
          enc.copyBufferToBuffer(
            set.outputs[i],
            0,
            set.readback,
            offsets[i],
            o.bytes(len) === 0 ? 0 : align4(o.bytes(len)),
          );
        });
        d.queue.submit([enc.finish()]);
        set.pending = this.collect(job, set.readback, offsets, start, len, total, failures);
      }
      for (const set of sets) if (set.pending) await set.pending;
    } catch (e) {
      failures.push(e);
    }
    for (const set of sets) if (set.pending) await set.pending.catch(() => {});
    const validation = await d.popErrorScope();
    const oom = await d.popErrorScope();
    for (const set of sets) {
      set.uniform.destroy();
      for (const b of [...set.inputs, ...set.outputs, set.readback]) b.destroy();
    }
    this.check();
    if (oom) throw new WgitError('E_DEVICE_ERROR', `the GPU is out of memory: ${oom.message}`, { reason: 'oom' });
    if (validation) {
      throw new WgitError('E_DEVICE_ERROR', `the GPU refused a command: ${validation.message}`, {
        reason: 'validation',
      });
    }
    if (failures.length) throw failures[0];
  }

  private collect(
    job: StreamJob,
    readback: GPUBuffer,
    offsets: number[],
    start: number,
    len: number,
    total: number,
    failures: unknown[],
  ): Promise<void> {
    return readback.mapAsync(GPUMapMode.READ, 0, total).then(
      () => {
        try {
          const all = new Uint8Array(readback.getMappedRange(0, total));
          job.outputs.forEach((o, i) => {
            o.take(start, len, all.subarray(offsets[i], offsets[i] + o.bytes(len)));
          });
        } catch (e) {
          failures.push(e);
        } finally {
          readback.unmap();
        }
      },
      (e) => {
        failures.push(new WgitError('E_DEVICE_ERROR', `reading GPU results failed: ${(e as Error).message}`));
      },
    );
  }
}

export const bytesOf = (v: ArrayBufferView) => new Uint8Array(v.buffer, v.byteOffset, v.byteLength);

/** A host array's elements [start, start + len) as bytes, `size` bytes an element. */
export function sliced(v: ArrayBufferView, size: number, slice: number): StreamInput {
  const b = bytesOf(v);
  return {
    data: (start, len) => b.subarray(start * size, (start + len) * size),
    maxBytes: Math.min(slice, b.byteLength / size) * size,
  };
}

export function uniforms(n: number, weights: number[] = [], extra: number[] = []): Uint32Array {
  const u = new Uint32Array(16);
  u[0] = n;
  extra.forEach((v, i) => {
    u[2 + i] = v >>> 0;
  });
  new Float32Array(u.buffer, 32, 8).set(weights);
  return u;
}
