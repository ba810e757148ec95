import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { getDevice, referenceDevice } from '../../src/device/index.js';
import { bf16BitsToF32, f32ToBf16Bits } from '../../src/dtypes.js';
import { applyDiffVector, computeDiffVector, diffVector } from '../../src/objects/index.js';
import { openModel, writeSafetensors } from '../../src/safetensors/index.js';

const bf16 = (xs: number[]) => new Uint8Array(new Uint16Array(xs.map(f32ToBf16Bits)).buffer);
const i32 = (xs: number[]) => new Uint8Array(new Int32Array(xs).buffer);
const u16 = (b: Uint8Array) => [...new Uint16Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength))];

let dir: string;
const A = { w: [1, -2, 0.5, 3.25], steps: [7], old: [1, 2] };
const B = { w: [1.5, -2, 0.375, 3.5], steps: [8], grown: [1, 2, 3] };

async function model(name: string, tensors: Parameters<typeof writeSafetensors>[1], config: string): Promise<string> {
  const d = path.join(dir, name);
  fs.mkdirSync(d);
  await writeSafetensors(path.join(d, 'model.safetensors'), tensors);
  fs.writeFileSync(path.join(d, 'config.json'), config);
  return d;
}

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-dv-'));
  await model(
    'a',
    [
      { name: 'w', dtype: 'BF16', shape: [2, 2], data: bf16(A.w) },
      { name: 'steps', dtype: 'I32', shape: [1], data: i32(A.steps) },
      { name: 'grown', dtype: 'BF16', shape: [2], data: bf16(A.old) },
      { name: 'gone', dtype: 'BF16', shape: [1], data: bf16([9]) },
    ],
    '{"v":"a"}',
  );
  await model(
    'b',
    [
      { name: 'w', dtype: 'BF16', shape: [2, 2], data: bf16(B.w) },
      { name: 'steps', dtype: 'I32', shape: [1], data: i32(B.steps) },
      { name: 'grown', dtype: 'BF16', shape: [3], data: bf16(B.grown) },
      { name: 'new', dtype: 'BF16', shape: [1], data: bf16([4]) },
    ],
    '{"v":"b"}',
  );
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('diff vector objects', () => {
  for (const [label, device] of [
    ['reference', async () => referenceDevice()],
    ['wasm', () => getDevice({ device: 'cpu', threads: 2, parallelMin: 1 })],
  ] as const) {
    it(`stores B − A in f32 with B's replaced and A's removed tensors, and A + Δ gives B back (${label})`, async () => {
      const a = await openModel(path.join(dir, 'a'));
      const b = await openModel(path.join(dir, 'b'));
      const out = path.join(dir, `dv-${label}`);
      const header = await computeDiffVector(a, b, { outDir: out, device: await device() });
      assert.deepEqual(header, {
        kind: 'diff-vector',
        version: 1,
        meta: { deltas: 1, replaced: ['steps', 'grown', 'new'], removed: ['gone'] },
      });
      const stored = await openModel(out);
      assert.deepEqual([...new Float32Array((await stored.readTensor('w')).buffer)], [0.5, 0, -0.125, 0.25]);
      assert.deepEqual(stored.sideFiles, ['config.json'], "B's side files go with it");
      const value = await diffVector.decode(stored, header);

      const back = path.join(dir, `back-${label}`);
      const counts = await applyDiffVector(value, a, 1, { outDir: back, device: await device() });
      assert.deepEqual(counts, { changed: 1, replaced: 3, removed: 1, kept: 0 });
      const m = await openModel(back);
      assert.deepEqual(
        m.tensors.map((t) => t.name),
        ['w', 'steps', 'grown', 'new'],
      );
      for (const t of b.tensors) assert.deepEqual(await m.readTensor(t.name), await b.readTensor(t.name), t.name);
      assert.equal(fs.readFileSync(path.join(back, 'config.json'), 'utf8'), '{"v":"a"}', "the model's own side files");

      // s = 0.5: each element is bf16(a + f32(0.5·Δ)), computed here by hand.
      const half = path.join(dir, `half-${label}`);
      await applyDiffVector(value, a, 0.5, { outDir: half, device: await device() });
      const want = A.w.map((x, i) => f32ToBf16Bits(Math.fround(x + Math.fround(0.5 * Math.fround(B.w[i] - x)))));
      assert.deepEqual(u16(await (await openModel(half)).readTensor('w')), want);
      assert.deepEqual(want.map(bf16BitsToF32), [1.25, -2, 0.4375, 3.375]);
      for (const x of [a, b, stored, m]) await x.close();
    });
  }

  it('refuses a model whose tensor has another shape, naming it, and writes nothing', async () => {
    const a = await openModel(path.join(dir, 'a'));
    const b = await openModel(path.join(dir, 'b'));
    const out = path.join(dir, 'dv-shape');
    const header = await computeDiffVector(a, b, { outDir: out, device: referenceDevice() });
    const value = await diffVector.decode(await openModel(out), header);
    const other = await model('other', [{ name: 'w', dtype: 'BF16', shape: [4], data: bf16([1, 2, 3, 4]) }], '{}');
    const target = path.join(dir, 'never');
    await assert.rejects(
      applyDiffVector(value, await openModel(other), 1, { outDir: target, device: referenceDevice() }),
      (e: { code?: string; message?: string }) => e.code === 'E_SHAPE_MISMATCH' && /"w"/.test(e.message ?? ''),
    );
    assert.equal(fs.existsSync(target), false);
  });

  it('refuses a stored form whose table is missing or whose deltas are not f32', async () => {
    const a = await openModel(path.join(dir, 'a'));
    await assert.rejects(diffVector.decode(a, { kind: 'diff-vector', version: 1 }), { code: 'E_CORRUPT' });
    await assert.rejects(
      diffVector.decode(a, { kind: 'diff-vector', version: 1, meta: { deltas: 1, replaced: [], removed: [] } }),
      { code: 'E_CORRUPT' },
    );
  });
});
