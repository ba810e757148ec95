import { randomBytes } from 'node:crypto';
import { constants as fsc } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { HOST, isPidAlive, mapFsError, parseTempName, tempName } from './fsutil.js';

/**
 * Checkout writes into a hidden temp folder beside its output and renames it
 * at the end. A process killed meanwhile leaves that folder, a partial model,
 * outside the repository where no temp-file sweep would find it. So before
 * creating the folder, checkout records it in a marker in the repository's
 * temp folder (`checkout-<host>-<pid>-<random>`, holding the folder's path),
 * and removes the marker once the folder is renamed or removed. A marker
 * whose process is gone on this host names a stale folder; status lists it
 * and gc removes it.
 */
const PURPOSE = 'checkout';

/** `.<name>.wgit-tmp-<pid>-<12 hex>`: the only folder names ever removed. */
const FOLDER_RE = /^\.(.+)\.wgit-tmp-(\d+)-[0-9a-f]{12}$/;

export function isCheckoutMarker(name: string): boolean {
  return name.startsWith(`${PURPOSE}-`) && parseTempName(name) !== null;
}

/** The temp folder a checkout into `out` (absolute) writes to: beside it, hidden, named after this process. */
export function checkoutTempFolder(out: string): string {
  return path.join(
    path.dirname(out),
    `.${path.basename(out)}.wgit-tmp-${process.pid}-${randomBytes(6).toString('hex')}`,
  );
}

/**
 * Records `folder` (not created yet) in a new marker and returns the
 * marker's path. A repository this process cannot write to (read-only
 * share) gets no marker: the checkout still runs, and cleans up after itself
 * unless killed.
 */
export async function recordCheckoutTemp(tmpDir: string, folder: string): Promise<string | null> {
  const marker = path.join(tmpDir, tempName(PURPOSE));
  let fh: fsp.FileHandle | null = null;
  try {
    await fsp.mkdir(tmpDir, { recursive: true });
    fh = await fsp.open(marker, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o644);
    await fh.writeFile(`${JSON.stringify({ path: folder })}\n`);
    await fh.datasync();
    await fh.close();
    return marker;
  } catch (e) {
    await fh?.close().catch(() => {});
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') {
      await fsp.unlink(marker).catch(() => {});
      return null;
    }
    throw mapFsError(e, marker);
  }
}

export async function releaseCheckoutTemp(marker: string | null): Promise<void> {
  if (marker) await fsp.unlink(marker).catch(() => {});
}

export interface StaleCheckout {
  /** The marker's file name in the repository's temp folder. */
  marker: string;
  /** The temp folder it records: absolute, a real folder (not a link) named like a checkout temp folder. */
  path: string;
}

interface DeadMarker {
  marker: string;
  /** The recorded folder when it is one this module may remove, else null. */
  folder: string | null;
}

/** Markers of checkouts whose process is gone; another host's markers are left alone (their process may live). */
async function deadMarkers(tmpDir: string): Promise<DeadMarker[]> {
  const host = HOST.replace(/[^A-Za-z0-9]/g, '_');
  const names = await fsp.readdir(tmpDir).catch(() => [] as string[]);
  const out: DeadMarker[] = [];
  for (const name of names.sort()) {
    if (!isCheckoutMarker(name)) continue;
    const t = parseTempName(name)!;
    if (t.host !== host || isPidAlive(t.pid)) continue;
    out.push({ marker: name, folder: await recordedFolder(path.join(tmpDir, name), t.pid) });
  }
  return out;
}

/** The folder a dead process's marker records, if it is safe to remove: the expected name, a real folder. */
async function recordedFolder(marker: string, pid: number): Promise<string | null> {
  let folder: unknown;
  try {
    folder = JSON.parse(await fsp.readFile(marker, 'utf8'))?.path;
  } catch {
    return null;
  }
  if (typeof folder !== 'string' || !path.isAbsolute(folder) || path.normalize(folder) !== folder) return null;
  const m = FOLDER_RE.exec(path.basename(folder));
  if (!m || Number(m[2]) !== pid) return null;
  try {
    const st = await fsp.lstat(folder);
    return st.isDirectory() ? folder : null;
  } catch {
    return null;
  }
}

/** Temp folders of checkouts killed on this host (their process is gone). */
export async function staleCheckoutTemps(tmpDir: string): Promise<StaleCheckout[]> {
  const out: StaleCheckout[] = [];
  for (const d of await deadMarkers(tmpDir)) if (d.folder) out.push({ marker: d.marker, path: d.folder });
  return out;
}

async function sizeOf(dir: string): Promise<number> {
  let n = 0;
  for (const e of await fsp.readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) n += await sizeOf(full);
    else if (e.isFile()) n += (await fsp.lstat(full).catch(() => ({ size: 0 }))).size;
  }
  return n;
}

/**
 * Removes the temp folders of dead checkouts, then their markers. A marker
 * that records nothing removable (the folder is gone, is a link, or has an
 * unexpected name) is removed alone; the path it names is never touched.
 */
export async function removeStaleCheckoutTemps(tmpDir: string): Promise<{ removed: string[]; bytes: number }> {
  const removed: string[] = [];
  let bytes = 0;
  for (const d of await deadMarkers(tmpDir)) {
    if (d.folder) {
      try {
        const n = await sizeOf(d.folder);
        // rm does not follow links inside the folder; it removes the links themselves.
        await fsp.rm(d.folder, { recursive: true });
        removed.push(d.folder);
        bytes += n;
      } catch (e) {
        // Keep the marker while its folder remains, so status keeps naming it.
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') continue;
      }
    }
    await fsp.unlink(path.join(tmpDir, d.marker)).catch(() => {});
  }
  return { removed, bytes };
}
