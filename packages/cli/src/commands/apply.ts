import { Args, Flags } from '@oclif/core';
import { WgitCommand } from '../base.js';
import { deviceFlags, useDevice } from '../device-flag.js';
import { formatBytes, printable } from '../format.js';
import { branchPiece, recipeRef, runMethodCommit } from '../method-commit.js';
import { decimalFlag } from '../numbers.js';

export interface ApplyResult {
  commit: string;
  branch: string;
  parents: string[];
  delta: string;
  onto: string;
  scale: number;
  /** Tensors changed by s·Δ, replaced by the diff vector's own, removed, and left as they were. */
  tensors: { changed: number; replaced: number; removed: number; kept: number };
  rawBytes: number;
  storedBytes: number;
}

export default class Apply extends WgitCommand {
  static override description = `Apply a saved diff vector to a model: BASE + S·Δ, committed.

DELTA is an object that changes a model: a diff vector saved with \`wgit diff A B --save NAME\`, a
sparse delta (\`wgit sparsify\`), a low-rank basis (\`wgit lowrank\`, \`wgit import-lora\`) or a
robust weight signature; or a transfer commit, which stands for its FT − FROM scaled as the
transfer was (S multiplies that), so a fine-tune moved onto one base release can be moved onto
the next. Each float tensor it changes is
added (scaled by S, in f32, rounded once to BASE's dtype); tensors B replaced or added come from
the diff vector, tensors B removed are left out, the rest of BASE stays as it is. With S = 1 onto A
it gives B back. The commit's parents are BASE and DELTA; BASE's side files are kept.`;

  static override examples = [
    '<%= config.bin %> apply instruct-delta --onto base-v2',
    '<%= config.bin %> apply instruct-delta --onto base-v2 --scale 0.5 --branch instruct-v2-half',
  ];

  static override args = {
    delta: Args.string({
      description: 'the object: a diff vector, sparse delta, low-rank basis or signature revision',
      required: true,
    }),
  };

  static override flags = {
    ...deviceFlags,
    onto: Flags.string({ description: 'the model to apply it to: revision or path', required: true }),
    scale: Flags.string({ description: 'S in BASE + S·Δ (default 1)' }),
    message: Flags.string({ char: 'm', description: 'commit message' }),
    branch: Flags.string({ description: 'branch to commit on (default: a new branch apply/<DELTA>)' }),
  };

  async run(): Promise<ApplyResult> {
    const { args, flags } = await this.parse(Apply);
    const device = await useDevice(flags.device);
    const scale = decimalFlag(flags.scale, 'scale') ?? 1;
    const { applyDelta } = await import('@wgit/core');
    const { Repository } = await import('@wgit/store');
    const { openDelta } = await import('../delta-arg.js');
    const repo = await Repository.open(flags.repo);
    let applied = scale;
    const { value, models, result, parents } = await runMethodCommit({
      device,
      repo: flags.repo,
      models: [args.delta, flags.onto],
      kind: 'apply',
      branch: flags.branch,
      branchName: ([delta]) => branchPiece(delta),
      deltaBase: ([, onto]) => onto,
      compute: async ([delta, onto], outDir, _scratch, sink) => {
        const opened = await openDelta(repo, args.delta, delta.commit, delta.source);
        applied = scale * opened.scale;
        let counts: Awaited<ReturnType<typeof applyDelta>>;
        try {
          counts = await applyDelta(opened.view, onto.source, applied, {
            sink,
            outDir,
            onProgress: (e) => this.progress(`apply ${e.done}/${e.total}`),
          });
        } finally {
          await opened.close();
        }
        return {
          value: counts,
          message: flags.message ?? `apply ${args.delta} onto ${flags.onto}${scale === 1 ? '' : ` × ${scale}`}`,
          parents: [onto, delta],
          recipe: { method: 'apply', delta: recipeRef(delta), onto: recipeRef(onto), scale: applied },
        };
      },
      progress: (m) => this.progress(m),
      progressDone: () => this.progressDone(),
    });
    const [delta, onto] = models;
    const out: ApplyResult = {
      commit: result.commit,
      branch: result.branch,
      parents,
      delta: delta.commit as string,
      onto: onto.commit ?? (onto.path as string),
      scale: applied,
      tensors: value,
      rawBytes: result.rawBytes,
      storedBytes: result.storedBytes,
    };
    if (!this.jsonEnabled()) {
      const t = value;
      this.log(
        `[${printable(result.branch)} ${result.commit.slice(0, 12)}] ${printable(flags.onto)} + ${applied}·${printable(args.delta)}: ` +
          `${t.changed} tensors changed, ${t.replaced} replaced, ${t.removed} removed, ${t.kept} kept; ${formatBytes(result.storedBytes)} stored`,
      );
    }
    return out;
  }
}
