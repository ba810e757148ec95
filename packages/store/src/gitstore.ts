import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { systemErrorCode, WgitError } from '@wgit/core';
import git from 'isomorphic-git';
import { FolderObjects } from './backend/fs/objects.js';
import { atomicWrite, mapFsError } from './fsutil.js';

/**
 * The file system isomorphic-git is given. Loose objects (`objects/ab/cd…`)
 * go through the repository's object backend: reads get what it stores,
 * writes are its checked put-if-absent (temp file, fsync, hard link; an
 * object is never replaced, and bytes that do not hash to their name are
 * refused). Every other file (HEAD, config) is written temp + fsync + rename.
 */
function backendFs(gitdir: string, tmpDir: string, objects: FolderObjects) {
  const objectsDir = path.join(gitdir, 'objects');
  const objectId = (file: string): string | null => {
    const m = /^([0-9a-f]{2})[/\\]([0-9a-f]{38})$/.exec(path.relative(objectsDir, file));
    return m ? m[1] + m[2] : null;
  };
  return {
    promises: {
      readFile: async (file: string, opts?: BufferEncoding | { encoding?: BufferEncoding | null }) => {
        const oid = objectId(file);
        if (oid === null) return fsp.readFile(file, opts);
        const bytes = await objects.getObject(oid);
        if (bytes === null)
          throw Object.assign(new Error(`ENOENT: no such file, open '${file}'`), { code: 'ENOENT', path: file });
        const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
        const encoding = typeof opts === 'string' ? opts : opts?.encoding;
        return encoding ? buf.toString(encoding) : buf;
      },
      writeFile: async (file: string, data: Uint8Array | string) => {
        const oid = objectId(file);
        if (oid === null || typeof data === 'string') return atomicWrite(tmpDir, file, data);
        await objects.place(oid, data, false);
      },
      unlink: fsp.unlink,
      readdir: fsp.readdir,
      mkdir: (p: string) =>
        fsp.mkdir(p).catch((e) => {
          throw mapFsError(e, p);
        }),
      rmdir: fsp.rmdir,
      stat: fsp.stat,
      lstat: fsp.lstat,
      readlink: fsp.readlink,
      symlink: fsp.symlink,
      chmod: fsp.chmod,
    },
  };
}

/**
 * An object whose bytes cannot be read back as what its id promises (cut
 * short, overwritten, not zlib data). The library's own text is left out:
 * it asks users to report a bug in it, which this is not.
 */
function damaged(oid: string, what: string, e: unknown): WgitError {
  const errno = (e as { code?: unknown })?.code;
  if (typeof errno === 'string' && /^E[A-Z]+$/.test(errno)) {
    // The file system failed (permissions, I/O), not the object.
    return new WgitError(systemErrorCode(errno), `cannot read ${what} ${oid}: ${errno}`, { oid });
  }
  return new WgitError(
    'E_CORRUPT',
    `${what} ${oid} is damaged (truncated or overwritten on disk); wgit fsck lists what it affects`,
    { oid },
  );
}

export interface TreeEntry {
  mode: string;
  path: string;
  oid: string;
  type: 'blob' | 'tree' | 'commit';
}

export interface GitCommit {
  oid: string;
  tree: string;
  parents: string[];
  message: string;
  author: { name: string; email: string; timestamp: number; timezoneOffset: number };
  committer: { name: string; email: string; timestamp: number; timezoneOffset: number };
}

export class GitStore {
  private readonly fs: ReturnType<typeof backendFs>;
  private readonly cache: object = {};

  constructor(
    readonly gitdir: string,
    tmpDir: string,
    objects: FolderObjects = new FolderObjects(path.join(gitdir, 'objects'), tmpDir),
  ) {
    this.fs = backendFs(gitdir, tmpDir, objects);
  }

  async init(): Promise<void> {
    await git.init({ fs: this.fs, gitdir: this.gitdir, bare: true, defaultBranch: 'main' });
  }

  async writeBlob(data: Uint8Array): Promise<string> {
    try {
      return await git.writeBlob({ fs: this.fs, gitdir: this.gitdir, blob: data });
    } catch (e) {
      throw mapFsError(e, 'a git object');
    }
  }

  async writeTree(entries: TreeEntry[]): Promise<string> {
    try {
      return await git.writeTree({ fs: this.fs, gitdir: this.gitdir, tree: entries });
    } catch (e) {
      throw mapFsError(e, 'a git tree');
    }
  }

  async writeCommit(c: Omit<GitCommit, 'oid'>): Promise<string> {
    try {
      return await git.writeCommit({
        fs: this.fs,
        gitdir: this.gitdir,
        commit: { tree: c.tree, parent: c.parents, message: c.message, author: c.author, committer: c.committer },
      });
    } catch (e) {
      throw mapFsError(e, 'a git commit');
    }
  }

  private wrap(e: unknown, oid: string, what: string): never {
    const code = (e as { code?: string }).code;
    if (code === 'NotFoundError')
      throw new WgitError('E_MISSING_OBJECT', `${what} ${oid.slice(0, 12)} is missing`, { oid });
    if (code === 'ObjectTypeError')
      throw new WgitError('E_CORRUPT', `object ${oid.slice(0, 12)} is not a ${what}`, { oid });
    throw damaged(oid, what, e);
  }

  async readCommit(oid: string): Promise<GitCommit> {
    try {
      const r = await git.readCommit({ fs: this.fs, gitdir: this.gitdir, oid, cache: this.cache });
      return {
        oid: r.oid,
        tree: r.commit.tree,
        parents: r.commit.parent,
        message: r.commit.message,
        author: r.commit.author,
        committer: r.commit.committer,
      };
    } catch (e) {
      this.wrap(e, oid, 'commit');
    }
  }

  async readTree(oid: string): Promise<TreeEntry[]> {
    try {
      const r = await git.readTree({ fs: this.fs, gitdir: this.gitdir, oid, cache: this.cache });
      return r.tree as TreeEntry[];
    } catch (e) {
      this.wrap(e, oid, 'tree');
    }
  }

  async readBlob(oid: string): Promise<Uint8Array> {
    try {
      const r = await git.readBlob({ fs: this.fs, gitdir: this.gitdir, oid, cache: this.cache });
      return r.blob;
    } catch (e) {
      this.wrap(e, oid, 'blob');
    }
  }

  /**
   * The type of an object, or null when absent. isomorphic-git re-hashes
   * what it reads, so a truncated or overwritten object is E_CORRUPT here.
   */
  async typeOf(oid: string): Promise<string | null> {
    try {
      const r = await git.readObject({ fs: this.fs, gitdir: this.gitdir, oid, format: 'content', cache: this.cache });
      return r.type;
    } catch (e) {
      if ((e as { code?: string }).code === 'NotFoundError') return null;
      throw damaged(oid, 'object', e);
    }
  }

  /** Full ids of loose (and packed) objects starting with a hex prefix. */
  async idsWithPrefix(prefix: string): Promise<string[]> {
    const out = new Set<string>();
    const fan = prefix.slice(0, 2);
    const rest = prefix.slice(2);
    for (const name of await fsp.readdir(path.join(this.gitdir, 'objects', fan)).catch(() => [] as string[])) {
      if (name.startsWith(rest) && /^[0-9a-f]{38}$/.test(name)) out.add(fan + name);
    }
    if (fs.existsSync(path.join(this.gitdir, 'objects', 'pack'))) {
      try {
        out.add(await git.expandOid({ fs: this.fs, gitdir: this.gitdir, oid: prefix, cache: this.cache }));
      } catch {
        // Not found in packs, or ambiguous there: the loose scan decides.
      }
    }
    return [...out];
  }
}

/** Builds nested trees from `a/b/c → blob oid` (paths already made of valid entry names). */
export async function buildTree(store: GitStore, files: Map<string, string>): Promise<string> {
  interface Dir {
    blobs: Map<string, string>;
    dirs: Map<string, Dir>;
  }
  const root: Dir = { blobs: new Map(), dirs: new Map() };
  for (const [p, oid] of files) {
    const segs = p.split('/');
    let d = root;
    for (const s of segs.slice(0, -1)) {
      let next = d.dirs.get(s);
      if (!next) {
        next = { blobs: new Map(), dirs: new Map() };
        d.dirs.set(s, next);
      }
      d = next;
    }
    d.blobs.set(segs[segs.length - 1], oid);
  }
  const write = async (d: Dir): Promise<string> => {
    const entries: TreeEntry[] = [];
    for (const [name, oid] of d.blobs) entries.push({ mode: '100644', path: name, oid, type: 'blob' });
    for (const [name, sub] of d.dirs) entries.push({ mode: '040000', path: name, oid: await write(sub), type: 'tree' });
    return store.writeTree(entries);
  };
  return write(root);
}
