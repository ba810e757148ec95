import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Repository } from '../src/index.js';
import { SIDE_FILE_BLOB_MAX } from '../src/model.js';
import { bf16Weights, buildSafetensors, readTreeFiles, rng } from './helpers.js';

process.env.WGIT_AUTHOR_DATE = '1700000000';

/** Text that compresses like a tokenizer file: JSON-ish lines from a small vocabulary. */
function tokenizerText(bytes: number, seed: number): Buffer {
  const r = rng(seed);
  const words = ['"merges"', '"vocab"', 'Ġthe', 'Ġof', 'ing', 'tion', '"added_tokens"', 'Ġmodel', '<|im_start|>'];
  const parts: string[] = [];
  let n = 0;
  for (let i = 0; n < bytes; i++) {
    const line = `  "${words[Math.floor(r() * words.length)]}${i}": ${Math.floor(r() * 100000)},\n`;
    parts.push(line);
    n += line.length;
  }
  return Buffer.from(parts.join('')).subarray(0, bytes);
}

describe('side files: large ones through the chunk store, small ones as git blobs', () => {
  let dir: string;
  let repo: Repository;
  let model: string;
  const big = SIDE_FILE_BLOB_MAX * 3 + 12345;
  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-side-'));
    repo = await Repository.init(path.join(dir, 'repo'), { chunkSize: 256 * 1024 });
    model = path.join(dir, 'model');
    fs.mkdirSync(path.join(model, 'sub'), { recursive: true });
    fs.writeFileSync(
      path.join(model, 'model.safetensors'),
      buildSafetensors([{ name: 'w', dtype: 'BF16', shape: [64, 64], data: bf16Weights(64 * 64, 3) }]),
    );
    fs.writeFileSync(path.join(model, 'tokenizer.json'), tokenizerText(big, 1));
    fs.writeFileSync(path.join(model, 'config.json'), '{"hidden_size": 64}\n');
    // Exactly at the limit stays a blob; one byte over is chunked.
    fs.writeFileSync(path.join(model, 'sub', 'at-limit.bin'), Buffer.alloc(SIDE_FILE_BLOB_MAX, 7));
    fs.writeFileSync(path.join(model, 'sub', 'over-limit.bin'), Buffer.alloc(SIDE_FILE_BLOB_MAX + 1, 9));
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('stores large side files as chunk records, counts every side file, and checks out byte for byte', async () => {
    const r = await repo.commit({ path: model, message: 'with tokenizer' });
    const sizes = ['model.safetensors', 'tokenizer.json', 'config.json', 'sub/at-limit.bin', 'sub/over-limit.bin'].map(
      (f) => fs.statSync(path.join(model, f)).size,
    );
    const headerAndTensor = sizes[0];
    const sideBytes = sizes.slice(1).reduce((a, b) => a + b, 0);
    // Raw bytes: tensor data plus every side file (the shard header is not counted, as before).
    assert.equal(r.rawBytes, 64 * 64 * 2 + sideBytes);
    assert.ok(headerAndTensor > 64 * 64 * 2);
    assert.ok(r.newBytes > 0 && r.newBytes <= r.storedBytes);
    // The text compresses in the chunk store; the constant file compresses to almost nothing.
    assert.ok(r.storedBytes < r.rawBytes, `${r.storedBytes} stored for ${r.rawBytes}`);

    const set = await repo.show('HEAD');
    assert.deepEqual(set.files, ['config.json', 'sub/at-limit.bin', 'sub/over-limit.bin', 'tokenizer.json']);
    // The manifest says which are chunked; plain git sees a small record where the big file was.
    const gitdir = repo.gitdir;
    const manifest = JSON.parse(execFileSync('git', ['--git-dir', gitdir, 'show', 'HEAD:wgit.json']).toString());
    assert.equal(manifest.format, 2);
    assert.deepEqual(manifest.chunkedFiles, ['sub/over-limit.bin', 'tokenizer.json']);
    const cfg = execFileSync('git', ['--git-dir', gitdir, 'show', 'HEAD:files/config.json']).toString();
    assert.equal(cfg, '{"hidden_size": 64}\n');
    const recSize = Number(execFileSync('git', ['--git-dir', gitdir, 'cat-file', '-s', 'HEAD:files/tokenizer.json']));
    assert.ok(recSize < 4096, `record of the tokenizer is ${recSize} bytes`);

    const out = path.join(dir, 'out');
    await repo.checkout('HEAD', out);
    const want = readTreeFiles(model);
    const got = readTreeFiles(out);
    assert.deepEqual([...got.keys()].sort(), [...want.keys()].sort());
    for (const [k, v] of want) assert.ok(got.get(k)!.equals(v), k);

    const m = await repo.openModel('HEAD');
    assert.ok(Buffer.from(await m.readSideFile('tokenizer.json')).equals(want.get('tokenizer.json')!));
    assert.ok(Buffer.from(await m.readSideFile('config.json')).equals(want.get('config.json')!));
  });

  it('deduplicates an unchanged side file, and gc keeps its chunks', async () => {
    fs.writeFileSync(
      path.join(model, 'model.safetensors'),
      buildSafetensors([{ name: 'w', dtype: 'BF16', shape: [64, 64], data: bf16Weights(64 * 64, 4) }]),
    );
    const r = await repo.commit({ path: model, message: 'new weights, same tokenizer' });
    // Only the new tensor's chunk is new; the 3 MiB tokenizer costs nothing again.
    assert.ok(r.newBytes < 64 * 64 * 2 + 1024, `${r.newBytes} new bytes`);
    await repo.gc({ graceSeconds: 0 });
    const f = await repo.fsck();
    assert.deepEqual(f.problems, []);
    assert.equal(f.unreachableChunks, 0);
    const out = path.join(dir, 'out2');
    await repo.checkout('HEAD~1', out);
    assert.ok(
      fs.readFileSync(path.join(out, 'tokenizer.json')).equals(fs.readFileSync(path.join(model, 'tokenizer.json'))),
    );
  });

  it('fsck names a damaged chunk of a side file, and checkout refuses it', async () => {
    const rec = (await repo.show('HEAD')).files;
    assert.ok(rec.includes('tokenizer.json'));
    const { readSideFileRecord, loadTensorSet } = await import('../src/model.js');
    const head = await repo.resolve('HEAD');
    const c = await repo.git.readCommit(head);
    const set = await loadTensorSet(repo.git, head, c.tree, null);
    const tok = await readSideFileRecord(repo.git, set, 'tokenizer.json');
    const victim = repo.chunks.pathOf(tok.chunks[1].hash);
    const orig = fs.readFileSync(victim);
    const bad = Buffer.from(orig);
    bad[bad.length - 5] ^= 0xff;
    fs.chmodSync(victim, 0o644);
    fs.writeFileSync(victim, bad);
    try {
      const f = await repo.fsck();
      assert.equal(f.ok, false);
      assert.ok(
        f.problems.some((p) => p.file === 'tokenizer.json' && p.chunk === tok.chunks[1].hash),
        JSON.stringify(f.problems),
      );
      const out = path.join(dir, 'out-bad');
      await assert.rejects(repo.checkout('HEAD', out), (e: { code?: string }) => e.code === 'E_CORRUPT_CHUNK');
      assert.ok(!fs.existsSync(out));
      // A commit of the same file rewrites the damaged chunk instead of trusting it.
      await repo.commit({ path: model, message: 'again' });
      assert.deepEqual((await repo.fsck()).problems, []);
    } finally {
      if (!fs.readFileSync(victim).equals(orig)) fs.writeFileSync(victim, orig);
    }
  });
});
