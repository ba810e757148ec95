// The device path of transfer and LiNeS (sub + axpy per tensor on the kernels)
// against the plain loop: same bytes on BF16, F16 and F32, NaN / ±Inf / −0 /
// subnormal entries included, tensors under and over the kernel threshold.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  type DType,
  getDevice,
  type KernelDType,
  linesEdit,
  ModelWriter,
  openModel,
  referenceDevice,
  transferModel,
} from '../../src/index.js';
import { readAll, rng, tmpDir } from './helpers.js';

let dir: string;
const opened: { close(): Promise<void> }[] = [];
async function open(p: string) {
  const m = await openModel(p);
  opened.push(m);
  return m;
}
before(() => {
  dir = tmpDir();
});
after(async () => {
  await Promise.all(opened.map((m) => m.close()));
  fs.rmSync(dir, { recursive: true, force: true });
});

const SIZE: Record<KernelDType, number> = { BF16: 2, F16: 2, F32: 4 };
const THRESHOLD = 1024;

/** Raw bit patterns: mostly ordinary values near `center`, with NaN (several payloads), ±Inf, ±0 and subnormals. */
function rawValues(dtype: KernelDType, n: number, r: () => number, like?: Uint8Array): Uint8Array {
  const f = new Float32Array(n);
  const base = like ? decodeBits(like, dtype) : undefined;
  for (let j = 0; j < n; j++) f[j] = (base ? base[j] : 0) + (r() - 0.5) * (base ? 0.01 : 2);
  const bytes = encodeBits(f, dtype);
  const specials16 =
    dtype === 'BF16'
      ? [0x7fc0, 0xffc0, 0x7f81, 0x7fa5, 0x7f80, 0xff80, 0x0000, 0x8000, 0x0001, 0x8003]
      : [0x7e00, 0xfe00, 0x7c01, 0x7d23, 0x7c00, 0xfc00, 0x0000, 0x8000, 0x0001, 0x8003];
  const specials32 = [
    0x7fc00000, 0xffc00000, 0x7f800001, 0x7fa5a5a5, 0x7f800000, 0xff800000, 0, 0x80000000, 1, 0x80000003,
  ];
  const view = dtype === 'F32' ? new Uint32Array(bytes.buffer) : new Uint16Array(bytes.buffer);
  const specials = dtype === 'F32' ? specials32 : specials16;
  for (let j = 0; j < n; j++) if (r() < 0.06) view[j] = specials[Math.floor(r() * 10)];
  return bytes;
}

function decodeBits(bytes: Uint8Array, dtype: KernelDType): Float32Array {
  const n = bytes.byteLength / SIZE[dtype];
  const out = new Float32Array(n);
  const copy = bytes.slice();
  if (dtype === 'F32') return new Float32Array(copy.buffer);
  const u16 = new Uint16Array(copy.buffer);
  const u32 = new Uint32Array(out.buffer);
  for (let j = 0; j < n; j++) {
    if (dtype === 'BF16') u32[j] = u16[j] << 16;
    else {
      const h = u16[j];
      const e = (h >> 10) & 31;
      const m = h & 1023;
      const v =
        e === 0
          ? m * 2 ** -24
          : e === 31
            ? m
              ? Number.NaN
              : Number.POSITIVE_INFINITY
            : (1 + m / 1024) * 2 ** (e - 15);
      out[j] = h & 0x8000 ? -v : v;
    }
  }
  return out;
}

/** Truncating encode (only used to make inputs; any bit pattern is a valid input). */
function encodeBits(f: Float32Array, dtype: KernelDType): Uint8Array {
  if (dtype === 'F32') return new Uint8Array(f.slice().buffer);
  const out = new Uint16Array(f.length);
  const u32 = new Uint32Array(f.buffer);
  for (let j = 0; j < f.length; j++) {
    if (dtype === 'BF16') out[j] = u32[j] >>> 16;
    else {
      const x = f[j];
      const a = Math.min(Math.abs(x), 65504);
      const e = a < 2 ** -14 ? 0 : Math.floor(Math.log2(a));
      const bits =
        e === 0 && a < 2 ** -14 ? Math.floor(a / 2 ** -24) : ((e + 15) << 10) | Math.floor((a / 2 ** e - 1) * 1024);
      out[j] = (x < 0 ? 0x8000 : 0) | bits;
    }
  }
  return new Uint8Array(out.buffer);
}

interface RawT {
  name: string;
  dtype: DType;
  shape: number[];
  data: Uint8Array;
}

let k = 0;
async function write(ts: RawT[]): Promise<string> {
  const p = path.join(dir, `m${k++}`);
  const w = await ModelWriter.create(
    p,
    ts.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape })),
    {},
  );
  for (const t of ts) await w.write(t.name, t.data);
  await w.finish();
  fs.writeFileSync(path.join(p, 'config.json'), `{"m":${k}}`);
  return p;
}

const numel = (s: number[]) => s.reduce((a, b) => a * b, 1);

/** Old base, fine-tune (embedding grown by 3 rows) and new base; big tensors over the threshold, small under. */
async function versions(dtype: KernelDType, seed: number) {
  const r = rng(seed);
  const shapes: [string, number[]][] = [
    ['model.embed_tokens.weight', [64, 40]],
    ['model.layers.0.mlp.up_proj.weight', [48, 33]],
    ['model.layers.0.input_layernorm.weight', [33]],
    ['model.layers.1.mlp.up_proj.weight', [1, 1031]],
    ['model.layers.1.input_layernorm.weight', [7]],
    ['lm_head.weight', [64, 40]],
  ];
  const old: RawT[] = shapes.map(([name, shape]) => ({ name, dtype, shape, data: rawValues(dtype, numel(shape), r) }));
  const nu: RawT[] = old.map((t) => ({ ...t, data: rawValues(dtype, numel(t.shape), r, t.data) }));
  const ft: RawT[] = old.map((t) => {
    if (t.name !== 'model.embed_tokens.weight') return { ...t, data: rawValues(dtype, numel(t.shape), r, t.data) };
    const shape = [t.shape[0] + 3, t.shape[1]];
    const grownRows = rawValues(dtype, 3 * t.shape[1], r);
    const data = new Uint8Array((numel(t.shape) + grownRows.byteLength / SIZE[dtype]) * SIZE[dtype]);
    data.set(rawValues(dtype, numel(t.shape), r, t.data));
    data.set(grownRows, t.data.byteLength);
    return { ...t, shape, data };
  });
  // an integer tensor and a tensor only in the target take the copy path
  const step = { name: 'model.step', dtype: 'I64' as DType, shape: [1], data: new Uint8Array(8).fill(3) };
  const extra = { name: 'rotary.inv_freq', dtype, shape: [5], data: rawValues(dtype, 5, r) };
  return {
    from: await open(await write([...old, step])),
    ft: await open(await write([...ft, step])),
    onto: await open(await write([...nu, step, extra])),
  };
}

type Out = Map<string, { dtype: DType; bytes: Uint8Array }>;

async function bytesOf(outDir: string): Promise<Out> {
  return readAll(outDir);
}

/** Bit patterns of one element, with every NaN as one pattern: NaN payloads are free (docs/kernels.md, NaN policy). */
function patterns(t: { dtype: DType; bytes: Uint8Array }): number[] {
  const b = t.bytes.slice();
  if (t.dtype === 'F32') return Array.from(new Uint32Array(b.buffer), (x) => ((x & 0x7fffffff) > 0x7f800000 ? -1 : x));
  if (t.dtype === 'BF16') return Array.from(new Uint16Array(b.buffer), (x) => ((x & 0x7fff) > 0x7f80 ? -1 : x));
  if (t.dtype === 'F16') return Array.from(new Uint16Array(b.buffer), (x) => ((x & 0x7fff) > 0x7c00 ? -1 : x));
  return Array.from(b);
}

function sameBytes(a: Out, b: Out, what: string) {
  assert.deepEqual([...a.keys()], [...b.keys()], what);
  for (const [n, x] of a) {
    const y = b.get(n) as { dtype: DType; bytes: Uint8Array };
    assert.equal(x.dtype, y.dtype, `${what}: ${n} dtype`);
    assert.equal(x.bytes.byteLength, y.bytes.byteLength, `${what}: ${n} length`);
    const px = patterns(x);
    const py = patterns(y);
    const i = px.findIndex((v, j) => v !== py[j]);
    assert.equal(i, -1, `${what}: ${n} differs at element ${i}: ${px[i]} vs ${py[i]}`);
  }
}

const DTYPES: KernelDType[] = ['BF16', 'F16', 'F32'];

describe('transfer on the device kernels', () => {
  for (const dtype of DTYPES) {
    for (const scale of [1, 0.3]) {
      it(`${dtype}, scale ${scale}: kernel path = plain path, byte for byte, same closeness figures`, async () => {
        const v = await versions(dtype, 7 + DTYPES.indexOf(dtype));
        const wasm = await getDevice({ device: 'cpu' });
        const runs = {
          plain: { kernelMinElements: Number.POSITIVE_INFINITY, device: referenceDevice() },
          reference: { kernelMinElements: 0, device: referenceDevice() },
          wasmAll: { kernelMinElements: 0, device: wasm },
          wasmBig: { kernelMinElements: THRESHOLD, device: wasm },
        };
        const outs = new Map<string, Out>();
        const reps = new Map<string, Awaited<ReturnType<typeof transferModel>>>();
        for (const [label, o] of Object.entries(runs)) {
          const outDir = path.join(dir, `t-${dtype}-${scale}-${label}`);
          const rep = await transferModel({ ...v, scale, copyMissing: true, outDir, ...o });
          outs.set(label, await bytesOf(outDir));
          reps.set(label, rep);
        }
        assert.equal(reps.get('plain')?.engine?.kernelTensors, 0);
        assert.equal(reps.get('wasmAll')?.engine?.kernelTensors, 6);
        // over the threshold: embedding (2,560), up_proj 0 (1,584), up_proj 1 (1,031), head (2,560)
        assert.equal(reps.get('wasmBig')?.engine?.kernelTensors, 4);
        for (const label of ['reference', 'wasmAll', 'wasmBig']) {
          sameBytes(outs.get('plain') as Out, outs.get(label) as Out, label);
          const a = reps.get('plain');
          const b = reps.get(label);
          assert.deepEqual(b?.closeness, a?.closeness, `${label} closeness`);
          assert.deepEqual(b?.perTensor, a?.perTensor, `${label} per tensor`);
          assert.deepEqual(b?.tensors, a?.tensors, `${label} notes`);
          assert.deepEqual(b?.warnings, a?.warnings, `${label} warnings`);
        }
        // grown rows are the fine-tune's, untouched
        const e = outs.get('wasmAll')?.get('model.embed_tokens.weight')?.bytes as Uint8Array;
        const ftE = await v.ft.readTensor('model.embed_tokens.weight');
        const tail = 64 * 40 * SIZE[dtype];
        const ftTail = decodeBits(ftE.subarray(tail), dtype);
        const outTail = decodeBits(e.subarray(tail), dtype);
        for (let j = 0; j < ftTail.length; j++)
          assert.ok(Object.is(ftTail[j], outTail[j]) || (Number.isNaN(ftTail[j]) && Number.isNaN(outTail[j])));
      });
    }
  }

  it('BF16 in, F16 out: kernel path = plain path', async () => {
    const v = await versions('BF16', 21);
    const a = path.join(dir, 'bf-f16-plain');
    const b = path.join(dir, 'bf-f16-fast');
    await transferModel({ ...v, scale: 0.75, copyMissing: true, outDir: a, outDtype: 'F16', kernelMinElements: 1e9 });
    await transferModel({ ...v, scale: 0.75, copyMissing: true, outDir: b, outDtype: 'F16', kernelMinElements: 0 });
    sameBytes(await bytesOf(a), await bytesOf(b), 'F16 out');
  });

  it('output bytes and closeness equal an independent computation (one dtype, and three dtypes)', async () => {
    const r = rng(99);
    const shapes: [string, number[]][] = [
      ['model.layers.0.mlp.up_proj.weight', [50, 61]],
      ['model.layers.0.input_layernorm.weight', [61]],
    ];
    const bf16Bits = (x: number) => {
      const u = new Uint32Array(Float32Array.of(x).buffer)[0];
      return (u + 0x7fff + ((u >>> 16) & 1)) >>> 16;
    };
    for (const [dOld, dFt, dNew] of [
      ['BF16', 'BF16', 'BF16'],
      ['BF16', 'F16', 'F32'],
    ] as KernelDType[][]) {
      const values = shapes.map(([, shape]) => Float32Array.from({ length: numel(shape) }, () => r() - 0.5));
      const version = (dtype: KernelDType, noise: number) =>
        shapes.map(([name, shape], i) => ({
          name,
          dtype,
          shape,
          data: encodeBits(
            values[i].map((v) => v + (noise ? (r() - 0.5) * noise : 0)),
            dtype,
          ),
        }));
      const oldT = version(dOld, 0);
      const ftT = version(dFt, 0.02);
      const newT = version(dNew, 0.01);
      const v = {
        from: await open(await write(oldT)),
        ft: await open(await write(ftT)),
        onto: await open(await write(newT)),
      };
      const s = 0.7;
      const fr = Math.fround;
      // expected: every element from the decoded inputs, f32 steps; sums in f64, element order
      const want = shapes.map((_, i) => {
        const [o, f, nw] = [oldT[i], ftT[i], newT[i]].map((t) => decodeBits(t.data, t.dtype as KernelDType));
        const out = new Float32Array(o.length);
        let dot = 0;
        let sh2 = 0;
        let dl2 = 0;
        let o2 = 0;
        for (let j = 0; j < o.length; j++) {
          const delta = fr(f[j] - o[j]);
          out[j] = fr(nw[j] + fr(fr(s) * delta));
          dot += (nw[j] - o[j]) * delta;
          sh2 += (nw[j] - o[j]) ** 2;
          dl2 += delta * delta;
          o2 += o[j] * o[j];
        }
        return { out, dot, sh2, dl2, o2 };
      });
      const close = (a: number, b: number, what: string) =>
        assert.ok(Math.abs(a - b) <= 1e-12 * Math.abs(b), `${what}: ${a} vs ${b}`);
      const reports = [];
      for (const o of [
        { kernelMinElements: 0, device: await getDevice({ device: 'cpu' }) },
        { kernelMinElements: Number.POSITIVE_INFINITY, device: referenceDevice() },
      ]) {
        const outDir = path.join(dir, `ind-${dNew}-${k++}`);
        const rep = await transferModel({ ...v, scale: s, outDir, ...o });
        reports.push(rep);
        const got = await bytesOf(outDir);
        shapes.forEach(([name], i) => {
          const t = got.get(name) as { dtype: DType; bytes: Uint8Array };
          assert.equal(t.dtype, dNew);
          const expected =
            dNew === 'F32'
              ? new Uint8Array(want[i].out.buffer)
              : new Uint8Array(Uint16Array.from(want[i].out, bf16Bits).buffer);
          assert.deepEqual(Buffer.from(t.bytes), Buffer.from(expected), `${name} (${dOld}, ${dFt}, ${dNew})`);
          const pt = rep.perTensor.find((p) => p.name === name);
          close(pt?.cosine as number, want[i].dot / Math.sqrt(want[i].sh2 * want[i].dl2), `${name} cosine`);
          close(pt?.relDistance as number, Math.sqrt(want[i].sh2 / want[i].o2), `${name} relDistance`);
        });
        const tot = (q: 'dot' | 'sh2' | 'dl2' | 'o2') => want.reduce((a, w) => a + w[q], 0);
        close(rep.closeness.cosine, tot('dot') / Math.sqrt(tot('sh2') * tot('dl2')), 'cosine');
        close(rep.closeness.deltaNorm, Math.sqrt(tot('dl2')), 'deltaNorm');
        close(rep.closeness.baseShiftNorm, Math.sqrt(tot('sh2')), 'baseShiftNorm');
      }
      assert.equal(reports[0].engine?.kernelTensors, 2);
      assert.deepEqual(reports[0].closeness, reports[1].closeness, 'kernel path = plain path, closeness');
      assert.deepEqual(reports[0].perTensor, reports[1].perTensor, 'kernel path = plain path, per tensor');
    }
  });

  it('sub + axpy reproduce the plain formula; a weighted sum (s, −s, 1) rounds differently for s ≠ 1', async () => {
    const wasm = await getDevice({ device: 'cpu' });
    const r = rng(5);
    const n = 4096;
    const [xf, xo, xn] = [0, 1, 2].map(() => Float32Array.from({ length: n }, () => (r() - 0.5) * 4));
    for (const s of [1, 0.3, -1.7]) {
      const fr = Math.fround;
      const sf = fr(s);
      const want = xn.map((v, j) => fr(v + fr(sf * fr(xf[j] - xo[j]))));
      const d = new Float32Array(n);
      const got = new Float32Array(n);
      await wasm.sub(xf, xo, d);
      await wasm.axpy(xn, s, d, got);
      assert.deepEqual(new Uint32Array(got.buffer), new Uint32Array(want.buffer), `sub + axpy, s = ${s}`);
      const ws = new Float32Array(n);
      await wasm.weightedSum([xf, xo, xn], [s, -s, 1], ws);
      const differs = ws.some((v, j) => v !== want[j]);
      // s = 1: (xf − xo) + xn is the same rounding; otherwise s·xf − s·xo is not s·(xf − xo)
      assert.equal(differs, s !== 1, `weighted sum, s = ${s}`);
    }
  });
});

describe('LiNeS on the device kernels', () => {
  for (const dtype of DTYPES) {
    it(`${dtype}: kernel path = plain path, byte for byte`, async () => {
      const r = rng(40 + DTYPES.indexOf(dtype));
      const shapes: [string, number[]][] = [
        ['model.embed_tokens.weight', [64, 40]],
        ['model.layers.0.mlp.up_proj.weight', [48, 33]],
        ['model.layers.0.input_layernorm.weight', [33]],
        ['model.layers.3.mlp.up_proj.weight', [1, 1031]],
        ['model.layers.3.input_layernorm.weight', [7]],
      ];
      const base: RawT[] = shapes.map(([name, shape]) => ({
        name,
        dtype,
        shape,
        data: rawValues(dtype, numel(shape), r),
      }));
      const ft = base.map((t) => ({ ...t, data: rawValues(dtype, numel(t.shape), r, t.data) }));
      const model = await open(await write(ft));
      const b = await open(await write(base));
      const wasm = await getDevice({ device: 'cpu' });
      for (const [alpha, beta] of [
        [0.5, undefined],
        [0.3, 0.6],
        [1, 0],
      ] as [number, number | undefined][]) {
        const outs: Out[] = [];
        for (const o of [
          { kernelMinElements: Number.POSITIVE_INFINITY, device: referenceDevice() },
          { kernelMinElements: 0, device: referenceDevice() },
          { kernelMinElements: 0, device: wasm },
          { kernelMinElements: THRESHOLD, device: wasm },
        ]) {
          const outDir = path.join(dir, `l${k++}`);
          const rep = await linesEdit({ model, base: b, alpha, beta, outDir, ...o });
          assert.equal(
            rep.engine?.kernelTensors,
            o.kernelMinElements === 0 ? 5 : o.kernelMinElements === THRESHOLD ? 3 : 0,
          );
          outs.push(await bytesOf(outDir));
        }
        for (let i = 1; i < outs.length; i++) sameBytes(outs[0], outs[i], `α ${alpha} β ${beta} run ${i}`);
      }
    });
  }
});
