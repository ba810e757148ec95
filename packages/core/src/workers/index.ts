export { acquireWorkerPool, defaultThreads, type RunOptions, type WorkerHandler, WorkerPool } from './pool.js';
export { fromWire, type WireError } from './wire.js';
