/** Pooled device buffers and the conversions between stored dtypes and f32 that run on them. */
import { type Device, type DeviceBuffer, type KernelDType, referenceDevice } from '../device/index.js';
import { type DType, dtypeSize, fromF32, toF32 } from '../dtypes.js';

/**
 * Named buffers that grow to the largest tensor seen and are then reused, so
 * big models do not page-fault fresh memory per tensor. They are the
 * device's own memory (the WASM pool's shared memory on the wasm device), so
 * file reads land where the kernels work (no copies) and page-aligned reads
 * run faster. The default is the reference device: ordinary arrays.
 */
export class BufferPool {
  private bytesSlots = new Map<string, DeviceBuffer<'U8'>>();
  private f32Slots = new Map<string, DeviceBuffer<'F32'>>();

  constructor(private readonly device: Device = referenceDevice()) {}

  bytes(slot: string, n: number): Uint8Array {
    let b = this.bytesSlots.get(slot);
    if (!b || b.length < n) {
      if (b) this.device.free(b);
      b = this.device.alloc('U8', Math.max(n, 64));
      this.bytesSlots.set(slot, b);
    }
    return this.device.hostView(b).subarray(0, n);
  }

  f32(slot: string, n: number): Float32Array {
    let b = this.f32Slots.get(slot);
    if (!b || b.length < n) {
      if (b) this.device.free(b);
      b = this.device.alloc('F32', Math.max(n, 16));
      this.f32Slots.set(slot, b);
    }
    return this.device.hostView(b).subarray(0, n);
  }

  release(): void {
    for (const b of this.bytesSlots.values()) this.device.free(b);
    for (const b of this.f32Slots.values()) this.device.free(b);
    this.bytesSlots.clear();
    this.f32Slots.clear();
  }
}

const KERNEL_DTYPES = new Set<DType>(['BF16', 'F16', 'F32']);
export const isKernelDType = (d: DType): d is KernelDType => KERNEL_DTYPES.has(d);

/** raw → f32 in a pooled buffer, on the device for the dtypes its kernels convert. */
export async function convertIn(
  pool: BufferPool,
  slot: string,
  raw: Uint8Array,
  dtype: DType,
  device: Device,
): Promise<Float32Array> {
  if (isKernelDType(dtype)) {
    const dst = pool.f32(slot, raw.byteLength / dtypeSize(dtype));
    await device.toF32(raw, dtype, dst);
    return dst;
  }
  return toF32Into(pool, slot, raw, dtype);
}

/** f32 → output dtype (RNE), on the device for the dtypes its kernels convert. */
export async function convertOut(values: Float32Array, dtype: DType, out: Uint8Array, device: Device): Promise<void> {
  if (isKernelDType(dtype)) await device.fromF32(values, dtype, out);
  else fromF32(values, dtype, out);
}

export function toF32Into(pool: BufferPool, slot: string, raw: Uint8Array, dtype: DType): Float32Array {
  const n = raw.byteLength / dtypeSize(dtype);
  const out = pool.f32(slot, n);
  if (dtype === 'F32' && raw.byteOffset % 4 === 0) {
    out.set(new Float32Array(raw.buffer, raw.byteOffset, n));
    return out;
  }
  toF32(raw, dtype, out);
  return out;
}
