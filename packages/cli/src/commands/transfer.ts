import { Args, Flags } from '@oclif/core';
import { WgitCommand } from '../base.js';
import { deviceFlags, useDevice } from '../device-flag.js';
import { printable } from '../format.js';
import { branchPiece, recipeRef, runMethodCommit } from '../method-commit.js';
import { decimalFlag } from '../numbers.js';

export interface TransferResult {
  commit: string;
  branch: string;
  parents: string[];
  ft: string;
  from: string;
  onto: string;
  scale: number;
  /** cos(θ_onto − θ_from, Δ) and ‖θ_onto − θ_from‖ / ‖θ_from‖ over the whole model. */
  closeness: import('@wgit/core').TransferReport['closeness'];
  tensors: number;
  rawBytes: number;
  storedBytes: number;
  grown: { name: string; baseRows: number; rows: number }[];
  missing: { copied: string[]; dropped: string[] };
  warnings: string[];
  /** Each side file of the result and the model (as typed) it was taken from. */
  sideFiles: Record<string, string>;
}

/** The closeness figures in words: what each number is, and what the cosine does not say. */
export function closenessLines(c: TransferResult['closeness']): string[] {
  const f = (x: number) => x.toPrecision(3);
  return [
    `new release moved  ‖onto − from‖/‖from‖ = ${f(c.relDistance)}`,
    `fine-tune moved    ‖ft − from‖/‖from‖   = ${f(c.updateRel)}`,
    c.updateRel > 0
      ? `the release moved ${f(c.shiftToUpdate)}× as far as the fine-tune did; the larger this is, the less the update can be expected to fit the new release as it is`
      : 'the fine-tune equals its base: there is no update to transfer',
    `cosine(onto − from, ft − from) = ${c.cosine.toFixed(4)}: near 0 means the two changes are close to orthogonal, as independent changes are; it does not say whether transfer will work`,
  ];
}

export default class Transfer extends WgitCommand {
  static override summary = 'Move a fine-tune onto a new base release: NEW_BASE + s·(FT − OLD_BASE)';
  static override description = `FT, OLD_BASE and NEW_BASE are revisions or paths of model files/folders.
The result is committed with parents NEW_BASE, FT and OLD_BASE (those that are
commits) and the recipe in the commit: the commit records the diff vector
FT − OLD_BASE it used, so \`wgit apply <commit> --onto NEXT_BASE\` re-applies it
to the next base release. Without --branch it goes on a new branch
transfer/<FT>. Prints how close the two bases are: when they are far apart
(low cosine, large relative distance) the transferred update helps less.`;
  static override args = {
    ft: Args.string({ description: 'the fine-tune of OLD_BASE', required: true }),
  };
  static override examples = [
    '<%= config.bin %> transfer ft-invert --from base-v1 --onto base-v2',
    '<%= config.bin %> transfer ./my-ft --from v1 --onto v2 --scale 0.8 --branch main -m "instruct on v2"',
  ];
  static override flags = {
    ...deviceFlags,
    from: Flags.string({ description: 'the base FT was fine-tuned from', required: true }),
    onto: Flags.string({ description: 'the new base release', required: true }),
    scale: Flags.string({ description: 'scale s of the update (default 1)' }),
    'side-files-from': Flags.string({
      description:
        "take every side file from this model (revision or path). Default: FT's tokenizer, chat template and generation files, the rest (config.json …) from NEW_BASE",
    }),
    'copy-missing': Flags.boolean({
      description: 'copy tensors present in only one version from NEW_BASE instead of failing',
    }),
    message: Flags.string({ char: 'm', description: 'commit message' }),
    branch: Flags.string({ description: 'branch to commit on (default: a new branch transfer/<FT>)' }),
  };

  async run(): Promise<TransferResult> {
    const { args, flags } = await this.parse(Transfer);
    const device = await useDevice(flags.device);
    let sideFiles: Record<string, string> = {};
    const scale = decimalFlag(flags.scale, 'scale') ?? 1;
    const { transferModel } = await import('@wgit/core');
    const {
      value: report,
      models,
      result,
      parents,
    } = await runMethodCommit({
      device,
      repo: flags.repo,
      models: [args.ft, flags.from, flags.onto, ...(flags['side-files-from'] ? [flags['side-files-from']] : [])],
      kind: 'transfer',
      branch: flags.branch,
      branchName: ([ft]) => branchPiece(ft),
      deltaBase: ([, , onto]) => onto,
      compute: async ([ft, from, onto, sf], outDir, _scratch, sink) => {
        const { mixSideFiles, transferSideFiles } = await import('@wgit/core');
        const plan = sf ? mixSideFiles([sf.source], () => []) : transferSideFiles(onto.source, ft.source);
        const who = sf ? [sf.spec] : [onto.spec, ft.spec];
        sideFiles = Object.fromEntries([...plan.from].map(([rel, i]) => [rel, who[i]]));
        const report = await transferModel({
          sideFiles: plan.source,
          ft: ft.source,
          from: from.source,
          onto: onto.source,
          scale,
          copyMissing: flags['copy-missing'],
          outDir,
          sink,
          onProgress: (e) => this.progress(`${e.phase} ${e.done}/${e.total}`),
        });
        return {
          value: report,
          message: flags.message ?? `transfer ${args.ft} from ${flags.from} onto ${flags.onto}`,
          parents: [onto, ft, from],
          recipe: {
            method: 'transfer',
            ft: recipeRef(ft),
            from: recipeRef(from),
            onto: recipeRef(onto),
            scale,
            copyMissing: flags['copy-missing'],
            closeness: report.closeness,
            sideFiles,
          },
        };
      },
      progress: (m) => this.progress(m),
      progressDone: () => this.progressDone(),
    });
    const [ft, from, onto] = models;
    const out: TransferResult = {
      commit: result.commit,
      branch: result.branch,
      parents,
      ft: ft.commit ?? (ft.path as string),
      from: from.commit ?? (from.path as string),
      onto: onto.commit ?? (onto.path as string),
      scale,
      closeness: report.closeness,
      tensors: result.tensors,
      rawBytes: result.rawBytes,
      storedBytes: result.storedBytes,
      grown: report.grown,
      missing: report.missing,
      warnings: report.warnings,
      sideFiles,
    };
    if (!this.jsonEnabled()) {
      const c = report.closeness;
      for (const line of closenessLines(c)) this.log(line);
      const bySource = new Map<string, string[]>();
      for (const [rel, who] of Object.entries(sideFiles)) bySource.set(who, [...(bySource.get(who) ?? []), rel]);
      if (bySource.size > 0)
        this.log(
          `side files: ${[...bySource].map(([who, files]) => `${files.map(printable).join(', ')} from ${printable(who)}`).join('; ')}`,
        );
      this.log(
        `transferred ${printable(args.ft)} onto ${printable(flags.onto)} → ${result.commit.slice(0, 12)} on ${printable(result.branch)}`,
      );
      for (const w of report.warnings) this.warn(w);
    }
    return out;
  }
}
