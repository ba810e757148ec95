import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { getDevice, referenceDevice } from '../../src/device/index.js';
import { bf16BitsToF32, f32ToBf16Bits } from '../../src/dtypes.js';
import {
  applyLowRank,
  computeLowRank,
  getObjectKind,
  type LowRankMeta,
  lowRank,
  resolveObject,
} from '../../src/objects/index.js';
import { openModel, writeSafetensors } from '../../src/safetensors/index.js';

const f32 = (xs: ArrayLike<number>) => new Uint8Array(Float32Array.from(xs).buffer);
const bf16 = (xs: ArrayLike<number>) => new Uint8Array(new Uint16Array(Array.from(xs, f32ToBf16Bits)).buffer);
const i32 = (xs: number[]) => new Uint8Array(new Int32Array(xs).buffer);
const asF32 = (b: Uint8Array) => new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
const asBf16 = (b: Uint8Array) =>
  Array.from(new Uint16Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength)), bf16BitsToF32);

function lcg(seed: number) {
  let x = seed;
  return () => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return x / 2 ** 31 - 1;
  };
}
const rand = (n: number, seed: number) => Array.from({ length: n }, lcg(seed));

/** X (m×r) · Y (r×n) by plain loops. */
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

let dir: string;
const ints = (n: number, seed: number) => rand(n, seed).map((x) => Math.round(2 * x));
const base = { w1: rand(120, 1), w2: ints(48, 2), norm: rand(10, 3) };
// Planted changes: rank 2 on w1 (12×10), rank 3 on w2 (8×6, bf16, small integers: exact in bf16), a dense change of the norm.
const d1 = product(rand(24, 4), rand(20, 5), 12, 2, 10);
const d2 = product(ints(24, 6), ints(18, 7), 8, 3, 6);
const ft = {
  w1: base.w1.map((x, i) => Math.fround(x + d1[i])),
  w2: asBf16(bf16(base.w2.map((x, i) => x + d2[i]))),
  norm: base.norm.map((x, i) => Math.fround(x + 0.01 * (i + 1))),
};

async function model(name: string, tensors: Parameters<typeof writeSafetensors>[1]): Promise<string> {
  const d = path.join(dir, name);
  fs.mkdirSync(d);
  await writeSafetensors(path.join(d, 'model.safetensors'), tensors);
  fs.writeFileSync(path.join(d, 'config.json'), `{"v":"${name}"}`);
  return d;
}

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-lr-'));
  await model('base', [
    { name: 'w1', dtype: 'F32', shape: [12, 10], data: f32(base.w1) },
    { name: 'w2', dtype: 'BF16', shape: [8, 6], data: bf16(base.w2) },
    { name: 'norm', dtype: 'F32', shape: [10], data: f32(base.norm) },
    { name: 'steps', dtype: 'I32', shape: [1], data: i32([1]) },
    { name: 'gone', dtype: 'F32', shape: [1], data: f32([9]) },
  ]);
  await model('ft', [
    { name: 'w1', dtype: 'F32', shape: [12, 10], data: f32(ft.w1) },
    { name: 'w2', dtype: 'BF16', shape: [8, 6], data: bf16(ft.w2) },
    { name: 'norm', dtype: 'F32', shape: [10], data: f32(ft.norm) },
    { name: 'steps', dtype: 'I32', shape: [1], data: i32([2]) },
    { name: 'head', dtype: 'F32', shape: [2], data: f32([5, 6]) },
  ]);
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

const open = (name: string) => openModel(path.join(dir, name));

describe('low-rank bases', () => {
  for (const [label, device] of [
    ['reference', async () => referenceDevice()],
    ['wasm', () => getDevice({ device: 'cpu', threads: 2, parallelMin: 1 })],
  ] as const)
    it(`recovers planted low-rank changes exactly and gives the fine-tune back (${label})`, async () => {
      const [b, f] = [await open('base'), await open('ft')];
      const out = path.join(dir, `lr-${label}`);
      const { header, report } = await computeLowRank(
        b,
        f,
        { rank: 3, seed: 1 },
        { outDir: out, device: await device() },
      );
      const meta = header.meta as unknown as LowRankMeta;
      assert.deepEqual(
        { ...meta, params: undefined },
        {
          lowRank: ['w1', 'w2'],
          scales: {},
          dense: ['norm'],
          dropped: [],
          replaced: ['steps', 'head'],
          removed: ['gone'],
          params: undefined,
        },
      );
      assert.deepEqual(meta.params, { rank: 3, energy: null, oversample: 10, powerIters: 2, seed: 1, others: 'dense' });
      assert.deepEqual(
        report.tensors.map((t) => [t.name, t.rank]),
        [
          ['w1', 3],
          ['w2', 3],
        ],
      );
      for (const t of report.tensors) assert.ok(t.error < 1e-5, `${t.name} error ${t.error}`);
      assert.ok(report.error < 1e-5);

      const stored = await openModel(out);
      assert.deepEqual(
        stored.tensors.map((t) => [t.name, t.dtype, t.shape]),
        [
          ['w1.lora_A', 'F32', [3, 10]],
          ['w1.lora_B', 'F32', [12, 3]],
          ['w2.lora_A', 'F32', [3, 6]],
          ['w2.lora_B', 'F32', [8, 3]],
          ['norm', 'F32', [10]],
          ['steps', 'I32', [1]],
          ['head', 'F32', [2]],
        ],
      );
      assert.deepEqual(stored.sideFiles, ['config.json']);
      // B·A by plain loops is the planted change.
      const ba = product(
        [...asF32(await stored.readTensor('w1.lora_B'))],
        [...asF32(await stored.readTensor('w1.lora_A'))],
        12,
        3,
        10,
      );
      ba.forEach((x, i) => {
        assert.ok(Math.abs(x - (ft.w1[i] - base.w1[i])) < 1e-5, `w1 Δ[${i}]`);
      });

      const value = await lowRank.decode(stored, header);
      const back = path.join(dir, `back-${label}`);
      const counts = await applyLowRank(value, b, 1, { outDir: back, device: await device() });
      assert.deepEqual(counts, { changed: 3, replaced: 2, removed: 1, kept: 0 });
      const m = await openModel(back);
      assert.deepEqual(
        m.tensors.map((t) => t.name),
        ['w1', 'w2', 'norm', 'steps', 'head'],
      );
      asF32(await m.readTensor('w1')).forEach((x, i) => {
        assert.ok(Math.abs(x - ft.w1[i]) < 1e-5, `w1[${i}]`);
      });
      // bf16: base + Δ rounds back to the fine-tune's integers (a 0 may keep an f32 residue below 1e-6).
      asBf16(await m.readTensor('w2')).forEach((x, i) => {
        assert.ok(Math.abs(x - ft.w2[i]) < 1e-6, `w2[${i}] ${x}`);
      });
      assert.ok(
        d2.some((x) => Math.abs(x) > 4),
        'a change bf16 cannot hide',
      );
      assert.deepEqual([...asF32(await m.readTensor('norm'))], ft.norm);
      assert.deepEqual([...new Int32Array((await m.readTensor('steps')).slice().buffer)], [2]);

      const kind = getObjectKind('low-rank');
      assert.equal(resolveObject(header, []).kind, kind);
      const summary = kind.describe(value);
      assert.match(summary.description, /2 tensors as factors \(rank 3\), 1 dense, 0 dropped, 2 replaced, 1 removed/);
      for (const x of [b, f, stored, m]) await x.close();
    });

  it('chooses the smallest rank reaching an energy fraction, and drops other tensors on request', async () => {
    // Δ = diag(3, 2, 1, 0.5) in a 6×5 tensor: σ² = 9, 4, 1, 0.25 of 14.25.
    const diag = (s: number[]) =>
      Array.from({ length: 30 }, (_, i) => (i % 5 === Math.floor(i / 5) ? (s[i % 5] ?? 0) : 0));
    const zero = new Array(30).fill(0);
    await model('e-base', [
      { name: 'w', dtype: 'F32', shape: [6, 5], data: f32(zero) },
      { name: 'bias', dtype: 'F32', shape: [2], data: f32([0, 0]) },
    ]);
    await model('e-ft', [
      { name: 'w', dtype: 'F32', shape: [6, 5], data: f32(diag([3, 2, 1, 0.5])) },
      { name: 'bias', dtype: 'F32', shape: [2], data: f32([1, 1]) },
    ]);
    const [b, f] = [await open('e-base'), await open('e-ft')];
    for (const [energy, rank] of [
      [0.9, 2],
      [13 / 14.25, 2],
      [0.95, 3],
      [1, 4],
    ]) {
      const out = path.join(dir, `e-${energy}`);
      const { header, report } = await computeLowRank(b, f, { energy, others: 'drop' }, { outDir: out });
      assert.equal(report.tensors[0].rank, rank, `energy ${energy}`);
      const tail = [9, 4, 1, 0.25].slice(rank).reduce((x, y) => x + y, 0);
      assert.ok(Math.abs(report.tensors[0].error - Math.sqrt(tail / 14.25)) < 1e-5);
      assert.deepEqual((header.meta as unknown as LowRankMeta).dropped, ['bias']);
      assert.ok(Math.abs(report.error - Math.sqrt((tail + 2) / 16.25)) < 1e-5, 'the dropped bias counts whole');
      assert.deepEqual(
        (await openModel(out)).tensors.map((t) => t.name),
        ['w.lora_A', 'w.lora_B'],
      );
    }
  });

  it('refuses bad input naming the tensor, before anything is written', async () => {
    const cases: [string, Parameters<typeof writeSafetensors>[1], Record<string, unknown>, string, RegExp][] = [
      [
        'rank',
        [{ name: 'w1', dtype: 'F32', shape: [12, 10], data: f32(ft.w1) }],
        { rank: 11 },
        'E_RANK_TOO_LARGE',
        /"w1"/,
      ],
      [
        'dtype',
        [{ name: 'w1', dtype: 'BF16', shape: [12, 10], data: bf16(ft.w1) }],
        { rank: 2 },
        'E_DTYPE_MISMATCH',
        /"w1"/,
      ],
      [
        'shape',
        [{ name: 'w1', dtype: 'F32', shape: [10, 12], data: f32(ft.w1) }],
        { rank: 2 },
        'E_SHAPE_MISMATCH',
        /"w1"/,
      ],
      [
        'nan',
        [
          { name: 'w1', dtype: 'F32', shape: [12, 10], data: f32(ft.w1) },
          { name: 'norm', dtype: 'F32', shape: [10], data: f32(ft.norm.map((x, i) => (i === 3 ? Number.NaN : x))) },
        ],
        { rank: 2 },
        'E_NOT_FINITE',
        /"norm"/,
      ],
      ['params', [], { rank: 2, energy: 0.5 }, 'E_BAD_PARAM', /exactly one/],
      ['energy', [], { energy: 1.5 }, 'E_BAD_PARAM', /energy/],
    ];
    const b = await open('base');
    for (const [label, tensors, params, code, message] of cases) {
      const f = await openModel(await model(`bad-${label}`, tensors));
      const out = path.join(dir, `never-${label}`);
      await assert.rejects(
        computeLowRank(b, f, params, { outDir: out }),
        (e: { code?: string; message?: string }) => e.code === code && message.test(e.message ?? ''),
        label,
      );
      assert.equal(fs.existsSync(out), false, `${label}: nothing written`);
    }
  });

  it('refuses a stored form whose table or factors are wrong', async () => {
    const b = await open('base');
    const header = (lowRank: string[]) => ({
      kind: 'low-rank',
      version: 1,
      meta: { lowRank, scales: {}, dense: [], dropped: [], replaced: [], removed: [], params: {} },
    });
    await assert.rejects(lowRank.decode(b, { kind: 'low-rank', version: 1 }), { code: 'E_CORRUPT' });
    await assert.rejects(lowRank.decode(b, header(['w1'])), { code: 'E_CORRUPT' });
  });
});
