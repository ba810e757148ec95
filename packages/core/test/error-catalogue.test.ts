import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, test } from 'node:test';
import { ERROR_CODES, exitStatus, isErrorCode } from '../src/errors.js';
import { SAFETENSORS_ERROR_CODES } from '../src/safetensors/codes.js';

const root = new URL('../../../', import.meta.url).pathname;
/** The catalogue itself is not a use of its codes. */
const catalogueDir = join(root, 'packages/core/src/errors');

function sourceFiles(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    const full = join(dir, name);
    if (full === catalogueDir || name === 'node_modules') continue;
    if (statSync(full).isDirectory()) sourceFiles(full, out);
    else if (/\.(ts|mts|js|mjs)$/.test(name)) out.push(full);
  }
  return out;
}

/** Every quoted `E_…` literal under packages/{name}/src, with where it is. */
function codeLiterals(): Map<string, string[]> {
  const uses = new Map<string, string[]>();
  for (const pkg of readdirSync(join(root, 'packages'))) {
    const src = join(root, 'packages', pkg, 'src');
    let files: string[];
    try {
      files = sourceFiles(src);
    } catch {
      continue;
    }
    for (const file of files) {
      const lines = readFileSync(file, 'utf8').split('\n');
      lines.forEach((line, i) => {
        for (const m of line.matchAll(/(['"])(E_[A-Z][A-Z0-9_]*)\1/g)) {
          const where = `${relative(root, file)}:${i + 1}`;
          uses.set(m[2], [...(uses.get(m[2]) ?? []), where]);
        }
      });
    }
  }
  return uses;
}

describe('error catalogue', () => {
  const uses = codeLiterals();
  const catalogue = Object.keys(ERROR_CODES);

  test('the sources are scanned', () => {
    assert.ok(uses.size > 30, `only ${uses.size} codes found under packages/*/src`);
  });

  test('every E_ literal in packages/*/src is in the catalogue', () => {
    const unknown = [...uses].filter(([code]) => !isErrorCode(code)).map(([code, at]) => `${code} (${at.join(', ')})`);
    assert.deepEqual(unknown, [], 'add these to packages/core/src/errors/codes.ts, or fix their spelling');
  });

  test('every catalogue code is raised somewhere', () => {
    const unused = catalogue.filter((code) => !uses.has(code));
    assert.deepEqual(unused, [], 'remove these from packages/core/src/errors/codes.ts');
  });

  test('one spelling per condition: the retired spellings are gone', () => {
    for (const old of ['E_CHUNK_CORRUPT', 'E_OUT_EXISTS', 'E_PATH_ESCAPE']) {
      assert.ok(!isErrorCode(old), old);
      assert.ok(!uses.has(old), `${old} at ${uses.get(old)?.join(', ')}`);
    }
  });

  test('every entry has a one-line meaning, its commands and a fix', () => {
    for (const [code, info] of Object.entries(ERROR_CODES)) {
      assert.match(code, /^E_[A-Z][A-Z0-9_]*$/);
      for (const field of ['meaning', 'commands', 'fix'] as const) {
        const text = info[field];
        assert.ok(text.length > 0 && !text.includes('\n'), `${code}.${field}`);
      }
    }
  });

  test('usage errors exit with 2, everything else with 1', () => {
    for (const code of catalogue) assert.equal(exitStatus(code), code === 'E_USAGE' ? 2 : 1, code);
    assert.equal(exitStatus('E_NOENT'), 1);
  });

  test('the safetensors codes are a part of the catalogue, with the same spelling', () => {
    for (const code of Object.keys(SAFETENSORS_ERROR_CODES)) assert.ok(isErrorCode(code), code);
  });

  test('docs/errors.md lists every code and is what scripts/errors-doc.mjs writes', () => {
    const doc = readFileSync(join(root, 'docs/errors.md'), 'utf8');
    const missing = catalogue.filter((code) => !doc.includes(`| \`${code}\` |`));
    assert.deepEqual(missing, [], 'run node scripts/errors-doc.mjs');
    const r = spawnSync(process.execPath, [join(root, 'scripts/errors-doc.mjs'), '--check'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
  });

  test('README links docs/errors.md', () => {
    assert.match(readFileSync(join(root, 'README.md'), 'utf8'), /\]\(docs\/errors\.md\)/);
  });
});
