import { Flags } from '@oclif/core';
import type { GcResult } from '@wgit/store';
import { WgitCommand } from '../base.js';

const UNIT_SECONDS: Record<string, number> = {
  s: 1,
  second: 1,
  m: 60,
  minute: 60,
  h: 3600,
  hour: 3600,
  d: 86400,
  day: 86400,
  w: 604800,
  week: 604800,
};

/** `--prune` as seconds: `now`, a number of seconds, `12h`, `2d`, or git's `2.weeks.ago`. */
export async function pruneAge(text: string): Promise<number> {
  if (text === 'now') return 0;
  const m = /^(\d{1,9})(?:\.?([a-z]+?)s?(?:\.ago)?)?$/.exec(text.trim());
  const unit = m?.[2] === undefined ? 1 : UNIT_SECONDS[m[2]];
  if (!m || unit === undefined) {
    const { WgitError } = await import('@wgit/core');
    throw new WgitError(
      'E_USAGE',
      `--prune takes now, seconds, or an age such as 12h, 2d, 2.weeks.ago; got ${JSON.stringify(text)}`,
    );
  }
  return Number(m[1]) * unit;
}

export default class Gc extends WgitCommand {
  static override description =
    'Delete chunks no branch, tag or reflog entry reaches, temp files of dead processes, partial checkouts they left and stale locks; reports the bytes freed.';
  static override examples = [
    '<%= config.bin %> gc',
    '<%= config.bin %> gc --prune=now',
    '<%= config.bin %> gc --prune=2d',
  ];
  static override flags = {
    prune: Flags.string({
      description:
        'remove unreferenced chunks older than this: now, or an age such as 3600 (seconds), 12h, 2d, 2.weeks.ago (default: two weeks, as git; a deleted branch can be restored until then with wgit branch NAME <its commit>)',
      exclusive: ['grace'],
    }),
    grace: Flags.integer({
      min: 0,
      description: 'the same as --prune, in seconds (0 = --prune=now)',
    }),
  };

  async run(): Promise<GcResult> {
    const { flags } = await this.parse(Gc);
    const { Repository, DEFAULT_GC_GRACE_SECONDS } = await import('@wgit/store');
    const graceSeconds =
      flags.prune !== undefined ? await pruneAge(flags.prune) : (flags.grace ?? DEFAULT_GC_GRACE_SECONDS);
    const repo = await Repository.open(flags.repo);
    const r = await repo.gc({
      graceSeconds,
      onProgress: (e) => this.progress(`gc: ${e.done} / ${e.total} chunks`),
    });
    this.progressDone();
    if (!this.jsonEnabled()) {
      this.log(
        `Removed ${r.chunksRemoved} chunks, ${r.tempFilesRemoved} temp files and ${r.checkoutTempsRemoved} partial checkouts, freed ${r.bytesFreed} bytes; kept ${r.chunksKept} chunks${r.chunksYoung ? ` (${r.chunksYoung} unreferenced but younger than --prune)` : ''}`,
      );
    }
    return r;
  }
}
