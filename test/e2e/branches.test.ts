/**
 * Branch habits git users bring: switch [-c], reset, branch -f, commit
 * --parent, and "nothing to commit". Where refs land is read back with
 * Debian's git, not with wgit.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { bf16Weights, fineTune, writeShardedFolder } from '../../packages/store/test/helpers.js';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const BIN = path.join(ROOT, 'packages', 'cli', 'bin', 'run.js');
const ENV = { ...process.env, WGIT_AUTHOR_NAME: 'T', WGIT_AUTHOR_EMAIL: 't@x' };

let dir: string;
let repo: string;

function wgit(...args: string[]): { status: number; json: any; stdout: string } {
  const r = spawnSync(process.execPath, [BIN, ...args, '--json'], { cwd: repo, env: ENV, encoding: 'utf8' });
  return { status: r.status ?? -1, json: JSON.parse(r.stdout), stdout: r.stdout };
}
function text(...args: string[]): string {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd: repo, env: ENV, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout;
}
function git(...args: string[]): string {
  const r = spawnSync('git', ['--git-dir', path.join(repo, '.wgit'), ...args], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.trim();
}

describe('branches as git users expect', () => {
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-br-'));
    repo = path.join(dir, 'repo');
    fs.mkdirSync(repo);
    const w = bf16Weights(256, 3);
    const t = (data: Uint8Array) => [[{ name: 'w', dtype: 'BF16' as const, shape: [256], data }]];
    writeShardedFolder(path.join(dir, 'v1'), t(w), { 'config.json': '{}' });
    writeShardedFolder(path.join(dir, 'v2'), t(fineTune(w, 0.1, 4)), { 'config.json': '{}' });
    writeShardedFolder(path.join(dir, 'ft'), t(fineTune(w, 0.1, 5)), { 'config.json': '{}' });
    assert.equal(wgit('init').status, 0);
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('makes no commit when the model is what the branch holds, unless --allow-empty', () => {
    const first = wgit('commit', path.join(dir, 'v1'), '-m', 'v1');
    assert.equal(first.status, 0);
    const again = wgit('commit', path.join(dir, 'v1'), '-m', 'v1 again');
    assert.equal(again.status, 0);
    assert.equal(again.json.unchanged, true);
    assert.equal(again.json.commit, first.json.commit);
    assert.match(text('commit', path.join(dir, 'v1')), /^nothing to commit: /);
    assert.equal(git('rev-list', '--count', 'main'), '1', 'still one commit');
    const forced = wgit('commit', path.join(dir, 'v1'), '--allow-empty', '-m', 'same again');
    assert.notEqual(forced.json.commit, first.json.commit);
    assert.equal(git('rev-list', '--count', 'main'), '2');
    assert.equal(wgit('reset', 'HEAD~1').status, 0);
  });

  it('commit --parent starts a new branch where it says, not at HEAD', () => {
    const v1 = git('rev-parse', 'main');
    assert.equal(wgit('commit', path.join(dir, 'v2'), '-m', 'v2').status, 0);
    const v2 = git('rev-parse', 'main');
    const ft = wgit('commit', path.join(dir, 'ft'), '--branch', 'ft', '--parent', v1, '-m', 'ft of v1');
    assert.deepEqual(ft.json.parents, [v1]);
    assert.equal(git('rev-parse', 'ft^'), v1);
    // Without --parent a new branch starts at HEAD, and the output says so.
    const out = text('commit', path.join(dir, 'ft'), '--branch', 'ft-on-head', '-m', 'x');
    assert.match(out, new RegExp(`new branch ft-on-head starts from HEAD \\(${v2.slice(0, 12)}\\)`));
  });

  it('switch and switch -c move HEAD; errors name what is wrong', () => {
    const v2 = git('rev-parse', 'main');
    const c = wgit('switch', '-c', 'exp', 'main~1');
    assert.equal(c.status, 0);
    assert.equal(git('symbolic-ref', 'HEAD'), 'refs/heads/exp');
    assert.equal(git('rev-parse', 'exp'), git('rev-parse', 'main~1'));
    assert.equal(wgit('switch', 'main').status, 0);
    assert.equal(git('symbolic-ref', 'HEAD'), 'refs/heads/main');
    assert.equal(git('rev-parse', 'HEAD'), v2);
    assert.equal(wgit('switch', 'nope').json.error.code, 'E_UNKNOWN_REVISION');
    assert.equal(wgit('switch', '-c', 'exp').json.error.code, 'E_BRANCH_EXISTS');
    assert.equal(wgit('switch', '-c', 'bad..name').json.error.code, 'E_BAD_REF_NAME');
    assert.equal(git('symbolic-ref', 'HEAD'), 'refs/heads/main', 'a refused switch leaves HEAD');
  });

  it('reset moves the current branch and keeps the old head in the reflog; branch -f moves another', () => {
    const before = git('rev-parse', 'main');
    const r = wgit('reset', '--hard', 'main~1');
    assert.equal(r.status, 0);
    assert.equal(r.json.previous, before);
    assert.equal(git('rev-parse', 'main'), git('rev-parse', `${before}~1`));
    assert.match(git('reflog', 'show', 'main'), /reset: moving to main~1/);
    assert.equal(git('rev-parse', 'main@{1}'), before, 'the old head is one reflog step back');

    const f = wgit('branch', '-f', 'exp', before);
    assert.equal(f.status, 0);
    assert.equal(git('rev-parse', 'exp'), before);
    assert.equal(wgit('branch', '-f', 'main', before).json.error.code, 'E_CURRENT_BRANCH');
    assert.equal(wgit('branch', '-f', 'made-by-f', before).status, 0, '-f creates a missing branch');
    assert.equal(git('rev-parse', 'made-by-f'), before);
    assert.equal(wgit('fsck').status, 0);
  });

  it('gc keeps a deleted branch restorable for two weeks; --prune=now frees it', () => {
    const ftCommit = git('rev-parse', 'ft');
    const out0 = path.join(dir, 'ft-before');
    assert.equal(wgit('checkout', 'ft', '--out', out0).status, 0);
    for (const b of ['ft', 'ft-on-head']) assert.equal(wgit('branch', b, '--delete').status, 0);
    const kept = wgit('gc');
    assert.equal(kept.status, 0);
    assert.equal(kept.json.chunksRemoved, 0);
    assert.ok(kept.json.chunksYoung > 0, 'the deleted branch holds chunks nothing else does');
    assert.equal(wgit('branch', 'ft', ftCommit).status, 0, 'restored from the id the delete printed');
    const out1 = path.join(dir, 'ft-after');
    assert.equal(wgit('checkout', 'ft', '--out', out1).status, 0);
    const file = 'model-00001-of-00001.safetensors';
    assert.ok(fs.readFileSync(path.join(out1, file)).equals(fs.readFileSync(path.join(out0, file))));
    assert.equal(wgit('branch', 'ft', '--delete').status, 0);
    assert.equal(wgit('gc', '--prune=bad').json.error.code, 'E_USAGE');
    const freed = wgit('gc', '--prune=now');
    assert.ok(freed.json.chunksRemoved > 0);
    assert.equal(wgit('fsck').status, 0);
  });
});
