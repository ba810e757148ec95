import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { getDevice, isWgitError } from '@wgit/core';
import { acquireWorkerPool } from '@wgit/core/workers';
import { startRunner } from '../src/pool.js';
import { bf16Weights, buildSafetensors, fineTune, type RawTensor, withEnv } from './helpers.js';

process.env.WGIT_AUTHOR_DATE = '1700000000';

const here = path.dirname(fileURLToPath(import.meta.url));
const coreSrc = path.join(here, '../../core/src');
/** The core tests' handler module: jobs that echo, fail, or end their worker thread. */
const HANDLERS = new URL('../../core/test/workers/handlers.ts', import.meta.url);
const hasCode = (code: string) => (e: unknown) => isWgitError(e) && e.code === code;

function model(seed: number): RawTensor[] {
  return [0, 1, 2].map((l) => ({
    name: `layers.${l}.w`,
    dtype: 'BF16',
    shape: [64, 256],
    data: bf16Weights(64 * 256, seed * 10 + l),
  }));
}

/** Descriptors of this process open on `file` (Linux), or null where /proc is not there. */
function openOn(file: string): number | null {
  let fds: string[];
  try {
    fds = fs.readdirSync('/proc/self/fd');
  } catch {
    return null;
  }
  let n = 0;
  for (const fd of fds) {
    try {
      if (fs.readlinkSync(`/proc/self/fd/${fd}`) === file) n++;
    } catch {}
  }
  return n;
}

let dir: string;
let modelFile: string;
let restore: () => void;

before(() => {
  // Every runner takes the worker path, on two threads whatever the machine.
  restore = withEnv({ WGIT_PARALLEL_MIN_BYTES: '0', WGIT_THREADS: '2' });
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-'));
  fs.mkdirSync(path.join(dir, 'chunks'));
  fs.mkdirSync(path.join(dir, 'tmp'));
  modelFile = path.join(dir, 'model.safetensors');
  fs.writeFileSync(modelFile, buildSafetensors(model(1)));
});

after(() => {
  restore();
  fs.rmSync(dir, { recursive: true, force: true });
});

const putJob = (position: number) =>
  ({ op: 'put', file: modelFile, position, length: 4096, dtype: 'BF16', base: null, maxDepth: 4 }) as const;

describe('chunk jobs on the process worker pool', () => {
  it('a runner uses the process pool: its threads, a window of twice them, errors with code and data', async () => {
    const pool = await acquireWorkerPool();
    const runner = await startRunner(1 << 30, path.join(dir, 'chunks'), path.join(dir, 'tmp'));
    try {
      assert.equal(runner.threads, pool.threads);
      assert.equal(runner.threads, 2);
      assert.equal(runner.window, 4);
      const done = await Promise.all([0, 4096, 8192].map((p) => runner.run(putJob(p))));
      for (const d of done) assert.match(d.id, /^[0-9a-f]{64}$/);
      const id = 'ab'.repeat(32);
      await assert.rejects(
        runner.run({ op: 'read', id, rawLength: 4096, maxDepth: 4, buffer: new SharedArrayBuffer(4096), offset: 0 }),
        (e: unknown) => {
          assert.ok(isWgitError(e));
          assert.equal(e.code, 'E_MISSING_CHUNK');
          assert.deepEqual(e.data, { chunk: id });
          return true;
        },
      );
    } finally {
      await runner.close();
      await pool.release();
    }
  });

  it('closing a runner closes its files in the workers and leaves the kernels working', async () => {
    const device = await getDevice({ device: 'cpu', parallelMin: 1 });
    const runner = await startRunner(1 << 30, path.join(dir, 'chunks'), path.join(dir, 'tmp'));
    // One put per worker at least: each opens the model file and keeps it open until close.
    await Promise.all([0, 4096, 8192, 12288].map((p) => runner.run(putJob(p))));
    const open = openOn(modelFile);
    if (open !== null) assert.ok(open >= 1, 'the workers hold the model file open');
    await runner.close();
    if (open !== null) assert.equal(openOn(modelFile), 0, 'closed with the runner');
    await assert.rejects(runner.run(putJob(0)), hasCode('E_INTERNAL'));
    const x = new Float32Array(1 << 20).fill(0.25);
    assert.equal(await device.sumAbs(x), 1 << 18);
  });

  it('a worker killed mid-job fails the chunk jobs it held with E_WORKER_EXIT; the next runner works', async () => {
    const pool = await acquireWorkerPool();
    const runner = await startRunner(1 << 30, path.join(dir, 'chunks'), path.join(dir, 'tmp'));
    try {
      await pool.install('t/kill', HANDLERS, { tag: 'kill' });
      // Worker 1 busy, worker 0 about to end: the chunk job is queued on worker 0.
      const busy = pool.run('t/kill', { op: 'sleep', ms: 200 }, { worker: 1 });
      const killed = pool.run('t/kill', { op: 'exit' }, { worker: 0 });
      const job = runner.run(putJob(0));
      await assert.rejects(killed, hasCode('E_WORKER_EXIT'));
      await assert.rejects(job, (e: unknown) => {
        assert.ok(isWgitError(e));
        assert.equal(e.code, 'E_WORKER_EXIT');
        assert.equal(e.data.threadId, pool.threadIds[0]);
        return true;
      });
      await busy;
      await assert.rejects(runner.run(putJob(4096)), hasCode('E_WORKER_EXIT'), 'the runner is not reused broken');
    } finally {
      await runner.close();
      await pool.release();
    }
    const next = await startRunner(1 << 30, path.join(dir, 'chunks'), path.join(dir, 'tmp'));
    try {
      const fresh = await acquireWorkerPool();
      assert.notEqual(fresh, pool);
      assert.ok(fresh.threadIds.every((id) => !pool.threadIds.includes(id)));
      await fresh.release();
      const d = await next.run(putJob(8192));
      assert.match(d.id, /^[0-9a-f]{64}$/);
      const device = await getDevice({ device: 'cpu', parallelMin: 1 });
      assert.equal(await device.sumAbs(new Float32Array(1 << 20).fill(1)), 1 << 20);
    } finally {
      await next.close();
    }
  });

  it('a merge of revisions runs its chunk jobs and kernels on the same threads, then the process exits by itself', () => {
    const work = path.join(dir, 'merge');
    fs.mkdirSync(work);
    const base = model(2);
    for (const [name, ts] of [
      ['a', base.map((t, i) => ({ ...t, data: fineTune(t.data, 0.1, 10 + i) }))],
      ['b', base.map((t, i) => ({ ...t, data: fineTune(t.data, 0.1, 20 + i) }))],
    ] as const) {
      fs.mkdirSync(path.join(work, name));
      fs.writeFileSync(path.join(work, name, 'model.safetensors'), buildSafetensors(ts));
    }
    const script = `
      const { Repository } = await import(${JSON.stringify(path.join(here, '../src/index.ts'))});
      const { getDevice, mergeModels } = await import(${JSON.stringify(path.join(coreSrc, 'index.ts'))});
      const { defaultThreads } = await import(${JSON.stringify(path.join(coreSrc, 'workers/index.ts'))});
      const work = ${JSON.stringify(work)};
      const threads = () => process.report.getReport().workers.map((w) => w.header.threadId);
      const before = threads();
      const extra = () => threads().filter((id) => !before.includes(id)).length;
      const repo = await Repository.init(work + '/repo', { chunkSize: 4096 });
      const a = (await repo.commit({ path: work + '/a', message: 'a' })).commit;
      const b = (await repo.commit({ path: work + '/b', message: 'b' })).commit;
      const device = await getDevice({ device: 'cpu', parallelMin: 1 });
      let most = 0;
      const inputs = [await repo.openModel(a), await repo.openModel(b)];
      for (const m of inputs) {
        const read = m.readTensor.bind(m);
        // Sampled while the reads' chunk runner and the kernels are both in use.
        m.readTensor = async (name, into) => {
          const r = await read(name, into);
          most = Math.max(most, extra());
          return r;
        };
      }
      await mergeModels({ inputs, method: 'linear', params: {}, outDir: work + '/out', device, kernelMinElements: 1 });
      most = Math.max(most, extra());
      // Nothing is closed: idle workers must not keep the process alive.
      console.log(JSON.stringify({ threads: defaultThreads(), most }));
    `;
    const r = spawnSync(
      process.execPath,
      ['--conditions=wgit-source', '--import', 'tsx', '--input-type=module', '-e', script],
      { encoding: 'utf8', timeout: 120_000, env: { ...process.env, WGIT_THREADS: '2' } },
    );
    assert.equal(r.signal, null, `the process did not end by itself: ${r.stderr}`);
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout.trim().split('\n').pop() as string);
    assert.equal(out.threads, 2);
    assert.equal(out.most, 2, 'worker threads alive during the merge: the process count, not one set per user');
    assert.ok(fs.existsSync(path.join(work, 'out', 'model.safetensors')));
  });
});
