import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { HOST } from '../../packages/store/src/fsutil.js';
import { Repository } from '../../packages/store/src/index.js';
import { bf16Weights, buildSafetensors } from '../../packages/store/test/helpers.js';

process.env.WGIT_AUTHOR_DATE = '1700000000';
const ROOT = path.resolve(import.meta.dirname, '..', '..');
const BIN = path.join(ROOT, 'packages', 'cli', 'bin', 'run.js');

/** A process id that is certainly not running. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  return Number(r.stdout);
}

describe('wgit checkout, status and gc: output folders and partial checkouts', () => {
  let dir: string;
  let repo: Repository;
  let commit: string;
  const wgit = (...args: string[]) => {
    const r = spawnSync(process.execPath, [BIN, ...args], { cwd: repo.root, encoding: 'utf8' });
    return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
  };

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-coout-'));
    repo = await Repository.init(path.join(dir, 'repo'), { chunkSize: 1024 });
    const src = path.join(dir, 'model.safetensors');
    fs.writeFileSync(
      src,
      buildSafetensors([{ name: 'w', dtype: 'BF16', shape: [64, 16], data: bf16Weights(64 * 16, 1) }]),
    );
    commit = (await repo.commit({ path: src, message: 'm' })).commit;
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('status names a killed checkout’s folder and gc counts it', () => {
    const pid = deadPid();
    const folder = path.join(dir, `.out.wgit-tmp-${pid}-0123456789ab`);
    fs.mkdirSync(folder);
    fs.writeFileSync(path.join(folder, 'model.safetensors'), 'partial');
    fs.writeFileSync(
      path.join(repo.tmpDir, `checkout-${HOST.replace(/[^A-Za-z0-9]/g, '_')}-${pid}-000000000001`),
      JSON.stringify({ path: folder }),
    );
    const s = wgit('status');
    assert.equal(s.status, 0, s.stderr);
    assert.match(s.stdout, /Partial checkouts left by killed processes: 1 \(wgit gc removes them\)/);
    assert.ok(s.stdout.includes(folder), s.stdout);
    assert.deepEqual(JSON.parse(wgit('status', '--json').stdout).staleCheckouts, [folder]);
    const g = wgit('gc');
    assert.equal(g.status, 0, g.stderr);
    assert.match(g.stdout, /1 partial checkouts/);
    assert.ok(!fs.existsSync(folder));
    assert.equal(JSON.parse(wgit('gc', '--json').stdout).checkoutTempsRemoved, 0);
  });

  for (const model of [[], ['--model', '0']]) {
    const how = model.length ? ' (--model)' : '';
    it(`--out inside .wgit is refused${how}`, () => {
      const out = path.join(repo.gitdir, 'objects', `x${model.length}`);
      const r = wgit('checkout', commit, '--out', out, ...model, '--json');
      assert.equal(r.status, 1);
      assert.equal(JSON.parse(r.stdout).error.code, 'E_UNSAFE_PATH');
      assert.ok(!fs.existsSync(out));
    });

    it(`--out that is a dangling link is refused${how}`, () => {
      const out = path.join(dir, `dangling${model.length}`);
      fs.symlinkSync(path.join(dir, 'nowhere'), out);
      const r = wgit('checkout', commit, '--out', out, ...model);
      assert.equal(r.status, 1);
      assert.match(r.stderr, /^wgit: error: cannot use output folder .*symbolic link.* \[E_OUT_DIR\]\n$/);
    });
  }
});
