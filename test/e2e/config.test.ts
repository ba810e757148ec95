/** Who commits: WGIT_AUTHOR_*, then `wgit config` (the repository's git config), then ~/.gitconfig. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseUserSection } from '../../packages/store/src/identity.js';
import { bf16Weights, fineTune, writeShardedFolder } from '../../packages/store/test/helpers.js';

const BIN = path.resolve(import.meta.dirname, '..', '..', 'packages', 'cli', 'bin', 'run.js');
let dir: string;
let repo: string;
let home: string;

function wgit(args: string[], env: Record<string, string> = {}): { status: number; json: any } {
  const base: NodeJS.ProcessEnv = { ...process.env, HOME: home, XDG_CONFIG_HOME: path.join(home, '.config') };
  delete base.WGIT_AUTHOR_NAME;
  delete base.WGIT_AUTHOR_EMAIL;
  const r = spawnSync(process.execPath, [BIN, ...args, '--json'], {
    cwd: repo,
    env: { ...base, ...env },
    encoding: 'utf8',
  });
  return { status: r.status ?? -1, json: JSON.parse(r.stdout) };
}
const git = (...a: string[]) =>
  spawnSync('git', ['--git-dir', path.join(repo, '.wgit'), ...a], {
    encoding: 'utf8',
    env: { ...process.env, HOME: home },
  }).stdout.trim();

describe('commit authors', () => {
  let n = 0;
  const commitOne = (env: Record<string, string> = {}) => {
    const m = path.join(dir, `m${n}`);
    writeShardedFolder(
      m,
      [[{ name: 'w', dtype: 'BF16', shape: [64], data: fineTune(bf16Weights(64, 1), 0.5, n++) }]],
      {},
    );
    const r = wgit(['commit', m], env);
    assert.equal(r.status, 0, JSON.stringify(r.json));
    return git('log', '-1', '--format=%an <%ae>|%cn <%ce>', r.json.commit);
  };

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-cfg-'));
    home = path.join(dir, 'home');
    repo = path.join(dir, 'repo');
    fs.mkdirSync(home);
    fs.mkdirSync(repo);
    assert.equal(wgit(['init']).status, 0);
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('with nothing configured: the stated default', () => {
    assert.equal(commitOne(), 'wgit <wgit@localhost>|wgit <wgit@localhost>');
    assert.deepEqual(wgit(['config']).json, { name: null, email: null, source: null });
  });

  it("falls back to the user's git config", () => {
    fs.writeFileSync(
      path.join(home, '.gitconfig'),
      '[core]\n\tname = no\n[user]\n\tname = "Grace Hopper" # global\n\temail = grace@example.com\n',
    );
    assert.equal(commitOne(), 'Grace Hopper <grace@example.com>|Grace Hopper <grace@example.com>');
  });

  it('wgit config writes the repository config, which wins over the global one and which git reads', () => {
    assert.equal(wgit(['config', 'user.name', 'Ada Lovelace']).status, 0);
    assert.equal(git('config', 'user.name'), 'Ada Lovelace');
    assert.equal(wgit(['config', 'user.name']).json.name, 'Ada Lovelace');
    assert.equal(commitOne(), 'Ada Lovelace <grace@example.com>|Ada Lovelace <grace@example.com>');
    assert.equal(commitOne({ WGIT_AUTHOR_NAME: 'Env' }), 'Env <grace@example.com>|Env <grace@example.com>');
    assert.equal(wgit(['config', 'user.name', '--unset']).status, 0);
    assert.equal(commitOne(), 'Grace Hopper <grace@example.com>|Grace Hopper <grace@example.com>');
  });

  it('refuses unknown keys and values git could not store', () => {
    assert.equal(wgit(['config', 'core.bare', 'true']).json.error.code, 'E_USAGE');
    assert.equal(wgit(['config', 'user.email', 'a<b']).json.error.code, 'E_BAD_IDENTITY');
  });

  it('reads only [user], with quotes and comments', () => {
    assert.deepEqual(parseUserSection('[user "x"]\nname = sub\n[user]\n  name = "A \\"B\\"" ; c\n email=e@x\n'), {
      name: 'A "B"',
      email: 'e@x',
    });
    assert.deepEqual(parseUserSection('[user]\nname = bad<name>\n'), {});
  });
});
