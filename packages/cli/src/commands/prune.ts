import { Args, Flags } from '@oclif/core';
import type { PruneTensorReport } from '@wgit/core';
import { WgitCommand } from '../base.js';
import { deviceFlags, useDevice } from '../device-flag.js';
import { printable } from '../format.js';
import { branchPiece, recipeRef, runMethodCommit } from '../method-commit.js';
import { decimalFlag } from '../numbers.js';

export interface PruneResult {
  commit: string;
  branch: string;
  parents: string[];
  model: string;
  sparsity: number;
  structured: { n: number; m: number } | null;
  /** Over the pruned tensors: entries, and entries that are 0 afterwards. */
  elements: number;
  zeros: number;
  tensors: PruneTensorReport[];
  rawBytes: number;
  storedBytes: number;
  warnings: string[];
}

/** `N:M` → {n, m}; E_USAGE otherwise. */
async function parseNM(v: string): Promise<{ n: number; m: number }> {
  const { WgitError } = await import('@wgit/core');
  const hit = /^(\d{1,4}):(\d{1,4})$/.exec(v);
  if (!hit)
    throw new WgitError('E_USAGE', `--structured takes N:M (e.g. 2:4), got ${JSON.stringify(v)}`, {
      flag: 'structured',
    });
  return { n: Number(hit[1]), m: Number(hit[2]) };
}

export default class Prune extends WgitCommand {
  static override summary = "Prune a model's layer weights by magnitude, committed with its recipe";
  static override description = `Per 2-D float tensor of the layers (names with layers.N., h.N., blocks.N.):
--sparsity S sets exactly round(S·N) entries to 0, those with the smallest |w|
(equal magnitudes: the later index goes first); --structured N:M keeps the N
largest of every M consecutive entries of a row (2:4 is 50%). Embeddings, heads,
norms and biases are kept as they are, and every kept entry keeps its bits.
Committed with REV as parent; without --branch on a new branch prune/<REV>.`;
  static override args = {
    model: Args.string({ description: 'the model (revision or path)', required: true }),
  };
  static override examples = [
    '<%= config.bin %> prune ft-a --sparsity 0.5',
    '<%= config.bin %> prune ft-a --structured 2:4 --branch ft-a-24',
  ];
  static override flags = {
    ...deviceFlags,
    sparsity: Flags.string({ description: 'fraction of each pruned tensor set to 0 (0 ≤ S ≤ 1)' }),
    structured: Flags.string({ description: 'N:M structured sparsity: keep N of every M entries along a row' }),
    message: Flags.string({ char: 'm', description: 'commit message' }),
    branch: Flags.string({ description: 'branch to commit on (default: a new branch prune/<REV>)' }),
  };

  async run(): Promise<PruneResult> {
    const { args, flags } = await this.parse(Prune);
    const device = await useDevice(flags.device);
    const { pruneModel, WgitError } = await import('@wgit/core');
    if (flags.sparsity === undefined && flags.structured === undefined)
      throw new WgitError('E_USAGE', 'give --sparsity S or --structured N:M', { flag: 'sparsity' });
    const sparsity = flags.sparsity === undefined ? undefined : decimalFlag(flags.sparsity, 'sparsity');
    const structured = flags.structured === undefined ? undefined : await parseNM(flags.structured);
    const {
      value: report,
      models,
      result,
      parents,
    } = await runMethodCommit({
      device,
      repo: flags.repo,
      models: [args.model],
      kind: 'prune',
      branch: flags.branch,
      branchName: ([m]) => branchPiece(m),
      compute: async ([m], outDir, _scratch, sink) => {
        const report = await pruneModel({
          model: m.source,
          sparsity,
          structured,
          outDir,
          sink,
          onProgress: (e) => this.progress(`${e.phase} ${e.done}/${e.total}`),
        });
        const p = report.prune;
        const how = p.structured ? `${p.structured.n}:${p.structured.m}` : `sparsity ${p.sparsity}`;
        return {
          value: report,
          message: flags.message ?? `prune ${args.model} (${how})`,
          parents: [m],
          recipe: {
            method: 'prune',
            model: recipeRef(m),
            sparsity: p.sparsity,
            structured: p.structured,
            elements: p.elements,
            zeros: p.zeros,
            tensors: p.tensors,
          },
        };
      },
      progress: (m) => this.progress(m),
      progressDone: () => this.progressDone(),
    });
    const [m] = models;
    const p = report.prune;
    const out: PruneResult = {
      commit: result.commit,
      branch: result.branch,
      parents,
      model: m.commit ?? (m.path as string),
      sparsity: p.sparsity,
      structured: p.structured,
      elements: p.elements,
      zeros: p.zeros,
      tensors: p.tensors,
      rawBytes: result.rawBytes,
      storedBytes: result.storedBytes,
      warnings: report.warnings,
    };
    if (!this.jsonEnabled()) {
      const share = p.elements > 0 ? ((100 * p.zeros) / p.elements).toFixed(2) : '0';
      this.log(
        `pruned ${p.tensors.length} tensor(s) of ${printable(args.model)}: ${p.zeros} of ${p.elements} entries are 0 (${share}%) → ${result.commit.slice(0, 12)} on ${printable(result.branch)}`,
      );
      for (const w of report.warnings) this.warn(w);
    }
    return out;
  }
}
