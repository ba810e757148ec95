import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { checkPathSet, checkRefName, checkRelPath, escapeName, unescapeName } from '../src/names.js';
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

  // Names git itself refuses to check out (verify_path with core.protectNTFS
  // and core.protectHFS, both on by default), plus what Windows silently
  // rewrites, plus the repository folder itself.
  const refused: [string, string][] = [
    ['.git', 'the .git folder'],
    ['.git/config', 'a file in .git'],
    ['a/.git/hooks/post-checkout', '.git below a folder'],
    ['.GIT/config', '.git in upper case'],
    ['.Git', '.git in mixed case'],
    ['git~1/config', 'the NTFS short name of .git'],
    ['GIT~1', 'the NTFS short name, upper case'],
    ['.git./config', '.git with a trailing dot (NTFS drops it)'],
    ['.git /config', '.git with a trailing space (NTFS drops it)'],
    ['.git. . /config', '.git with trailing dots and spaces'],
    ['.git::$INDEX_ALLOCATION/config', 'an NTFS stream of .git'],
    ['.git:x', 'a named stream of .git'],
    ['git~1::$INDEX_ALLOCATION/config', 'a stream of the short name'],
    ['.g\u200cit/config', 'a zero-width non-joiner inside .git (HFS+ ignores it)'],
    ['\u200e.git/config', 'a left-to-right mark before .git'],
    ['.git\ufeff/config', 'a zero-width no-break space after .git'],
    ['.gi\u206at/HEAD', 'an inhibit-swapping mark inside .git'],
    ['.gitmodules', '.gitmodules'],
    ['sub/.GITMODULES', '.gitmodules in upper case, below a folder'],
    ['gitmod~1', 'the NTFS short name of .gitmodules'],
    ['GITMOD~4', 'another short name of .gitmodules'],
    ['gi7eba~1', 'the fall-back NTFS short name of .gitmodules'],
    ['gi7eb~12', 'a shorter fall-back short name of .gitmodules'],
    ['.gitmodules .', '.gitmodules with trailing space and dot'],
    ['.gitmodules::$DATA', 'an NTFS stream of .gitmodules'],
    ['.git\u200dmodules', 'an HFS-ignorable code point inside .gitmodules'],
    ['.wgit/wgit/config.json', 'a repository folder'],
    ['.WGIT./x', 'a repository folder, NTFS spelling'],
    ['config.json.', 'a name ending in a dot (Windows drops it)'],
    ['config.json ', 'a name ending in a space (Windows drops it)'],
    ['tok./vocab.txt', 'a folder ending in a dot'],
    ['tok /vocab.txt', 'a folder ending in a space'],
    ['...', 'only dots'],
    ['a\\b', 'a backslash'],
    ['..\\x', 'a backslash after ..'],
    ['a\u0000b', 'a NUL byte'],
    ['C:x', 'a drive letter'],
    ['/etc/passwd', 'an absolute path'],
    ['', 'an empty path'],
    ['a//b', 'an empty component'],
    ['a/', 'a trailing slash'],
    ['./a', 'a . component'],
    ['a/../../x', 'a .. component'],
  ];
  const accepted = [
    'config.json',
    'tokenizer/vocab.txt',
    'model-00001-of-00002.safetensors',
    '.hidden',
    '.github/workflows/ci.yml',
    '.gitignore',
    '.gitattributes',
    '.git-blame-ignore-revs',
    'a.git',
    'git',
    'gitmodules',
    'git~2',
    'gitmod~5',
    'gi7ebaa~1',
    'x/.gitx',
    '.wgitx',
    'a b.json',
    '~x',
    'é/ü.txt',
  ];
  for (const [bad, why] of refused) {
    it(`refuses ${why}: ${JSON.stringify(bad)}`, () => {
      assert.equal(
        code(() => checkRelPath(bad, 'side file')),
        'E_UNSAFE_PATH',
      );
    });
  }
  it('accepts ordinary names that merely resemble them', () => {
    for (const ok of accepted)
      assert.equal(
        code(() => checkRelPath(ok, 'side file')),
        'no error',
        ok,
      );
  });

  it('refuses a path listed twice, or used as both a file and a folder', () => {
    const paths = (...ps: string[]) => ps.map((p) => ({ path: p, what: 'side file' }));
    assert.equal(
      code(() => checkPathSet(paths('config.json', 'tok/vocab.txt', 'tok/merges.txt'))),
      'no error',
    );
    assert.equal(
      code(() => checkPathSet(paths('config.json', 'config.json'))),
      'E_UNSAFE_PATH',
    );
    assert.equal(
      code(() => checkPathSet(paths('a', 'a/b'))),
      'E_UNSAFE_PATH',
    );
    assert.equal(
      code(() => checkPathSet(paths('a/b/c', 'a/b'))),
      'E_UNSAFE_PATH',
    );
    assert.equal(
      code(() => checkPathSet(paths('ab', 'a/b', 'a.b'))),
      'no error',
    );
    assert.equal(
      code(() => checkPathSet([...paths('model.safetensors'), { path: 'model.safetensors', what: 'shard' }])),
      'E_UNSAFE_PATH',
    );
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
