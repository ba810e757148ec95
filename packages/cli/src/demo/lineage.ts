import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic, writeSafetensors } from '@wgit/core';
import { loadDigits } from './digits.js';
import { cloneMlp, initMlp, type Mlp, train } from './mlp.js';
import { Rng } from './rng.js';
import { head, makeTasks, type Split, type TaskName, type TaskSplits } from './tasks.js';

/** Widths, input first: three 128-wide hidden blocks (`layers.0-2`) and a 10-way `head`. */
export const DEFAULT_DIMS = [64, 128, 128, 128, 10];
export const DEFAULT_SEED = 1;
export const MODEL_TYPE = 'wgit-digits-mlp';

/**
 * The lineage, in the order it is trained. Fine-tunes start from a base and
 * see only their task's images; they keep the base's classification head
 * frozen (as CLIP fine-tunes keep the zero-shot head), so their updates sit
 * in the blocks, where LiNeS acts.
 */
export const LINEAGE = [
  {
    name: 'base-v1',
    parent: null,
    task: 'clean',
    about: 'base release 1: trained on half of the clean training images',
  },
  {
    name: 'base-v2',
    parent: 'base-v1',
    task: 'clean',
    about: 'base release 2: base-v1 trained further on all clean images',
  },
  { name: 'ft-invert', parent: 'base-v1', task: 'invert', about: 'base-v1 fine-tuned on inverted images (16 − x)' },
  { name: 'ft-flip', parent: 'base-v1', task: 'flip', about: 'base-v1 fine-tuned on left-right mirrored images' },
  { name: 'ft-rot', parent: 'base-v1', task: 'rot', about: 'base-v1 fine-tuned on images rotated by 90°' },
  {
    name: 'v2-ft-invert',
    parent: 'base-v2',
    task: 'invert',
    about: 'base-v2 fine-tuned directly on inverted images (the reference for transfer)',
  },
] as const satisfies readonly { name: string; parent: string | null; task: TaskName; about: string }[];

export type LineageName = (typeof LINEAGE)[number]['name'];

export interface LineageModel {
  name: LineageName;
  parent: LineageName | null;
  task: TaskName;
  about: string;
  /** Model folder: model.safetensors + config.json. */
  dir: string;
}

export interface Lineage {
  dir: string;
  seed: number;
  dims: number[];
  models: Record<LineageName, LineageModel>;
  trainMs: number;
}

/** Training schedule: epochs and Adam learning rate per stage, mini-batches of 32. */
export interface Schedule {
  baseV1: { fraction: number; epochs: number; lr: number };
  baseV2: { epochs: number; lr: number };
  fineTune: { epochs: number; lr: number };
}

export const DEFAULT_SCHEDULE: Schedule = {
  baseV1: { fraction: 0.5, epochs: 12, lr: 3e-3 },
  baseV2: { epochs: 3, lr: 1e-3 },
  fineTune: { epochs: 4, lr: 1e-3 },
};

const BATCH = 32;

/** Trains the whole lineage in memory; every random draw comes from one seeded stream, in a fixed order. */
export function trainLineage(
  seed: number,
  dims: number[],
  splits: TaskSplits,
  schedule: Schedule = DEFAULT_SCHEDULE,
): Record<LineageName, Mlp> {
  const { baseV1: BASE_V1, baseV2: BASE_V2, fineTune: FINE_TUNE } = schedule;
  const rng = new Rng(seed);
  const frozenHead = new Set(['head.weight', 'head.bias']);
  const models = {} as Record<LineageName, Mlp>;
  const clean = splits.tasks.clean.train;
  for (const spec of LINEAGE) {
    let m: Mlp;
    let data: Split;
    if (spec.parent === null) {
      m = initMlp(dims, rng);
      data = head(clean, BASE_V1.fraction);
      train(m, data.x, data.y, { epochs: BASE_V1.epochs, lr: BASE_V1.lr, batch: BATCH, rng });
    } else if (spec.task === 'clean') {
      m = cloneMlp(models[spec.parent]);
      train(m, clean.x, clean.y, { epochs: BASE_V2.epochs, lr: BASE_V2.lr, batch: BATCH, rng });
    } else {
      m = cloneMlp(models[spec.parent]);
      data = splits.tasks[spec.task].train;
      train(m, data.x, data.y, { epochs: FINE_TUNE.epochs, lr: FINE_TUNE.lr, batch: BATCH, rng, frozen: frozenHead });
    }
    models[spec.name] = m;
  }
  return models;
}

/** Writes one model as a folder a user's model would look like: model.safetensors (f32) and config.json. */
export async function saveMlp(m: Mlp, dir: string, config: Record<string, unknown>): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeSafetensors(
    join(dir, 'model.safetensors'),
    m.params.map((p) => ({
      name: p.name,
      dtype: 'F32' as const,
      shape: p.shape,
      data: new Uint8Array(p.data.buffer, p.data.byteOffset, p.data.byteLength),
    })),
    { format: 'pt' },
  );
  const cfg = {
    model_type: MODEL_TYPE,
    dims: m.dims,
    activation: 'relu',
    input: '8x8 pixels / 16, row-major',
    ...config,
  };
  await writeFileAtomic(join(dir, 'config.json'), `${JSON.stringify(cfg, null, 2)}\n`);
}

/** Trains the lineage and writes each model to `<dir>/<name>/`. */
export async function buildLineage(opts: { dir: string; seed?: number; dims?: number[] }): Promise<Lineage> {
  const seed = opts.seed ?? DEFAULT_SEED;
  const dims = opts.dims ?? DEFAULT_DIMS;
  const t0 = performance.now();
  const splits = makeTasks(loadDigits());
  const trained = trainLineage(seed, dims, splits);
  const trainMs = performance.now() - t0;
  const models = {} as Record<LineageName, LineageModel>;
  for (const spec of LINEAGE) {
    const dir = join(opts.dir, spec.name);
    await saveMlp(trained[spec.name], dir, { name: spec.name, parent: spec.parent, task: spec.task, seed });
    models[spec.name] = { ...spec, dir };
  }
  return { dir: opts.dir, seed, dims: [...dims], models, trainMs };
}
