// The one script every worker thread of the process pool runs
// (src/workers/pool.ts). It holds handlers installed by module URL and runs
// the jobs sent to them, in the order they arrive. Plain JavaScript, so the
// same file serves the TypeScript sources (under tsx) and dist/ alike; a
// handler module given as a .ts URL makes it register tsx's loader first.
import { parentPort, threadId, workerData } from 'node:worker_threads';

const port = parentPort;
/** key → handler: `(payload) => result`, with an optional `close()`. */
const handlers = new Map();
let tsx = null;

/** The wire form of an error (src/workers/wire.ts reads it back). */
function toWire(e) {
  if (typeof e === 'object' && e !== null && e.name === 'WgitError' && typeof e.code === 'string') {
    return { wgit: true, code: e.code, message: e.message, data: e.data };
  }
  return { wgit: false, code: typeof e?.code === 'string' ? e.code : undefined, message: String(e?.message ?? e) };
}

/** An error the parent reads back as a WgitError (this plain script cannot import the class). */
function wgitError(code, message, data = {}) {
  return Object.assign(new Error(message), { name: 'WgitError', code, data });
}

function send(id, result) {
  try {
    port.postMessage({ id, result });
  } catch (e) {
    // A result that cannot be cloned still answers the job.
    port.postMessage({ id, error: toWire(e) });
  }
}

function fail(id, e) {
  const error = toWire(e);
  try {
    port.postMessage({ id, error });
  } catch {
    port.postMessage({ id, error: { ...error, data: undefined } });
  }
}

async function load(url) {
  if (/\.[cm]?ts$/.test(new URL(url).pathname)) {
    tsx ??= import(workerData?.tsx ?? 'tsx/esm/api').then((api) => {
      api.register();
    });
    await tsx;
  }
  return import(url);
}

async function install(m) {
  let mod;
  try {
    mod = await load(m.url);
  } catch (e) {
    throw wgitError('E_INTERNAL', `cannot load worker handler ${m.url}: ${e?.message ?? e}`, { url: m.url });
  }
  if (typeof mod.install !== 'function') {
    throw wgitError('E_INTERNAL', `worker handler ${m.url} exports no install function`, { url: m.url });
  }
  const handler = await mod.install(m.data);
  if (typeof handler !== 'function') {
    throw wgitError('E_INTERNAL', `install of ${m.url} returned no handler function`, { url: m.url });
  }
  handlers.set(m.key, handler);
}

async function uninstall(key) {
  const handler = handlers.get(key);
  handlers.delete(key);
  if (typeof handler?.close === 'function') await handler.close();
}

function run(m) {
  const handler = handlers.get(m.key);
  if (!handler) {
    fail(m.id, wgitError('E_INTERNAL', `no worker handler ${m.key}`, { key: m.key }));
    return;
  }
  let r;
  try {
    r = handler(m.payload);
  } catch (e) {
    fail(m.id, e);
    return;
  }
  if (typeof r?.then === 'function') {
    r.then(
      (v) => send(m.id, v),
      (e) => fail(m.id, e),
    );
  } else send(m.id, r);
}

/** Runs one asynchronous control message and answers it. */
function control(m, body) {
  body().then(
    () => send(m.id, null),
    (e) => fail(m.id, e),
  );
}

port.on('message', (m) => {
  if (m.op === 'run') run(m);
  else if (m.op === 'install') control(m, () => install(m));
  else if (m.op === 'uninstall') control(m, () => uninstall(m.key));
  else if (m.op === 'shutdown') {
    // Every handler closes (its files, say) before the pool ends this thread.
    control(m, async () => {
      for (const key of [...handlers.keys()]) await uninstall(key);
    });
  }
});
port.postMessage({ ready: true, threadId });
