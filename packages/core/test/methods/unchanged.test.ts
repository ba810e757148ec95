/**
 * A tensor no input changes comes out with the base's exact bytes, whatever
 * the method: −0 stays −0 (f32 arithmetic turns b + λ·0 into +0) and NaN
 * payloads stay. The expectation is the input file's own bytes.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { mergeModels, openModel } from '../../src/index.js';
import { readAll, tmpDir, writeModel } from './helpers.js';

let dir: string;
const SAME = [-0, 1.5, -0, 0.25, 3, -0, 7, 0.5];

before(async () => {
  dir = tmpDir();
  const changed = (k: number) => Array.from({ length: 64 }, (_, j) => Math.sin(j + k) / 4);
  for (const [name, k] of [
    ['base', 0],
    ['a', 1],
    ['b', 2],
  ] as const)
    await writeModel(path.join(dir, name), [
      { name: 'same', dtype: 'BF16', shape: [8], values: SAME },
      { name: 'w', dtype: 'BF16', shape: [8, 8], values: changed(k) },
    ]);
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('tensors no input changes', () => {
  for (const [method, params] of [
    ['task-arithmetic', { lambda: 0.7 }],
    ['ties', { density: 0.5 }],
    ['dare-ties', { density: 0.5, seed: 3 }],
    ['linear', {}],
  ] as const) {
    it(`${method}: written with the base's bytes (−0 kept), the changed tensor merged`, async () => {
      const inputs = [await openModel(path.join(dir, 'a')), await openModel(path.join(dir, 'b'))];
      const base = await openModel(path.join(dir, 'base'));
      const out = path.join(dir, `out-${method}`);
      const r = await mergeModels({ method, inputs, base, params, outDir: out });
      await Promise.all([...inputs, base].map((m) => m.close()));
      const got = await readAll(out);
      const want = await readAll(path.join(dir, 'base'));
      assert.deepEqual(Buffer.from(got.get('same')!.bytes), Buffer.from(want.get('same')!.bytes));
      const minusZero = new Uint16Array(got.get('same')!.bytes.slice().buffer)[0];
      assert.equal(minusZero, 0x8000, 'bf16 −0');
      assert.notDeepEqual(Buffer.from(got.get('w')!.bytes), Buffer.from(want.get('w')!.bytes));
      assert.deepEqual(
        r.tensors.map((t) => [t.name, t.action]),
        [
          ['same', 'unchanged'],
          ['w', 'merged'],
        ],
      );
    });
  }
});
