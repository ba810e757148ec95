import { Args, Flags } from '@oclif/core';
import { WgitCommand } from '../base.js';
import { printable } from '../format.js';

export default class Switch extends WgitCommand {
  static override description = `Make BRANCH the current branch (where commit adds and log starts).

With -c, create it first at START (default HEAD). There is no working folder to update: models are
written with wgit checkout.`;
  static override examples = ['<%= config.bin %> switch instruct', '<%= config.bin %> switch -c instruct-v2 base-v2'];
  static override args = {
    branch: Args.string({ description: 'the branch', required: true }),
    start: Args.string({ description: 'with -c: where the new branch starts (default HEAD)' }),
  };
  static override flags = {
    create: Flags.boolean({ char: 'c', description: 'create the branch (E_BRANCH_EXISTS when it exists)' }),
  };

  async run(): Promise<{ name: string; commit: string | null; created: boolean }> {
    const { args, flags } = await this.parse(Switch);
    const { Repository } = await import('@wgit/store');
    const repo = await Repository.open(flags.repo);
    const r = await repo.switchBranch(args.branch, { create: flags.create, start: args.start });
    if (!this.jsonEnabled())
      this.log(
        `Switched to ${r.created ? 'a new ' : ''}branch ${printable(r.name)}${r.commit ? ` (${r.commit.slice(0, 12)})` : ' (no commits yet)'}`,
      );
    return r;
  }
}
