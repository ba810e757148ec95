import { resolve } from 'node:path';
import { Args, Flags } from '@oclif/core';
import { WgitCommand } from '../base.js';
import { manifestOf } from '../delta-arg.js';
import { printable } from '../format.js';
import { closeAll, openModelArg, openRepo } from '../method-commit.js';

export interface ExportLoraResult {
  commit: string;
  outDir: string;
  r: number;
  loraAlpha: number;
  targetModules: string[];
  modules: { module: string; tensor: string; rank: number; scaling: number }[];
  skipped: { tensor: string; reason: string }[];
}

export default class ExportLora extends WgitCommand {
  static override description = `Write a low-rank basis as a PEFT LoRA adapter folder.

DIR gets adapter_config.json (peft_type LORA, r, lora_alpha = r, target_modules: the distinct leaf
names, base_model_name_or_path, rank_pattern / alpha_pattern for modules of another rank or
scale) and adapter_model.safetensors with base_model.model.<module>.lora_A.weight [r, in] and
lora_B.weight [out, r] for every factored tensor <module>.weight. Tensors an adapter cannot
carry (dense differences of norms and biases, dropped, new or removed tensors, embeddings) are
listed as skipped.`;

  static override examples = [
    '<%= config.bin %> export-lora lowrank/instruct --out ./instruct-lora --base-model meta-llama/Llama-3.2-1B',
  ];

  static override args = {
    rev: Args.string({ description: 'the low-rank basis: a revision', required: true }),
  };

  static override flags = {
    out: Flags.string({ description: 'folder to write (absent or empty)', required: true }),
    'base-model': Flags.string({ description: 'base_model_name_or_path (default: the base in the recipe)' }),
    'task-type': Flags.string({ description: 'task_type of the config (e.g. CAUSAL_LM; default none)' }),
  };

  async run(): Promise<ExportLoraResult> {
    const { args, flags } = await this.parse(ExportLora);
    const { exportLora, LOW_RANK_KIND, lowRank, resolveObject, WgitError } = await import('@wgit/core');
    const repo = await openRepo(flags.repo);
    const arg = await openModelArg(args.rev, repo);
    try {
      const manifest = manifestOf(arg.source);
      const header = manifest?.object;
      const resolved = header
        ? resolveObject(
            header,
            arg.source.tensors.map((t) => t.name),
          )
        : null;
      if (arg.commit === null || resolved?.kind.name !== LOW_RANK_KIND)
        throw new WgitError(
          'E_NOT_AN_OBJECT',
          `${JSON.stringify(args.rev)} is not a low-rank basis; make one with wgit lowrank or wgit import-lora`,
          { rev: args.rev, kind: header?.kind ?? 'checkpoint' },
        );
      const value = await lowRank.decode(arg.source, resolved.header);
      const recipe = (manifest?.recipe ?? {}) as { base?: { rev?: string; path?: string | null } };
      const params = value.meta.params as { base_model_name_or_path?: string | null };
      const baseModel =
        flags['base-model'] ?? params.base_model_name_or_path ?? recipe.base?.path ?? recipe.base?.rev ?? null;
      const report = await exportLora(value, resolve(flags.out), { baseModel, taskType: flags['task-type'] ?? null });
      const out: ExportLoraResult = {
        commit: arg.commit,
        outDir: report.outDir,
        r: report.config.r,
        loraAlpha: report.config.lora_alpha,
        targetModules: report.config.target_modules as string[],
        modules: report.modules,
        skipped: report.skipped,
      };
      if (!this.jsonEnabled()) {
        this.log(
          `wrote ${printable(out.outDir)}: LoRA r ${out.r}, lora_alpha ${out.loraAlpha}, ${out.modules.length} modules ` +
            `(${out.targetModules.map(printable).join(', ')})`,
        );
        for (const s of out.skipped) this.log(`  skipped ${printable(s.tensor)}: ${s.reason}`);
      }
      return out;
    } finally {
      await closeAll([arg]);
    }
  }
}
