import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isWgitError, openModel, transferModel } from '../../src/index.js';
import { decode, randomValues, readAll, rng, type T, tmpDir, writeModel } from './helpers.js';

const code = (e: unknown) => (isWgitError(e) ? e.code : String(e));

let dir: string;
const opened: { close(): Promise<void> }[] = [];
async function open(p: string) {
  const m = await openModel(p);
  opened.push(m);
  return m;
}
before(() => {
  dir = tmpDir();
});
after(async () => {
  await Promise.all(opened.map((m) => m.close()));
  fs.rmSync(dir, { recursive: true, force: true });
});

let n = 0;
async function models(old: T[], ft: T[], nu: T[]) {
  const k = n++;
  return {
    from: await open(await writeModel(path.join(dir, `old${k}`), old)),
    ft: await open(await writeModel(path.join(dir, `ft${k}`), ft)),
    onto: await open(await writeModel(path.join(dir, `new${k}`), nu, { 'config.json': '{"v":2}' })),
    out: path.join(dir, `out${k}`),
  };
}

const r = rng(33);
const f32 = (name: string, shape: number[], values: number[]): T => ({ name, dtype: 'F32', shape, values });

describe('transferModel', () => {
  it('θ_new + s·(θ_ft − θ_old) on every tensor, with closeness figures', async () => {
    const old = [f32('layers.0.w', [2, 3], randomValues(6, r)), f32('norm.weight', [3], randomValues(3, r))];
    const ft = old.map((t) => ({ ...t, values: Array.from(t.values, (v) => v + r() * 0.1) }));
    const nu = old.map((t) => ({ ...t, values: Array.from(t.values, (v) => v + r() * 0.05) }));
    const m = await models(old, ft, nu);
    const rep = await transferModel({ ...m, scale: 0.5, outDir: m.out });
    const got = await readAll(m.out);
    let dot = 0;
    let sh = 0;
    let dl = 0;
    let o2 = 0;
    old.forEach((t, ti) => {
      const g = decode(got.get(t.name)?.bytes as Uint8Array, 'F32');
      for (let j = 0; j < g.length; j++) {
        const [o, f, w] = [
          Math.fround(old[ti].values[j]),
          Math.fround(ft[ti].values[j]),
          Math.fround(nu[ti].values[j]),
        ];
        assert.ok(Math.abs(g[j] - (w + 0.5 * (f - o))) < 1e-6, `${t.name}[${j}]`);
        dot += (w - o) * (f - o);
        sh += (w - o) ** 2;
        dl += (f - o) ** 2;
        o2 += o * o;
      }
    });
    assert.ok(Math.abs(rep.closeness.cosine - dot / Math.sqrt(sh * dl)) < 1e-6);
    assert.ok(Math.abs(rep.closeness.relDistance - Math.sqrt(sh / o2)) < 1e-6);
    assert.equal(rep.perTensor.length, 2);
    assert.equal(fs.readFileSync(path.join(m.out, 'config.json'), 'utf8'), '{"v":2}');
  });

  it('vocabulary growth: bases padded with zero rows, new rows equal the fine-tune', async () => {
    const old = [
      f32('model.embed_tokens.weight', [4, 2], randomValues(8, r)),
      f32('layers.0.w', [2, 2], randomValues(4, r)),
    ];
    const nu = old.map((t) => ({ ...t, values: Array.from(t.values, (v) => v + 0.25) }));
    const ft = [
      f32('model.embed_tokens.weight', [6, 2], [...Array.from(old[0].values, (v) => v + 1), 7, 8, 9, 10]),
      { ...old[1], values: Array.from(old[1].values, (v) => v - 1) },
    ];
    const m = await models(old, ft, nu);
    const rep = await transferModel({ ...m, outDir: m.out });
    const got = await readAll(m.out);
    const e = got.get('model.embed_tokens.weight');
    assert.deepEqual(e?.shape, [6, 2]);
    const g = decode(e?.bytes as Uint8Array, 'F32');
    for (let j = 0; j < 8; j++) assert.ok(Math.abs(g[j] - (Math.fround(old[0].values[j]) + 1.25)) < 1e-6);
    assert.deepEqual(Array.from(g.subarray(8)), [7, 8, 9, 10]);
    assert.deepEqual(rep.grown, [{ name: 'model.embed_tokens.weight', baseRows: 4, rows: 6 }]);
  });

  it('tied embeddings stay identical and are reported', async () => {
    const emb = randomValues(8, r);
    const old = [f32('model.embed_tokens.weight', [4, 2], emb), f32('lm_head.weight', [4, 2], emb)];
    const embFt = emb.map((v) => v + r() * 0.1);
    const ft = [f32('model.embed_tokens.weight', [4, 2], embFt), f32('lm_head.weight', [4, 2], embFt)];
    const embNew = emb.map((v) => v * 1.01);
    const nu = [f32('model.embed_tokens.weight', [4, 2], embNew), f32('lm_head.weight', [4, 2], embNew)];
    const m = await models(old, ft, nu);
    const rep = await transferModel({ ...m, outDir: m.out });
    const got = await readAll(m.out);
    assert.deepEqual(got.get('lm_head.weight')?.bytes, got.get('model.embed_tokens.weight')?.bytes);
    const g = decode(got.get('lm_head.weight')?.bytes as Uint8Array, 'F32');
    // Δ applied once: new + (ft − old), not new + 2Δ
    for (let j = 0; j < 8; j++) {
      const want = Math.fround(embNew[j]) + (Math.fround(embFt[j]) - Math.fround(emb[j]));
      assert.ok(Math.abs(g[j] - want) < 1e-6);
    }
    assert.deepEqual(rep.tied, [['model.embed_tokens.weight', 'lm_head.weight']]);
    assert.deepEqual(rep.warnings, []);
  });

  it('ties: confirmed on the full bytes, on either path; an untied fine-tune is a warning', async () => {
    // 40,000 f32 = 160,000 bytes: the tie fingerprint reads 64 windows of 1 KiB, so byte 1,500
    // (element 375) lies between two windows and only the full comparison sees it.
    const len = 40_000;
    const emb = randomValues(len, r, 0.02);
    const near = emb.slice();
    near[375] += 0.5;
    const shape = [400, 100];
    const two = (a: number[], b: number[]) => [
      f32('model.embed_tokens.weight', shape, a),
      f32('layers.0.w', [2], [1, 2]),
      f32('lm_head.weight', shape, b),
    ];
    const shift = (v: number[], d: number) => v.map((x) => x + d);
    for (const kernelMinElements of [0, Number.POSITIVE_INFINITY]) {
      // tied in all three: reported, no warning, identical outputs
      let m = await models(
        two(emb, emb),
        two(shift(emb, 0.01), shift(emb, 0.01)),
        two(shift(emb, 0.02), shift(emb, 0.02)),
      );
      let rep = await transferModel({ ...m, outDir: m.out, kernelMinElements });
      assert.deepEqual(rep.tied, [['model.embed_tokens.weight', 'lm_head.weight']], `tied, min ${kernelMinElements}`);
      assert.deepEqual(rep.warnings, []);
      let got = await readAll(m.out);
      assert.deepEqual(got.get('lm_head.weight')?.bytes, got.get('model.embed_tokens.weight')?.bytes);
      // the fine-tune untied them (one element of the head moved): still tied in the target, warned
      const ftHead = shift(emb, 0.01);
      ftHead[39_999] += 1;
      m = await models(two(emb, emb), two(shift(emb, 0.01), ftHead), two(shift(emb, 0.02), shift(emb, 0.02)));
      rep = await transferModel({ ...m, outDir: m.out, kernelMinElements });
      assert.deepEqual(rep.tied, [['model.embed_tokens.weight', 'lm_head.weight']]);
      assert.deepEqual(rep.warnings, [
        'model.embed_tokens.weight and lm_head.weight share storage in the target but differ in the output: the fine-tune untied them',
      ]);
      got = await readAll(m.out);
      assert.notDeepEqual(got.get('lm_head.weight')?.bytes, got.get('model.embed_tokens.weight')?.bytes);
      // same fingerprint, different bytes in the target: not tied
      m = await models(two(emb, emb), two(emb, emb), two(emb, near));
      rep = await transferModel({ ...m, outDir: m.out, kernelMinElements });
      assert.deepEqual(rep.tied, [], `fingerprint only, min ${kernelMinElements}`);
      assert.deepEqual(rep.warnings, []);
    }
  });

  it('a tensor in one version only: E_TENSOR_MISMATCH, or copied from the target with copyMissing', async () => {
    const old = [f32('a', [2], [1, 2])];
    const ft = [f32('a', [2], [2, 3])];
    const nu = [f32('a', [2], [5, 5]), f32('rotary.inv_freq', [2], [0.5, 0.25])];
    const m = await models(old, ft, nu);
    await assert.rejects(
      transferModel({ ...m, outDir: m.out }),
      (e) => code(e) === 'E_TENSOR_MISMATCH' && /rotary\.inv_freq/.test((e as Error).message),
    );
    assert.equal(fs.existsSync(m.out), false);
    const rep = await transferModel({ ...m, copyMissing: true, outDir: m.out });
    const got = await readAll(m.out);
    assert.deepEqual(Array.from(decode(got.get('a')?.bytes as Uint8Array, 'F32')), [6, 6]);
    assert.deepEqual(Array.from(decode(got.get('rotary.inv_freq')?.bytes as Uint8Array, 'F32')), [0.5, 0.25]);
    assert.deepEqual(rep.missing.copied, ['rotary.inv_freq']);
  });

  it('any other shape mismatch names the tensor', async () => {
    const old = [f32('layers.0.w', [2, 2], [1, 2, 3, 4])];
    const ft = [f32('layers.0.w', [2, 3], [1, 2, 3, 4, 5, 6])];
    const m = await models(old, ft, old);
    await assert.rejects(
      transferModel({ ...m, outDir: m.out }),
      (e) => code(e) === 'E_SHAPE_MISMATCH' && /layers\.0\.w/.test((e as Error).message),
    );
    const m2 = await models(old, old, [f32('layers.0.w', [4], [1, 2, 3, 4])]);
    await assert.rejects(transferModel({ ...m2, outDir: m2.out }), (e) => code(e) === 'E_SHAPE_MISMATCH');
    await assert.rejects(transferModel({ ...m2, scale: Number.NaN, outDir: m2.out }), (e) => code(e) === 'E_BAD_PARAM');
  });
});
