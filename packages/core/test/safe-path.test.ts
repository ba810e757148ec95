import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { copySideFiles } from '../src/pipeline/index.js';
import { openModel } from '../src/safetensors/model.js';
import { writeSafetensors } from '../src/safetensors/writer.js';
import { checkPathSet, checkRelPath, relPathProblem } from '../src/util/safe-path.js';

const codeOf = (fn: () => unknown): string => {
  try {
    fn();
  } catch (e) {
    return (e as { code?: string }).code ?? String(e);
  }
  return 'no error';
};

const codeOfAsync = async (p: Promise<unknown>): Promise<string> => {
  try {
    await p;
  } catch (e) {
    return (e as { code?: string }).code ?? String(e);
  }
  return 'no error';
};

const UNSAFE = [
  '',
  '/etc/passwd',
  'C:/x',
  '../x',
  'a/../../x',
  'a/./b',
  'a//b',
  'a\\b',
  'a\0b',
  '.git/config',
  'sub/.GIT/hooks/pre-commit',
  'git~1/config',
  '.git./x',
  '.g\u200cit/x',
  '.gitmodules',
  '.wgit/objects',
  'config.json.',
  'tok /vocab.txt',
];
const SAFE = ['config.json', 'tokenizer/vocab.txt', 'model-00001-of-00002.safetensors', '.gitignore', 'a.b/c'];

describe('the one path-safety check', () => {
  test('refuses what escapes a folder or lands on a dangerous name', () => {
    for (const rel of UNSAFE) {
      assert.ok(relPathProblem(rel), JSON.stringify(rel));
      assert.equal(
        codeOf(() => checkRelPath(rel, 'side file')),
        'E_UNSAFE_PATH',
        JSON.stringify(rel),
      );
    }
    for (const rel of SAFE) assert.equal(relPathProblem(rel), null, rel);
  });

  test('path sets: no duplicates, no file that is also a folder', () => {
    const set = (...p: string[]) => p.map((x) => ({ path: x, what: 'side file' }));
    assert.equal(
      codeOf(() => checkPathSet(set('a', 'b/c'))),
      'no error',
    );
    assert.equal(
      codeOf(() => checkPathSet(set('a', 'a'))),
      'E_UNSAFE_PATH',
    );
    assert.equal(
      codeOf(() => checkPathSet(set('a', 'a/b'))),
      'E_UNSAFE_PATH',
    );
  });

  test('the merge engine copies no side file the check refuses', async () => {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-safe-path-'));
    for (const rel of ['.git/config', '../x', 'config.json.']) {
      const source = {
        sideFiles: [rel],
        readSideFile: async () => new Uint8Array([1]),
      } as unknown as Parameters<typeof copySideFiles>[0];
      assert.equal(await codeOfAsync(copySideFiles(source, out)), 'E_UNSAFE_PATH', rel);
    }
    assert.deepEqual(fs.readdirSync(out), []);
  });

  test('a model index naming an unsafe shard is refused with the same code', async () => {
    for (const shard of ['../s.safetensors', '/abs/s.safetensors', 'a/./s.safetensors', '.git/s.safetensors']) {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-safe-path-'));
      await writeSafetensors(path.join(dir, 's.safetensors'), [
        { name: 'a', dtype: 'U8', shape: [1], data: new Uint8Array(1) },
      ]);
      fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { a: shard } }));
      assert.equal(await codeOfAsync(openModel(dir)), 'E_UNSAFE_PATH', shard);
    }
  });
});
