import { Args, Flags } from '@oclif/core';
import { WgitCommand } from '../base.js';
import { printable } from '../format.js';

type TagResult =
  | { tags: { name: string; commit: string }[] }
  | { created: { name: string; commit: string } }
  | { deleted: { name: string; commit: string } };

export default class Tag extends WgitCommand {
  static override description = 'List tags, tag REV (default HEAD) as NAME, or delete a tag.';
  static override examples = [
    '<%= config.bin %> tag',
    '<%= config.bin %> tag v1.0 main~2',
    '<%= config.bin %> tag v1.0 --delete',
  ];
  static override args = {
    name: Args.string({ description: 'tag to create or delete' }),
    rev: Args.string({ description: 'commit to tag (default HEAD)' }),
  };
  static override flags = { delete: Flags.boolean({ char: 'd', description: 'delete the tag' }) };

  async run(): Promise<TagResult> {
    const { args, flags } = await this.parse(Tag);
    const { Repository } = await import('@wgit/store');
    const repo = await Repository.open(flags.repo);
    const { WgitError } = await import('@wgit/core');
    if (flags.delete) {
      if (!args.name) throw new WgitError('E_USAGE', 'tag --delete needs a tag name');
      const deleted = await repo.deleteTag(args.name);
      if (!this.jsonEnabled()) this.log(`Deleted tag ${printable(deleted.name)} (was ${deleted.commit.slice(0, 12)})`);
      return { deleted };
    }
    if (args.name) {
      const created = await repo.createTag(args.name, args.rev ?? 'HEAD');
      if (!this.jsonEnabled()) this.log(`Tagged ${created.commit.slice(0, 12)} as ${printable(created.name)}`);
      return { created };
    }
    const tags = await repo.tags();
    if (!this.jsonEnabled()) for (const t of tags) this.log(`${printable(t.name)} ${t.commit.slice(0, 12)}`);
    return { tags };
  }
}
