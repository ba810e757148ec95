import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { getDevice, isWgitError } from '../src/index.js';
import { acquireWorkerPool, defaultThreads, type WorkerPool } from '../src/workers/index.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const HANDLERS = new URL('./workers/handlers.ts', import.meta.url);

const hasCode = (code: string) => (e: unknown) => isWgitError(e) && e.code === code;

/** Thread ids of every worker thread alive in this process (whoever started it). */
function liveWorkerThreads(): number[] {
  const report = process.report.getReport() as unknown as { workers: { header: { threadId: number } }[] };
  return report.workers.map((w) => w.header.threadId);
}

interface Echo {
  tag: string;
  threadId: number;
  value: unknown;
  calls: number;
}

let dir: string;
/** Worker threads alive before any pool: the loader's own, when there is one. */
let before0: number[];
let threads: number;

before(() => {
  before0 = liveWorkerThreads();
  threads = defaultThreads();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-'));
});

after(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('the process worker pool', () => {
  test('one pool per thread count: handlers installed by URL run jobs on its threads', async () => {
    const pool = await acquireWorkerPool();
    try {
      assert.equal(pool.threads, threads);
      assert.equal(await acquireWorkerPool(), pool, 'acquired twice, one pool');
      await pool.release();
      await pool.install('t/echo', HANDLERS, { tag: 'echo' });
      const out = await Promise.all(
        Array.from({ length: 4 * threads }, (_, i) => pool.run<Echo>('t/echo', { op: 'echo', value: i })),
      );
      assert.deepEqual(
        out.map((o) => o.value),
        out.map((_, i) => i),
      );
      assert.ok(out.every((o) => o.tag === 'echo'));
      assert.deepEqual(new Set(out.map((o) => o.threadId)), new Set(pool.threadIds), 'spread over every worker');
      for (let w = 0; w < threads; w++) {
        const r = await pool.run<Echo>('t/echo', { op: 'echo', value: w }, { worker: w });
        assert.equal(r.threadId, pool.threadIds[w]);
      }
      assert.equal(await pool.run('t/echo', { op: 'later', value: 'async' }), 'async');
      const bytes = new Uint8Array([1, 2, 3, 250]).buffer;
      assert.equal(await pool.run('t/echo', { op: 'sum', bytes }, { transfer: [bytes] }), 256);
      assert.equal(bytes.byteLength, 0, 'the buffer was moved, not copied');
      await pool.uninstall('t/echo');
      await assert.rejects(pool.run('t/echo', { op: 'echo', value: 1 }), hasCode('E_INTERNAL'));
    } finally {
      await pool.release();
    }
  });

  test('errors cross the thread boundary with their code and data', async () => {
    const pool = await acquireWorkerPool();
    try {
      await pool.install('t/err', HANDLERS, { tag: 'err' });
      const e = await pool.run('t/err', { op: 'fail' }, { worker: 0 }).then(
        () => assert.fail('expected an error'),
        (x: unknown) => x,
      );
      assert.ok(isWgitError(e));
      assert.equal(e.code, 'E_BAD_PARAM');
      assert.deepEqual(e.data, { tag: 'err', threadId: pool.threadIds[0] });
      await assert.rejects(pool.run('t/err', { op: 'errno' }), (x: unknown) => {
        assert.ok(!isWgitError(x));
        return (x as NodeJS.ErrnoException).code === 'ENOENT';
      });
      await assert.rejects(pool.install('t/err', HANDLERS, { tag: 'again' }), hasCode('E_INTERNAL'));
      await pool.uninstall('t/err');
      // A module without an install function, and one that does not exist.
      await assert.rejects(
        pool.install('t/none', new URL('../src/workers/wire.ts', import.meta.url)),
        hasCode('E_INTERNAL'),
      );
      await assert.rejects(
        pool.install('t/none', new URL('./workers/missing.ts', import.meta.url)),
        hasCode('E_INTERNAL'),
      );
      await assert.rejects(pool.run('t/none', { op: 'echo' }), hasCode('E_INTERNAL'), 'a failed install leaves no key');
      await pool.install('t/none', HANDLERS, { tag: 'after a failed install' });
      await pool.uninstall('t/none');
    } finally {
      await pool.release();
    }
  });

  test('uninstall closes the handler in every worker, after the jobs sent before it', async () => {
    const pool = await acquireWorkerPool();
    try {
      const marker = path.join(dir, 'closed');
      await pool.install('t/close', HANDLERS, { tag: 'close', marker });
      const jobs = pool.threadIds.map((_, w) => pool.run('t/close', { op: 'sleep', ms: 50 }, { worker: w }));
      await pool.uninstall('t/close');
      await Promise.all(jobs);
      for (const id of pool.threadIds) assert.equal(fs.readFileSync(`${marker}.${id}`, 'utf8'), '1');
    } finally {
      await pool.release();
    }
  });

  test('another thread count gets a pool of its own, ended with its last user', async () => {
    const other = threads + 1;
    const pool = await acquireWorkerPool(other);
    const shared = await acquireWorkerPool();
    try {
      assert.notEqual(pool, shared);
      assert.equal(pool.threads, other);
      const alive = liveWorkerThreads();
      for (const id of [...pool.threadIds, ...shared.threadIds]) assert.ok(alive.includes(id));
      await pool.install('t/other', HANDLERS, { tag: 'other' });
      assert.equal((await pool.run<Echo>('t/other', { op: 'echo', value: 1 })).tag, 'other');
      await pool.uninstall('t/other');
    } finally {
      await pool.release();
      await shared.release();
    }
    assert.ok(pool.closed);
    const alive = liveWorkerThreads();
    assert.ok(!pool.threadIds.some((id) => alive.includes(id)), 'its workers ended');
    assert.ok(!shared.closed, 'the process pool stays');
    assert.ok(shared.threadIds.every((id) => alive.includes(id)));
    await assert.rejects(acquireWorkerPool(0), hasCode('E_INTERNAL'));
  });

  test('the kernels run on the same threads as every other job, and no others', async () => {
    const pool = await acquireWorkerPool();
    const device = await getDevice({ device: 'cpu', parallelMin: 1 });
    try {
      assert.equal(device.threads, threads);
      const x = new Float32Array(1 << 20).fill(-0.5);
      assert.equal(await device.sumAbs(x), 1 << 19);
      const extra = liveWorkerThreads().filter((id) => !before0.includes(id));
      assert.deepEqual(extra.sort(), [...pool.threadIds].sort(), 'worker threads: the pool’s and nothing else');
    } finally {
      await pool.release();
    }
  });

  test('a worker that dies fails its jobs with E_WORKER_EXIT; the next acquire starts a new pool', async () => {
    let pool: WorkerPool | null = await acquireWorkerPool();
    const device = await getDevice({ device: 'cpu', parallelMin: 1 });
    const x = new Float32Array(1 << 20).fill(2);
    assert.equal(await device.sumAbs(x), 2 ** 21);
    await pool.install('t/kill', HANDLERS, { tag: 'kill' });
    const old = pool.threadIds;
    // Worker 0 stops in the middle of a job; a job on another worker still finishes.
    const survivor = threads > 1 ? pool.run('t/kill', { op: 'sleep', ms: 300 }, { worker: 1 }) : null;
    const killed = pool.run('t/kill', { op: 'exit' }, { worker: 0 });
    const queued = pool.run('t/kill', { op: 'echo', value: 1 }, { worker: 0 });
    await assert.rejects(killed, (e: unknown) => {
      assert.ok(isWgitError(e));
      assert.equal(e.code, 'E_WORKER_EXIT');
      assert.equal(e.data.threadId, old[0]);
      assert.equal(e.data.exitCode, 7);
      return true;
    });
    await assert.rejects(queued, hasCode('E_WORKER_EXIT'));
    if (survivor) assert.equal(await survivor, old[1]);
    // Broken: no more work, for its jobs and for the kernels on it.
    await assert.rejects(pool.run('t/kill', { op: 'echo', value: 2 }, { worker: 1 }), hasCode('E_WORKER_EXIT'));
    await assert.rejects(device.sumAbs(x), hasCode('E_WORKER_EXIT'));
    await pool.release();
    await device.close();
    pool = null;

    const fresh = await acquireWorkerPool();
    try {
      assert.ok(
        fresh.threadIds.every((id) => !old.includes(id)),
        'new threads',
      );
      await fresh.install('t/kill', HANDLERS, { tag: 'again' });
      assert.equal((await fresh.run<Echo>('t/kill', { op: 'echo', value: 3 })).tag, 'again');
      await fresh.uninstall('t/kill');
      const again = await getDevice({ device: 'cpu', parallelMin: 1 });
      assert.notEqual(again, device);
      assert.equal(await again.sumAbs(x), 2 ** 21);
      // The old threads are gone: the broken pool ended its other workers.
      const deadline = Date.now() + 10_000;
      while (liveWorkerThreads().some((id) => old.includes(id)) && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.ok(!liveWorkerThreads().some((id) => old.includes(id)));
    } finally {
      await fresh.release();
    }
  });

  test('a process using the pool exits by itself once no job is in flight', () => {
    const script = `
      const { acquireWorkerPool } = await import(${JSON.stringify(`${root}src/workers/index.ts`)});
      const { getDevice } = await import(${JSON.stringify(`${root}src/index.ts`)});
      const pool = await acquireWorkerPool();
      await pool.install('echo', new URL(${JSON.stringify(HANDLERS.href)}), { tag: 'child' });
      const k = await getDevice({ device: 'cpu', parallelMin: 1 });
      // Nothing is closed or released: the idle workers must not hold the process.
      const slow = pool.run('echo', { op: 'sleep', ms: 300 });
      console.log(await k.sumAbs(new Float32Array(1 << 20).fill(1)), await slow > 0);
    `;
    const r = spawnSync(
      process.execPath,
      ['--conditions=wgit-source', '--import', 'tsx', '--input-type=module', '-e', script],
      { encoding: 'utf8', timeout: 60_000 },
    );
    assert.equal(r.signal, null, 'the process did not end by itself');
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), `${1 << 20} true`);
  });
});
