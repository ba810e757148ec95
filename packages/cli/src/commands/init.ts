import { Args, Flags } from '@oclif/core';
import { WgitCommand } from '../base.js';

export default class Init extends WgitCommand {
  static override description = 'Create an empty wgit repository (a .wgit folder) in DIR or the current folder.';
  static override examples = ['<%= config.bin %> init', '<%= config.bin %> init models --chunk-size 4194304'];
  static override args = { dir: Args.string({ description: 'folder to create the repository in', default: '.' }) };
  static override flags = {
    'chunk-size': Flags.integer({
      description: 'bytes per chunk, fixed for the repository (multiple of 8)',
      default: 4 * 1024 * 1024,
    }),
    'max-delta-depth': Flags.integer({ description: 'longest chain of deltas a read decodes', default: 10 }),
  };

  async run(): Promise<{ root: string; gitdir: string; chunkSize: number; maxDeltaDepth: number }> {
    const { args, flags } = await this.parse(Init);
    const { Repository } = await import('@wgit/store');
    const repo = await Repository.init(args.dir, {
      chunkSize: flags['chunk-size'],
      maxDeltaDepth: flags['max-delta-depth'],
    });
    if (!this.jsonEnabled()) this.log(`Initialized empty wgit repository in ${repo.gitdir}`);
    return {
      root: repo.root,
      gitdir: repo.gitdir,
      chunkSize: repo.config.chunkSize,
      maxDeltaDepth: repo.config.maxDeltaDepth,
    };
  }
}
