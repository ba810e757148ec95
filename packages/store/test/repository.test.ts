import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Repository, setWriteFaultHook } from '../src/index.js';
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

function model(seed: number, ft?: { from: RawTensor[]; fraction: number }): RawTensor[] {
  if (ft)
    return ft.from.map((t, i) => ({
      ...t,
      data: t.dtype === 'BF16' ? fineTune(t.data, ft.fraction, seed * 31 + i) : t.data,
    }));
  return [
    { name: 'model.embed_tokens.weight', dtype: 'BF16', shape: [64, 48], data: bf16Weights(64 * 48, seed) },
    { name: 'model.layers.0.mlp.up_proj.weight', dtype: 'BF16', shape: [96, 48], data: bf16Weights(96 * 48, seed + 1) },
    {
      name: 'model.layers.0.input_layernorm.weight',
      dtype: 'F32',
      shape: [48],
      data: new Uint8Array(new Float32Array(48).fill(1).buffer),
    },
    { name: 'step', dtype: 'I64', shape: [], data: new Uint8Array(8).fill(7) },
    { name: 'empty', dtype: 'F16', shape: [0, 4], data: new Uint8Array(0) },
  ];
}

describe('repository', () => {
  let dir: string;
  let repo: Repository;
  let base: RawTensor[];
  let c1: string;
  let c2: string;
  const file = () => path.join(dir, 'in', 'model.safetensors');
  const writeFile = (ts: RawTensor[]) => {
    fs.mkdirSync(path.dirname(file()), { recursive: true });
    fs.writeFileSync(file(), buildSafetensors(ts, { metadata: { format: 'pt' } }));
  };

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-'));
    repo = await Repository.init(path.join(dir, 'repo'), { chunkSize: 1024, maxDeltaDepth: 3 });
    base = model(1);
  });
  after(() => {
    setWriteFaultHook(null);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('refuses a second init and finds the repository from a subfolder', async () => {
    assert.equal(await codeOf(Repository.init(path.join(dir, 'repo'))), 'E_REPO_EXISTS');
    fs.mkdirSync(path.join(dir, 'repo', 'sub', 'deeper'), { recursive: true });
    assert.equal((await Repository.open(path.join(dir, 'repo', 'sub', 'deeper'))).root, path.join(dir, 'repo'));
    assert.equal(await codeOf(Repository.open(os.tmpdir())), 'E_NOT_A_REPO');
    assert.deepEqual(JSON.parse(fs.readFileSync(path.join(dir, 'repo/.wgit/wgit/config.json'), 'utf8')), {
      format: 1,
      chunkSize: 1024,
      maxDeltaDepth: 3,
    });
  });

  it('commits a single file and checks it out byte for byte', async () => {
    writeFile(base);
    const r = await repo.commit({ path: file(), message: 'base' });
    c1 = r.commit;
    assert.equal(r.branch, 'main');
    assert.equal(r.tensors, 5);
    assert.equal(
      r.rawBytes,
      base.reduce((a, t) => a + t.data.length, 0),
    );
    assert.ok(r.storedBytes < r.rawBytes, 'bf16 weights compress');
    assert.equal(r.newBytes, r.storedBytes);
    const out = path.join(dir, 'out1');
    const co = await repo.checkout('main', out);
    assert.deepEqual(co.files, ['model.safetensors']);
    assert.ok(fs.readFileSync(path.join(out, 'model.safetensors')).equals(fs.readFileSync(file())));
  });

  it('gives the same commit id for the same inputs and pinned date', async () => {
    const other = await Repository.init(path.join(dir, 'repo-twin'), { chunkSize: 1024, maxDeltaDepth: 3 });
    assert.equal((await other.commit({ path: file(), message: 'base' })).commit, c1);
  });

  it('stores a fine-tune as deltas against its parent, and dedups unchanged tensors', async () => {
    const ft = model(2, { from: base, fraction: 0.05 });
    writeFile(ft);
    const r = await repo.commit({ path: file(), message: 'ft' });
    c2 = r.commit;
    const show = await repo.show(c2);
    assert.deepEqual(show.parents, [c1]);
    const up = show.tensors.find((t) => t.name === 'model.layers.0.mlp.up_proj.weight')!;
    assert.equal(up.chunks, Math.ceil((96 * 48 * 2) / 1024));
    assert.ok((up.encodings['xor-zipnn'] ?? 0) > 0, JSON.stringify(up.encodings));
    const norm = show.tensors.find((t) => t.name === 'model.layers.0.input_layernorm.weight')!;
    assert.equal(norm.byteLength, 192);
    // The unchanged norm and step reuse the parent's chunks: nothing new for them.
    const first = await repo.show(c1);
    assert.ok(r.newBytes < first.storedBytes / 2, `${r.newBytes} new vs ${first.storedBytes}`);
    const m = await repo.openModel(c2);
    for (const t of ft) assert.deepEqual(await m.readTensor(t.name), t.data);
    assert.deepEqual(m.tensor('step'), { name: 'step', dtype: 'I64', shape: [], byteLength: 8 });
    await m.close();
  });

  it('bounds delta chains by maxDeltaDepth', async () => {
    let cur = model(2, { from: base, fraction: 0.05 });
    for (let k = 0; k < 4; k++) {
      cur = model(10 + k, { from: cur, fraction: 0.02 });
      writeFile(cur);
      await repo.commit({ path: file(), message: `step ${k}` });
    }
    const depths: number[] = [];
    for (let k = 0; k < 6; k++) depths.push(Math.max(...(await repo.show(`main~${k}`)).tensors.map((t) => t.maxDepth)));
    assert.ok(Math.max(...depths) <= 3, JSON.stringify(depths));
    assert.equal(depths[5], 0);
    assert.ok(depths.includes(3));
    const out = path.join(dir, 'out-chain');
    await repo.checkout('HEAD', out);
    assert.ok(fs.readFileSync(path.join(out, 'model.safetensors')).equals(fs.readFileSync(file())));
    // Put the tip back on c2 for the following tests (a branch to keep history).
    await repo.createBranch('chain');
  });

  it('resolves branches, tags, short ids and ~ / ^ steps', async () => {
    const log = await repo.log('chain');
    assert.equal(log.length, 6);
    assert.equal(log[4].commit, c2);
    assert.equal(await repo.resolve('chain~4'), c2);
    assert.equal(await repo.resolve('chain~5'), c1);
    assert.equal(await repo.resolve('chain^^^^'), c2);
    assert.equal(await repo.resolve('chain~4^0'), c2);
    assert.equal(await repo.resolve(c2.slice(0, 7)), c2);
    assert.equal(await repo.resolve(c2.toUpperCase().slice(0, 10)), c2);
    await repo.createTag('v1', c2);
    assert.equal(await repo.resolve('v1~1'), c1);
    assert.equal(await codeOf(repo.resolve('v1~2')), 'E_UNKNOWN_REVISION');
    assert.equal(await codeOf(repo.resolve('v1^2')), 'E_UNKNOWN_REVISION');
    assert.equal(await codeOf(repo.resolve('nope')), 'E_UNKNOWN_REVISION');
    assert.equal(await codeOf(repo.resolve('ffff')), 'E_UNKNOWN_REVISION');
    assert.equal(await codeOf(repo.resolve(c2.slice(0, 3))), 'E_UNKNOWN_REVISION');
    assert.equal(await codeOf(repo.createTag('v1')), 'E_TAG_EXISTS');
    assert.equal(await codeOf(repo.createBranch('chain')), 'E_BRANCH_EXISTS');
    assert.equal(await codeOf(repo.createBranch('bad..name')), 'E_BAD_REF_NAME');
    assert.deepEqual(
      (await repo.tags()).map((t) => t.name),
      ['v1'],
    );
  });

  it('records merges: several parents, a recipe and groups; ^2 picks the second parent', async () => {
    const gdir = path.join(dir, 'group.safetensors');
    fs.writeFileSync(
      gdir,
      buildSafetensors([
        { name: 'delta', dtype: 'F32', shape: [4], data: new Uint8Array(new Float32Array([1, 2, 3, 4]).buffer) },
      ]),
    );
    writeFile(model(3, { from: base, fraction: 0.1 }));
    const r = await repo.commit({
      path: file(),
      branch: 'merged',
      parents: ['chain', 'v1'],
      recipe: { method: 'linear', weights: [0.5, 0.5], seed: 1 },
      groups: { 'task/vector': gdir },
      message: 'merge',
    });
    const info = await repo.readCommit('merged');
    assert.deepEqual(info.parents, [await repo.resolve('chain'), c2]);
    assert.deepEqual(info.recipe, { method: 'linear', weights: [0.5, 0.5], seed: 1 });
    assert.deepEqual(info.groups, ['task/vector']);
    assert.equal(info.message, 'merge');
    assert.equal(await repo.resolve('merged^2'), c2);
    const g = await repo.openModel(r.commit, 'task/vector');
    assert.deepEqual(new Float32Array((await g.readTensor('delta')).slice().buffer), new Float32Array([1, 2, 3, 4]));
    assert.equal(await codeOf(repo.openModel(r.commit, 'nope')), 'E_UNKNOWN_GROUP');
    const out = path.join(dir, 'out-group');
    await repo.checkout('merged', out, { group: 'task/vector' });
    assert.ok(fs.readFileSync(path.join(out, 'group.safetensors')).equals(fs.readFileSync(gdir)));
  });

  it('commits a sharded folder with side files and rebuilds it exactly', async () => {
    const src = path.join(dir, 'folder');
    const ts = model(4);
    writeShardedFolder(src, [ts.slice(0, 2), ts.slice(2)], {
      'config.json': '{"model_type":"llama"}\n',
      'tokenizer/vocab.txt': 'a\nb\n',
      '.hidden-note': 'core skips hidden files',
    });
    const r = await repo.commit({ path: src, branch: 'sharded', message: 'sharded' });
    const show = await repo.show(r.commit);
    assert.equal(show.kind, 'folder');
    assert.deepEqual(show.shards, ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']);
    const out = path.join(dir, 'out-sharded');
    await repo.checkout('sharded', out);
    const want = readTreeFiles(src);
    want.delete('.hidden-note');
    const got = readTreeFiles(out);
    assert.deepEqual([...got.keys()].sort(), [...want.keys()].sort());
    for (const [k, v] of want) assert.ok(got.get(k)!.equals(v), k);
    const m = await repo.openModel('sharded');
    assert.equal(m.indexFile, 'model.safetensors.index.json');
    assert.ok(!m.sideFiles.includes('model.safetensors.index.json'));
    assert.equal(Buffer.from(await m.readSideFile('config.json')).toString(), '{"model_type":"llama"}\n');
  });

  it('keeps arbitrary tensor names, escaped in the tree', async () => {
    const names = ['../x', 'a/b%c', '.git', 'ünïcode ☃', 'tab\tname'];
    const ts = names.map((name, i) => ({ name, dtype: 'U8', shape: [3], data: new Uint8Array([i, i, i]) }));
    const f = path.join(dir, 'odd.safetensors');
    fs.writeFileSync(f, buildSafetensors(ts));
    const r = await repo.commit({ path: f, branch: 'odd' });
    const m = await repo.openModel(r.commit);
    assert.deepEqual(
      m.tensors.map((t) => t.name),
      names,
    );
    for (const t of ts) assert.deepEqual(await m.readTensor(t.name), t.data);
    const out = path.join(dir, 'out-odd');
    await repo.checkout('odd', out);
    assert.deepEqual(fs.readdirSync(out), ['odd.safetensors']);
    assert.ok(fs.readFileSync(path.join(out, 'odd.safetensors')).equals(fs.readFileSync(f)));
    const tree = execFileSync('git', [
      '--git-dir',
      repo.gitdir,
      'ls-tree',
      '--name-only',
      `${r.commit}:tensors`,
    ]).toString();
    assert.ok(tree.includes('%2E%2E%2Fx') || tree.includes('%2E.%2Fx'), tree);
  });

  it('is readable and valid for plain git', async () => {
    const log = execFileSync('git', ['--git-dir', repo.gitdir, 'log', '--format=%H %s', 'chain'])
      .toString()
      .trim()
      .split('\n');
    assert.equal(log.length, 6);
    assert.equal(log[5], `${c1} base`);
    execFileSync('git', ['--git-dir', repo.gitdir, 'fsck', '--full', '--strict'], { stdio: 'pipe' });
    const reflog = execFileSync('git', ['--git-dir', repo.gitdir, 'reflog', 'show', '--format=%H', 'refs/heads/main'])
      .toString()
      .trim()
      .split('\n');
    assert.equal(reflog[reflog.length - 1], c1);
  });

  it('refuses bad input without changing anything', async () => {
    const notModel = path.join(dir, 'not-a-model');
    fs.mkdirSync(notModel);
    fs.writeFileSync(path.join(notModel, 'readme.txt'), 'hi');
    assert.equal(await codeOf(repo.commit({ path: notModel })), 'E_NOT_A_MODEL');
    const full = path.join(dir, 'full-out');
    fs.mkdirSync(full);
    fs.writeFileSync(path.join(full, 'x'), '');
    assert.equal(await codeOf(repo.checkout('main', full)), 'E_OUTPUT_NOT_EMPTY');
    assert.equal(await codeOf(repo.checkout('no-such', path.join(dir, 'o'))), 'E_UNKNOWN_REVISION');
    assert.equal(await codeOf(repo.commit({ path: file(), expectedHead: c1 })), 'E_BRANCH_MOVED');
  });

  it('fails with E_DISK_FULL on ENOSPC and leaves the repository as it was', async () => {
    writeFile(model(9));
    const before = {
      head: await repo.resolve('main'),
      chunks: (await repo.chunks.list()).length,
      reflog: fs.readFileSync(path.join(repo.gitdir, 'logs/refs/heads/main')),
    };
    // Fail at the first write, a few chunks in, and at the very last step (the ref itself).
    for (const after of [0, 3, 12, -1]) {
      let n = 0;
      setWriteFaultHook((f) => {
        const hit = after < 0 ? f.includes(`refs${path.sep}heads`) : n++ >= after;
        if (hit) throw Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
      });
      assert.equal(await codeOf(repo.commit({ path: file(), message: 'too big' })), 'E_DISK_FULL');
      setWriteFaultHook(null);
      assert.equal(await repo.resolve('main'), before.head);
      // Chunks placed before the failure stay until gc; they are unreferenced, nothing else changed.
      const now = (await repo.chunks.list()).length;
      assert.ok(now >= before.chunks, `after ${after} writes`);
      assert.equal((await repo.fsck()).unreachableChunks, now - before.chunks, `after ${after} writes`);
      await repo.gc({ graceSeconds: 0 });
      assert.equal((await repo.chunks.list()).length, before.chunks, `after ${after} writes`);
      assert.deepEqual(fs.readdirSync(repo.tmpDir), []);
      assert.ok(fs.readFileSync(path.join(repo.gitdir, 'logs/refs/heads/main')).equals(before.reflog));
    }
    const fits = await repo.commit({ path: file(), message: 'fits now' });
    assert.deepEqual((await repo.readCommit(fits.commit)).parents, [before.head]);
    assert.equal((await repo.fsck()).ok, true);
    // What was committed after the failures is the file, byte for byte.
    const out = path.join(dir, 'out-fits');
    const co = await repo.checkout('main', out);
    assert.deepEqual(co.files, ['model.safetensors']);
    assert.ok(fs.readFileSync(path.join(out, 'model.safetensors')).equals(fs.readFileSync(file())));
    assert.equal(co.bytes, fs.statSync(file()).size);
  });

  it('finds a flipped bit, names commit and tensor, and checkout writes nothing', async () => {
    const m = await repo.openModel(c1);
    const rec = m.record('model.layers.0.mlp.up_proj.weight');
    const chunk = repo.chunks.pathOf(rec.chunks[2].hash);
    const orig = fs.readFileSync(chunk);
    const bad = Buffer.from(orig);
    bad[bad.length - 5] ^= 0x04;
    fs.writeFileSync(chunk, bad);
    try {
      const r = await repo.fsck();
      assert.equal(r.ok, false);
      const p = r.problems.find((x) => x.commit === c1 && x.tensor === 'model.layers.0.mlp.up_proj.weight');
      assert.ok(p, JSON.stringify(r.problems));
      assert.equal(p.code, 'E_CORRUPT_CHUNK');
      assert.match(p.message, new RegExp(c1.slice(0, 12)));
      assert.match(p.message, /model\.layers\.0\.mlp\.up_proj\.weight/);
      const out = path.join(dir, 'out-corrupt');
      const err = await repo.checkout(c1, out).catch((e) => e);
      assert.equal(err.code, 'E_CORRUPT_CHUNK');
      assert.match(err.message, /up_proj/);
      assert.ok(!fs.existsSync(out));
      assert.deepEqual(
        fs.readdirSync(dir).filter((n) => n.includes('wgit-tmp')),
        [],
      );
      assert.equal(
        await codeOf((await repo.openModel(c1)).readTensor('model.layers.0.mlp.up_proj.weight')),
        'E_CORRUPT_CHUNK',
      );
    } finally {
      fs.writeFileSync(chunk, orig);
    }
    assert.equal((await repo.fsck()).ok, true);
  });

  it('refuses to check out a hostile commit whose paths escape the output folder', async () => {
    // Forge a commit whose manifest names a side file outside the folder.
    const good = await repo.show('sharded');
    const { GitStore, buildTree } = await import('../src/gitstore.js');
    const git = new GitStore(repo.gitdir, repo.tmpDir);
    const c = await git.readCommit(good.commit);
    const entries = new Map<string, string>();
    const walk = async (tree: string, prefix: string) => {
      for (const e of await git.readTree(tree)) {
        if (e.type === 'tree') await walk(e.oid, `${prefix}${e.path}/`);
        else entries.set(`${prefix}${e.path}`, e.oid);
      }
    };
    await walk(c.tree, '');
    const manifest = JSON.parse(Buffer.from(await git.readBlob(entries.get('wgit.json')!)).toString());
    manifest.files.push('../escape.txt');
    entries.set('wgit.json', await git.writeBlob(Buffer.from(JSON.stringify(manifest))));
    entries.set('files/%2E.%2Fescape.txt', await git.writeBlob(Buffer.from('pwned')));
    const tree = await buildTree(git, entries);
    const evil = await git.writeCommit({ ...c, tree, parents: [] });
    const out = path.join(dir, 'evil', 'out');
    assert.equal(await codeOf(repo.checkout(evil, out)), 'E_UNSAFE_PATH');
    assert.ok(!fs.existsSync(path.join(dir, 'evil', 'escape.txt')));
    assert.ok(!fs.existsSync(out));
  });

  it('gc frees the chunks only a deleted branch reached, and keeps the rest readable', async () => {
    const unique = model(77);
    writeFile(unique);
    const r = await repo.commit({ path: file(), branch: 'scratch', parents: [] });
    const statusBefore = await repo.status();
    await codeOf(repo.deleteBranch('main').then(() => 0)); // refuses: current branch
    assert.equal(await codeOf(repo.deleteBranch('main')), 'E_CURRENT_BRANCH');
    await repo.deleteBranch('scratch');
    fs.writeFileSync(path.join(repo.tmpDir, 'w-deadhost-999999-0123456789ab'), 'junk');
    const g = await repo.gc({ graceSeconds: 0 });
    assert.ok(g.chunksRemoved > 0);
    assert.ok(g.bytesFreed >= r.newBytes);
    assert.equal(g.tempFilesRemoved, 1);
    const statusAfter = await repo.status();
    assert.equal(statusAfter.chunks.count, statusBefore.chunks.count - g.chunksRemoved);
    const f = await repo.fsck();
    assert.equal(f.ok, true, JSON.stringify(f.problems));
    assert.equal(f.unreachableChunks, 0);
    const out = path.join(dir, 'out-after-gc');
    await repo.checkout('chain', out);
    assert.equal(
      await codeOf(repo.resolve(r.commit)),
      'no error',
      'the commit object itself stays (git objects are not pruned)',
    );
  });
});
