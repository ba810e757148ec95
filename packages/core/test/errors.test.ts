import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isWgitError, systemErrorCode, WgitError } from '../src/errors.js';

test('WgitError keeps a stable code and folds the message to one line', () => {
  const e = new WgitError('E_BAD_PARAM', 'first\n  second', { file: 'x' });
  assert.equal(e.code, 'E_BAD_PARAM');
  assert.equal(e.message, 'first second');
  assert.deepEqual(e.data, { file: 'x' });
  assert.ok(isWgitError(e));
  assert.ok(!isWgitError(new Error('plain')));
});

test('an operating-system failure keeps its code behind E_', () => {
  const e = new WgitError(systemErrorCode('ENOENT'), 'gone');
  assert.equal(e.code, 'E_NOENT');
  assert.equal(systemErrorCode('EACCES'), 'E_ACCES');
});
