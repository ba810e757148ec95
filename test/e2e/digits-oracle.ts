/**
 * Scores a digits MLP without the demo's evaluator: the CSV parsed, the tasks'
 * pixel transformations and the forward pass written here in plain f64 loops.
 * Only the split's row numbers come from the product (which images are test
 * images), and they are checked: disjoint from the training rows, together
 * every row once, 30 % of them.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { taskSplits } from '../../packages/cli/src/demo/evaluate.js';

export type Task = 'clean' | 'invert' | 'flip' | 'rot';
export type TaskScores = Record<Task, number>;
export const TASK_NAMES: Task[] = ['clean', 'invert', 'flip', 'rot'];

const CSV = path.resolve(import.meta.dirname, '../../packages/cli/data/digits.csv.gz');

let cached: { images: number[][]; labels: number[]; testRows: number[] } | null = null;

function data() {
  if (cached) return cached;
  const rows = gunzipSync(fs.readFileSync(CSV))
    .toString('utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => l.split(',').map(Number));
  const images = rows.map((r) => r.slice(0, 64));
  const labels = rows.map((r) => r[64]);
  const { testRows, trainRows } = taskSplits();
  const test = [...testRows];
  const seen = new Set([...test, ...trainRows]);
  assert.equal(seen.size, rows.length, 'train and test rows together cover every image once');
  assert.equal(test.length + trainRows.length, rows.length);
  assert.equal(test.length, Math.round(rows.length * 0.3));
  cached = { images, labels, testRows: test };
  return cached;
}

/** Pixel (r, c) of the transformed image, scaled to 0–1. */
function pixel(task: Task, img: number[], r: number, c: number): number {
  const at = (rr: number, cc: number) => img[rr * 8 + cc];
  const v =
    task === 'clean' ? at(r, c) : task === 'invert' ? 16 - at(r, c) : task === 'flip' ? at(r, 7 - c) : at(7 - c, r); // rot: 90° clockwise
  return v / 16;
}

/** Test-split accuracy on every task of the MLP in `t` (layers.<i>.weight [out, in], bias; head; ReLU between). */
export function scoreTensors(t: Map<string, Float32Array>, shapes: Map<string, number[]>): TaskScores {
  const layers: { w: Float32Array; b: Float32Array; out: number; inp: number }[] = [];
  for (let i = 0; t.has(`layers.${i}.weight`); i++) {
    const [out, inp] = shapes.get(`layers.${i}.weight`) as number[];
    layers.push({ w: t.get(`layers.${i}.weight`)!, b: t.get(`layers.${i}.bias`)!, out, inp });
  }
  const [hout, hin] = shapes.get('head.weight') as number[];
  layers.push({ w: t.get('head.weight')!, b: t.get('head.bias')!, out: hout, inp: hin });
  const { images, labels, testRows } = data();
  const scores = {} as TaskScores;
  for (const task of TASK_NAMES) {
    let right = 0;
    for (const row of testRows) {
      let x: number[] = [];
      for (let r = 0; r < 8; r++) for (let c = 0; c < 8; c++) x.push(pixel(task, images[row], r, c));
      layers.forEach((l, li) => {
        const y: number[] = [];
        for (let o = 0; o < l.out; o++) {
          let s = l.b[o];
          for (let i = 0; i < l.inp; i++) s += l.w[o * l.inp + i] * x[i];
          y.push(li < layers.length - 1 ? Math.max(0, s) : s);
        }
        x = y;
      });
      let best = 0;
      for (let k = 1; k < x.length; k++) if (x[k] > x[best]) best = k;
      if (best === labels[row]) right++;
    }
    scores[task] = right / testRows.length;
  }
  return scores;
}
