import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Flags } from '@oclif/core';
import { WgitCommand } from '../base.js';
import type { DemoResult } from '../demo/run.js';
import { printable } from '../format.js';

export default class Demo extends WgitCommand {
  static override summary = 'Train a small model lineage offline and walk through what wgit does with it';
  static override description = `Trains a digits classifier lineage (two base releases, three task fine-tunes,
a direct fine-tune of the second base) in a few seconds, inspects a model,
commits the lineage to a new repository and reports stored vs raw bytes,
checks a model out and verifies it byte for byte, runs a fine-tuning
transfer, a LiNeS edit and two merges, prints every model's test accuracy
on every task, and ends by pushing the repository to a folder remote and
cloning it back, every model checked out of the clone byte for byte. Needs
no network.`;
  static override examples = ['<%= config.bin %> demo', '<%= config.bin %> demo --dir ./wgit-demo --seed 3'];
  static override flags = {
    dir: Flags.string({
      description: 'empty or new folder for the models and the repository (default: a fresh temp folder)',
    }),
    seed: Flags.string({ description: 'seed of the training runs (0 to 2147483647)', default: '1' }),
  };

  async run(): Promise<DemoResult> {
    const { flags } = await this.parse(Demo);
    const { integerFlag } = await import('../numbers.js');
    const seed = integerFlag(flags.seed, 'seed', { min: 0, max: 2 ** 31 - 1 }) ?? 1;
    const dir = flags.dir ? resolve(flags.dir) : await mkdtemp(join(tmpdir(), 'wgit-demo-'));
    const { runDemo } = await import('../demo/run.js');
    const json = this.jsonEnabled();
    if (!json) this.log(`wgit demo in ${printable(dir)}`);
    return runDemo({ dir, seed, log: json ? undefined : (line) => this.log(line) });
  }
}
