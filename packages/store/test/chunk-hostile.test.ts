import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { Repository } from '../src/index.js';
import { bf16Weights, buildSafetensors, fineTune } from './helpers.js';

process.env.WGIT_AUTHOR_DATE = '1700000000';

const CHUNK = 4096;

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'no error';
  } catch (e) {
    return (e as { code?: string }).code ?? String(e);
  }
}

/**
 * What sits at a chunk's path is not to be trusted: a damaged file under
 * the right name, a FIFO, a link to a device, a delta whose depth byte lies.
 * Each must be reported by name, never hang, never read unbounded, and never
 * be reused by a new commit.
 */
describe('hostile and damaged chunk files', () => {
  let dir: string;
  let repo: Repository;
  let baseFile: string;
  let ftFile: string;
  let baseCommit: string;
  let ftCommit: string;
  const saved = new Map<string, Buffer>();

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-hostile-'));
    repo = await Repository.init(path.join(dir, 'repo'), { chunkSize: CHUNK, maxDeltaDepth: 4 });
    const base = bf16Weights(64 * 256, 1);
    baseFile = path.join(dir, 'base.safetensors');
    ftFile = path.join(dir, 'ft.safetensors');
    fs.writeFileSync(baseFile, buildSafetensors([{ name: 'w', dtype: 'BF16', shape: [64, 256], data: base }]));
    fs.writeFileSync(
      ftFile,
      buildSafetensors([{ name: 'w', dtype: 'BF16', shape: [64, 256], data: fineTune(base, 0.02, 7) }]),
    );
    baseCommit = (await repo.commit({ path: baseFile, message: 'base' })).commit;
    ftCommit = (await repo.commit({ path: ftFile, message: 'ft' })).commit;
    for (const id of await repo.chunks.list()) saved.set(id, fs.readFileSync(repo.chunks.pathOf(id)));
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  // Every test starts from the intact store.
  beforeEach(() => {
    for (const [id, bytes] of saved) {
      const p = repo.chunks.pathOf(id);
      fs.rmSync(p, { force: true });
      fs.writeFileSync(p, bytes);
    }
  });

  const recordOf = async (rev: string) => (await repo.openModel(rev)).record('w');

  /** A delta chunk of the fine-tune and its base chunk. */
  async function deltaPair(): Promise<{ delta: string; base: string }> {
    const rec = await recordOf(ftCommit);
    const d = rec.chunks.find((c) => c.encoding === 'xor-zipnn');
    assert.ok(d, 'the fine-tune has delta chunks');
    const h = await repo.chunks.readHeader(d.hash);
    return { delta: d.hash, base: h.base! };
  }

  it('a corrupt chunk under the right name is not reused: the new commit rewrites it and checks out', async () => {
    const rec = await recordOf(baseCommit);
    const victim = rec.chunks[2].hash;
    const p = repo.chunks.pathOf(victim);
    const bad = Buffer.from(fs.readFileSync(p));
    bad[bad.length - 3] ^= 0x55;
    fs.writeFileSync(p, bad);
    assert.equal(await codeOf(repo.checkout(baseCommit, path.join(dir, 'x1'))), 'E_CORRUPT_CHUNK');
    // The same bytes committed again: the damaged file must be replaced, not trusted.
    const again = await repo.commit({ path: baseFile, branch: 'recommit', message: 'again' });
    const out = path.join(dir, 'recommitted');
    await repo.checkout(again.commit, out);
    assert.ok(fs.readFileSync(path.join(out, 'base.safetensors')).equals(fs.readFileSync(baseFile)));
    // And with it the old commit reads again: same chunk id, now intact.
    assert.deepEqual((await repo.fsck()).problems, []);
    await repo.deleteBranch('recommit');
  });

  it('a truncated chunk file and one with a wrong header are rewritten too', async () => {
    const rec = await recordOf(baseCommit);
    fs.writeFileSync(
      repo.chunks.pathOf(rec.chunks[0].hash),
      fs.readFileSync(repo.chunks.pathOf(rec.chunks[0].hash)).subarray(0, 20),
    );
    fs.writeFileSync(repo.chunks.pathOf(rec.chunks[1].hash), Buffer.from('not a chunk at all'));
    const again = await repo.commit({ path: baseFile, branch: 'recommit2', message: 'again' });
    const out = path.join(dir, 'recommitted2');
    await repo.checkout(again.commit, out);
    assert.ok(fs.readFileSync(path.join(out, 'base.safetensors')).equals(fs.readFileSync(baseFile)));
    await repo.deleteBranch('recommit2');
  });

  it('a FIFO at a chunk path is reported by fsck, checkout and gc without hanging', { timeout: 30000 }, async () => {
    const rec = await recordOf(baseCommit);
    const p = repo.chunks.pathOf(rec.chunks[1].hash);
    fs.rmSync(p);
    execFileSync('mkfifo', [p]);
    const f = await repo.fsck();
    assert.equal(f.ok, false);
    const prob = f.problems.find((x) => x.chunk === rec.chunks[1].hash);
    assert.ok(prob, JSON.stringify(f.problems));
    assert.match(prob.message, /not a regular file/);
    assert.ok(prob.message.includes(rec.chunks[1].hash.slice(2)), 'the message names the path');
    assert.equal(await codeOf(repo.checkout(baseCommit, path.join(dir, 'x2'))), 'E_CORRUPT_CHUNK');
    // gc walks chunk headers to find delta bases: it must not block on the FIFO either, and stops.
    assert.equal(await codeOf(repo.gc({ graceSeconds: 0 })), 'E_CORRUPT');
    // A new commit of the same bytes replaces the FIFO with a real chunk.
    await repo.commit({ path: baseFile, branch: 'after-fifo', message: 'again' });
    assert.ok(fs.lstatSync(p).isFile());
    await repo.deleteBranch('after-fifo');
  });

  it('a symbolic link to /dev/zero at a chunk path is refused, not read', { timeout: 30000 }, async () => {
    const rec = await recordOf(baseCommit);
    const p = repo.chunks.pathOf(rec.chunks[0].hash);
    fs.rmSync(p);
    fs.symlinkSync('/dev/zero', p);
    const f = await repo.fsck();
    const prob = f.problems.find((x) => x.chunk === rec.chunks[0].hash);
    assert.ok(prob, JSON.stringify(f.problems));
    assert.match(prob.message, /symbolic link/);
    assert.equal(await codeOf(repo.checkout(baseCommit, path.join(dir, 'x3'))), 'E_CORRUPT_CHUNK');
    const m = await repo.openModel(baseCommit);
    assert.equal(await codeOf(m.readTensor('w')), 'E_CORRUPT_CHUNK');
  });

  it('an oversized regular file at a chunk path is refused before it is read', async () => {
    const rec = await recordOf(baseCommit);
    const p = repo.chunks.pathOf(rec.chunks[0].hash);
    fs.writeFileSync(p, Buffer.alloc(CHUNK * 4));
    const f = await repo.fsck();
    const prob = f.problems.find((x) => x.chunk === rec.chunks[0].hash);
    assert.ok(prob && /larger/.test(prob.message), JSON.stringify(f.problems));
  });

  it('a damaged delta-depth byte is blamed on the delta chunk, not on its intact base', async () => {
    const { delta, base } = await deltaPair();
    const p = repo.chunks.pathOf(delta);
    const bytes = Buffer.from(fs.readFileSync(p));
    bytes[6] = bytes[6] + 2; // depth byte: no longer one more than the base's
    fs.writeFileSync(p, bytes);
    const f = await repo.fsck();
    assert.ok(f.problems.length > 0);
    for (const prob of f.problems) {
      assert.equal(prob.chunk, delta, JSON.stringify(prob));
      assert.ok(!prob.message.includes(`chunk ${base.slice(0, 12)} is corrupt`), prob.message);
    }
    const out = path.join(dir, 'x4');
    await assert.rejects(
      repo.checkout(ftCommit, out),
      (e: { code?: string; message: string; data?: { chunk?: string } }) => {
        assert.equal(e.code, 'E_CORRUPT_CHUNK');
        assert.ok(e.message.includes(delta.slice(0, 12)), e.message);
        assert.ok(!e.message.includes(`chunk ${base.slice(0, 12)} is corrupt`), e.message);
        return true;
      },
    );
    // The base itself still reads.
    await repo.checkout(baseCommit, path.join(dir, 'x5'));
  });
});
