import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { Args, Flags } from '@oclif/core';
import { WgitCommand } from '../base.js';
import { formatBytes, printable } from '../format.js';
import { progressFlag, progressReporter, s3Flags } from '../remote-flags.js';

export default class Clone extends WgitCommand {
  static override description =
    'Make a new repository in DIR from a remote (folder, file:// or s3://), with the remote as origin and its default branch (or --branch) checked in as the current branch.';
  static override examples = [
    '<%= config.bin %> clone /mnt/shared/models models',
    '<%= config.bin %> clone s3://my-bucket/models models --branch release --depth 1',
  ];
  static override args = {
    url: Args.string({ required: true, description: 'folder, file:// URL or s3://bucket/prefix' }),
    dir: Args.string({ required: true, description: 'new folder for the repository' }),
  };
  static override flags = {
    branch: Flags.string({ char: 'b', description: "the branch to check in (default: the remote's HEAD)" }),
    depth: Flags.integer({
      min: 1,
      max: 1,
      description: '1: only the chunks the branch tip needs (delta bases included)',
    }),
    ...s3Flags,
    ...progressFlag,
  };

  async run(): Promise<unknown> {
    const { args, flags } = await this.parse(Clone);
    const { Repository, remotes } = await import('@wgit/store');
    remotes.parseRemoteUrl(args.url);
    const dir = path.resolve(args.dir);
    const existed = await fsp
      .stat(dir)
      .then(() => true)
      .catch(() => false);
    const repo = await Repository.init(dir);
    const p = progressReporter('clone', { json: this.jsonEnabled(), force: flags.progress }, remotes.formatProgress);
    try {
      const r = await remotes.cloneInto(repo, args.url, {
        branch: flags.branch,
        depth: flags.depth,
        endpoint: flags.endpoint,
        region: flags.region,
        pathStyle: flags['path-style'],
        onProgress: p.report,
      });
      p.done();
      if (!this.jsonEnabled())
        this.log(
          `Cloned ${printable(r.remote.url)} into ${printable(dir)}: branch ${printable(r.branch)} at ${r.commit.slice(0, 12)}, ${r.fetch.received.chunks} chunks (${formatBytes(r.fetch.received.bytes)})`,
        );
      return { root: dir, ...r };
    } catch (e) {
      // A failed clone leaves nothing behind.
      await fsp.rm(existed ? repo.gitdir : dir, { recursive: true, force: true }).catch(() => {});
      throw e;
    }
  }
}
