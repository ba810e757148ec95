import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const BIN = path.join(ROOT, 'packages', 'cli', 'bin', 'run.js');
const PKG = JSON.parse(fs.readFileSync(path.join(ROOT, 'packages', 'cli', 'package.json'), 'utf8'));

function wgit(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8' });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

describe('wgit (help, version, errors)', () => {
  test('--version names the package version', () => {
    const r = wgit('--version');
    assert.equal(r.status, 0);
    assert.ok(r.stdout.startsWith(`@wgit/cli/${PKG.version} `), r.stdout);
  });

  test('--help lists every command file', () => {
    const r = wgit('--help');
    assert.equal(r.status, 0);
    const commands = fs
      .readdirSync(path.join(ROOT, 'packages', 'cli', 'src', 'commands'))
      .filter((f) => f.endsWith('.ts'))
      .map((f) => f.slice(0, -3));
    assert.ok(commands.includes('inspect'));
    for (const c of commands) assert.match(r.stdout, new RegExp(`^ {2}${c} `, 'm'), `${c} missing from --help`);
  });

  test('a command help shows its usage', () => {
    const r = wgit('inspect', '--help');
    assert.equal(r.status, 0);
    assert.match(r.stdout, /\$ wgit inspect PATH/);
    assert.match(r.stdout, /--json/);
  });

  test('an unknown command is one usage error line, exit 2', () => {
    const r = wgit('frobnicate');
    assert.equal(r.status, 2);
    assert.equal(r.stdout, '');
    assert.equal(r.stderr, 'wgit: error: unknown command "frobnicate" (wgit --help lists the commands) [E_USAGE]\n');
    const j = wgit('frobnicate', '--json');
    assert.equal(j.status, 2);
    assert.equal(JSON.parse(j.stdout).error.code, 'E_USAGE');
  });

  test('an unknown flag is a usage error without a stack trace', () => {
    const r = wgit('inspect', 'x', '--no-such-flag');
    assert.equal(r.status, 2);
    assert.match(r.stderr, /^wgit: error: unknown flag --no-such-flag.*\[E_USAGE\]\n$/);
    assert.ok(!r.stderr.includes('    at '));
  });
});
