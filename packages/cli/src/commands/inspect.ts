import { Args } from '@oclif/core';
import { WgitCommand } from '../base.js';
import { type InspectResult, renderInspect, summarize } from '../inspect-model.js';

export type { InspectResult, InspectTensor } from '../inspect-model.js';

export default class Inspect extends WgitCommand {
  static override description =
    'List the tensors, dtypes, shapes and parameter count of a .safetensors file or model folder (reads headers only; no repository needed).';
  static override examples = [
    '<%= config.bin %> inspect model.safetensors',
    '<%= config.bin %> inspect ./Llama-3.1-8B --json',
  ];
  static override args = {
    path: Args.string({
      description: 'a .safetensors file or a model folder (sharded with an index, or not)',
      required: true,
    }),
  };

  async run(): Promise<InspectResult> {
    const { args } = await this.parse(Inspect);
    // Loaded here so other commands start without it, and only the safetensors part of core.
    const { openModel } = await import('@wgit/core/safetensors');
    const model = await openModel(args.path);
    try {
      const result = summarize(model);
      if (!this.jsonEnabled()) this.log(renderInspect(result).join('\n'));
      return result;
    } finally {
      await model.close();
    }
  }
}
