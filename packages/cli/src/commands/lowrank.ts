import { Args, Flags } from '@oclif/core';
import { WgitCommand } from '../base.js';
import { deviceFlags, useDevice } from '../device-flag.js';
import { formatBytes, printable } from '../format.js';
import { branchPiece, recipeRef, runMethodCommit } from '../method-commit.js';
import { decimalFlag, integerFlag } from '../numbers.js';

export interface LowRankResult {
  commit: string;
  branch: string;
  parents: string[];
  ft: string;
  base: string;
  /** Per factored tensor: its shape, rank and relative Frobenius error ‖Δ − B·A‖ / ‖Δ‖. */
  tensors: { name: string; shape: number[]; rank: number; error: number }[];
  /** ‖Δ − stored‖ / ‖Δ‖ over every float tensor (dropped ones count whole). */
  error: number;
  dense: string[];
  dropped: string[];
  replaced: string[];
  removed: string[];
  rawBytes: number;
  storedBytes: number;
}

export default class LowRank extends WgitCommand {
  static override description = `Store a fine-tune as a low-rank basis of its change from a base model.

For each 2-D tensor, Δ = FT − BASE is factored by a randomized SVD (Gaussian test vectors with
--oversample extra columns, --power-iters power iterations with re-orthonormalisation) into
B = U_r·√Σ_r and A = √Σ_r·V_rᵀ, at a fixed --rank or at the smallest rank whose Σσᵢ² reaches
--energy of ‖Δ‖². Other float tensors (norms, biases) are kept as dense differences or dropped
(--others); tensors new in FT are kept whole. The commit's parents are FT and BASE; its recipe
holds the parameters and the relative error ‖Δ − B·A‖/‖Δ‖ of every tensor. Apply it with
\`wgit apply\`, export it with \`wgit export-lora\`.`;

  static override examples = [
    '<%= config.bin %> lowrank instruct --base base-v1 --rank 16',
    '<%= config.bin %> lowrank ./ft-model --base base-v1 --energy 0.9 --others drop --branch ft-lr',
  ];

  static override args = {
    ft: Args.string({ description: 'the fine-tuned model: revision or path', required: true }),
  };

  static override flags = {
    ...deviceFlags,
    base: Flags.string({ description: 'the model FT was tuned from: revision or path', required: true }),
    rank: Flags.string({ description: 'rank of every factored tensor', exclusive: ['energy'] }),
    energy: Flags.string({ description: 'fraction of ‖Δ‖² each tensor keeps, in (0, 1]', exclusive: ['rank'] }),
    oversample: Flags.string({ description: 'extra test vectors of the randomized SVD (default 10)' }),
    'power-iters': Flags.string({ description: 'power iterations of the randomized SVD (default 2)' }),
    seed: Flags.string({ description: 'seed of the test vectors (default 0)' }),
    others: Flags.string({
      description: 'float tensors that are not 2-D',
      options: ['dense', 'drop'],
      default: 'dense',
    }),
    message: Flags.string({ char: 'm', description: 'commit message' }),
    branch: Flags.string({ description: 'branch to commit on (default: a new branch lowrank/<FT>)' }),
  };

  async run(): Promise<LowRankResult> {
    const { args, flags } = await this.parse(LowRank);
    const device = await useDevice(flags.device);
    const { computeLowRank, planLowRank, WgitError } = await import('@wgit/core');
    const params = {
      rank: integerFlag(flags.rank, 'rank', { min: 1 }) ?? null,
      energy: decimalFlag(flags.energy, 'energy') ?? null,
      oversample: integerFlag(flags.oversample, 'oversample', { min: 0 }),
      powerIters: integerFlag(flags['power-iters'], 'power-iters', { min: 0 }),
      seed: integerFlag(flags.seed, 'seed', { min: 0 }),
      others: flags.others,
    };
    if (params.rank === null && params.energy === null)
      throw new WgitError('E_USAGE', 'give --rank R or --energy E', { flag: 'rank' });
    const { value, models, result, parents } = await runMethodCommit({
      device,
      repo: flags.repo,
      models: [args.ft, flags.base],
      kind: 'lowrank',
      branch: flags.branch,
      branchName: ([ft]) => branchPiece(ft),
      object: ([ft, base]) => planLowRank(base.source, ft.source, params),
      deltaBase: ([ft]) => ft,
      compute: async ([ft, base], outDir, _scratch, sink) => {
        const { header, report } = await computeLowRank(base.source, ft.source, params, {
          sink,
          outDir,
          onProgress: (e) => this.progress(`lowrank ${e.phase} ${e.done}/${e.total}`),
        });
        const p = (header.meta as { params: Record<string, unknown> }).params;
        return {
          value: report,
          message: flags.message ?? `low-rank basis of ${args.ft} − ${flags.base}`,
          parents: [ft, base],
          recipe: {
            kind: 'low-rank',
            ft: recipeRef(ft),
            base: recipeRef(base),
            ...p,
            error: report.error,
            tensors: Object.fromEntries(report.tensors.map((t) => [t.name, { rank: t.rank, error: t.error }])),
            dense: report.dense,
            dropped: report.dropped,
          },
        };
      },
      progress: (m) => this.progress(m),
      progressDone: () => this.progressDone(),
    });
    const [ft, base] = models;
    const out: LowRankResult = {
      commit: result.commit,
      branch: result.branch,
      parents,
      ft: ft.commit ?? (ft.path as string),
      base: base.commit ?? (base.path as string),
      ...value,
      rawBytes: result.rawBytes,
      storedBytes: result.storedBytes,
    };
    if (!this.jsonEnabled()) this.print(out, args.ft, flags.base);
    return out;
  }

  private print(r: LowRankResult, ft: string, base: string): void {
    const ranks = r.tensors.map((t) => t.rank);
    const span = ranks.length
      ? `rank ${Math.min(...ranks)}${Math.max(...ranks) > Math.min(...ranks) ? `–${Math.max(...ranks)}` : ''}`
      : 'no';
    this.log(
      `[${printable(r.branch)} ${r.commit.slice(0, 12)}] low-rank basis of ${printable(ft)} − ${printable(base)}: ` +
        `${r.tensors.length} tensors factored (${span}), relative error ${r.error.toExponential(3)}; ${formatBytes(r.storedBytes)} stored`,
    );
    const worst = [...r.tensors].sort((a, b) => b.error - a.error).slice(0, 5);
    for (const t of worst)
      this.log(`  ${printable(t.name)} [${t.shape.join('×')}] rank ${t.rank}: error ${t.error.toExponential(3)}`);
    const list = (label: string, names: string[]) => {
      if (names.length)
        this.log(
          `${label} (${names.length}): ${names.slice(0, 8).map(printable).join(', ')}${names.length > 8 ? ', …' : ''}`,
        );
    };
    list('kept dense', r.dense);
    list('dropped', r.dropped);
    list('kept whole (new or not float)', r.replaced);
    list('removed', r.removed);
  }
}
