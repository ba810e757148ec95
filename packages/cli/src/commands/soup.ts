import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Args, Flags } from '@oclif/core';
import { WgitCommand } from '../base.js';
import { deviceFlags, useDevice } from '../device-flag.js';
import { runEval, splitCommand } from '../eval-command.js';
import { printable } from '../format.js';
import { branchPiece, recipeRef, runMethodCommit } from '../method-commit.js';

export interface SoupResult {
  commit: string;
  branch: string;
  parents: string[];
  greedy: boolean;
  /** Each candidate with its own score (null without --eval). */
  candidates: { rev: string; score: number | null }[];
  /** The soup's members, as given on the command line, in the order they joined. */
  members: string[];
  score: number | null;
  trials: { members: string[]; score: number; accepted: boolean }[];
  rawBytes: number;
  storedBytes: number;
}

export default class Soup extends WgitCommand {
  static override summary = 'Average fine-tunes of one base into a model soup, greedily by an evaluation';
  static override description = `The soup is the uniform average (linear merge) of its members.
--greedy (Wortsman et al. 2022): each candidate is scored alone with --eval, they are
sorted best first, and each is added only if the soup's score does not drop.
--eval "CMD {model}" runs CMD without a shell, {model} replaced by a folder holding the
model to score; it must exit 0 and print one number, higher is better. Without --greedy
every candidate goes in. Committed with the members as parents and every score in the
recipe; without --branch on a new branch soup/<first member>.`;
  static override strict = false;
  static override args = {
    candidates: Args.string({ description: 'the candidates (revisions or paths), two or more', required: true }),
  };
  static override examples = ['<%= config.bin %> soup ft-1 ft-2 ft-3 --greedy --eval "python eval.py --model {model}"'];
  static override flags = {
    ...deviceFlags,
    greedy: Flags.boolean({ description: 'add candidates best first, each only if the score does not drop' }),
    eval: Flags.string({ description: 'evaluation command, {model} is the model folder; prints one number' }),
    message: Flags.string({ char: 'm', description: 'commit message' }),
    branch: Flags.string({ description: 'branch to commit on (default: a new branch soup/<first member>)' }),
  };

  async run(): Promise<SoupResult> {
    const { argv, flags } = await this.parse(Soup);
    const device = await useDevice(flags.device);
    const { greedySoup, mergeModels, WgitError } = await import('@wgit/core');
    const specs = argv as string[];
    if (specs.length < 2) throw new WgitError('E_USAGE', 'give two or more candidates', { arg: 'candidates' });
    if (flags.greedy && flags.eval === undefined)
      throw new WgitError('E_USAGE', '--greedy needs --eval', { flag: 'eval' });
    const cmd = flags.eval === undefined ? null : splitCommand(flags.eval);
    let serial = 0;
    const { value, result, parents } = await runMethodCommit({
      device,
      repo: flags.repo,
      models: specs,
      kind: 'soup',
      branch: flags.branch,
      branchName: (ms) => branchPiece(ms[0]),
      compute: async (models, outDir, scratch, sink) => {
        const average = (members: number[], dir: string | undefined, to?: typeof sink) =>
          mergeModels({ inputs: members.map((i) => models[i].source), method: 'linear', outDir: dir, sink: to });
        const score = async (members: number[]) => {
          const dir = join(scratch, `trial-${serial++}`);
          this.progress(`scoring ${members.map((i) => specs[i]).join(' + ')}`);
          try {
            await average(members, dir);
            return runEval(cmd as string[], dir);
          } finally {
            // one trial model on disk at a time
            await rm(dir, { recursive: true, force: true });
          }
        };
        const all = specs.map((_, i) => i);
        const g = flags.greedy ? await greedySoup(specs.length, score) : null;
        const members = g ? g.members : all;
        const own = g ? g.scores : cmd ? await Promise.all(all.map(async (i) => score([i]))) : all.map(() => null);
        const soupScore = g ? g.score : cmd ? await score(all) : null;
        const report = await average(members, outDir, sink);
        const names = (ms: number[]) => ms.map((i) => specs[i]);
        const trials = (g?.trials ?? []).map((t) => ({
          members: names(t.members),
          score: t.score,
          accepted: t.accepted,
        }));
        return {
          value: { own, members: names(members), score: soupScore, trials, report },
          message: flags.message ?? `${g ? 'greedy ' : ''}soup of ${names(members).join(', ')}`,
          parents: members.map((i) => models[i]),
          recipe: {
            method: 'soup',
            greedy: !!g,
            eval: flags.eval ?? null,
            candidates: models.map((m, i) => ({ ...recipeRef(m), score: own[i] })),
            order: g ? names(g.order) : null,
            trials,
            members: names(members),
            score: soupScore,
            merge: { method: 'linear', params: report.params },
          },
        };
      },
      progress: (m) => this.progress(m),
      progressDone: () => this.progressDone(),
    });
    const out: SoupResult = {
      commit: result.commit,
      branch: result.branch,
      parents,
      greedy: !!flags.greedy,
      candidates: specs.map((rev, i) => ({ rev, score: value.own[i] })),
      members: value.members,
      score: value.score,
      trials: value.trials,
      rawBytes: result.rawBytes,
      storedBytes: result.storedBytes,
    };
    if (!this.jsonEnabled()) {
      for (const c of out.candidates) this.log(`  ${printable(c.rev)}: ${c.score ?? '-'}`);
      for (const t of out.trials)
        this.log(`  ${t.accepted ? '+' : '-'} ${t.members.map(printable).join(' + ')}: ${t.score}`);
      this.log(
        `soup of ${out.members.map(printable).join(', ')}${out.score === null ? '' : ` (score ${out.score})`} → ${result.commit.slice(0, 12)} on ${printable(result.branch)}`,
      );
    }
    return out;
  }
}
