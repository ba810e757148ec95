/** Reversible merge: recovering one input from the basis group. */

import { type Device, getDevice } from '../../device/index.js';
import { isFloatDType } from '../../dtypes.js';
import { WgitError } from '../../errors.js';
import {
  baseName,
  basisName,
  fixIndexName,
  fixValueName,
  inputCopyName,
  type RmmMeta,
  readRmmTable,
} from '../../objects/rmm-format.js';
import { BufferPool, convertIn, FolderSink, fillSink, prefetched, type SideFileSource } from '../../pipeline/index.js';
import type { ModelSource, TensorSpec } from '../../safetensors/index.js';
import type { ProgressEvent } from '../types.js';
import { elementCount, TensorBlocks } from './blocks.js';

// ---------------------------------------------------------------------------
// recovery

export interface RecoverOptions {
  /** The group written by reversibleMerge (a folder, or a commit's group from the store). */
  group: ModelSource;
  /** The group's coefficient table when the caller has read it already (the rmm-basis kind's decode). */
  table?: RmmMeta;
  /** Which input to recover, 0-based. */
  model: number;
  outDir: string;
  /** Apply the stored fixes (default true): byte-exact with a full basis. */
  exact?: boolean;
  onProgress?: (e: ProgressEvent) => void;
  maxShardBytes?: number;
  /** The device to compute on (default: getDevice({ device: 'auto' })). */
  device?: Device;
}

export interface RecoverReport {
  model: number;
  rank: number;
  outDir: string;
  /** Recorded at merge time: relative error of this input's recovery (before fixes) and of the merged model. */
  relError: number;
  mergedRelError: number;
  /** Entries corrected from the stored fixes. */
  fixesApplied: number;
  /** True when the output is byte-identical to the input (fixes applied and the basis was full). */
  exact: boolean;
  tensors: number;
}

/** What recovery reads for one tensor of the output. */
export interface StoredTensor {
  name: string;
  spec: TensorSpec;
  /** Integer/bool tensors: input N's copy. */
  copy?: Uint8Array;
  base?: Uint8Array;
  basis?: Uint8Array[];
  fixes?: { index: Uint8Array; indexDtype: string; value: Uint8Array };
}

/** Recovers input `model` of a reversible merge from its group, into a folder (a FolderSink). */
export async function recoverModel(opts: RecoverOptions): Promise<RecoverReport> {
  const meta = opts.table ?? (await readRmmTable(opts.group));
  const N = opts.model;
  if (!Number.isInteger(N) || N < 0 || N >= meta.inputs) {
    throw new WgitError('E_BAD_PARAM', `model must be in 0..${meta.inputs - 1}, got ${N}`, {
      param: 'model',
      inputs: meta.inputs,
    });
  }
  const exact = opts.exact ?? true;
  // the sum the group's fixes were computed against (see rmm-format.ts)
  const sum = meta.version === 1 ? 'f64' : 'f32';
  const g = opts.group;
  const specs: TensorSpec[] = meta.order.map((name) => {
    const tm = meta.tensors[name];
    if (tm) {
      const b = g.tensor(baseName(name));
      return { name, dtype: b.dtype, shape: b.shape };
    }
    const c = g.tensor(inputCopyName(name, N));
    return { name, dtype: c.dtype, shape: c.shape };
  });
  const sideRoot = `inputs/${N}/`;
  const sideFiles: SideFileSource = {
    sideFiles: g.sideFiles.filter((f) => f.startsWith(sideRoot)).map((f) => f.slice(sideRoot.length)),
    readSideFile: (rel: string) => g.readSideFile(sideRoot + rel),
  };
  const device = opts.device ?? (await getDevice({ device: 'auto' }));
  const pool = new BufferPool(device);
  const read = (slot: string, name: string) => g.readTensor(name, pool.bytes(slot, g.tensor(name).byteLength));
  /** Reads tensor t's stored parts (while the previous one is computed). */
  const load = async (t: number): Promise<StoredTensor> => {
    const spec = specs[t];
    const name = spec.name;
    const tm = meta.tensors[name];
    const slot = `rec${t & 1}`;
    if (!tm) return { name, spec, copy: await read(`${slot}.copy`, inputCopyName(name, N)) };
    if (!isFloatDType(spec.dtype))
      throw new WgitError('E_RMM_GROUP', `${g.root}: base of ${name} is not a float tensor`, { tensor: name });
    const count = elementCount(spec.shape);
    const basis: Uint8Array[] = [];
    for (let k = 0; k < tm.p; k++) {
      const bt = g.tensor(basisName(name, k));
      if (bt.dtype !== 'F32' || bt.byteLength !== count * 4)
        throw new WgitError('E_RMM_GROUP', `${g.root}: bad basis tensor for ${name}`, { tensor: name });
      basis.push(await read(`${slot}.m${k}`, basisName(name, k)));
    }
    const stored: StoredTensor = { name, spec, base: await read(`${slot}.base`, baseName(name)), basis };
    if (exact && tm.fixes[N] > 0) {
      stored.fixes = {
        index: await g.readTensor(fixIndexName(name, N)),
        indexDtype: g.tensor(fixIndexName(name, N)).dtype,
        value: await g.readTensor(fixValueName(name, N)),
      };
    }
    return stored;
  };
  let fixesApplied = 0;
  const sink = new FolderSink(opts.outDir);
  try {
    const plan = { specs, maxShardBytes: opts.maxShardBytes, metadata: meta.metadata?.[N] ?? undefined };
    await fillSink(sink, plan, sideFiles, async () => {
      let done = 0;
      for await (const st of prefetched(specs.length, load)) {
        if (st.copy) {
          await sink.write(st.name, st.copy);
          continue;
        }
        const tm = meta.tensors[st.name];
        const tb = new TensorBlocks(device, pool, st.spec.dtype, [st.base as Uint8Array]);
        const out = pool.bytes('rec.out', tb.len * tb.es);
        const basis: Float32Array[] = [];
        for (const [k, raw] of (st.basis as Uint8Array[]).entries())
          basis.push(
            raw.byteOffset % 4 === 0
              ? new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4)
              : await convertIn(pool, `rec.mf${k}`, raw, 'F32', device),
          );
        for (const { off, count } of tb.blocks()) {
          const base = await tb.values(0, off, count, 'rmm.base');
          const parts = basis.map((m) => m.subarray(off, off + count));
          out.set(await tb.rounded(base, parts, tm.coeffs[N], count, sum), off * tb.es);
        }
        if (st.fixes) fixesApplied += applyFixes(g, st.name, st.fixes, tm.fixes[N], tb.es, out);
        await sink.write(st.name, out);
        opts.onProgress?.({ phase: 'rmm-recover', done: ++done, total: specs.length, tensor: st.name });
      }
    });
  } finally {
    pool.release();
  }
  const mm = meta.models[N];
  return {
    model: N,
    rank: meta.rank,
    outDir: opts.outDir,
    relError: mm?.relError ?? Number.NaN,
    mergedRelError: mm?.mergedRelError ?? Number.NaN,
    fixesApplied,
    exact: exact && meta.rank === meta.inputs,
    tensors: specs.length,
  };
}

/** Writes the stored exact values into `out`; returns how many. */
export function applyFixes(
  g: ModelSource,
  name: string,
  fixes: NonNullable<StoredTensor['fixes']>,
  count: number,
  es: number,
  out: Uint8Array,
): number {
  const { index: idx, value: val } = fixes;
  const wide = fixes.indexDtype === 'I64';
  if (val.byteLength !== count * es || idx.byteLength !== count * (wide ? 8 : 4))
    throw new WgitError('E_RMM_GROUP', `${g.root}: fixes of ${name} have the wrong size`, { tensor: name });
  const dv = new DataView(idx.buffer, idx.byteOffset, idx.byteLength);
  const len = out.byteLength / es;
  for (let c = 0; c < count; c++) {
    const j = wide ? Number(dv.getBigInt64(c * 8, true)) : dv.getInt32(c * 4, true);
    if (!(j >= 0 && j < len))
      throw new WgitError('E_RMM_GROUP', `${g.root}: fix index out of range in ${name}`, { tensor: name });
    out.set(val.subarray(c * es, c * es + es), j * es);
  }
  return count;
}
