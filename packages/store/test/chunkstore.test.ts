import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { FolderChunks } from '../src/backend/fs/chunks.js';
import { parseChunkHeader } from '../src/chunk-file.js';
import { ChunkStore } from '../src/chunkstore.js';
import { bf16Weights, codeOf, fineTune } from './helpers.js';

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

describe('chunk store', () => {
  let dir: string;
  let store: ChunkStore<FolderChunks>;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-'));
    fs.mkdirSync(path.join(dir, 'tmp'));
    store = ChunkStore.inFolder(path.join(dir, 'chunks'), path.join(dir, 'tmp'));
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('stores a chunk under the sha256 of its raw bytes and reads it back', async () => {
    const raw = bf16Weights(4096, 1);
    const id = sha(raw);
    const put = await store.put(id, raw, 'BF16', null, 10);
    assert.equal(put.created, true);
    assert.equal(put.depth, 0);
    assert.ok(fs.existsSync(path.join(dir, 'chunks', id.slice(0, 2), id.slice(2))));
    assert.deepEqual(await store.get(id), raw);
    assert.equal((await store.put(id, raw, 'BF16', null, 10)).created, false, 'an identical chunk is stored once');
    assert.deepEqual(await store.list(), [id]);
  });

  it('stores incompressible bytes raw, never bigger than raw plus the header', async () => {
    const raw = new Uint8Array(createHash('sha512').update('x').digest().buffer.slice(0)).slice(0, 64);
    const big = new Uint8Array(
      Buffer.concat(Array.from({ length: 64 }, (_, i) => createHash('sha512').update(String(i)).digest())),
    );
    for (const r of [raw, big]) {
      const put = await store.put(sha(r), r, 'U8', null, 10);
      assert.ok(put.stored <= r.length + 16 + 2, `${put.stored} vs ${r.length}`);
      assert.deepEqual(await store.get(sha(r)), r);
    }
  });

  it('codes a fine-tune as a delta against its base and bounds the chain', async () => {
    let prev = bf16Weights(8192, 2);
    let prevId = sha(prev);
    await store.put(prevId, prev, 'BF16', null, 3);
    const depths: number[] = [];
    for (let k = 0; k < 6; k++) {
      const next = fineTune(prev, 0.02, 100 + k);
      const id = sha(next);
      const h = await store.readHeader(prevId);
      const put = await store.put(id, next, 'BF16', { id: prevId, raw: prev, depth: h.depth }, 3);
      depths.push(put.depth);
      assert.deepEqual(await store.get(id), next);
      prev = next;
      prevId = id;
    }
    assert.deepEqual(depths, [1, 2, 3, 0, 1, 2]);
    const h = await store.readHeader(prevId);
    assert.equal(h.encoding, 'xor-zipnn');
    assert.ok(h.fileSize < 8192 * 2 * 0.5, `delta is small: ${h.fileSize}`);
  });

  it('detects a flipped bit anywhere in a chunk file', async () => {
    const raw = bf16Weights(2048, 3);
    const id = sha(raw);
    await store.put(id, raw, 'BF16', null, 10);
    const file = store.pathOf(id);
    const orig = fs.readFileSync(file);
    for (const pos of [0, 5, 9, 20, Math.floor(orig.length / 2), orig.length - 1]) {
      const bad = Buffer.from(orig);
      bad[pos] ^= 0x10;
      fs.writeFileSync(file, bad);
      assert.equal(await codeOf(store.get(id)), 'E_CORRUPT_CHUNK', `flip at ${pos}`);
    }
    fs.writeFileSync(file, orig.subarray(0, orig.length - 3));
    assert.equal(await codeOf(store.get(id)), 'E_CORRUPT_CHUNK', 'truncated');
    fs.unlinkSync(file);
    assert.equal(await codeOf(store.get(id)), 'E_MISSING_CHUNK');
  });

  it('fails a delta whose base is damaged', async () => {
    const base = bf16Weights(2048, 4);
    const next = fineTune(base, 0.01, 5);
    await store.put(sha(base), base, 'BF16', null, 10);
    const put = await store.put(sha(next), next, 'BF16', { id: sha(base), raw: base, depth: 0 }, 10);
    assert.equal(put.encoding, 'xor-zipnn');
    const bf = store.pathOf(sha(base));
    const b = fs.readFileSync(bf);
    b[b.length - 1] ^= 1;
    fs.writeFileSync(bf, b);
    assert.equal(await codeOf(store.get(sha(next))), 'E_CORRUPT_CHUNK');
  });

  it('rejects malformed headers', () => {
    assert.throws(() => parseChunkHeader('x', new Uint8Array(8), 8), { code: 'E_CORRUPT_CHUNK' });
  });
});
