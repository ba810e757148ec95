/** What a transfer reports while it runs: bytes and objects so far against the plan, rate and time left. */
export interface TransferProgress {
  phase: 'plan' | 'objects' | 'chunks' | 'refs';
  bytesDone: number;
  bytesTotal: number;
  objectsDone: number;
  objectsTotal: number;
  /** Bytes per second since the transfer started. */
  rate: number;
  /** Seconds left at the current rate, or null while unknown. */
  etaSeconds: number | null;
  elapsedSeconds: number;
}

/** Counts a transfer and calls `report` at most every `everyMs` (and at the end). */
export class ProgressMeter {
  bytesDone = 0;
  bytesTotal = 0;
  objectsDone = 0;
  objectsTotal = 0;
  phase: TransferProgress['phase'] = 'plan';
  private readonly start = Date.now();
  private last = 0;

  constructor(
    private readonly report?: (p: TransferProgress) => void,
    private readonly everyMs = 200,
  ) {}

  snapshot(): TransferProgress {
    const elapsed = Math.max((Date.now() - this.start) / 1000, 1e-3);
    const rate = this.bytesDone / elapsed;
    const left = this.bytesTotal - this.bytesDone;
    return {
      phase: this.phase,
      bytesDone: this.bytesDone,
      bytesTotal: this.bytesTotal,
      objectsDone: this.objectsDone,
      objectsTotal: this.objectsTotal,
      rate,
      etaSeconds: rate > 0 ? left / rate : null,
      elapsedSeconds: elapsed,
    };
  }

  add(bytes: number, objects = 1): void {
    this.bytesDone += bytes;
    this.objectsDone += objects;
    this.tick(false);
  }

  tick(force: boolean): void {
    if (!this.report) return;
    const now = Date.now();
    if (!force && now - this.last < this.everyMs) return;
    this.last = now;
    this.report(this.snapshot());
  }
}

/** One line for a terminal: `push: 12.0 MiB / 40.0 MiB, 31 / 97 objects, 8.1 MiB/s, 3 s left`. */
export function formatProgress(verb: string, p: TransferProgress): string {
  const mib = (b: number) => `${(b / 1048576).toFixed(1)} MiB`;
  const eta = p.etaSeconds === null ? '' : `, ${Math.ceil(p.etaSeconds)} s left`;
  return `${verb}: ${mib(p.bytesDone)} / ${mib(p.bytesTotal)}, ${p.objectsDone} / ${p.objectsTotal} objects, ${mib(p.rate)}/s${eta}`;
}

/** Runs `task` over `items` with at most `n` at once; the first failure is thrown once all running tasks settle. */
export async function parallel<T>(items: Iterable<T>, n: number, task: (item: T) => Promise<void>): Promise<void> {
  const it = items[Symbol.iterator]();
  let failure: { e: unknown } | null = null;
  const worker = async () => {
    for (;;) {
      if (failure) return;
      const next = it.next();
      if (next.done) return;
      try {
        await task(next.value);
      } catch (e) {
        failure ??= { e };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, n) }, worker));
  if (failure) throw (failure as { e: unknown }).e;
}
