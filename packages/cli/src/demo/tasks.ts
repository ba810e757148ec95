import { DIGIT_PIXELS, type Digits } from './digits.js';
import { Rng } from './rng.js';

/**
 * The lineage's tasks are pixel transformations of the same digits, so every
 * task has the same labels and the same train/test split of images:
 * - clean: the images as they are (the bases' task);
 * - invert: 16 − x, white digits on black become black on white;
 * - flip: mirrored left to right;
 * - rot: rotated by 90° clockwise.
 * The bases never see the transformed images, so they do poorly on them.
 */
export const TASKS = ['clean', 'invert', 'flip', 'rot'] as const;
export type TaskName = (typeof TASKS)[number];

export interface Split {
  x: Float32Array;
  y: Uint8Array;
}

export interface TaskData {
  train: Split;
  test: Split;
}

/** The train/test split does not depend on the lineage seed, so accuracies of different seeds are comparable. */
const SPLIT_SEED = 20_250_101;
export const TEST_FRACTION = 0.3;

function transformPixel(task: TaskName, img: Float32Array, off: number, r: number, c: number): number {
  switch (task) {
    case 'clean':
      return img[off + r * 8 + c];
    case 'invert':
      return 16 - img[off + r * 8 + c];
    case 'flip':
      return img[off + r * 8 + (7 - c)];
    case 'rot':
      return img[off + (7 - c) * 8 + r];
  }
}

function take(d: Digits, rows: Uint32Array, task: TaskName): Split {
  const x = new Float32Array(rows.length * DIGIT_PIXELS);
  const y = new Uint8Array(rows.length);
  for (let k = 0; k < rows.length; k++) {
    const off = rows[k] * DIGIT_PIXELS;
    for (let r = 0; r < 8; r++) {
      for (let c = 0; c < 8; c++) x[k * DIGIT_PIXELS + r * 8 + c] = transformPixel(task, d.x, off, r, c) / 16;
    }
    y[k] = d.y[rows[k]];
  }
  return { x, y };
}

export interface TaskSplits {
  trainRows: Uint32Array;
  testRows: Uint32Array;
  tasks: Record<TaskName, TaskData>;
}

export function makeTasks(d: Digits): TaskSplits {
  const order = new Uint32Array(d.n);
  for (let i = 0; i < d.n; i++) order[i] = i;
  new Rng(SPLIT_SEED).shuffle(order);
  const nTest = Math.round(d.n * TEST_FRACTION);
  const testRows = order.slice(0, nTest);
  const trainRows = order.slice(nTest);
  const tasks = {} as Record<TaskName, TaskData>;
  for (const t of TASKS) tasks[t] = { train: take(d, trainRows, t), test: take(d, testRows, t) };
  return { trainRows, testRows, tasks };
}

/** The first `fraction` of a split's rows (the split is already shuffled). */
export function head(s: Split, fraction: number): Split {
  const n = Math.round(s.y.length * fraction);
  return { x: s.x.subarray(0, n * DIGIT_PIXELS), y: s.y.subarray(0, n) };
}
