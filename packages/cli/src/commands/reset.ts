import { Args, Flags } from '@oclif/core';
import { WgitCommand } from '../base.js';
import { printable } from '../format.js';

export default class Reset extends WgitCommand {
  static override description = `Move the current branch to REV.

The commits it leaves stay in the repository and in the branch's reflog (git --git-dir=.wgit reflog)
until gc's grace period passes. There is no working folder, so --hard does the same as a plain reset
and is accepted for git users.`;
  static override examples = ['<%= config.bin %> reset HEAD~1', '<%= config.bin %> reset --hard base-v2'];
  static override args = { rev: Args.string({ description: 'where the branch goes', required: true }) };
  static override flags = {
    hard: Flags.boolean({ description: 'accepted for git users; the same as a plain reset (no working folder)' }),
  };

  async run(): Promise<{ name: string; commit: string; previous: string | null }> {
    const { args, flags } = await this.parse(Reset);
    const { Repository } = await import('@wgit/store');
    const repo = await Repository.open(flags.repo);
    const r = await repo.reset(args.rev);
    if (!this.jsonEnabled())
      this.log(
        `${printable(r.name)} is now at ${r.commit.slice(0, 12)}${r.previous ? ` (was ${r.previous.slice(0, 12)})` : ''}`,
      );
    return r;
  }
}
