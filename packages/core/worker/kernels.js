// The kernel handler installed in every worker of the process pool
// (src/workers/pool.ts, installed by src/device/wasm/pool.ts): instantiates
// the shared WebAssembly module on the pool's shared memory and runs the
// calls `{ fn, args }` sent to it. Plain JavaScript beside wasm/, so the
// TypeScript sources and dist/ find it at the same relative path.

/** `data`: `{ module, memory }`, the compiled kernels and the memory every thread shares. */
export function install({ module, memory }) {
  const kernels = new WebAssembly.Instance(module, { env: { memory } }).exports;
  return ({ fn, args }) => {
    const f = kernels[fn];
    if (typeof f !== 'function') throw new Error(`no kernel ${fn}`);
    const result = f(...args);
    return typeof result === 'number' ? result : 0;
  };
}
