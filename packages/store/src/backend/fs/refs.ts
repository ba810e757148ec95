import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { type ErrorCode, WgitError } from '@wgit/core';
import { atomicWrite, mapFsError } from '../../fsutil.js';
import { formatTz, type Identity } from '../../identity.js';
import type { RefBackend, RefLogLine, ReflogEntry } from '../types.js';
import { LockFile } from './lock.js';

/**
 * Loose refs in git's own format (`<40 hex>\n`), written by us rather than
 * isomorphic-git because its ref writes are plain overwrites: we take
 * `<ref>.lock` with O_EXCL, re-check the old value under the lock, append
 * the reflog line, then rename a fully written temp file over the ref.
 */
export const ZERO_OID = '0'.repeat(40);
const OID_RE = /^[0-9a-f]{40}$/;

export interface RefContext {
  gitdir: string;
  tmpDir: string;
  lockWaitMs?: number;
}

function refPath(gitdir: string, fullname: string): string {
  return path.join(gitdir, ...fullname.split('/'));
}

async function readPackedRefs(gitdir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  let text: string;
  try {
    text = await fsp.readFile(path.join(gitdir, 'packed-refs'), 'utf8');
  } catch {
    return out;
  }
  for (const line of text.split('\n')) {
    const m = /^([0-9a-f]{40}) (refs\/\S+)$/.exec(line);
    if (m) out.set(m[2], m[1]);
  }
  return out;
}

/** The object id a ref points to, or null when it does not exist. */
export async function readRef(gitdir: string, fullname: string): Promise<string | null> {
  let text: string;
  try {
    text = await fsp.readFile(refPath(gitdir, fullname), 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR') {
      return (await readPackedRefs(gitdir)).get(fullname) ?? null;
    }
    throw e;
  }
  const oid = text.trim();
  if (!OID_RE.test(oid))
    throw new WgitError('E_CORRUPT', `ref ${fullname} does not hold an object id`, { ref: fullname });
  return oid;
}

/** The branch HEAD names (`refs/heads/x`); wgit keeps HEAD symbolic. */
export async function readHeadTarget(gitdir: string): Promise<string> {
  const file = path.join(gitdir, 'HEAD');
  let text: string;
  try {
    text = (await fsp.readFile(file, 'utf8')).trim();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'is missing' : code === 'EISDIR' ? 'is a folder' : `cannot be read (${code})`;
    throw new WgitError(
      'E_CORRUPT',
      `the repository is damaged: ${file} ${why}; it should hold "ref: refs/heads/<branch>"`,
      { path: file },
    );
  }
  const m = /^ref: (refs\/heads\/\S+)$/.exec(text);
  if (!m)
    throw new WgitError(
      'E_CORRUPT',
      `${file} is not a symbolic ref to a branch: ${JSON.stringify(text.slice(0, 60))}`,
      {
        path: file,
      },
    );
  return m[1];
}

export async function listRefs(gitdir: string, prefix: 'refs/heads/' | 'refs/tags/'): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const [name, oid] of await readPackedRefs(gitdir)) if (name.startsWith(prefix)) out.set(name, oid);
  const walk = async (dir: string, rel: string): Promise<void> => {
    let entries: import('node:fs').Dirent[];
    try {
      entries = await fsp.readdir(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      if (e.isDirectory()) await walk(path.join(dir, e.name), `${rel}${e.name}/`);
      else if (e.isFile() && !e.name.endsWith('.lock')) {
        const full = `${rel}${e.name}`;
        const oid = await readRef(gitdir, full);
        if (oid) out.set(full, oid);
      }
    }
  };
  await walk(refPath(gitdir, prefix.slice(0, -1)), prefix);
  return out;
}

const shortRef = (full: string) => full.replace(/^refs\/(heads|tags)\//, '');
const refKind = (full: string) => (full.startsWith('refs/tags/') ? 'tag' : 'branch');

/** The first ref (or ref being written, `.lock`) in a folder of refs named `name/…`. */
async function firstRefUnder(dir: string, name: string): Promise<string | null> {
  let entries: import('node:fs').Dirent[];
  try {
    entries = await fsp.readdir(dir, { withFileTypes: true });
  } catch {
    return null;
  }
  for (const e of entries) {
    if (e.isDirectory()) {
      const below = await firstRefUnder(path.join(dir, e.name), `${name}/${e.name}`);
      if (below) return below;
    } else return `${name}/${e.name.replace(/\.lock$/, '')}`;
  }
  return null;
}

/** Removes a folder that holds nothing but empty folders (what deleting refs leaves behind). */
async function removeEmptyDirs(dir: string): Promise<void> {
  let entries: import('node:fs').Dirent[];
  try {
    entries = await fsp.readdir(dir, { withFileTypes: true });
  } catch {
    return;
  }
  for (const e of entries) if (e.isDirectory()) await removeEmptyDirs(path.join(dir, e.name));
  await fsp.rmdir(dir).catch(() => {});
}

/**
 * The existing ref that keeps `fullname` from being created, or null: git
 * keeps refs as files, so `x` and `x/y` cannot both exist. Checks loose and
 * packed refs both ways (a prefix of the name, a ref under it); folders left
 * empty by deleted refs are removed so they do not block the new one.
 */
export async function refNameConflict(gitdir: string, fullname: string): Promise<string | null> {
  const parts = fullname.split('/');
  const packed = await readPackedRefs(gitdir);
  for (let i = 3; i < parts.length; i++) {
    const prefix = parts.slice(0, i).join('/');
    if (packed.has(prefix)) return prefix;
    const st = await fsp.lstat(refPath(gitdir, prefix)).catch(() => null);
    if (st && !st.isDirectory()) return prefix;
  }
  for (const name of packed.keys()) if (name.startsWith(`${fullname}/`)) return name;
  const below = await firstRefUnder(refPath(gitdir, fullname), fullname);
  if (below) return below;
  await removeEmptyDirs(refPath(gitdir, fullname));
  await removeEmptyDirs(path.join(gitdir, 'logs', ...parts));
  return null;
}

/** Throws E_BAD_REF_NAME when `fullname` cannot be created next to the existing refs. */
export async function checkRefNameFree(gitdir: string, fullname: string): Promise<void> {
  const other = await refNameConflict(gitdir, fullname);
  if (other === null) return;
  throw new WgitError(
    'E_BAD_REF_NAME',
    `cannot create ${refKind(fullname)} ${JSON.stringify(shortRef(fullname))}: ${refKind(other)} ${JSON.stringify(shortRef(other))} exists, and a ${refKind(fullname)} name cannot also be a folder of other names`,
    { ref: fullname, conflictsWith: other },
  );
}

export type { ReflogEntry };

export async function readReflog(gitdir: string, fullname: string): Promise<ReflogEntry[]> {
  let text: string;
  try {
    text = await fsp.readFile(path.join(gitdir, 'logs', ...fullname.split('/')), 'utf8');
  } catch {
    return [];
  }
  const out: ReflogEntry[] = [];
  for (const line of text.split('\n')) {
    const m = /^([0-9a-f]{40}) ([0-9a-f]{40}) (.*) <([^>]*)> (\d+) ([+-]\d{4})(?:\t(.*))?$/.exec(line);
    if (m)
      out.push({
        old: m[1],
        new: m[2],
        name: m[3],
        email: m[4],
        timestamp: Number(m[5]),
        tz: m[6],
        message: m[7] ?? '',
      });
  }
  return out;
}

/**
 * Appends one reflog line. A writer killed mid-append leaves a line without
 * its newline; we hold the ref lock, so it is safe to cut that tail first.
 */
async function appendReflog(ctx: RefContext, fullname: string, line: string): Promise<number> {
  const file = path.join(ctx.gitdir, 'logs', ...fullname.split('/'));
  let sizeBefore = -1;
  try {
    await fsp.mkdir(path.dirname(file), { recursive: true });
    const fh = await fsp.open(file, 'a+');
    try {
      const st = await fh.stat();
      sizeBefore = st.size;
      if (st.size > 0) {
        const tail = Buffer.alloc(Math.min(st.size, 4096));
        await fh.read(tail, 0, tail.length, st.size - tail.length);
        if (tail[tail.length - 1] !== 0x0a) {
          const nl = tail.lastIndexOf(0x0a);
          const keep = nl < 0 ? (st.size > tail.length ? st.size - tail.length : 0) : st.size - tail.length + nl + 1;
          await fh.truncate(keep);
          sizeBefore = keep;
        }
      }
      await fh.write(line);
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch (e) {
    if (sizeBefore >= 0) await fsp.truncate(file, sizeBefore).catch(() => {});
    throw mapFsError(e, file);
  }
  return sizeBefore;
}

export interface UpdateRefOptions {
  /** undefined: no check; null: the ref must not exist; a string: it must hold that id. */
  expectedOld?: string | null;
  message: string;
  identity: Identity;
  /** Error raised when the expectation fails. */
  movedCode?: ErrorCode;
}

/** Compare-and-swap update of one ref (newOid null deletes it). Returns the previous value. */
export async function updateRef(
  ctx: RefContext,
  fullname: string,
  newOid: string | null,
  opts: UpdateRefOptions,
): Promise<string | null> {
  if (newOid !== null && !OID_RE.test(newOid)) throw new Error(`updateRef: bad object id ${newOid}`);
  const file = refPath(ctx.gitdir, fullname);
  if (newOid !== null) await checkRefNameFree(ctx.gitdir, fullname);
  await fsp.mkdir(path.dirname(file), { recursive: true }).catch((e) => {
    throw mapFsError(e, file);
  });
  const lock = await LockFile.acquire(`${file}.lock`, { what: fullname, waitMs: ctx.lockWaitMs });
  try {
    const current = await readRef(ctx.gitdir, fullname);
    if (opts.expectedOld !== undefined && current !== opts.expectedOld) {
      const short = (x: string | null) => (x ? x.slice(0, 12) : 'nothing');
      throw new WgitError(
        opts.movedCode ?? 'E_BRANCH_MOVED',
        `${fullname} moved: expected ${short(opts.expectedOld)}, found ${short(current)}; re-run the command`,
        { ref: fullname, expected: opts.expectedOld, found: current },
      );
    }
    if (newOid === null) {
      if (current === null) return null;
      await fsp.unlink(file).catch((e) => {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      });
      await removePacked(ctx, fullname);
      await fsp.unlink(path.join(ctx.gitdir, 'logs', ...fullname.split('/'))).catch(() => {});
      return current;
    }
    const id = opts.identity;
    const msg = opts.message.replace(/[\n\t]/g, ' ');
    const line = `${current ?? ZERO_OID} ${newOid} ${id.name} <${id.email}> ${id.timestamp} ${formatTz(id.timezoneOffset)}\t${msg}\n`;
    // Reflog before the ref, as git does: a crash in between leaves an extra
    // reflog line (which only keeps objects alive), never a ref without history.
    const logSize = await appendReflog(ctx, fullname, line);
    try {
      await atomicWrite(ctx.tmpDir, file, `${newOid}\n`);
    } catch (e) {
      // The ref did not move (a full disk, say): its reflog must not claim it did.
      await fsp.truncate(path.join(ctx.gitdir, 'logs', ...fullname.split('/')), logSize).catch(() => {});
      throw e;
    }
    return current;
  } finally {
    await lock.release();
  }
}

async function removePacked(ctx: RefContext, fullname: string): Promise<void> {
  const packed = path.join(ctx.gitdir, 'packed-refs');
  let text: string;
  try {
    text = await fsp.readFile(packed, 'utf8');
  } catch {
    return;
  }
  const lines = text.split('\n');
  const keep: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (lines[i].endsWith(` ${fullname}`)) {
      if (lines[i + 1]?.startsWith('^')) i++;
      continue;
    }
    keep.push(lines[i]);
  }
  if (keep.length === lines.length) return;
  const lock = await LockFile.acquire(`${packed}.lock`, { what: 'packed-refs', waitMs: ctx.lockWaitMs });
  try {
    await atomicWrite(ctx.tmpDir, packed, keep.join('\n'));
  } finally {
    await lock.release();
  }
}

/** Full names of the refs with a reflog under `logs/` (a deleted ref has none). */
export async function listReflogs(gitdir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string, rel: string): Promise<void> => {
    for (const e of await fsp.readdir(dir, { withFileTypes: true }).catch(() => [])) {
      if (e.isDirectory()) await walk(path.join(dir, e.name), `${rel}${e.name}/`);
      else out.push(`${rel}${e.name}`);
    }
  };
  await walk(path.join(gitdir, 'logs'), '');
  return out.sort();
}

/** The refs of a bare git folder, moved under `<ref>.lock` (see updateRef). */
export class FolderRefs implements RefBackend {
  constructor(private readonly ctx: RefContext) {}

  readHead(): Promise<string> {
    return readHeadTarget(this.ctx.gitdir);
  }

  /** Points HEAD at a branch (`refs/heads/x`), replacing the file atomically; the branch need not exist yet. */
  async writeHead(branch: string): Promise<void> {
    if (!branch.startsWith('refs/heads/'))
      throw new WgitError('E_INTERNAL', `HEAD must name a branch, got ${branch}`, { ref: branch });
    await atomicWrite(this.ctx.tmpDir, path.join(this.ctx.gitdir, 'HEAD'), `ref: ${branch}\n`);
  }

  /** E_BAD_REF_NAME when another ref's name is a folder of this one or the reverse; checked before a write starts. */
  checkNameFree(name: string): Promise<void> {
    return checkRefNameFree(this.ctx.gitdir, name);
  }

  readRef(name: string): Promise<string | null> {
    return readRef(this.ctx.gitdir, name);
  }

  listRefs(prefix: 'refs/heads/' | 'refs/tags/'): Promise<Map<string, string>> {
    return listRefs(this.ctx.gitdir, prefix);
  }

  compareAndSwapRef(
    name: string,
    expected: string | null,
    next: string | null,
    log: RefLogLine,
    opts: { movedCode?: ErrorCode } = {},
  ): Promise<string | null> {
    return updateRef(this.ctx, name, next, { expectedOld: expected, ...log, movedCode: opts.movedCode });
  }

  readReflog(name: string): Promise<ReflogEntry[]> {
    return readReflog(this.ctx.gitdir, name);
  }

  listReflogs(): Promise<string[]> {
    return listReflogs(this.ctx.gitdir);
  }
}
