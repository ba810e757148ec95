import { ChunkIO, type ChunkJob, type JobResult } from './chunkio.js';

/**
 * The chunk handler of the process's worker threads (@wgit/core/workers),
 * installed by pool.ts's PoolRunner once per runner: each worker keeps one
 * ChunkIO over the runner's chunk folder and runs its jobs, one at a time,
 * in the order they arrive. Uninstalling the runner closes the ChunkIO (its
 * model files' descriptors) in every worker.
 */
export function install(data: { chunksDir: string; tmpDir: string; budget: SharedArrayBuffer | null }) {
  // budget: the main thread's test-only write budget, shared memory (fsutil.ts).
  const io = new ChunkIO(data.chunksDir, data.tmpDir, data.budget);
  const run = <J extends ChunkJob>(job: J): JobResult<J> => io.run(job);
  return Object.assign(run, {
    close(): void {
      io.close();
    },
  });
}
