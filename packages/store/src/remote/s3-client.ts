import './s3-warning.js';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  type GetObjectCommandOutput,
  HeadObjectCommand,
  ListObjectsV2Command,
  type ListObjectsV2CommandOutput,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { WgitError } from '@wgit/core';
import type { RemoteConfig } from './config.js';
import { abortStaleUploads, multipartSizes, putMultipart, type UploadJournal } from './s3-multipart.js';

/** A precondition (If-None-Match / If-Match) failed: the object exists, or changed. */
export class PreconditionFailed extends Error {}

const statusOf = (e: unknown): number | undefined =>
  (e as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode;
const nameOf = (e: unknown): string => String((e as Error)?.name ?? 'Error');

/** The SDK's retries (standard mode: exponential backoff with jitter on 5xx, SlowDown, resets) then give up. */
export function maxAttempts(): number {
  const n = Number(process.env.WGIT_S3_MAX_ATTEMPTS ?? 6);
  return Number.isInteger(n) && n >= 1 && n <= 20 ? n : 6;
}

/**
 * One bucket and prefix of S3-compatible storage. Credentials come from the
 * SDK's default chain (environment, shared files, SSO, instance roles) and
 * never pass through wgit's messages: errors name the bucket, key, status
 * and error name only.
 */
export class S3Store {
  readonly client: S3Client;
  readonly url: string;

  constructor(
    cfg: RemoteConfig,
    readonly bucket: string,
    readonly prefix: string,
    /** Where this repository records its multipart uploads (none: nothing to clean up after a kill). */
    readonly journal: UploadJournal | null = null,
  ) {
    const endpoint = cfg.endpoint ?? process.env.AWS_ENDPOINT_URL_S3 ?? process.env.AWS_ENDPOINT_URL;
    this.client = new S3Client({
      region: cfg.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1',
      endpoint: endpoint || undefined,
      forcePathStyle: cfg.pathStyle ?? Boolean(endpoint),
      maxAttempts: maxAttempts(),
      retryMode: 'standard',
      requestHandler: { connectionTimeout: 10_000, requestTimeout: 60_000 },
    });
    this.url = `s3://${bucket}${prefix ? `/${prefix}` : ''}`;
  }

  key(rel: string): string {
    return this.prefix ? `${this.prefix}/${rel}` : rel;
  }

  /** Maps an SDK failure to a wgit error that names the object and never a secret. */
  fail(e: unknown, rel: string, what = 'request'): never {
    if (e instanceof WgitError || e instanceof PreconditionFailed) throw e;
    const status = statusOf(e);
    const name = nameOf(e);
    const where = `${this.url}/${rel}`;
    if (
      status === 401 ||
      status === 403 ||
      /AccessDenied|InvalidAccessKeyId|SignatureDoesNotMatch|Credentials/i.test(name)
    )
      throw new WgitError('E_REMOTE_DENIED', `${where}: ${what} refused (${name}${status ? ` ${status}` : ''})`, {
        url: this.url,
        status,
      });
    throw new WgitError(
      'E_REMOTE_UNAVAILABLE',
      `${where}: ${what} failed after ${maxAttempts()} attempts (${name}${status ? ` ${status}` : ''})`,
      { url: this.url, status },
    );
  }

  private static missing(e: unknown): boolean {
    const s = statusOf(e);
    return s === 404 || /NoSuchKey|NotFound/.test(nameOf(e));
  }

  /**
   * An object's bytes and ETag, or null when absent. `maxBytes` bounds what is
   * read (larger: E_REMOTE_CORRUPT). The SDK retries a request that fails
   * before the response; a body cut off midway (a reset connection, a short
   * read) is retried here, as a whole GET, up to the same number of attempts.
   */
  async get(
    rel: string,
    maxBytes = 64 * 1024 * 1024,
    range?: string,
  ): Promise<{ bytes: Uint8Array; etag: string; size: number } | null> {
    for (let attempt = 1; ; attempt++) {
      let r: GetObjectCommandOutput;
      try {
        r = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.key(rel), Range: range }));
      } catch (e) {
        if (S3Store.missing(e) || statusOf(e) === 416) return null;
        this.fail(e, rel, 'GET');
      }
      const size = Number(r.ContentLength ?? 0);
      if (!range && size > maxBytes) {
        (r.Body as { destroy?: () => void } | undefined)?.destroy?.();
        throw new WgitError('E_REMOTE_CORRUPT', `remote ${rel} is larger (${size} bytes) than it can be`, { key: rel });
      }
      let bytes: Uint8Array;
      try {
        bytes = (await r.Body?.transformToByteArray()) ?? new Uint8Array();
        if (r.ContentLength !== undefined && bytes.length !== size) throw new Error(`short read of ${rel}`);
      } catch (e) {
        if (attempt >= maxAttempts()) this.fail(e, rel, 'GET');
        await sleep(Math.min(100 * 2 ** attempt, 2000) * Math.random());
        continue;
      }
      if (!range && bytes.length > maxBytes)
        throw new WgitError('E_REMOTE_CORRUPT', `remote ${rel} is larger than it can be`, { key: rel });
      const total = r.ContentRange ? Number(/\/(\d+)$/.exec(r.ContentRange)?.[1] ?? bytes.length) : bytes.length;
      return { bytes, etag: r.ETag ?? '', size: total };
    }
  }

  async head(rel: string): Promise<{ size: number; mtimeMs: number; etag: string } | null> {
    try {
      const r = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.key(rel) }));
      return { size: Number(r.ContentLength ?? 0), mtimeMs: r.LastModified?.getTime() ?? 0, etag: r.ETag ?? '' };
    } catch (e) {
      if (S3Store.missing(e)) return null;
      this.fail(e, rel, 'HEAD');
    }
  }

  /**
   * One PUT (or a multipart upload for large bodies: parts are invisible
   * until the upload completes, so the key never shows partial bytes).
   * `ifNoneMatch`/`ifMatch` are sent as conditional headers; a 412 is
   * PreconditionFailed.
   */
  async put(
    rel: string,
    body: Uint8Array | string,
    cond: { ifNoneMatch?: boolean; ifMatch?: string } = {},
  ): Promise<string> {
    try {
      const mp = multipartSizes();
      if (typeof body !== 'string' && body.length > mp.threshold && !cond.ifMatch)
        return await putMultipart(this.client, this.journal, this.bucket, this.key(rel), body, {
          ifNoneMatch: cond.ifNoneMatch,
          part: mp.part,
        });
      const r = await this.client.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: this.key(rel),
          Body: body,
          IfNoneMatch: cond.ifNoneMatch ? '*' : undefined,
          IfMatch: cond.ifMatch,
        }),
      );
      return r.ETag ?? '';
    } catch (e) {
      const s = statusOf(e);
      if (s === 412 || /PreconditionFailed/.test(nameOf(e))) throw new PreconditionFailed(rel);
      if ((s === 409 || /ConditionalRequestConflict/.test(nameOf(e))) && (cond.ifMatch || cond.ifNoneMatch))
        throw new PreconditionFailed(rel);
      this.fail(e, rel, 'PUT');
    }
  }

  /** Aborts the multipart uploads an earlier, killed push from this repository left in progress. */
  async abortStaleUploads(): Promise<number> {
    if (!this.journal) return 0;
    try {
      return await abortStaleUploads(this.client, this.journal);
    } catch (e) {
      // A server without ListMultipartUploads: the entries stay for a later try.
      if (statusOf(e) === 501 || /NotImplemented/.test(nameOf(e))) return 0;
      this.fail(e, 'multipart uploads', 'abort of stale uploads');
    }
  }

  /** Deletes a key (absent is fine). `ifMatch`: only while it has that ETag, else PreconditionFailed. */
  async delete(rel: string, cond: { ifMatch?: string } = {}): Promise<void> {
    try {
      await this.client.send(
        new DeleteObjectCommand({ Bucket: this.bucket, Key: this.key(rel), IfMatch: cond.ifMatch }),
      );
    } catch (e) {
      if (cond.ifMatch && (statusOf(e) === 412 || /PreconditionFailed/.test(nameOf(e))))
        throw new PreconditionFailed(rel);
      if (S3Store.missing(e)) return;
      this.fail(e, rel, 'DELETE');
    }
  }

  /** Every key under `relPrefix` (relative to the remote's prefix), with size and time, all pages. */
  async list(relPrefix: string): Promise<{ rel: string; size: number; mtimeMs: number }[]> {
    const out: { rel: string; size: number; mtimeMs: number }[] = [];
    const full = this.key(relPrefix);
    const cut = this.prefix ? this.prefix.length + 1 : 0;
    let token: string | undefined;
    do {
      let r: ListObjectsV2CommandOutput;
      try {
        r = await this.client.send(
          new ListObjectsV2Command({ Bucket: this.bucket, Prefix: full, ContinuationToken: token }),
        );
      } catch (e) {
        if (/NoSuchBucket/.test(nameOf(e)))
          throw new WgitError('E_REMOTE_UNAVAILABLE', `bucket ${this.bucket} does not exist`, { url: this.url });
        this.fail(e, relPrefix, 'LIST');
      }
      for (const c of r.Contents ?? [])
        if (c.Key?.startsWith(full))
          out.push({ rel: c.Key.slice(cut), size: Number(c.Size ?? 0), mtimeMs: c.LastModified?.getTime() ?? 0 });
      token = r.IsTruncated ? r.NextContinuationToken : undefined;
    } while (token);
    return out;
  }
}
