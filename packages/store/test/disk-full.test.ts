import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Repository, setWriteBudget, writeBudgetState } from '../src/index.js';
import { bf16Weights, buildSafetensors, codeOf, fineTune, type RawTensor, withEnv } from './helpers.js';

process.env.WGIT_AUTHOR_DATE = '1700000000';

// A full disk met by checkout and commit, on the main thread and inside the
// chunk workers: the write budget (fsutil.ts) is shared memory, so chunk work
// stays on 2 worker threads while it is set.

function model(seed: number): RawTensor[] {
  return [0, 1, 2, 3].map((l) => ({
    name: `layers.${l}.w`,
    dtype: 'BF16',
    shape: [128, 256],
    data: bf16Weights(128 * 256, seed * 10 + l),
  }));
}

describe('a full disk (write budget), with chunk workers', () => {
  let dir: string;
  let repo: Repository;
  let restore: () => void;
  let commit: string;
  let fileBytes: number;
  let headerBytes: number;
  const input = () => path.join(dir, 'in', 'model.safetensors');
  /** Entries beside `out` other than `keep`: a temp folder left by a failed checkout would show here. */
  const leftovers = (keep: string[] = []) => fs.readdirSync(path.join(dir, 'outs')).filter((f) => !keep.includes(f));

  before(async () => {
    restore = withEnv({ WGIT_THREADS: '2', WGIT_PARALLEL_MIN_BYTES: '0' });
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-'));
    fs.mkdirSync(path.join(dir, 'in'));
    fs.mkdirSync(path.join(dir, 'outs'));
    const bytes = buildSafetensors(model(1));
    fs.writeFileSync(input(), bytes);
    fileBytes = bytes.length;
    headerBytes = 8 + Number(Buffer.from(bytes.buffer, bytes.byteOffset, 8).readBigUInt64LE(0));
    repo = await Repository.init(path.join(dir, 'repo'), { chunkSize: 16 << 10 });
    commit = (await repo.commit({ path: input(), message: 'base' })).commit;
  });
  after(() => {
    setWriteBudget(null);
    restore();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const failedCheckout = async (budget: number, name: string) => {
    setWriteBudget(budget);
    try {
      assert.equal(await codeOf(repo.checkout(commit, path.join(dir, 'outs', name))), 'E_DISK_FULL');
      return writeBudgetState()!;
    } finally {
      setWriteBudget(null);
    }
  };

  it('refuses the shard header written on the main thread and leaves no temp folder', async () => {
    const s = await failedCheckout(headerBytes - 1, 'a');
    assert.equal(s.refused, 1);
    assert.equal(s.refusedInWorkers, 0);
    assert.deepEqual(leftovers(), []);
    assert.deepEqual(fs.readdirSync(repo.tmpDir), []);
  });

  it('refuses a chunk a worker writes and leaves no temp folder', async () => {
    const s = await failedCheckout(headerBytes + (fileBytes - headerBytes) / 2, 'b');
    assert.ok(s.refusedInWorkers >= 1, JSON.stringify(s));
    assert.equal(s.refused, s.refusedInWorkers, 'every refusal was a worker write');
    assert.deepEqual(leftovers(), []);
    assert.deepEqual(fs.readdirSync(repo.tmpDir), []);
  });

  it('counts every byte: a budget of exactly the file checks out, one byte less does not', async () => {
    assert.equal(writeBudgetState(), null);
    await failedCheckout(fileBytes - 1, 'c');
    assert.deepEqual(leftovers(), []);
    setWriteBudget(fileBytes);
    try {
      const out = path.join(dir, 'outs', 'd');
      await repo.checkout(commit, out);
      assert.deepEqual(writeBudgetState(), { left: 0, refused: 0, refusedInWorkers: 0 });
      assert.ok(fs.readFileSync(path.join(out, 'model.safetensors')).equals(fs.readFileSync(input())));
    } finally {
      setWriteBudget(null);
    }
    assert.deepEqual(leftovers(['d']), []);
  });

  it('refuses a commit whose chunk writes (in workers) run out, and the branch stays', async () => {
    const ft = model(1).map((t, i) => ({ ...t, data: fineTune(t.data, 0.5, 40 + i) }));
    fs.writeFileSync(input(), buildSafetensors(ft));
    setWriteBudget(20 << 10);
    let s: ReturnType<typeof writeBudgetState>;
    try {
      assert.equal(await codeOf(repo.commit({ path: input(), message: 'too big' })), 'E_DISK_FULL');
      s = writeBudgetState();
    } finally {
      setWriteBudget(null);
    }
    assert.ok(s && s.refusedInWorkers >= 1, JSON.stringify(s));
    assert.equal(await repo.resolve('main'), commit);
    await repo.gc({ graceSeconds: 0 });
    assert.equal((await repo.fsck()).ok, true);
    const next = await repo.commit({ path: input(), message: 'fits' });
    assert.deepEqual((await repo.readCommit(next.commit)).parents, [commit]);
  });
});
