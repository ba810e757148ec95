// Magnitude pruning against pairwise-rank oracles written here; a pruned
// model's tensors bit for bit; the sparsity a linear merge of pruned models reports.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isWgitError, mergeModels, openModel, pruneModel, pruneNM, pruneUnstructured } from '../../src/index.js';
import { rng, type T, tmpDir, writeModel } from './helpers.js';

const code = (e: unknown) => (isWgitError(e) ? e.code : String(e));

/** Kept ⇔ fewer than N − z entries rank above it (larger |x|, or equal at an earlier index). */
function unstructuredOracle(x: number[], s: number): number[] {
  const keep = x.length - Math.round(s * x.length);
  return x.map((v, j) => {
    let above = 0;
    for (let k = 0; k < x.length; k++)
      if (Math.abs(x[k]) > Math.abs(v) || (Math.abs(x[k]) === Math.abs(v) && k < j)) above++;
    return above < keep ? v : 0;
  });
}

function nmOracle(x: number[], n: number, m: number): number[] {
  const out = x.slice();
  for (let g = 0; g < x.length; g += m) {
    for (let j = g; j < g + m; j++) {
      let above = 0;
      for (let k = g; k < g + m; k++)
        if (Math.abs(x[k]) > Math.abs(x[j]) || (Math.abs(x[k]) === Math.abs(x[j]) && k < j)) above++;
      if (above >= n) out[j] = 0;
    }
  }
  return out;
}

describe('prune', () => {
  it('unstructured: exactly round(S·N) zeroed, the smallest first, ties by index', () => {
    const r = rng(4);
    for (const s of [0, 0.1, 0.5, 0.73, 1]) {
      // quantized values make many ties
      const x = Array.from({ length: 101 }, () => Math.round(r() * 4) / 4);
      const got = Float32Array.from(x);
      assert.equal(pruneUnstructured(got, s), Math.round(s * 101));
      assert.deepEqual(Array.from(got), unstructuredOracle(Array.from(Float32Array.from(x)), s), `sparsity ${s}`);
    }
  });

  it('N:M: N kept of every M along a row; rows must divide by M', () => {
    const r = rng(8);
    const x = Array.from({ length: 6 * 8 }, () => Math.round(r() * 3) / 3);
    for (const [n, m] of [
      [2, 4],
      [1, 4],
      [4, 8],
      [0, 2],
    ]) {
      const got = Float32Array.from(x);
      assert.equal(pruneNM(got, 8, n, m), (48 / m) * (m - n));
      assert.deepEqual(Array.from(got), nmOracle(Array.from(Float32Array.from(x)), n, m), `${n}:${m}`);
    }
    assert.throws(
      () => pruneNM(new Float32Array(12), 6, 2, 4),
      (e) => code(e) === 'E_BAD_PARAM',
    );
  });

  describe('models', () => {
    let dir: string;
    const r = rng(12);
    const w = (n: number) => Array.from({ length: n }, () => r());
    const model: T[] = [
      { name: 'model.embed_tokens.weight', dtype: 'BF16', shape: [16, 8], values: w(128) },
      { name: 'model.layers.0.mlp.up_proj.weight', dtype: 'BF16', shape: [8, 16], values: w(128) },
      { name: 'model.layers.0.input_layernorm.weight', dtype: 'BF16', shape: [8], values: w(8) },
      { name: 'model.layers.1.self_attn.q_proj.weight', dtype: 'F32', shape: [8, 8], values: w(64) },
    ];
    before(async () => {
      dir = tmpDir();
      await writeModel(path.join(dir, 'm'), model);
    });
    after(() => fs.rmSync(dir, { recursive: true, force: true }));

    const read = async (p: string) => {
      const m = await openModel(p);
      const out = new Map<string, Uint8Array>();
      for (const t of m.tensors) out.set(t.name, await m.readTensor(t.name));
      await m.close();
      return out;
    };
    const values = (b: Uint8Array, dtype: string): number[] => {
      if (dtype === 'F32') return Array.from(new Float32Array(b.slice().buffer));
      return Array.from(
        new Uint16Array(b.slice().buffer),
        (h) => new Float32Array(new Uint32Array([h << 16]).buffer)[0],
      );
    };

    for (const [what, opts] of [
      ['unstructured 0.6', { sparsity: 0.6 }],
      ['2:4', { structured: { n: 2, m: 4 } }],
    ] as const) {
      it(`${what}: the layers' 2-D weights pruned, every other tensor bit for bit`, async () => {
        const src = await openModel(path.join(dir, 'm'));
        const out = path.join(dir, what.replace(/\W/g, '_'));
        let rep: Awaited<ReturnType<typeof pruneModel>>;
        try {
          rep = await pruneModel({ model: src, outDir: out, ...opts });
        } finally {
          await src.close();
        }
        const before = await read(path.join(dir, 'm'));
        const after = await read(out);
        for (const t of model) {
          const a = before.get(t.name) as Uint8Array;
          const b = after.get(t.name) as Uint8Array;
          if (t.shape.length !== 2 || !t.name.includes('layers.')) {
            assert.deepEqual(b, a, t.name);
            continue;
          }
          const x = values(a, t.dtype);
          const want = 'structured' in opts ? nmOracle(x, 2, 4) : unstructuredOracle(x, 0.6);
          assert.deepEqual(values(b, t.dtype), want, t.name);
        }
        assert.equal(rep.prune.tensors.length, 2);
        assert.equal(rep.prune.elements, 128 + 64);
        assert.equal(rep.prune.zeros, 'structured' in opts ? 96 : Math.round(0.6 * 128) + Math.round(0.6 * 64));
      });
    }

    it('refuses a sparsity outside [0, 1] and one that contradicts N:M', async () => {
      const src = await openModel(path.join(dir, 'm'));
      try {
        for (const o of [{ sparsity: 1.5 }, { sparsity: 0.3, structured: { n: 2, m: 4 } }, {}])
          await assert.rejects(
            pruneModel({ model: src, outDir: path.join(dir, 'x'), ...o }),
            (e) => code(e) === 'E_BAD_PARAM',
          );
      } finally {
        await src.close();
      }
    });

    it('sparse soup: a linear merge of models sharing a mask keeps it, and reports it', async () => {
      const n = 64 * 64;
      const base = w(n);
      const mask = unstructuredOracle(base, 0.5).map((v) => v !== 0);
      const soupIn = [1, 2, 3].map((i) => base.map((v, j) => (mask[j] ? v + 0.01 * i * r() : 0)));
      const other = base.map((v, j) => (j % 2 === 0 ? 0 : v));
      const paths: string[] = [];
      for (const [i, vs] of [...soupIn, other].entries())
        paths.push(
          await writeModel(path.join(dir, `s${i}`), [
            { name: 'model.layers.0.w', dtype: 'F32', shape: [64, 64], values: vs },
          ]),
        );
      const merge = async (ps: string[], out: string, kernels: boolean) => {
        const ms = await Promise.all(ps.map((p) => openModel(p)));
        try {
          return await mergeModels({
            inputs: ms,
            method: 'linear',
            outDir: path.join(dir, out),
            kernels,
            kernelMinElements: 1,
          });
        } finally {
          await Promise.all(ms.map((m) => m.close()));
        }
      };
      for (const kernels of [true, false]) {
        const shared = await merge(paths.slice(0, 3), `soup-${kernels}`, kernels);
        assert.deepEqual(shared.sparsity, { elements: n, inputs: [0.5, 0.5, 0.5], output: 0.5 });
        const mixed = await merge([paths[0], paths[3]], `mixed-${kernels}`, kernels);
        assert.equal(mixed.sparsity?.inputs[1], 0.5);
        assert.ok((mixed.sparsity?.output ?? 1) < 0.3, `mixed masks: ${mixed.sparsity?.output}`);
      }
    });
  });
});
