// A repository written by wgit before object kinds existed (manifest formats
// 1 and 2, the rmm group known only by its tensor names and JSON table) must
// read with today's code: log, show, fsck, byte-exact checkouts and recovery
// of an rmm input. The fixture and its generator are in test/fixtures.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const BIN = path.join(ROOT, 'packages', 'cli', 'bin', 'run.js');
const FIXTURES = path.join(ROOT, 'test', 'fixtures');
const expected = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'repo-v1.expected.json'), 'utf8')) as {
  commits: Record<string, string>;
  checkout: Record<string, Record<string, string>>;
  inputs: Record<string, Record<string, string>>;
  log: string[];
};

let tmp: string;
let repo: string;

function wgit(...args: string[]): any {
  const r = spawnSync(process.execPath, [BIN, ...args, '--json'], { cwd: repo, encoding: 'utf8' });
  assert.equal(r.status, 0, `wgit ${args.join(' ')}: ${r.stderr}${r.stdout}`);
  return JSON.parse(r.stdout);
}

function tree(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of fs.readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (!e.isFile()) continue;
    const full = path.join(e.parentPath, e.name);
    out[path.relative(dir, full).split(path.sep).join('/')] = createHash('sha256')
      .update(fs.readFileSync(full))
      .digest('hex');
  }
  return Object.fromEntries(Object.entries(out).sort());
}

describe('a repository written before object kinds', () => {
  before(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-v1-'));
    const t = spawnSync('tar', ['-xzf', path.join(FIXTURES, 'repo-v1.tar.gz'), '-C', tmp]);
    assert.equal(t.status, 0, String(t.stderr));
    repo = path.join(tmp, 'repo');
  });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  test('log walks the history', () => {
    const r = wgit('log', 'reversible');
    assert.deepEqual(
      r.commits.map((c: { commit: string }) => c.commit),
      expected.log,
    );
    assert.equal(wgit('log', 'v1').commits[0].commit, expected.commits.base);
  });

  test('show names each object kind, recognising the old rmm group', () => {
    const base = wgit('show', 'v1');
    assert.equal(base.object.kind, 'checkpoint');
    assert.ok(base.files.includes('tokenizer.json'));
    const merge = wgit('show', expected.commits.rmm);
    assert.equal(merge.object.kind, 'checkpoint');
    assert.deepEqual(merge.groupKinds, { rmm: 'rmm-basis' });
    const group = wgit('show', expected.commits.rmm, '--group', 'rmm');
    assert.equal(group.object.kind, 'rmm-basis');
    assert.equal(group.object.version, 0);
    assert.equal(group.object.detected, true);
    assert.equal(group.object.models, 2);
  });

  test('fsck is clean', () => {
    const r = wgit('fsck');
    assert.deepEqual(r.problems ?? [], []);
  });

  test('every commit checks out byte for byte', () => {
    for (const [name, commit] of Object.entries(expected.commits)) {
      const out = path.join(tmp, `co-${name}`);
      wgit('checkout', commit, '--out', out);
      assert.deepEqual(tree(out), expected.checkout[name], name);
    }
  });

  test('each input of the old rmm merge is recovered byte for byte', () => {
    for (const [i, name] of ['ft-a', 'ft-b'].entries()) {
      const out = path.join(tmp, `rec-${name}`);
      const r = wgit('checkout', expected.commits.rmm, '--model', String(i), '--out', out);
      assert.equal(r.exact, true);
      assert.deepEqual(tree(out), expected.inputs[name], name);
    }
  });

  test('a new rmm merge in the old repository records its kind in a format 3 manifest', () => {
    const r = wgit('merge', 'ft-a', 'ft-b', '--method', 'rmm', '--base', 'v1', '--branch', 'reversible-2');
    const group = wgit('show', r.commit, '--group', 'rmm');
    assert.equal(group.object.kind, 'rmm-basis');
    assert.equal(group.object.version, 2);
    assert.equal(group.object.detected, false);
    const manifest = spawnSync('git', ['--git-dir=.wgit', 'show', `${r.commit}:groups/rmm/wgit.json`], {
      cwd: repo,
      encoding: 'utf8',
    });
    assert.equal(manifest.status, 0, manifest.stderr);
    {
      const m = JSON.parse(manifest.stdout);
      assert.equal(m.format, 3);
      assert.deepEqual(m.object, { kind: 'rmm-basis', version: 2, meta: { inputs: 2, rank: 2 } });
      const top = JSON.parse(
        spawnSync('git', ['--git-dir=.wgit', 'show', `${r.commit}:wgit.json`], { cwd: repo, encoding: 'utf8' }).stdout,
      );
      assert.equal(top.object, undefined, 'the merged model stays a plain checkpoint');
      assert.ok(top.format < 3);
    }
    // The merged model of the new merge equals the old one, and its inputs come back the same.
    const out = path.join(tmp, 'rec2-ft-b');
    wgit('checkout', r.commit, '--model', '1', '--out', out);
    assert.deepEqual(tree(out), expected.inputs['ft-b']);
    const merged = path.join(tmp, 'co2-rmm');
    wgit('checkout', r.commit, '--out', merged);
    assert.deepEqual(tree(merged), expected.checkout.rmm);
  });
});
