import { WgitError } from '../errors.js';
import { writeModelCopy } from './checkpoint.js';
import type { ObjectKind } from './kind.js';

import {
  RMM_BASIS_KIND,
  RMM_BASIS_VERSION,
  RMM_META_TENSOR,
  type RmmBasis,
  readRmmTable,
  rmmBasisHeader,
  rmmTableVersion,
} from './rmm-format.js';

export * from './rmm-format.js';

// The merge math is loaded on first use: it is large and only compute and apply need it.
const math = () => import('../methods/rmm.js');

export const rmmBasis: ObjectKind<RmmBasis> = {
  name: RMM_BASIS_KIND,
  version: RMM_BASIS_VERSION,
  description: 'reversible-merge basis: per tensor a few basis tensors and per-input coefficients',
  detect(tensorNames) {
    return tensorNames.includes(RMM_META_TENSOR) ? 0 : null;
  },
  async compute(opts) {
    if (!opts.base) throw new WgitError('E_BASE_REQUIRED', 'rmm needs a base model', { method: 'rmm' });
    if (!opts.objectDir)
      throw new WgitError('E_BAD_PARAM', 'the reversible-merge basis needs objectDir', { param: 'objectDir' });
    const { reversibleMerge } = await math();
    const report = await reversibleMerge({
      inputs: opts.inputs,
      base: opts.base,
      params: opts.params,
      outDir: opts.outDir,
      groupDir: opts.objectDir,
      onProgress: opts.onProgress,
      maxShardBytes: opts.maxShardBytes,
    });
    return { header: report.rmm.object, report };
  },
  async encode(value, outDir) {
    // Every version holds the same tensors: re-encoding copies them (a version 0 basis gets its version 1 header).
    await writeModelCopy(value.source, outDir);
    return rmmBasisHeader(value.table);
  },
  async decode(source, header) {
    const table = await readRmmTable(source);
    const inputs = header.meta?.inputs;
    if (inputs !== undefined && inputs !== table.inputs)
      throw new WgitError(
        'E_RMM_GROUP',
        `${source.root}: the manifest says ${String(inputs)} inputs, the table ${table.inputs}`,
        {
          path: source.root,
        },
      );
    // The table says how recovery sums (its fixes are against that): it must be the one the version stores.
    if (table.version !== rmmTableVersion(header.version))
      throw new WgitError(
        'E_RMM_GROUP',
        `${source.root}: an rmm-basis of version ${header.version} holds a table of version ${table.version}`,
        { path: source.root },
      );
    return { header, source, table };
  },
  async apply(value, opts) {
    if (opts.model === undefined)
      throw new WgitError(
        'E_BAD_PARAM',
        'a reversible-merge basis gives back one of its inputs: say which (the merged model is the commit itself)',
        { param: 'model' },
      );
    const { recoverModel } = await math();
    const r = await recoverModel({
      group: value.source,
      table: value.table,
      model: opts.model,
      outDir: opts.outDir,
      onProgress: opts.onProgress,
      maxShardBytes: opts.maxShardBytes,
    });
    return {
      outDir: r.outDir,
      model: r.model,
      exact: r.exact,
      details: { rank: r.rank, relError: r.relError, mergedRelError: r.mergedRelError, fixesApplied: r.fixesApplied },
    };
  },
  describe(value) {
    const t = value.table;
    const basisTensors = Object.values(t.tensors).reduce((a, tm) => a + tm.p, 0);
    return {
      kind: RMM_BASIS_KIND,
      version: value.header.version,
      detected: value.header.version === 0,
      description: `reversible-merge basis: ${t.inputs} inputs, rank ${t.rank}${t.rank === t.inputs ? ' (exact)' : ''}, ${basisTensors} basis tensors`,
      models: t.inputs,
      details: { inputs: t.inputs, rank: t.rank, basisTensors, models: t.models },
    };
  },
};
