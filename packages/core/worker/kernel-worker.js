// One kernel worker: instantiates the shared WebAssembly module on the shared
// memory and runs the calls the pool sends, one at a time, in order. Plain
// JavaScript so the same file serves the TypeScript sources and dist/.
import { parentPort, workerData } from 'node:worker_threads';

const { module, memory } = workerData;
const instance = new WebAssembly.Instance(module, { env: { memory } });
const exports = instance.exports;

parentPort.on('message', (msg) => {
  const { id, fn, args } = msg;
  try {
    const f = exports[fn];
    if (typeof f !== 'function') throw new Error(`no kernel ${fn}`);
    const result = f(...args);
    parentPort.postMessage({ id, result: typeof result === 'number' ? result : null });
  } catch (e) {
    parentPort.postMessage({ id, error: e instanceof Error ? e.message : String(e) });
  }
});
parentPort.postMessage({ ready: true });
