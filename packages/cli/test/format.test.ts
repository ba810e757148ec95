import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { escapeControls, jsonText, printable } from '../src/format.js';
import { readSmallFile } from '../src/small-file.js';

const UNSAFE = [
  '\x00',
  '\x07',
  '\x1b',
  '\x7f',
  '\x85',
  '\x9b',
  '\u061c',
  '\u200e',
  '\u200f',
  '\u2028',
  '\u2029',
  '\u202a',
  '\u202b',
  '\u202c',
  '\u202d',
  '\u202e',
  '\u2066',
  '\u2067',
  '\u2068',
  '\u2069',
];
const RAW = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;
/** The same, less the newlines that indent JSON. */
const RAW_IN_JSON = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

describe('terminal-safe printing', () => {
  it('leaves ordinary names alone, including non-ASCII text', () => {
    for (const s of ['model.layers.0.weight', 'poids.ç', '重み', 'a\\b', 'x"y', 'שלום']) {
      assert.equal(printable(s), s);
      assert.equal(escapeControls(s), s);
    }
  });

  for (const c of UNSAFE) {
    const code = `U+${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
    it(`escapes ${code} in names, text and JSON`, () => {
      const name = `a${c}b`;
      const p = printable(name);
      assert.doesNotMatch(p, RAW);
      assert.equal(JSON.parse(p), name, 'the quoted form parses back to the name');
      assert.doesNotMatch(escapeControls(name), RAW);
      const j = jsonText({ name });
      assert.doesNotMatch(j, RAW_IN_JSON);
      assert.deepEqual(JSON.parse(j), { name });
    });
  }

  it('escapes the sequences a hostile tensor name would use', () => {
    assert.equal(printable('evil\x1b[2J\u202ename'), '"evil\\u001b[2J\\u202ename"');
    assert.equal(escapeControls('tab\there'), 'tab\\there');
    assert.equal(escapeControls('one\ntwo\x1b[31m', true), 'one\ntwo\\u001b[31m');
    assert.equal(escapeControls('one\ntwo'), 'one\\ntwo');
  });
});

describe('readSmallFile', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-small-'));
  const opts = { what: '--config', maxBytes: 16, code: 'E_MERGEKIT_INVALID' as const };
  const codeOf = async (p: Promise<unknown>) =>
    p.then(
      () => 'no error',
      (e) => (e as { code?: string }).code,
    );

  it('reads a small regular file', async () => {
    const f = path.join(dir, 'ok.yml');
    fs.writeFileSync(f, 'a: 1\n');
    assert.equal((await readSmallFile(f, opts)).toString(), 'a: 1\n');
  });
  it('refuses a file over the limit, a folder, a device and a FIFO; a missing file is E_NOT_FOUND', async () => {
    const big = path.join(dir, 'big.yml');
    fs.writeFileSync(big, 'x'.repeat(17));
    assert.equal(await codeOf(readSmallFile(big, opts)), 'E_MERGEKIT_INVALID');
    assert.equal(await codeOf(readSmallFile(dir, opts)), 'E_MERGEKIT_INVALID');
    if (fs.existsSync('/dev/zero')) assert.equal(await codeOf(readSmallFile('/dev/zero', opts)), 'E_MERGEKIT_INVALID');
    assert.equal(await codeOf(readSmallFile(path.join(dir, 'none'), opts)), 'E_NOT_FOUND');
    const fifo = path.join(dir, 'fifo');
    const { spawnSync } = await import('node:child_process');
    if (spawnSync('mkfifo', [fifo]).status === 0)
      assert.equal(await codeOf(readSmallFile(fifo, opts)), 'E_MERGEKIT_INVALID');
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
