import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import { encodeChunkFor, sha256hex } from '../src/chunk-file.js';
import { ChunkIO, KEPT_BASES, type ReadGroupDone } from '../src/chunkio.js';
import { Repository, type StoreModel } from '../src/index.js';
import { streamTensor } from '../src/model.js';
import type { ChunkRunner } from '../src/pool.js';
import { bf16Weights, buildSafetensors, fineTune, type RawTensor, withEnv } from './helpers.js';

process.env.WGIT_AUTHOR_DATE = '1700000000';

/**
 * Revisions read together (a merge's inputs and base) share the decoding of
 * chunks at the same position: each chunk of the delta chains is decoded once
 * and each chunk handed out hashed once, and every byte still comes back as
 * committed, every damaged chunk is still reported as the plain reader
 * reports it, and the bases held stay within their bound.
 */

const CHUNK = 4096;

function baseModel(): RawTensor[] {
  return [
    // 8 full chunks
    { name: 'w', dtype: 'BF16', shape: [64, 256], data: bf16Weights(64 * 256, 11) },
    // 2 chunks, the last one short
    { name: 'v', dtype: 'BF16', shape: [40, 100], data: bf16Weights(4000, 12) },
    // the same bytes in every revision: one chunk id read by all of them
    { name: 'n', dtype: 'F32', shape: [48], data: new Uint8Array(new Float32Array(48).fill(1).buffer) },
  ];
}

function tuned(from: RawTensor[], seed: number): RawTensor[] {
  return from.map((t, i) => ({ ...t, data: t.dtype === 'BF16' ? fineTune(t.data, 0.05, seed * 31 + i) : t.data }));
}

async function errorOf(
  p: Promise<unknown>,
): Promise<{ code?: string; message?: string; data?: Record<string, unknown> }> {
  try {
    await p;
  } catch (e) {
    return e as { code?: string; message?: string; data?: Record<string, unknown> };
  }
  assert.fail('expected an error');
}

describe('revisions read together share the decoding of their chunks', () => {
  let dir: string;
  let repo: Repository;
  const models: Record<string, RawTensor[]> = {};
  const commits: Record<string, string> = {};
  const saved = new Map<string, Buffer>();
  let open: StoreModel[] = [];

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-shared-reads-'));
    repo = await Repository.init(path.join(dir, 'repo'), { chunkSize: CHUNK });
    models.base = baseModel();
    models.ft0 = tuned(models.base, 1);
    models.ft1 = tuned(models.ft0, 2); // two deltas deep: ft1 → ft0 → base
    models.a = tuned(models.base, 3); // two fine-tunes of the base on branches of their own
    models.b = tuned(models.base, 4);
    const file = path.join(dir, 'model.safetensors');
    const commit = async (name: string, extra: { branch?: string; parents?: string[] } = {}) => {
      fs.writeFileSync(file, buildSafetensors(models[name]));
      commits[name] = (await repo.commit({ path: file, message: name, ...extra })).commit;
    };
    await commit('base');
    await commit('ft0');
    await commit('ft1');
    await commit('a', { branch: 'a', parents: [commits.base] });
    await commit('b', { branch: 'b', parents: [commits.base] });
    for (const id of await repo.chunks.list()) saved.set(id, fs.readFileSync(repo.chunks.pathOf(id)));
  });

  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  // Every test starts from the intact store, with no revision open (their reader and its figures start afresh).
  afterEach(async () => {
    await Promise.all(open.map((m) => m.close()));
    open = [];
    for (const [id, bytes] of saved) {
      const p = repo.chunks.pathOf(id);
      fs.rmSync(p, { force: true });
      fs.writeFileSync(p, bytes);
    }
  });

  async function openAll(names: string[]): Promise<StoreModel[]> {
    const ms = await Promise.all(names.map((n) => repo.openModel(commits[n])));
    open.push(...ms);
    return ms;
  }

  /** The chunk ids of a chunk's delta chain, read from the chunk headers: the chunk, its base, …. */
  async function chainOf(id: string): Promise<string[]> {
    const out = [id];
    for (let h = await repo.chunks.readHeader(id); h.base; h = await repo.chunks.readHeader(h.base)) out.push(h.base);
    return out;
  }

  /**
   * What reading `names` together must cost: per position, each chunk of the
   * union of their chains decoded once, each distinct chunk read hashed once;
   * and what reading them one by one costs: every chain in full, every level hashed.
   */
  async function expectedWork(names: string[]): Promise<{ shared: number; hashed: number; alone: number }> {
    let shared = 0;
    let hashed = 0;
    let alone = 0;
    const recs = names.map((n) => open.find((m) => m.commit === commits[n])!);
    for (const t of models.base) {
      const chunks = recs.map((m) => m.record(t.name).chunks);
      for (let i = 0; i < chunks[0].length; i++) {
        const chains = await Promise.all(chunks.map((c) => chainOf(c[i].hash)));
        shared += new Set(chains.flat()).size;
        hashed += new Set(chunks.map((c) => c[i].hash)).size;
        alone += chains.reduce((s, c) => s + c.length, 0);
      }
    }
    return { shared, hashed, alone };
  }

  async function readTogether(ms: StoreModel[], names: string[], shared: boolean): Promise<void> {
    for (const t of models.base) {
      const got = await Promise.all(
        ms.map((m) => {
          const n = t.data.length;
          const into = shared ? new Uint8Array(new SharedArrayBuffer(n + 16), 8, n) : new Uint8Array(n + 8).subarray(8);
          return m.readTensor(t.name, into);
        }),
      );
      got.forEach((g, i) => {
        const want = models[names[i]].find((x) => x.name === t.name)!.data;
        assert.ok(Buffer.from(g).equals(Buffer.from(want)), `${names[i]}: ${t.name} as committed`);
      });
    }
  }

  for (const mode of ['worker threads', 'the calling thread'] as const) {
    describe(`on ${mode}`, () => {
      let restore: () => void;
      before(() => {
        restore = withEnv(
          mode === 'worker threads'
            ? { WGIT_PARALLEL_MIN_BYTES: '0', WGIT_THREADS: '2' }
            : { WGIT_PARALLEL_MIN_BYTES: undefined, WGIT_THREADS: undefined },
        );
      });
      after(() => restore());

      for (const [label, names] of [
        ['a two-deep chain with its parent and base (ties)', ['ft0', 'ft1', 'base']],
        ['a two-deep chain and its parent (linear)', ['ft0', 'ft1']],
        ['two fine-tunes of a common base', ['a', 'b']],
      ] as const) {
        it(`${label}: the committed bytes, each chain chunk decoded once`, async () => {
          const ms = await openAll([...names]);
          assert.equal(ms[1].record('w').chunks[0].depth, names[1] === 'ft1' ? 2 : 1);
          const want = await expectedWork([...names]);
          assert.ok(want.shared < want.alone, 'the chains overlap');
          for (const shared of [true, false]) await readTogether(ms, [...names], shared);
          const st = (await ms[0].readStats())!;
          assert.equal(st.decoded, 2 * want.shared, JSON.stringify(st));
          assert.equal(st.hashed, 2 * want.hashed, JSON.stringify(st));
          assert.ok(st.reused > 0);
          assert.deepEqual(await ms[1].readStats(), st, 'one reader for the revisions on one chunk folder');
          // No base buffer beyond the one base no read asks for (linear, and the common base), per job.
          assert.ok(st.peakBaseBytes <= CHUNK, JSON.stringify(st));
          if (mode === 'worker threads') {
            const runner = await (ms[0] as unknown as { runner: Promise<ChunkRunner> }).runner;
            assert.equal(runner.threads, 2);
            assert.ok(st.stagingBytes > 0 && st.stagingBytes <= Math.max(2, runner.window, names.length) * CHUNK);
          } else assert.equal(st.stagingBytes, 0);
        });
      }

      it('reads one by one decode every chain in full, with the same bytes', async () => {
        const names = ['ft0', 'ft1'];
        const ms = await openAll(names);
        const want = await expectedWork(names);
        for (const t of models.base) {
          for (const [i, m] of ms.entries()) {
            const got = await m.readTensor(t.name);
            assert.deepEqual(got, models[names[i]].find((x) => x.name === t.name)!.data);
          }
        }
        const st = (await ms[0].readStats())!;
        assert.equal(st.decoded, want.alone);
      });

      for (const damage of ['a flipped bit (decodes, wrong hash)', 'a damaged compressed stream'] as const) {
        it(`a base chunk with ${damage} fails every read through it, as the plain reader reports it`, async () => {
          const ms = await openAll(['ft0', 'ft1', 'base']);
          const name = 'w';
          const baseId = ms[2].record(name).chunks[3].hash;
          const p = repo.chunks.pathOf(baseId);
          const bytes = Buffer.from(saved.get(baseId)!);
          const h = await repo.chunks.readHeader(baseId);
          assert.equal(h.encoding, 'zipnn');
          // The mantissa stream is stored raw, first in the payload; the exponent stream is a zstd frame, last.
          bytes[damage.startsWith('a flipped') ? h.headerLength + 64 + 100 : bytes.length - 6] ^= 0x10;
          fs.writeFileSync(p, bytes);
          // linear (the base not read itself), then ties (read too)
          for (const n of [2, 3]) {
            const reads = ms.slice(0, n).map((m) => errorOf(m.readTensor(name)));
            const got = await Promise.all(reads);
            for (const [i, e] of got.entries()) {
              const rec = ms[i].record(name);
              const want = await errorOf(streamTensor(repo.chunks, ms[i].set, rec, 255, () => {}));
              assert.equal(e.code, 'E_CORRUPT_CHUNK');
              assert.equal(e.message, want.message);
              assert.equal(e.data?.chunk, rec.chunks[3].hash);
              assert.equal(e.data?.tensor, name);
              assert.ok(e.message?.includes(`chunk ${baseId.slice(0, 12)} is corrupt`), e.message);
              const why = damage.startsWith('a flipped') ? 'content does not match its hash' : 'cannot decode';
              assert.ok(e.message?.includes(why), e.message);
            }
          }
          // The other tensors read as committed.
          const v = await Promise.all(ms.map((m) => m.readTensor('v')));
          assert.deepEqual(v, [models.ft0[1].data, models.ft1[1].data, models.base[1].data]);
          // Once repaired, the same reader reads it.
          fs.writeFileSync(p, saved.get(baseId)!);
          const w = await Promise.all(ms.map((m) => m.readTensor(name)));
          assert.deepEqual(w, [models.ft0[0].data, models.ft1[0].data, models.base[0].data]);
        });
      }
    });
  }

  describe('one read-group job', () => {
    let folder: string;
    let io: ChunkIO;
    before(() => {
      const chunks = repo.chunks.backend as unknown as { dir: string; tmpDir: string };
      folder = chunks.dir;
      io = new ChunkIO(chunks.dir, chunks.tmpDir);
    });
    after(() => io.close());

    const run = (reads: { id: string; into: Uint8Array }[], maxDepth = 10): ReadGroupDone =>
      io.run({
        op: 'read-group',
        maxDepth,
        reads: reads.map((r) => ({
          id: r.id,
          rawLength: r.into.length,
          buffer: r.into.buffer,
          offset: r.into.byteOffset,
        })),
      });

    it('keeps at most KEPT_BASES bases beside the chain it decodes', async () => {
      // Five revisions in a line: chunks four deltas deep, whose bases no read asks for.
      let prev = models.ft1;
      const line: RawTensor[][] = [];
      const file = path.join(dir, 'line.safetensors');
      for (let k = 0; k < 2; k++) {
        prev = tuned(prev, 20 + k);
        line.push(prev);
        fs.writeFileSync(file, buildSafetensors(prev));
        await repo.commit({ path: file, message: `line ${k}`, branch: 'main' });
      }
      const head = await repo.openModel('main');
      open.push(head);
      const rec = head.record('w');
      const depth = rec.chunks[0].depth;
      assert.equal(depth, 4);
      // Eight positions, so eight unrelated chains of four bases each.
      const outs = rec.chunks.map(() => new Uint8Array(CHUNK));
      const done = run(rec.chunks.map((c, i) => ({ id: c.hash, into: outs[i] })));
      assert.deepEqual(
        done.errors,
        rec.chunks.map(() => null),
      );
      const want = line[1][0].data;
      for (const [i, o] of outs.entries()) {
        assert.ok(Buffer.from(o).equals(Buffer.from(want.subarray(i * CHUNK, (i + 1) * CHUNK))), `position ${i}`);
      }
      assert.equal(done.decoded, 5 * rec.chunks.length);
      assert.equal(done.hashed, rec.chunks.length, 'bases no read asks for are not hashed');
      assert.ok(done.peakBaseBytes <= (depth + KEPT_BASES) * CHUNK, `${done.peakBaseBytes}`);
      assert.ok(done.peakBaseBytes > KEPT_BASES * CHUNK, 'the bound is reached: later chains evict earlier bases');
      // One position's whole line in one job: each level decoded once, each read hashed once.
      const chain = await chainOf(rec.chunks[0].hash);
      const line0 = chain.map(() => new Uint8Array(CHUNK));
      const one = run(chain.map((id, i) => ({ id, into: line0[i] })));
      assert.deepEqual(
        one.errors,
        chain.map(() => null),
      );
      assert.equal(one.decoded, chain.length);
      assert.equal(one.hashed, chain.length);
      for (const [i, id] of chain.entries()) assert.equal(sha256hex(line0[i]), id);
    });

    it('hashes a chunk it decoded as a base before handing it out: a forged base is refused', () => {
      // A base whose file decodes to other bytes than its name says, and a delta on those
      // bytes that gives the right chunk: the delta is intact, the base is not.
      const truth = bf16Weights(CHUNK / 2, 77);
      const forged = new Uint8Array(truth);
      for (let i = 1; i < forged.length; i += 97) forged[i] ^= 0x40;
      const top = fineTune(truth, 0.05, 78);
      const baseId = sha256hex(truth);
      const topId = sha256hex(top);
      const put = (id: string, bytes: Uint8Array) => {
        const p = path.join(folder, id.slice(0, 2), id.slice(2));
        fs.mkdirSync(path.dirname(p), { recursive: true });
        fs.writeFileSync(p, bytes);
      };
      const b = encodeChunkFor(baseId, forged, 'BF16', null, 10);
      put(baseId, Buffer.concat([b.head, b.payload]));
      const d = encodeChunkFor(topId, top, 'BF16', { id: baseId, raw: forged, depth: 0 }, 10);
      assert.equal(d.encoding, 'xor-zipnn');
      put(topId, Buffer.concat([d.head, d.payload]));
      for (const order of [
        [topId, baseId],
        [baseId, topId],
      ]) {
        const outs = order.map(() => new Uint8Array(CHUNK));
        const done = run(order.map((id, i) => ({ id, into: outs[i] })));
        const ti = order.indexOf(topId);
        const bi = order.indexOf(baseId);
        assert.equal(done.errors[ti], null);
        assert.ok(Buffer.from(outs[ti]).equals(Buffer.from(top)));
        assert.equal(done.errors[bi]?.code, 'E_CORRUPT_CHUNK');
        assert.match(done.errors[bi]?.message ?? '', /content does not match its hash/);
      }
    });
  });
});
