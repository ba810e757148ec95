import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  bf16Weights,
  buildSafetensors,
  fineTune,
  readTreeFiles,
  writeShardedFolder,
} from '../../packages/store/test/helpers.js';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const BIN = path.join(ROOT, 'packages', 'cli', 'bin', 'run.js');
const ENV = {
  ...process.env,
  WGIT_AUTHOR_DATE: '1700000000',
  WGIT_AUTHOR_NAME: 'Test',
  WGIT_AUTHOR_EMAIL: 'test@example.com',
};

function wgit(cwd: string, ...args: string[]): { status: number; json: any; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args, '--json'], { cwd, env: ENV, encoding: 'utf8' });
  let json: unknown = null;
  try {
    json = JSON.parse(r.stdout);
  } catch {
    assert.fail(`not JSON on stdout for ${args.join(' ')}: ${r.stdout}\n${r.stderr}`);
  }
  return { status: r.status ?? -1, json, stderr: r.stderr };
}

function tensors(seed: number, ft = 0) {
  const emb = bf16Weights(32 * 64, seed);
  const up = bf16Weights(64 * 64, seed + 1);
  return [
    { name: 'embed.weight', dtype: 'BF16', shape: [32, 64], data: ft ? fineTune(emb, 0.05, ft) : emb },
    { name: 'layers.0.up.weight', dtype: 'BF16', shape: [64, 64], data: ft ? fineTune(up, 0.05, ft + 1) : up },
    {
      name: 'layers.0.norm.weight',
      dtype: 'F32',
      shape: [64],
      data: new Uint8Array(new Float32Array(64).fill(1).buffer),
    },
  ];
}

describe('wgit history and maintenance commands (CLI)', () => {
  let dir: string;
  let repo: string;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-'));
    repo = path.join(dir, 'repo');
    fs.mkdirSync(repo);
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('runs init, commit, log, show, status, branch, tag, checkout, fsck, gc', () => {
    const init = wgit(repo, 'init', '.', '--chunk-size', '2048');
    assert.equal(init.status, 0);
    assert.equal(init.json.chunkSize, 2048);
    assert.equal(wgit(repo, 'init').json.error.code, 'E_REPO_EXISTS');

    const base = path.join(dir, 'base.safetensors');
    fs.writeFileSync(base, buildSafetensors(tensors(1)));
    const c1 = wgit(repo, 'commit', base, '-m', 'base model');
    assert.equal(c1.status, 0, c1.stderr);
    assert.equal(c1.json.tensors, 3);
    assert.equal(c1.json.rawBytes, 32 * 64 * 2 + 64 * 64 * 2 + 256);

    const ftDir = path.join(dir, 'ft');
    const ts = tensors(1, 7);
    writeShardedFolder(ftDir, [ts.slice(0, 1), ts.slice(1)], { 'config.json': '{"a":1}\n', 'tokenizer.json': '{}' });
    const c2 = wgit(repo, 'commit', ftDir, '-m', 'fine-tune', '--branch', 'ft');
    assert.equal(c2.status, 0, c2.stderr);
    assert.equal(c2.json.branch, 'ft');
    assert.ok(c2.json.newBytes < c1.json.storedBytes, 'stored as a delta against main');

    const log = wgit(repo, 'log', 'ft');
    assert.deepEqual(
      log.json.commits.map((c: { message: string }) => c.message),
      ['fine-tune', 'base model'],
    );
    assert.equal(log.json.commits[0].author, 'Test <test@example.com>');
    assert.equal(wgit(repo, 'log', '-n', '1', 'ft').json.commits.length, 1);

    const show = wgit(repo, 'show', 'ft');
    assert.equal(show.json.commit, c2.json.commit);
    assert.deepEqual(show.json.parents, [c1.json.commit]);
    assert.deepEqual(show.json.files, ['config.json', 'model.safetensors.index.json', 'tokenizer.json']);
    const up = show.json.tensors.find((t: { name: string }) => t.name === 'layers.0.up.weight');
    assert.equal(up.chunks, 4);
    assert.ok(up.encodings['xor-zipnn'] >= 1);

    const status = wgit(repo, 'status');
    assert.equal(status.json.branch, 'main');
    assert.equal(status.json.head, c1.json.commit);
    assert.ok(status.json.chunks.count > 0);
    assert.ok(status.json.chunks.storedBytes < status.json.chunks.rawBytes);

    assert.equal(wgit(repo, 'branch', 'exp', 'ft~1').json.created.commit, c1.json.commit);
    assert.deepEqual(
      wgit(repo, 'branch').json.branches.map(
        (b: { name: string; current: boolean }) => `${b.current ? '*' : ''}${b.name}`,
      ),
      ['exp', 'ft', '*main'],
    );
    assert.equal(wgit(repo, 'branch', 'main', '--delete').json.error.code, 'E_CURRENT_BRANCH');
    assert.equal(wgit(repo, 'branch', 'exp', '--delete').json.deleted.name, 'exp');
    assert.equal(wgit(repo, 'tag', 'v1', c2.json.commit.slice(0, 8)).json.created.commit, c2.json.commit);
    assert.deepEqual(wgit(repo, 'tag').json.tags, [{ name: 'v1', commit: c2.json.commit }]);

    const out = path.join(dir, 'out');
    const co = wgit(repo, 'checkout', 'v1', '--out', out);
    assert.equal(co.status, 0, co.stderr);
    const want = readTreeFiles(ftDir);
    const got = readTreeFiles(out);
    assert.deepEqual([...got.keys()].sort(), [...want.keys()].sort());
    for (const [k, v] of want) assert.ok(got.get(k)!.equals(v), k);
    const out1 = path.join(dir, 'out1');
    wgit(repo, 'checkout', 'v1^', '--out', out1);
    assert.ok(fs.readFileSync(path.join(out1, 'base.safetensors')).equals(fs.readFileSync(base)));

    const fsck = wgit(repo, 'fsck');
    assert.equal(fsck.status, 0);
    assert.equal(fsck.json.ok, true);
    assert.equal(fsck.json.commits, 2);
    const gc = wgit(repo, 'gc');
    assert.equal(gc.status, 0);
    assert.equal(gc.json.chunksRemoved, 0);

    const gitLog = execFileSync('git', ['--git-dir', path.join(repo, '.wgit'), 'log', '--format=%s', 'ft']).toString();
    assert.equal(gitLog, 'fine-tune\nbase model\n');
    execFileSync('git', ['--git-dir', path.join(repo, '.wgit'), 'fsck', '--full', '--strict'], { stdio: 'pipe' });
  });

  it('reports errors with stable codes and exit status 1', () => {
    const r = wgit(repo, 'checkout', 'nope', '--out', path.join(dir, 'x'));
    assert.equal(r.status, 1);
    assert.equal(r.json.error.code, 'E_UNKNOWN_REVISION');
    const notModel = path.join(dir, 'empty-folder');
    fs.mkdirSync(notModel);
    fs.writeFileSync(path.join(notModel, 'notes.txt'), 'x');
    assert.equal(wgit(repo, 'commit', notModel).json.error.code, 'E_NOT_A_MODEL');
    assert.equal(wgit(repo, 'checkout', 'main', '--out', notModel).json.error.code, 'E_OUTPUT_NOT_EMPTY');
    assert.equal(wgit(dir, 'status').json.error.code, 'E_NOT_A_REPO');
    const human = spawnSync(process.execPath, [BIN, 'show', 'zzz'], { cwd: repo, env: ENV, encoding: 'utf8' });
    assert.equal(human.status, 1);
    assert.match(human.stderr, /^wgit: error: .*\[E_UNKNOWN_REVISION\]\n$/);
  });

  it('fsck exits 1 and names the commit and tensor of a flipped bit; checkout writes nothing', () => {
    const show = wgit(repo, 'show', 'main');
    const entries = fs.readdirSync(path.join(repo, '.wgit/wgit/chunks'), { recursive: true }) as string[];
    assert.ok(entries.length > 0);
    // Flip a bit in every chunk of the base's up-projection by finding them through the store API would need
    // the library; the CLI view is enough: damage one chunk file and look for the report.
    const chunkDir = path.join(repo, '.wgit/wgit/chunks');
    const files = entries.map((e) => path.join(chunkDir, e)).filter((p) => fs.statSync(p).isFile());
    const victim = files[0];
    const orig = fs.readFileSync(victim);
    const bad = Buffer.from(orig);
    bad[bad.length - 1] ^= 0x01;
    fs.writeFileSync(victim, bad);
    try {
      const f = wgit(repo, 'fsck');
      assert.equal(f.status, 1);
      assert.equal(f.json.ok, false);
      const p = f.json.problems[0];
      assert.equal(p.code, 'E_CORRUPT_CHUNK');
      assert.ok([show.json.commit, ...show.json.parents, wgit(repo, 'show', 'ft').json.commit].includes(p.commit));
      assert.ok(typeof p.tensor === 'string' && p.message.includes(p.tensor));
      const out = path.join(dir, 'corrupt-out');
      const co = wgit(repo, 'checkout', p.commit, '--out', out);
      assert.equal(co.json.error.code, 'E_CORRUPT_CHUNK');
      assert.ok(co.json.error.message.includes(p.tensor));
      assert.ok(!fs.existsSync(out));
      assert.deepEqual(
        fs.readdirSync(dir).filter((n) => n.includes('wgit-tmp')),
        [],
      );
    } finally {
      fs.writeFileSync(victim, orig);
    }
    assert.equal(wgit(repo, 'fsck').status, 0);
  });

  it('a full disk inside the chunk workers (WGIT_TEST_WRITE_BUDGET) fails checkout with E_DISK_FULL and no temp folder', () => {
    // Runs without root: the write budget is shared with the worker threads, which stay on (2 threads).
    const r = path.join(dir, 'budget-repo');
    fs.mkdirSync(r);
    assert.equal(wgit(r, 'init', '.', '--chunk-size', '4096').status, 0);
    const file = path.join(dir, 'budget.safetensors');
    const bytes = buildSafetensors([{ name: 'w', dtype: 'BF16', shape: [64, 1024], data: bf16Weights(64 * 1024, 5) }]);
    fs.writeFileSync(file, bytes);
    const c = wgit(r, 'commit', file, '-m', 'base');
    assert.equal(c.status, 0, JSON.stringify(c.json));
    const outs = path.join(dir, 'budget-outs');
    fs.mkdirSync(outs);
    const run = (budget: number, out: string) => {
      const p = spawnSync(process.execPath, [BIN, 'checkout', 'main', '--out', path.join(outs, out), '--json'], {
        cwd: r,
        env: { ...ENV, WGIT_TEST_WRITE_BUDGET: String(budget), WGIT_THREADS: '2', WGIT_PARALLEL_MIN_BYTES: '0' },
        encoding: 'utf8',
      });
      return { status: p.status, json: JSON.parse(p.stdout || '{}') };
    };
    const fail = run(bytes.length / 2, 'half');
    assert.equal(fail.json.error?.code, 'E_DISK_FULL', JSON.stringify(fail.json));
    assert.notEqual(fail.status, 0);
    assert.deepEqual(fs.readdirSync(outs), []);
    assert.deepEqual(fs.readdirSync(path.join(r, '.wgit/wgit/tmp')), []);
    const ok = run(bytes.length, 'full');
    assert.equal(ok.status, 0, JSON.stringify(ok.json));
    assert.ok(fs.readFileSync(path.join(outs, 'full', 'budget.safetensors')).equals(bytes));
    assert.deepEqual(fs.readdirSync(outs), ['full']);
  });

  it('a really full disk (tmpfs) gives E_DISK_FULL and leaves the repository intact', (t) => {
    const mnt = path.join(dir, 'tiny');
    fs.mkdirSync(mnt);
    const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=512k', 'tmpfs', mnt], { encoding: 'utf8' });
    if (m.status !== 0) {
      t.skip(`cannot mount a tmpfs here: ${m.stderr.trim()}`);
      return;
    }
    try {
      const r = path.join(mnt, 'repo');
      fs.mkdirSync(r);
      assert.equal(wgit(r, 'init', '.', '--chunk-size', '4096').status, 0);
      const small = path.join(dir, 'small.safetensors');
      fs.writeFileSync(
        small,
        buildSafetensors([{ name: 'w', dtype: 'BF16', shape: [1024], data: bf16Weights(1024, 3) }]),
      );
      const c = wgit(r, 'commit', small, '-m', 'fits');
      assert.equal(c.status, 0, JSON.stringify(c.json));
      const big = path.join(dir, 'big.safetensors');
      const rnd = new Uint8Array(
        Buffer.concat(Array.from({ length: 40 }, (_, _i) => execFileSync('head', ['-c', '16384', '/dev/urandom']))),
      );
      fs.writeFileSync(big, buildSafetensors([{ name: 'w', dtype: 'U8', shape: [rnd.length], data: rnd }]));
      const before = fs.readFileSync(path.join(r, '.wgit/logs/refs/heads/main'));
      const fail = wgit(r, 'commit', big, '-m', 'too big');
      assert.equal(fail.json.error?.code, 'E_DISK_FULL', JSON.stringify(fail.json));
      assert.equal(wgit(r, 'status').json.head, c.json.commit);
      assert.ok(fs.readFileSync(path.join(r, '.wgit/logs/refs/heads/main')).equals(before));
      assert.deepEqual(fs.readdirSync(path.join(r, '.wgit/wgit/tmp')), []);
      const f = wgit(r, 'fsck');
      assert.equal(f.json.ok, true, JSON.stringify(f.json));
      // Checkout onto the full disk fails cleanly too.
      const filler = path.join(mnt, 'filler');
      const free = fs.statfsSync(mnt);
      fs.writeFileSync(filler, Buffer.alloc(Math.max(0, Number(free.bavail * free.bsize) - 1024)));
      const co = wgit(r, 'checkout', 'main', '--out', path.join(mnt, 'out'));
      assert.equal(co.json.error?.code, 'E_DISK_FULL', JSON.stringify(co.json));
      assert.deepEqual(
        fs.readdirSync(mnt).filter((n) => n !== 'repo' && n !== 'filler'),
        [],
      );
    } finally {
      spawnSync('umount', [mnt]);
    }
  });
});
