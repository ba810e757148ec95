import { Args, Flags } from '@oclif/core';
import type { CommitResult } from '@wgit/store';
import { WgitCommand } from '../base.js';
import { printable } from '../format.js';

function mib(n: number): string {
  return `${(n / 1048576).toFixed(n < 10485760 ? 2 : 1)} MiB`;
}

export default class Commit extends WgitCommand {
  static override description = 'Record a model (a .safetensors file or a model folder) as a new commit.';
  static override examples = [
    '<%= config.bin %> commit base/ -m "base model"',
    '<%= config.bin %> commit ft.safetensors -m "instruct fine-tune" --branch instruct --parent base-v1',
  ];
  static override args = {
    path: Args.string({ description: 'a .safetensors file or a model folder', required: true }),
  };
  static override flags = {
    message: Flags.string({ char: 'm', description: 'commit message' }),
    branch: Flags.string({
      char: 'b',
      description:
        'branch to commit to (default: the current branch); created when missing, starting from --parent or else HEAD',
    }),
    parent: Flags.string({
      description:
        'the commit this one follows (repeat for several; default: the branch head, or HEAD for a new branch)',
      multiple: true,
    }),
    'allow-empty': Flags.boolean({
      description: 'commit even when the model is exactly what the branch head holds',
      default: false,
    }),
  };

  async run(): Promise<CommitResult & { parents: string[] }> {
    const { args, flags } = await this.parse(Commit);
    const { Repository } = await import('@wgit/store');
    const repo = await Repository.open(flags.repo);
    const branch = flags.branch ?? (await repo.currentBranch());
    const isNew = (await repo.refs.readRef(`refs/heads/${branch}`)) === null;
    const r = await repo.commit({
      path: args.path,
      message: flags.message,
      branch,
      parents: flags.parent,
      skipUnchanged: !flags['allow-empty'],
      onProgress: (e) => this.progress(`${e.phase}: ${mib(e.done)} / ${mib(e.total)}`),
    });
    this.progressDone();
    const { parents } = await repo.readCommit(r.commit);
    if (!this.jsonEnabled() && process.stderr.isTTY && !process.env.WGIT_AUTHOR_NAME && !repo.user.name)
      process.stderr.write(
        'wgit: note: no author configured (wgit config user.name "…" / user.email, or git\'s own); this commit is by wgit <wgit@localhost>\n',
      );
    if (r.unchanged) {
      if (!this.jsonEnabled())
        this.log(
          `nothing to commit: ${printable(args.path)} is what ${printable(branch)} holds (${r.commit.slice(0, 12)}); --allow-empty commits it anyway`,
        );
      return { ...r, parents };
    }
    if (!this.jsonEnabled() && isNew && !flags.parent && parents.length > 0)
      this.log(
        `new branch ${printable(branch)} starts from HEAD (${parents[0].slice(0, 12)}); --parent REV starts it elsewhere`,
      );
    if (!this.jsonEnabled()) {
      this.log(
        `[${printable(r.branch)} ${r.commit.slice(0, 12)}] ${r.tensors} tensors, ${mib(r.rawBytes)} raw, ${mib(r.storedBytes)} stored, ${mib(r.newBytes)} new`,
      );
    }
    return { ...r, parents };
  }
}
