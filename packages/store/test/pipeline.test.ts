import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { JobWindow } from '../src/commit.js';
import { ChunkStore, Repository } from '../src/index.js';
import { streamTensor, type TensorSet, tensorHashOf } from '../src/model.js';
import { plannedThreads } from '../src/pool.js';
import { decodeRecord, encodeRecord, type TensorRecord } from '../src/records.js';
import { bf16Weights, buildSafetensors, codeOf, fineTune, type RawTensor, withEnv } from './helpers.js';

process.env.WGIT_AUTHOR_DATE = '1700000000';

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

const CHUNK = 4096;

/** Layers with identical norm weights, as real checkpoints have: their chunks must be stored once. */
function model(seed: number): RawTensor[] {
  const ts: RawTensor[] = [];
  for (let l = 0; l < 3; l++) {
    ts.push({ name: `layers.${l}.w`, dtype: 'BF16', shape: [40, 200], data: bf16Weights(8000, seed * 10 + l) });
    ts.push({
      name: `layers.${l}.norm`,
      dtype: 'F32',
      shape: [1500],
      data: new Uint8Array(new Float32Array(1500).fill(1).buffer),
    });
  }
  return ts;
}

/** Distinct chunk contents of a model, computed from the tensors alone. */
function expectedChunks(ts: RawTensor[]): Set<string> {
  const ids = new Set<string>();
  for (const t of ts)
    for (let off = 0; off < t.data.length; off += CHUNK) ids.add(sha(t.data.subarray(off, off + CHUNK)));
  return ids;
}

describe('chunk pipeline on worker threads', () => {
  let dir: string;
  let restore: () => void;
  const input = (name: string, ts: RawTensor[]) => {
    const f = path.join(dir, name);
    fs.writeFileSync(f, buildSafetensors(ts));
    return f;
  };
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-'));
    // Force the pool even for these small models.
    restore = withEnv({ WGIT_THREADS: '2', WGIT_PARALLEL_MIN_BYTES: '0' });
  });
  after(() => {
    restore();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('plans threads from the environment and refuses bad values', () => {
    assert.equal(plannedThreads(1), 2);
    const back = withEnv({ WGIT_PARALLEL_MIN_BYTES: '1000' });
    try {
      assert.equal(plannedThreads(999), 1);
      assert.equal(plannedThreads(1000), 2);
      process.env.WGIT_THREADS = 'lots';
      assert.throws(() => plannedThreads(1000), { code: 'E_BAD_ENV' });
    } finally {
      process.env.WGIT_THREADS = '2';
      back();
    }
  });

  it('commits the same ids as the single-threaded path, stores repeated chunks once, and checks out byte for byte', async () => {
    const ts = model(1);
    const file = input('a.safetensors', ts);
    const pooled = await Repository.init(path.join(dir, 'pooled'), { chunkSize: CHUNK });
    const c = await pooled.commit({ path: file, message: 'm' });
    assert.deepEqual(fs.readdirSync(pooled.tmpDir), [], 'no temp file or marker is left');

    const back = withEnv({ WGIT_THREADS: '1' });
    let inline: string;
    try {
      const single = await Repository.init(path.join(dir, 'single'), { chunkSize: CHUNK });
      inline = (await single.commit({ path: file, message: 'm' })).commit;
    } finally {
      back();
    }
    assert.equal(c.commit, inline);

    const want = expectedChunks(ts);
    assert.deepEqual(new Set(await pooled.chunks.list()), want);
    assert.ok(want.size < ts.reduce((a, t) => a + Math.ceil(t.data.length / CHUNK), 0), 'the norms repeat');

    const m = await pooled.openModel(c.commit);
    for (const t of ts) {
      const rec = m.record(t.name);
      const ids = [];
      for (let off = 0; off < t.data.length; off += CHUNK) ids.push(sha(t.data.subarray(off, off + CHUNK)));
      assert.deepEqual(
        rec.chunks.map((x) => x.hash),
        ids,
      );
      const concat = createHash('sha256');
      for (const id of ids) concat.update(Buffer.from(id, 'hex'));
      assert.equal(rec.format, 2);
      assert.equal(rec.sha256, concat.digest('hex'));
    }
    await m.close();

    const out = path.join(dir, 'out-a');
    await pooled.checkout(c.commit, out);
    assert.ok(fs.readFileSync(path.join(out, 'a.safetensors')).equals(fs.readFileSync(file)));
    assert.equal((await pooled.fsck()).ok, true);
  });

  it('codes a fine-tune as deltas read back through the workers', async () => {
    const base = model(2);
    const repo = await Repository.init(path.join(dir, 'ft'), { chunkSize: CHUNK, maxDeltaDepth: 2 });
    await repo.commit({ path: input('ft.safetensors', base), message: 'base' });
    let cur = base;
    for (let k = 0; k < 3; k++) {
      cur = cur.map((t, i) => (t.dtype === 'BF16' ? { ...t, data: fineTune(t.data, 0.02, 50 + 10 * k + i) } : t));
      const c = await repo.commit({ path: input('ft.safetensors', cur), message: `ft${k}` });
      const show = await repo.show(c.commit);
      const w = show.tensors.find((t) => t.name === 'layers.0.w')!;
      // Depth 1, then 2, then the chain is at maxDeltaDepth and the chunk is stored whole.
      assert.equal(w.maxDepth, [1, 2, 0][k]);
      assert.equal(w.encodings['xor-zipnn'] ?? 0, k < 2 ? w.chunks : 0, JSON.stringify(w.encodings));
      const out = path.join(dir, `out-ft${k}`);
      await repo.checkout(c.commit, out);
      assert.ok(fs.readFileSync(path.join(out, 'ft.safetensors')).equals(buildSafetensors(cur)));
    }
  });

  it('reports a corrupt chunk met by a worker with its tensor, and writes no output', async () => {
    const ts = model(3);
    const repo = await Repository.init(path.join(dir, 'bad'), { chunkSize: CHUNK });
    const c = await repo.commit({ path: input('bad.safetensors', ts), message: 'm' });
    const m = await repo.openModel(c.commit);
    const victim = m.record('layers.2.w').chunks[1].hash;
    await m.close();
    const file = repo.chunks.pathOf(victim);
    const orig = fs.readFileSync(file);
    const bad = Buffer.from(orig);
    bad[bad.length - 3] ^= 0x20;
    fs.writeFileSync(file, bad);
    const out = path.join(dir, 'out-bad');
    const err = await repo.checkout(c.commit, out).then(
      () => null,
      (e) => e,
    );
    assert.equal(err?.code, 'E_CORRUPT_CHUNK');
    assert.match(err.message, /layers\.2\.w/);
    assert.equal(fs.existsSync(out), false);
    assert.deepEqual(
      fs.readdirSync(dir).filter((n) => n.startsWith('.out-bad')),
      [],
    );
    fs.unlinkSync(file);
    assert.equal(await codeOf(repo.checkout(c.commit, out)), 'E_MISSING_CHUNK');
    fs.writeFileSync(file, orig);
    await repo.checkout(c.commit, out);
  });

  it('a commit failing inside a worker leaves the repository as it was', async () => {
    const repo = await Repository.init(path.join(dir, 'fail'), { chunkSize: CHUNK });
    const first = await repo.commit({ path: input('f1.safetensors', model(4)), message: 'one' });
    const chunksBefore = await repo.chunks.list();
    // A file where a fan-out folder would be: the worker's lookup of any chunk there fails (ENOTDIR).
    const blockers: string[] = [];
    for (let i = 0; i < 256; i++) {
      const fan = path.join(repo.chunks.backend.dir, i.toString(16).padStart(2, '0'));
      if (!fs.existsSync(fan)) {
        fs.writeFileSync(fan, '');
        blockers.push(fan);
      }
    }
    try {
      assert.equal(await codeOf(repo.commit({ path: input('f2.safetensors', model(5)), message: 'two' })), 'E_CORRUPT');
    } finally {
      for (const b of blockers) fs.unlinkSync(b);
    }
    assert.equal(await repo.resolve('main'), first.commit);
    assert.deepEqual(fs.readdirSync(repo.tmpDir), []);
    // Chunks placed before the failure stay (another writer may use them); gc takes the unreferenced ones.
    const after = await repo.chunks.list();
    for (const id of chunksBefore) assert.ok(after.includes(id), id);
    assert.equal((await repo.fsck()).unreachableChunks, after.length - chunksBefore.length);
    await repo.gc({ graceSeconds: 0 });
    assert.deepEqual(await repo.chunks.list(), chunksBefore);
    await repo.commit({ path: path.join(dir, 'f2.safetensors'), message: 'two' });
    assert.equal((await repo.fsck()).ok, true);
  });
});

describe('tensor records', () => {
  const set: TensorSet = {
    commit: 'c'.repeat(40),
    group: null,
    tree: 't'.repeat(40),
    manifest: {} as TensorSet['manifest'],
    recordOids: new Map(),
  };

  it('hashes a tensor as the sha256 of its chunk ids', () => {
    const ids = ['ab'.repeat(32), '01'.repeat(32)];
    const want = createHash('sha256')
      .update(Buffer.from(ids[0] + ids[1], 'hex'))
      .digest('hex');
    assert.equal(tensorHashOf(ids), want);
    assert.notEqual(tensorHashOf([ids[1], ids[0]]), want, 'order matters');
  });

  it('reads format 1 records (sha256 of the raw bytes) and checks them', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-'));
    try {
      fs.mkdirSync(path.join(dir, 'tmp'));
      const store = ChunkStore.inFolder(path.join(dir, 'chunks'), path.join(dir, 'tmp'));
      const raw = bf16Weights(3000, 9);
      const ids: string[] = [];
      for (let off = 0; off < raw.length; off += CHUNK) {
        const part = raw.subarray(off, off + CHUNK);
        ids.push(sha(part));
        await store.put(sha(part), part, 'BF16', null, 4);
      }
      const rec: TensorRecord = {
        format: 1,
        name: 'w',
        dtype: 'BF16',
        shape: [3000],
        byteLength: raw.length,
        sha256: sha(raw),
        chunkSize: CHUNK,
        chunks: ids.map((hash) => ({ hash, encoding: 'zipnn', stored: 0, depth: 0 })),
      };
      const back = decodeRecord(encodeRecord(rec), 'w');
      assert.equal(back.format, 1);
      const got = Buffer.alloc(raw.length);
      await streamTensor(store, set, back, 255, (b, off) => {
        got.set(b, off);
      });
      assert.ok(got.equals(raw));
      const wrong = { ...back, sha256: sha(Buffer.from('other')) };
      assert.equal(await codeOf(streamTensor(store, set, wrong, 255, () => {})), 'E_CORRUPT');
      const v2 = { ...back, format: 2 as const };
      assert.equal(await codeOf(streamTensor(store, set, v2, 255, () => {})), 'E_CORRUPT', 'format 2 hashes ids');
      assert.throws(() => decodeRecord(encodeRecord({ ...rec, format: 3 as 2 }), 'w'), { code: 'E_CORRUPT' });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('JobWindow', () => {
  const later = <T>(ms: number, v: T, fail = false) =>
    new Promise<T>((resolve, reject) => setTimeout(() => (fail ? reject(v) : resolve(v)), ms));

  it('hands results over in submission order, whatever order the jobs finish in', async () => {
    const w = new JobWindow(3);
    const seen: number[] = [];
    for (const [i, ms] of [30, 5, 15, 1, 20, 2].entries())
      await w.submit(
        () => later(ms, i),
        (r) => seen.push(r),
      );
    await w.drain();
    assert.deepEqual(seen, [0, 1, 2, 3, 4, 5]);
  });

  it('stops at the first failure and waits for every job already started', async () => {
    const w = new JobWindow(4);
    let finished = 0;
    const slow = later(40, 1).then((v) => {
      finished++;
      return v;
    });
    await w.submit(
      () => later(5, new Error('boom'), true),
      () => {},
      (e) => Object.assign(new Error(`wrapped ${(e as Error).message}`), { code: 'E_X' }),
    );
    await w.submit(
      () => slow,
      () => {},
    );
    await assert.rejects(w.drain(), { code: 'E_X' });
    assert.equal(finished, 1, 'drain returned only after the slow job');
    await assert.rejects(
      w.submit(
        () => later(1, 2),
        () => {},
      ),
      { code: 'E_X' },
    );
    await w.settle();
  });
});
