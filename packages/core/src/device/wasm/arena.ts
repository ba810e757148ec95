import { WgitError } from '../../errors.js';
import type { WasmMemory } from './wasm.js';

const WASM_PAGE = 65536;
/** Allocation granule: an OS page, so `fs.read` into an allocation is page aligned. */
export const ARENA_ALIGN = 4096;
const MAX_BYTES = 2 ** 32;

interface Block {
  offset: number;
  size: number;
}

/**
 * A best-fit allocator over a growable shared WebAssembly.Memory. Freed
 * blocks are kept and reused (first touch of fresh pages is slow, so reuse
 * is the point); neighbours coalesce, and a free block at the top lowers the
 * bump pointer. The memory itself never shrinks.
 */
export class Arena {
  readonly memory: WasmMemory;
  private top: number;
  private readonly free: Block[] = []; // sorted by offset, never adjacent
  private readonly live = new Map<number, number>();
  /** Every SharedArrayBuffer this memory has handed out (a new one per growth). */
  private readonly buffers = new WeakSet<ArrayBufferLike>();

  constructor(memory: WasmMemory, start: number) {
    this.memory = memory;
    this.top = Math.ceil(start / ARENA_ALIGN) * ARENA_ALIGN;
    this.buffers.add(memory.buffer);
  }

  get buffer(): ArrayBufferLike {
    const b = this.memory.buffer;
    this.buffers.add(b);
    return b;
  }

  /** True when `view` lies in this memory; its byteOffset is then its wasm address. */
  owns(view: ArrayBufferView): boolean {
    return this.buffers.has(view.buffer);
  }

  get bytesInUse(): number {
    let n = 0;
    for (const s of this.live.values()) n += s;
    return n;
  }

  get bytesReserved(): number {
    return this.top;
  }

  alloc(bytes: number): number {
    if (!Number.isSafeInteger(bytes) || bytes < 0) {
      throw new WgitError('E_KERNEL_ARG', `cannot allocate ${bytes} bytes`, { bytes });
    }
    const size = Math.max(ARENA_ALIGN, Math.ceil(bytes / ARENA_ALIGN) * ARENA_ALIGN);
    let best = -1;
    for (let i = 0; i < this.free.length; i++) {
      const b = this.free[i];
      if (b.size >= size && (best < 0 || b.size < this.free[best].size)) best = i;
    }
    let offset: number;
    if (best >= 0) {
      const b = this.free[best];
      offset = b.offset;
      if (b.size === size) this.free.splice(best, 1);
      else {
        b.offset += size;
        b.size -= size;
      }
    } else {
      offset = this.top;
      this.ensure(offset + size);
      this.top = offset + size;
    }
    this.live.set(offset, size);
    return offset;
  }

  release(offset: number): void {
    const size = this.live.get(offset);
    if (size === undefined) {
      throw new WgitError('E_KERNEL_BAD_FREE', `no live kernel allocation at offset ${offset}`, { offset });
    }
    this.live.delete(offset);
    let i = 0;
    while (i < this.free.length && this.free[i].offset < offset) i++;
    const block: Block = { offset, size };
    const prev = this.free[i - 1];
    if (prev && prev.offset + prev.size === offset) {
      prev.size += size;
      this.mergeNext(i - 1);
      this.trimTop();
      return;
    }
    this.free.splice(i, 0, block);
    this.mergeNext(i);
    this.trimTop();
  }

  sizeOf(offset: number): number | undefined {
    return this.live.get(offset);
  }

  private mergeNext(i: number): void {
    const b = this.free[i];
    const next = this.free[i + 1];
    if (next && b.offset + b.size === next.offset) {
      b.size += next.size;
      this.free.splice(i + 1, 1);
    }
  }

  private trimTop(): void {
    const last = this.free[this.free.length - 1];
    if (last && last.offset + last.size === this.top) {
      this.top = last.offset;
      this.free.pop();
    }
  }

  private ensure(end: number): void {
    if (end > MAX_BYTES) {
      throw new WgitError('E_KERNEL_OOM', `kernel memory would exceed 4 GiB (${end} bytes requested)`, { bytes: end });
    }
    const have = this.memory.buffer.byteLength;
    if (end <= have) return;
    // Growing is cheap (the 4 GiB range is reserved up front); slack avoids
    // a grow call per allocation.
    const want = Math.min(MAX_BYTES, Math.max(end, have + 64 * 2 ** 20));
    try {
      this.memory.grow(Math.ceil((want - have) / WASM_PAGE));
    } catch (e) {
      throw new WgitError('E_KERNEL_OOM', `cannot grow kernel memory to ${want} bytes: ${(e as Error).message}`, {
        bytes: want,
      });
    }
    this.buffers.add(this.memory.buffer);
  }
}
