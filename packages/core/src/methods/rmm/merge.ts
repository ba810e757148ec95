/** Reversible merge: the method declaration and the two passes that write the merged model and its basis group. */

import { type Device, getDevice } from '../../device/index.js';
import { type DType, dtypeSize, isFloatDType } from '../../dtypes.js';
import { WgitError } from '../../errors.js';
import {
  baseName,
  basisName,
  fixIndexName,
  fixValueName,
  inputCopyName,
  RMM_META_TENSOR,
  RMM_TABLE_VERSION,
  type RmmMeta,
  type RmmTensorMeta,
  rmmBasisHeader,
} from '../../objects/rmm-format.js';
import {
  BufferPool,
  convertOut,
  FolderSink,
  type GroupHeader,
  type PipelineTensor,
  runTensorPipeline,
  type Sink,
  streamTensors,
  validateModels,
} from '../../pipeline/index.js';
import type { ModelSource, TensorSpec } from '../../safetensors/index.js';
import { linearCoefficients } from '../linear.js';
import { countBlocks } from '../lines.js';
import { defineMethod, lambdaParam, normalizeParam, rankParam, tensorParams, weightsParam } from '../params.js';
import { sparseConsensusTensor } from '../sparse-consensus.js';
import type { MergeMethod, MergeParams, MergeReport, MethodRunOptions, ProgressEvent, TensorParams } from '../types.js';
import { bytesOf, elementCount, forEachDiff, inputsSideFiles, sameBytes, TensorBlocks } from './blocks.js';
import {
  addGram,
  basisTensor,
  decompose,
  fr,
  mergedValues,
  RMM_GROUP,
  RMM_MAX_INPUTS,
  RMM_MERGED_CONFIG,
} from './math.js';

export const rmm: MergeMethod = defineMethod({
  name: 'rmm',
  description:
    'reversible merge: the task-arithmetic mean plus a per-tensor basis from which every input can be recovered',
  reference: 'after Alipour & Amiri 2025, "Towards reversible model merging for low-rank weights"',
  params: [
    weightsParam({ help: 'merged model: weights of the task updates (normalised by their sum)' }),
    lambdaParam({ help: 'merged model: scale of the merged update' }),
    normalizeParam({ default: true, help: 'merged model: divide by the sum of the weights' }),
    rankParam(),
  ],
  needsBase: true,
  minInputs: 1,
  config: RMM_MERGED_CONFIG,
  checkInputs(nInputs: number) {
    if (nInputs > RMM_MAX_INPUTS)
      throw new WgitError('E_BAD_PARAM', `rmm takes at most ${RMM_MAX_INPUTS} models, got ${nInputs}`, {
        param: 'inputs',
      });
  },
  build(tp: TensorParams) {
    return (inputs, base, ctx, out) => {
      if (!base) throw new WgitError('E_BASE_REQUIRED', 'rmm needs a base model', { method: 'rmm' });
      sparseConsensusTensor(RMM_MERGED_CONFIG, tp, inputs, base, ctx, out);
    };
  },
  // It writes the basis group beside the merged model, so the engine hands it the whole merge.
  run: (opts: MethodRunOptions) => reversibleMerge({ ...opts, base: opts.base as ModelSource }),
});

// ---------------------------------------------------------------------------
// the merge

export interface ReversibleMergeOptions {
  inputs: ModelSource[];
  base: ModelSource;
  params?: MergeParams;
  /** The merged model's folder (plain checkout), unless `sink` is given. */
  outDir?: string;
  /** With outDir: the group's folder (base copy, basis, fixes, coefficient table, each input's side files). */
  groupDir?: string;
  /** Where the merged model goes instead, with the group as its `rmm` group (e.g. a store commit). */
  sink?: Sink;
  outDtype?: DType;
  onProgress?: (e: ProgressEvent) => void;
  maxShardBytes?: number;
  /** The device to compute on (default: getDevice({ device: 'auto' })). */
  device?: Device;
}

export interface RmmReport extends MergeReport {
  rmm: {
    rank: number;
    basisTensors: number;
    models: RmmMeta['models'];
    /** The group's folder, or null when it went to a sink. */
    groupDir: string | null;
    /** The manifest header to commit the group with. */
    object: GroupHeader;
  };
}

/**
 * Writes the merged model and the group (to folders, or to a sink and its
 * `rmm` group). Two passes on the tensor pipeline: the first (the pipeline's
 * first pass) decides each tensor's basis and counts the fixes — the group's
 * header must list every tensor before the first byte is written — and the
 * streaming pass recomputes the same numbers and writes them.
 */
export async function reversibleMerge(opts: ReversibleMergeOptions): Promise<RmmReport> {
  const n = opts.inputs.length;
  if (!opts.base) throw new WgitError('E_BASE_REQUIRED', 'rmm needs a base model', { method: 'rmm' });
  const resolved = rmm.resolve(opts.params ?? {}, n);
  const rank = resolved.rank;
  const models = [...opts.inputs, opts.base];
  validateModels(models);
  let sink = opts.sink;
  if (!sink) {
    if (opts.groupDir === undefined)
      throw new WgitError('E_BAD_PARAM', 'rmm needs groupDir: the folder that receives the basis and coefficients', {
        param: 'groupDir',
      });
    if (opts.outDir === undefined)
      throw new WgitError('E_BAD_PARAM', 'rmm needs outDir (or a sink): where the merged model goes', {
        param: 'outDir',
      });
    sink = new FolderSink(opts.outDir, { groups: { [RMM_GROUP]: opts.groupDir } });
  } else if (!sink.group) {
    throw new WgitError('E_BAD_PARAM', 'rmm writes a basis group beside the model: this sink cannot hold one', {
      param: 'sink',
    });
  }
  const device = opts.device ?? (await getDevice({ device: 'auto' }));
  const ref = opts.inputs[0];
  const layers = countBlocks(ref.tensors.map((t) => t.name));
  const order = ref.tensors.map((t) => t.name);
  const floatNames = ref.tensors.filter((t) => isFloatDType(t.dtype)).map((t) => t.name);
  const meta: RmmMeta = {
    format: 'wgit-rmm',
    version: RMM_TABLE_VERSION,
    inputs: n,
    rank,
    params: resolved,
    order,
    tensors: {},
    copied: ref.tensors
      .filter((t) => !isFloatDType(t.dtype))
      .map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape })),
    models: [],
  };
  /** Per float tensor: the basis as combinations of the updates, decided by the first pass. */
  const combos = new Map<string, number[][]>();

  const firstPass = async () => {
    const totals = Array.from({ length: n }, () => ({ rec: 0, merged: 0, delta: 0, fixes: 0 }));
    const pool = new BufferPool(device);
    try {
      let done = 0;
      for await (const lt of streamTensors(models, floatNames, pool, 'rmm.p')) {
        const info = ref.tensor(lt.name);
        const tb = new TensorBlocks(device, pool, info.dtype, lt.raw);
        const tp = tensorParams(resolved, lt.name, layers);
        const gram = Array.from({ length: n }, () => new Array<number>(n).fill(0));
        for (const { off, count } of tb.blocks()) await addGram(device, (await tb.deltas(off, count)).deltas, gram);
        const mc = linearCoefficients(tp.weights, tp.normalize).map((c) => c * fr(tp.lambda));
        const dec = decompose(gram, mc, rank);
        combos.set(lt.name, dec.combo);
        const p = dec.combo.length;
        const re = new Array<number>(n).fill(0);
        const me = new Array<number>(n).fill(0);
        const fixes = new Array<number>(n).fill(0);
        for (const { off, count } of tb.blocks()) {
          const { base, deltas, inputs } = await tb.deltas(off, count, { inputs: true });
          const basis: Float32Array[] = [];
          for (let k = 0; k < p; k++) {
            const m = pool.f32(`rmm.m${k}`, count);
            await basisTensor(deltas, dec.combo[k], m, device);
            basis.push(m);
          }
          const merged = pool.f32('rmm.merged', count);
          await mergedValues(device, tp, base, deltas, merged);
          const mergedBytes = pool.bytes('rmm.mb', count * tb.es);
          await convertOut(merged, info.dtype, mergedBytes, device);
          const mergedBack = await tb.back(mergedBytes, 'rmm.mback');
          for (let i = 0; i < n; i++) {
            me[i] = await tb.errorSq(mergedBack, inputs[i], me[i]);
            const rec = await tb.rounded(base, basis, dec.coeffs[i], count);
            const input = tb.bytes(i, off, count);
            // Equal bytes add nothing to the error; fixes only make sense for a full basis (a truncated one is lossy by choice).
            if (sameBytes(rec, input)) continue;
            if (rank === n) forEachDiff(rec, input, tb.es, () => fixes[i]++);
            re[i] = await tb.errorSq(await tb.back(rec, 'rmm.rback'), inputs[i], re[i]);
          }
        }
        const tm: RmmTensorMeta = {
          dtype: info.dtype,
          shape: info.shape,
          p,
          coeffs: dec.coeffs,
          eigenvalues: dec.eigenvalues,
          mergedFirst: dec.mergedFirst,
          relError: [],
          mergedRelError: [],
          fixes,
        };
        for (let i = 0; i < n; i++) {
          const dn = gram[i][i];
          tm.relError.push(dn > 0 ? Math.sqrt(re[i] / dn) : re[i] > 0 ? Number.POSITIVE_INFINITY : 0);
          tm.mergedRelError.push(dn > 0 ? Math.sqrt(me[i] / dn) : me[i] > 0 ? Number.POSITIVE_INFINITY : 0);
          totals[i].rec += re[i];
          totals[i].merged += me[i];
          totals[i].delta += dn;
          totals[i].fixes += fixes[i];
        }
        meta.tensors[lt.name] = tm;
        opts.onProgress?.({ phase: 'rmm-basis', done: ++done, total: floatNames.length, tensor: lt.name });
      }
    } finally {
      pool.release();
    }
    meta.models = totals.map((t) => ({
      relError: t.delta > 0 ? Math.sqrt(t.rec / t.delta) : 0,
      mergedRelError: t.delta > 0 ? Math.sqrt(t.merged / t.delta) : 0,
      fixes: t.fixes,
    }));
    meta.metadata = opts.inputs.map((m) => m.metadata ?? null);
  };

  const groupSpecs = (table: Uint8Array): TensorSpec[] => {
    const specs: TensorSpec[] = [{ name: RMM_META_TENSOR, dtype: 'U8', shape: [table.length] }];
    for (const t of ref.tensors) {
      const tm = meta.tensors[t.name];
      if (!tm) {
        for (let i = 0; i < n; i++) specs.push({ name: inputCopyName(t.name, i), dtype: t.dtype, shape: t.shape });
        continue;
      }
      specs.push({ name: baseName(t.name), dtype: t.dtype, shape: t.shape });
      for (let k = 0; k < tm.p; k++) specs.push({ name: basisName(t.name, k), dtype: 'F32', shape: t.shape });
      const big = elementCount(t.shape) > 0x7fffffff;
      for (let i = 0; i < n; i++) {
        if (tm.fixes[i] === 0) continue;
        specs.push({ name: fixIndexName(t.name, i), dtype: big ? 'I64' : 'I32', shape: [tm.fixes[i]] });
        specs.push({ name: fixValueName(t.name, i), dtype: t.dtype, shape: [tm.fixes[i]] });
      }
    }
    return specs;
  };

  let basisTensors = 0;
  /** The streaming pass for one tensor: the merged values into the output, the basis and fixes into the group. */
  const step = async (t: PipelineTensor): Promise<boolean> => {
    const group = t.groups[RMM_GROUP];
    const tm = meta.tensors[t.name];
    if (!tm) {
      for (let i = 0; i < n; i++) await group.write(inputCopyName(t.name, i), t.raw[i]);
      return false; // the merged model takes the first model's, as for every method
    }
    const combo = combos.get(t.name) as number[][];
    if (combo.length !== tm.p) throw new Error(`rmm: basis of ${t.name} changed between passes`);
    await group.write(baseName(t.name), t.raw[n]);
    const tb = new TensorBlocks(t.device, t.pool, t.dtype, t.raw);
    const tp = tensorParams(resolved, t.name, layers);
    const basis = combo.map((_, k) => t.pool.f32(`rmm.basis${k}`, tb.len));
    const esOut = dtypeSize(t.outDtype);
    for (const { off, count } of tb.blocks()) {
      const { base, deltas } = await tb.deltas(off, count, { base: true });
      for (let k = 0; k < tm.p; k++) await basisTensor(deltas, combo[k], basis[k].subarray(off, off + count), t.device);
      const merged = t.pool.f32('rmm.merged', count);
      await mergedValues(t.device, tp, base, deltas, merged);
      await convertOut(merged, t.outDtype, t.out.subarray(off * esOut, (off + count) * esOut), t.device);
    }
    for (let k = 0; k < tm.p; k++) {
      const m = basis[k];
      await group.write(basisName(t.name, k), bytesOf(m));
      basisTensors++;
    }
    for (let i = 0; i < n; i++) {
      if (tm.fixes[i] === 0) continue;
      const big = tb.len > 0x7fffffff;
      const index = new Uint8Array(tm.fixes[i] * (big ? 8 : 4));
      const iv = new DataView(index.buffer);
      const value = new Uint8Array(tm.fixes[i] * tb.es);
      let c = 0;
      for (const { off, count } of tb.blocks()) {
        const base = await tb.values(n, off, count, 'rmm.base');
        const parts = basis.map((m) => m.subarray(off, off + count));
        const rec = await tb.rounded(base, parts, tm.coeffs[i], count);
        const input = tb.bytes(i, off, count);
        forEachDiff(rec, input, tb.es, (j) => {
          if (c < tm.fixes[i]) {
            if (big) iv.setBigInt64(c * 8, BigInt(off + j), true);
            else iv.setInt32(c * 4, off + j, true);
            value.set(input.subarray(j * tb.es, (j + 1) * tb.es), c * tb.es);
          }
          c++;
        });
      }
      if (c !== tm.fixes[i]) throw new Error('rmm: fix count changed between passes');
      await group.write(fixIndexName(t.name, i), index);
      await group.write(fixValueName(t.name, i), value);
    }
    return true;
  };

  const report = await runTensorPipeline({
    label: 'rmm',
    inputs: opts.inputs,
    base: opts.base,
    sink,
    outDtype: opts.outDtype,
    onProgress: opts.onProgress,
    maxShardBytes: opts.maxShardBytes,
    params: resolved as unknown as Record<string, unknown>,
    device,
    firstPass,
    groups: () => {
      const table = new TextEncoder().encode(JSON.stringify(meta));
      return [
        {
          name: RMM_GROUP,
          header: rmmBasisHeader(meta),
          plan: { specs: groupSpecs(table), maxShardBytes: opts.maxShardBytes },
          carrier: inputsSideFiles(opts.inputs),
          head: [{ name: RMM_META_TENSOR, bytes: table }],
        },
      ];
    },
    step,
  });
  const object = rmmBasisHeader(meta);
  const groupDir = opts.sink ? null : (opts.groupDir as string);
  for (const note of report.tensors) {
    const tm = meta.tensors[note.name];
    if (tm) note.note = `basis ${tm.p}`;
  }
  return {
    ...report,
    warnings: meta.copied.length
      ? [
          `${meta.copied.length} integer/bool tensor(s): merged model takes the first model's; each input's copy is in the group`,
        ]
      : [],
    outDir: opts.sink ? '' : (opts.outDir as string),
    groups: [{ name: RMM_GROUP, header: object, dir: groupDir }],
    rmm: { rank, basisTensors, models: meta.models, groupDir, object },
  };
}
