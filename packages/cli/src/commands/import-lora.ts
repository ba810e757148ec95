import { resolve } from 'node:path';
import { Args, Flags } from '@oclif/core';
import { WgitCommand } from '../base.js';
import { deviceFlags, useDevice } from '../device-flag.js';
import { formatBytes, printable } from '../format.js';
import { recipeRef, runMethodCommit } from '../method-commit.js';

export interface ImportLoraResult {
  commit: string;
  branch: string;
  parents: string[];
  adapter: string;
  base: string;
  modules: { module: string; tensor: string; rank: number; scaling: number }[];
  storedBytes: number;
  /** With --merge: BASE + the adapter, committed. */
  merged?: { commit: string; branch: string; storedBytes: number };
}

export default class ImportLora extends WgitCommand {
  static override description = `Read a PEFT LoRA adapter folder as a low-rank basis of a base model.

DIR holds adapter_config.json (peft_type LORA) and adapter_model.safetensors. Each module M
changes the base tensor M.weight by scaling·B·A, scaling = lora_alpha / r (lora_alpha / √r with
use_rslora; r and lora_alpha per module from rank_pattern / alpha_pattern), transposed when
fan_in_fan_out. Every module must exist in BASE with the factors' shape. The basis is committed
with BASE as parent; --merge also commits BASE + adapter on another branch.`;

  static override examples = [
    '<%= config.bin %> import-lora ./my-adapter --base base-v1',
    '<%= config.bin %> import-lora ./my-adapter --base base-v1 --branch adapter --merge base-v1-tuned',
  ];

  static override args = {
    dir: Args.string({ description: 'the adapter folder', required: true }),
  };

  static override flags = {
    ...deviceFlags,
    base: Flags.string({ description: 'the base model: revision or path', required: true }),
    message: Flags.string({ char: 'm', description: 'commit message' }),
    branch: Flags.string({ description: 'branch for the basis (default: a new branch lora/<DIR>)' }),
    merge: Flags.string({ description: 'also commit BASE + adapter on this branch' }),
  };

  async run(): Promise<ImportLoraResult> {
    const { args, flags } = await this.parse(ImportLora);
    const device = await useDevice(flags.device);
    const { applyDelta, importLora, lowRank, lowRankView, openLoraAdapter, planLoraImport } = await import(
      '@wgit/core'
    );
    const dir = resolve(args.dir);
    const adapter = await openLoraAdapter(dir);
    try {
      const made = await runMethodCommit({
        device,
        repo: flags.repo,
        models: [flags.base],
        kind: 'lora',
        branch: flags.branch,
        branchName: () =>
          dir
            .split('/')
            .pop()
            ?.replace(/[^A-Za-z0-9._-]+/g, '-') || 'adapter',
        object: ([base]) => planLoraImport(adapter, base.source).header,
        compute: async ([base], outDir, _scratch, sink) => {
          const { header, modules } = await importLora(adapter, base.source, {
            sink,
            outDir,
            onProgress: (e) => this.progress(`import ${e.done}/${e.total}`),
          });
          return {
            value: { header, modules },
            message: flags.message ?? `LoRA adapter ${args.dir} on ${flags.base}`,
            parents: [base],
            recipe: {
              kind: 'low-rank',
              base: recipeRef(base),
              adapter: dir,
              ...(header.meta as { params: Record<string, unknown> }).params,
              modules: Object.fromEntries(modules.map((m) => [m.module, { rank: m.rank, scaling: m.scaling }])),
            },
          };
        },
        progress: (m) => this.progress(m),
        progressDone: () => this.progressDone(),
      });
      const [base] = made.models;
      const out: ImportLoraResult = {
        commit: made.result.commit,
        branch: made.result.branch,
        parents: made.parents,
        adapter: dir,
        base: base.commit ?? (base.path as string),
        modules: made.value.modules.map(({ module, tensor, rank, scaling }) => ({ module, tensor, rank, scaling })),
        storedBytes: made.result.storedBytes,
      };
      if (flags.merge !== undefined) {
        const merged = await runMethodCommit({
          device,
          repo: flags.repo,
          models: [made.result.commit, flags.base],
          kind: 'apply',
          branch: flags.merge,
          branchName: () => flags.merge as string,
          deltaBase: ([, onto]) => onto,
          compute: async ([obj, onto], outDir, _scratch, sink) => {
            const value = await lowRank.decode(obj.source, made.value.header);
            await applyDelta(lowRankView(value), onto.source, 1, {
              sink,
              outDir,
              onProgress: (e) => this.progress(`merge ${e.done}/${e.total}`),
            });
            return {
              value: null,
              message: `${flags.base} + LoRA adapter ${args.dir}`,
              parents: [onto, obj],
              recipe: { method: 'apply', delta: recipeRef(obj), onto: recipeRef(onto), scale: 1 },
            };
          },
          progress: (m) => this.progress(m),
          progressDone: () => this.progressDone(),
        });
        out.merged = {
          commit: merged.result.commit,
          branch: merged.result.branch,
          storedBytes: merged.result.storedBytes,
        };
      }
      if (!this.jsonEnabled()) {
        this.log(
          `[${printable(out.branch)} ${out.commit.slice(0, 12)}] LoRA adapter ${printable(args.dir)}: ` +
            `${out.modules.length} modules as a low-rank basis of ${printable(flags.base)}; ${formatBytes(out.storedBytes)} stored`,
        );
        if (out.merged)
          this.log(
            `[${printable(out.merged.branch)} ${out.merged.commit.slice(0, 12)}] ${printable(flags.base)} + adapter; ` +
              `${formatBytes(out.merged.storedBytes)} stored`,
          );
      }
      return out;
    } finally {
      await adapter.source.close();
    }
  }
}
