import { fromReadError, type ReadGroupDone } from './chunkio.js';
import type { ChunkRunner } from './pool.js';

/**
 * A fixed set of shared buffers of one chunk each that worker threads decode
 * into when the reader's buffer is not shared memory: its bytes are copied
 * out and the slot handed to the next job, so reading costs a bounded number
 * of chunks of memory however many reads are in flight. A job takes all the
 * slots it needs at once (first come, first served), so jobs never hold part
 * of what they need while waiting for the rest; one that needs more slots
 * than there are adds the missing ones.
 */
class StagingSlots {
  private readonly free: Uint8Array[] = [];
  private readonly waiting: { n: number; resolve: (slots: Uint8Array[]) => void }[] = [];
  private count = 0;

  constructor(
    slots: number,
    readonly slotBytes: number,
  ) {
    this.add(slots);
  }

  get bytes(): number {
    return this.count * this.slotBytes;
  }

  private add(n: number): void {
    const sab = new SharedArrayBuffer(n * this.slotBytes);
    for (let i = 0; i < n; i++) this.free.push(new Uint8Array(sab, i * this.slotBytes, this.slotBytes));
    this.count += n;
  }

  take(n: number): Promise<Uint8Array[]> {
    if (n > this.count) this.add(n - this.count);
    if (this.waiting.length === 0 && this.free.length >= n) return Promise.resolve(this.free.splice(0, n));
    return new Promise((resolve) => this.waiting.push({ n, resolve }));
  }

  give(slots: Uint8Array[]): void {
    this.free.push(...slots);
    while (this.waiting.length > 0 && this.free.length >= this.waiting[0].n) {
      const w = this.waiting.shift()!;
      w.resolve(this.free.splice(0, w.n));
    }
  }
}

/** One chunk a revision reads: where it sits, what it is, where its bytes go. */
export interface ChunkRead {
  /**
   * The chunk's position: tensor name and chunk index. Reads of the same
   * position that arrive together are decoded in one job; that is where
   * delta chains run (a commit stores a chunk as a delta on its first
   * parent's chunk at the same position).
   */
  position: string;
  id: string;
  rawLength: number;
  maxDepth: number;
  /** The record's delta depth: only the order within a job (bases first). */
  depth: number;
  target: Uint8Array;
}

/** What the reads on one chunk folder cost so far (StoreModel.readStats). */
export interface SharedReadStats {
  /** Read-group jobs run. */
  jobs: number;
  /** Chunks read (one per revision and position). */
  reads: number;
  /** Chunk payloads decoded, delta bases included: without sharing, every level of every read's chain. */
  decoded: number;
  /** Decoded chunks hashed. */
  hashed: number;
  /** Times a chunk decoded for one read served another (as its base or as its chunk). */
  reused: number;
  /** Most bytes of decoded delta bases one job held at once, beside the readers' buffers. */
  peakBaseBytes: number;
  /** Bytes of the staging slots (readers' buffers that are not shared memory). */
  stagingBytes: number;
}

interface Pending extends ChunkRead {
  resolve: () => void;
  reject: (e: unknown) => void;
}

/**
 * The chunk reads of every revision open on one chunk folder (a merge opens
 * its inputs and base there), sent to the chunk runner. Reads are collected
 * until the current turn of the event loop ends (a merge asks for one tensor
 * of every input at once) and those at the same position go in one
 * read-group job (chunkio.ts): a fine-tune's chunk two deltas deep, its
 * parent's and the base's are decoded once each instead of three, two and
 * one times, and hashed once each (a base no one reads is not hashed). The
 * jobs of different positions run on different workers.
 *
 * Memory: decoding writes into the readers' buffers when they are shared
 * memory (the WASM device's are), else into staging slots (at most
 * max(2, window, largest group) chunks); each worker holds, beside them, the
 * bases of the chain it is decoding plus at most KEPT_BASES more.
 */
export class SharedReads {
  private pending = new Map<string, Pending[]>();
  private scheduled = false;
  private staging: StagingSlots | null = null;
  private readonly totals: SharedReadStats = {
    jobs: 0,
    reads: 0,
    decoded: 0,
    hashed: 0,
    reused: 0,
    peakBaseBytes: 0,
    stagingBytes: 0,
  };

  constructor(private readonly runner: ChunkRunner) {}

  get stats(): SharedReadStats {
    return { ...this.totals, stagingBytes: this.staging?.bytes ?? 0 };
  }

  /** Decodes and checks one chunk into `r.target`; settles when its bytes are there or it failed. */
  read(r: ChunkRead): Promise<void> {
    return new Promise((resolve, reject) => {
      const key = `${r.position}\0${r.rawLength}\0${r.maxDepth}`;
      let group = this.pending.get(key);
      if (!group) {
        group = [];
        this.pending.set(key, group);
      }
      group.push({ ...r, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    this.scheduled = false;
    const groups = [...this.pending.values()];
    this.pending = new Map();
    for (const g of groups) void this.runGroup(g.sort((a, b) => a.depth - b.depth));
  }

  private async runGroup(group: Pending[]): Promise<void> {
    const direct = (t: Uint8Array) => this.runner.threads <= 1 || t.buffer instanceof SharedArrayBuffer;
    const staged = group.filter((r) => !direct(r.target));
    let staging: StagingSlots | null = null;
    let slots: Uint8Array[] = [];
    try {
      if (staged.length > 0) {
        const bytes = Math.max(...staged.map((r) => r.rawLength));
        if (!this.staging || this.staging.slotBytes < bytes) {
          // Sized for the largest chunks read so far; slots of a replaced set still in use stay valid.
          this.staging = new StagingSlots(Math.max(2, this.runner.window), bytes);
        }
        staging = this.staging;
        slots = await staging.take(staged.length);
      }
      const slotOf = new Map(staged.map((r, i) => [r, slots[i]]));
      const done = await this.runner.run({
        op: 'read-group',
        maxDepth: group[0].maxDepth,
        reads: group.map((r) => {
          const t = slotOf.get(r) ?? r.target;
          return { id: r.id, rawLength: r.rawLength, buffer: t.buffer, offset: t.byteOffset };
        }),
      });
      this.count(group.length, done);
      for (const [i, r] of group.entries()) {
        const err = done.errors[i];
        if (err) {
          r.reject(fromReadError(err));
          continue;
        }
        const slot = slotOf.get(r);
        if (slot) r.target.set(slot.subarray(0, r.rawLength));
        r.resolve();
      }
    } catch (e) {
      for (const r of group) r.reject(e);
    } finally {
      if (slots.length > 0) staging?.give(slots);
    }
  }

  private count(reads: number, d: ReadGroupDone): void {
    const t = this.totals;
    t.jobs++;
    t.reads += reads;
    t.decoded += d.decoded;
    t.hashed += d.hashed;
    t.reused += d.reused;
    t.peakBaseBytes = Math.max(t.peakBaseBytes, d.peakBaseBytes);
  }
}
