// slerp, nuslerp and model_stock against plain f64 loops written here and
// hand-worked cases; the kernel path against the plain path.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isWgitError, type MergeParams, mergeModels, mergeTensor, openModel } from '../../src/index.js';
import { decode, randomValues, rng, type T, tmpDir, writeModel } from './helpers.js';

const code = (e: unknown) => (isWgitError(e) ? e.code : String(e));
const f32 = (xs: number[]) => Float32Array.from(xs);

function close(got: ArrayLike<number>, want: ArrayLike<number>, tol = 1e-6, what = '') {
  assert.equal(got.length, want.length);
  for (let j = 0; j < want.length; j++)
    assert.ok(Math.abs(got[j] - want[j]) <= tol * (1 + Math.abs(want[j])), `${what}[${j}]: ${got[j]} vs ${want[j]}`);
}

const norm = (v: ArrayLike<number>) => Math.sqrt(Array.from(v).reduce((s, x) => s + x * x, 0));
const dot = (a: ArrayLike<number>, b: ArrayLike<number>) => Array.from(a).reduce((s, x, j) => s + x * b[j], 0);

/** mergekit's slerp, written out: normalize (if ‖v‖ > 1e-8), lerp above |d| > 0.9995. */
function slerpOracle(t: number, v0: number[], v1: number[]): number[] {
  const n0 = norm(v0);
  const n1 = norm(v1);
  const u0 = n0 > 1e-8 ? v0.map((x) => x / n0) : v0;
  const u1 = n1 > 1e-8 ? v1.map((x) => x / n1) : v1;
  const d = dot(u0, u1);
  if (Math.abs(d) > 0.9995) return v0.map((x, j) => (1 - t) * x + t * v1[j]);
  const th = Math.acos(d);
  return v0.map((x, j) => (Math.sin(th - th * t) / Math.sin(th)) * x + (Math.sin(th * t) / Math.sin(th)) * v1[j]);
}

function nuslerpOracle(t: number, v0: number[], v1: number[]): number[] {
  const n0 = Math.max(norm(v0), 1e-7);
  const n1 = Math.max(norm(v1), 1e-7);
  const c = Math.min(1, Math.max(-1, dot(v0, v1) / n0 / n1));
  const th = Math.acos(c);
  const s = Math.sin(th);
  if (Math.abs(s) < 1e-8) return v0.map((x, j) => (1 - t) * x + t * v1[j]);
  return v0.map((x, j) => (Math.sin((1 - t) * th) * x + Math.sin(t * th) * v1[j]) / s);
}

function modelStockOracle(base: number[], ws: number[][]): number[] {
  const off = ws.map((w) => w.map((x, j) => x - base[j]));
  const cos: number[] = [];
  for (let i = 0; i < off.length; i++)
    for (let j = i + 1; j < off.length; j++)
      cos.push(Math.min(1, Math.max(-1, dot(off[i], off[j]) / Math.max(norm(off[i]) * norm(off[j]), 1e-6))));
  const c = cos.reduce((a, b) => a + b, 0) / cos.length;
  const n = ws.length;
  const t = (n * c) / (1 + (n - 1) * c);
  return base.map((b, j) => t * (ws.reduce((s, w) => s + w[j], 0) / n) + (1 - t) * b);
}

describe('slerp', () => {
  it('hand-worked: quarter circle, ends, colinear', () => {
    const a = f32([1, 0]);
    const b = f32([0, 1]);
    close(mergeTensor('slerp', { t: 0.5 }, [a, b]), [Math.SQRT1_2, Math.SQRT1_2]);
    assert.deepEqual(Array.from(mergeTensor('slerp', { t: 0 }, [a, b])), [1, 0]);
    close(mergeTensor('slerp', { t: 1 }, [a, b]), [0, 1], 1e-7);
    // colinear (|d| > 0.9995): a plain lerp of the unnormalized vectors
    close(mergeTensor('slerp', { t: 0.25 }, [f32([1, 2]), f32([2, 4])]), [1.25, 2.5]);
  });

  it('matches the oracle on random tensors, t by filter and gradient', () => {
    const r = rng(3);
    for (let k = 0; k < 20; k++) {
      const v0 = randomValues(37, r);
      const v1 = randomValues(37, r);
      const t = [0.1, 0.3, 0.5, 0.9][k % 4];
      close(mergeTensor('slerp', { t }, [f32(v0), f32(v1)]), slerpOracle(t, v0, v1), 1e-5, `t=${t}`);
    }
    const v0 = randomValues(8, r);
    const v1 = randomValues(8, r);
    const t = [{ filter: 'self_attn', value: [0, 0.5, 0.3, 0.7, 1] }, { value: 0.5 }];
    // layer 1 of 3: t = 0.5 → scaled 2 → 0.3
    const got = mergeTensor('slerp', { t }, [f32(v0), f32(v1)], undefined, {
      name: 'model.layers.1.self_attn.q.weight',
      layers: 3,
    });
    close(got, slerpOracle(0.3, v0, v1), 1e-5);
  });

  it('needs t', () => {
    assert.throws(
      () => mergeTensor('slerp', {}, [f32([1]), f32([2])]),
      (e) => code(e) === 'E_BAD_PARAM' && /needs t/.test((e as Error).message),
    );
  });
});

describe('nuslerp', () => {
  it('hand-worked: weights [1, 3] give t = 0.75', () => {
    const got = mergeTensor('nuslerp', { weights: [1, 3] }, [f32([1, 0]), f32([0, 2])]);
    close(got, [Math.sin(Math.PI / 8), 2 * Math.sin((3 * Math.PI) / 8)]);
  });

  it('matches the oracle without and with a base (task vectors + base)', () => {
    const r = rng(5);
    for (let k = 0; k < 10; k++) {
      const v0 = randomValues(29, r);
      const v1 = randomValues(29, r);
      const b = randomValues(29, r);
      const w = [0.3 + k / 10, 1];
      const t = w[1] / (w[0] + w[1]);
      close(mergeTensor('nuslerp', { weights: w }, [f32(v0), f32(v1)]), nuslerpOracle(t, v0, v1), 1e-5);
      const tau = nuslerpOracle(
        t,
        v0.map((x, j) => x - b[j]),
        v1.map((x, j) => x - b[j]),
      );
      close(
        mergeTensor('nuslerp', { weights: w }, [f32(v0), f32(v1)], f32(b)),
        b.map((x, j) => x + tau[j]),
        1e-5,
      );
    }
  });
});

describe('model_stock', () => {
  it('hand-worked: orthogonal task vectors keep the base; t = 2c/(1 + c) at 45°', () => {
    const base = f32([1, 1]);
    assert.deepEqual(Array.from(mergeTensor('model-stock', {}, [f32([2, 1]), f32([1, 2])], base)), [1, 1]);
    const c = Math.SQRT1_2;
    const t = (2 * c) / (1 + c);
    // τ = [1, 0] and [1, 1]; mean θ = [2, 1.5]
    close(mergeTensor('model-stock', {}, [f32([2, 1]), f32([2, 2])], base), [t * 2 + (1 - t), t * 1.5 + (1 - t)]);
  });

  it('matches the oracle for 2–4 models', () => {
    const r = rng(9);
    for (let n = 2; n <= 4; n++) {
      const b = randomValues(31, r);
      const ws = Array.from({ length: n }, () => b.map((x) => x + r() * 0.1 + 0.02));
      close(mergeTensor('model-stock', {}, ws.map(f32), f32(b)), modelStockOracle(b, ws), 1e-5, `n=${n}`);
    }
  });
});

describe('kernel path = plain path', () => {
  let dir: string;
  const paths: string[] = [];
  before(async () => {
    dir = tmpDir();
    const r = rng(21);
    const base = randomValues(256 * 280, r, 0.02);
    for (let i = 0; i < 3; i++) {
      const v = i === 0 ? base : base.map((x) => x + r() * 0.002);
      const ts: T[] = [{ name: 'model.layers.0.mlp.w', dtype: 'BF16', shape: [256, 280], values: v }];
      paths.push(await writeModel(path.join(dir, `m${i}`), ts));
    }
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  const cases: [string, MergeParams, boolean][] = [
    ['slerp', { t: 0.3 }, false],
    ['nuslerp', { weights: [1, 2] }, true],
    ['model-stock', {}, true],
  ];
  for (const [method, params, withBase] of cases) {
    it(method, async () => {
      const outs: Float32Array[] = [];
      for (const kernels of [true, false]) {
        const ms = await Promise.all(paths.map((p) => openModel(p)));
        const o = path.join(dir, `${method}-${kernels}`);
        try {
          const rep = await mergeModels({
            inputs: ms.slice(1),
            base: withBase ? ms[0] : undefined,
            method,
            params,
            outDir: o,
            kernels,
          });
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
  }
});
