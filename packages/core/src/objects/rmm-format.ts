/**
 * The stored form of the reversible-merge basis: per float tensor the base, a few basis tensors
 * M_k (F32) and per input coefficients c_ik, with Δᵢ ≈ Σ_k c_ik M_k, so each
 * input of the merge can be given back (the math is in methods/rmm.ts).
 *
 * Stored form (every version holds the same tensors):
 *   `__wgit_rmm__.json` (U8)        the coefficient table (RmmMeta, JSON)
 *   `<name>::rmm.base`              the base tensor
 *   `<name>::rmm.basis.<k>`         basis tensor k (F32)
 *   `<name>::rmm.fix.<i>.index/.value`  exact values where rounding missed input i
 *   `<name>::rmm.input.<i>`         integer/bool tensors of each input
 *   side files `inputs/<i>/…`       each input's side files
 * Version 0 is the form written before manifests named their kind: it is
 * recognised by its table tensor. Version 1 is the same tensors with the
 * manifest header `{ kind: 'rmm-basis', version: 1, meta: { inputs, rank } }`.
 * Both reconstruct θ₀ + Σ_k c_k M_k as an f64 sum rounded once (table version
 * 1), and their fixes are against that. Version 2 (table version 2) computes
 * it on the device kernels, in f32: the update Σ_k c_k M_k left to right,
 * then one addition to the base; its fixes are against that, so a reader
 * must know which one a group used.
 */
import type { DType } from '../dtypes.js';
import { WgitError } from '../errors.js';
import type { ResolvedParams } from '../methods/types.js';
import type { ModelSource } from '../safetensors/index.js';
import type { ObjectHeader, ObjectValue } from './kind.js';

export const RMM_BASIS_KIND = 'rmm-basis';
export const RMM_BASIS_VERSION = 2;
/** The coefficient table this code writes: 2, reconstruction in f32 on the kernels (1: an f64 sum). */
export const RMM_TABLE_VERSION = 2;

/** Name of the U8 tensor that holds the coefficient table (JSON). */
export const RMM_META_TENSOR = '__wgit_rmm__.json';

export const basisName = (name: string, k: number) => `${name}::rmm.basis.${k}`;
export const baseName = (name: string) => `${name}::rmm.base`;
export const fixIndexName = (name: string, i: number) => `${name}::rmm.fix.${i}.index`;
export const fixValueName = (name: string, i: number) => `${name}::rmm.fix.${i}.value`;
export const inputCopyName = (name: string, i: number) => `${name}::rmm.input.${i}`;

export interface RmmTensorMeta {
  dtype: DType;
  shape: number[];
  /** Number of basis tensors. */
  p: number;
  /** n × p. */
  coeffs: number[][];
  eigenvalues: number[];
  mergedFirst: boolean;
  /** Per task: ‖θ̂ᵢ − θᵢ‖/‖Δᵢ‖ of the recovered tensor before fixes (0 when Δᵢ = 0). */
  relError: number[];
  /** Per task: ‖θ_merged − θᵢ‖/‖Δᵢ‖. */
  mergedRelError: number[];
  /** Per task: entries stored exactly because rounding missed them. */
  fixes: number[];
}

export interface RmmMeta {
  format: 'wgit-rmm';
  /** 1: recovery sums θ₀ + Σ c_k M_k in f64 (kind versions 0 and 1); 2: in f32 on the device kernels (kind version 2). */
  version: 1 | 2;
  inputs: number;
  rank: number;
  params: ResolvedParams;
  /** Tensor order of the models. */
  order: string[];
  /** Float tensors. */
  tensors: Record<string, RmmTensorMeta>;
  /** Integer/bool tensors: stored per input. */
  copied: { name: string; dtype: DType; shape: number[] }[];
  /** Whole model per task: relative error of the recovered model (before fixes) and of the merged model. */
  models: { relError: number; mergedRelError: number; fixes: number }[];
  /** Each input's safetensors `__metadata__`, restored on recovery (absent in groups written before it existed). */
  metadata?: (Record<string, string> | null)[];
}

export interface RmmBasis extends ObjectValue {
  table: RmmMeta;
}

/** The manifest header of a basis with this table (a table of version 1 is a basis of version 1). */
export function rmmBasisHeader(table: Pick<RmmMeta, 'inputs' | 'rank' | 'version'>): ObjectHeader {
  const version = table.version === 1 ? 1 : RMM_BASIS_VERSION;
  return { kind: RMM_BASIS_KIND, version, meta: { inputs: table.inputs, rank: table.rank } };
}

/** The table version a basis of kind version `kindVersion` holds. */
export function rmmTableVersion(kindVersion: number): 1 | 2 {
  return kindVersion <= 1 ? 1 : 2;
}

/** Reads and checks the coefficient table of a stored basis. */
export async function readRmmTable(group: ModelSource): Promise<RmmMeta> {
  let t: ReturnType<ModelSource['tensor']>;
  try {
    t = group.tensor(RMM_META_TENSOR);
  } catch {
    throw new WgitError('E_RMM_GROUP', `${group.root}: not a reversible-merge group (no ${RMM_META_TENSOR})`, {
      path: group.root,
    });
  }
  if (t.dtype !== 'U8' || t.shape.length !== 1)
    throw new WgitError('E_RMM_GROUP', `${group.root}: malformed ${RMM_META_TENSOR}`, { path: group.root });
  let meta: RmmMeta;
  try {
    meta = JSON.parse(
      new TextDecoder('utf-8', { fatal: true }).decode(await group.readTensor(RMM_META_TENSOR)),
    ) as RmmMeta;
  } catch {
    throw new WgitError('E_RMM_GROUP', `${group.root}: the coefficient table is not valid JSON`, { path: group.root });
  }
  if (
    meta?.format !== 'wgit-rmm' ||
    (meta.version !== 1 && meta.version !== 2) ||
    !Array.isArray(meta.order) ||
    typeof meta.tensors !== 'object' ||
    !Number.isInteger(meta.inputs)
  ) {
    throw new WgitError('E_RMM_GROUP', `${group.root}: unsupported reversible-merge table`, { path: group.root });
  }
  const isStringMap = (m: unknown) =>
    m === null ||
    (typeof m === 'object' && !Array.isArray(m) && Object.values(m as object).every((v) => typeof v === 'string'));
  if (meta.metadata !== undefined && !(Array.isArray(meta.metadata) && meta.metadata.every(isStringMap))) {
    throw new WgitError('E_RMM_GROUP', `${group.root}: malformed per-input metadata in the table`, {
      path: group.root,
    });
  }
  for (const name of meta.order) {
    const tm = meta.tensors[name];
    if (!tm) continue;
    if (
      !Number.isInteger(tm.p) ||
      tm.p < 0 ||
      !Array.isArray(tm.coeffs) ||
      tm.coeffs.length !== meta.inputs ||
      tm.coeffs.some((c) => !Array.isArray(c) || c.length !== tm.p || c.some((x) => typeof x !== 'number'))
    ) {
      throw new WgitError('E_RMM_GROUP', `${group.root}: bad coefficients for tensor ${name}`, {
        path: group.root,
        tensor: name,
      });
    }
  }
  return meta;
}
