// gc and fsck contracts: gc refuses to run beside a live writer and a writer
// refuses to start during gc (E_LOCKED), gc stops on damaged history without
// deleting anything, keeps chunks reachable only as delta bases, removes stale
// locks; fsck names missing and corrupt objects (E_MISSING_OBJECT, E_CORRUPT)
// and warns about leftovers without failing. Chunk ids and delta bases are
// computed here from the format's definition, not by the store.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { HOST } from '../src/fsutil.js';
import { currentIdentity } from '../src/identity.js';
import { Repository } from '../src/index.js';
import { bf16Weights, buildSafetensors, codeOf, fineTune } from './helpers.js';

const CHUNK = 4096;
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
function chunkIds(bytes: Uint8Array): string[] {
  const out: string[] = [];
  for (let off = 0; off < bytes.length; off += CHUNK) out.push(sha256(bytes.subarray(off, off + CHUNK)));
  return out;
}
/** The delta base a chunk file names, read from its bytes (offset 16, xor-zipnn only). */
function baseOf(repo: Repository, id: string): string | null {
  const file = fs.readFileSync(repo.chunks.pathOf(id));
  return file[5] === 2 ? file.toString('hex', 16, 48) : null;
}
function writeModel(dir: string, weights: Uint8Array): string {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(
    path.join(dir, 'model.safetensors'),
    buildSafetensors([{ name: 'w', dtype: 'BF16', shape: [weights.length / 2], data: weights }]),
  );
  return dir;
}
/** A loose git object's file. */
const objectFile = (repo: Repository, oid: string) => path.join(repo.gitdir, 'objects', oid.slice(0, 2), oid.slice(2));
const hostTag = HOST.replace(/[^A-Za-z0-9]/g, '_');

let dir: string;
let n = 0;
/** A process that stays alive until killed: a live pid that is not ours. */
let other: ChildProcess;
before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-gc-'));
  other = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 600000)'], { stdio: 'ignore' });
});
after(() => {
  other.kill('SIGKILL');
  fs.rmSync(dir, { recursive: true, force: true });
});

async function fresh(): Promise<{ repo: Repository; w1: Uint8Array; w2: Uint8Array; c1: string; c2: string }> {
  const repo = await Repository.init(path.join(dir, `r${n++}`), { chunkSize: CHUNK, maxDeltaDepth: 10 });
  const w1 = bf16Weights(8 * (CHUNK / 2), 1);
  const w2 = fineTune(w1, 0.5, 2);
  const c1 = (await repo.commit({ path: writeModel(path.join(repo.root, '..', `m1-${n}`), w1), message: 'base' }))
    .commit;
  const c2 = (await repo.commit({ path: writeModel(path.join(repo.root, '..', `m2-${n}`), w2), message: 'ft' })).commit;
  return { repo, w1, w2, c1, c2 };
}
/** An unreferenced chunk older than any grace period: what gc would delete. */
async function orphanChunk(repo: Repository): Promise<string> {
  const bytes = bf16Weights(CHUNK / 2, 99);
  const other = (await repo.commit({ path: writeModel(path.join(dir, `o-${n++}`), bytes), branch: 'gone' })).commit;
  assert.ok(other);
  await repo.deleteBranch('gone');
  const id = chunkIds(bytes)[0];
  const old = new Date(Date.now() - 30 * 24 * 3600 * 1000);
  fs.utimesSync(repo.chunks.pathOf(id), old, old);
  return id;
}

describe('gc and writers exclude each other', () => {
  let repo: Repository;
  beforeEach(async () => {
    ({ repo } = await fresh());
  });

  it('gc beside a running commit (another live process writing) is E_LOCKED and deletes nothing', async () => {
    const orphan = await orphanChunk(repo);
    const marker = path.join(repo.tmpDir, `active-${hostTag}-${other.pid}-0123456789ab`);
    fs.writeFileSync(marker, '');
    const chunks = (await repo.chunks.list()).sort();
    const err = await repo.gc({ graceSeconds: 0 }).then(
      () => null,
      (e) => e,
    );
    assert.equal(err?.code, 'E_LOCKED');
    assert.match(err.message, new RegExp(`pid ${other.pid}`));
    assert.deepEqual((await repo.chunks.list()).sort(), chunks);
    assert.ok(fs.existsSync(marker), "a live writer's marker stays");
    assert.equal(fs.existsSync(path.join(repo.gitdir, 'wgit', 'gc.lock')), false, 'gc let go of its lock');
    // once that writer is gone, gc runs and takes the orphan
    fs.unlinkSync(marker);
    const g = await repo.gc({ graceSeconds: 0 });
    assert.equal(g.chunksRemoved, 1);
    assert.equal(fs.existsSync(repo.chunks.pathOf(orphan)), false);
  });

  it('a commit while gc holds its lock (a live process) is E_LOCKED and moves nothing', async () => {
    const lock = path.join(repo.gitdir, 'wgit', 'gc.lock');
    fs.writeFileSync(lock, `${JSON.stringify({ pid: other.pid, host: HOST, time: Date.now() })}\n`);
    const head = await repo.resolve('main');
    const m = writeModel(path.join(dir, `c-${n++}`), bf16Weights(4 * (CHUNK / 2), 5));
    assert.equal(await codeOf(repo.commit({ path: m, message: 'during gc' })), 'E_LOCKED');
    assert.equal(await repo.resolve('main'), head);
    assert.deepEqual(fs.readdirSync(repo.tmpDir), [], 'no marker left behind');
    fs.unlinkSync(lock);
    assert.ok((await repo.commit({ path: m, message: 'after gc' })).commit);
  });
});

describe('gc on damaged history', () => {
  it('stops with E_CORRUPT, deleting nothing, when a commit of the history is missing', async () => {
    const { repo, c1 } = await fresh();
    await orphanChunk(repo);
    const chunks = (await repo.chunks.list()).sort();
    const file = objectFile(repo, c1);
    assert.ok(fs.existsSync(file), 'the base commit is a loose object');
    fs.renameSync(file, `${file}.aside`);
    try {
      const err = await repo.gc({ graceSeconds: 0 }).then(
        () => null,
        (e) => e,
      );
      assert.equal(err?.code, 'E_CORRUPT');
      assert.match(err.message, /gc stopped/);
      assert.deepEqual((await repo.chunks.list()).sort(), chunks, 'nothing deleted');
      const f = await repo.fsck();
      assert.equal(f.ok, false);
      assert.ok(
        f.problems.some((p) => p.code === 'E_MISSING_OBJECT'),
        JSON.stringify(f.problems),
      );
    } finally {
      fs.renameSync(`${file}.aside`, file);
    }
    assert.equal((await repo.fsck()).ok, true);
  });
});

describe('gc keeps delta bases', () => {
  it("keeps the chunks a kept commit's deltas need, even when no commit names them", async () => {
    const { repo, w1, w2, c2 } = await fresh();
    // Only an orphan commit with the fine-tune's tree stays: the base reaches gc through deltas alone.
    const id = currentIdentity({ date: 1700000000 });
    const tree = (await repo.git.readCommit(c2)).tree;
    const solo = await repo.git.writeCommit({ tree, parents: [], message: 'orphan\n', author: id, committer: id });
    await repo.backend.refs.compareAndSwapRef('refs/heads/solo', null, solo, { message: 'test', identity: id });
    fs.writeFileSync(path.join(repo.gitdir, 'HEAD'), 'ref: refs/heads/solo\n');
    await repo.deleteBranch('main');
    for (const log of ['logs/HEAD', 'logs/refs/heads/main']) fs.rmSync(path.join(repo.gitdir, log), { force: true });
    assert.deepEqual((await repo.reachable()).commits, new Set([solo]));

    const bases = chunkIds(w2)
      .map((c) => baseOf(repo, c))
      .filter((x): x is string => x !== null);
    assert.ok(bases.length > 0, 'the fine-tune is stored as deltas');
    for (const b of bases) assert.ok(chunkIds(w1).includes(b), 'against chunks of the base');
    // and a chunk nothing reaches, which gc must take (so it did run)
    const orphan = await orphanChunk(repo);

    const g = await repo.gc({ graceSeconds: 0 });
    for (const b of bases) assert.ok(fs.existsSync(repo.chunks.pathOf(b)), `delta base ${b.slice(0, 12)} kept`);
    assert.equal(fs.existsSync(repo.chunks.pathOf(orphan)), false);
    assert.equal(g.chunksRemoved, 1);
    const out = path.join(dir, `co-${n++}`);
    await repo.checkout('solo', out);
    assert.ok(
      fs
        .readFileSync(path.join(out, 'model.safetensors'))
        .equals(buildSafetensors([{ name: 'w', dtype: 'BF16', shape: [w2.length / 2], data: w2 }])),
    );
    assert.equal((await repo.fsck()).ok, true);
  });
});

describe('stale locks and leftovers', () => {
  it('fsck warns about a dead owner’s lock and temp file without failing; gc removes both', async () => {
    const { repo } = await fresh();
    const dead = spawn(process.execPath, ['-e', '0'], { stdio: 'ignore' });
    await new Promise((r) => dead.once('exit', r));
    const lock = path.join(repo.gitdir, 'refs', 'heads', 'main.lock');
    fs.writeFileSync(lock, `${JSON.stringify({ pid: dead.pid, host: HOST, time: Date.now() })}\n`);
    const temp = `w-${hostTag}-${dead.pid}-0123456789ab`;
    fs.writeFileSync(path.join(repo.tmpDir, temp), 'partial');
    const liveLock = path.join(repo.gitdir, 'refs', 'heads', 'busy.lock');
    fs.writeFileSync(liveLock, `${JSON.stringify({ pid: other.pid, host: HOST, time: Date.now() })}\n`);

    const f = await repo.fsck();
    assert.equal(f.ok, true);
    assert.deepEqual(f.problems, []);
    assert.deepEqual(f.warnings.sort(), [
      'stale lock .wgit/refs/heads/main.lock (its process is gone; the next writer breaks it)',
      `stale temp file .wgit/wgit/tmp/${temp} (wgit gc removes it)`,
    ]);
    const g = await repo.gc();
    assert.equal(g.locksRemoved, 1);
    assert.equal(g.tempFilesRemoved, 1);
    assert.equal(fs.existsSync(lock), false);
    assert.ok(fs.existsSync(liveLock), "a live process's lock stays");
    fs.unlinkSync(liveLock);
    assert.deepEqual((await repo.fsck()).warnings, []);
  });
});

describe('fsck finds damage', () => {
  it('E_CORRUPT for an object whose bytes do not match its id; E_MISSING_OBJECT for one that is gone', async () => {
    const { repo, c2 } = await fresh();
    const tree = (await repo.git.readCommit(c2)).tree;
    const file = objectFile(repo, tree);
    const orig = fs.readFileSync(file);
    fs.chmodSync(file, 0o644);
    // another valid object's bytes under this id: readable, but not what the id names
    fs.writeFileSync(file, fs.readFileSync(objectFile(repo, c2)));
    let f = await repo.fsck();
    assert.equal(f.ok, false);
    assert.ok(
      f.problems.some((p) => p.code === 'E_CORRUPT' && p.commit === c2),
      JSON.stringify(f.problems),
    );
    fs.unlinkSync(file);
    f = await repo.fsck();
    assert.ok(
      f.problems.some((p) => p.code === 'E_MISSING_OBJECT' && p.commit === c2),
      JSON.stringify(f.problems),
    );
    fs.writeFileSync(file, orig);
    assert.equal((await repo.fsck()).ok, true);
  });
});
