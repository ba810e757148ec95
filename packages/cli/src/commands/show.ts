import { Args, Flags } from '@oclif/core';
import type { ShowResult } from '@wgit/store';
import { WgitCommand } from '../base.js';
import { escapeControls, printable, recipeLines } from '../format.js';

function size(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1048576) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1048576).toFixed(1)} MiB`;
}

export default class Show extends WgitCommand {
  static override description = 'Show a commit: parents, recipe, and every tensor with how it is stored.';
  static override examples = ['<%= config.bin %> show HEAD', '<%= config.bin %> show v1~1 --group base'];
  static override args = { rev: Args.string({ description: 'branch, tag or commit', required: true }) };
  static override flags = { group: Flags.string({ description: 'show an extra tensor set recorded with the commit' }) };

  async run(): Promise<ShowResult> {
    const { args, flags } = await this.parse(Show);
    const { Repository } = await import('@wgit/store');
    const repo = await Repository.open(flags.repo);
    const r = await repo.show(args.rev, { group: flags.group });
    if (!this.jsonEnabled()) {
      this.log(`commit ${r.commit}`);
      if (r.parents.length) this.log(`Parents: ${r.parents.map((p) => p.slice(0, 12)).join(' ')}`);
      this.log(`Author: ${escapeControls(r.author)}\nDate:   ${new Date(r.timestamp * 1000).toISOString()}`);
      if (r.recipe) this.log(['Recipe:', ...recipeLines(r.recipe)].join('\n'));
      this.log(`Object: ${escapeControls(r.object.description)} (${r.object.kind} v${r.object.version})`);
      if (r.groups.length)
        this.log(
          `Groups: ${r.groups.map((g) => (r.groupKinds[g] ? `${printable(g)} (${printable(r.groupKinds[g])})` : printable(g))).join(', ')}`,
        );
      this.log(`\n${escapeControls(r.message, true).replace(/^/gm, '    ')}\n`);
      const ratio = r.storedBytes > 0 ? (r.rawBytes / r.storedBytes).toFixed(2) : '-';
      const shards = r.shards.map(printable).join(', ');
      const what = r.kind === 'folder' ? `model folder (${shards})` : `model file ${shards}`;
      this.log(
        `${what}: ${r.tensors.length} tensors, ${size(r.rawBytes)} raw, ${size(r.storedBytes)} stored (${ratio}x)`,
      );
      if (r.files.length) this.log(`side files: ${r.files.map(printable).join(', ')}`);
      const rows = r.tensors.map((t) => [
        printable(t.name),
        `${t.dtype}[${t.shape.join(',')}]`,
        size(t.byteLength),
        size(t.storedBytes),
        Object.entries(t.encodings)
          .map(([k, v]) => `${printable(k)}×${v}`)
          .join(' '),
      ]);
      const w = [0, 1, 2, 3].map((i) => Math.max(0, ...rows.map((row) => row[i].length)));
      for (const [name, type, raw, stored, enc] of rows) {
        this.log(
          `  ${name.padEnd(w[0])}  ${type.padEnd(w[1])}  ${raw.padStart(w[2])} → ${stored.padStart(w[3])}  ${enc}`,
        );
      }
    }
    return r;
  }
}
