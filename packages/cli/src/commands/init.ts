import { Args, Flags } from '@oclif/core';
import { WgitCommand } from '../base.js';
import { printable } from '../format.js';

const DEFAULT_CHUNK_SIZE = 4 * 1024 * 1024;
const DEFAULT_MAX_DELTA_DEPTH = 10;

export default class Init extends WgitCommand {
  static override description = 'Create an empty wgit repository (a .wgit folder) in DIR or the current folder.';
  static override examples = ['<%= config.bin %> init', '<%= config.bin %> init models --chunk-size 4194304'];
  static override args = { dir: Args.string({ description: 'folder to create the repository in', default: '.' }) };
  static override flags = {
    'chunk-size': Flags.string({
      description: 'bytes per chunk, fixed for the repository (multiple of 8)',
      default: String(DEFAULT_CHUNK_SIZE),
    }),
    'max-delta-depth': Flags.string({
      description: 'longest chain of deltas a read decodes',
      default: String(DEFAULT_MAX_DELTA_DEPTH),
    }),
  };

  async run(): Promise<{ root: string; gitdir: string; chunkSize: number; maxDeltaDepth: number }> {
    const { args, flags } = await this.parse(Init);
    const { integerFlag } = await import('../numbers.js');
    const chunkSize = integerFlag(flags['chunk-size'], 'chunk-size') ?? DEFAULT_CHUNK_SIZE;
    const maxDeltaDepth = integerFlag(flags['max-delta-depth'], 'max-delta-depth') ?? DEFAULT_MAX_DELTA_DEPTH;
    const { Repository } = await import('@wgit/store');
    const repo = await Repository.init(args.dir, { chunkSize, maxDeltaDepth });
    if (!this.jsonEnabled()) this.log(`Initialized empty wgit repository in ${printable(repo.gitdir)}`);
    return {
      root: repo.root,
      gitdir: repo.gitdir,
      chunkSize: repo.config.chunkSize,
      maxDeltaDepth: repo.config.maxDeltaDepth,
    };
  }
}
