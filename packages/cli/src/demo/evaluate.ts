import { type ModelSource, toF32, WgitError } from '@wgit/core';
import { loadDigits } from './digits.js';
import { accuracy, layerName, type Mlp, mlpFromTensors } from './mlp.js';
import { makeTasks, TASKS, type TaskName, type TaskSplits } from './tasks.js';

let cached: TaskSplits | null = null;

export function taskSplits(): TaskSplits {
  cached ??= makeTasks(loadDigits());
  return cached;
}

/**
 * Finds the layer widths from the tensor shapes (`layers.<i>.weight` [out, in]
 * chained, then `head.weight`), so any model with this layout can be scored,
 * whatever made it: a merge, a transfer, a checkout.
 */
export function mlpDims(source: { root: string; tensors: { name: string; shape: number[] }[] }): number[] {
  const shapes = new Map(source.tensors.map((t) => [t.name, t.shape]));
  const bad = (why: string): never => {
    throw new WgitError('E_BAD_MODEL', `${source.root}: not a digits MLP (${why})`, { path: source.root });
  };
  const dims: number[] = [];
  let hidden = 0;
  while (shapes.has(`layers.${hidden}.weight`)) hidden++;
  const L = hidden + 1;
  for (let l = 0; l < L; l++) {
    const name = layerName(l, L);
    const w = shapes.get(`${name}.weight`);
    const b = shapes.get(`${name}.bias`);
    if (w?.length !== 2) return bad(`${name}.weight missing or not 2-D`);
    if (b?.length !== 1 || b[0] !== w[0]) return bad(`${name}.bias missing or not [${w[0]}]`);
    if (l === 0) dims.push(w[1]);
    else if (w[1] !== dims[l]) return bad(`${name}.weight has ${w[1]} inputs, the layer before gives ${dims[l]}`);
    dims.push(w[0]);
  }
  if (dims[0] !== 64 || dims[L] !== 10) return bad(`input ${dims[0]}, output ${dims[L]}; need 64 and 10`);
  if (source.tensors.length !== 2 * L) return bad(`${source.tensors.length} tensors, expected ${2 * L}`);
  return dims;
}

export async function loadMlp(source: ModelSource): Promise<Mlp> {
  const dims = mlpDims(source);
  const values = new Map<string, Float32Array>();
  for (const t of source.tensors) {
    if (t.dtype !== 'F32' && t.dtype !== 'BF16' && t.dtype !== 'F16') {
      throw new WgitError('E_BAD_MODEL', `${source.root}: tensor ${t.name} has dtype ${t.dtype}`, { tensor: t.name });
    }
    values.set(t.name, toF32(await source.readTensor(t.name), t.dtype));
  }
  return mlpFromTensors(dims, (n) => values.get(n));
}

export type Scores = Record<TaskName, number>;

/** Test-split accuracy (0–1) on every task. */
export function scoreMlp(m: Mlp): Scores {
  const splits = taskSplits();
  const out = {} as Scores;
  for (const t of TASKS) out[t] = accuracy(m, splits.tasks[t].test.x, splits.tasks[t].test.y);
  return out;
}

export async function evaluateModel(source: ModelSource): Promise<Scores> {
  return scoreMlp(await loadMlp(source));
}
