import { Args, Flags } from '@oclif/core';
import { WgitCommand } from '../base.js';
import { printable } from '../format.js';

export default class Config extends WgitCommand {
  static override description = `Read or set who commits: user.name and user.email.

Kept in the repository's git config (.wgit/config, which plain git reads too). Commits take the
author from WGIT_AUTHOR_NAME / WGIT_AUTHOR_EMAIL when set, else from this config, else from your
global git config (~/.gitconfig), else "wgit <wgit@localhost>" — and wgit commit says so.`;
  static override examples = [
    '<%= config.bin %> config user.name "Ada Lovelace"',
    '<%= config.bin %> config user.email ada@example.com',
    '<%= config.bin %> config user.name',
    '<%= config.bin %> config',
  ];
  static override args = {
    key: Args.string({ description: 'user.name or user.email (none: show both and where they come from)' }),
    value: Args.string({ description: 'the value to set' }),
  };
  static override flags = { unset: Flags.boolean({ description: "remove the key from the repository's config" }) };

  async run(): Promise<{ name: string | null; email: string | null; source: string | null }> {
    const { args, flags } = await this.parse(Config);
    const { Repository, USER_KEYS, writeUserConfig } = await import('@wgit/store');
    const { WgitError } = await import('@wgit/core');
    let repo = await Repository.open(flags.repo);
    if (args.key !== undefined) {
      if (!(USER_KEYS as readonly string[]).includes(args.key))
        throw new WgitError(
          'E_USAGE',
          `unknown key ${JSON.stringify(args.key)}; wgit config knows ${USER_KEYS.join(', ')}`,
        );
      const key = args.key as (typeof USER_KEYS)[number];
      if (flags.unset || args.value !== undefined) {
        await writeUserConfig(repo.gitdir, key, flags.unset ? null : (args.value as string));
        repo = await Repository.open(flags.repo);
      }
    }
    const r = { name: repo.user.name ?? null, email: repo.user.email ?? null, source: repo.user.source ?? null };
    if (!this.jsonEnabled()) {
      if (args.key === 'user.name' && args.value === undefined && !flags.unset) this.log(printable(r.name ?? ''));
      else if (args.key === 'user.email' && args.value === undefined && !flags.unset)
        this.log(printable(r.email ?? ''));
      else if (args.key === undefined)
        this.log(
          `user.name=${printable(r.name ?? '(not set)')}\nuser.email=${printable(r.email ?? '(not set)')}${r.source ? `\n(from ${printable(r.source)})` : '\n(not set anywhere: commits are authored by wgit <wgit@localhost>)'}`,
        );
    }
    return r;
  }
}
