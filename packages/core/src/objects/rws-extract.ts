/**
 * Extracting a robust weight signature (stored form: rws.ts). Per float
 * tensor of the first N blocks (block numbers from tensor names, as LiNeS
 * finds them), flattened, with I the init, C the clean model, R the robust
 * one, all read as f32:
 *   a = f32(C − I), d = f32(R − I), c = ⟨d, a⟩/⟨a, a⟩ (f64 sums; 0 when a = 0),
 *   RWS = f32(d − f32(f32(c)·a)),
 * then quantized per tensor (rws.ts) unless bits = 32. Reported per tensor:
 * c, ‖RWS‖ and the quantization error ‖RWS − Q(RWS)‖/‖RWS‖; overall the same
 * error and the bytes against a full copy of R.
 */
import type { Device } from '../device/index.js';
import { getDevice } from '../device/index.js';
import { dtypeSize, isFloatDType } from '../dtypes.js';
import { WgitError } from '../errors.js';
import { blockIndex, countBlocks } from '../methods/lines.js';
import { type BufferPool, convertIn } from '../pipeline/index.js';
import type { ModelSource, TensorSpec } from '../safetensors/index.js';
import { type DeltaIO, elementsOf, sameShape, writeTensors } from './delta.js';
import type { ObjectHeader } from './kind.js';
import {
  codeBytes,
  dequantize,
  type QuantRange,
  quantize,
  quantRange,
  RWS_BITS,
  RWS_KIND,
  RWS_VERSION,
  type RwsBits,
  type RwsMeta,
  rwsCodesName,
  rwsRangeName,
  rwsValueName,
} from './rws-format.js';

export interface RwsParams {
  /** Blocks kept, 0 … layers − 1 (default: half the blocks, rounded up). */
  layers?: number;
  /** 8 or 4 (quantized) or 32 (f32, unquantized); default 8. */
  bits?: number;
}

export interface RwsTensorReport {
  name: string;
  elements: number;
  /** ⟨d, a⟩/⟨a, a⟩, the share of the clean update taken out. */
  coef: number;
  /** ‖RWS‖. */
  norm: number;
  /** ‖RWS − Q(RWS)‖/‖RWS‖ (0 unquantized, or when RWS = 0). */
  relError: number;
}

export interface RwsReport {
  header: ObjectHeader;
  bits: RwsBits;
  layers: number;
  blocks: number;
  tensors: RwsTensorReport[];
  /** Quantization error over every tensor together. */
  relError: number;
  /** Bytes of the stored tensors before compression. */
  objectBytes: number;
  /** Bytes of the same tensors as a dense f32 diff. */
  denseF32Bytes: number;
  /** Bytes of every tensor of the robust model: what a full copy costs. */
  fullCopyBytes: number;
}

export interface RwsPlan {
  header: ObjectHeader;
  meta: RwsMeta;
  /** The tensors the signature covers, in the robust model's order. */
  tensors: TensorSpec[];
}

function badParam(param: string, message: string, value: unknown): WgitError {
  return new WgitError('E_BAD_PARAM', message, { param, value });
}

/** Checks the parameters and the three tensor lists (nothing is read); the header and the tensors covered. */
export function planRws(robust: ModelSource, clean: ModelSource, init: ModelSource, params: RwsParams): RwsPlan {
  const bits = params.bits ?? 8;
  if (!RWS_BITS.includes(bits as RwsBits)) throw badParam('bits', `bits must be 8, 4 or 32, got ${bits}`, bits);
  for (const [label, other] of [
    ['clean model', clean],
    ['init', init],
  ] as const) {
    const inOther = new Map(other.tensors.map((t) => [t.name, t]));
    const inRobust = new Set(robust.tensors.map((t) => t.name));
    const lone =
      robust.tensors.find((t) => !inOther.has(t.name))?.name ?? other.tensors.find((t) => !inRobust.has(t.name))?.name;
    if (lone !== undefined)
      throw new WgitError(
        'E_TENSOR_MISMATCH',
        `tensor ${JSON.stringify(lone)} is in only one of the robust model and the ${label}`,
        {
          tensor: lone,
        },
      );
    for (const t of robust.tensors) {
      const o = inOther.get(t.name) as (typeof other.tensors)[number];
      if (o.dtype !== t.dtype)
        throw new WgitError(
          'E_DTYPE_MISMATCH',
          `tensor ${JSON.stringify(t.name)} is ${t.dtype} in the robust model and ${o.dtype} in the ${label}`,
          { tensor: t.name, robust: t.dtype, other: o.dtype },
        );
      if (!sameShape(o.shape, t.shape))
        throw new WgitError(
          'E_SHAPE_MISMATCH',
          `tensor ${JSON.stringify(t.name)} has shape [${t.shape}] in the robust model and [${o.shape}] in the ${label}`,
          { tensor: t.name, expected: t.shape, found: o.shape },
        );
    }
  }
  const blocks = countBlocks(robust.tensors.map((t) => t.name));
  if (blocks === 0)
    throw badParam('layers', 'no tensor of the robust model is in a numbered block (layers.N., h.N., blocks.N.)', null);
  const layers = params.layers ?? Math.ceil(blocks / 2);
  if (!Number.isSafeInteger(layers) || layers < 1 || layers > blocks)
    throw badParam('layers', `layers must be an integer from 1 to ${blocks} (the blocks found), got ${layers}`, layers);
  const tensors = robust.tensors
    .filter((t) => isFloatDType(t.dtype) && (blockIndex(t.name) ?? blocks) < layers)
    .map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape }));
  const meta: RwsMeta = {
    bits: bits as RwsBits,
    layers,
    blocks,
    shapes: tensors.map((t) => [t.name, [...t.shape]]),
  };
  return { header: { kind: RWS_KIND, version: RWS_VERSION, meta: { ...meta } }, meta, tensors };
}

/** E_NAN_DELTA at the first value of `arrays` that is NaN or infinite (index −1: the sums overflowed). */
function notFinite(name: string, arrays: Float32Array[]): WgitError {
  let index = -1;
  for (const x of arrays) {
    const j = x.findIndex((v) => !Number.isFinite(v));
    if (j >= 0 && (index < 0 || j < index)) index = j;
  }
  return new WgitError(
    'E_NAN_DELTA',
    `tensor ${JSON.stringify(name)}: the signature is not finite${index >= 0 ? ` at flat index ${index}` : ''} (a NaN or an infinity in a model, or values too large for f32)`,
    { tensor: name, index },
  );
}

/** RWS of one tensor into the pool's 'rws' slot, and c; a value that is not finite is E_NAN_DELTA. */
async function signature(
  spec: TensorSpec,
  [r, c, i]: Uint8Array[],
  pool: BufferPool,
  device: Device,
): Promise<{ sig: Float32Array; coef: number }> {
  const vr = await convertIn(pool, 'vr', r, spec.dtype, device);
  const vc = await convertIn(pool, 'vc', c, spec.dtype, device);
  const vi = await convertIn(pool, 'vi', i, spec.dtype, device);
  const n = vr.length;
  const a = pool.f32('a', n);
  const d = pool.f32('d', n);
  await device.sub(vc, vi, a);
  await device.sub(vr, vi, d);
  const aa = await device.sumSq(a);
  const coef = aa > 0 ? (await device.dot(d, a)) / aa : 0;
  if (!Number.isFinite(coef)) throw notFinite(spec.name, [a, d]);
  const sig = pool.f32('rws', n);
  await device.axpy(d, -coef, a, sig);
  for (let j = 0; j < n; j++) if (!Number.isFinite(sig[j])) throw notFinite(spec.name, [sig]);
  return { sig, coef };
}

const sumSq = (x: Float32Array) => {
  let s = 0;
  for (let j = 0; j < x.length; j++) s += x[j] * x[j];
  return s;
};

/** The signature of ROBUST against CLEAN from INIT, written to `io` (ROBUST's side files go with it); the report. */
export async function computeRws(
  robust: ModelSource,
  clean: ModelSource,
  init: ModelSource,
  params: RwsParams,
  io: DeltaIO,
): Promise<RwsReport> {
  const plan = planRws(robust, clean, init, params);
  const { bits } = plan.meta;
  const device = io.device ?? (await getDevice({ device: 'auto' }));
  const specs: TensorSpec[] = [];
  const owner = new Map<string, TensorSpec>();
  for (const t of plan.tensors) {
    const n = elementsOf(t.shape);
    const stored: TensorSpec[] =
      bits === 32
        ? [{ name: rwsValueName(t.name), dtype: 'F32', shape: [n] }]
        : [
            { name: rwsRangeName(t.name), dtype: 'F32', shape: [2] },
            { name: rwsCodesName(t.name), dtype: 'U8', shape: [codeBytes(n, bits)] },
          ];
    for (const s of stored) owner.set(s.name, t);
    specs.push(...stored);
  }
  const reports: RwsTensorReport[] = [];
  let errSq = 0;
  let sigSq = 0;
  let range: QuantRange = { lo: 0, step: 0 };
  await writeTensors(
    { ...io, device },
    specs,
    robust,
    async (spec, raw, out, pool) => {
      const t = owner.get(spec.name) as TensorSpec;
      if (spec.name === rwsCodesName(t.name)) {
        // The signature is still in the 'rws' slot from the range just before.
        const sig = pool.f32('rws', elementsOf(t.shape));
        quantize(sig, bits as 4 | 8, range, out);
        const back = pool.f32('back', sig.length);
        dequantize(out, bits as 4 | 8, range, back);
        let e = 0;
        for (let j = 0; j < sig.length; j++) e += (sig[j] - back[j]) * (sig[j] - back[j]);
        const report = reports[reports.length - 1];
        const s = report.norm * report.norm;
        report.relError = s > 0 ? Math.sqrt(e / s) : 0;
        errSq += e;
        return;
      }
      const { sig, coef } = await signature(t, raw, pool, device);
      const s = sumSq(sig);
      sigSq += s;
      reports.push({ name: t.name, elements: sig.length, coef, norm: Math.sqrt(s), relError: 0 });
      if (bits === 32) {
        new Float32Array(out.buffer, out.byteOffset, sig.length).set(sig);
        return;
      }
      range = quantRange(sig, bits);
      new Float32Array(out.buffer, out.byteOffset, 2).set([range.lo, range.step]);
    },
    async (spec, pool, parity) => {
      const t = owner.get(spec.name) as TensorSpec;
      if (spec.name === rwsCodesName(t.name)) return [];
      const bytes = robust.tensor(t.name).byteLength;
      return [
        await robust.readTensor(t.name, pool.bytes(`r${parity}`, bytes)),
        await clean.readTensor(t.name, pool.bytes(`c${parity}`, bytes)),
        await init.readTensor(t.name, pool.bytes(`i${parity}`, bytes)),
      ];
    },
  );
  return {
    header: plan.header,
    bits,
    layers: plan.meta.layers,
    blocks: plan.meta.blocks,
    tensors: reports,
    relError: sigSq > 0 ? Math.sqrt(errSq / sigSq) : 0,
    objectBytes: specs.reduce((a, s) => a + elementsOf(s.shape) * dtypeSize(s.dtype), 0),
    denseF32Bytes: plan.tensors.reduce((a, t) => a + 4 * elementsOf(t.shape), 0),
    fullCopyBytes: robust.tensors.reduce((a, t) => a + t.byteLength, 0),
  };
}
