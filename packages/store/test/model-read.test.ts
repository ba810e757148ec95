import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Repository, type StoreModel } from '../src/index.js';
import { streamTensor } from '../src/model.js';
import type { ChunkRunner } from '../src/pool.js';
import { bf16Weights, buildSafetensors, fineTune, type RawTensor, withEnv } from './helpers.js';

process.env.WGIT_AUTHOR_DATE = '1700000000';

const CHUNK = 4096;

function baseModel(seed: number): RawTensor[] {
  return [
    { name: 'model.embed_tokens.weight', dtype: 'BF16', shape: [96, 128], data: bf16Weights(96 * 128, seed) },
    { name: 'model.layers.0.mlp.up_proj.weight', dtype: 'BF16', shape: [80, 100], data: bf16Weights(8000, seed + 1) },
    {
      name: 'model.layers.0.input_layernorm.weight',
      dtype: 'F32',
      shape: [48],
      data: new Uint8Array(new Float32Array(48).fill(1).buffer),
    },
    { name: 'lm_head.weight', dtype: 'BF16', shape: [96, 128], data: bf16Weights(96 * 128, seed + 2) },
    { name: 'empty', dtype: 'F16', shape: [0, 4], data: new Uint8Array(0) },
  ];
}

function tuned(from: RawTensor[], seed: number): RawTensor[] {
  return from.map((t, i) => ({ ...t, data: t.dtype === 'BF16' ? fineTune(t.data, 0.05, seed * 31 + i) : t.data }));
}

/** The runner a model reads through (started by its first read). */
async function runnerOf(m: StoreModel): Promise<ChunkRunner> {
  const r = (m as unknown as { runner: Promise<ChunkRunner> | null }).runner;
  assert.ok(r, 'the model reads through a chunk runner');
  return r;
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

describe('StoreModel reads tensors on the chunk worker pool', () => {
  let dir: string;
  let repo: Repository;
  let base: RawTensor[];
  let ft: RawTensor[];
  let cBase: string;
  let cFt: string;
  let restore: () => void;

  before(async () => {
    // Every model takes the worker path, with more threads than this machine may have.
    restore = withEnv({ WGIT_PARALLEL_MIN_BYTES: '0', WGIT_THREADS: '3' });
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-model-read-'));
    repo = await Repository.init(path.join(dir, 'repo'), { chunkSize: CHUNK });
    base = baseModel(1);
    ft = tuned(base, 2);
    const file = path.join(dir, 'model.safetensors');
    fs.writeFileSync(file, buildSafetensors(base));
    cBase = (await repo.commit({ path: file, message: 'base' })).commit;
    fs.writeFileSync(file, buildSafetensors(ft));
    cFt = (await repo.commit({ path: file, message: 'fine-tune' })).commit;
  });

  after(() => {
    restore();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('gives exactly the file bytes, into shared, plain and no buffers, with delta chunks', async () => {
    const m = await repo.openModel(cFt);
    try {
      const rec = m.record('model.embed_tokens.weight');
      assert.ok(rec.chunks.length > 4, 'several chunks per tensor');
      assert.ok(
        [...m.records.values()].some((r) => r.chunks.some((c) => c.encoding === 'xor-zipnn')),
        'the fine-tune is stored as deltas on the base',
      );
      for (const t of ft) {
        assert.deepEqual(await m.readTensor(t.name), t.data, t.name);
        const shared = new Uint8Array(new SharedArrayBuffer(t.data.length + 40), 24, t.data.length + 8);
        const got = await m.readTensor(t.name, shared);
        assert.ok(Buffer.from(got).equals(Buffer.from(t.data)), `${t.name} into shared memory`);
        assert.equal(got.buffer, shared.buffer);
        const plain = new Uint8Array(t.data.length + 16).subarray(8);
        assert.ok(Buffer.from(await m.readTensor(t.name, plain)).equals(Buffer.from(t.data)), `${t.name} into plain`);
      }
      assert.equal((await runnerOf(m)).threads, 3);
    } finally {
      await m.close();
    }
  });

  it('reads the same bytes on the calling thread for small models', async () => {
    const back = withEnv({ WGIT_PARALLEL_MIN_BYTES: undefined });
    try {
      const m = await repo.openModel(cFt);
      for (const t of ft) assert.deepEqual(await m.readTensor(t.name), t.data, t.name);
      assert.equal((await runnerOf(m)).threads, 1);
      await m.close();
    } finally {
      back();
    }
  });

  it('serves concurrent reads of two models, several tensors each, correctly', async () => {
    const [a, b] = await Promise.all([repo.openModel(cBase), repo.openModel(cFt)]);
    try {
      for (let round = 0; round < 3; round++) {
        const reads = [a, b].flatMap((m, i) =>
          (i === 0 ? base : ft).map(async (t) => {
            const into =
              round === 1 ? new Uint8Array(new SharedArrayBuffer(t.data.length)) : new Uint8Array(t.data.length);
            const got = round === 2 ? await m.readTensor(t.name) : await m.readTensor(t.name, into);
            return { t, got };
          }),
        );
        for (const { t, got } of await Promise.all(reads))
          assert.ok(Buffer.from(got).equals(Buffer.from(t.data)), `round ${round}: ${t.name}`);
      }
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it('reports a damaged or missing chunk with the same code, message and tensor as the streaming reader', async () => {
    const name = 'model.layers.0.mlp.up_proj.weight';
    const m = await repo.openModel(cFt);
    const rec = m.record(name);
    const id = rec.chunks[1].hash;
    const file = repo.chunks.pathOf(id);
    const orig = fs.readFileSync(file);
    const streamed = () => streamTensor(repo.chunks, m.set, rec, 255, () => {});
    try {
      const bad = Buffer.from(orig);
      bad[bad.length - 3] ^= 0x10;
      fs.writeFileSync(file, bad);
      for (const into of [undefined, new Uint8Array(new SharedArrayBuffer(rec.byteLength))]) {
        const got = await errorOf(m.readTensor(name, into));
        const want = await errorOf(streamed());
        assert.equal(got.code, 'E_CORRUPT_CHUNK');
        assert.equal(got.message, want.message);
        assert.match(got.message ?? '', new RegExp(`${cFt.slice(0, 12)}, tensor "${name.replace(/\./g, '\\.')}"`));
        assert.equal(got.data?.tensor, name);
        assert.equal(got.data?.chunk, id);
      }
      fs.rmSync(file);
      const got = await errorOf(m.readTensor(name));
      const want = await errorOf(streamed());
      assert.equal(got.code, 'E_MISSING_CHUNK');
      assert.equal(got.message, want.message);
      assert.equal(got.data?.tensor, name);
      // The other tensors still read, and the pool survives the errors.
      for (const t of ft.filter((x) => x.name !== name)) assert.deepEqual(await m.readTensor(t.name), t.data);
    } finally {
      fs.writeFileSync(file, orig);
      await m.close();
    }
    const again = await repo.openModel(cFt);
    assert.deepEqual(await again.readTensor(name), ft.find((t) => t.name === name)!.data);
    await again.close();
  });

  it('reads after close on the calling thread, and an unclosed model does not hold the process', async () => {
    const m = await repo.openModel(cBase);
    assert.deepEqual(await m.readTensor('lm_head.weight'), base[3].data);
    await m.close();
    assert.deepEqual(await m.readTensor('lm_head.weight'), base[3].data);
    // Left open on purpose: its idle workers are unreferenced, so the test process still ends.
    const open = await repo.openModel(cBase);
    assert.deepEqual(await open.readTensor('model.embed_tokens.weight'), base[0].data);
  });
});
