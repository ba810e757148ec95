import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { currentIdentity } from '../src/identity.js';
import { Repository, reachable } from '../src/index.js';
import { bf16Weights, buildSafetensors, fineTune, rng } from './helpers.js';

const CHUNK = 4096;
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** Chunk ids of a byte string, computed here from the format's definition (sha256 of each chunk-size slice). */
function chunkIds(bytes: Uint8Array): string[] {
  const out: string[] = [];
  for (let off = 0; off < bytes.length; off += CHUNK) out.push(sha256(bytes.subarray(off, off + CHUNK)));
  return out;
}

/** The delta base a chunk file names, read straight from its bytes (offset 16, xor-zipnn only). */
function baseOf(repo: Repository, id: string): string | null {
  const file = fs.readFileSync(repo.chunks.pathOf(id));
  return file[5] === 2 ? file.toString('hex', 16, 48) : null;
}

/** Commits, trees and blobs git itself finds from `revs` (with `--all`, every ref). */
function gitObjects(gitdir: string, revs: string[]): { commits: Set<string>; trees: Set<string>; blobs: Set<string> } {
  const ids = execFileSync('git', ['--git-dir', gitdir, 'rev-list', '--objects', '--no-object-names', ...revs], {
    encoding: 'utf8',
  });
  const typed = execFileSync('git', ['--git-dir', gitdir, 'cat-file', '--batch-check=%(objectname) %(objecttype)'], {
    input: ids,
    encoding: 'utf8',
  });
  const out = { commits: new Set<string>(), trees: new Set<string>(), blobs: new Set<string>() };
  for (const line of typed.trim().split('\n')) {
    const [oid, type] = line.split(' ');
    ({ commit: out.commits, tree: out.trees, blob: out.blobs })[type as 'commit' | 'tree' | 'blob'].add(oid);
  }
  return out;
}

function writeModel(dir: string, weights: Uint8Array, side: Uint8Array | null): void {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(
    path.join(dir, 'model.safetensors'),
    buildSafetensors([{ name: 'w', dtype: 'BF16', shape: [weights.length / 2], data: weights }]),
  );
  fs.writeFileSync(path.join(dir, 'config.json'), '{"model_type":"toy"}\n');
  if (side) fs.writeFileSync(path.join(dir, 'tokenizer.bin'), side);
}

describe('reachability', () => {
  let dir: string;
  let repo: Repository;
  let w1: Uint8Array;
  let w2: Uint8Array;
  let w3: Uint8Array;
  let sideFile: Uint8Array;
  let a: string;
  let b: string;
  let solo: string;
  let gone: string;

  before(async () => {
    process.env.WGIT_THREADS = '1';
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-'));
    repo = await Repository.init(path.join(dir, 'repo'), { chunkSize: CHUNK, maxDeltaDepth: 10 });
    w1 = bf16Weights(8 * (CHUNK / 2), 1);
    w2 = fineTune(w1, 0.5, 2);
    w3 = bf16Weights(8 * (CHUNK / 2), 3);
    // Over 1 MiB, so it is kept in the chunk store (manifest format 2).
    const r = rng(4);
    sideFile = Uint8Array.from({ length: (1 << 20) + 3000 }, () => Math.floor(r() * 256));
    writeModel(path.join(dir, 'm1'), w1, null);
    writeModel(path.join(dir, 'm2'), w2, sideFile);
    writeModel(path.join(dir, 'm3'), w3, null);
    a = (await repo.commit({ path: path.join(dir, 'm1'), message: 'base' })).commit;
    b = (await repo.commit({ path: path.join(dir, 'm2'), message: 'fine-tune' })).commit;
    // The fine-tune's tree without its parent: its deltas are the only way to the base's chunks.
    const bc = await repo.git.readCommit(b);
    const id = currentIdentity({ date: 1700000000 });
    solo = await repo.git.writeCommit({ tree: bc.tree, parents: [], message: 'orphan\n', author: id, committer: id });
    await repo.backend.refs.compareAndSwapRef('refs/heads/solo', null, solo, { message: 'test', identity: id });
    gone = (await repo.commit({ path: path.join(dir, 'm3'), branch: 'gone', message: 'doomed' })).commit;
    await repo.deleteBranch('gone');
  });
  after(() => {
    delete process.env.WGIT_THREADS;
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('follows delta chunks to bases no commit of the roots names', async () => {
    const r = await reachable(repo, [solo]);
    const own = [...chunkIds(w2), ...chunkIds(sideFile)];
    const bases = chunkIds(w2)
      .map((id) => baseOf(repo, id))
      .filter((x): x is string => x !== null);
    assert.ok(bases.length > 0, 'the fine-tune is stored as deltas');
    for (const base of bases) assert.ok(chunkIds(w1).includes(base), 'each delta is against the base model');
    assert.deepEqual([...r.chunks].sort(), [...new Set([...own, ...bases])].sort());
    assert.deepEqual(r.commits, new Set([solo]));
    const git = gitObjects(repo.gitdir, [solo]);
    assert.deepEqual(r.trees, git.trees);
    assert.deepEqual(r.blobs, git.blobs);
  });

  it('covers every ref and reflog entry, and nothing of a deleted branch', async () => {
    const r = await repo.reachable();
    assert.deepEqual(r.commits, new Set([a, b, solo]));
    const want = new Set([...chunkIds(w1), ...chunkIds(w2), ...chunkIds(sideFile)]);
    assert.deepEqual([...r.chunks].sort(), [...want].sort());
    for (const id of chunkIds(w3)) assert.ok(!r.chunks.has(id), 'a deleted branch keeps nothing');
    assert.ok(!r.commits.has(gone));
    const git = gitObjects(repo.gitdir, ['--all']);
    assert.deepEqual(r.commits, git.commits);
    assert.deepEqual(r.trees, git.trees);
    assert.deepEqual(r.blobs, git.blobs);
    // gc agrees: it removes exactly the deleted branch's own chunks.
    const before = new Set(await repo.chunks.list());
    await repo.gc({ graceSeconds: 0 });
    const left = new Set(await repo.chunks.list());
    assert.deepEqual([...left].sort(), [...want].sort());
    for (const id of chunkIds(w3)) assert.ok(before.has(id) && !left.has(id));
  });

  it('names the revisions it was given, and refuses a history it cannot read', async () => {
    const r = await repo.reachable(['main~1']);
    assert.deepEqual(r.commits, new Set([a]));
    assert.deepEqual([...r.chunks].sort(), [...new Set(chunkIds(w1))].sort());
    await assert.rejects(reachable(repo, ['0'.repeat(40)]), { code: 'E_MISSING_OBJECT' });
  });
});
