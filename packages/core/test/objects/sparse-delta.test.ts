import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { getDevice, referenceDevice } from '../../src/device/index.js';
import { isWgitError } from '../../src/errors.js';
import { applyDelta } from '../../src/objects/delta.js';
import { computeSparseDelta, getObjectKind, sparseDelta, sparseDeltaView } from '../../src/objects/index.js';
import { decodeGaps, decodeSparseDelta } from '../../src/objects/sparse-delta.js';
import { openModel, writeSafetensors } from '../../src/safetensors/index.js';
import { bf16Round, decode, encode, llamaToy, readAll, rng, type T, tmpDir, writeModel } from '../methods/helpers.js';

const code = (e: unknown) => (isWgitError(e) ? e.code : String(e));
const f32 = Math.fround;

let dir: string;
const opened: { close(): Promise<void> }[] = [];
async function open(p: string) {
  const m = await openModel(p);
  opened.push(m);
  return m;
}

/** A sparse fine-tune of the toy: about one entry in six of the float tensors moved, the step counter bumped. */
function sparseFineTune(base: T[], seed: number): T[] {
  const r = rng(seed);
  return base.map((t) =>
    t.dtype === 'I64'
      ? { ...t, values: [Number(t.values[0]) + 1] }
      : { ...t, values: Array.from(t.values, (v) => (Math.abs(r()) > 1.6 ? v + r() * 0.05 : v)) },
  );
}

/** Hand-written: the flat indices where the stored bits differ, and f32(ft) − f32(b) there. */
function oracleExact(b: Uint8Array, f: Uint8Array, dtype: 'BF16' | 'F32') {
  const es = dtype === 'BF16' ? 2 : 4;
  const vb = decode(b, dtype);
  const vf = decode(f, dtype);
  const at: number[] = [];
  const values: number[] = [];
  for (let j = 0; j < vb.length; j++) {
    let same = true;
    for (let x = 0; x < es; x++) same &&= b[j * es + x] === f[j * es + x];
    if (!same) {
      at.push(j);
      values.push(f32(vf[j] - vb[j]));
    }
  }
  return { at, values };
}

/** Prefix sums of the stored gaps, by hand. */
function storedIndices(raw: Uint8Array): number[] {
  const words = new Uint32Array(raw.slice().buffer);
  const out: number[] = [];
  let at = 0;
  words.forEach((g, i) => {
    at = i === 0 ? g : at + g;
    out.push(at);
  });
  return out;
}

let base: T[];
let ft: T[];
let paths: { base: string; ft: string };

before(async () => {
  dir = tmpDir();
  base = llamaToy(rng(11), 'BF16');
  // An unchanged −0 must stay −0 through apply.
  (base[1].values as number[])[3] = -0;
  ft = sparseFineTune(base, 12);
  (ft[1].values as number[])[3] = -0;
  paths = {
    base: await writeModel(path.join(dir, 'base'), base),
    ft: await writeModel(path.join(dir, 'ft'), ft, { 'config.json': '{"ft":true}' }),
  };
});
after(async () => {
  await Promise.all(opened.map((m) => m.close()));
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('sparse delta objects', () => {
  for (const [label, device] of [
    ['reference', async () => referenceDevice()],
    ['wasm', () => getDevice({ device: 'cpu', threads: 2, parallelMin: 1 })],
  ] as const) {
    it(`exact: stores every changed entry, sorted and delta-coded, and B + Δ̂ gives FT bit for bit (${label})`, async () => {
      const b = await open(paths.base);
      const f = await open(paths.ft);
      const out = path.join(dir, `exact-${label}`);
      const report = await computeSparseDelta(f, b, { exact: true }, { outDir: out, device: await device() });
      assert.deepEqual(report.replaced, ['model.step'], 'the integer tensor is held whole');
      assert.equal(report.relError, 0);
      const stored = await open(out);
      let kept = 0;
      for (const t of base) {
        if (t.dtype !== 'BF16') continue;
        const want = oracleExact(
          encode(t.values, 'BF16'),
          encode(ft.find((x) => x.name === t.name)?.values ?? [], 'BF16'),
          'BF16',
        );
        kept += want.at.length;
        if (want.at.length === 0) {
          assert.ok(
            !stored.tensors.some((s) => s.name.startsWith(`${t.name}::`)),
            `${t.name} unchanged: nothing stored`,
          );
          continue;
        }
        const idx = stored.tensor(`${t.name}::sparse.index`);
        assert.equal(idx.dtype, 'U32');
        assert.deepEqual(storedIndices(await stored.readTensor(idx.name)), want.at, t.name);
        assert.deepEqual([...decode(await stored.readTensor(`${t.name}::sparse.value`), 'F32')], want.values, t.name);
      }
      assert.ok(kept > 10 && kept < 80, `a sparse fine-tune (${kept} entries changed)`);
      assert.equal(report.kept, kept);

      const header = report.header;
      const value = await sparseDelta.decode(stored, header);
      const back = path.join(dir, `exact-back-${label}`);
      const counts = await applyDelta(sparseDeltaView(value), b, 1, { outDir: back, device: await device() });
      assert.equal(counts.replaced, 1);
      const got = await readAll(back);
      const want = await readAll(paths.ft);
      for (const [name, t] of want) assert.deepEqual(got.get(name)?.bytes, t.bytes, name);
      assert.equal(fs.readFileSync(path.join(back, 'config.json'), 'utf8'), '{"model_type":"toy"}');

      // s = 0.5: a hand-written scatter-add, bf16(b + f32(0.5·v)) at the stored entries, b elsewhere.
      const half = path.join(dir, `exact-half-${label}`);
      await applyDelta(sparseDeltaView(value), b, 0.5, { outDir: half, device: await device() });
      const t = base[1];
      const vb = decode(encode(t.values, 'BF16'), 'BF16');
      const o = oracleExact(encode(t.values, 'BF16'), encode(ft[1].values, 'BF16'), 'BF16');
      const expect = Array.from(vb);
      o.at.forEach((j, i) => {
        expect[j] = bf16Round(f32(vb[j] + f32(0.5 * o.values[i])));
      });
      const halfT = (await readAll(half)).get(t.name)?.bytes as Uint8Array;
      assert.deepEqual(Array.from(decode(halfT, 'BF16')), expect);
      assert.ok(Object.is(decode(halfT, 'BF16')[3], -0), 'an unchanged −0 stays −0');
    });
  }

  it('exact: a tensor f32 arithmetic cannot carry (a tiny value replacing a large one) is held whole', async () => {
    const b = await writeModel(path.join(dir, 'inexact-b'), [
      { name: 'w', dtype: 'BF16', shape: [4], values: [1, 2, 3, 4] },
      { name: 'v', dtype: 'F32', shape: [3], values: [1, 2, 3] },
    ]);
    const f = await writeModel(path.join(dir, 'inexact-f'), [
      { name: 'w', dtype: 'BF16', shape: [4], values: [1e-12, 2, 3, 4] },
      { name: 'v', dtype: 'F32', shape: [3], values: [1, 2.5, 3] },
    ]);
    const out = path.join(dir, 'inexact');
    const report = await computeSparseDelta(await open(f), await open(b), { exact: true }, { outDir: out });
    assert.deepEqual(report.replaced, ['w']);
    assert.deepEqual(
      report.tensors.map((t) => [t.name, t.kept, t.whole]),
      [
        ['w', 4, true],
        ['v', 1, false],
      ],
    );
    const stored = await open(out);
    assert.deepEqual(
      stored.tensors.map((t) => t.name),
      ['w', 'v::sparse.index', 'v::sparse.value'],
    );
    const value = decodeSparseDelta(stored, report.header);
    const back = path.join(dir, 'inexact-back');
    await applyDelta(sparseDeltaView(value), await open(b), 1, { outDir: back });
    const got = await readAll(back);
    for (const [name, t] of await readAll(f)) assert.deepEqual(got.get(name)?.bytes, t.bytes, name);
  });

  it('density: exactly round(D·n) entries by |Δ|, ties to the lower index; error and scatter-add by hand', async () => {
    const bv = [0.5, 1, -2, 0, 4, 1.5, -1, 2, 3, 0.25];
    const dv = [1, -3, 3, 0.5, 3, 0, -1, 2, -0.5, 0.125];
    const b = await writeModel(path.join(dir, 'dens-b'), [
      { name: 'layers.0.w', dtype: 'F32', shape: [2, 5], values: bv },
      { name: 'layers.0.b', dtype: 'F32', shape: [1], values: [1] },
    ]);
    const f = await writeModel(path.join(dir, 'dens-f'), [
      { name: 'layers.0.w', dtype: 'F32', shape: [2, 5], values: bv.map((x, i) => x + dv[i]) },
      { name: 'layers.0.b', dtype: 'F32', shape: [1], values: [1.5] },
    ]);
    for (const [density, k] of [
      [0.2, 2],
      [0.25, 3], // 2.5 rounds up
      [1, 10],
    ] as const) {
      const out = path.join(dir, `dens-${density}`);
      const kind = getObjectKind('sparse-delta');
      const { header, report } = await kind.compute({
        inputs: [await open(f)],
        base: await open(b),
        params: { density },
        outDir: out,
      });
      const delta = bv.map((x, i) => f32(f32(x + dv[i]) - x));
      const order = delta.map((_, i) => i).sort((x, y) => Math.abs(delta[y]) - Math.abs(delta[x]) || x - y);
      const keep = order.slice(0, k).sort((x, y) => x - y);
      const stored = await open(out);
      assert.deepEqual(storedIndices(await stored.readTensor('layers.0.w::sparse.index')), keep, `D = ${density}`);
      assert.deepEqual(
        [...decode(await stored.readTensor('layers.0.w::sparse.value'), 'F32')],
        keep.map((j) => delta[j]),
      );
      const keepsBias = Math.round(density) === 1;
      assert.equal(
        stored.tensors.some((t) => t.name.startsWith('layers.0.b')),
        keepsBias,
        'round(D·1) = 0 keeps nothing',
      );
      let all = 0;
      let dropped = 0;
      delta.forEach((x, i) => {
        all += x * x;
        if (!keep.includes(i)) dropped += x * x;
      });
      all += 0.25;
      if (!keepsBias) dropped += 0.25;
      const r = report as { relError: number; tensors: { name: string; relError: number }[] };
      assert.ok(Math.abs(r.relError - Math.sqrt(dropped / all)) < 1e-12, `D = ${density}: overall error`);
      assert.equal(r.tensors[1].relError, keepsBias ? 0 : 1, 'a tensor that keeps nothing loses all of its Δ');

      const value = await kind.decode(stored, header);
      const back = path.join(dir, `dens-back-${density}`);
      await kind.apply(value, { onto: await open(b), outDir: back, scale: -2 });
      const want = bv.map((x, j) => (keep.includes(j) ? f32(x + f32(-2 * delta[j])) : x));
      assert.deepEqual([...decode((await readAll(back)).get('layers.0.w')?.bytes as Uint8Array, 'F32')], want);
    }
  });

  it('refuses bad parameters, mismatched models and NaN, naming the tensor, and writes nothing', async () => {
    const b = await open(paths.base);
    const f = await open(paths.ft);
    const never = path.join(dir, 'never');
    for (const params of [{ density: 0 }, { density: 1.5 }, { density: Number.NaN }, { exact: true, density: 0.5 }, {}])
      await assert.rejects(computeSparseDelta(f, b, params, { outDir: never }), (e) => code(e) === 'E_BAD_PARAM');
    const other = base.map((t, i) => (i === 2 ? { ...t, shape: [4, 6] } : t));
    const shaped = await open(await writeModel(path.join(dir, 'shaped'), other));
    await assert.rejects(
      computeSparseDelta(shaped, b, { exact: true }, { outDir: never }),
      (e) => code(e) === 'E_SHAPE_MISMATCH' && (e as { data: { tensor: string } }).data.tensor === base[2].name,
    );
    const typed = await open(
      await writeModel(
        path.join(dir, 'typed'),
        base.map((t, i) => (i === 1 ? { ...t, dtype: 'F32' } : t)),
      ),
    );
    await assert.rejects(
      computeSparseDelta(typed, b, { density: 0.5 }, { outDir: never }),
      (e) => code(e) === 'E_DTYPE_MISMATCH' && /q_proj/.test((e as Error).message),
    );
    const fewer = await open(await writeModel(path.join(dir, 'fewer'), base.slice(0, -1)));
    await assert.rejects(
      computeSparseDelta(fewer, b, { exact: true }, { outDir: never }),
      (e) => code(e) === 'E_TENSOR_MISMATCH',
    );
    const nan = await open(
      await writeModel(
        path.join(dir, 'nan'),
        ft.map((t, i) => (i === 4 ? { ...t, values: Array.from(t.values, (v, j) => (j === 2 ? Number.NaN : v)) } : t)),
      ),
    );
    for (const params of [{ exact: true }, { density: 0.5 }])
      await assert.rejects(
        computeSparseDelta(nan, b, params, { outDir: never }),
        (e) => code(e) === 'E_NAN_DELTA' && (e as { data: { tensor: string } }).data.tensor === base[4].name,
      );
    assert.equal(fs.existsSync(never), false);
  });

  it('refuses a model of another architecture on apply, and a damaged stored form', async () => {
    const out = path.join(dir, 'arch');
    const report = await computeSparseDelta(
      await open(paths.ft),
      await open(paths.base),
      { density: 0.5 },
      { outDir: out },
    );
    const stored = await open(out);
    const value = decodeSparseDelta(stored, report.header);
    const small = await open(
      await writeModel(
        path.join(dir, 'small'),
        base.map((t) => (t.name.includes('up_proj') ? { ...t, shape: [4, 6] } : t)),
      ),
    );
    const target = path.join(dir, 'arch-never');
    await assert.rejects(
      applyDelta(sparseDeltaView(value), small, 1, { outDir: target }),
      (e) => code(e) === 'E_SHAPE_MISMATCH',
    );
    assert.equal(fs.existsSync(target), false);

    assert.throws(
      () => decodeSparseDelta(stored, { kind: 'sparse-delta', version: 1 }),
      (e) => code(e) === 'E_CORRUPT',
    );
    assert.throws(
      () => decodeSparseDelta(stored, { ...report.header, meta: { mode: 'density', density: 0.5, shapes: [] } }),
      (e) => code(e) === 'E_CORRUPT',
    );
    // Gaps that go backwards or past the end; U64 words for tensors above 2³² elements.
    const at = new Float64Array(3);
    assert.throws(
      () => decodeGaps('w', new Uint8Array(new Uint32Array([1, 0, 2]).buffer), 9, at),
      (e) => code(e) === 'E_CORRUPT',
    );
    assert.throws(
      () => decodeGaps('w', new Uint8Array(new Uint32Array([1, 4, 4]).buffer), 9, at),
      (e) => code(e) === 'E_CORRUPT',
    );
    decodeGaps('w', new Uint8Array(new BigUint64Array([2n, 3n, 1n]).buffer), 7, at);
    assert.deepEqual([...at], [2, 5, 6]);
    const bad = path.join(dir, 'bad-gaps');
    fs.mkdirSync(bad);
    await writeSafetensors(path.join(bad, 'model.safetensors'), [
      { name: 'w::sparse.index', dtype: 'U32', shape: [2], data: new Uint8Array(new Uint32Array([3, 0]).buffer) },
      { name: 'w::sparse.value', dtype: 'F32', shape: [2], data: new Uint8Array(8) },
    ]);
    const broken = decodeSparseDelta(await open(bad), {
      kind: 'sparse-delta',
      version: 1,
      meta: { mode: 'exact', density: null, shapes: [['w', [4]]] },
    });
    const onto = await open(
      await writeModel(path.join(dir, 'w4'), [{ name: 'w', dtype: 'F32', shape: [4], values: [1, 2, 3, 4] }]),
    );
    await assert.rejects(
      applyDelta(sparseDeltaView(broken), onto, 1, { outDir: path.join(dir, 'bad-out') }),
      (e) => code(e) === 'E_CORRUPT',
    );
    assert.equal(fs.existsSync(path.join(dir, 'bad-out')), false);
  });
});
