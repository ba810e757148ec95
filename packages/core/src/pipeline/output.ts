/**
 * The output folder's life, written once for every method: refuse a folder
 * that already holds files, discard what a failed run wrote, copy the side
 * files of the model the output is based on.
 */
import { mkdir, readdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { type DType, isDType, isFloatDType } from '../dtypes.js';
import { WgitError } from '../errors.js';
import { writeFileAtomic } from '../safetensors/atomic.js';
import type { ModelSource } from '../safetensors/index.js';
import { checkRelPath } from '../util/safe-path.js';

export function checkOutDtype(d: unknown): DType | undefined {
  if (d === undefined || d === null) return undefined;
  if (typeof d !== 'string' || !isDType(d) || !isFloatDType(d)) {
    throw new WgitError(
      'E_BAD_PARAM',
      `output dtype must be a float dtype (F32, F16, BF16, …), got ${JSON.stringify(d)}`,
      { param: 'outDtype' },
    );
  }
  return d;
}

/** Removes an output folder that prepareOutDir found empty or absent, after a failure. */
export async function discardOutDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true }).catch(() => {});
}

/** Refuses to write into a folder that already has files, so a mistake never mixes two models. */
export async function prepareOutDir(dir: string): Promise<void> {
  let entries: string[] = [];
  try {
    entries = await readdir(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new WgitError('E_OUT_DIR', `cannot use output folder ${dir}: ${(e as Error).message}`, { path: dir });
    }
  }
  if (entries.length > 0) throw new WgitError('E_OUTPUT_NOT_EMPTY', `output folder ${dir} is not empty`, { path: dir });
  await mkdir(dir, { recursive: true });
}

/** Copies the side files (config.json, tokenizer …) of `from` into `outDir`, atomically each. */
export async function copySideFiles(
  from: Pick<ModelSource, 'sideFiles' | 'readSideFile'>,
  outDir: string,
  skip: Set<string> = new Set(),
): Promise<string[]> {
  const copied: string[] = [];
  for (const rel of from.sideFiles) {
    checkRelPath(rel, 'side file');
    if (skip.has(rel)) continue;
    const data = await from.readSideFile(rel);
    const target = join(outDir, ...rel.split('/'));
    await mkdir(dirname(target), { recursive: true });
    await writeFileAtomic(target, data);
    copied.push(rel);
  }
  return copied;
}
