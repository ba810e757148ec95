import { Args } from '@oclif/core';
import type { remotes } from '@wgit/store';
import { WgitCommand } from '../../base.js';
import { printable } from '../../format.js';
import { s3Flags } from '../../remote-flags.js';

export default class RemoteAdd extends WgitCommand {
  static override description =
    'Add a remote: a folder (shared disk), file:///path, or s3://bucket/prefix. URLs with credentials are refused.';
  static override examples = [
    '<%= config.bin %> remote add origin /mnt/shared/models',
    '<%= config.bin %> remote add origin s3://my-bucket/models --region eu-west-1',
    '<%= config.bin %> remote add minio s3://models/team --endpoint http://localhost:9000',
  ];
  static override args = {
    name: Args.string({ required: true, description: 'name of the remote (origin, backup …)' }),
    url: Args.string({ required: true, description: 'folder, file:// URL or s3://bucket/prefix' }),
  };
  static override flags = { ...s3Flags };

  async run(): Promise<{ added: remotes.RemoteConfig }> {
    const { args, flags } = await this.parse(RemoteAdd);
    const { Repository, remotes } = await import('@wgit/store');
    const repo = await Repository.open(flags.repo);
    const added = await remotes.addRemote(repo, args.name, args.url, {
      endpoint: flags.endpoint,
      region: flags.region,
      pathStyle: flags['path-style'],
    });
    if (!this.jsonEnabled()) this.log(`Added remote ${printable(added.name)} ${printable(added.url)}`);
    return { added };
  }
}
