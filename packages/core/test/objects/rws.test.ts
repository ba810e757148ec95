import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { getDevice, referenceDevice } from '../../src/device/index.js';
import { isWgitError } from '../../src/errors.js';
import { applyDelta } from '../../src/objects/delta.js';
import { computeRws, decodeRws, getObjectKind, rwsView } from '../../src/objects/index.js';
import { openModel } from '../../src/safetensors/index.js';
import { bf16Round, decode, llamaToy, perturb, readAll, rng, type T, tmpDir, writeModel } from '../methods/helpers.js';

const code = (e: unknown) => (isWgitError(e) ? e.code : String(e));
const f32 = Math.fround;

let dir: string;
const opened: { close(): Promise<void> }[] = [];
async function open(p: string) {
  const m = await openModel(p);
  opened.push(m);
  return m;
}

/** init, clean = init + noise, robust = init + half the clean update + other noise. */
function family(dtype: 'F32' | 'BF16', seed: number): { init: T[]; clean: T[]; robust: T[] } {
  const r = rng(seed);
  const init = llamaToy(r, dtype, 0.5);
  const clean = perturb(init, r, 0.05);
  const robust = init.map((t, i) =>
    t.dtype === 'I64'
      ? t
      : { ...t, values: Array.from(t.values, (v, j) => v + 0.5 * (Number(clean[i].values[j]) - v) + r() * 0.02) },
  );
  return { init, clean, robust };
}

/** The signature of one tensor by plain loops: a = f32(c − i), d = f32(r − i), d − f32(f32(⟨d,a⟩/⟨a,a⟩)·a). */
function oracleSignature(r: Float32Array, c: Float32Array, i: Float32Array): { sig: number[]; coef: number } {
  const a = Array.from(c, (x, j) => f32(x - i[j]));
  const d = Array.from(r, (x, j) => f32(x - i[j]));
  let da = 0;
  let aa = 0;
  for (let j = 0; j < a.length; j++) {
    da += d[j] * a[j];
    aa += a[j] * a[j];
  }
  const coef = aa > 0 ? da / aa : 0;
  return { sig: d.map((x, j) => f32(x + f32(f32(-coef) * a[j]))), coef };
}

/** Uniform min/max quantization by hand: the range, the packed codes and the values they stand for. */
function oracleQuant(x: number[], bits: 4 | 8) {
  const lo = Math.min(...x);
  const top = 2 ** bits - 1;
  const step = f32((Math.max(...x) - lo) / top);
  const q = x.map((v) => Math.min(top, Math.max(0, Math.round((v - lo) / step))));
  const packed =
    bits === 8 ? q : Array.from({ length: Math.ceil(q.length / 2) }, (_, i) => q[2 * i] + 16 * (q[2 * i + 1] ?? 0));
  return { lo, step, packed, values: q.map((k) => f32(lo + f32(k * step))) };
}

let f32Paths: { init: string; clean: string; robust: string };
let bf16Paths: typeof f32Paths;
let fam: ReturnType<typeof family>;

before(async () => {
  dir = tmpDir();
  fam = family('F32', 21);
  const b = family('BF16', 22);
  const write = async (tag: string, m: typeof fam) => ({
    init: await writeModel(path.join(dir, `${tag}-init`), m.init),
    clean: await writeModel(path.join(dir, `${tag}-clean`), m.clean),
    robust: await writeModel(path.join(dir, `${tag}-robust`), m.robust, { 'config.json': '{"robust":1}' }),
  });
  f32Paths = await write('f32', fam);
  bf16Paths = await write('bf16', b);
});
after(async () => {
  await Promise.all(opened.map((m) => m.close()));
  fs.rmSync(dir, { recursive: true, force: true });
});

const models = async (p: typeof f32Paths) => [await open(p.robust), await open(p.clean), await open(p.init)] as const;

describe('robust weight signatures', () => {
  for (const [label, device] of [
    ['reference', async () => referenceDevice()],
    ['wasm', () => getDevice({ device: 'cpu', threads: 2, parallelMin: 1 })],
  ] as const) {
    it(`unquantized: the robust update minus its projection on the clean one, first half of the blocks (${label})`, async () => {
      const [r, c, i] = await models(f32Paths);
      const out = path.join(dir, `f32-${label}`);
      const report = await computeRws(r, c, i, { bits: 32 }, { outDir: out, device: await device() });
      assert.equal(report.blocks, 3);
      assert.equal(report.layers, 2, 'half the blocks, rounded up');
      const covered = fam.init.filter((t) => /layers\.[01]\./.test(t.name)).map((t) => t.name);
      assert.deepEqual(
        report.tensors.map((t) => t.name),
        covered,
      );
      const stored = await open(out);
      assert.deepEqual(
        stored.tensors.map((t) => t.name),
        covered.map((n) => `${n}::rws.value`),
      );
      for (const name of covered) {
        const at = fam.init.findIndex((t) => t.name === name);
        const want = oracleSignature(
          Float32Array.from(fam.robust[at].values),
          Float32Array.from(fam.clean[at].values),
          Float32Array.from(fam.init[at].values),
        );
        const got = decode(await stored.readTensor(`${name}::rws.value`), 'F32');
        const scale = Math.max(...want.sig.map(Math.abs));
        got.forEach((x, j) => {
          assert.ok(Math.abs(x - want.sig[j]) <= 1e-6 * scale, `${name}[${j}]`);
        });
        const t = report.tensors.find((x) => x.name === name);
        assert.ok(Math.abs((t?.coef ?? 0) - want.coef) < 1e-9, `${name}: coefficient`);
        // What is left is orthogonal to the clean update.
        let dot = 0;
        let aa = 0;
        let dd = 0;
        got.forEach((x, j) => {
          const a = f32(Number(fam.clean[at].values[j]) - Number(fam.init[at].values[j]));
          const d = f32(Number(fam.robust[at].values[j]) - Number(fam.init[at].values[j]));
          dot += x * a;
          aa += a * a;
          dd += d * d;
        });
        assert.ok(Math.abs(dot) / Math.sqrt(aa * dd) < 1e-6, `${name}: orthogonal to a`);
        assert.equal(t?.relError, 0);
      }
    });
  }

  for (const bits of [8, 4] as const)
    it(`${bits}-bit: per-tensor min/max codes by hand; patch = M + w·Q(RWS), remove gives M back up to rounding`, async () => {
      const [r, c, i] = await models(bf16Paths);
      const exactOut = path.join(dir, `bf16-32-${bits}`);
      await computeRws(r, c, i, { bits: 32, layers: 1 }, { outDir: exactOut });
      const exact = await open(exactOut);
      const out = path.join(dir, `bf16-${bits}`);
      const kind = getObjectKind('rws');
      const { header, report } = await kind.compute({
        inputs: [r, c],
        base: i,
        params: { bits, layers: 1 },
        outDir: out,
      });
      const rep = report as {
        relError: number;
        tensors: { name: string; relError: number }[];
        objectBytes: number;
        fullCopyBytes: number;
      };
      const stored = await open(out);
      let errSq = 0;
      let sigSq = 0;
      const patched = new Map<string, number[]>();
      const reach = new Map<string, number>();
      for (const { name } of rep.tensors) {
        const sig = Array.from(decode(await exact.readTensor(`${name}::rws.value`), 'F32'));
        const q = oracleQuant(sig, bits);
        assert.deepEqual([...decode(await stored.readTensor(`${name}::rws.range`), 'F32')], [q.lo, q.step], name);
        assert.deepEqual([...(await stored.readTensor(`${name}::rws.q`))], q.packed, name);
        let e = 0;
        let s = 0;
        sig.forEach((x, j) => {
          e += (x - q.values[j]) ** 2;
          s += x * x;
        });
        assert.ok(Math.abs((rep.tensors.find((t) => t.name === name)?.relError ?? -1) - Math.sqrt(e / s)) < 1e-12);
        errSq += e;
        sigSq += s;
        const m = decode((await readAll(bf16Paths.clean)).get(name)?.bytes as Uint8Array, 'BF16');
        reach.set(name, 0.75 * Math.max(...q.values.map(Math.abs)));
        patched.set(
          name,
          Array.from(m, (v, j) => bf16Round(f32(v + f32(0.75 * q.values[j])))),
        );
      }
      assert.ok(Math.abs(rep.relError - Math.sqrt(errSq / sigSq)) < 1e-12);
      assert.ok(rep.relError > 0 && rep.relError < (bits === 8 ? 0.02 : 0.3), `error ${rep.relError}`);
      assert.ok(rep.objectBytes * (bits === 8 ? 4 : 8) < rep.fullCopyBytes * 2, 'a fraction of a full copy');

      // Patch the clean model with w = 0.75, then remove the same.
      const sig = await kind.decode(stored, header);
      const on = path.join(dir, `patched-${bits}`);
      await applyDelta(rwsView(decodeRws(stored, header)), c, 0.75, { outDir: on });
      const got = await readAll(on);
      const orig = await readAll(bf16Paths.clean);
      for (const [name, t] of orig) {
        const want = patched.get(name);
        if (want) assert.deepEqual(Array.from(decode(got.get(name)?.bytes as Uint8Array, 'BF16')), want, name);
        else assert.deepEqual(got.get(name)?.bytes, t.bytes, `${name} is outside the signature`);
      }
      const off = path.join(dir, `removed-${bits}`);
      await kind.apply(sig, { onto: await open(on), scale: -0.75, outDir: off });
      for (const [name, t] of await readAll(off)) {
        const m = decode(orig.get(name)?.bytes as Uint8Array, 'BF16');
        // Two roundings to bf16, each within half a unit in the last place of what it rounds.
        const tol = (j: number) => 2 ** -8 * (2 * Math.abs(m[j]) + 3 * (reach.get(name) ?? 0));
        decode(t.bytes, 'BF16').forEach((x, j) => {
          assert.ok(Math.abs(x - m[j]) <= tol(j), `${name}[${j}]`);
        });
      }
    });

  it('refuses bad parameters, mismatched models, NaN and another architecture, naming the tensor; writes nothing', async () => {
    const [r, c, i] = await models(f32Paths);
    const never = path.join(dir, 'never');
    for (const params of [{ bits: 5 }, { layers: 0 }, { layers: 4 }, { layers: 1.5 }])
      await assert.rejects(computeRws(r, c, i, params, { outDir: never }), (e) => code(e) === 'E_BAD_PARAM');
    const flat = await open(
      await writeModel(path.join(dir, 'flat'), [{ name: 'w', dtype: 'F32', shape: [2], values: [1, 2] }]),
    );
    await assert.rejects(computeRws(flat, flat, flat, {}, { outDir: never }), (e) => code(e) === 'E_BAD_PARAM');
    const name = fam.init[4].name;
    const reshaped = await open(
      await writeModel(
        path.join(dir, 'reshaped'),
        fam.clean.map((t, k) => (k === 4 ? { ...t, shape: [2, 8] } : t)),
      ),
    );
    await assert.rejects(
      computeRws(r, reshaped, i, {}, { outDir: never }),
      (e) => code(e) === 'E_SHAPE_MISMATCH' && (e as { data: { tensor: string } }).data.tensor === name,
    );
    const retyped = await open(
      await writeModel(
        path.join(dir, 'retyped'),
        fam.init.map((t, k) => (k === 4 ? { ...t, dtype: 'BF16' } : t)),
      ),
    );
    await assert.rejects(
      computeRws(r, c, retyped, {}, { outDir: never }),
      (e) => code(e) === 'E_DTYPE_MISMATCH' && (e as { data: { tensor: string } }).data.tensor === name,
    );
    const nan = await open(
      await writeModel(
        path.join(dir, 'nan'),
        fam.robust.map((t, k) =>
          k === 4 ? { ...t, values: Array.from(t.values, (v, j) => (j === 5 ? Number.NaN : v)) } : t,
        ),
      ),
    );
    await assert.rejects(
      computeRws(nan, c, i, {}, { outDir: never }),
      (e) => code(e) === 'E_NAN_DELTA' && (e as { data: { tensor: string } }).data.tensor === name,
    );
    assert.equal(fs.existsSync(never), false);

    const out = path.join(dir, 'arch');
    const report = await computeRws(r, c, i, { bits: 4 }, { outDir: out });
    const sig = decodeRws(await open(out), report.header);
    const smaller = await open(
      await writeModel(
        path.join(dir, 'smaller'),
        fam.init.filter((t) => !t.name.includes('layers.1.')),
      ),
    );
    const target = path.join(dir, 'arch-never');
    await assert.rejects(
      applyDelta(rwsView(sig), smaller, 1, { outDir: target }),
      (e) => code(e) === 'E_SHAPE_MISMATCH',
    );
    await assert.rejects(
      applyDelta(rwsView(sig), reshaped, 1, { outDir: target }),
      (e) => code(e) === 'E_SHAPE_MISMATCH',
    );
    assert.equal(fs.existsSync(target), false);
    assert.throws(
      () => decodeRws(sig.source, { ...report.header, meta: { ...report.header.meta, bits: 8 } }),
      (e) => code(e) === 'E_CORRUPT',
    );
    assert.throws(
      () => decodeRws(r, report.header),
      (e) => code(e) === 'E_CORRUPT',
    );
  });
});
