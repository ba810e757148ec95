import { createHash } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { inflateSync } from 'node:zlib';
import { WgitError } from '@wgit/core/errors';
import { fsyncDir, mapFsError, TempFile, tempName } from '../../fsutil.js';
import type { ObjectBackend } from '../types.js';

const OID_RE = /^[0-9a-f]{40}$/;

/**
 * Checks that loose object bytes are what `oid` names: they inflate to
 * `<type> <size>\0<content>` whose sha1 is the id. A receiver runs this
 * before storing, so a damaged transfer never lands under a good name.
 */
export function checkLooseObject(oid: string, bytes: Uint8Array): void {
  let body: Buffer;
  try {
    body = inflateSync(bytes);
  } catch {
    throw new WgitError('E_CORRUPT', `object ${oid.slice(0, 12)} is not zlib data`, { oid });
  }
  const nul = body.indexOf(0);
  const head = nul > 0 ? body.toString('latin1', 0, nul) : '';
  const m = /^(blob|tree|commit|tag) (\d+)$/.exec(head);
  if (!m || Number(m[2]) !== body.length - nul - 1)
    throw new WgitError('E_CORRUPT', `object ${oid.slice(0, 12)} has a damaged header`, { oid });
  if (createHash('sha1').update(body).digest('hex') !== oid)
    throw new WgitError('E_CORRUPT', `object ${oid.slice(0, 12)} does not match its id`, { oid });
}

/**
 * Git loose objects in `<gitdir>/objects/ab/cdef…`, the files isomorphic-git
 * reads and writes (GitStore). Packs are not listed: wgit never writes them.
 */
export class FolderObjects implements ObjectBackend {
  constructor(
    readonly dir: string,
    readonly tmpDir: string,
  ) {}

  pathOf(oid: string): string {
    if (!OID_RE.test(oid)) throw new WgitError('E_INVALID_ARGUMENT', `not an object id: ${JSON.stringify(oid)}`);
    return path.join(this.dir, oid.slice(0, 2), oid.slice(2));
  }

  async hasObject(oid: string): Promise<boolean> {
    try {
      return (await fsp.lstat(this.pathOf(oid))).isFile();
    } catch {
      return false;
    }
  }

  async getObject(oid: string): Promise<Uint8Array | null> {
    try {
      return await fsp.readFile(this.pathOf(oid));
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return null;
      throw mapFsError(e, this.pathOf(oid));
    }
  }

  putObjectIfAbsent(oid: string, bytes: Uint8Array): Promise<boolean> {
    return this.place(oid, bytes, true);
  }

  /**
   * Checks and places one loose object (hard link: an object already there
   * is never replaced). `syncDir` false leaves the folder's fsync to the
   * caller, for a writer that places many objects before it moves a ref.
   */
  async place(oid: string, bytes: Uint8Array, syncDir: boolean): Promise<boolean> {
    checkLooseObject(oid, bytes);
    const target = this.pathOf(oid);
    if (await this.hasObject(oid)) return false;
    const dir = path.dirname(target);
    await fsp.mkdir(dir, { recursive: true }).catch((e) => {
      throw mapFsError(e, dir);
    });
    const tmp = path.join(this.tmpDir, tempName('object'));
    const f = await TempFile.create(tmp, target);
    try {
      await f.write(bytes);
      await f.finish();
      // A hard link, like chunks: an object some ref already reaches is never replaced.
      await fsp.link(tmp, target).catch((e: NodeJS.ErrnoException) => {
        if (e.code !== 'EEXIST') throw e;
      });
    } catch (e) {
      await f.abort();
      throw mapFsError(e, target);
    }
    await fsp.rm(tmp, { force: true });
    if (syncDir) await fsyncDir(dir);
    return true;
  }

  async listObjects(): Promise<string[]> {
    const out: string[] = [];
    for (const fan of await fsp.readdir(this.dir).catch(() => [] as string[])) {
      if (!/^[0-9a-f]{2}$/.test(fan)) continue;
      for (const rest of await fsp.readdir(path.join(this.dir, fan)).catch(() => [] as string[])) {
        const oid = fan + rest;
        if (OID_RE.test(oid)) out.push(oid);
      }
    }
    return out.sort();
  }
}
