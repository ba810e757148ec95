import { WgitError } from '@wgit/core';
import { checkLooseObject } from '../backend/fs/objects.js';
import type { ChunkBackend, ObjectBackend } from '../backend/types.js';
import { HASH_RE } from '../chunk-file.js';
import { OID_RE } from './gitobj.js';
import { PreconditionFailed, type S3Store } from './s3-client.js';

/** How an S3 remote stores a new immutable object: a conditional PUT, or (server ignores it) HEAD then PUT. */
export type PutMode = () => Promise<boolean>;

/**
 * Put-if-absent on S3: `If-None-Match: *` where the server honours it (a 412
 * means someone stored it first); otherwise a plain PUT. A push has listed
 * the remote's chunks and objects before it sends any, so a HEAD first would
 * only double the requests: chunks and objects are content-addressed, and a
 * writer racing this one puts the same bytes under the same name.
 */
async function putIfAbsent(s3: S3Store, rel: string, bytes: Uint8Array, conditional: PutMode): Promise<boolean> {
  if (await conditional()) {
    try {
      await s3.put(rel, bytes, { ifNoneMatch: true });
      return true;
    } catch (e) {
      if (e instanceof PreconditionFailed) return false;
      throw e;
    }
  }
  await s3.put(rel, bytes);
  return true;
}

const fan = (id: string) => `${id.slice(0, 2)}/${id.slice(2)}`;

/** Chunk files under `<prefix>/wgit/chunks/ab/cdef…`, the folder layout. */
export class S3Chunks implements ChunkBackend {
  constructor(
    private readonly s3: S3Store,
    private readonly conditional: PutMode,
  ) {}

  private rel(id: string): string {
    if (!HASH_RE.test(id)) throw new WgitError('E_INVALID_ARGUMENT', `not a chunk id: ${JSON.stringify(id)}`);
    return `wgit/chunks/${fan(id)}`;
  }

  async hasChunk(id: string): Promise<boolean> {
    return (await this.s3.head(this.rel(id))) !== null;
  }

  async getChunk(id: string, maxBytes: number): Promise<Uint8Array | null> {
    return (await this.s3.get(this.rel(id), maxBytes))?.bytes ?? null;
  }

  async getChunkHead(id: string, n: number): Promise<{ head: Uint8Array; size: number } | null> {
    const r = await this.s3.get(this.rel(id), n, `bytes=0-${n - 1}`);
    return r ? { head: r.bytes.subarray(0, n), size: r.size } : null;
  }

  putChunkIfAbsent(id: string, bytes: Uint8Array): Promise<boolean> {
    return putIfAbsent(this.s3, this.rel(id), bytes, this.conditional);
  }

  async replaceChunk(id: string, bytes: Uint8Array): Promise<void> {
    await this.s3.put(this.rel(id), bytes);
  }

  async listChunks(): Promise<string[]> {
    const out: string[] = [];
    for (const o of await this.s3.list('wgit/chunks/')) {
      const m = /^wgit\/chunks\/([0-9a-f]{2})\/([0-9a-f]{62})$/.exec(o.rel);
      if (m) out.push(m[1] + m[2]);
    }
    return out.sort();
  }

  async chunkInfo(id: string): Promise<{ size: number; mtimeMs: number } | null> {
    const h = await this.s3.head(this.rel(id));
    return h ? { size: h.size, mtimeMs: h.mtimeMs } : null;
  }

  deleteChunk(id: string): Promise<void> {
    return this.s3.delete(this.rel(id));
  }
}

/** Loose git objects under `<prefix>/objects/ab/cdef…`, byte for byte what git keeps. */
export class S3Objects implements ObjectBackend {
  constructor(
    private readonly s3: S3Store,
    private readonly conditional: PutMode,
  ) {}

  private rel(oid: string): string {
    if (!OID_RE.test(oid)) throw new WgitError('E_INVALID_ARGUMENT', `not an object id: ${JSON.stringify(oid)}`);
    return `objects/${fan(oid)}`;
  }

  async hasObject(oid: string): Promise<boolean> {
    return (await this.s3.head(this.rel(oid))) !== null;
  }

  async getObject(oid: string): Promise<Uint8Array | null> {
    return (await this.s3.get(this.rel(oid)))?.bytes ?? null;
  }

  putObjectIfAbsent(oid: string, bytes: Uint8Array): Promise<boolean> {
    checkLooseObject(oid, bytes);
    return putIfAbsent(this.s3, this.rel(oid), bytes, this.conditional);
  }

  async listObjects(): Promise<string[]> {
    const out: string[] = [];
    for (const o of await this.s3.list('objects/')) {
      const m = /^objects\/([0-9a-f]{2})\/([0-9a-f]{38})$/.exec(o.rel);
      if (m) out.push(m[1] + m[2]);
    }
    return out.sort();
  }
}
