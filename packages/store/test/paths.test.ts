import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { GitStore, TreeEntry } from '../src/gitstore.js';
import { Repository } from '../src/index.js';
import { sideFileTreePath } from '../src/model.js';
import { bf16Weights, type RawTensor, readTreeFiles, writeShardedFolder } from './helpers.js';

process.env.WGIT_AUTHOR_DATE = '1700000000';

async function errorOf(p: Promise<unknown>): Promise<{ code?: string; message?: string }> {
  try {
    await p;
  } catch (e) {
    return e as { code?: string; message?: string };
  }
  return { code: 'no error' };
}

function tensors(seed: number, n = 48): RawTensor[] {
  return [
    { name: 'embed.weight', dtype: 'BF16', shape: [n, 32], data: bf16Weights(n * 32, seed) },
    { name: 'norm.weight', dtype: 'F32', shape: [32], data: new Uint8Array(new Float32Array(32).fill(1).buffer) },
  ];
}

/** Every entry of a commit tree, flattened: `a/b/c` → mode and oid. */
async function flatTree(git: GitStore, tree: string): Promise<Map<string, { mode: string; oid: string }>> {
  const out = new Map<string, { mode: string; oid: string }>();
  const walk = async (oid: string, prefix: string) => {
    for (const e of await git.readTree(oid)) {
      if (e.type === 'tree') await walk(e.oid, `${prefix}${e.path}/`);
      else out.set(`${prefix}${e.path}`, { mode: e.mode, oid: e.oid });
    }
  };
  await walk(tree, '');
  return out;
}

/** Writes nested trees from flattened entries, keeping each entry's mode (links and submodules included). */
async function writeFlatTree(git: GitStore, flat: Map<string, { mode: string; oid: string }>): Promise<string> {
  const write = async (prefix: string): Promise<string> => {
    const entries: TreeEntry[] = [];
    const dirs = new Set<string>();
    for (const [p, e] of flat) {
      if (!p.startsWith(prefix)) continue;
      const rest = p.slice(prefix.length);
      const slash = rest.indexOf('/');
      if (slash >= 0) dirs.add(rest.slice(0, slash));
      else
        entries.push({
          mode: e.mode,
          path: rest,
          oid: e.oid,
          type: e.mode === '160000' ? 'commit' : 'blob',
        });
    }
    for (const d of dirs) entries.push({ mode: '040000', path: d, oid: await write(`${prefix}${d}/`), type: 'tree' });
    return git.writeTree(entries);
  };
  return write('');
}

describe('paths a hostile commit can carry', () => {
  let dir: string;
  let repo: Repository;
  let good: string;
  const evil = new Map<string, string>(); // case → commit

  /** A copy of the good commit with its manifest and tree changed, on a branch of its own. */
  async function forge(
    name: string,
    change: (
      m: { files: string[]; shards: { file: string }[] },
      tree: Map<string, { mode: string; oid: string }>,
    ) => Promise<void> | void,
  ): Promise<string> {
    const c = await repo.git.readCommit(good);
    const tree = await flatTree(repo.git, c.tree);
    const manifest = JSON.parse(Buffer.from(await repo.git.readBlob(tree.get('wgit.json')!.oid)).toString());
    await change(manifest, tree);
    tree.set('wgit.json', {
      mode: '100644',
      oid: await repo.git.writeBlob(Buffer.from(JSON.stringify(manifest))),
    });
    const commit = await repo.git.writeCommit({ ...c, tree: await writeFlatTree(repo.git, tree), parents: [] });
    await repo.createBranch(`evil-${evil.size}`, commit);
    evil.set(name, commit);
    return commit;
  }

  async function addSideFile(
    m: { files: string[] },
    tree: Map<string, { mode: string; oid: string }>,
    rel: string,
    text: string,
  ): Promise<void> {
    m.files.push(rel);
    m.files.sort();
    tree.set(sideFileTreePath(rel), { mode: '100644', oid: await repo.git.writeBlob(Buffer.from(text)) });
  }

  /** Checkout refuses with E_UNSAFE_PATH and leaves nothing: no output, no temp folder, no marker. */
  async function refused(commit: string): Promise<void> {
    const parent = fs.mkdtempSync(path.join(dir, 'co-'));
    const out = path.join(parent, 'out');
    const e = await errorOf(repo.checkout(commit, out));
    assert.equal(e.code, 'E_UNSAFE_PATH', `${e.code}: ${e.message}`);
    assert.deepEqual(fs.readdirSync(parent), []);
    assert.deepEqual(
      fs.readdirSync(repo.tmpDir).filter((n) => n.startsWith('checkout-')),
      [],
    );
  }

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-paths-'));
    repo = await Repository.init(path.join(dir, 'repo'), { chunkSize: 1024 });
    const src = path.join(dir, 'src');
    writeShardedFolder(src, [tensors(1).slice(0, 1), tensors(1).slice(1)], {
      'config.json': '{"model_type":"llama"}\n',
      'tokenizer/vocab.txt': 'a\nb\n',
    });
    good = (await repo.commit({ path: src, message: 'good' })).commit;
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('a commit carrying a .git folder is refused: no .git appears and git runs nothing', async () => {
    const planted = path.join(dir, 'fsmonitor-ran');
    const commit = await forge('.git folder', async (m, tree) => {
      await addSideFile(m, tree, '.git/HEAD', 'ref: refs/heads/main\n');
      await addSideFile(m, tree, '.git/config', `[core]\n\tfsmonitor = "touch '${planted}'"\n`);
      await addSideFile(m, tree, '.git/objects/info/packs', '\n');
      await addSideFile(m, tree, '.git/refs/heads/README', 'refs\n');
    });
    const parent = fs.mkdtempSync(path.join(dir, 'co-'));
    const out = path.join(parent, 'out');
    const e = await errorOf(repo.checkout(commit, out));
    if (fs.existsSync(path.join(out, '.git'))) {
      // What a user would meet: plain git status inside the checkout runs the planted command.
      const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('GIT_')));
      spawnSync('git', ['status'], { cwd: out, env, stdio: 'ignore' });
      assert.fail(`checkout wrote a .git folder; git status ran the planted command: ${fs.existsSync(planted)}`);
    }
    assert.equal(e.code, 'E_UNSAFE_PATH', `${e.code}: ${e.message}`);
    assert.match(e.message!, /\.git/);
    assert.deepEqual(fs.readdirSync(parent), []);
    assert.ok(!fs.existsSync(planted));
  });

  const spellings: [string, string][] = [
    ['.GIT/config', 'upper-case .git'],
    ['git~1/config', 'NTFS short name of .git'],
    ['.git./config', '.git with a trailing dot'],
    ['.git::$INDEX_ALLOCATION/config', 'NTFS stream of .git'],
    ['.g\u200cit/config', '.git with an HFS-ignorable code point'],
    ['.gitmodules', '.gitmodules'],
    ['gitmod~1', 'NTFS short name of .gitmodules'],
    ['sub/config.json.', 'a name Windows would rewrite'],
  ];
  for (const [rel, why] of spellings) {
    it(`refuses a side file through ${why} (${JSON.stringify(rel)})`, async () => {
      await refused(await forge(why, (m, tree) => addSideFile(m, tree, rel, '[core]\n')));
    });
  }

  it('refuses a shard path under .git', async () => {
    const commit = await forge('shard under .git', (m, tree) => {
      const s = m.shards[0];
      const old = s.file;
      s.file = `.git/${old}`;
      const h = tree.get(`headers/${old}`)!;
      tree.delete(`headers/${old}`);
      tree.set('headers/%2Egit%2F' + old, h);
    });
    await refused(commit);
  });

  it('refuses a side file that duplicates a shard', async () => {
    const commit = await forge('side file = shard', async (m, tree) => {
      await addSideFile(m, tree, m.shards[0].file, 'not weights');
    });
    await refused(commit);
  });

  it('refuses a side file listed twice', async () => {
    const commit = await forge('side file twice', (m) => {
      m.files.push('config.json');
    });
    await refused(commit);
  });

  it('refuses a path that is both a file and a folder', async () => {
    const commit = await forge('file and folder', async (m, tree) => {
      await addSideFile(m, tree, 'tokenizer', 'a file where a folder is');
    });
    await refused(commit);
  });

  it('refuses a symbolic link entry in the tree', async () => {
    const commit = await forge('symlink', async (_m, tree) => {
      const e = tree.get('files/config.json')!;
      tree.set('files/config.json', { mode: '120000', oid: await repo.git.writeBlob(Buffer.from('/etc/passwd')) });
      assert.ok(e);
    });
    await refused(commit);
  });

  it('refuses a submodule entry anywhere in the tree', async () => {
    const commit = await forge('submodule', (_m, tree) => {
      tree.set('files/tokenizer/vendored', { mode: '160000', oid: good });
    });
    await refused(commit);
  });

  it('fsck reports every hostile commit as E_UNSAFE_PATH, and still passes the good one', async () => {
    const f = await repo.fsck();
    assert.equal(f.ok, false);
    for (const [why, commit] of evil) {
      const p = f.problems.filter((x) => x.commit === commit);
      assert.ok(
        p.some((x) => x.code === 'E_UNSAFE_PATH'),
        `${why}: ${JSON.stringify(p)}`,
      );
    }
    assert.deepEqual(
      f.problems.filter((x) => x.commit === good),
      [],
    );
  });

  it('commit refuses a model folder with such names (dot entries are skipped, short names are not)', async () => {
    for (const rel of ['GIT~1/config', 'gitmod~1', 'notes.', 'tok /vocab.txt']) {
      const src = fs.mkdtempSync(path.join(dir, 'src-'));
      writeShardedFolder(src, [tensors(9)], { [rel]: '[core]\n' });
      const e = await errorOf(repo.commit({ path: src, branch: 'refused', message: rel }));
      assert.equal(e.code, 'E_UNSAFE_PATH', `${rel}: ${e.code}: ${e.message}`);
    }
    assert.equal(await repo.resolve('refused').catch(() => null), null);
  });

  it('a good commit still checks out', async () => {
    const out = path.join(dir, 'good-out');
    const r = await repo.checkout(good, out);
    assert.ok(r.files.includes('tokenizer/vocab.txt'));
  });
});

describe('folder links in a model folder', () => {
  let dir: string;
  let repo: Repository;
  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-links-'));
    repo = await Repository.init(path.join(dir, 'repo'), { chunkSize: 1024 });
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('refuses a symbolic link to a folder, naming the link', async () => {
    const src = path.join(dir, 'linked');
    writeShardedFolder(src, [tensors(2)], { 'sub/tokenizer.json': '{"v":1}', 'config.json': '{}' });
    fs.symlinkSync('sub', path.join(src, 'dirlink'));
    const e = await errorOf(repo.commit({ path: src, message: 'linked' }));
    assert.equal(e.code, 'E_UNSUPPORTED_FILE', `${e.code}: ${e.message}`);
    assert.match(e.message!, /dirlink/);
    assert.match(e.message!, /symbolic link to a folder/);
    assert.equal(await repo.resolve('main').catch(() => null), null);
  });

  it('a folder with real sub-folders and file links round-trips', async () => {
    const src = path.join(dir, 'real');
    writeShardedFolder(src, [tensors(3).slice(0, 1), tensors(3).slice(1)], {
      'sub/tokenizer.json': '{"v":1}',
      'sub/deeper/merges.txt': 'a b\n',
      'config.json': '{}',
    });
    fs.symlinkSync('sub/tokenizer.json', path.join(src, 'tokenizer.json'));
    const r = await repo.commit({ path: src, message: 'real' });
    const out = path.join(dir, 'real-out');
    await repo.checkout(r.commit, out);
    const want = readTreeFiles(src);
    want.set('tokenizer.json', fs.readFileSync(path.join(src, 'sub/tokenizer.json')));
    assert.deepEqual(readTreeFiles(out), want);
    assert.deepEqual([...readTreeFiles(out).keys()].sort(), [
      'config.json',
      'model-00001-of-00002.safetensors',
      'model-00002-of-00002.safetensors',
      'model.safetensors.index.json',
      'sub/deeper/merges.txt',
      'sub/tokenizer.json',
      'tokenizer.json',
    ]);
  });
});

describe('checkout output folder', () => {
  let dir: string;
  let repo: Repository;
  let commit: string;
  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-out-'));
    repo = await Repository.init(path.join(dir, 'repo'), { chunkSize: 1024 });
    const src = path.join(dir, 'src');
    writeShardedFolder(src, [tensors(4, 512).slice(0, 1), tensors(4, 512).slice(1)], { 'config.json': '{}' });
    commit = (await repo.commit({ path: src, message: 'm' })).commit;
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('--out that is a dangling symbolic link is refused clearly', async () => {
    const out = path.join(dir, 'dangling');
    fs.symlinkSync(path.join(dir, 'nowhere'), out);
    const e = await errorOf(repo.checkout(commit, out));
    assert.equal(e.code, 'E_OUT_DIR', `${e.code}: ${e.message}`);
    assert.match(e.message!, /symbolic link/);
    assert.ok(fs.lstatSync(out).isSymbolicLink());
    assert.ok(!fs.existsSync(path.join(dir, 'nowhere')));
    assert.deepEqual(
      fs.readdirSync(dir).filter((n) => n.includes('wgit-tmp')),
      [],
    );
  });

  it('--out below a dangling symbolic link is refused clearly', async () => {
    fs.symlinkSync(path.join(dir, 'nowhere2'), path.join(dir, 'dangling2'));
    const e = await errorOf(repo.checkout(commit, path.join(dir, 'dangling2', 'out')));
    assert.equal(e.code, 'E_OUT_DIR', `${e.code}: ${e.message}`);
  });

  it('--out that is a symbolic link to an empty folder writes into that folder', async () => {
    fs.mkdirSync(path.join(dir, 'target'));
    fs.symlinkSync('target', path.join(dir, 'link'));
    await repo.checkout(commit, path.join(dir, 'link'));
    assert.ok(fs.lstatSync(path.join(dir, 'link')).isSymbolicLink());
    assert.ok(fs.existsSync(path.join(dir, 'target', 'config.json')));
  });

  it('two checkouts racing to one --out: one wins, the other says so', async () => {
    const out = path.join(dir, 'raced');
    const rs = await Promise.allSettled([repo.checkout(commit, out), repo.checkout(commit, out)]);
    const ok = rs.filter((r) => r.status === 'fulfilled');
    const bad = rs.filter((r) => r.status === 'rejected').map((r) => (r as PromiseRejectedResult).reason);
    assert.equal(ok.length, 1, JSON.stringify(bad.map((e) => `${e.code}: ${e.message}`)));
    assert.equal(bad[0].code, 'E_OUTPUT_NOT_EMPTY', `${bad[0].code}: ${bad[0].message}`);
    assert.ok(fs.existsSync(path.join(out, 'config.json')));
    assert.deepEqual(
      fs.readdirSync(dir).filter((n) => n.includes('wgit-tmp')),
      [],
    );
  });

  it('the same race into an existing empty folder', async () => {
    const out = path.join(dir, 'raced-empty');
    fs.mkdirSync(out);
    const rs = await Promise.allSettled([repo.checkout(commit, out), repo.checkout(commit, out)]);
    const bad = rs.filter((r) => r.status === 'rejected').map((r) => (r as PromiseRejectedResult).reason);
    assert.equal(bad.length, 1);
    assert.equal(bad[0].code, 'E_OUTPUT_NOT_EMPTY', `${bad[0].code}: ${bad[0].message}`);
  });

  it('--out inside the .wgit folder is refused', async () => {
    for (const out of [
      path.join(repo.gitdir, 'objects', 'xx'),
      path.join(repo.gitdir, 'wgit', 'tmp', 'co'),
      path.join(repo.root, 'sub', '..', '.wgit', 'new'),
    ]) {
      const e = await errorOf(repo.checkout(commit, out));
      assert.equal(e.code, 'E_UNSAFE_PATH', `${out}: ${e.code}: ${e.message}`);
      assert.ok(!fs.existsSync(out));
    }
    fs.symlinkSync(repo.gitdir, path.join(dir, 'gitdir-link'));
    const e = await errorOf(repo.checkout(commit, path.join(dir, 'gitdir-link', 'new')));
    assert.equal(e.code, 'E_UNSAFE_PATH', `${e.code}: ${e.message}`);
    assert.ok(!fs.existsSync(path.join(repo.gitdir, 'new')));
    assert.equal((await repo.fsck()).ok, true);
  });
});
