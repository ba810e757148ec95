import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { getDevice, referenceDevice } from '../../src/device/index.js';
import { countIdenticalElements, diffModels, tensorKind } from '../../src/diff/index.js';
import { type DType, f32ToBf16Bits, fromF32 } from '../../src/dtypes.js';
import { openModel, writeSafetensors } from '../../src/safetensors/index.js';

const f32 = (xs: number[]) => new Uint8Array(new Float32Array(xs).buffer);
const i32 = (xs: number[]) => new Uint8Array(new Int32Array(xs).buffer);
const bf16 = (xs: number[]) => new Uint8Array(new Uint16Array(xs.map(f32ToBf16Bits)).buffer);

let dir: string;

function model(name: string, side: Record<string, string>): string {
  const d = path.join(dir, name);
  fs.mkdirSync(d);
  for (const [f, text] of Object.entries(side)) fs.writeFileSync(path.join(d, f), text);
  return d;
}

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-diff-'));
  const a = model('a', { 'config.json': '{"a":1}', 'tokenizer.json': '{"v":1}' });
  await writeSafetensors(path.join(a, 'model.safetensors'), [
    { name: 'model.layers.0.self_attn.q_proj.weight', dtype: 'F32', shape: [2, 2], data: f32([1, 2, 3, 4]) },
    { name: 'model.layers.0.step', dtype: 'I32', shape: [2], data: i32([5, 6]) },
    { name: 'model.layers.1.mlp.up_proj.weight', dtype: 'BF16', shape: [3], data: bf16([0.5, -1, 2]) },
    { name: 'model.norm.weight', dtype: 'F32', shape: [2], data: f32([1, 1]) },
    { name: 'lm_head.weight', dtype: 'F32', shape: [2], data: f32([0, 0]) },
  ]);
  const b = model('b', { 'config.json': '{"a":1}', 'tokenizer.json': '{"v":2}', 'generation_config.json': '{}' });
  await writeSafetensors(path.join(b, 'model.safetensors'), [
    { name: 'model.layers.0.self_attn.q_proj.weight', dtype: 'F32', shape: [2, 2], data: f32([1, 2, 3, 6]) },
    { name: 'model.layers.0.step', dtype: 'I32', shape: [2], data: i32([5, 7]) },
    { name: 'model.layers.1.mlp.up_proj.weight', dtype: 'BF16', shape: [3], data: bf16([0.5, -1, 2]) },
    { name: 'lm_head.weight', dtype: 'F32', shape: [3], data: f32([0, 0, 0]) },
    { name: 'extra', dtype: 'F32', shape: [1], data: f32([1]) },
  ]);
});

after(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('diff', () => {
  for (const [label, device] of [
    ['reference', async () => referenceDevice()],
    ['wasm', () => getDevice({ device: 'cpu', threads: 2, parallelMin: 1 })],
  ] as const) {
    it(`measures each tensor against hand-computed figures (${label} device)`, async () => {
      const a = await openModel(path.join(dir, 'a'));
      const b = await openModel(path.join(dir, 'b'));
      const r = await diffModels(a, b, { device: await device() });
      await a.close();
      await b.close();
      const t = new Map(r.tensors.map((d) => [d.name, d]));
      const q = t.get('model.layers.0.self_attn.q_proj.weight')!;
      assert.equal(q.status, 'changed');
      assert.equal(q.kind, 'attention');
      assert.equal(q.layer, 0);
      assert.equal(q.normDelta, 2);
      assert.equal(q.normA, Math.sqrt(30));
      assert.equal(q.normB, Math.sqrt(50));
      assert.ok(Math.abs(q.relChange! - 2 / Math.sqrt(30)) < 1e-15);
      assert.ok(Math.abs(q.cosine! - 38 / Math.sqrt(1500)) < 1e-15);
      assert.equal(q.identicalFraction, 0.75);
      assert.equal(q.maxAbsDelta, 2);

      const step = t.get('model.layers.0.step')!;
      assert.equal(step.status, 'changed');
      assert.equal(step.identicalFraction, 0.5);
      assert.equal(step.normDelta, null, 'integer tensors get no norms');

      const up = t.get('model.layers.1.mlp.up_proj.weight')!;
      assert.equal(up.status, 'identical');
      assert.equal(up.normDelta, 0);
      assert.equal(up.normA, Math.sqrt(0.25 + 1 + 4));

      assert.equal(t.get('model.norm.weight')!.status, 'only-a');
      assert.equal(t.get('extra')!.status, 'only-b');
      const head = t.get('lm_head.weight')!;
      assert.equal(head.status, 'mismatch');
      assert.deepEqual(head.shape, { a: [2], b: [3] });

      assert.deepEqual(
        r.tensors.map((d) => d.name),
        [
          'model.layers.0.self_attn.q_proj.weight',
          'model.layers.0.step',
          'model.layers.1.mlp.up_proj.weight',
          'model.norm.weight',
          'lm_head.weight',
          'extra',
        ],
      );
      assert.deepEqual(
        {
          changed: r.totals.changed,
          identical: r.totals.identical,
          mismatched: r.totals.mismatched,
          onlyA: r.totals.onlyA,
          onlyB: r.totals.onlyB,
        },
        { changed: 2, identical: 1, mismatched: 1, onlyA: 1, onlyB: 1 },
      );
      // Totals over the measured float tensors: q_proj and up_proj.
      assert.equal(r.totals.normDelta, 2);
      assert.ok(Math.abs(r.totals.normA - Math.sqrt(30 + 5.25)) < 1e-12);
      assert.ok(Math.abs(r.totals.cosine! - (38 + 5.25) / Math.sqrt((30 + 5.25) * (50 + 5.25))) < 1e-12);
      assert.deepEqual(
        r.layers.map((l) => [l.layer, l.tensors, l.changed]),
        [
          [0, 2, 2],
          [1, 1, 0],
        ],
      );
      assert.equal(r.layers[0].kinds.attention!.normDelta, 2);
      assert.equal(r.layers[1].kinds.mlp!.relChange, 0);
      assert.deepEqual(r.sideFiles, {
        added: ['generation_config.json'],
        removed: [],
        changed: ['tokenizer.json'],
        unchanged: 1,
      });
    });
  }

  it('one fused pass per F32/BF16/F16 tensor: hand-computed figures, and the separate kernels agree', async () => {
    // −0 against +0 is a change of bits but not of value; F8 goes through conversion, I32 only counts
    const sub = path.join(dir, 'fused');
    fs.mkdirSync(sub);
    const n = 3001; // two full blocks of 1,024 and a short one
    let seed = 12345;
    const next = () => {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return (seed >>> 0) / 2 ** 32 - 0.5;
    };
    const base = Float32Array.from({ length: n }, () => next() * 0.1);
    const moved = Float32Array.from(base, (v, j) => (j % 4 === 0 ? v : v + next() * 0.01));
    const hand = { a: [-0, 1, 2, 4], b: [0, 1, 3, 4] };
    const pairs: [string, DType, number[] | Float32Array, number[] | Float32Array][] = [
      ['hand.f16', 'F16', hand.a, hand.b],
      ['hand.bf16', 'BF16', hand.a, hand.b],
      ['hand.f32', 'F32', hand.a, hand.b],
      ['big.bf16', 'BF16', base, moved],
      ['big.f16', 'F16', base, moved],
      ['big.f32', 'F32', base, moved],
      ['big.f8', 'F8_E4M3', base, moved],
      ['same-with-nan.bf16', 'BF16', [1, Number.NaN, -0], [1, Number.NaN, -0]],
      // NaN on one side only: it reaches the sums but is never the largest |Δ|
      ['nan-one-side.bf16', 'BF16', [1, 2, 3, 5], [Number.NaN, 2, 4, 5]],
    ];
    const write = (side: 0 | 1) =>
      writeSafetensors(
        path.join(sub, `${side}.safetensors`),
        pairs.map(([name, dtype, a, b]) => {
          const v = Float32Array.from(side === 0 ? a : b);
          return { name, dtype, shape: [v.length], data: fromF32(v, dtype) };
        }),
      );
    await write(0);
    await write(1);
    const a = await openModel(path.join(sub, '0.safetensors'));
    const b = await openModel(path.join(sub, '1.safetensors'));
    const devices = [
      ['reference', referenceDevice()],
      ['wasm, 1 thread', await getDevice({ device: 'cpu', threads: 1 })],
      ['wasm, 2 threads split', await getDevice({ device: 'cpu', threads: 2, parallelMin: 1 })],
    ] as const;
    const separate = await diffModels(a, b, { device: referenceDevice(), fused: false });
    for (const [label, inner] of devices) {
      const fusedCalls: string[] = [];
      const device = Object.assign(Object.create(inner), {
        diffStats: (x: Uint8Array, y: Uint8Array, dtype: 'F32' | 'BF16' | 'F16') => {
          fusedCalls.push(dtype);
          return inner.diffStats(x, y, dtype);
        },
      });
      const r = await diffModels(a, b, { device });
      assert.equal(
        fusedCalls.length,
        pairs.length - 1,
        `one diffStats per F32/BF16/F16 tensor, none for F8 (${label})`,
      );
      const t = new Map(r.tensors.map((d) => [d.name, d]));
      for (const name of ['hand.f16', 'hand.bf16', 'hand.f32']) {
        const d = t.get(name)!;
        assert.equal(d.status, 'changed', `${name} on ${label}`);
        assert.equal(d.identicalFraction, 0.5, `${name}: −0 and +0 differ in bits`);
        assert.equal(d.normDelta, 1);
        assert.equal(d.maxAbsDelta, 1);
        assert.equal(d.normA, Math.sqrt(21));
        assert.equal(d.normB, Math.sqrt(26));
        assert.equal(d.cosine, 23 / Math.sqrt(21 * 26));
      }
      const same = t.get('same-with-nan.bf16')!;
      assert.equal(same.status, 'identical', 'a NaN equals itself bit for bit');
      assert.equal(same.maxAbsDelta, 0);
      for (const want of separate.tensors) {
        const got = t.get(want.name)!;
        const what = `${want.name} on ${label}`;
        assert.equal(got.status, want.status, what);
        assert.equal(got.identicalFraction, want.identicalFraction, what);
        assert.equal(got.maxAbsDelta, want.maxAbsDelta, what);
        for (const k of ['normDelta', 'normA', 'normB', 'relChange', 'cosine'] as const) {
          const [x, y] = [got[k], want[k]];
          // the same f64 terms, summed in another order
          const close = x === y || (Number.isNaN(x) && Number.isNaN(y)) || Math.abs(x! - y!) <= 1e-15 * Math.abs(y!);
          assert.ok(close, `${what}: ${k} ${x} vs ${y}`);
        }
      }
      const nan = t.get('nan-one-side.bf16')!;
      assert.ok(Number.isNaN(nan.normDelta!), 'the NaN reaches the sums');
      assert.equal(nan.maxAbsDelta, 1, 'but is never the largest |Δ|');
      assert.equal(nan.identicalFraction, 0.5);
      const big = t.get('big.bf16')!;
      assert.ok(big.normDelta! > 0 && Number.isFinite(big.normDelta!), label);
    }
    await a.close();
    await b.close();
  });

  it('trusts content ids: equal ids are identical without a read', async () => {
    const a = await openModel(path.join(dir, 'a'));
    const b = await openModel(path.join(dir, 'b'));
    let reads = 0;
    const counted = (m: typeof a) =>
      Object.assign(Object.create(m), {
        contentId: (n: string) => (n.startsWith('model.layers.0.') ? `same:${n}` : null),
        readTensor: (n: string, into?: Uint8Array) => {
          reads++;
          return m.readTensor(n, into);
        },
      });
    const r = await diffModels(counted(a), counted(b), { device: referenceDevice() });
    await a.close();
    await b.close();
    const q = r.tensors.find((d) => d.name === 'model.layers.0.self_attn.q_proj.weight')!;
    assert.equal(q.status, 'identical', 'the ids decide, as a store record does');
    assert.equal(q.bytesRead, 0);
    assert.equal(reads, 2, 'only up_proj is read, once per side');
  });

  it('counts identical elements by their bytes (-0 differs from +0, NaN equals itself bit for bit)', () => {
    const a = new Uint8Array(new Float32Array([0, Number.NaN, 1, 2]).buffer);
    const b = new Uint8Array(new Float32Array([-0, Number.NaN, 1, 3]).buffer);
    assert.equal(countIdenticalElements(a, b, 4), 2);
    // Bytes 1..13 as three 4-byte elements: only the first differs (it holds b's sign byte of -0).
    assert.equal(
      countIdenticalElements(a.subarray(1, 13), b.subarray(1, 13), 4),
      2,
      'unaligned views compare bytewise',
    );
  });

  it('names the kind of weight from the tensor name', () => {
    assert.equal(tensorKind('model.layers.3.input_layernorm.weight'), 'norm');
    assert.equal(tensorKind('transformer.h.0.attn.c_proj.weight'), 'attention');
    assert.equal(tensorKind('model.layers.3.mlp.down_proj.weight'), 'mlp');
    assert.equal(tensorKind('model.embed_tokens.weight'), 'embedding');
    assert.equal(tensorKind('classifier.bias'), 'other');
  });
});
