/**
 * The demo's LoRA step: the change from base-v1 to a fine-tune as a
 * low-rank basis (randomized SVD of each matrix's Δ), written out as a PEFT
 * LoRA adapter folder — what `wgit lowrank` and `wgit export-lora` do.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { computeLowRank, exportLora, lowRank, type ModelSource, openModel } from '@wgit/core';

export interface DemoLora {
  /** The adapter folder (adapter_config.json + adapter_model.safetensors). */
  dir: string;
  rank: number;
  modules: string[];
  skipped: string[];
  /** ‖Δ − B·A‖ / ‖Δ‖ over the whole model. */
  relError: number;
  peftType: string;
}

export async function exportDemoLora(
  base: ModelSource,
  ft: ModelSource,
  scratch: string,
  dir: string,
  rank: number,
): Promise<DemoLora> {
  const objectDir = join(scratch, 'lowrank-ft');
  const { header, report } = await computeLowRank(base, ft, { rank }, { outDir: objectDir });
  const source = await openModel(objectDir);
  try {
    const out = join(dir, 'lora-ft-flip');
    const r = await exportLora(await lowRank.decode(source, header), out, { baseModel: 'base-v1' });
    const config = JSON.parse(await readFile(join(out, 'adapter_config.json'), 'utf8')) as { peft_type: string };
    return {
      dir: out,
      rank,
      modules: r.modules.map((m) => m.module),
      skipped: r.skipped.map((s) => s.tensor),
      relError: report.error,
      peftType: config.peft_type,
    };
  } finally {
    await source.close();
  }
}
