import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isWgitError, WgitError } from '../src/errors.js';

test('WgitError keeps a stable code and folds the message to one line', () => {
  const e = new WgitError('E_TEST', 'first\n  second', { file: 'x' });
  assert.equal(e.code, 'E_TEST');
  assert.equal(e.message, 'first second');
  assert.deepEqual(e.data, { file: 'x' });
  assert.ok(isWgitError(e));
  assert.ok(!isWgitError(new Error('plain')));
});
