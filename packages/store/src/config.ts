import * as fsp from 'node:fs/promises';
import { WgitError } from '@wgit/core';

/** Repository settings, `.wgit/wgit/config.json`. Fixed at init except the delta depth. */
export interface RepoConfig {
  format: 1;
  /** Bytes per chunk; boundaries fall at multiples of it inside each tensor, so a fine-tune's chunk i lines up with its parent's. */
  chunkSize: number;
  /** Longest chain of XOR deltas a read ever decodes. */
  maxDeltaDepth: number;
}

export const DEFAULT_CONFIG: RepoConfig = { format: 1, chunkSize: 4 * 1024 * 1024, maxDeltaDepth: 10 };

export function validateConfig(raw: unknown, where: string): RepoConfig {
  const c = raw as Partial<RepoConfig> | null;
  const fail = (why: string) => new WgitError('E_BAD_CONFIG', `${where}: ${why}`, { path: where });
  if (!c || typeof c !== 'object' || Array.isArray(c)) throw fail('not a JSON object');
  if (c.format !== 1) throw fail(`unsupported format ${JSON.stringify(c.format)} (this wgit reads format 1)`);
  const cs = c.chunkSize;
  // Multiples of 8 keep every element of every dtype inside one chunk; the cap keeps chunk lengths in u32.
  if (!Number.isSafeInteger(cs) || (cs as number) < 64 || (cs as number) > 1 << 30 || (cs as number) % 8 !== 0) {
    throw fail('chunkSize must be an integer multiple of 8 between 64 and 1073741824');
  }
  const d = c.maxDeltaDepth;
  if (!Number.isSafeInteger(d) || (d as number) < 0 || (d as number) > 200) {
    throw fail('maxDeltaDepth must be an integer between 0 and 200');
  }
  return { format: 1, chunkSize: cs as number, maxDeltaDepth: d as number };
}

export async function readConfig(file: string): Promise<RepoConfig> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch {
    throw new WgitError('E_BAD_CONFIG', `cannot read ${file}`, { path: file });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new WgitError('E_BAD_CONFIG', `${file} is not valid JSON`, { path: file });
  }
  return validateConfig(parsed, file);
}
