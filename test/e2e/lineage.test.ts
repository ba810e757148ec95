/** The demo lineage's building blocks: data, tasks, PRNG, MLP, saving, evaluation. */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { loadDigits } from '../../packages/cli/src/demo/digits.js';
import { evaluateModel, mlpDims, scoreMlp, taskSplits } from '../../packages/cli/src/demo/evaluate.js';
import { saveMlp, trainLineage } from '../../packages/cli/src/demo/lineage.js';
import { accuracy, initMlp, type Mlp, train } from '../../packages/cli/src/demo/mlp.js';
import { Rng } from '../../packages/cli/src/demo/rng.js';
import { makeTasks } from '../../packages/cli/src/demo/tasks.js';
import { openModel } from '../../packages/core/src/index.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

test('the bundled digits: 1,797 images of 64 pixels, classes 0-9 about equally often', () => {
  const d = loadDigits();
  assert.equal(d.n, 1797);
  assert.equal(d.x.length, 1797 * 64);
  const counts = new Array(10).fill(0);
  for (const y of d.y) counts[y]++;
  for (const c of counts) assert.ok(c >= 174 && c <= 183, `class count ${c}`);
  // first row of sklearn's digits: a 0 (known file contents)
  assert.equal(d.y[0], 0);
  assert.deepEqual(Array.from(d.x.subarray(0, 8)), [0, 0, 5, 13, 9, 1, 0, 0]);
});

test('a damaged digits file is refused with E_BAD_DATASET', () => {
  const cases = ['1,2,3\n', `${new Array(64).fill(0).join(',')},10\n`, `${new Array(64).fill(17).join(',')},1\n`];
  for (const [i, text] of cases.entries()) {
    const p = path.join(tmp, `bad${i}.csv.gz`);
    fs.writeFileSync(p, gzipSync(text));
    assert.throws(
      () => loadDigits(p),
      (e: { code?: string }) => e.code === 'E_BAD_DATASET',
    );
  }
  const notGz = path.join(tmp, 'plain.csv.gz');
  fs.writeFileSync(notGz, 'not gzip');
  assert.throws(
    () => loadDigits(notGz),
    (e: { code?: string }) => e.code === 'E_BAD_DATASET',
  );
});

test('task transforms move pixels as intended', () => {
  const d = loadDigits();
  const s = makeTasks(d);
  const row = s.testRows[0];
  const px = (r: number, c: number) => d.x[row * 64 + r * 8 + c] / 16;
  for (let r = 0; r < 8; r++) {
    for (let c = 0; c < 8; c++) {
      assert.equal(s.tasks.clean.test.x[r * 8 + c], px(r, c));
      assert.equal(s.tasks.invert.test.x[r * 8 + c], 1 - px(r, c));
      assert.equal(s.tasks.flip.test.x[r * 8 + c], px(r, 7 - c));
      // clockwise: the left column, read bottom to top, becomes the top row
      assert.equal(s.tasks.rot.test.x[r * 8 + c], px(7 - c, r));
    }
  }
  assert.equal(s.testRows.length + s.trainRows.length, d.n);
  assert.equal(new Set([...s.testRows, ...s.trainRows]).size, d.n);
});

test('the PRNG is deterministic per seed and roughly uniform', () => {
  const a = new Rng(5);
  const b = new Rng(5);
  const c = new Rng(6);
  const xs = Array.from({ length: 1000 }, () => a.next());
  assert.deepEqual(
    xs,
    Array.from({ length: 1000 }, () => b.next()),
  );
  assert.notDeepEqual(
    xs,
    Array.from({ length: 1000 }, () => c.next()),
  );
  const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
  assert.ok(Math.abs(mean - 0.5) < 0.05);
  const ns = Array.from({ length: 4000 }, () => a.normal());
  const m = ns.reduce((s, x) => s + x, 0) / ns.length;
  const v = ns.reduce((s, x) => s + (x - m) ** 2, 0) / ns.length;
  assert.ok(Math.abs(m) < 0.06 && Math.abs(v - 1) < 0.08, `mean ${m} var ${v}`);
});

/** Independent reference: cross-entropy of one sample, forward pass written out here. */
function loss(m: Mlp, x: Float32Array, y: number): number {
  let h = Array.from(x, Number);
  const L = m.dims.length - 1;
  for (let l = 0; l < L; l++) {
    const W = m.params[2 * l].data;
    const b = m.params[2 * l + 1].data;
    const out = [];
    for (let o = 0; o < m.dims[l + 1]; o++) {
      let s = b[o];
      for (let i = 0; i < m.dims[l]; i++) s += W[o * m.dims[l] + i] * h[i];
      out.push(l < L - 1 ? Math.max(0, s) : s);
    }
    h = out;
  }
  const mx = Math.max(...h);
  const z = h.reduce((s, v) => s + Math.exp(v - mx), 0);
  return -(h[y] - mx - Math.log(z));
}

test('one SGD-like step of train() moves weights against the finite-difference gradient', () => {
  const m = initMlp([64, 8, 8, 10], new Rng(3));
  const s = taskSplits().tasks.clean.train;
  const x = s.x.subarray(0, 64);
  const y = s.y.subarray(0, 1);
  // with one sample and a fresh Adam state, the first step is −lr·sign(g) per weight
  const before = m.params.map((p) => p.data.slice());
  train(m, x, y, { epochs: 1, lr: 1e-3, batch: 1, rng: new Rng(1) });
  const probe = initMlp([64, 8, 8, 10], new Rng(3));
  let checked = 0;
  for (let p = 0; p < probe.params.length; p++) {
    for (let i = 0; i < probe.params[p].data.length; i += 3) {
      const w = probe.params[p].data;
      const orig = w[i];
      const h = 1e-3;
      w[i] = orig + h;
      const up = loss(probe, x, y[0]);
      w[i] = orig - h;
      const down = loss(probe, x, y[0]);
      w[i] = orig;
      const g = (up - down) / (2 * h);
      const step = m.params[p].data[i] - before[p][i];
      if (Math.abs(g) > 1e-3) {
        assert.ok(Math.sign(step) === -Math.sign(g), `${probe.params[p].name}[${i}] step ${step} gradient ${g}`);
        assert.ok(Math.abs(Math.abs(step) - 1e-3) < 1e-4, `${probe.params[p].name}[${i}] step ${step}`);
        checked++;
      }
    }
  }
  assert.ok(checked > 50, `checked ${checked}`);
});

test('training learns the clean task; a short lineage is identical for equal seeds', async () => {
  const splits = taskSplits();
  const quick = {
    baseV1: { fraction: 0.5, epochs: 6, lr: 3e-3 },
    baseV2: { epochs: 1, lr: 1e-3 },
    fineTune: { epochs: 1, lr: 1e-3 },
  };
  const a = trainLineage(9, [64, 32, 32, 10], splits, quick);
  const b = trainLineage(9, [64, 32, 32, 10], splits, quick);
  const c = trainLineage(10, [64, 32, 32, 10], splits, quick);
  for (const name of Object.keys(a) as (keyof typeof a)[]) {
    for (const [i, p] of a[name].params.entries()) assert.deepEqual(p.data, b[name].params[i].data);
  }
  assert.notDeepEqual(a['base-v1'].params[0].data, c['base-v1'].params[0].data);
  const clean = splits.tasks.clean.test;
  const acc = accuracy(a['base-v1'], clean.x, clean.y);
  assert.ok(acc > 0.85, `base-v1 clean accuracy ${acc}`);

  // saved as a model folder, read back through core, scored the same
  const dir = path.join(tmp, 'saved');
  await saveMlp(a['ft-flip'], dir, { name: 'ft-flip' });
  const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
  assert.deepEqual(cfg.dims, [64, 32, 32, 10]);
  const m = await openModel(dir);
  assert.deepEqual(mlpDims(m), [64, 32, 32, 10]);
  assert.deepEqual(await evaluateModel(m), scoreMlp(a['ft-flip']));
  await m.close();
});

test('a model that is not a digits MLP is refused with E_BAD_MODEL', () => {
  const fake = (tensors: { name: string; shape: number[] }[]) => ({ root: 'fake', tensors });
  const good = [
    { name: 'layers.0.weight', shape: [16, 64] },
    { name: 'layers.0.bias', shape: [16] },
    { name: 'head.weight', shape: [10, 16] },
    { name: 'head.bias', shape: [10] },
  ];
  assert.deepEqual(mlpDims(fake(good)), [64, 16, 10]);
  const bad = [
    good.filter((t) => t.name !== 'head.bias'),
    good.map((t) => (t.name === 'head.weight' ? { ...t, shape: [10, 15] } : t)),
    good.map((t) => (t.name === 'layers.0.weight' ? { ...t, shape: [16, 63] } : t)),
    [...good, { name: 'extra', shape: [1] }],
  ];
  for (const b of bad)
    assert.throws(
      () => mlpDims(fake(b)),
      (e: { code?: string }) => e.code === 'E_BAD_MODEL',
    );
});
