import { Args } from '@oclif/core';
import type { remotes } from '@wgit/store';
import { WgitCommand } from '../../base.js';
import { printable } from '../../format.js';

export default class RemoteRemove extends WgitCommand {
  static override description = 'Remove a remote and its remote-tracking refs (the remote itself is not touched).';
  static override examples = ['<%= config.bin %> remote remove backup'];
  static override args = { name: Args.string({ required: true, description: 'the remote to remove' }) };

  async run(): Promise<{ removed: remotes.RemoteConfig; trackingRefsRemoved: number }> {
    const { args, flags } = await this.parse(RemoteRemove);
    const { Repository, remotes } = await import('@wgit/store');
    const repo = await Repository.open(flags.repo);
    const r = await remotes.removeRemote(repo, args.name);
    if (!this.jsonEnabled())
      this.log(`Removed remote ${printable(r.removed.name)} (${r.trackingRefsRemoved} remote-tracking refs)`);
    return r;
  }
}
