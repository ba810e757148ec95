import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  checkpoint,
  getObjectKind,
  isWgitError,
  listObjectKinds,
  openModel,
  RMM_META_TENSOR,
  resolveObject,
  rmmBasis,
} from '../../src/index.js';
import { llamaToy, perturb, readAll, rng, tmpDir, writeModel } from '../methods/helpers.js';

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
  const r = rng(5);
  const base = llamaToy(r, 'BF16', 0.5);
  paths = {
    base: await writeModel(path.join(dir, 'base'), base),
    ft: await Promise.all(
      [0.05, 0.02].map((s, i) =>
        writeModel(path.join(dir, `ft${i}`), perturb(base, r, s), { 'config.json': `{"ft":${i}}` }),
      ),
    ),
  };
});
after(async () => {
  await Promise.all(opened.map((m) => m.close()));
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('object kinds', () => {
  it('the registry knows checkpoint, rmm-basis, diff-vector, sparse-delta, rws and low-rank, and refuses a kind it does not know', () => {
    assert.deepEqual(listObjectKinds(), ['checkpoint', 'rmm-basis', 'diff-vector', 'sparse-delta', 'rws', 'low-rank']);
    assert.equal(getObjectKind('rmm-basis'), rmmBasis);
    assert.throws(
      () => getObjectKind('hologram'),
      (e) => code(e) === 'E_CORRUPT',
    );
  });

  it('resolves a set by its header, by an older stored form, or as a checkpoint', () => {
    assert.equal(resolveObject(undefined, ['a', 'b']).kind, checkpoint);
    const old = resolveObject(undefined, [RMM_META_TENSOR, 'w::rmm.base']);
    assert.equal(old.kind, rmmBasis);
    assert.deepEqual(old.header, { kind: 'rmm-basis', version: 0 });
    assert.equal(old.detected, true);
    const cur = resolveObject({ kind: 'rmm-basis', version: 1, meta: { inputs: 2, rank: 2 } }, []);
    assert.equal(cur.detected, false);
    assert.throws(
      () => resolveObject({ kind: 'rmm-basis', version: 9 }, []),
      (e) => code(e) === 'E_CORRUPT',
    );
  });

  it('checkpoint: apply gives back the same tensors and side files', async () => {
    const src = await open(paths.ft[0]);
    const value = await checkpoint.decode(src, { kind: 'checkpoint', version: 1 });
    const out = path.join(dir, 'ckpt-out');
    const r = await checkpoint.apply(value, { outDir: out });
    assert.equal(r.exact, true);
    assert.deepEqual(await readAll(out), await readAll(paths.ft[0]));
    assert.equal(fs.readFileSync(path.join(out, 'config.json'), 'utf8'), '{"ft":0}');
  });

  it('rmm-basis: compute, decode, encode, decode again, apply: every input comes back', async () => {
    const outDir = path.join(dir, 'rmm-merged');
    const objectDir = path.join(dir, 'rmm-basis');
    const { header } = await rmmBasis.compute({
      inputs: await Promise.all(paths.ft.map(open)),
      base: await open(paths.base),
      outDir,
      objectDir,
    });
    assert.deepEqual(header, { kind: 'rmm-basis', version: 2, meta: { inputs: 2, rank: 2 } });
    const first = await rmmBasis.decode(await open(objectDir), header);
    assert.equal(rmmBasis.describe(first).models, 2);
    const again = path.join(dir, 'rmm-basis-again');
    const header2 = await rmmBasis.encode(first, again);
    assert.deepEqual(header2, header);
    const second = await rmmBasis.decode(await open(again), header2);
    assert.deepEqual(second.table, first.table);
    for (const [i, p] of paths.ft.entries()) {
      const out = path.join(dir, `rmm-rec-${i}`);
      const r = await rmmBasis.apply(second, { model: i, outDir: out });
      assert.equal(r.exact, true);
      assert.deepEqual(await readAll(out), await readAll(p));
    }
    await assert.rejects(rmmBasis.apply(second, { outDir: path.join(dir, 'x') }), (e) => code(e) === 'E_BAD_PARAM');
    await assert.rejects(
      rmmBasis.decode(await open(again), { ...header, meta: { inputs: 3 } }),
      (e) => code(e) === 'E_RMM_GROUP',
    );
  });
});
