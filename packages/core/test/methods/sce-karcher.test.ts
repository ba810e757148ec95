// sce and karcher against plain f64 loops written here from mergekit's
// definitions and hand-worked cases; karcher's kernel path against its plain path.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { mergeModels, mergeTensor, openModel, parseMergekitYaml } from '../../src/index.js';
import { decode, randomValues, rng, type T, tmpDir, writeModel } from './helpers.js';

const f32 = (xs: number[]) => Float32Array.from(xs);

function close(got: ArrayLike<number>, want: ArrayLike<number>, tol = 1e-5, what = '') {
  assert.equal(got.length, want.length);
  for (let j = 0; j < want.length; j++)
    assert.ok(Math.abs(got[j] - want[j]) <= tol * (1 + Math.abs(want[j])), `${what}[${j}]: ${got[j]} vs ${want[j]}`);
}

/** mergekit's sce_merge, written out in f64. */
function sceOracle(base: number[], xs: number[][], topk: number): number[] {
  const n = xs.length;
  const len = base.length;
  let tv = xs.map((x) => x.map((v, j) => Math.fround(v - base[j])));
  if (topk < 1) {
    const v = base.map((_, j) => {
      const mean = tv.reduce((s, t) => s + t[j], 0) / n;
      return tv.reduce((s, t) => s + (t[j] - mean) ** 2, 0) / n;
    });
    const k = Math.floor(v.filter((x) => x !== 0).length * topk);
    const keep = v.map((vj, j) => v.filter((vk, kk) => vk > vj || (vk === vj && kk < j)).length < k);
    tv = tv.map((t) => t.map((x, j) => (keep[j] ? x : 0)));
  }
  const sq = tv.map((t) => t.reduce((s, x) => s + x * x, 0) / len);
  const tot = sq.reduce((a, b) => a + b, 0);
  const w = Math.abs(tot) < 1e-6 ? sq.map(() => 1 / n) : sq.map((x) => x / tot);
  return base.map((b, j) => {
    const s = tv.reduce((acc, t) => acc + t[j], 0);
    const maj = s >= 0 ? 1 : -1;
    let num = 0;
    let den = 0;
    for (let i = 0; i < n; i++)
      if (Math.sign(tv[i][j]) === maj) {
        num += w[i] * tv[i][j];
        den += w[i];
      }
    return b + num / Math.max(den, 1e-6);
  });
}

describe('sce', () => {
  it('hand-worked: select the top-variance position, erase, weight', () => {
    const base = f32([0, 0, 0, 0]);
    const got = mergeTensor('sce', { select_topk: 0.5 }, [f32([1, 2, -1, 0]), f32([1, -2, 1, 3])], base);
    assert.deepEqual(Array.from(got), [0, 2, 0, 0]);
    // no selection: position 3 has one agreeing vote, so it is that input's entry
    const all = mergeTensor('sce', {}, [f32([1, 2, -1, 0]), f32([1, -2, 1, 3])], base);
    close(
      all,
      sceOracle(
        [0, 0, 0, 0],
        [
          [1, 2, -1, 0],
          [1, -2, 1, 3],
        ],
        1,
      ),
    );
    close([all[3]], [3], 1e-6);
  });

  for (const topk of [1, 0.7, 0.25, 0]) {
    it(`against the oracle, select_topk ${topk}`, () => {
      const r = rng(21);
      const base = randomValues(120, r);
      const xs = [0, 1, 2].map((i) => base.map((b) => b + r() * (i + 1) * 0.1));
      // ties in variance: a few positions where every input agrees
      for (const x of xs) for (const j of [3, 50, 77]) x[j] = base[j];
      const got = mergeTensor('sce', { select_topk: topk }, xs.map(f32), f32(base));
      close(
        got,
        sceOracle(
          Array.from(f32(base)),
          xs.map((x) => Array.from(f32(x))),
          topk,
        ),
      );
    });
  }
});

/** mergekit's karcher_merge_tensors, written out in f64 on the vectors themselves. */
function karcherOracle(ts: number[][], maxIter = 10, tol = 1e-5): number[] {
  if (ts.length === 1) return ts[0];
  const dot = (a: number[], b: number[]) => a.reduce((s, x, j) => s + x * b[j], 0);
  const nrm = (a: number[]) => Math.sqrt(dot(a, a));
  const alphas = ts.map(() => 1 / ts.length);
  const norms = ts.map(nrm);
  const units = ts.map((t, i) => (norms[i] === 0 ? t.map(() => 0) : t.map((x) => x / norms[i])));
  const valid = norms.map((_, i) => i).filter((i) => norms[i] > tol);
  if (valid.length === 0) return ts[0].map(() => 0);
  const a = valid.map((i) => alphas[i] / valid.reduce((s, k) => s + alphas[k], 0));
  let u = ts[0].map(() => 0);
  valid.forEach((i, k) => {
    u = u.map((x, j) => x + a[k] * units[i][j]);
  });
  const nu = nrm(u);
  u = nu < tol ? units[valid[0]].slice() : u.map((x) => x / nu);
  for (let it = 0; it < maxIter; it++) {
    let t = u.map(() => 0);
    valid.forEach((i, k) => {
      const d = Math.min(1, Math.max(-1, dot(u, units[i])));
      const th = Math.acos(d);
      if (th < tol) return;
      t = t.map((x, j) => x + a[k] * (th / Math.sin(th)) * (units[i][j] - d * u[j]));
    });
    const nt = nrm(t);
    if (nt < tol) break;
    u = u.map((x, j) => Math.cos(nt) * x + Math.sin(nt) * (t[j] / nt));
    const un = nrm(u);
    if (un > tol) u = u.map((x) => x / un);
  }
  const s = alphas.reduce((acc, al, i) => acc + al * norms[i], 0);
  return u.map((x) => s * x);
}

describe('karcher', () => {
  it('hand-worked: the mean direction of two orthogonal vectors, their mean norm', () => {
    close(mergeTensor('karcher', {}, [f32([2, 0]), f32([0, 3])]), [2.5 * Math.SQRT1_2, 2.5 * Math.SQRT1_2]);
    close(mergeTensor('karcher', {}, [f32([1, 2, 3])]), [1, 2, 3]);
    // a zero input counts in the norm mean, not in the direction
    close(mergeTensor('karcher', {}, [f32([0, 4]), f32([0, 0])]), [0, 2]);
  });

  const cases: [string, number, number, number][] = [
    ['three spread inputs', 3, 10, 1e-5],
    ['five inputs, one iteration', 5, 1, 1e-5],
    ['four inputs, no iteration', 4, 0, 1e-5],
    ['three inputs, loose tolerance', 3, 50, 1e-2],
  ];
  for (const [what, n, maxIter, tol] of cases) {
    it(`against the oracle: ${what}`, () => {
      const r = rng(n * 31 + maxIter);
      const xs = Array.from({ length: n }, () => randomValues(40, r));
      const got = mergeTensor('karcher', { max_iter: maxIter, tol }, xs.map(f32));
      close(
        got,
        karcherOracle(
          xs.map((x) => Array.from(f32(x))),
          maxIter,
          tol,
        ),
        1e-5,
        what,
      );
    });
  }

  it('mergekit YAML: max_iter and tol; base_model is one more input', () => {
    const k = parseMergekitYaml(
      'merge_method: karcher\nbase_model: z\nparameters: {max_iter: 20}\nmodels:\n  - model: a\n  - model: b\n',
    );
    assert.equal(k.method, 'karcher');
    assert.equal(k.base, null);
    assert.ok(k.models.includes('z') && k.models.length === 3);
    assert.equal(k.params.max_iter, 20);
    assert.equal(k.params.tol, 1e-5);
    const s = parseMergekitYaml(
      'merge_method: sce\nbase_model: z\nparameters: {select_topk: 0.1}\nmodels:\n  - model: a\n',
    );
    assert.equal(s.method, 'sce');
    assert.equal(s.params.select_topk, 0.1);
  });

  describe('kernel path', () => {
    let dir: string;
    const paths: string[] = [];
    before(async () => {
      dir = tmpDir();
      const r = rng(5);
      for (let i = 0; i < 3; i++) {
        const ts: T[] = [
          { name: 'model.layers.0.mlp.w', dtype: 'BF16', shape: [256, 280], values: randomValues(256 * 280, r, 0.02) },
        ];
        paths.push(await writeModel(path.join(dir, `m${i}`), ts));
      }
    });
    after(() => fs.rmSync(dir, { recursive: true, force: true }));

    it('agrees with the plain path', async () => {
      const outs: Float32Array[] = [];
      for (const kernels of [true, false]) {
        const ms = await Promise.all(paths.map((p) => openModel(p)));
        const o = path.join(dir, `k-${kernels}`);
        try {
          const rep = await mergeModels({ inputs: ms, method: 'karcher', params: {}, outDir: o, kernels });
          if (kernels) assert.equal(rep.engine?.kernelTensors, 1);
        } finally {
          await Promise.all(ms.map((m) => m.close()));
        }
        const m = await openModel(o);
        outs.push(decode(await m.readTensor('model.layers.0.mlp.w'), 'BF16'));
        await m.close();
      }
      close(outs[0], outs[1], 1e-2);
    });
  });
});
