import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  getDevice,
  isWgitError,
  mergeModels,
  openModel,
  RMM_META_TENSOR,
  RMM_SUM_PIECE,
  recoverModel,
  referenceDevice,
  reversibleMerge,
  rmmBasis,
} from '../../src/index.js';
import { decode, llamaToy, perturb, readAll, rng, type T, tmpDir, writeModel } from './helpers.js';

const code = (e: unknown) => (isWgitError(e) ? e.code : String(e));

let dir: string;
let paths: { base: string; ft: string[] };
const opened: { close(): Promise<void> }[] = [];
async function open(p: string) {
  const m = await openModel(p);
  opened.push(m);
  return m;
}

before(async () => {
  dir = tmpDir();
  const r = rng(21);
  const base = llamaToy(r, 'BF16', 0.5);
  // fine-tunes of different strength, plus one identical to the base (a zero update)
  const fts: T[][] = [
    perturb(base, r, 0.05),
    perturb(base, r, 0.01),
    perturb(base, r, 0.1),
    base.map((t) => ({ ...t })),
  ];
  paths = {
    base: await writeModel(path.join(dir, 'base'), base),
    ft: await Promise.all(
      fts.map((t, i) =>
        writeModel(path.join(dir, `ft${i}`), t, { 'config.json': `{"ft":${i}}`, 'extra/notes.txt': `model ${i}` }),
      ),
    ),
  };
});
after(async () => {
  await Promise.all(opened.map((m) => m.close()));
  fs.rmSync(dir, { recursive: true, force: true });
});

async function rmmMerge(rank?: number, name = `r${rank ?? 'full'}`) {
  const outDir = path.join(dir, `${name}-merged`);
  const groupDir = path.join(dir, `${name}-group`);
  const report = await reversibleMerge({
    inputs: await Promise.all(paths.ft.map(open)),
    base: await open(paths.base),
    params: rank ? { rank } : {},
    outDir,
    groupDir,
  });
  return { report, outDir, groupDir };
}

function relErr(a: Uint8Array, b: Uint8Array, base: Uint8Array): { err: number; norm: number } {
  const x = decode(a, 'BF16');
  const y = decode(b, 'BF16');
  const z = decode(base, 'BF16');
  let err = 0;
  let norm = 0;
  for (let j = 0; j < x.length; j++) {
    err += (x[j] - y[j]) ** 2;
    norm += (y[j] - z[j]) ** 2;
  }
  return { err, norm };
}

describe('reversible merge', () => {
  it('full basis: every input recovered byte for byte, side files included', async () => {
    const { report, groupDir, outDir } = await rmmMerge();
    assert.equal(report.rmm.rank, 4);
    const group = await open(groupDir);
    for (let i = 0; i < paths.ft.length; i++) {
      const o = path.join(dir, `rec-full-${i}`);
      const rr = await recoverModel({ group, model: i, outDir: o });
      assert.equal(rr.exact, true);
      const want = await readAll(paths.ft[i]);
      const got = await readAll(o);
      assert.deepEqual([...got.keys()], [...want.keys()]);
      for (const [name, t] of want) assert.deepEqual(got.get(name)?.bytes, t.bytes, `model ${i} ${name}`);
      assert.equal(fs.readFileSync(path.join(o, 'config.json'), 'utf8'), `{"ft":${i}}`);
      assert.equal(fs.readFileSync(path.join(o, 'extra', 'notes.txt'), 'utf8'), `model ${i}`);
    }
    // the plain checkout is the task-arithmetic mean
    const ta = path.join(dir, 'ta-mean');
    await mergeModels({
      inputs: await Promise.all(paths.ft.map(open)),
      base: await open(paths.base),
      method: 'task-arithmetic',
      params: { normalize: true },
      outDir: ta,
    });
    assert.deepEqual(
      fs.readFileSync(path.join(outDir, 'model.safetensors')),
      fs.readFileSync(path.join(ta, 'model.safetensors')),
    );
    // the zero update (input 3) needs no basis direction of its own: 3 per tensor at most
    const meta = JSON.parse(
      Buffer.from((await readAll(groupDir)).get(RMM_META_TENSOR)?.bytes as Uint8Array).toString('utf8'),
    );
    for (const tm of Object.values(meta.tensors) as { p: number }[]) assert.ok(tm.p <= 3);
  });

  for (const rank of [1, 2]) {
    it(`rank ${rank}: each recovered input is closer than the merged model`, async () => {
      const { report, groupDir, outDir } = await rmmMerge(rank);
      const group = await open(groupDir);
      const merged = await readAll(outDir);
      const baseT = await readAll(paths.base);
      for (let i = 0; i < 3; i++) {
        const o = path.join(dir, `rec-${rank}-${i}`);
        const rr = await recoverModel({ group, model: i, outDir: o });
        assert.equal(rr.exact, false);
        const got = await readAll(o);
        const want = await readAll(paths.ft[i]);
        let eRec = 0;
        let eMerged = 0;
        let norm = 0;
        for (const [name, t] of want) {
          if (t.dtype !== 'BF16') continue;
          const a = relErr(got.get(name)?.bytes as Uint8Array, t.bytes, baseT.get(name)?.bytes as Uint8Array);
          const m = relErr(merged.get(name)?.bytes as Uint8Array, t.bytes, baseT.get(name)?.bytes as Uint8Array);
          eRec += a.err;
          eMerged += m.err;
          norm += a.norm;
        }
        const rec = Math.sqrt(eRec / norm);
        const mer = Math.sqrt(eMerged / norm);
        assert.ok(rec < mer, `task ${i}: recovered ${rec} vs merged ${mer}`);
        assert.ok(Math.abs(rec - report.rmm.models[i].relError) < 1e-9, 'reported error');
        assert.ok(Math.abs(mer - report.rmm.models[i].mergedRelError) < 1e-9, 'reported merged error');
        assert.ok(Math.abs(rr.relError - rec) < 1e-9);
      }
    });
  }

  it('gives the same bits on the WASM pool (1 and 2 threads) and the reference device, tensors past a block included', async () => {
    // 2.2 M f32 elements: more than one block of elementwise work, many reduction pieces, and fixes (f32 rounding)
    const r = rng(5);
    const big = (scale: number, from?: Float32Array) => {
      const v = new Float32Array(2_200_000);
      for (let j = 0; j < v.length; j++) v[j] = (from ? from[j] : 0) + r() * scale;
      return v;
    };
    const b = big(0.02);
    const small = llamaToy(r, 'BF16').slice(0, 3);
    const version = (v: Float32Array, ts: T[]) => [
      { name: 'w', dtype: 'F32' as const, shape: [1100, 2000], values: v },
      ...ts,
    ];
    const base = await writeModel(path.join(dir, 'big-base'), version(b, small));
    const fts = await Promise.all(
      [0.002, 0.003].map((sd, i) =>
        writeModel(path.join(dir, `big-ft${i}`), version(big(sd, b), perturb(small, r, 0.01))),
      ),
    );
    assert.ok(2_200_000 > 2 * RMM_SUM_PIECE);
    const run = async (name: string, device: Awaited<ReturnType<typeof getDevice>>) => {
      const outDir = path.join(dir, `${name}-merged`);
      const groupDir = path.join(dir, `${name}-group`);
      const report = await reversibleMerge({
        inputs: await Promise.all(fts.map(open)),
        base: await open(base),
        outDir,
        groupDir,
        device,
      });
      return { report, merged: await readAll(outDir), group: await readAll(groupDir), groupDir };
    };
    const ref = await run('dev-ref', referenceDevice());
    assert.ok(
      ref.report.rmm.models.every((m) => m.fixes > 0),
      'f32 inputs need fixes',
    );
    for (const threads of [1, 2]) {
      const w = await run(`dev-wasm${threads}`, await getDevice({ device: 'cpu', threads }));
      assert.deepEqual(w.report.rmm.models, ref.report.rmm.models, `threads ${threads}`);
      assert.deepEqual([...w.group.keys()], [...ref.group.keys()]);
      for (const [k, t] of ref.group) assert.deepEqual(w.group.get(k)?.bytes, t.bytes, `threads ${threads}: ${k}`);
      for (const [k, t] of ref.merged) assert.deepEqual(w.merged.get(k)?.bytes, t.bytes, `threads ${threads}: ${k}`);
    }
    // recovery on either device gives each input back byte for byte
    for (const [i, ft] of fts.entries()) {
      const o = path.join(dir, `dev-rec-${i}`);
      const rr = await recoverModel({
        group: await open(ref.groupDir),
        model: i,
        outDir: o,
        device: referenceDevice(),
      });
      assert.ok(rr.fixesApplied > 0);
      const want = await readAll(ft);
      const got = await readAll(o);
      for (const [name, t] of want) assert.deepEqual(got.get(name)?.bytes, t.bytes, `model ${i} ${name}`);
    }
  });

  it('refuses a group folder that is not empty before any work, and a table another version claims', async () => {
    const outDir = path.join(dir, 'busy-merged');
    const groupDir = path.join(dir, 'busy-group');
    fs.mkdirSync(groupDir);
    fs.writeFileSync(path.join(groupDir, 'keep.txt'), 'mine');
    await assert.rejects(
      reversibleMerge({
        inputs: await Promise.all(paths.ft.map(open)),
        base: await open(paths.base),
        outDir,
        groupDir,
      }),
      (e) => code(e) === 'E_OUTPUT_NOT_EMPTY',
    );
    assert.equal(fs.existsSync(outDir), false, 'the output folder it made is gone');
    assert.deepEqual(fs.readdirSync(groupDir), ['keep.txt']);
    // a version 2 basis (f32 sums) must not pass for a version 1 one (f64 sums): its fixes would not fit
    const { report, groupDir: g } = await rmmMerge(2, 'version');
    assert.deepEqual(report.rmm.object, { kind: 'rmm-basis', version: 2, meta: { inputs: 4, rank: 2 } });
    await assert.rejects(
      rmmBasis.decode(await open(g), { ...report.rmm.object, version: 1 }),
      (e) => code(e) === 'E_RMM_GROUP',
    );
  });

  it('refuses a group that is not one, and a model out of range', async () => {
    const notGroup = await open(paths.base);
    await assert.rejects(
      recoverModel({ group: notGroup, model: 0, outDir: path.join(dir, 'x1') }),
      (e) => code(e) === 'E_RMM_GROUP',
    );
    const { groupDir } = await rmmMerge(1, 'range');
    await assert.rejects(
      recoverModel({ group: await open(groupDir), model: 4, outDir: path.join(dir, 'x2') }),
      (e) => code(e) === 'E_BAD_PARAM',
    );
    await assert.rejects(
      reversibleMerge({
        inputs: [await open(paths.ft[0])],
        base: await open(paths.base),
        params: { rank: 2 },
        outDir: path.join(dir, 'x3'),
        groupDir: path.join(dir, 'x4'),
      }),
      (e) => code(e) === 'E_BAD_PARAM',
    );
    await assert.rejects(
      mergeModels({
        inputs: [await open(paths.ft[0])],
        base: await open(paths.base),
        method: 'rmm',
        outDir: path.join(dir, 'x5'),
      }),
      (e) => code(e) === 'E_BAD_PARAM',
    );
  });
});
