import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { checkRefName, checkRelPath, escapeName, unescapeName } from '../src/names.js';
import { parseRevision } from '../src/revparse.js';

const code = (fn: () => unknown) => {
  try {
    fn();
  } catch (e) {
    return (e as { code?: string }).code;
  }
  return 'no error';
};

describe('tree entry names', () => {
  it('keeps ordinary tensor names readable', () => {
    assert.equal(escapeName('model.layers.0.self_attn.q_proj.weight'), 'model.layers.0.self_attn.q_proj.weight');
  });

  it('escapes what git trees and git fsck refuse', () => {
    assert.equal(escapeName('a/b'), 'a%2Fb');
    assert.equal(escapeName('100%'), '100%25');
    assert.equal(escapeName('..'), '%2E.');
    assert.equal(escapeName('.git'), '%2Egit');
    assert.equal(escapeName('git~1'), 'git%7E1');
    assert.equal(escapeName('a b\n'), 'a%20b%0A');
    assert.equal(escapeName('é'), '%C3%A9');
    assert.equal(escapeName(''), '%');
  });

  it('round-trips any string and never yields a slash, NUL or dot-name', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), (s) => {
        const e = escapeName(s);
        assert.equal(unescapeName(e), s);
        assert.ok(!e.includes('/') && !e.includes('\0') && !e.startsWith('.') && e.length > 0);
      }),
      { numRuns: 500 },
    );
  });

  it('is injective on distinct names', () => {
    fc.assert(
      fc.property(fc.string(), fc.string(), (a, b) => {
        if (a !== b) assert.notEqual(escapeName(a), escapeName(b));
      }),
    );
  });
});

describe('ref names and paths', () => {
  it('accepts git-valid branch names and refuses the rest', () => {
    for (const ok of ['main', 'feature/x', 'v1.0', 'a-b_c']) checkRefName(ok, 'branch');
    for (const bad of [
      '',
      'a..b',
      'x.lock',
      '-x',
      'a b',
      'a~1',
      'a^',
      'a:b',
      '.hidden',
      'a/',
      'a//b',
      'HEAD',
      '@',
      'x@{1}',
    ]) {
      assert.equal(
        code(() => checkRefName(bad, 'branch')),
        'E_BAD_REF_NAME',
        bad,
      );
    }
  });

  it('refuses relative paths that leave their folder', () => {
    for (const ok of ['config.json', 'tokenizer/vocab.txt']) checkRelPath(ok, 'side file');
    for (const bad of ['../x', 'a/../../x', '/etc/passwd', 'a//b', './a', 'a\\b', 'C:x', '']) {
      assert.equal(
        code(() => checkRelPath(bad, 'side file')),
        'E_UNSAFE_PATH',
        bad,
      );
    }
  });
});

describe('revision syntax', () => {
  it('splits a base and its ~ / ^ steps', () => {
    assert.deepEqual(parseRevision('main~3^2^'), {
      base: 'main',
      steps: [
        { op: '~', n: 3 },
        { op: '^', n: 2 },
        { op: '^', n: 1 },
      ],
    });
    assert.deepEqual(parseRevision('abcd~'), { base: 'abcd', steps: [{ op: '~', n: 1 }] });
    assert.deepEqual(parseRevision('v1^0'), { base: 'v1', steps: [{ op: '^', n: 0 }] });
  });

  it('refuses malformed revisions', () => {
    for (const bad of ['', '~1', 'main~x', 'main^^a'])
      assert.equal(
        code(() => parseRevision(bad)),
        'E_UNKNOWN_REVISION',
        bad,
      );
  });
});
