import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  AbsSelector,
  blockIndex,
  countBlocks,
  decompose,
  getMethod,
  gramMatrix,
  isWgitError,
  kthLargestAbs,
  linesScale,
  METHODS,
  mergeTensor,
  reconstruct,
  symmetricEigen,
} from '../../src/index.js';
import { dareKeeps, dareStream } from '../oracles.js';
import { randomValues, rng } from './helpers.js';

function code(e: unknown): string {
  return isWgitError(e) ? e.code : String(e);
}

function close(a: ArrayLike<number>, b: ArrayLike<number>, tol: number, what = ''): void {
  assert.equal(a.length, b.length, `${what}: length`);
  for (let i = 0; i < a.length; i++) {
    assert.ok(Math.abs(a[i] - b[i]) <= tol * Math.max(1, Math.abs(b[i])), `${what}[${i}]: ${a[i]} vs ${b[i]}`);
  }
}

const f32 = (xs: number[]) => Float32Array.from(xs);

// The DARE mask, written from the definition in docs/kernels.md (../oracles.ts)
const stream = dareStream;
const keep = dareKeeps;

describe('TIES', () => {
  // Hand-computed: base 1, τ below, density 0.5 → k = 3 per model.
  const base = f32([1, 1, 1, 1, 1, 1]);
  const taus = [
    [1.0, -2.0, 0.5, 0.0, 3.0, -0.25],
    [-1.5, -1.0, 0.25, 2.0, -4.0, 0.5],
    [0.5, 3.0, -0.75, 1.0, 2.5, -0.125],
  ];
  const inputs = taus.map((t) => f32(t.map((x) => 1 + x)));
  // trimmed: [1,-2,0,0,3,0], [-1.5,0,0,2,-4,0], [0,3,0,1,2.5,0]
  // elected signs: - + + + + +  → disjoint means: -1.5, 3, 0, 1.5, 2.75, 0
  it('matches the hand-computed 3-model example', () => {
    const out = mergeTensor('ties', { density: 0.5 }, inputs, base);
    assert.deepEqual(Array.from(out), [-0.5, 4, 1, 2.5, 3.75, 1]);
  });
  it('applies lambda to the merged task vector', () => {
    const out = mergeTensor('ties', { density: 0.5, lambda: 0.5 }, inputs, base);
    assert.deepEqual(Array.from(out), [0.25, 2.5, 1, 1.75, 2.375, 1]);
  });
  it('without normalize sums the agreeing entries', () => {
    const out = mergeTensor('ties', { density: 0.5, normalize: false }, inputs, base);
    assert.deepEqual(Array.from(out), [-0.5, 4, 1, 4, 6.5, 1]);
  });
  it('uses given model-wide thresholds instead of per-tensor top-k', () => {
    // thresholds 2: keeps |τ| ≥ 2 only → [0,-2,0,0,3,0], [0,0,0,2,-4,0], [0,3,0,0,2.5,0]
    // sums: 0, 1, 0, 2, 1.5, 0 → +; means: 0, 3, 0, 2, 2.75, 0
    const out = mergeTensor('ties', { density: 0.5 }, inputs, base, { name: 't', thresholds: [2, 2, 2] });
    assert.deepEqual(Array.from(out), [1, 4, 1, 3, 3.75, 1]);
  });
  it('with one model and density 1 equals task arithmetic', () => {
    const r = rng(3);
    const b = f32(randomValues(257, r));
    const x = f32(randomValues(257, r));
    const a = mergeTensor('ties', { density: 1, lambda: 0.7 }, [x], b);
    const t = mergeTensor('task-arithmetic', { lambda: 0.7 }, [x], b);
    assert.deepEqual(a, t);
  });
  it('matches an independent f64 reference on random data with weights', () => {
    const r = rng(11);
    const n = 1000;
    const b = randomValues(n, r);
    const xs = [0, 1, 2].map(() => b.map((v) => v + r() * 0.1));
    const w = [0.5, 1, 2];
    const d = 0.3;
    const out = mergeTensor('ties', { density: d, weights: w }, xs.map(f32), f32(b));
    // reference: sort-based thresholds, f64 math
    const ts = xs.map((x) => x.map((v, j) => Math.fround(Math.fround(v) - Math.fround(b[j]))));
    const trimmed = ts.map((t) => {
      const k = Math.floor(d * n);
      const thr = [...t].map(Math.abs).sort((p, q) => q - p)[k - 1];
      return t.map((v) => (Math.abs(v) >= thr ? v : 0));
    });
    const ref = b.map((bj, j) => {
      const s = trimmed.reduce((acc, t, i) => acc + w[i] * t[j], 0);
      const sign = s >= 0 ? 1 : -1;
      let num = 0;
      let den = 0;
      trimmed.forEach((t, i) => {
        if (t[j] !== 0 && Math.sign(t[j]) === sign) {
          num += w[i] * t[j];
          den += w[i];
        }
      });
      return Math.fround(bj) + (den ? num / den : 0);
    });
    close(out, ref, 1e-5, 'ties');
  });
});

describe('task arithmetic and linear', () => {
  it('task arithmetic: θ₀ + λ Σ wᵢτᵢ against a plain loop', () => {
    const r = rng(5);
    const b = randomValues(100, r);
    const xs = [0, 1].map(() => randomValues(100, r));
    const out = mergeTensor('task-arithmetic', { weights: [1, -0.5], lambda: 0.8 }, xs.map(f32), f32(b));
    const ref = b.map((v, j) => v + 0.8 * (1 * (xs[0][j] - v) - 0.5 * (xs[1][j] - v)));
    close(out, ref, 1e-5, 'ta');
  });
  it('linear: weights divided by their sum', () => {
    const out = mergeTensor('linear', { weights: [1, 3] }, [f32([4, 8, -2]), f32([0, 4, 2])]);
    assert.deepEqual(Array.from(out), [1, 5, 1]);
  });
  it('linear without normalize is the plain weighted sum', () => {
    const out = mergeTensor('linear', { weights: [1, 3], normalize: false }, [f32([4, 8, -2]), f32([0, 4, 2])]);
    assert.deepEqual(Array.from(out), [4, 20, 4]);
  });
  it('rejects bad parameters with E_BAD_PARAM', () => {
    const x = [f32([1]), f32([2])];
    for (const p of [{ weights: [1] }, { weights: [1, Number.NaN] }, { lambda: 1 }, { density: 0.5 }]) {
      assert.throws(
        () => mergeTensor('linear', p, x),
        (e) => code(e) === 'E_BAD_PARAM',
        JSON.stringify(p),
      );
    }
    assert.throws(
      () => mergeTensor('ties', { density: 1.5 }, x, f32([0])),
      (e) => code(e) === 'E_BAD_PARAM',
    );
    assert.throws(
      () => mergeTensor('dare-ties', { density: 0.5, drop: 0.5 }, x, f32([0])),
      (e) => code(e) === 'E_BAD_PARAM',
    );
    assert.throws(
      () => mergeTensor('ties', { seed: -1 }, x, f32([0])),
      (e) => code(e) === 'E_BAD_PARAM',
    );
    assert.throws(
      () => mergeTensor('ties', { bogus: 1 }, x, f32([0])),
      (e) => code(e) === 'E_BAD_PARAM',
    );
    assert.throws(
      () => mergeTensor('task-arithmetic', { density: 0.3 }, x, f32([0])),
      (e) => code(e) === 'E_BAD_PARAM',
    );
  });
  it('unknown method and missing base have their own codes', () => {
    assert.throws(
      () => getMethod('arcee-fusion'),
      (e) => code(e) === 'E_UNKNOWN_METHOD',
    );
    assert.throws(
      () => mergeTensor('ties', {}, [f32([1])]),
      (e) => code(e) === 'E_BASE_REQUIRED',
    );
  });
  it('the registry lists every method with its parameters', () => {
    assert.deepEqual(
      METHODS.map((m) => m.name),
      [
        'linear',
        'task-arithmetic',
        'ties',
        'dare-linear',
        'dare-ties',
        'rmm',
        'slerp',
        'nuslerp',
        'model-stock',
        'passthrough',
        'breadcrumbs',
        'breadcrumbs-ties',
        'della',
        'della-linear',
        'sce',
        'karcher',
      ],
    );
    for (const m of METHODS) for (const p of m.params) assert.ok(p.help.length > 0 && typeof p.required === 'boolean');
    assert.equal(getMethod('ties').config?.sparsify, 'magnitude');
    assert.equal(getMethod('dare-ties').config?.sparsify, 'random');
  });
  it('per-tensor rules pick the first matching filter', () => {
    const b = f32([0, 0]);
    const x = [f32([1, 2])];
    const rules = [{ filter: 'self_attn', value: 0.5 }, { value: 2 }];
    assert.deepEqual(
      Array.from(mergeTensor('task-arithmetic', { lambda: rules }, x, b, { name: 'layers.0.self_attn.q' })),
      [0.5, 1],
    );
    assert.deepEqual(
      Array.from(mergeTensor('task-arithmetic', { lambda: rules }, x, b, { name: 'layers.0.mlp.up' })),
      [2, 4],
    );
  });
});

describe('DARE', () => {
  const r = rng(9);
  const n = 4000;
  const b = f32(randomValues(n, r));
  const xs = [0, 1, 2].map(() => f32(Array.from(b, (v) => v + r() * 0.1)));
  it('drop 0 equals task arithmetic (dare-linear)', () => {
    const a = mergeTensor('dare-linear', { drop: 0, weights: [1, 0.5, 2] }, xs, b);
    const t = mergeTensor('task-arithmetic', { weights: [1, 0.5, 2] }, xs, b);
    assert.deepEqual(a, t);
  });
  it('is deterministic per seed and differs across seeds', () => {
    const a = mergeTensor('dare-ties', { density: 0.3, seed: 1 }, xs, b, { name: 'w' });
    const a2 = mergeTensor('dare-ties', { density: 0.3, seed: 1 }, xs, b, { name: 'w' });
    const c = mergeTensor('dare-ties', { density: 0.3, seed: 2 }, xs, b, { name: 'w' });
    const other = mergeTensor('dare-ties', { density: 0.3, seed: 1 }, xs, b, { name: 'v' });
    assert.deepEqual(a, a2);
    assert.notDeepEqual(a, c);
    assert.notDeepEqual(a, other);
  });
  it('dare-linear matches an independent mask + rescale reference', () => {
    const p = 0.7;
    const out = mergeTensor('dare-linear', { drop: p, seed: 42 }, xs, b, { name: 'model.x' });
    const scale = Math.fround(1 / (1 - p));
    let kept = 0;
    const ref = Array.from(b, (bj, j) => {
      let s = 0;
      xs.forEach((x, i) => {
        const t = Math.fround(x[j] - bj);
        if (keep(42, stream('model.x', i), j, p)) {
          s += t * scale;
          kept++;
        }
      });
      return bj + s;
    });
    close(out, ref, 1e-5, 'dare-linear');
    const rate = kept / (3 * n);
    assert.ok(Math.abs(rate - 0.3) < 0.03, `keep rate ${rate}`);
  });
  it('dare-ties matches an independent reference (sign election after the drop)', () => {
    const p = 0.5;
    const out = mergeTensor('dare-ties', { drop: p, seed: 3 }, xs, b, { name: 'q' });
    const scale = Math.fround(1 / (1 - p));
    const ref = Array.from(b, (bj, j) => {
      const t = xs.map((x, i) => (keep(3, stream('q', i), j, p) ? Math.fround(x[j] - bj) * scale : 0));
      const sign = t.reduce((a, c) => a + c, 0) >= 0 ? 1 : -1;
      // normalize defaults to false for dare-ties (as in mergekit): the agreeing entries are summed
      return bj + t.filter((v) => v !== 0 && Math.sign(v) === sign).reduce((a, c) => a + c, 0);
    });
    close(out, ref, 1e-5, 'dare-ties');
  });
});

describe('k-th largest |x|', () => {
  it('matches sorting, across several arrays and with duplicates', () => {
    const r = rng(2);
    const arrays = [f32(randomValues(1000, r)), f32(randomValues(17, r)), f32([0, 0, -3, 3, 1e-30, -0])];
    const all = arrays.flatMap((a) => Array.from(a, Math.abs)).sort((p, q) => q - p);
    for (const k of [1, 2, 3, 10, 500, 1017, all.length]) {
      assert.equal(kthLargestAbs(arrays, k), all[k - 1], `k=${k}`);
    }
    assert.equal(kthLargestAbs(arrays, 0), Number.POSITIVE_INFINITY);
    assert.equal(kthLargestAbs(arrays, all.length + 5), 0);
  });
  it('streams: pass 0 then pass 1 over chunks gives the same value', () => {
    const r = rng(8);
    const a = f32(randomValues(5000, r));
    const s = new AbsSelector();
    for (let i = 0; i < a.length; i += 777) s.addPass0(a.subarray(i, i + 777));
    assert.ok(s.choose(1234));
    for (let i = 0; i < a.length; i += 777) s.addPass1(a.subarray(i, i + 777));
    assert.equal(s.result(), kthLargestAbs([a], 1234));
  });
});

describe('LiNeS scaling', () => {
  it('finds block numbers with the regex, not substrings', () => {
    assert.equal(blockIndex('model.layers.12.mlp.up_proj.weight'), 12);
    assert.equal(blockIndex('transformer.h.3.attn.c_attn.weight'), 3);
    assert.equal(blockIndex('blocks.0.norm.weight'), 0);
    assert.equal(blockIndex('encoder.layer.7.output.dense.weight'), 7);
    assert.equal(blockIndex('model.layers12.mlp'), null);
    assert.equal(blockIndex('xh.3.weight'), null);
    assert.equal(blockIndex('model.embed_tokens.weight'), null);
    assert.equal(blockIndex('layers.5.weight'), 5);
    assert.equal(countBlocks(['layers.0.w', 'layers.9.w', 'head.w']), 10);
  });
  it('λ(ℓ) = α + β·ℓ/(L−1), α outside the blocks', () => {
    assert.equal(linesScale('layers.0.w', 5, 0.2, 0.8), 0.2);
    assert.equal(linesScale('layers.4.w', 5, 0.2, 0.8), 1);
    assert.equal(linesScale('layers.2.w', 5, 0.25, 0.5), 0.5);
    assert.equal(linesScale('lm_head.weight', 5, 0.2, 0.8), 0.2);
  });
});

describe('reversible merge math', () => {
  it('Jacobi eigen-decomposition reproduces the matrix and is orthonormal', () => {
    const r = rng(4);
    const n = 7;
    const a = Array.from({ length: n }, () => randomValues(n, r));
    const s = a.map((row, i) => row.map((_, j) => a[i][j] + a[j][i]));
    const { values, vectors } = symmetricEigen(s);
    for (let i = 1; i < n; i++) assert.ok(values[i - 1] >= values[i]);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        let rec = 0;
        let dot = 0;
        for (let k = 0; k < n; k++) {
          rec += vectors[i][k] * values[k] * vectors[j][k];
          dot += vectors[k][i] * vectors[k][j];
        }
        assert.ok(Math.abs(rec - s[i][j]) < 1e-10, `A[${i}][${j}]`);
        assert.ok(Math.abs(dot - (i === j ? 1 : 0)) < 1e-12, `QᵀQ[${i}][${j}]`);
      }
    }
  });
  it('Jacobi on a hand-computed 2×2: [[2,1],[1,2]] → 3, 1', () => {
    const { values, vectors } = symmetricEigen([
      [2, 1],
      [1, 2],
    ]);
    close(values, [3, 1], 1e-14);
    assert.ok(Math.abs(Math.abs(vectors[0][0]) - Math.SQRT1_2) < 1e-14);
  });
  it('full basis reconstructs every update; truncated never does worse than the merge', async () => {
    const r = rng(6);
    const len = 300;
    const base = f32(randomValues(len, r));
    const deltas = [0, 1, 2, 3].map((i) => f32(randomValues(len, r, 0.1 * (i + 1))));
    const g = await gramMatrix(deltas);
    const mc = [0.25, 0.25, 0.25, 0.25];
    const merged = Array.from({ length: len }, (_, j) => deltas.reduce((s, d, i) => s + mc[i] * d[j], 0));
    for (const rank of [1, 2, 3, 4]) {
      const dec = decompose(g, mc, rank);
      assert.equal(dec.combo.length, rank);
      const basis = dec.combo.map((c) => {
        const m = new Float32Array(len);
        for (let j = 0; j < len; j++) m[j] = c.reduce((s, ci, i) => s + ci * deltas[i][j], 0);
        return m;
      });
      const rec = new Float32Array(len);
      for (const [i, d] of deltas.entries()) {
        await reconstruct(base, basis, dec.coeffs[i], rec);
        let err = 0;
        let mErr = 0;
        let norm = 0;
        for (let j = 0; j < len; j++) {
          err += (rec[j] - base[j] - d[j]) ** 2;
          mErr += (merged[j] - d[j]) ** 2;
          norm += d[j] ** 2;
        }
        if (rank === 4)
          assert.ok(Math.sqrt(err / norm) < 1e-5, `exact at full rank, task ${i}: ${Math.sqrt(err / norm)}`);
        else assert.ok(err <= mErr * (1 + 1e-6), `rank ${rank} task ${i}: ${err} > ${mErr}`);
      }
    }
  });
  it('zero and duplicate updates give a smaller basis', async () => {
    const d = f32([1, 2, 3]);
    const z = new Float32Array(3);
    const dec = decompose(await gramMatrix([d, d, z]), [1 / 3, 1 / 3, 1 / 3], 3);
    assert.equal(dec.combo.length, 1);
    assert.equal(decompose(await gramMatrix([z, z]), [0.5, 0.5], 2).combo.length, 0);
  });
});
