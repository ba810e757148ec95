import { Args, Flags } from '@oclif/core';
import type { LogEntry } from '@wgit/store';
import { WgitCommand } from '../base.js';
import { escapeControls, printable, recipeLines } from '../format.js';
import { graphRows, topoOrder } from '../graph.js';

/** What `log --stat` adds to a commit: how it differs from its first parent. */
export interface LogStat {
  against: string;
  tensors: number;
  /** Tensors changed, added, removed, or changed in shape or dtype. */
  changed: number;
  /** ‖Δ‖/‖parent‖ over the tensors that were read (see wgit diff). */
  relChange: number | null;
}

export default class Log extends WgitCommand {
  static override description = 'Show the history of a revision (default: HEAD), newest first.';
  static override examples = [
    '<%= config.bin %> log',
    '<%= config.bin %> log instruct -n 5',
    '<%= config.bin %> log --stat',
    '<%= config.bin %> log --oneline --graph --all',
  ];
  static override args = { rev: Args.string({ description: 'branch, tag or commit (default HEAD)' }) };
  static override flags = {
    'max-count': Flags.string({ char: 'n', description: 'show at most N commits' }),
    stat: Flags.boolean({
      description: 'per commit, the tensors changed against its first parent and the relative change (wgit diff)',
      default: false,
    }),
    oneline: Flags.boolean({ description: 'one line per commit: short id, branches and tags, subject' }),
    graph: Flags.boolean({ description: 'draw the lines of descent beside one-line entries (implies --oneline)' }),
    all: Flags.boolean({ description: 'every branch and tag, not only REV', exclusive: ['rev'] }),
  };

  async run(): Promise<{ commits: (LogEntry & { stat?: LogStat })[] }> {
    const { args, flags } = await this.parse(Log);
    const { integerFlag } = await import('../numbers.js');
    const limit = integerFlag(flags['max-count'], 'max-count', { min: 1 });
    const { Repository } = await import('@wgit/store');
    const repo = await Repository.open(flags.repo);
    let commits: (LogEntry & { stat?: LogStat })[];
    if (flags.all) {
      const tips = [...(await repo.branches()), ...(await repo.tags())].map((r) => r.commit);
      const seen = new Map<string, LogEntry>();
      for (const tip of new Set(tips)) for (const c of await repo.log(tip)) seen.set(c.commit, c);
      commits = [...seen.values()].sort((a, b) => b.timestamp - a.timestamp);
      if (limit !== undefined) commits = commits.slice(0, limit);
    } else commits = await repo.log(args.rev, { limit });
    if (flags.graph) commits = topoOrder(commits);
    if (flags.stat) {
      const { diffModels } = await import('@wgit/core');
      // Newest first: a commit's parent is usually the next entry, so the
      // parent opened for one stat is kept for the next instead of opened again.
      let kept: { commit: string; model: Awaited<ReturnType<typeof repo.openModel>> } | null = null;
      const open = async (commit: string) => {
        if (kept?.commit === commit) {
          const { model } = kept;
          kept = null;
          return model;
        }
        return repo.openModel(commit);
      };
      try {
        for (const [i, c] of commits.entries()) {
          if (c.parents.length === 0) continue;
          this.progress(`stat ${i + 1}/${commits.length}`);
          const b = await open(c.commit);
          let a: typeof b | null = null;
          try {
            a = await open(c.parents[0]);
            const t = (await diffModels(a, b)).totals;
            c.stat = {
              against: c.parents[0],
              tensors: t.tensors + t.mismatched + t.onlyB,
              changed: t.changed + t.mismatched + t.onlyA + t.onlyB,
              relChange: t.relChange,
            };
          } finally {
            await b.close();
            if (a) {
              await kept?.model.close();
              kept = { commit: c.parents[0], model: a };
            }
          }
        }
      } finally {
        await kept?.model.close();
      }
      this.progressDone();
    }
    if (!this.jsonEnabled() && (flags.oneline || flags.graph)) {
      const decor = new Map<string, string[]>();
      const head = await repo.currentBranch();
      for (const b of await repo.branches())
        decor.set(b.commit, [...(decor.get(b.commit) ?? []), b.name === head ? `HEAD -> ${b.name}` : b.name]);
      for (const t of await repo.tags()) decor.set(t.commit, [...(decor.get(t.commit) ?? []), `tag: ${t.name}`]);
      const rows = flags.graph ? graphRows(commits) : null;
      commits.forEach((c, i) => {
        const names = decor.get(c.commit);
        const subject = escapeControls(c.message.split('\n')[0]);
        const stat = c.stat
          ? ` [${c.stat.changed}/${c.stat.tensors} tensors, ${c.stat.relChange === null ? '-' : c.stat.relChange.toExponential(2)}]`
          : '';
        const line = `${c.commit.slice(0, 12)}${names ? ` (${names.map(printable).join(', ')})` : ''} ${subject}${stat}`;
        if (!rows) {
          this.log(line);
          return;
        }
        for (const b of rows[i].before) this.log(b);
        this.log(`${rows[i].prefix} ${line}`);
        for (const a of rows[i].after) this.log(a);
      });
    } else if (!this.jsonEnabled()) {
      for (const c of commits) {
        this.log(
          `commit ${c.commit}${c.parents.length > 1 ? `\nMerge: ${c.parents.map((p) => p.slice(0, 12)).join(' ')}` : ''}`,
        );
        this.log(`Author: ${escapeControls(c.author)}`);
        this.log(`Date:   ${new Date(c.timestamp * 1000).toISOString()}`);
        if (c.recipe) this.log(['Recipe:', ...recipeLines(c.recipe)].join('\n'));
        this.log(`\n${escapeControls(c.message, true).replace(/^/gm, '    ')}\n`);
        if (c.stat) {
          const r = c.stat.relChange;
          this.log(
            ` ${c.stat.changed} of ${c.stat.tensors} tensors changed, relative change ${r === null ? '-' : r === 0 ? '0' : r.toExponential(2)}\n`,
          );
        }
      }
    }
    return { commits };
  }
}
