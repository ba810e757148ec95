import { Args, Flags } from '@oclif/core';
import { WgitCommand } from '../base.js';
import { printable } from '../format.js';

type BranchResult =
  | { branches: { name: string; commit: string; current: boolean }[] }
  | { created: { name: string; commit: string } }
  | { deleted: { name: string; commit: string } }
  | { moved: { name: string; commit: string; previous: string | null } };

export default class Branch extends WgitCommand {
  static override description = 'List branches, create one at REV (default HEAD), move one with -f, or delete one.';
  static override examples = [
    '<%= config.bin %> branch',
    '<%= config.bin %> branch experiment HEAD~1',
    '<%= config.bin %> branch -f experiment base-v2',
    '<%= config.bin %> branch experiment --delete',
  ];
  static override args = {
    name: Args.string({ description: 'branch to create or delete' }),
    rev: Args.string({ description: 'where the new branch starts (default HEAD)' }),
  };
  static override flags = {
    delete: Flags.boolean({ char: 'd', description: 'delete the branch' }),
    force: Flags.boolean({
      char: 'f',
      description: 'move the branch to REV even when it exists (not the current branch: use reset)',
      exclusive: ['delete'],
    }),
  };

  async run(): Promise<BranchResult> {
    const { args, flags } = await this.parse(Branch);
    const { Repository } = await import('@wgit/store');
    const repo = await Repository.open(flags.repo);
    const { WgitError } = await import('@wgit/core');
    if (flags.delete) {
      if (!args.name) throw new WgitError('E_USAGE', 'branch --delete needs a branch name');
      const deleted = await repo.deleteBranch(args.name);
      if (!this.jsonEnabled())
        this.log(`Deleted branch ${printable(deleted.name)} (was ${deleted.commit.slice(0, 12)})`);
      return { deleted };
    }
    if (flags.force) {
      if (!args.name) throw new WgitError('E_USAGE', 'branch -f needs a branch name');
      const moved = await repo.forceBranch(args.name, args.rev ?? 'HEAD');
      if (!this.jsonEnabled())
        this.log(
          `Branch ${printable(moved.name)} is at ${moved.commit.slice(0, 12)}${moved.previous ? ` (was ${moved.previous.slice(0, 12)})` : ''}`,
        );
      return { moved };
    }
    if (args.name) {
      const created = await repo.createBranch(args.name, args.rev ?? 'HEAD');
      if (!this.jsonEnabled()) this.log(`Created branch ${printable(created.name)} at ${created.commit.slice(0, 12)}`);
      return { created };
    }
    const branches = await repo.branches();
    if (!this.jsonEnabled())
      for (const b of branches) this.log(`${b.current ? '*' : ' '} ${printable(b.name)} ${b.commit.slice(0, 12)}`);
    return { branches };
  }
}
