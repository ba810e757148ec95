import { Flags } from '@oclif/core';
import type { remotes } from '@wgit/store';
import { WgitCommand } from '../../base.js';
import { printable } from '../../format.js';

export default class RemoteList extends WgitCommand {
  static override description = 'List the remotes (-v: with their URLs; credentials are never stored, so never shown).';
  static override examples = ['<%= config.bin %> remote list -v'];
  static override flags = { verbose: Flags.boolean({ char: 'v', description: 'show URLs and S3 settings' }) };

  async run(): Promise<{ remotes: remotes.RemoteConfig[] }> {
    const { flags } = await this.parse(RemoteList);
    const { Repository, remotes } = await import('@wgit/store');
    const repo = await Repository.open(flags.repo);
    const list = await remotes.listRemotes(repo);
    if (!this.jsonEnabled())
      for (const r of list) {
        if (!flags.verbose) this.log(printable(r.name));
        else
          this.log(
            `${printable(r.name)}\t${printable(r.url)}${r.endpoint ? ` (endpoint ${printable(r.endpoint)})` : ''}`,
          );
      }
    return { remotes: list };
  }
}
