/**
 * The CLI against hostile or careless input, through the built binary: a
 * reader that closes stdout early, names that carry terminal escapes and
 * bidi overrides, config paths that are not small regular files, numbers
 * and dates outside the documented forms.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { bf16Weights, buildSafetensors } from '../../packages/store/test/helpers.js';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const BIN = path.join(ROOT, 'packages', 'cli', 'bin', 'run.js');
const BASE_ENV: NodeJS.ProcessEnv = {
  ...process.env,
  WGIT_AUTHOR_DATE: '1700000000',
  WGIT_AUTHOR_NAME: 'Test',
  WGIT_AUTHOR_EMAIL: 'test@example.com',
};
delete BASE_ENV.WGIT_NO_FAST_PATH;
delete BASE_ENV.WGIT_DEBUG;

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

function wgit(cwd: string, args: string[], env: NodeJS.ProcessEnv = {}, timeout = 60_000): Run {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    cwd,
    env: { ...BASE_ENV, ...env },
    encoding: 'utf8',
    timeout,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function codeOf(r: Run): string {
  try {
    return JSON.parse(r.stdout).error?.code ?? 'no error';
  } catch {
    return `not JSON: ${r.stdout.slice(0, 200)} ${r.stderr.slice(0, 200)}`;
  }
}

/** Characters that must never reach a terminal raw: C0 (but newline), DEL, C1, bidi controls, line/paragraph separators. */
const UNSAFE = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/u;

function assertTerminalSafe(text: string, what: string): void {
  const m = UNSAFE.exec(text);
  assert.ok(
    !m,
    `${what}: raw U+${m?.[0].codePointAt(0)?.toString(16).padStart(4, '0')} at ${m?.index}: ${JSON.stringify(text)}`,
  );
}

const EVIL_TENSOR = 'evil\x1b[2J\u202ename\u2066.weight';
const EVIL_META = 'x\x1b]0;pwned\x07';

let tmp: string;
let evil: string;
let evil2: string;
let big: string;

before(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-hostile-'));
  const tensors = (seed: number) => [
    { name: EVIL_TENSOR, dtype: 'BF16', shape: [4, 4], data: bf16Weights(16, seed) },
    { name: 'ok.weight', dtype: 'BF16', shape: [4, 4], data: bf16Weights(16, seed + 1) },
  ];
  evil = path.join(tmp, 'evil.safetensors');
  fs.writeFileSync(evil, buildSafetensors(tensors(1), { metadata: { [EVIL_META]: '\u202evalue' } }));
  evil2 = path.join(tmp, 'evil2.safetensors');
  fs.writeFileSync(evil2, buildSafetensors(tensors(5)));
  // Enough tensors for well over a pipe buffer (64 KiB) of JSON.
  big = path.join(tmp, 'big.safetensors');
  fs.writeFileSync(
    big,
    buildSafetensors(
      Array.from({ length: 3000 }, (_, i) => ({
        name: `model.layers.${i}.weight`,
        dtype: 'BF16',
        shape: [2],
        data: bf16Weights(2, i + 3),
      })),
    ),
  );
});
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('a closed stdout (EPIPE) is a quiet exit', () => {
  /** `wgit ARGS | head -c 10` through a real pipe; the exit status is wgit's own. */
  function throughHead(cwd: string, args: string[], env: NodeJS.ProcessEnv = {}) {
    const errFile = path.join(tmp, `stderr-${Math.random().toString(36).slice(2)}`);
    const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
    const cmd = `${q(process.execPath)} ${q(BIN)} ${args.map(q).join(' ')} 2>${q(errFile)} | head -c 10; exit "\${PIPESTATUS[0]}"`;
    const r = spawnSync('bash', ['-c', cmd], { cwd, env: { ...BASE_ENV, ...env }, encoding: 'utf8', timeout: 60_000 });
    const stderr = fs.readFileSync(errFile, 'utf8');
    return { status: r.status, stdout: r.stdout, stderr };
  }

  test('inspect --json | head -c 10 (fast path and oclif)', () => {
    for (const env of [{}, { WGIT_NO_FAST_PATH: '1' }]) {
      const r = throughHead(tmp, ['inspect', big, '--json'], env);
      assert.equal(r.stdout, '{\n  "path"');
      assert.equal(r.stderr, '', `stderr: ${r.stderr}`);
      assert.equal(r.status, 0);
      const h = throughHead(tmp, ['inspect', big], env);
      assert.equal(h.stderr, '', `stderr: ${h.stderr}`);
      assert.equal(h.status, 0);
    }
  });

  test('log --json and log | head -c 10', () => {
    const repo = path.join(tmp, 'epipe-repo');
    fs.mkdirSync(repo);
    assert.equal(wgit(repo, ['init', '--json']).status, 0);
    // A long message (one argument stays under the 128 KiB limit) makes the output larger than a pipe buffer.
    const c = wgit(repo, ['commit', evil2, '-m', 'x'.repeat(120_000), '--json']);
    assert.equal(c.status, 0, c.stderr);
    for (const args of [['log', '--json'], ['log'], ['show', 'HEAD', '--json']]) {
      const r = throughHead(repo, args);
      assert.equal(r.stdout.length, 10);
      assert.equal(r.stderr, '', `${args.join(' ')}: ${r.stderr}`);
      assert.equal(r.status, 0, args.join(' '));
    }
  });
});

describe('names with terminal escapes and bidi controls are printed escaped', () => {
  test('inspect prints them escaped, through both routes', () => {
    for (const env of [{}, { WGIT_NO_FAST_PATH: '1' }]) {
      const r = wgit(tmp, ['inspect', evil], env);
      assert.equal(r.status, 0, r.stderr);
      assertTerminalSafe(r.stdout, 'inspect');
      assert.ok(r.stdout.includes('"evil\\u001b[2J\\u202ename\\u2066.weight"'), r.stdout);
      assert.ok(r.stdout.includes('\\u202evalue'), r.stdout);
    }
  });

  test('inspect --json escapes them and keeps the names exact', () => {
    for (const env of [{}, { WGIT_NO_FAST_PATH: '1' }]) {
      const r = wgit(tmp, ['inspect', evil, '--json'], env);
      assert.equal(r.status, 0, r.stderr);
      assertTerminalSafe(r.stdout, 'inspect --json');
      assert.ok(r.stdout.includes('\\u202e'));
      const doc = JSON.parse(r.stdout);
      assert.deepEqual(
        doc.tensors.map((t: { name: string }) => t.name),
        [EVIL_TENSOR, 'ok.weight'],
      );
      assert.deepEqual(doc.shards[0].metadata, { [EVIL_META]: '\u202evalue' });
    }
  });

  test('log, show, branch, tag, commit, merge and error lines print them escaped', () => {
    const repo = path.join(tmp, 'names-repo');
    fs.mkdirSync(repo);
    const env = { WGIT_AUTHOR_NAME: 'Mallory \x1b]0;owned\x07\u202e' };
    const human = (args: string[]): Run => {
      const r = wgit(repo, args, env);
      assertTerminalSafe(r.stdout, `${args.join(' ')} stdout`);
      assertTerminalSafe(r.stderr, `${args.join(' ')} stderr`);
      return r;
    };
    assert.equal(human(['init']).status, 0);
    const branch = '\u202eniam';
    const c = human(['commit', evil, '-m', 'first line\nsecond \x1b[31mred\x1b[0m \u202edesrever', '--branch', branch]);
    assert.equal(c.status, 0, c.stderr);
    assert.match(c.stdout, /\\u202eniam/);
    for (const args of [['log', branch], ['show', branch], ['branch'], ['tag', '\u2067t', branch], ['tag']]) {
      const r = human(args);
      assert.equal(r.status, 0, `${args.join(' ')}: ${r.stderr}`);
    }
    const log = human(['log', branch]);
    assert.match(log.stdout, /\n {4}first line\n {4}second \\u001b\[31mred/);
    const show = human(['show', branch]);
    assert.ok(show.stdout.includes('"evil\\u001b[2J\\u202ename\\u2066.weight"'), show.stdout);
    const merged = human([
      'merge',
      evil,
      evil2,
      '--method',
      'linear',
      '--branch',
      '\u202emerged',
      '-m',
      'merge \u202e',
    ]);
    assert.equal(merged.status, 0, merged.stderr);
    assert.match(merged.stdout, /\\u202emerged/);
    const bad = human(['show', '\u202ebad\x1b[2J']);
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /^wgit: error: .*\[E_UNKNOWN_REVISION\]\n$/);

    const json = wgit(repo, ['log', branch, '--json'], env);
    assertTerminalSafe(json.stdout, 'log --json');
    const entry = JSON.parse(json.stdout).commits[0];
    assert.equal(entry.author, 'Mallory \x1b]0;owned\x07\u202e <test@example.com>');
  });
});

describe('--config must be a small regular file', () => {
  test('a FIFO is refused at once instead of waiting for a writer', { skip: process.platform === 'win32' }, () => {
    const fifo = path.join(tmp, 'merge.fifo');
    const mk = spawnSync('mkfifo', [fifo]);
    if (mk.status !== 0) return;
    const r = wgit(tmp, ['merge', '--config', fifo, '--json'], {}, 15_000);
    assert.notEqual(r.status, null, 'wgit merge --config FIFO hung');
    assert.equal(codeOf(r), 'E_MERGEKIT_INVALID');
    assert.equal(r.status, 1);
  });

  test('/dev/zero, a folder and an oversized file are refused before reading them', () => {
    const huge = path.join(tmp, 'huge.yml');
    fs.writeFileSync(huge, `merge_method: linear\n# ${'x'.repeat(5 << 20)}\n`);
    for (const p of ['/dev/zero', tmp, huge]) {
      if (!fs.existsSync(p)) continue;
      const r = wgit(tmp, ['merge', '--config', p, '--json'], {}, 15_000);
      assert.notEqual(r.status, null, `wgit merge --config ${p} hung`);
      assert.equal(codeOf(r), 'E_MERGEKIT_INVALID', p);
      assert.equal(r.status, 1);
    }
  });

  test('a missing file is E_NOT_FOUND', () => {
    const r = wgit(tmp, ['merge', '--config', path.join(tmp, 'nope.yml'), '--json']);
    assert.equal(codeOf(r), 'E_NOT_FOUND');
  });

  test('hex numbers in the YAML are refused', () => {
    const cfg = path.join(tmp, 'hex.yml');
    fs.writeFileSync(
      cfg,
      'merge_method: task_arithmetic\nbase_model: b\nparameters:\n  lambda: 0x10\nmodels:\n  - model: a\n  - model: c\n',
    );
    assert.equal(codeOf(wgit(tmp, ['merge', '--config', cfg, '--json'])), 'E_MERGEKIT_INVALID');
  });
});

describe('numbers and dates are parsed strictly', () => {
  // Parameter errors surface before any model or repository is opened.
  const merge = ['merge', 'a', 'b', '--method', 'task-arithmetic', '--base', 'c', '--json'];
  const refused: [string[], string][] = [
    [[...merge, '--lambda', '0x10'], 'E_BAD_PARAM'],
    [[...merge, '--lambda', ''], 'E_BAD_PARAM'],
    [[...merge, '--lambda', ' '], 'E_BAD_PARAM'],
    [[...merge, '--lambda', 'Infinity'], 'E_BAD_PARAM'],
    [[...merge, '--weights', '1,,2'], 'E_BAD_PARAM'],
    [[...merge, '--weights', '1,2,'], 'E_BAD_PARAM'],
    [[...merge, '--weights', '1 2'], 'E_BAD_PARAM'],
    [[...merge, '--weights', '0o1,1'], 'E_BAD_PARAM'],
    [[...merge, '--seed', '0x10'], 'E_BAD_PARAM'],
    [[...merge, '--seed', '010'], 'E_BAD_PARAM'],
    [['merge', 'a', 'b', '--method', 'ties', '--base', 'c', '--density', '0b1', '--json'], 'E_BAD_PARAM'],
    [['merge', 'a', 'b', '--method', 'ties', '--base', 'c', '--density', '0.5,,0.5', '--json'], 'E_BAD_PARAM'],
    [['merge', 'a', 'b', '--method', 'dare-linear', '--base', 'c', '--drop', '1e', '--json'], 'E_BAD_PARAM'],
    [['merge', 'a', 'b', '--method', 'rmm', '--base', 'c', '--rank', '1.0', '--json'], 'E_BAD_PARAM'],
    [['transfer', 'a', '--from', 'b', '--onto', 'c', '--scale', '0x10', '--json'], 'E_BAD_PARAM'],
    [['transfer', 'a', '--from', 'b', '--onto', 'c', '--scale', '1e999', '--json'], 'E_BAD_PARAM'],
    [['lines', 'a', '--base', 'b', '--alpha', '0x1', '--json'], 'E_BAD_PARAM'],
    [['lines', 'a', '--base', 'b', '--beta', '.', '--json'], 'E_BAD_PARAM'],
    [['log', '-n', '0x10', '--json'], 'E_BAD_PARAM'],
    [['log', '-n', '1.5', '--json'], 'E_BAD_PARAM'],
    [['init', 'x', '--chunk-size', '0x1000', '--json'], 'E_BAD_PARAM'],
    [['init', 'x', '--max-delta-depth', ' 3', '--json'], 'E_BAD_PARAM'],
    [['demo', '--seed', '1e3', '--json'], 'E_BAD_PARAM'],
  ];
  for (const [args, want] of refused) {
    test(`wgit ${args.map((a) => JSON.stringify(a)).join(' ')} → ${want}`, () => {
      const r = wgit(tmp, args);
      assert.equal(codeOf(r), want, r.stdout + r.stderr);
      assert.equal(r.status, 1);
      assert.ok(!fs.existsSync(path.join(tmp, 'x')), 'nothing created');
    });
  }

  test('WGIT_AUTHOR_DATE outside the documented forms is E_BAD_DATE and commits nothing', () => {
    const repo = path.join(tmp, 'date-repo');
    fs.mkdirSync(repo);
    assert.equal(wgit(repo, ['init', '--json']).status, 0);
    for (const d of ['-1', 'March 7', '0x10', '2024-02-30', ' 1700000000']) {
      const r = wgit(repo, ['commit', evil2, '-m', 'm', '--json'], { WGIT_AUTHOR_DATE: d });
      assert.equal(codeOf(r), 'E_BAD_DATE', `${d}: ${r.stdout}`);
      assert.equal(r.status, 1);
    }
    assert.deepEqual(JSON.parse(wgit(repo, ['log', '--json']).stdout).commits, []);
    const ok = wgit(repo, ['commit', evil2, '-m', 'm', '--json'], { WGIT_AUTHOR_DATE: '2024-03-07T10:00:00+02:00' });
    assert.equal(ok.status, 0, ok.stdout);
    const log = JSON.parse(wgit(repo, ['log', '--json']).stdout);
    assert.equal(log.commits[0].timestamp, Date.UTC(2024, 2, 7, 8) / 1000);
  });

  test('integers from the environment are decimal', () => {
    const repo = path.join(tmp, 'env-repo');
    fs.mkdirSync(repo);
    assert.equal(wgit(repo, ['init', '--json']).status, 0);
    const r = wgit(repo, ['commit', evil2, '-m', 'm', '--json'], { WGIT_THREADS: '0x2' });
    assert.equal(codeOf(r), 'E_BAD_ENV', r.stdout);
  });
});

describe('repository damage through the CLI', () => {
  test('branch x with x/y present, a deleted HEAD, a missing branch commit: one line each', () => {
    const repo = path.join(tmp, 'damage-repo');
    fs.mkdirSync(repo);
    assert.equal(wgit(repo, ['init']).status, 0);
    const c = wgit(repo, ['commit', evil2, '-m', 'one', '--json']);
    assert.equal(c.status, 0, c.stderr);
    const head = JSON.parse(c.stdout).commit as string;
    assert.equal(wgit(repo, ['branch', 'x/y']).status, 0);
    const conflict = wgit(repo, ['branch', 'x']);
    assert.equal(conflict.status, 1);
    assert.match(conflict.stderr, /^wgit: error: [^\n]*"x\/y"[^\n]*\[E_BAD_REF_NAME\]\n$/);

    const objFile = path.join(repo, '.wgit', 'objects', head.slice(0, 2), head.slice(2));
    const saved = fs.readFileSync(objFile);
    fs.rmSync(objFile);
    const missing = wgit(repo, ['log', 'x/y']);
    assert.equal(missing.status, 1);
    assert.ok(missing.stderr.includes(head), missing.stderr);
    assert.match(missing.stderr, /^wgit: error: "x\/y" [^\n]*\[E_MISSING_OBJECT\]\n$/);
    fs.writeFileSync(objFile, saved.subarray(0, 20));
    const truncated = wgit(repo, ['show', 'main']);
    assert.match(truncated.stderr, /^wgit: error: [^\n]*damaged[^\n]*\[E_CORRUPT\]\n$/);
    assert.ok(truncated.stderr.includes(head));
    fs.writeFileSync(objFile, saved);

    fs.rmSync(path.join(repo, '.wgit', 'HEAD'));
    const noHead = wgit(repo, ['log']);
    assert.equal(noHead.status, 1);
    assert.match(noHead.stderr, /^wgit: error: [^\n]*\.wgit\/HEAD is missing[^\n]*\[E_CORRUPT\]\n$/);
  });
});
