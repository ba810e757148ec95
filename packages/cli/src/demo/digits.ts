import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { WgitError } from '@wgit/core';

export const DIGIT_PIXELS = 64;
export const DIGIT_CLASSES = 10;

/** The UCI digits: `x` holds n rows of 64 pixel values (0–16), `y` the labels. */
export interface Digits {
  n: number;
  x: Float32Array;
  y: Uint8Array;
}

/** The copy shipped with the CLI (src/demo and dist/demo sit at the same depth). */
export function bundledDigitsPath(): string {
  return fileURLToPath(new URL('../../data/digits.csv.gz', import.meta.url));
}

/** Reads the gzip'd CSV; every row is checked, since the file may be replaced by a user's copy. */
export function loadDigits(path: string = bundledDigitsPath()): Digits {
  let text: string;
  try {
    text = gunzipSync(readFileSync(path)).toString('utf8');
  } catch (e) {
    throw new WgitError('E_BAD_DATASET', `cannot read digits data ${path}: ${(e as Error).message}`, { path });
  }
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  const n = lines.length;
  if (n === 0) throw new WgitError('E_BAD_DATASET', `digits data ${path} is empty`, { path });
  const x = new Float32Array(n * DIGIT_PIXELS);
  const y = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const cols = lines[i].split(',');
    if (cols.length !== DIGIT_PIXELS + 1) {
      throw new WgitError(
        'E_BAD_DATASET',
        `digits data ${path} line ${i + 1}: ${cols.length} columns, expected ${DIGIT_PIXELS + 1}`,
        { path, line: i + 1 },
      );
    }
    for (let j = 0; j <= DIGIT_PIXELS; j++) {
      const v = Number(cols[j]);
      const max = j === DIGIT_PIXELS ? DIGIT_CLASSES - 1 : 16;
      if (!Number.isInteger(v) || v < 0 || v > max) {
        throw new WgitError('E_BAD_DATASET', `digits data ${path} line ${i + 1} column ${j + 1}: bad value`, {
          path,
          line: i + 1,
          column: j + 1,
        });
      }
      if (j === DIGIT_PIXELS) y[i] = v;
      else x[i * DIGIT_PIXELS + j] = v;
    }
  }
  return { n, x, y };
}
