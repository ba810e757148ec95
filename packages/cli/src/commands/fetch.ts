import { Args } from '@oclif/core';
import type { remotes } from '@wgit/store';
import { WgitCommand } from '../base.js';
import { formatBytes, printable } from '../format.js';
import { progressFlag, progressReporter } from '../remote-flags.js';

export default class Fetch extends WgitCommand {
  static override description =
    "Bring a remote's branches (as refs/remotes/REMOTE/BRANCH) and new tags into this repository; every object and chunk is verified before it enters.";
  static override examples = ['<%= config.bin %> fetch', '<%= config.bin %> fetch backup'];
  static override args = { remote: Args.string({ description: 'the remote (default origin)' }) };
  static override flags = { ...progressFlag };

  async run(): Promise<remotes.FetchResult & { remote: string; url: string }> {
    const { args, flags } = await this.parse(Fetch);
    const { Repository, remotes } = await import('@wgit/store');
    const repo = await Repository.open(flags.repo);
    const p = progressReporter('fetch', { json: this.jsonEnabled(), force: flags.progress }, remotes.formatProgress);
    const r = await remotes.fetchFromRemote(repo, args.remote ?? 'origin', { onProgress: p.report });
    p.done();
    if (!this.jsonEnabled()) {
      for (const b of r.branches)
        if (b.old !== b.new)
          this.log(`${printable(b.tracking)}: ${b.old ? `${b.old.slice(0, 12)}..` : 'new '}${b.new.slice(0, 12)}`);
      for (const t of r.tags) if (t.status !== 'same') this.log(`tag ${printable(t.tag)}: ${t.status}`);
      this.log(
        `Received ${r.received.objects} objects and ${r.received.chunks} chunks (${formatBytes(r.received.bytes)}) in ${r.seconds.toFixed(1)} s`,
      );
    }
    return r;
  }
}
