import { Args, Flags } from '@oclif/core';
import type { SparseTensorReport } from '@wgit/core';
import { WgitCommand } from '../base.js';
import { deviceFlags, useDevice } from '../device-flag.js';
import { formatBytes, printable } from '../format.js';
import { branchPiece, recipeRef, runMethodCommit } from '../method-commit.js';
import { decimalFlag } from '../numbers.js';

export interface SparsifyResult {
  commit: string;
  branch: string;
  parents: string[];
  mode: 'exact' | 'density';
  density: number | null;
  /** Entries stored, of the float tensors' elements. */
  kept: number;
  elements: number;
  /** ‖Δ − Δ̂‖/‖Δ‖ over the model (0 for exact). */
  relError: number;
  /** Tensors held whole: non-float ones, and (exact) float ones f32 cannot carry bit for bit. */
  replaced: string[];
  tensors: SparseTensorReport[];
  /** Bytes of the stored tensors before compression, and of a dense f32 diff vector of the same tensors. */
  objectBytes: number;
  denseF32Bytes: number;
  rawBytes: number;
  storedBytes: number;
}

export default class Sparsify extends WgitCommand {
  static override summary = 'Store a fine-tune as a sparse delta over its base: (index, value) pairs of FT − BASE';
  static override description =
    `Per float tensor, the flat indices (sorted, delta-coded) and f32 values of Δ = FT − BASE.
--exact keeps every entry whose bits differ (lossless: applying it onto BASE gives FT bit for bit);
--density D keeps exactly round(D·n) entries of each tensor, the largest |Δ| first (ties: the lower
index), and reports the relative error ‖Δ − Δ̂‖/‖Δ‖. Apply it with \`wgit apply OBJ --onto MODEL\`.
Committed with parents FT and BASE; without --branch on a new branch sparsify/<FT>.`;
  static override args = {
    ft: Args.string({ description: 'the fine-tuned model (revision or path)', required: true }),
  };
  static override examples = [
    '<%= config.bin %> sparsify ft-rl --base base-v1 --exact',
    '<%= config.bin %> sparsify ft-sft --base base-v1 --density 0.1 --branch ft-sft-10pct',
  ];
  static override flags = {
    ...deviceFlags,
    base: Flags.string({ description: 'the base FT was fine-tuned from (revision or path)', required: true }),
    exact: Flags.boolean({ description: 'keep every changed entry (lossless)', exclusive: ['density'] }),
    density: Flags.string({ description: 'keep this fraction of each tensor, largest |Δ| first (0 < D ≤ 1)' }),
    message: Flags.string({ char: 'm', description: 'commit message' }),
    branch: Flags.string({ description: 'branch to commit on (default: a new branch sparsify/<FT>)' }),
  };

  async run(): Promise<SparsifyResult> {
    const { args, flags } = await this.parse(Sparsify);
    const device = await useDevice(flags.device);
    const { computeSparseDelta, planSparseDelta, WgitError } = await import('@wgit/core');
    if (!flags.exact && flags.density === undefined)
      throw new WgitError('E_USAGE', 'give --exact or --density D', { flag: 'density' });
    const params = flags.exact ? { exact: true } : { density: decimalFlag(flags.density, 'density') };
    const { value, result, parents } = await runMethodCommit({
      device,
      repo: flags.repo,
      models: [args.ft, flags.base],
      kind: 'sparsify',
      branch: flags.branch,
      branchName: ([ft]) => branchPiece(ft),
      object: ([ft, base]) => planSparseDelta(ft.source, base.source, params).header,
      compute: async ([ft, base], outDir, _scratch, sink) => {
        const report = await computeSparseDelta(ft.source, base.source, params, {
          sink,
          outDir,
          onProgress: (e) => this.progress(`sparsify ${e.done}/${e.total}`),
        });
        const how = report.mode === 'exact' ? 'exact' : `density ${report.density}`;
        return {
          value: report,
          message: flags.message ?? `sparse delta of ${args.ft} over ${flags.base} (${how})`,
          parents: [ft, base],
          recipe: {
            kind: 'sparse-delta',
            ft: recipeRef(ft),
            base: recipeRef(base),
            mode: report.mode,
            density: report.density,
            kept: report.kept,
            elements: report.elements,
            relError: report.relError,
            replaced: report.replaced,
            tensors: report.tensors,
          },
        };
      },
      progress: (m) => this.progress(m),
      progressDone: () => this.progressDone(),
    });
    const { header: _header, ...report } = value;
    const out: SparsifyResult = {
      commit: result.commit,
      branch: result.branch,
      parents,
      ...report,
      rawBytes: result.rawBytes,
      storedBytes: result.storedBytes,
    };
    if (!this.jsonEnabled()) {
      const share = out.elements > 0 ? ((100 * out.kept) / out.elements).toFixed(2) : '0';
      this.log(
        `[${printable(result.branch)} ${result.commit.slice(0, 12)}] sparse delta of ${printable(args.ft)} over ${printable(flags.base)}` +
          ` (${out.mode === 'exact' ? 'exact' : `density ${out.density}`}): ${out.kept} of ${out.elements} entries (${share}%),` +
          ` relative error ${out.relError.toExponential(2)}; ${formatBytes(out.storedBytes)} stored` +
          ` (a dense f32 diff: ${formatBytes(out.denseF32Bytes)})`,
      );
      if (out.replaced.length > 0) this.log(`held whole: ${out.replaced.map(printable).join(', ')}`);
    }
    return out;
  }
}
