import { Flags } from '@oclif/core';
import type { GcResult } from '@wgit/store';
import { WgitCommand } from '../base.js';

export default class Gc extends WgitCommand {
  static override description =
    'Delete chunks no branch, tag or reflog entry reaches, temp files of dead processes, partial checkouts they left and stale locks; reports the bytes freed.';
  static override examples = ['<%= config.bin %> gc', '<%= config.bin %> gc --grace 0'];
  static override flags = {
    grace: Flags.integer({
      min: 0,
      description:
        'keep unreferenced chunks younger than this many seconds (a writer on another host may be about to use them); 0 removes them all',
      default: 3600,
    }),
  };

  async run(): Promise<GcResult> {
    const { flags } = await this.parse(Gc);
    const { Repository } = await import('@wgit/store');
    const repo = await Repository.open(flags.repo);
    const r = await repo.gc({
      graceSeconds: flags.grace,
      onProgress: (e) => this.progress(`gc: ${e.done} / ${e.total} chunks`),
    });
    this.progressDone();
    if (!this.jsonEnabled()) {
      this.log(
        `Removed ${r.chunksRemoved} chunks, ${r.tempFilesRemoved} temp files and ${r.checkoutTempsRemoved} partial checkouts, freed ${r.bytesFreed} bytes; kept ${r.chunksKept} chunks${r.chunksYoung ? ` (${r.chunksYoung} unreferenced but younger than --grace)` : ''}`,
      );
    }
    return r;
  }
}
