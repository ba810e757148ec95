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
    '<%= config.bin %> commit ft.safetensors -m "instruct fine-tune" --branch instruct',
  ];
  static override args = {
    path: Args.string({ description: 'a .safetensors file or a model folder', required: true }),
  };
  static override flags = {
    message: Flags.string({ char: 'm', description: 'commit message' }),
    branch: Flags.string({
      char: 'b',
      description: 'branch to commit to (default: the current branch); created when missing',
    }),
  };

  async run(): Promise<CommitResult> {
    const { args, flags } = await this.parse(Commit);
    const { Repository } = await import('@wgit/store');
    const repo = await Repository.open(flags.repo);
    const r = await repo.commit({
      path: args.path,
      message: flags.message,
      branch: flags.branch,
      onProgress: (e) => this.progress(`${e.phase}: ${mib(e.done)} / ${mib(e.total)}`),
    });
    this.progressDone();
    if (!this.jsonEnabled()) {
      this.log(
        `[${printable(r.branch)} ${r.commit.slice(0, 12)}] ${r.tensors} tensors, ${mib(r.rawBytes)} raw, ${mib(r.storedBytes)} stored, ${mib(r.newBytes)} new`,
      );
    }
    return r;
  }
}
