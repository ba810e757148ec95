import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { atomicWrite } from './fsutil.js';

/**
 * The marker a shallow fetch (`clone --depth 1`) leaves in `.wgit/wgit/shallow.json`:
 * the commits whose chunks it fetched whole. Older commits came without
 * their chunks, on purpose; fsck counts those as expected rather than as
 * damage. A full fetch brings every chunk and removes the marker.
 */
export interface ShallowMarker {
  /** Commits whose every chunk is here. */
  complete: string[];
  /** Where they came from. */
  from: string;
}

const fileOf = (gitdir: string) => path.join(gitdir, 'wgit', 'shallow.json');

export async function readShallow(gitdir: string): Promise<ShallowMarker | null> {
  let text: string;
  try {
    text = await fsp.readFile(fileOf(gitdir), 'utf8');
  } catch {
    return null;
  }
  try {
    const m = JSON.parse(text) as ShallowMarker;
    if (!Array.isArray(m.complete) || !m.complete.every((c) => /^[0-9a-f]{40}$/.test(c))) return null;
    return { complete: m.complete, from: String(m.from ?? '') };
  } catch {
    return null; // a damaged marker counts as none: fsck then reports every missing chunk
  }
}

/** Records `complete` (with what an earlier shallow fetch recorded). */
export async function markShallow(gitdir: string, tmpDir: string, complete: string[], from: string): Promise<void> {
  const prev = (await readShallow(gitdir))?.complete ?? [];
  const m: ShallowMarker = { complete: [...new Set([...prev, ...complete])].sort(), from };
  await atomicWrite(tmpDir, fileOf(gitdir), `${JSON.stringify(m, null, 2)}\n`);
}

export async function clearShallow(gitdir: string): Promise<void> {
  await fsp.rm(fileOf(gitdir), { force: true });
}
