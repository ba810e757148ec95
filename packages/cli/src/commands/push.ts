import { Args, Flags } from '@oclif/core';
import type { remotes } from '@wgit/store';
import { WgitCommand } from '../base.js';
import { formatBytes, printable } from '../format.js';
import { progressFlag, progressReporter } from '../remote-flags.js';

export default class Push extends WgitCommand {
  static override description =
    'Send branches or tags to a remote: only the objects and chunks it lacks, then move its refs by compare-and-swap. Refuses a non-fast-forward update unless --force.';
  static override strict = false;
  static override examples = [
    '<%= config.bin %> push',
    '<%= config.bin %> push origin main v1',
    '<%= config.bin %> push origin --all --tags',
    '<%= config.bin %> push backup experiment:main --force',
    '<%= config.bin %> push origin --delete old-experiment',
  ];
  static override args = {
    remote: Args.string({ description: 'the remote (default origin)' }),
    refs: Args.string({ description: 'branches or tags to push, SRC or SRC:DST (default: the current branch)' }),
  };
  static override flags = {
    all: Flags.boolean({ description: 'push every branch' }),
    tags: Flags.boolean({ description: 'push every tag' }),
    force: Flags.boolean({
      char: 'f',
      description:
        "overwrite remote refs even when the update is not a fast-forward (with --delete: also the remote's HEAD branch)",
    }),
    delete: Flags.boolean({
      char: 'd',
      description: 'delete the named branches or tags on the remote (and their remote-tracking refs here)',
      exclusive: ['all', 'tags'],
    }),
    ...progressFlag,
  };

  async run(): Promise<
    (remotes.PushResult & { remote: string; url: string; abortedUploads: number }) | remotes.DeleteResult
  > {
    const { argv, flags } = await this.parse(Push);
    const [remote = 'origin', ...refs] = argv as string[];
    const { Repository, remotes } = await import('@wgit/store');
    const repo = await Repository.open(flags.repo);
    if (flags.delete) {
      const d = await remotes.deleteRemoteRefs(repo, remote, refs, { force: flags.force });
      if (!this.jsonEnabled())
        for (const x of d.deleted) this.log(`${printable(x.ref)}: deleted (was ${x.old.slice(0, 12)})`);
      return d;
    }
    const p = progressReporter('push', { json: this.jsonEnabled(), force: flags.progress }, remotes.formatProgress);
    const r = await remotes.pushToRemote(repo, remote, refs, {
      all: flags.all,
      tags: flags.tags,
      force: flags.force,
      onProgress: p.report,
    });
    p.done();
    if (!this.jsonEnabled()) {
      for (const u of r.updates)
        this.log(
          `${printable(u.ref)}: ${u.status}${u.old && u.status !== 'up-to-date' ? ` ${u.old.slice(0, 12)}..` : ' '}${u.new.slice(0, 12)}`,
        );
      this.log(
        `Sent ${r.sent.objects} objects and ${r.sent.chunks} chunks (${formatBytes(r.sent.bytes)}) to ${printable(r.remote)} in ${r.seconds.toFixed(1)} s; the remote had ${r.present.objects + r.present.chunks} already`,
      );
      if (r.abortedUploads > 0)
        this.log(`Aborted ${r.abortedUploads} multipart upload(s) an interrupted push had left in progress`);
    }
    return r;
  }
}
