import { Args, Flags } from '@oclif/core';
import type { LogEntry } from '@wgit/store';
import { WgitCommand } from '../base.js';
import { escapeControls, jsonText } from '../format.js';

export default class Log extends WgitCommand {
  static override description = 'Show the history of a revision (default: HEAD), newest first.';
  static override examples = ['<%= config.bin %> log', '<%= config.bin %> log instruct -n 5'];
  static override args = { rev: Args.string({ description: 'branch, tag or commit' }) };
  static override flags = { 'max-count': Flags.string({ char: 'n', description: 'show at most N commits' }) };

  async run(): Promise<{ commits: LogEntry[] }> {
    const { args, flags } = await this.parse(Log);
    const { integerFlag } = await import('../numbers.js');
    const limit = integerFlag(flags['max-count'], 'max-count', { min: 1 });
    const { Repository } = await import('@wgit/store');
    const repo = await Repository.open(flags.repo);
    const commits = await repo.log(args.rev, { limit });
    if (!this.jsonEnabled()) {
      for (const c of commits) {
        this.log(
          `commit ${c.commit}${c.parents.length > 1 ? `\nMerge: ${c.parents.map((p) => p.slice(0, 12)).join(' ')}` : ''}`,
        );
        this.log(`Author: ${escapeControls(c.author)}`);
        this.log(`Date:   ${new Date(c.timestamp * 1000).toISOString()}`);
        if (c.recipe) this.log(`Recipe: ${jsonText(c.recipe, undefined)}`);
        this.log(`\n${escapeControls(c.message, true).replace(/^/gm, '    ')}\n`);
      }
    }
    return { commits };
  }
}
