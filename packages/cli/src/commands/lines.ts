import { Args, Flags } from '@oclif/core';
import { WgitCommand } from '../base.js';
import { deviceFlags, useDevice } from '../device-flag.js';
import { printable } from '../format.js';
import { branchPiece, recipeRef, runMethodCommit } from '../method-commit.js';
import { decimalFlag } from '../numbers.js';

export interface LinesResult {
  commit: string;
  branch: string;
  parents: string[];
  model: string;
  base: string;
  alpha: number;
  beta: number;
  /** Blocks found from the tensor names (layers.N., h.N., blocks.N.). */
  blocks: number;
  tensors: number;
  rawBytes: number;
  storedBytes: number;
  warnings: string[];
}

export default class Lines extends WgitCommand {
  static override summary = "Scale a fine-tune's update by depth (LiNeS): shallow blocks stay near the base";
  static override description = `Result θ_base + λ(ℓ)·(θ_ft − θ_base) with λ(ℓ) = α + β·ℓ/(L−1) for block ℓ of L
(found from names such as layers.12.), and α for tensors outside the blocks.
β defaults to 1 − α, so the last block keeps its whole update. Smaller α
forgets less of what the base could do, at some cost on the fine-tune's task.
Committed with parents FT and BASE; without --branch on a new branch lines/<FT>.`;
  static override args = {
    ft: Args.string({ description: 'the fine-tuned model (revision or path)', required: true }),
  };
  static override examples = [
    '<%= config.bin %> lines ft-flip --base base-v1',
    '<%= config.bin %> lines ft-flip --base base-v1 --alpha 0.3 --branch main',
  ];
  static override flags = {
    ...deviceFlags,
    base: Flags.string({ description: 'the base FT was fine-tuned from', required: true }),
    alpha: Flags.string({ description: 'scale of the shallowest block and of non-block tensors (default 0.5)' }),
    beta: Flags.string({ description: 'extra scale reached at the last block (default 1 − α)' }),
    message: Flags.string({ char: 'm', description: 'commit message' }),
    branch: Flags.string({ description: 'branch to commit on (default: a new branch lines/<FT>)' }),
  };

  async run(): Promise<LinesResult> {
    const { args, flags } = await this.parse(Lines);
    const device = await useDevice(flags.device);
    const alpha = decimalFlag(flags.alpha, 'alpha');
    const beta = decimalFlag(flags.beta, 'beta');
    const { linesEdit } = await import('@wgit/core');
    const {
      value: report,
      models,
      result,
      parents,
    } = await runMethodCommit({
      device,
      repo: flags.repo,
      models: [args.ft, flags.base],
      kind: 'lines',
      branch: flags.branch,
      branchName: ([ft]) => branchPiece(ft),
      compute: async ([ft, base], outDir, _scratch, sink) => {
        const report = await linesEdit({
          model: ft.source,
          base: base.source,
          alpha,
          beta,
          outDir,
          sink,
          onProgress: (e) => this.progress(`${e.phase} ${e.done}/${e.total}`),
        });
        return {
          value: report,
          message:
            flags.message ??
            `LiNeS of ${args.ft} over ${flags.base} (α = ${report.lines.alpha}, β = ${report.lines.beta})`,
          parents: [ft, base],
          recipe: { method: 'lines', ft: recipeRef(ft), base: recipeRef(base), ...report.lines },
        };
      },
      progress: (m) => this.progress(m),
      progressDone: () => this.progressDone(),
    });
    const [ft, base] = models;
    const out: LinesResult = {
      commit: result.commit,
      branch: result.branch,
      parents,
      model: ft.commit ?? (ft.path as string),
      base: base.commit ?? (base.path as string),
      alpha: report.lines.alpha,
      beta: report.lines.beta,
      blocks: report.lines.blocks,
      tensors: result.tensors,
      rawBytes: result.rawBytes,
      storedBytes: result.storedBytes,
      warnings: report.warnings,
    };
    if (!this.jsonEnabled()) {
      this.log(
        `LiNeS α = ${out.alpha}, β = ${out.beta} over ${out.blocks} blocks → ${result.commit.slice(0, 12)} on ${printable(result.branch)}`,
      );
      if (out.blocks === 0) this.warn('no blocks found in the tensor names: every tensor was scaled by α');
      for (const w of report.warnings) this.warn(w);
    }
    return out;
  }
}
