import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isWgitError } from '@wgit/core';
import { decodeManifest, encodeManifest, type Manifest, manifestFormat } from '../src/records.js';

const code = (e: unknown) => (isWgitError(e) ? e.code : String(e));
const plain: Manifest = {
  format: 1,
  kind: 'file',
  shards: [{ file: 'model.safetensors', size: 16, tensors: ['w'] }],
  tensors: ['w'],
  index: null,
  files: [],
  rawBytes: 8,
  recipe: null,
  groups: [],
};
const bytes = (m: unknown) => Buffer.from(JSON.stringify(m));

describe('manifest object header (format 3)', () => {
  it('is written only when a set names its kind', () => {
    assert.equal(manifestFormat({ chunkedFiles: false, object: false }), 1);
    assert.equal(manifestFormat({ chunkedFiles: true, object: false }), 2);
    assert.equal(manifestFormat({ chunkedFiles: true, object: true }), 3);
  });

  it('round-trips, with or without chunked side files', () => {
    const object = { kind: 'rmm-basis', version: 1, meta: { inputs: 2, rank: 2 } };
    const m: Manifest = { ...plain, format: 3, object };
    assert.deepEqual(decodeManifest(encodeManifest(m), 'x'), m);
    const withFiles: Manifest = { ...m, files: ['big.bin'], chunkedFiles: ['big.bin'] };
    assert.deepEqual(decodeManifest(encodeManifest(withFiles), 'x'), withFiles);
    assert.deepEqual(decodeManifest(encodeManifest(plain), 'x'), plain);
  });

  it('refuses an object in an older format, a format 3 without one, and a malformed header', () => {
    const bad = [
      { ...plain, object: { kind: 'rmm-basis', version: 1 } },
      { ...plain, format: 3 },
      { ...plain, format: 3, object: { kind: 'Bad Kind', version: 1 } },
      { ...plain, format: 3, object: { kind: 'rmm-basis', version: -1 } },
      { ...plain, format: 3, object: { kind: 'rmm-basis', version: 1, meta: [] } },
      { ...plain, format: 4 },
    ];
    for (const m of bad)
      assert.throws(
        () => decodeManifest(bytes(m), 'x'),
        (e) => code(e) === 'E_CORRUPT',
        JSON.stringify(m),
      );
  });
});
