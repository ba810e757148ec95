import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { deflateSync } from 'node:zlib';
import { FolderBackend } from '../src/backend/fs/index.js';
import type { StorageBackend } from '../src/backend/types.js';
import { GitStore } from '../src/gitstore.js';
import { currentIdentity } from '../src/identity.js';
import { codeOf } from './helpers.js';

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** A loose git object built by hand: zlib of `blob <n>\0<content>`, named by the sha1 of the inflated bytes. */
function looseBlob(content: string): { oid: string; bytes: Uint8Array } {
  const body = Buffer.concat([Buffer.from(`blob ${Buffer.byteLength(content)}\0`), Buffer.from(content)]);
  return { oid: createHash('sha1').update(body).digest('hex'), bytes: deflateSync(body) };
}

describe('storage backend: local folder', () => {
  let dir: string;
  let gitdir: string;
  let backend: StorageBackend;
  let folder: FolderBackend;
  const identity = currentIdentity({ name: 'T', email: 't@x', date: 1700000000 });

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-'));
    gitdir = path.join(dir, '.wgit');
    fs.mkdirSync(path.join(gitdir, 'wgit', 'tmp'), { recursive: true });
    fs.mkdirSync(path.join(gitdir, 'objects'), { recursive: true });
    folder = new FolderBackend(gitdir);
    backend = folder;
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('puts a chunk if absent: the first put stores it, the second leaves it alone', async () => {
    const a = new Uint8Array([1, 2, 3, 4, 5]);
    const id = sha256(a);
    assert.equal(await backend.chunks.hasChunk(id), false);
    assert.equal(await backend.chunks.getChunk(id, 1 << 20), null);
    assert.equal(await backend.chunks.putChunkIfAbsent(id, a), true);
    assert.equal(await backend.chunks.putChunkIfAbsent(id, new Uint8Array([9, 9, 9])), false);
    assert.deepEqual(
      new Uint8Array(fs.readFileSync(path.join(gitdir, 'wgit', 'chunks', id.slice(0, 2), id.slice(2)))),
      a,
    );
    assert.deepEqual(new Uint8Array((await backend.chunks.getChunk(id, 1 << 20))!), a);
    assert.deepEqual(await backend.chunks.getChunkHead(id, 2), { head: Buffer.from([1, 2]), size: 5 });
    assert.equal(await backend.chunks.hasChunk(id), true);
    assert.equal((await backend.chunks.chunkInfo(id))?.size, 5);
    assert.deepEqual(fs.readdirSync(path.join(gitdir, 'wgit', 'tmp')), [], 'no temp file is left behind');
  });

  it('lists chunks sorted, replaces and deletes them', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const b = new Uint8Array([i, i, i]);
      ids.push(sha256(b));
      await backend.chunks.putChunkIfAbsent(sha256(b), b);
    }
    const listed = await backend.chunks.listChunks();
    assert.deepEqual(listed, [...listed].sort());
    for (const id of ids) assert.ok(listed.includes(id));
    await backend.chunks.replaceChunk(ids[0], new Uint8Array([7]));
    assert.deepEqual(new Uint8Array((await backend.chunks.getChunk(ids[0], 10))!), new Uint8Array([7]));
    await backend.chunks.deleteChunk(ids[0]);
    await backend.chunks.deleteChunk(ids[0]);
    assert.equal(await backend.chunks.hasChunk(ids[0]), false);
    assert.equal(await backend.chunks.chunkInfo(ids[0]), null);
  });

  it('refuses to read more than asked, or anything but a regular file', async () => {
    const big = new Uint8Array(4096);
    const id = sha256(big);
    await backend.chunks.putChunkIfAbsent(id, big);
    assert.equal(await codeOf(backend.chunks.getChunk(id, 100)), 'E_CORRUPT_CHUNK');
    const linkId = sha256(new Uint8Array([42]));
    fs.mkdirSync(path.dirname(folder.chunks.pathOf(linkId)), { recursive: true });
    fs.symlinkSync(folder.chunks.pathOf(id), folder.chunks.pathOf(linkId));
    assert.equal(await codeOf(backend.chunks.getChunk(linkId, 1 << 20)), 'E_CORRUPT_CHUNK');
  });

  it('puts git objects if absent, checks them, and git reads what it put', async () => {
    const { oid, bytes } = looseBlob('hello weights\n');
    assert.equal(await backend.objects.hasObject(oid), false);
    assert.equal(await backend.objects.putObjectIfAbsent(oid, bytes), true);
    assert.equal(await backend.objects.putObjectIfAbsent(oid, bytes), false);
    assert.deepEqual(new Uint8Array((await backend.objects.getObject(oid))!), new Uint8Array(bytes));
    assert.deepEqual(await backend.objects.listObjects(), [oid]);
    const git = new GitStore(gitdir, path.join(gitdir, 'wgit', 'tmp'));
    assert.equal(Buffer.from(await git.readBlob(oid)).toString(), 'hello weights\n');
    const other = looseBlob('something else');
    assert.equal(await codeOf(backend.objects.putObjectIfAbsent(oid, other.bytes)), 'E_CORRUPT');
    assert.equal(await codeOf(backend.objects.putObjectIfAbsent(other.oid, Buffer.from('not zlib'))), 'E_CORRUPT');
    assert.equal(await backend.objects.hasObject(other.oid), false);
  });

  it('moves refs by compare-and-swap, with a reflog line per move', async () => {
    const refs = backend.refs;
    const a = 'a'.repeat(40);
    const b = 'b'.repeat(40);
    const log = { message: 'test', identity };
    assert.equal(await refs.readRef('refs/heads/main'), null);
    assert.equal(await refs.compareAndSwapRef('refs/heads/main', null, a, log), null);
    assert.equal(await refs.readRef('refs/heads/main'), a);
    // Creating again, or moving from a stale value, is refused and changes nothing.
    assert.equal(await codeOf(refs.compareAndSwapRef('refs/heads/main', null, b, log)), 'E_BRANCH_MOVED');
    assert.equal(
      await codeOf(refs.compareAndSwapRef('refs/heads/main', null, b, log, { movedCode: 'E_BRANCH_EXISTS' })),
      'E_BRANCH_EXISTS',
    );
    assert.equal(await codeOf(refs.compareAndSwapRef('refs/heads/main', b, a, log)), 'E_BRANCH_MOVED');
    assert.equal(await refs.readRef('refs/heads/main'), a);
    assert.equal(await refs.compareAndSwapRef('refs/heads/main', a, b, log), a);
    assert.equal(await refs.readRef('refs/heads/main'), b);
    assert.deepEqual(
      (await refs.readReflog('refs/heads/main')).map((e) => [e.old, e.new, e.message]),
      [
        ['0'.repeat(40), a, 'test'],
        [a, b, 'test'],
      ],
    );
    await refs.compareAndSwapRef('refs/tags/v1', null, a, log);
    assert.deepEqual([...(await refs.listRefs('refs/heads/'))], [['refs/heads/main', b]]);
    assert.deepEqual([...(await refs.listRefs('refs/tags/'))], [['refs/tags/v1', a]]);
    assert.deepEqual(await refs.listReflogs(), ['refs/heads/main', 'refs/tags/v1']);
    // Deleting takes the expected value too, and drops the reflog.
    assert.equal(await codeOf(refs.compareAndSwapRef('refs/tags/v1', b, null, log)), 'E_BRANCH_MOVED');
    assert.equal(await refs.compareAndSwapRef('refs/tags/v1', a, null, log), a);
    assert.equal(await refs.readRef('refs/tags/v1'), null);
    assert.deepEqual(await refs.listReflogs(), ['refs/heads/main']);
  });
});
