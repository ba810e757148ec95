import { Args, Flags } from '@oclif/core';
import type { LogEntry } from '@wgit/store';
import { WgitCommand } from '../base.js';

export default class Log extends WgitCommand {
  static override description = 'Show the history of a revision (default: HEAD), newest first.';
  static override examples = ['<%= config.bin %> log', '<%= config.bin %> log instruct -n 5'];
  static override args = { rev: Args.string({ description: 'branch, tag or commit' }) };
  static override flags = { 'max-count': Flags.integer({ char: 'n', description: 'show at most N commits', min: 1 }) };

  async run(): Promise<{ commits: LogEntry[] }> {
    const { args, flags } = await this.parse(Log);
    const { Repository } = await import('@wgit/store');
    const repo = await Repository.open(flags.repo);
    const commits = await repo.log(args.rev, { limit: flags['max-count'] });
    if (!this.jsonEnabled()) {
      for (const c of commits) {
        this.log(
          `commit ${c.commit}${c.parents.length > 1 ? `\nMerge: ${c.parents.map((p) => p.slice(0, 12)).join(' ')}` : ''}`,
        );
        this.log(`Author: ${c.author}`);
        this.log(`Date:   ${new Date(c.timestamp * 1000).toISOString()}`);
        if (c.recipe) this.log(`Recipe: ${JSON.stringify(c.recipe)}`);
        this.log(`\n${c.message.replace(/^/gm, '    ')}\n`);
      }
    }
    return { commits };
  }
}
