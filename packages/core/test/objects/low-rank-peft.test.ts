import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { bf16BitsToF32, f32ToBf16Bits } from '../../src/dtypes.js';
import { applyLowRank, computeLowRank, type LowRankMeta, lowRank } from '../../src/objects/index.js';
import { exportLora, importLora, openLoraAdapter, patternValue } from '../../src/peft/index.js';
import { openModel, writeSafetensors } from '../../src/safetensors/index.js';

const f32 = (xs: ArrayLike<number>) => new Uint8Array(Float32Array.from(xs).buffer);
const bf16 = (xs: ArrayLike<number>) => new Uint8Array(new Uint16Array(Array.from(xs, f32ToBf16Bits)).buffer);
const asF32 = (b: Uint8Array) => [...new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength))];
function lcg(seed: number) {
  let x = seed;
  return () => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return x / 2 ** 31 - 1;
  };
}
const rand = (n: number, seed: number) => Array.from({ length: n }, lcg(seed));
/** Values exactly representable in bf16. */
const bfRand = (n: number, seed: number) => rand(n, seed).map((x) => bf16BitsToF32(f32ToBf16Bits(x)));
function product(x: number[], y: number[], m: number, r: number, n: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let t = 0; t < r; t++) s += x[i * r + t] * y[t * n + j];
      out.push(s);
    }
  return out;
}
const transpose = (x: number[], rows: number, cols: number) =>
  Array.from({ length: rows * cols }, (_, k) => x[(k % rows) * cols + Math.floor(k / rows)]);

const Q = 'model.layers.0.self_attn.q_proj';
const V = 'model.layers.0.self_attn.v_proj';
const NORM = 'model.layers.0.input_layernorm.weight';
const EMB = 'model.embed_tokens.weight';
let dir: string;
const base = { q: rand(48, 1), v: rand(48, 2), norm: rand(6, 3), emb: rand(60, 4) };

async function folder(name: string, tensors: Parameters<typeof writeSafetensors>[1]): Promise<string> {
  const d = path.join(dir, name);
  fs.mkdirSync(d);
  await writeSafetensors(path.join(d, 'model.safetensors'), tensors);
  return d;
}

/** An adapter folder written by hand in PEFT's layout. */
async function adapter(name: string, config: Record<string, unknown>, tensors: Record<string, [number[], number[]]>) {
  const d = path.join(dir, name);
  fs.mkdirSync(d);
  fs.writeFileSync(path.join(d, 'adapter_config.json'), JSON.stringify(config));
  await writeSafetensors(
    path.join(d, 'adapter_model.safetensors'),
    Object.entries(tensors).map(([key, [shape, values]]) => ({
      name: key,
      dtype: 'BF16' as const,
      shape,
      data: bf16(values),
    })),
    { format: 'pt' },
  );
  return d;
}

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-lora-'));
  const tensors = (q: number[], v: number[], norm: number[], emb: number[]) => [
    { name: EMB, dtype: 'F32' as const, shape: [10, 6], data: f32(emb) },
    { name: `${Q}.weight`, dtype: 'F32' as const, shape: [8, 6], data: f32(q) },
    { name: `${V}.weight`, dtype: 'F32' as const, shape: [8, 6], data: f32(v) },
    { name: NORM, dtype: 'F32' as const, shape: [6], data: f32(norm) },
  ];
  await folder('base', tensors(base.q, base.v, base.norm, base.emb));
  const dq = product(rand(16, 5), rand(12, 6), 8, 2, 6);
  const dv = product(rand(8, 7), rand(6, 8), 8, 1, 6);
  const de = product(rand(20, 9), rand(12, 10), 10, 2, 6);
  await folder(
    'ft',
    tensors(
      base.q.map((x, i) => x + dq[i]),
      base.v.map((x, i) => x + dv[i]),
      base.norm.map((x) => x + 0.5),
      base.emb.map((x, i) => x + de[i]),
    ),
  );
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('PEFT LoRA adapters', () => {
  it('exports a low-rank basis key by key in PEFT layout, listing what it skips', async () => {
    const [b, f] = [await openModel(path.join(dir, 'base')), await openModel(path.join(dir, 'ft'))];
    const obj = path.join(dir, 'obj');
    const { header } = await computeLowRank(b, f, { rank: 2 }, { outDir: obj });
    const value = await lowRank.decode(await openModel(obj), header);
    const out = path.join(dir, 'exported');
    const report = await exportLora(value, out, { baseModel: 'org/tiny' });
    assert.deepEqual(fs.readdirSync(out).sort(), ['adapter_config.json', 'adapter_model.safetensors']);
    const config = JSON.parse(fs.readFileSync(path.join(out, 'adapter_config.json'), 'utf8'));
    assert.equal(config.peft_type, 'LORA');
    assert.equal(config.r, 2);
    assert.equal(config.lora_alpha, 2);
    assert.deepEqual(config.target_modules, ['q_proj', 'v_proj']);
    assert.equal(config.base_model_name_or_path, 'org/tiny');
    assert.deepEqual(config.rank_pattern, {});
    assert.deepEqual(config.alpha_pattern, {});
    assert.equal(config.use_rslora, false);
    assert.equal(config.fan_in_fan_out, false);
    const st = await openModel(path.join(out, 'adapter_model.safetensors'));
    assert.deepEqual(st.metadata, { format: 'pt' });
    assert.deepEqual(
      st.tensors.map((t) => [t.name, t.dtype, t.shape]),
      [
        [`base_model.model.${Q}.lora_A.weight`, 'F32', [2, 6]],
        [`base_model.model.${Q}.lora_B.weight`, 'F32', [8, 2]],
        [`base_model.model.${V}.lora_A.weight`, 'F32', [2, 6]],
        [`base_model.model.${V}.lora_B.weight`, 'F32', [8, 2]],
      ],
    );
    // scaling (lora_alpha / r = 1) · B·A is the change, by plain loops.
    const ba = product(
      asF32(await st.readTensor(`base_model.model.${Q}.lora_B.weight`)),
      asF32(await st.readTensor(`base_model.model.${Q}.lora_A.weight`)),
      8,
      2,
      6,
    );
    const ftQ = asF32(await f.readTensor(`${Q}.weight`));
    ba.forEach((x, i) => {
      assert.ok(Math.abs(base.q[i] + x - ftQ[i]) < 1e-5, `q[${i}]`);
    });
    assert.deepEqual(
      report.skipped.map((s) => s.tensor),
      [NORM, EMB],
    );
    assert.match(report.skipped[1].reason, /embedding/);
    await assert.rejects(exportLora(value, out), { code: 'E_OUTPUT_NOT_EMPTY' });
  });

  it('imports a hand-written adapter with rank and alpha patterns, and applies scaling·B·A', async () => {
    const aq = bfRand(12, 11);
    const bq = bfRand(16, 12);
    const av = bfRand(6, 13);
    const bv = bfRand(8, 14);
    const d = await adapter(
      'hand',
      {
        peft_type: 'LORA',
        r: 2,
        lora_alpha: 4,
        target_modules: ['q_proj', 'v_proj'],
        rank_pattern: { v_proj: 1 },
        alpha_pattern: { [V]: 3 },
        base_model_name_or_path: 'org/tiny',
      },
      {
        [`base_model.model.${Q}.lora_A.weight`]: [[2, 6], aq],
        [`base_model.model.${Q}.lora_B.weight`]: [[8, 2], bq],
        [`base_model.model.${V}.lora_A.weight`]: [[1, 6], av],
        [`base_model.model.${V}.lora_B.weight`]: [[8, 1], bv],
      },
    );
    const b = await openModel(path.join(dir, 'base'));
    const a = await openLoraAdapter(d);
    const obj = path.join(dir, 'hand-obj');
    const { header, modules } = await importLora(a, b, { outDir: obj });
    assert.deepEqual(
      modules.map((m) => [m.tensor, m.rank, m.scaling]),
      [
        [`${Q}.weight`, 2, 2],
        [`${V}.weight`, 1, 3],
      ],
    );
    const meta = header.meta as unknown as LowRankMeta;
    assert.deepEqual(meta.scales, { [`${Q}.weight`]: 2, [`${V}.weight`]: 3 });
    const value = await lowRank.decode(await openModel(obj), header);
    const merged = path.join(dir, 'hand-merged');
    await applyLowRank(value, b, 1, { outDir: merged });
    const m = await openModel(merged);
    const want = (w: number[], bb: number[], aa: number[], r: number, s: number) =>
      product(bb, aa, 8, r, 6).map((x, i) => w[i] + s * x);
    const close = (got: number[], exp: number[], what: string) =>
      got.forEach((x, i) => {
        assert.ok(Math.abs(x - exp[i]) < 1e-5, `${what}[${i}] ${x} vs ${exp[i]}`);
      });
    close(asF32(await m.readTensor(`${Q}.weight`)), want(base.q, bq, aq, 2, 2), 'q');
    close(asF32(await m.readTensor(`${V}.weight`)), want(base.v, bv, av, 1, 3), 'v');
    assert.deepEqual(asF32(await m.readTensor(NORM)), asF32(await b.readTensor(NORM)));

    // Export gives back the same scalings through rank_pattern / alpha_pattern.
    const again = path.join(dir, 'hand-again');
    const rep = await exportLora(value, again);
    assert.equal(rep.config.r, 2);
    assert.equal(rep.config.lora_alpha, 2);
    assert.deepEqual(rep.config.rank_pattern, { [V]: 1 });
    assert.deepEqual(rep.config.alpha_pattern, { [Q]: 4, [V]: 3 });
    const back = await importLora(await openLoraAdapter(again), b, { outDir: path.join(dir, 'hand-again-obj') });
    assert.deepEqual(
      back.modules.map((x) => x.scaling),
      [2, 3],
    );
  });

  it('scales rsLoRA adapters by lora_alpha / √r and transposes fan_in_fan_out weights', async () => {
    const aq = bfRand(8, 21); // r = 4: A [4, 2]
    const bq = bfRand(12, 22); // B [3, 4]
    const w = rand(6, 23);
    const baseDir = await folder('conv1d-base', [
      { name: 'h.0.attn.c_attn.weight', dtype: 'F32', shape: [2, 3], data: f32(w) },
    ]);
    const d = await adapter(
      'rslora',
      { peft_type: 'LORA', r: 4, lora_alpha: 6, use_rslora: true, fan_in_fan_out: true, target_modules: ['c_attn'] },
      {
        'base_model.model.h.0.attn.c_attn.lora_A.weight': [[4, 2], aq],
        'base_model.model.h.0.attn.c_attn.lora_B.weight': [[3, 4], bq],
      },
    );
    const b = await openModel(baseDir);
    const obj = path.join(dir, 'rslora-obj');
    const { header, modules } = await importLora(await openLoraAdapter(d), b, { outDir: obj });
    assert.equal(modules[0].scaling, 3);
    const merged = path.join(dir, 'rslora-merged');
    await applyLowRank(await lowRank.decode(await openModel(obj), header), b, 1, { outDir: merged });
    // W [in = 2, out = 3] + 3·(B·A)ᵀ.
    const delta = transpose(product(bq, aq, 3, 4, 2), 3, 2);
    const got = asF32(await (await openModel(merged)).readTensor('h.0.attn.c_attn.weight'));
    got.forEach((x, i) => {
      assert.ok(Math.abs(x - (w[i] + 3 * delta[i])) < 1e-5, `w[${i}]`);
    });
  });

  it('matches rank and alpha patterns as PEFT does: first key matching (.*\\.)?(key)$', () => {
    const p = { 'layers.1.q_proj': 4, q_proj: 8, 'experts.*.w1': 2 };
    assert.equal(patternValue(p, 'model.layers.1.q_proj'), 4);
    assert.equal(patternValue(p, 'model.layers.11.q_proj'), 8);
    assert.equal(patternValue(p, 'model.experts.3.w1'), 2);
    assert.equal(patternValue(p, 'model.my_q_proj'), undefined);
  });

  it('refuses adapters that are malformed or do not fit the base, naming the module, writing nothing', async () => {
    const b = await openModel(path.join(dir, 'base'));
    const good = { peft_type: 'LORA', r: 2, lora_alpha: 2, target_modules: ['q_proj'] };
    const factors = (module: string, rows = 8, cols = 6, r = 2): Record<string, [number[], number[]]> => ({
      [`base_model.model.${module}.lora_A.weight`]: [[r, cols], rand(r * cols, 1)],
      [`base_model.model.${module}.lora_B.weight`]: [[rows, r], rand(rows * r, 2)],
    });
    const cases: [string, Record<string, unknown>, Record<string, [number[], number[]]>, string, RegExp][] = [
      ['ia3', { ...good, peft_type: 'IA3' }, factors(Q), 'E_BAD_ADAPTER', /IA3/],
      [
        'no-b',
        good,
        { [`base_model.model.${Q}.lora_A.weight`]: [[2, 6], rand(12, 1)] },
        'E_BAD_ADAPTER',
        /q_proj.*lora_B/,
      ],
      ['rank', { ...good, r: 4 }, factors(Q), 'E_BAD_ADAPTER', /rank 4/],
      ['key', good, { 'model.q_proj.weight': [[2], [1, 2]] }, 'E_BAD_ADAPTER', /model\.q_proj\.weight/],
      ['module', good, factors('model.layers.9.mlp.up_proj'), 'E_ADAPTER_MISMATCH', /layers\.9\.mlp\.up_proj/],
      ['shape', good, factors(Q, 8, 7), 'E_ADAPTER_MISMATCH', /q_proj\.weight.*\[8,7\]/],
    ];
    for (const [label, config, tensors, code, message] of cases) {
      const d = await adapter(`bad-${label}`, config, tensors);
      const out = path.join(dir, `never-${label}`);
      await assert.rejects(
        (async () => importLora(await openLoraAdapter(d), b, { outDir: out }))(),
        (e: { code?: string; message?: string }) => e.code === code && message.test(e.message ?? ''),
        label,
      );
      assert.equal(fs.existsSync(out), false, `${label}: nothing written`);
    }
    await assert.rejects(openLoraAdapter(path.join(dir, 'base')), { code: 'E_BAD_ADAPTER' });
  });
});
