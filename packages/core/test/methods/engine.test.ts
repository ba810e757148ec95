import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isWgitError, linesEdit, type MergeParams, mergeModels, openModel } from '../../src/index.js';
import { kthLargestBySort, tiesMerged, topKMask, topKMaskAcross } from '../oracles.js';
import { bf16Round, decode, llamaToy, perturb, readAll, rng, type T, tmpDir, writeModel } from './helpers.js';

const code = (e: unknown) => (isWgitError(e) ? e.code : String(e));

let dir: string;
let base: T[];
let fts: T[][];
let paths: { base: string; ft: string[] };

const opened: { close(): Promise<void> }[] = [];
async function open(p: string) {
  const m = await openModel(p);
  opened.push(m);
  return m;
}

before(async () => {
  dir = tmpDir();
  const r = rng(1);
  base = llamaToy(r);
  // Each fine-tune holds its own integers (100, 101, 102; the base 7), so "copied from the first
  // input" can be told apart from any other input, the base or a merge of them.
  fts = [0, 1, 2].map((i) => perturb(base, r, 0.01).map((t) => (t.dtype === 'I64' ? { ...t, values: [100 + i] } : t)));
  paths = {
    base: await writeModel(path.join(dir, 'base'), base, {
      'config.json': '{"base":true}',
      'tokenizer/vocab.txt': 'a b c',
    }),
    ft: await Promise.all(fts.map((t, i) => writeModel(path.join(dir, `ft${i}`), t, { 'config.json': `{"ft":${i}}` }))),
  };
});
after(async () => {
  await Promise.all(opened.map((m) => m.close()));
  fs.rmSync(dir, { recursive: true, force: true });
});

let outN = 0;
const out = () => path.join(dir, `out${outN++}`);

async function merge(method: string, params: MergeParams, inputs = paths.ft, withBase = true, extra: object = {}) {
  const ins = await Promise.all(inputs.map(open));
  const b = withBase ? await open(paths.base) : undefined;
  const o = out();
  try {
    const report = await mergeModels({ inputs: ins, base: b, method, params, outDir: o, ...extra });
    return { report, o, tensors: await readAll(o) };
  } finally {
    await Promise.all([...ins, ...(b ? [b] : [])].map((m) => m.close()));
  }
}

function values(ts: T[], name: string): Float32Array {
  const t = ts.find((x) => x.name === name) as T;
  return Float32Array.from(t.values, bf16Round);
}

/** τ = f32(x − base) of one tensor, as stored (bf16). */
function tauOf(ft: T[], name: string): Float32Array {
  const x = values(ft, name);
  const b = values(base, name);
  return Float32Array.from(x, (v, j) => Math.fround(v - b[j]));
}

/** base + λ·merged in f32, rounded to bf16 as stored. */
function expectedTies(b: Float32Array, merged: Float32Array, lambda: number): Float32Array {
  const lam = Math.fround(lambda);
  return Float32Array.from(b, (bj, j) => bf16Round(Math.fround(bj + Math.fround(lam * merged[j]))));
}

describe('mergeModels', () => {
  it('linear: each tensor is the bf16-rounded weighted mean; ints copied; side files from the first model', async () => {
    const { report, o, tensors } = await merge('linear', { weights: [1, 2, 1] }, paths.ft, false);
    for (const t of base) {
      const got = tensors.get(t.name);
      assert.ok(got);
      if (t.dtype === 'I64') {
        assert.deepEqual(got.bytes, new Uint8Array(new BigInt64Array([100n]).buffer));
        continue;
      }
      const xs = fts.map((f) => values(f, t.name));
      const ref = xs[0].map((_, j) => bf16Round((xs[0][j] + 2 * xs[1][j] + xs[2][j]) / 4));
      const g = decode(got.bytes, 'BF16');
      for (let j = 0; j < g.length; j++) {
        // f32 accumulation may land one bf16 ulp away from the f64 reference at a tie
        assert.ok(Math.abs(g[j] - ref[j]) <= Math.abs(ref[j]) * 2 ** -7, `${t.name}[${j}] ${g[j]} vs ${ref[j]}`);
      }
    }
    assert.deepEqual(report.copied, ['model.step']);
    assert.equal(fs.readFileSync(path.join(o, 'config.json'), 'utf8'), '{"ft":0}');
    assert.equal(report.method, 'linear');
  });

  it('linear merge of equal models is that model, byte for byte', async () => {
    const { tensors } = await merge('linear', {}, [paths.ft[1], paths.ft[1], paths.ft[1]], false);
    const orig = await readAll(paths.ft[1]);
    for (const [name, t] of orig) assert.deepEqual(tensors.get(name)?.bytes, t.bytes, name);
  });

  it('ties through the engine equals a plain top-k loop; ints from the first input; base side files copied', async () => {
    const { o, tensors, report } = await merge('ties', { density: 0.4, lambda: 0.9 });
    for (const t of base) {
      if (t.dtype === 'I64') {
        assert.deepEqual(tensors.get(t.name)?.bytes, new Uint8Array(new BigInt64Array([100n]).buffer));
        continue;
      }
      const b = values(base, t.name);
      const taus = fts.map((f) => tauOf(f, t.name));
      const kept = taus.map((x) => topKMask(x, Math.floor(0.4 * x.length)));
      const want = expectedTies(b, tiesMerged(taus, kept, [1, 1, 1]), 0.9);
      assert.deepEqual(decode(tensors.get(t.name)?.bytes as Uint8Array, 'BF16'), want, t.name);
    }
    assert.equal(fs.readFileSync(path.join(o, 'tokenizer', 'vocab.txt'), 'utf8'), 'a b c');
    assert.equal(report.params.trim, 'tensor');
    assert.equal(report.params.seed, 0);
  });

  it('same inputs and seed give the same bytes; another seed changes them', async () => {
    const a = await merge('dare-ties', { density: 0.5, seed: 7 });
    const b = await merge('dare-ties', { density: 0.5, seed: 7 });
    const c = await merge('dare-ties', { density: 0.5, seed: 8 });
    const fa = fs.readFileSync(path.join(a.o, 'model.safetensors'));
    assert.deepEqual(fa, fs.readFileSync(path.join(b.o, 'model.safetensors')));
    assert.notDeepEqual(fa, fs.readFileSync(path.join(c.o, 'model.safetensors')));
  });

  it('model-wide trim uses one threshold per input over all tensors', async () => {
    const { report, tensors } = await merge('ties', { density: 0.3, trim: 'model' });
    const floats = base.filter((t) => t.dtype !== 'I64');
    const taus = fts.map((f) => floats.map((t) => tauOf(f, t.name)));
    const n = taus[0].reduce((s, t) => s + t.length, 0);
    const k = Math.floor(0.3 * n);
    // the thresholds by sorting every |τ| of an input
    assert.deepEqual(
      report.thresholds,
      taus.map((ts) => kthLargestBySort(ts, k)),
    );
    // the kept entries: the top k of the whole model, not of each tensor
    const kept = taus.map((ts) => topKMaskAcross(ts, k));
    for (const [x, t] of floats.entries()) {
      const merged = tiesMerged(
        taus.map((ts) => ts[x]),
        kept.map((m) => m[x]),
        [1, 1, 1],
      );
      const want = expectedTies(values(base, t.name), merged, 1);
      assert.deepEqual(decode(tensors.get(t.name)?.bytes as Uint8Array, 'BF16'), want, t.name);
    }
    // and that differs from trimming each tensor on its own (else the test could not tell them apart)
    const perTensor = await merge('ties', { density: 0.3, trim: 'tensor' });
    assert.ok(
      floats.some(
        (t) =>
          !Buffer.from(perTensor.tensors.get(t.name)?.bytes as Uint8Array).equals(
            tensors.get(t.name)?.bytes as Uint8Array,
          ),
      ),
    );
  });

  it('LiNeS post-step: α = 1/T for task arithmetic, depth-scaled update', async () => {
    const beta = 0.6;
    const { report, tensors } = await merge('task-arithmetic', { lines: { beta } });
    assert.ok(report.lines);
    assert.ok(Math.abs(report.lines.alpha - 1 / 3) < 1e-6, `alpha ${report.lines.alpha}`);
    assert.equal(report.lines.blocks, 3);
    const t = 'model.layers.2.mlp.up_proj.weight';
    const b = values(base, t);
    const xs = fts.map((f) => values(f, t));
    const lam = report.lines.alpha + beta; // last block: ℓ/(L−1) = 1
    const ref = b.map((bj, j) => bf16Round(bj + lam * xs.reduce((s, x) => s + (x[j] - bj), 0)));
    const g = decode(tensors.get(t)?.bytes as Uint8Array, 'BF16');
    for (let j = 0; j < g.length; j++) assert.ok(Math.abs(g[j] - ref[j]) <= Math.abs(ref[j]) * 2 ** -7, `${j}`);
  });

  it('output dtype and sharding', async () => {
    const { tensors, o } = await merge('task-arithmetic', {}, paths.ft, true, { outDtype: 'F32', maxShardBytes: 200 });
    assert.ok(fs.existsSync(path.join(o, 'model.safetensors.index.json')));
    assert.equal(tensors.get('lm_head.weight')?.dtype, 'F32');
    assert.equal(tensors.get('model.step')?.dtype, 'I64');
  });

  it('reports progress for every tensor', async () => {
    const events: number[] = [];
    await merge('linear', {}, paths.ft, false, { onProgress: (e: { done: number }) => events.push(e.done) });
    assert.deepEqual(
      events,
      base.map((_, i) => i + 1),
    );
  });
});

describe('mergeModels errors (before any output)', () => {
  it('different tensor names → E_TENSOR_MISMATCH naming them', async () => {
    const p = await writeModel(
      path.join(dir, 'renamed'),
      base.map((t) => (t.name === 'lm_head.weight' ? { ...t, name: 'head.weight' } : t)),
    );
    const o = path.join(dir, 'never1');
    await assert.rejects(
      mergeModels({ inputs: [await open(paths.ft[0]), await open(p)], method: 'linear', outDir: o }),
      (e) => code(e) === 'E_TENSOR_MISMATCH' && /lm_head\.weight/.test((e as Error).message),
    );
    assert.equal(fs.existsSync(o), false);
  });
  it('shape and dtype mismatches name the tensor', async () => {
    const s = await writeModel(
      path.join(dir, 'shape'),
      base.map((t) => (t.name === 'model.norm.weight' ? { ...t, shape: [2, 2] } : t)),
    );
    await assert.rejects(
      mergeModels({
        inputs: [await open(paths.ft[0]), await open(s)],
        method: 'linear',
        outDir: path.join(dir, 'never2'),
      }),
      (e) => code(e) === 'E_SHAPE_MISMATCH' && /model\.norm\.weight/.test((e as Error).message),
    );
    const d = await writeModel(
      path.join(dir, 'dtype'),
      base.map((t) => (t.name === 'model.norm.weight' ? { ...t, dtype: 'F32' } : t)),
    );
    await assert.rejects(
      mergeModels({
        inputs: [await open(paths.ft[0]), await open(d)],
        method: 'linear',
        outDir: path.join(dir, 'never3'),
      }),
      (e) => code(e) === 'E_DTYPE_MISMATCH',
    );
  });
  it('missing base, unknown method, bad weights, non-empty output folder', async () => {
    const ins = [await open(paths.ft[0]), await open(paths.ft[1])];
    await assert.rejects(
      mergeModels({ inputs: ins, method: 'ties', outDir: path.join(dir, 'n4') }),
      (e) => code(e) === 'E_BASE_REQUIRED',
    );
    await assert.rejects(
      mergeModels({ inputs: ins, method: 'arcee-fusion', outDir: path.join(dir, 'n5') }),
      (e) => code(e) === 'E_UNKNOWN_METHOD',
    );
    await assert.rejects(
      mergeModels({ inputs: ins, method: 'linear', params: { weights: [1, 2, 3] }, outDir: path.join(dir, 'n6') }),
      (e) => code(e) === 'E_BAD_PARAM',
    );
    await assert.rejects(
      mergeModels({ inputs: ins, method: 'linear', outDir: paths.base }),
      (e) => code(e) === 'E_OUTPUT_NOT_EMPTY',
    );
    await assert.rejects(
      mergeModels({
        inputs: ins,
        method: 'linear',
        params: { lines: { beta: 1 } },
        outDir: path.join(dir, 'n7'),
      }),
      (e) => code(e) === 'E_BAD_PARAM',
    );
    await assert.rejects(
      mergeModels({ inputs: ins, method: 'linear', outDtype: 'I32' as 'F32', outDir: path.join(dir, 'n8') }),
      (e) => code(e) === 'E_BAD_PARAM',
    );
  });
});

describe('failures mid-merge', () => {
  it('a model that shrinks while being read fails with its code and leaves no output folder', async () => {
    const p = await writeModel(path.join(dir, 'shrinks'), fts[2]);
    const m = await open(p);
    const file = path.join(p, 'model.safetensors');
    fs.truncateSync(file, fs.statSync(file).size - 40);
    const o = path.join(dir, 'never-partial');
    await assert.rejects(
      mergeModels({ inputs: [await open(paths.ft[0]), m], method: 'linear', outDir: o }),
      (e) => code(e) === 'E_SAFETENSORS_TRUNCATED',
    );
    assert.equal(fs.existsSync(o), false);
  });
});

describe('linesEdit', () => {
  it('α = 1, β = 0 gives back the fine-tune byte for byte', async () => {
    const o = out();
    await linesEdit({ model: await open(paths.ft[0]), base: await open(paths.base), alpha: 1, beta: 0, outDir: o });
    const a = await readAll(o);
    for (const [name, t] of await readAll(paths.ft[0])) {
      if (t.dtype === 'I64') continue;
      assert.deepEqual(a.get(name)?.bytes, t.bytes, name);
    }
    // The edit keeps the fine-tune's side files, not the base's: the whole folder comes back.
    assert.deepEqual(fs.readdirSync(o).sort(), fs.readdirSync(paths.ft[0]).sort());
    for (const f of fs.readdirSync(o)) {
      assert.deepEqual(fs.readFileSync(path.join(o, f)), fs.readFileSync(path.join(paths.ft[0], f)), f);
    }
  });
  it('scales each block by α + β·ℓ/(L−1), β = 1 − α by default', async () => {
    const o = out();
    const r = await linesEdit({ model: await open(paths.ft[0]), base: await open(paths.base), alpha: 0.25, outDir: o });
    assert.deepEqual(r.lines, { alpha: 0.25, beta: 0.75, blocks: 3 });
    const got = await readAll(o);
    const scales: Record<string, number> = {
      'model.layers.0.mlp.up_proj.weight': 0.25,
      'model.layers.1.mlp.up_proj.weight': 0.625,
      'model.layers.2.mlp.up_proj.weight': 1,
      'lm_head.weight': 0.25,
      'model.embed_tokens.weight': 0.25,
    };
    for (const [name, s] of Object.entries(scales)) {
      const b = values(base, name);
      const x = values(fts[0], name);
      const g = decode(got.get(name)?.bytes as Uint8Array, 'BF16');
      for (let j = 0; j < g.length; j++) {
        const ref = bf16Round(b[j] + s * (x[j] - b[j]));
        assert.ok(Math.abs(g[j] - ref) <= Math.abs(ref) * 2 ** -7, `${name}[${j}] ${g[j]} vs ${ref}`);
      }
    }
  });
});

describe('kernel path', () => {
  it('gives the same bytes as the plain TypeScript path for every method', async () => {
    const { getDevice } = await import('../../src/index.js');
    await getDevice({ device: 'cpu' }); // the wasm build must be there: a silent fallback would make this test compare plain with plain
    const cases: [string, MergeParams][] = [
      ['linear', { weights: [1, 2, 0.5] }],
      ['task-arithmetic', { weights: [1, -0.5, 0.75], lambda: 0.8 }],
      ['ties', { density: 0.3 }],
      ['ties', { density: 0.3, weights: [1, 2, 0.5], lambda: 1.2 }],
      ['ties', { density: 0.3, normalize: false }],
      ['ties', { density: 0.3, weights: [1, -1, 0.5] }],
      ['ties', { density: 0.25, trim: 'model' }],
      ['dare-linear', { drop: 0.6, seed: 5 }],
      ['dare-ties', { density: 0.4, seed: 9 }],
      ['dare-ties', { density: 0.4, seed: 9, normalize: true }],
      ['task-arithmetic', { lines: { beta: 0.5 } }],
    ];
    for (const [method, params] of cases) {
      const fast = await merge(method, params, paths.ft, method !== 'linear', { kernelMinElements: 0 });
      const plain = await merge(method, params, paths.ft, method !== 'linear', { kernels: false });
      assert.equal(fast.report.engine?.kernels, true);
      assert.equal(fast.report.engine?.kernelTensors, base.length - 1, `${method}: every float tensor on the kernels`);
      assert.equal(plain.report.engine?.kernelTensors, 0);
      for (const [name, t] of plain.tensors)
        assert.deepEqual(fast.tensors.get(name)?.bytes, t.bytes, `${method} ${JSON.stringify(params)} ${name}`);
    }
  });
});

describe('safetensors metadata of method outputs', () => {
  it("a merge carries the base model's __metadata__, else the first input's", async () => {
    const r = rng(7);
    const b = llamaToy(r);
    const mdir = path.join(dir, 'meta');
    const basePath = await writeModel(path.join(mdir, 'base'), b, undefined, { format: 'pt', origin: 'base' });
    const ftPaths = await Promise.all(
      [0, 1].map((i) =>
        writeModel(path.join(mdir, `ft${i}`), perturb(b, r, 0.01), undefined, { format: 'pt', origin: `ft${i}` }),
      ),
    );
    const withBase = path.join(mdir, 'with-base');
    const ins = await Promise.all(ftPaths.map(open));
    await mergeModels({ inputs: ins, base: await open(basePath), method: 'task-arithmetic', outDir: withBase });
    assert.deepEqual((await open(withBase)).metadata, { format: 'pt', origin: 'base' });
    const noBase = path.join(mdir, 'no-base');
    await mergeModels({ inputs: ins, method: 'linear', outDir: noBase });
    assert.deepEqual((await open(noBase)).metadata, { format: 'pt', origin: 'ft0' });
  });
});
