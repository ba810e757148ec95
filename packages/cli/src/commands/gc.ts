import type { GcResult } from '@wgit/store';
import { WgitCommand } from '../base.js';

export default class Gc extends WgitCommand {
  static override description =
    'Delete chunks no branch, tag or reflog entry reaches, temp files of dead processes and stale locks; reports the bytes freed.';
  static override examples = ['<%= config.bin %> gc'];

  async run(): Promise<GcResult> {
    const { flags } = await this.parse(Gc);
    const { Repository } = await import('@wgit/store');
    const repo = await Repository.open(flags.repo);
    const r = await repo.gc({ onProgress: (e) => this.progress(`gc: ${e.done} / ${e.total} chunks`) });
    this.progressDone();
    if (!this.jsonEnabled()) {
      this.log(
        `Removed ${r.chunksRemoved} chunks and ${r.tempFilesRemoved} temp files, freed ${r.bytesFreed} bytes; kept ${r.chunksKept} chunks`,
      );
    }
    return r;
  }
}
