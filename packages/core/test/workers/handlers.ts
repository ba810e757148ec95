// Test-only handler module for the process worker pool (src/workers/pool.ts).
import { writeFileSync } from 'node:fs';
import { threadId } from 'node:worker_threads';
import { WgitError } from '../../src/errors.js';

export type Job =
  | { op: 'echo'; value: unknown }
  | { op: 'fail' }
  | { op: 'errno' }
  | { op: 'exit' }
  | { op: 'sleep'; ms: number }
  | { op: 'later'; value: unknown }
  | { op: 'sum'; bytes: ArrayBuffer };

/** `marker`: a file written by close(), so a test sees the handler closed. */
export function install(data: { tag: string; marker?: string }) {
  let calls = 0;
  const handler = (job: Job): unknown => {
    calls++;
    switch (job.op) {
      case 'echo':
        return { tag: data.tag, threadId, value: job.value, calls };
      case 'fail':
        throw new WgitError('E_BAD_PARAM', `refused by ${data.tag}`, { tag: data.tag, threadId });
      case 'errno':
        throw Object.assign(new Error('no such file'), { code: 'ENOENT' });
      case 'exit':
        // Ends this worker thread only, as a crash would.
        process.exit(7);
        return null;
      case 'sleep': {
        const end = Date.now() + job.ms;
        while (Date.now() < end) {}
        return threadId;
      }
      case 'later':
        return new Promise((resolve) => setTimeout(() => resolve(job.value), 5));
      case 'sum': {
        let s = 0;
        for (const b of new Uint8Array(job.bytes)) s += b;
        return s;
      }
    }
  };
  return Object.assign(handler, {
    close(): void {
      if (data.marker) writeFileSync(`${data.marker}.${threadId}`, String(calls));
    },
  });
}
