/**
 * docs/getting-started.md runs as written: every `sh` block from "A
 * repository, step by step" on, in order, in one shell with `wgit` the CLI
 * of this checkout, in an empty folder. A step that fails fails the test.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const BIN = path.join(ROOT, 'packages', 'cli', 'bin', 'run.js');

describe('docs/getting-started.md', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-start-'));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('runs top to bottom as written', () => {
    const page = fs.readFileSync(path.join(ROOT, 'docs', 'getting-started.md'), 'utf8');
    const from = page.indexOf('## A repository, step by step');
    assert.ok(from > 0, 'the step-by-step section is there');
    const blocks = [...page.slice(from).matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]);
    assert.ok(blocks.length >= 3, `found ${blocks.length} sh blocks`);
    const script = [
      'set -euo pipefail',
      `wgit() { ${JSON.stringify(process.execPath)} ${JSON.stringify(BIN)} "$@"; }`,
      ...blocks.map((b, i) => `echo "## block ${i + 1}" >&2\n${b}`),
    ].join('\n');
    const env: NodeJS.ProcessEnv = { ...process.env, HOME: dir };
    delete env.WGIT_AUTHOR_NAME;
    delete env.WGIT_AUTHOR_EMAIL;
    const r = spawnSync('bash', ['-c', script], { cwd: dir, env, encoding: 'utf8', timeout: 600_000 });
    assert.equal(r.status, 0, `${r.stderr.slice(-3000)}\n${r.stdout.slice(-2000)}`);
    assert.match(r.stdout, /HEAD -> main/, 'log --graph ran');
    const author = spawnSync(
      'git',
      ['--git-dir', path.join(dir, 'work', '.wgit'), 'log', '-1', '--format=%an', 'ft-flip'],
      {
        encoding: 'utf8',
      },
    );
    assert.equal(author.stdout.trim(), 'Ada Lovelace');
  });
});
