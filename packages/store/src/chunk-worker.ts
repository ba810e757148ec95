import { parentPort, workerData } from 'node:worker_threads';
import { ChunkIO, type ChunkJob } from './chunkio.js';
import { toWire } from './pool.js';

// Entry of the chunk worker threads started by pool.ts: one job at a time,
// in the order they arrive, each answered with its sequence number.
const port = parentPort!;
const io = new ChunkIO(workerData.chunksDir as string, workerData.tmpDir as string);

port.on('message', (m: { seq: number; job: ChunkJob } | { close: true }) => {
  if ('close' in m) {
    try {
      io.close();
    } finally {
      port.postMessage({ closed: true });
    }
    return;
  }
  try {
    port.postMessage({ seq: m.seq, result: io.run(m.job) });
  } catch (e) {
    port.postMessage({ seq: m.seq, error: toWire(e) });
  }
});
port.postMessage({ ready: true });
