import { Args, Flags } from '@oclif/core';
import type { remotes } from '@wgit/store';
import { WgitCommand } from '../base.js';
import { printable } from '../format.js';
import { progressFlag, progressReporter } from '../remote-flags.js';

export default class Pull extends WgitCommand {
  static override description =
    "Fetch, then fast-forward the current branch to the remote's. Diverged history is refused unless --force (which resets the branch to the remote's; the old tip stays in the reflog).";
  static override examples = ['<%= config.bin %> pull', '<%= config.bin %> pull backup --force'];
  static override args = { remote: Args.string({ description: 'the remote (default origin)' }) };
  static override flags = {
    force: Flags.boolean({ description: "reset the branch to the remote's when the histories have diverged" }),
    ...progressFlag,
  };

  async run(): Promise<remotes.PullResult> {
    const { args, flags } = await this.parse(Pull);
    const { Repository, remotes } = await import('@wgit/store');
    const repo = await Repository.open(flags.repo);
    const p = progressReporter('pull', { json: this.jsonEnabled(), force: flags.progress }, remotes.formatProgress);
    const r = await remotes.pullFromRemote(repo, args.remote ?? 'origin', { force: flags.force, onProgress: p.report });
    p.done();
    if (!this.jsonEnabled())
      this.log(
        `${printable(r.branch)}: ${r.status}${r.old && r.old !== r.new ? ` ${r.old.slice(0, 12)}..` : ' '}${r.new.slice(0, 12)}`,
      );
    return r;
  }
}
