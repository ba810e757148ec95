/**
 * `wgit lowrank`: a low-rank basis of Δ = FT − BASE. Every check runs on the
 * tensor lists before anything is read (shapes, dtypes, the rank); then each
 * 2-D float tensor's Δ is factored by randomized SVD (linalg/rsvd.ts) —
 * B = U_r·√Σ_r, A = √Σ_r·V_rᵀ — and its relative Frobenius error
 * ‖Δ − B·A‖ / ‖Δ‖ measured exactly; a NaN or infinity in any Δ stops the
 * computation before anything is written. Then the factors, the dense
 * differences and FT's new tensors are written in FT's tensor order.
 */
import { type Device, getDevice } from '../../device/index.js';
import { type DType, dtypeSize, isFloatDType } from '../../dtypes.js';
import { WgitError } from '../../errors.js';
import { RSVD_DEFAULTS, randomizedSvd } from '../../linalg/index.js';
import { BufferPool, convertIn } from '../../pipeline/index.js';
import type { ModelSource, TensorSpec } from '../../safetensors/index.js';
import { type DeltaIO, sameShape, writeTensors } from '../delta.js';
import type { ObjectHeader } from '../kind.js';
import { factorNames, LOW_RANK_KIND, LOW_RANK_VERSION, type LowRankMeta } from './format.js';

export interface LowRankParams {
  /** Fixed rank of every factored tensor … */
  rank: number | null;
  /** … or the smallest rank whose Σσᵢ² reaches this fraction of ‖Δ‖². */
  energy: number | null;
  oversample: number;
  powerIters: number;
  seed: number;
  /** What happens to float tensors that are not 2-D: dense f32 differences, or dropped. */
  others: 'dense' | 'drop';
}

export interface LowRankTensorReport {
  name: string;
  shape: number[];
  rank: number;
  /** ‖Δ − B·A‖ / ‖Δ‖ (0 when Δ = 0). */
  error: number;
}

export interface LowRankReport {
  tensors: LowRankTensorReport[];
  /** ‖Δ − stored‖ / ‖Δ‖ over every float tensor both models hold (dropped ones count whole). */
  error: number;
  dense: string[];
  dropped: string[];
  replaced: string[];
  removed: string[];
}

const bad = (param: string, message: string) => new WgitError('E_BAD_PARAM', message, { param });

/** Parameters from flags or a recipe, checked (E_BAD_PARAM). */
export function lowRankParams(p: Record<string, unknown>): LowRankParams {
  const rank = p.rank ?? null;
  const energy = p.energy ?? null;
  if ((rank === null) === (energy === null)) throw bad('rank', 'give exactly one of a rank or an energy fraction');
  if (rank !== null && (!Number.isInteger(rank) || (rank as number) < 1))
    throw bad('rank', `rank must be a positive integer, got ${String(rank)}`);
  if (energy !== null && (typeof energy !== 'number' || !(energy > 0 && energy <= 1)))
    throw bad('energy', `energy must be a fraction in (0, 1], got ${String(energy)}`);
  const int = (name: string, v: unknown, def: number, max: number) => {
    const x = v ?? def;
    if (!Number.isInteger(x) || (x as number) < 0 || (x as number) > max)
      throw bad(name, `${name} must be an integer from 0 to ${max}, got ${String(x)}`);
    return x as number;
  };
  const others = p.others ?? 'dense';
  if (others !== 'dense' && others !== 'drop')
    throw bad('others', `others must be dense or drop, got ${String(others)}`);
  return {
    rank: rank as number | null,
    energy: energy as number | null,
    oversample: int('oversample', p.oversample, RSVD_DEFAULTS.oversample, 1024),
    powerIters: int('power-iters', p.powerIters, RSVD_DEFAULTS.powerIters, 20),
    seed: int('seed', p.seed, RSVD_DEFAULTS.seed, 2 ** 32 - 1),
    others,
  };
}

/** The header of FT − BASE as a low-rank basis, from the tensor lists alone; refuses what cannot be factored. */
export function planLowRank(base: ModelSource, ft: ModelSource, raw: Record<string, unknown>): ObjectHeader {
  const params = lowRankParams(raw);
  const inBase = new Map(base.tensors.map((t) => [t.name, t]));
  const meta: LowRankMeta = {
    lowRank: [],
    scales: {},
    dense: [],
    dropped: [],
    replaced: [],
    removed: [],
    params: { ...params },
  };
  for (const t of ft.tensors) {
    const b = inBase.get(t.name);
    if (!b) {
      meta.replaced.push(t.name);
      continue;
    }
    if (b.dtype !== t.dtype)
      throw new WgitError(
        'E_DTYPE_MISMATCH',
        `tensor ${JSON.stringify(t.name)} is ${t.dtype} in the fine-tune and ${b.dtype} in the base`,
        { tensor: t.name, ft: t.dtype, base: b.dtype },
      );
    if (!sameShape(b.shape, t.shape))
      throw new WgitError(
        'E_SHAPE_MISMATCH',
        `tensor ${JSON.stringify(t.name)} has shape [${t.shape}] in the fine-tune and [${b.shape}] in the base`,
        { tensor: t.name, expected: b.shape, found: t.shape },
      );
    if (!isFloatDType(t.dtype)) meta.replaced.push(t.name);
    else if (t.shape.length === 2) {
      const small = Math.min(t.shape[0], t.shape[1]);
      if (params.rank !== null && params.rank > small)
        throw new WgitError(
          'E_RANK_TOO_LARGE',
          `rank ${params.rank} is larger than tensor ${JSON.stringify(t.name)} [${t.shape}] allows (${small})`,
          { tensor: t.name, rank: params.rank, shape: t.shape },
        );
      meta.lowRank.push(t.name);
    } else (params.others === 'dense' ? meta.dense : meta.dropped).push(t.name);
  }
  const ftNames = new Set(ft.tensors.map((t) => t.name));
  meta.removed = base.tensors.filter((t) => !ftNames.has(t.name)).map((t) => t.name);
  const stored = new Set([...meta.dense, ...meta.replaced]);
  for (const name of meta.lowRank)
    for (const f of Object.values(factorNames(name)))
      if (stored.has(f) || ftNames.has(f))
        throw bad(
          'rank',
          `tensor ${JSON.stringify(f)} would hold the factor of ${JSON.stringify(name)} and another tensor`,
        );
  return { kind: LOW_RANK_KIND, version: LOW_RANK_VERSION, meta: { ...meta } };
}

interface Factors {
  a: Float32Array;
  b: Float32Array;
  rank: number;
}

/** Δ of one tensor in f32 (computed in place of FT's values), refusing NaN or infinity; returns it and ‖Δ‖². */
async function deltaOf(name: string, base: ModelSource, ft: ModelSource, pool: BufferPool, device: Device) {
  const t = ft.tensor(name);
  const vf = await convertIn(pool, 'vf', await ft.readTensor(name, pool.bytes('rf', t.byteLength)), t.dtype, device);
  const vb = await convertIn(pool, 'vb', await base.readTensor(name, pool.bytes('rb', t.byteLength)), t.dtype, device);
  const delta = vf;
  await device.sub(vf, vb, delta);
  const norm2 = await device.sumSq(delta);
  if (!Number.isFinite(norm2))
    throw new WgitError('E_NOT_FINITE', `the difference of tensor ${JSON.stringify(name)} holds NaN or infinity`, {
      tensor: name,
    });
  return { delta, norm2 };
}

/** Factors of Δ (m×n) at the fixed rank or the energy's rank; the SVD grows k until the energy is reached. */
async function factor(
  device: Device,
  delta: Float32Array,
  m: number,
  n: number,
  norm2: number,
  p: LowRankParams,
  stream: number,
): Promise<Factors> {
  const full = Math.min(m, n);
  const opts = { oversample: p.oversample, powerIters: p.powerIters, seed: p.seed, stream };
  let rank = p.rank ?? Math.min(16, full);
  if (norm2 === 0) rank = p.rank ?? 1;
  else
    for (let want = rank; ; want = Math.min(2 * want, full)) {
      const svd = await randomizedSvd(device, delta, m, n, { ...opts, rank: want });
      let r = want;
      if (p.energy !== null) {
        let acc = 0;
        r = 0;
        while (r < want && acc < p.energy * norm2) acc += svd.s[r++] ** 2;
        if (acc < p.energy * norm2 && want < full) continue;
      }
      const a = new Float32Array(r * n);
      const b = new Float32Array(m * r);
      for (let t = 0; t < r; t++) {
        const root = Math.sqrt(svd.s[t]);
        for (let i = 0; i < m; i++) b[i * r + t] = svd.u[i * svd.k + t] * root;
        for (let j = 0; j < n; j++) a[t * n + j] = svd.v[j * svd.k + t] * root;
      }
      return { a, b, rank: r };
    }
  return { a: new Float32Array(rank * n), b: new Float32Array(m * rank), rank };
}

/** ‖Δ − B·A‖² in f64, B·A expanded in blocks of about 2²⁴ elements (the base's buffer holds them). */
async function residual2(device: Device, pool: BufferPool, delta: Float32Array, f: Factors, m: number, n: number) {
  const rows = Math.max(1, Math.floor(2 ** 24 / n));
  let e2 = 0;
  for (let r0 = 0; r0 < m; r0 += rows) {
    const r1 = Math.min(m, r0 + rows);
    const approx = pool.f32('vb', (r1 - r0) * n);
    await device.matmul(f.b.subarray(r0 * f.rank, r1 * f.rank), f.a, approx, r1 - r0, f.rank, n);
    await device.sub(delta.subarray(r0 * n, r1 * n), approx, approx);
    e2 += await device.sumSq(approx);
  }
  return e2;
}

/** FT − BASE as a low-rank basis written to `io`; returns its header and the report (ranks and errors). */
export async function computeLowRank(
  base: ModelSource,
  ft: ModelSource,
  raw: Record<string, unknown>,
  io: DeltaIO,
): Promise<{ header: ObjectHeader; report: LowRankReport }> {
  const header = planLowRank(base, ft, raw);
  const meta = header.meta as unknown as LowRankMeta;
  const params = lowRankParams(raw);
  const device = io.device ?? (await getDevice({ device: 'auto' }));
  const pool = new BufferPool(device);
  const factors = new Map<string, Factors>();
  const tensors: LowRankTensorReport[] = [];
  let total2 = 0;
  let err2 = 0;
  try {
    const work = [...meta.lowRank, ...meta.dense, ...meta.dropped];
    for (const [i, name] of work.entries()) {
      const { delta, norm2 } = await deltaOf(name, base, ft, pool, device);
      total2 += norm2;
      if (meta.dropped.includes(name)) err2 += norm2;
      if (meta.lowRank.includes(name)) {
        const [m, n] = ft.tensor(name).shape;
        const f = await factor(device, delta, m, n, norm2, params, i);
        const e2 = await residual2(device, pool, delta, f, m, n);
        err2 += e2;
        factors.set(name, f);
        tensors.push({ name, shape: [m, n], rank: f.rank, error: norm2 === 0 ? 0 : Math.sqrt(e2 / norm2) });
      }
      io.onProgress?.({ phase: 'factor', done: i + 1, total: work.length });
    }
  } finally {
    pool.release();
  }
  const dense = new Set(meta.dense);
  const owner = new Map<string, { name: string; which: 'a' | 'b' }>();
  const specs: TensorSpec[] = [];
  for (const t of ft.tensors) {
    const f = factors.get(t.name);
    if (f) {
      const { a, b } = factorNames(t.name);
      specs.push(
        { name: a, dtype: 'F32', shape: [f.rank, t.shape[1]] },
        { name: b, dtype: 'F32', shape: [t.shape[0], f.rank] },
      );
      owner.set(a, { name: t.name, which: 'a' });
      owner.set(b, { name: t.name, which: 'b' });
    } else if (dense.has(t.name)) specs.push({ name: t.name, dtype: 'F32' as DType, shape: t.shape });
    else if (meta.replaced.includes(t.name)) specs.push({ name: t.name, dtype: t.dtype, shape: t.shape });
  }
  await writeTensors(
    { ...io, device },
    specs,
    ft,
    async (spec, raws, out, pool, dev) => {
      const own = owner.get(spec.name);
      if (own) {
        const f = factors.get(own.name) as Factors;
        const v = own.which === 'a' ? f.a : f.b;
        out.set(new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
      } else if (dense.has(spec.name)) {
        const dtype = ft.tensor(spec.name).dtype;
        const vf = await convertIn(pool, 'vf', raws[0], dtype, dev);
        const vb = await convertIn(pool, 'vb', raws[1], dtype, dev);
        await dev.sub(vf, vb, new Float32Array(out.buffer, out.byteOffset, vf.length));
      } else out.set(raws[0]);
    },
    async (spec, pool, parity) => {
      if (owner.has(spec.name)) return [];
      const t = ft.tensor(spec.name);
      const raws = [await ft.readTensor(spec.name, pool.bytes(`f${parity}`, t.byteLength))];
      if (dense.has(spec.name))
        raws.push(
          await base.readTensor(
            spec.name,
            pool.bytes(`b${parity}`, t.shape.reduce((x, y) => x * y, 1) * dtypeSize(t.dtype)),
          ),
        );
      return raws;
    },
  );
  const report: LowRankReport = {
    tensors,
    error: total2 === 0 ? 0 : Math.sqrt(err2 / total2),
    dense: meta.dense,
    dropped: meta.dropped,
    replaced: meta.replaced,
    removed: meta.removed,
  };
  return { header, report };
}
