import type { FsckResult } from '@wgit/store';
import { WgitCommand } from '../base.js';
import { escapeControls } from '../format.js';

export default class Fsck extends WgitCommand {
  static override description =
    'Verify the repository: refs, commits, trees, records and every chunk (re-hashed through its delta chain). Exits 1 when anything is damaged.';
  static override examples = ['<%= config.bin %> fsck', '<%= config.bin %> fsck --json'];

  async run(): Promise<FsckResult> {
    const { flags } = await this.parse(Fsck);
    const { Repository } = await import('@wgit/store');
    const repo = await Repository.open(flags.repo);
    const r = await repo.fsck({ onProgress: (e) => this.progress(`fsck: commit ${e.done} / ${e.total}`) });
    this.progressDone();
    if (!this.jsonEnabled()) {
      for (const p of r.problems) this.log(`error: ${escapeControls(p.message)} [${escapeControls(p.code)}]`);
      for (const w of r.warnings) this.log(`warning: ${escapeControls(w)}`);
      this.log(
        `${r.ok ? 'ok' : 'damaged'}: ${r.commits} commits, ${r.tensors} tensors, ${r.chunks} chunks checked, ${r.problems.length} problems`,
      );
    }
    if (!r.ok) process.exitCode = 1;
    return r;
  }
}
