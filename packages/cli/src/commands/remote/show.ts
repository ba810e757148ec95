import { Args } from '@oclif/core';
import { WgitCommand } from '../../base.js';
import { printable } from '../../format.js';

export default class RemoteShow extends WgitCommand {
  static override description =
    "Show a remote: URL, probed capabilities (conditional writes or lock objects) and the remote's branches and tags.";
  static override examples = ['<%= config.bin %> remote show origin'];
  static override args = { name: Args.string({ required: true, description: 'the remote' }) };

  async run(): Promise<unknown> {
    const { args, flags } = await this.parse(RemoteShow);
    const { Repository, remotes } = await import('@wgit/store');
    const repo = await Repository.open(flags.repo);
    const r = await remotes.showRemote(repo, args.name);
    if (!this.jsonEnabled()) {
      this.log(`remote ${printable(r.name)}`);
      this.log(`  URL: ${printable(r.url)}`);
      if (r.endpoint) this.log(`  endpoint: ${printable(r.endpoint)}`);
      if (r.capabilities)
        this.log(
          `  ref updates: ${r.capabilities.conditionalWrites ? 'conditional writes' : 'lock objects (the server ignores conditional writes)'}, probed ${r.capabilities.probedAt}`,
        );
      this.log(`  HEAD: ${r.head ? printable(r.head) : '(none)'}`);
      for (const [b, c] of Object.entries(r.branches)) this.log(`  branch ${printable(b)} ${c.slice(0, 12)}`);
      for (const [t, c] of Object.entries(r.tags)) this.log(`  tag ${printable(t)} ${c.slice(0, 12)}`);
    }
    return r;
  }
}
