import type { StatusResult } from '@wgit/store';
import { WgitCommand } from '../base.js';
import { printable } from '../format.js';

function size(n: number): string {
  return n < 1048576 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1048576).toFixed(1)} MiB`;
}

export default class Status extends WgitCommand {
  static override description = 'Show the current branch, its head commit and the size of the chunk store.';
  static override examples = ['<%= config.bin %> status'];

  async run(): Promise<StatusResult> {
    const { flags } = await this.parse(Status);
    const { Repository } = await import('@wgit/store');
    const repo = await Repository.open(flags.repo);
    const s = await repo.status();
    if (!this.jsonEnabled()) {
      this.log(`On branch ${s.branch}`);
      this.log(s.head ? `Head: ${s.head}` : 'No commits yet');
      this.log(`Chunks: ${s.chunks.count}, ${size(s.chunks.rawBytes)} raw, ${size(s.chunks.storedBytes)} stored`);
      if (s.tempFiles.length) this.log(`Stale temp files: ${s.tempFiles.length} (wgit gc removes them)`);
      if (s.staleLocks.length) this.log(`Stale locks: ${s.staleLocks.join(', ')}`);
      if (s.staleCheckouts.length) {
        this.log(`Partial checkouts left by killed processes: ${s.staleCheckouts.length} (wgit gc removes them)`);
        for (const p of s.staleCheckouts) this.log(`  ${printable(p)}`);
      }
    }
    return s;
  }
}
