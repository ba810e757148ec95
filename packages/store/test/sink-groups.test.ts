import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type ModelSource, openModel, recoverModel, referenceDevice, reversibleMerge } from '@wgit/core';
import { Repository, setWriteFaultHook } from '../src/index.js';
import {
  bf16Weights,
  buildSafetensors,
  codeOf,
  fineTune,
  type RawTensor,
  readTreeFiles,
  rng,
  writeShardedFolder,
} from './helpers.js';

process.env.WGIT_AUTHOR_DATE = '1700000000';
delete process.env.WGIT_AUTHOR_NAME;
delete process.env.WGIT_AUTHOR_EMAIL;

/** f32 weights: recovery rounds to f32, so a full basis needs stored fixes here. */
function f32Weights(count: number, seed: number, scale = 0.02): Uint8Array {
  const r = rng(seed);
  const v = new Float32Array(count);
  for (let i = 0; i < count; i++) v[i] = (r() + r() + r() - 1.5) * scale;
  return new Uint8Array(v.buffer);
}

function addNoise(data: Uint8Array, seed: number): Uint8Array {
  const v = new Float32Array(data.slice().buffer);
  const r = rng(seed);
  for (let i = 0; i < v.length; i++) v[i] += (r() - 0.5) * 0.004;
  return new Uint8Array(v.buffer);
}

function model(): RawTensor[] {
  return [
    { name: 'embed', dtype: 'BF16', shape: [64, 100], data: bf16Weights(6400, 1) },
    { name: 'layers.0.w', dtype: 'F32', shape: [40, 50], data: f32Weights(2000, 2) },
    { name: 'layers.0.norm', dtype: 'F32', shape: [50], data: new Uint8Array(200).fill(3) },
    { name: 'step', dtype: 'I64', shape: [1], data: new Uint8Array(8).fill(7) },
  ];
}

function tuned(from: RawTensor[], seed: number): RawTensor[] {
  return from.map((t, i) => {
    if (t.dtype === 'BF16') return { ...t, data: fineTune(t.data, 0.3, seed * 31 + i) };
    if (t.dtype === 'F32') return { ...t, data: addNoise(t.data, seed * 31 + i) };
    return { ...t, data: new Uint8Array(8).fill(seed) };
  });
}

function treeOf(repo: Repository, rev: string): string {
  return execFileSync('git', ['--git-dir', repo.gitdir, 'rev-parse', rev], { encoding: 'utf8' }).trim();
}

function sameFiles(got: string, want: string, what: string): void {
  const g = readTreeFiles(got);
  const w = readTreeFiles(want);
  assert.deepEqual([...g.keys()].sort(), [...w.keys()].sort(), what);
  for (const [f, bytes] of w) assert.ok(g.get(f)?.equals(bytes), `${what}: ${f}`);
}

describe('a sink with tensor groups: rmm committed straight into the store', () => {
  let dir: string;
  let repo: Repository;
  const commits: Record<string, string> = {};
  const paths: Record<string, string> = {};
  const opened: ModelSource[] = [];
  const env = { ...process.env };
  const open = async (p: string) => {
    const m = await openModel(p);
    opened.push(m);
    return m;
  };

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-groups-'));
    repo = await Repository.init(path.join(dir, 'repo'), { chunkSize: 4096, maxDeltaDepth: 3 });
    const m = model();
    paths.base = path.join(dir, 'base.safetensors');
    fs.writeFileSync(paths.base, buildSafetensors(m, { metadata: { format: 'pt' } }));
    commits.base = (await repo.commit({ path: paths.base, message: 'base' })).commit;
    // ft-a: a sharded folder with a small and a large (chunked) side file; ft-b: one file.
    const ma = tuned(m, 2);
    paths.a = path.join(dir, 'ft-a');
    writeShardedFolder(paths.a, [ma.slice(0, 2), ma.slice(2)], {
      'config.json': '{"hidden_size": 48}\n',
      'tokenizer/big.txt': 'tok '.repeat(300_000),
    });
    paths.b = path.join(dir, 'ft-b.safetensors');
    fs.writeFileSync(paths.b, buildSafetensors(tuned(m, 3)));
    commits.a = (await repo.commit({ path: paths.a, message: 'ft-a', branch: 'ft-a', parents: [commits.base] })).commit;
    commits.b = (await repo.commit({ path: paths.b, message: 'ft-b', branch: 'ft-b', parents: [commits.base] })).commit;
  });
  after(async () => {
    process.env = env;
    setWriteFaultHook(null);
    await Promise.all(opened.map((m) => m.close()));
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const inputs = async () => ({ inputs: [await open(paths.a), await open(paths.b)], base: await open(paths.base) });
  const commitOpts = (branch: string) => ({
    message: 'rmm',
    branch,
    parents: [commits.a, commits.b, commits.base],
    recipe: { method: 'rmm' },
  });

  for (const maxShardBytes of [1 << 30, 16_000])
    it(`gives the commit a folder commit of the same group gives (shard limit ${maxShardBytes})`, async () => {
      process.env.WGIT_THREADS = '1';
      const tag = String(maxShardBytes);
      const outDir = path.join(dir, `merged-${tag}`);
      const groupDir = path.join(dir, `group-${tag}`);
      const viaFolders = await reversibleMerge({ ...(await inputs()), outDir, groupDir, maxShardBytes });
      assert.equal(viaFolders.rmm.groupDir, groupDir);
      assert.ok(
        viaFolders.rmm.models.some((x) => x.fixes > 0),
        'the f32 tensor needs fixes: the test covers them',
      );
      const folder = await repo.commit({
        ...commitOpts(`folder-${tag}`),
        path: outDir,
        groups: { rmm: { path: groupDir, object: viaFolders.rmm.object } },
      });

      const sink = await repo.openSink({ branch: `stream-${tag}`, parents: [commits.a] });
      let stream: Awaited<ReturnType<typeof sink.commit>>;
      let viaSink: Awaited<ReturnType<typeof reversibleMerge>>;
      try {
        // the reference device: the sink path must not depend on the backend either
        viaSink = await reversibleMerge({ ...(await inputs()), sink, maxShardBytes, device: referenceDevice() });
        assert.ok(sink.ready);
        stream = await sink.commit(commitOpts(`stream-${tag}`));
      } finally {
        await sink.close();
      }
      assert.equal(viaSink.rmm.groupDir, null);
      assert.deepEqual(viaSink.groups, [{ name: 'rmm', header: viaFolders.rmm.object, dir: null }]);
      assert.deepEqual(viaSink.rmm.models, viaFolders.rmm.models);
      // Same tree (model, group records, both manifests), parents, date and message: the very same commit.
      assert.equal(treeOf(repo, `${stream.commit}:groups/rmm`), treeOf(repo, `${folder.commit}:groups/rmm`));
      assert.equal(treeOf(repo, `${stream.commit}^{tree}`), treeOf(repo, `${folder.commit}^{tree}`));
      assert.equal(stream.commit, folder.commit);
      for (const k of ['tensors', 'rawBytes', 'storedBytes'] as const) assert.equal(stream[k], folder[k], k);
      const manifest = JSON.parse(
        execFileSync('git', ['--git-dir', repo.gitdir, 'show', `${stream.commit}:groups/rmm/wgit.json`], {
          encoding: 'utf8',
        }),
      );
      assert.equal(manifest.format, 3);
      assert.deepEqual(manifest.object, { kind: 'rmm-basis', version: 2, meta: { inputs: 2, rank: 2 } });
      assert.equal(manifest.index !== null, maxShardBytes < 1 << 20);

      // Checkout gives back the folders the folder sink wrote, the model and the group alike.
      const co = path.join(dir, `co-${tag}`);
      await repo.checkout(`stream-${tag}`, co);
      sameFiles(co, outDir, 'model');
      const cg = path.join(dir, `cg-${tag}`);
      await repo.checkout(`stream-${tag}`, cg, { group: 'rmm' });
      sameFiles(cg, groupDir, 'group');
      const fsck = await repo.fsck();
      assert.deepEqual(fsck.problems, []);
      assert.equal(fsck.ok, true);

      // Each input comes back from the stored group byte for byte, as from the folder.
      const group = await repo.openModel(stream.commit, 'rmm');
      opened.push(group);
      for (const [i, src] of [paths.a, paths.b].entries()) {
        const fromStore = path.join(dir, `rec-store-${tag}-${i}`);
        const fromFolder = path.join(dir, `rec-folder-${tag}-${i}`);
        const r = await recoverModel({ group, model: i, outDir: fromStore });
        assert.equal(r.exact, true);
        await recoverModel({ group: await open(groupDir), model: i, outDir: fromFolder });
        sameFiles(fromStore, fromFolder, `input ${i}`);
        const want = await open(src);
        const got = await open(fromStore);
        for (const t of want.tensors)
          assert.deepEqual(await got.readTensor(t.name), await want.readTensor(t.name), `input ${i} ${t.name}`);
      }
      assert.deepEqual(fs.readdirSync(repo.tmpDir), []);
    });

  it('refuses a group left unfinished, and leaves the repository as it was after a failure mid-stream', async () => {
    process.env.WGIT_THREADS = '1';
    {
      const sink = await repo.openSink({ branch: 'half', parents: [commits.a] });
      try {
        await sink.begin({ specs: [{ name: 'x', dtype: 'U8', shape: [4] }] });
        const g = sink.group('g', { kind: 'checkpoint', version: 1 });
        await g.begin({ specs: [{ name: 'y', dtype: 'U8', shape: [2] }] });
        await sink.write('x', new Uint8Array(4));
        assert.equal(
          await codeOf(sink.finish({ sideFiles: [], readSideFile: async () => new Uint8Array() })),
          'E_SAFETENSORS_WRITE',
        );
        assert.equal(
          await codeOf(Promise.resolve().then(() => sink.group('g', { kind: 'checkpoint', version: 1 }))),
          'E_SAFETENSORS_WRITE',
        );
      } finally {
        await sink.close();
      }
    }
    const before = {
      refs: execFileSync('git', ['--git-dir', repo.gitdir, 'for-each-ref'], { encoding: 'utf8' }),
      chunks: (await repo.chunks.list()).length,
    };
    const sink = await repo.openSink({ branch: 'broken', parents: [commits.a] });
    let n = 0;
    setWriteFaultHook(() => {
      if (n++ >= 6) throw Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
    });
    try {
      // other weights than any commit so far, so new chunks are written before the failure
      const { inputs: ins, base } = await inputs();
      assert.equal(
        await codeOf(reversibleMerge({ inputs: ins, base, sink, params: { weights: [1, 3] } })),
        'E_DISK_FULL',
      );
    } finally {
      setWriteFaultHook(null);
      await sink.close();
    }
    assert.equal(sink.ready, false);
    assert.equal(execFileSync('git', ['--git-dir', repo.gitdir, 'for-each-ref'], { encoding: 'utf8' }), before.refs);
    assert.deepEqual(fs.readdirSync(repo.tmpDir), [], 'no temp files, no writer marker');
    await repo.gc({ graceSeconds: 0 });
    assert.equal((await repo.chunks.list()).length, before.chunks);
  });
});
