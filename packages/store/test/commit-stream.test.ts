import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type ModelSource, openModel, runTensorPipeline } from '@wgit/core';
import { Repository, type StoreSink, setWriteFaultHook } from '../src/index.js';
import {
  bf16Weights,
  buildSafetensors,
  codeOf,
  fineTune,
  type RawTensor,
  readTreeFiles,
  writeShardedFolder,
} from './helpers.js';

process.env.WGIT_AUTHOR_DATE = '1700000000';
delete process.env.WGIT_AUTHOR_NAME;
delete process.env.WGIT_AUTHOR_EMAIL;

function model(seed: number): RawTensor[] {
  const ts: RawTensor[] = [];
  for (let l = 0; l < 3; l++) {
    ts.push({ name: `layers.${l}.w`, dtype: 'BF16', shape: [40, 200], data: bf16Weights(8000, seed * 10 + l) });
    ts.push({ name: `layers.${l}.norm`, dtype: 'F32', shape: [300], data: new Uint8Array(1200).fill(l + 1) });
  }
  ts.push({ name: 'step', dtype: 'I64', shape: [1], data: new Uint8Array(8).fill(7) });
  return ts;
}

function tuned(from: RawTensor[], seed: number): RawTensor[] {
  return from.map((t, i) => (t.dtype === 'BF16' ? { ...t, data: fineTune(t.data, 0.2, seed * 31 + i) } : t));
}

const average = (_name: string, inputs: Float32Array[], _b: Float32Array | undefined, out: Float32Array) => {
  for (let j = 0; j < out.length; j++) out[j] = Math.fround((inputs[0][j] + inputs[1][j]) / 2);
};

function treeOf(repo: Repository, rev: string): string {
  return execFileSync('git', ['--git-dir', repo.gitdir, 'rev-parse', `${rev}^{tree}`], { encoding: 'utf8' }).trim();
}

describe('commit from a tensor stream (store sink)', () => {
  let dir: string;
  let repo: Repository;
  let base: string;
  let a: ModelSource;
  let b: ModelSource;
  const env = { ...process.env };

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-stream-'));
    repo = await Repository.init(path.join(dir, 'repo'), { chunkSize: 4096, maxDeltaDepth: 3 });
    const m = model(1);
    fs.writeFileSync(path.join(dir, 'base.safetensors'), buildSafetensors(m, { metadata: { format: 'pt' } }));
    base = (await repo.commit({ path: path.join(dir, 'base.safetensors'), message: 'base' })).commit;
    // The carrier: a sharded folder with a small and a large (chunked) side file.
    const ma = tuned(m, 2);
    writeShardedFolder(path.join(dir, 'ft-a'), [ma.slice(0, 3), ma.slice(3)], {
      'config.json': '{"hidden_size": 48}\n',
      'tokenizer/big.txt': 'tok '.repeat(300_000),
    });
    fs.writeFileSync(path.join(dir, 'ft-b.safetensors'), buildSafetensors(tuned(m, 3)));
    a = await openModel(path.join(dir, 'ft-a'));
    b = await openModel(path.join(dir, 'ft-b.safetensors'));
  });
  after(async () => {
    process.env = env;
    setWriteFaultHook(null);
    await a.close();
    await b.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const run = (out: { outDir?: string; sink?: StoreSink }, maxShardBytes: number, compute = average) =>
    runTensorPipeline({ label: 'avg', inputs: [a, b], params: {}, compute, maxShardBytes, ...out });

  // Worker threads from source start slowly (each registers tsx): one case runs on them.
  for (const [threads, maxShardBytes] of [
    ['1', 1 << 30],
    ['1', 20_000],
    ['3', 20_000],
  ] as const)
    it(`gives the commit a folder commit gives (threads ${threads}, shard limit ${maxShardBytes})`, async () => {
      process.env.WGIT_THREADS = threads;
      process.env.WGIT_PARALLEL_MIN_BYTES = '0';
      const tag = `${threads}-${maxShardBytes}`;
      const folder = path.join(dir, `out-${tag}`);
      await run({ outDir: folder }, maxShardBytes);
      const viaFolder = await repo.commit({
        path: folder,
        branch: `folder-${tag}`,
        parents: [base],
        message: 'avg',
        recipe: { method: 'avg' },
      });

      const sink = await repo.openSink({ branch: `stream-${tag}`, parents: [base] });
      let viaStream: Awaited<ReturnType<StoreSink['commit']>>;
      try {
        await run({ sink }, maxShardBytes);
        assert.ok(sink.ready);
        viaStream = await sink.commit({
          message: 'avg',
          branch: `stream-${tag}`,
          parents: [base],
          recipe: { method: 'avg' },
        });
      } finally {
        await sink.close();
      }
      // Same tree and parents, same date and message: the very same commit.
      assert.equal(treeOf(repo, viaStream.commit), treeOf(repo, viaFolder.commit));
      assert.equal(viaStream.commit, viaFolder.commit);
      assert.equal(viaStream.tensors, viaFolder.tensors);
      assert.equal(viaStream.rawBytes, viaFolder.rawBytes);
      assert.equal(viaStream.storedBytes, viaFolder.storedBytes);
      // Checkout rebuilds, byte for byte, the folder the folder sink wrote.
      const out = path.join(dir, `co-${tag}`);
      await repo.checkout(`stream-${tag}`, out);
      const want = readTreeFiles(folder);
      const got = readTreeFiles(out);
      assert.deepEqual([...got.keys()].sort(), [...want.keys()].sort());
      for (const [f, bytes] of want) assert.ok(got.get(f)?.equals(bytes), f);
      assert.equal(maxShardBytes < 1 << 20, want.has('model.safetensors.index.json'));
      assert.deepEqual(fs.readdirSync(repo.tmpDir), []);
    });

  it('is as a first commit on a new branch when it is given no parents, and retries on another branch', async () => {
    process.env.WGIT_THREADS = '1';
    const sink = await repo.openSink({ branch: 'stream-retry', parents: [base] });
    try {
      await run({ sink }, 1 << 30);
      assert.equal(
        await codeOf(sink.commit({ message: 'x', branch: 'main', expectedHead: null, parents: [base] })),
        'E_BRANCH_MOVED',
      );
      const r = await sink.commit({ message: 'x', branch: 'stream-retry', expectedHead: null, parents: [base] });
      assert.equal(await repo.resolve('stream-retry'), r.commit);
      assert.equal(r.branch, 'stream-retry');
    } finally {
      await sink.close();
    }
  });

  it('leaves the repository as it was after a failure mid-stream (throwing compute, disk full)', async () => {
    for (const threads of ['1', '3']) {
      process.env.WGIT_THREADS = threads;
      const before = {
        refs: execFileSync('git', ['--git-dir', repo.gitdir, 'for-each-ref'], { encoding: 'utf8' }),
        chunks: (await repo.chunks.list()).length,
      };
      const failures: [string, () => void][] = [
        ['compute', () => setWriteFaultHook(null)],
        [
          'disk',
          () => {
            let n = 0;
            setWriteFaultHook(() => {
              if (n++ >= 4) throw Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
            });
          },
        ],
      ];
      for (const [what, arm] of failures) {
        let seen = 0;
        const throwing = (n: string, i: Float32Array[], bb: Float32Array | undefined, o: Float32Array) => {
          // The third computed tensor (layers.2.w, the fifth written): the norms no input changes are
          // written without compute, so three tensors reach it.
          if (what === 'compute' && ++seen === 3) throw new Error('compute failed');
          average(n, i, bb, o);
        };
        // Different bytes from every earlier commit, so new chunks are written before the failure.
        const sink = await repo.openSink({ branch: 'broken', parents: [base] });
        arm();
        try {
          const code = await codeOf(
            runTensorPipeline({
              label: 'avg',
              inputs: [b, a],
              params: {},
              compute: throwing,
              sink,
              outDtype: 'F32',
            }),
          );
          assert.equal(code, what === 'compute' ? undefined : 'E_DISK_FULL', `${what}, threads ${threads}`);
        } finally {
          setWriteFaultHook(null);
          await sink.close();
        }
        assert.equal(sink.ready, false);
        assert.equal(await codeOf(sink.commit({ message: 'x' })), 'E_SAFETENSORS_WRITE');
        assert.equal(
          execFileSync('git', ['--git-dir', repo.gitdir, 'for-each-ref'], { encoding: 'utf8' }),
          before.refs,
          what,
        );
        assert.deepEqual(fs.readdirSync(repo.tmpDir), [], `${what}: no temp files, no writer marker`);
        const now = (await repo.chunks.list()).length;
        assert.equal((await repo.fsck()).unreachableChunks, now - before.chunks, what);
        await repo.gc({ graceSeconds: 0 });
        assert.equal((await repo.chunks.list()).length, before.chunks, what);
      }
    }
  });
});
