import { randomBytes } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  ListMultipartUploadsCommand,
  type S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { atomicWrite } from '../fsutil.js';
import { parallel } from './progress.js';

/**
 * Objects larger than the threshold go up as multipart uploads in parts of
 * `part` bytes (S3 wants parts of at least 5 MiB but the last). The
 * WGIT_S3_MULTIPART_THRESHOLD and WGIT_S3_MULTIPART_PART variables exist for
 * tests, which need many small parts on small models.
 */
export function multipartSizes(): { threshold: number; part: number } {
  const num = (v: string | undefined, d: number) => {
    const n = Number(v);
    return Number.isInteger(n) && n > 0 ? n : d;
  };
  return {
    threshold: num(process.env.WGIT_S3_MULTIPART_THRESHOLD, 16 * 1024 * 1024),
    part: num(process.env.WGIT_S3_MULTIPART_PART, 8 * 1024 * 1024),
  };
}

/** How many parts of one object go up at once. */
const PART_QUEUE = 4;
/** An upload journalled without its id (killed right after creating it) matches uploads started this close to it. */
const INTENT_WINDOW_MS = 5 * 60_000;

interface Entry {
  url: string;
  endpoint: string | null;
  bucket: string;
  key: string;
  uploadId: string | null;
  startedAt: number;
}

/**
 * Multipart uploads this repository started on S3 remotes, one small file
 * each under `.wgit/wgit/s3-uploads/`: written (durably) before the upload is
 * created, given the upload id once S3 returns it, and removed when the
 * upload completes or is aborted. A push killed midway leaves its entries
 * behind; the next push to that remote aborts exactly those uploads (and no
 * other pusher's), so no invisible parts are left to be billed.
 */
export class UploadJournal {
  constructor(
    readonly dir: string,
    private readonly tmpDir: string,
    private readonly url: string,
    private readonly endpoint: string | null,
  ) {}

  async begin(bucket: string, key: string): Promise<{ set(id: string): Promise<void>; done(): Promise<void> }> {
    const file = path.join(this.dir, `${Date.now()}-${randomBytes(6).toString('hex')}.json`);
    const entry: Entry = { url: this.url, endpoint: this.endpoint, bucket, key, uploadId: null, startedAt: Date.now() };
    await atomicWrite(this.tmpDir, file, JSON.stringify(entry));
    return {
      set: async (id) => atomicWrite(this.tmpDir, file, JSON.stringify({ ...entry, uploadId: id })),
      done: async () => fsp.rm(file, { force: true }),
    };
  }

  /** This remote's entries left by pushes that did not finish. */
  async stale(): Promise<{ file: string; entry: Entry }[]> {
    let names: string[];
    try {
      names = await fsp.readdir(this.dir);
    } catch {
      return [];
    }
    const out: { file: string; entry: Entry }[] = [];
    for (const n of names.filter((x) => x.endsWith('.json')).sort()) {
      const file = path.join(this.dir, n);
      try {
        const e = JSON.parse(await fsp.readFile(file, 'utf8')) as Entry;
        if (e.url === this.url && (e.endpoint ?? null) === this.endpoint && typeof e.key === 'string')
          out.push({ file, entry: e });
      } catch {
        await fsp.rm(file, { force: true }); // a torn entry from before atomic writes: nothing to abort by it
      }
    }
    return out;
  }
}

/** An upload in progress on the server. */
export interface InProgressUpload {
  key: string;
  uploadId: string;
  initiated: number;
}

/** Every multipart upload in progress under `prefix` (all pages). */
export async function listUploads(client: S3Client, bucket: string, prefix: string): Promise<InProgressUpload[]> {
  const out: InProgressUpload[] = [];
  let keyMarker: string | undefined;
  let idMarker: string | undefined;
  for (;;) {
    const r = await client.send(
      new ListMultipartUploadsCommand({
        Bucket: bucket,
        Prefix: prefix,
        KeyMarker: keyMarker,
        UploadIdMarker: idMarker,
      }),
    );
    for (const u of r.Uploads ?? [])
      if (u.Key && u.UploadId) out.push({ key: u.Key, uploadId: u.UploadId, initiated: u.Initiated?.getTime() ?? 0 });
    if (!r.IsTruncated) return out;
    keyMarker = r.NextKeyMarker;
    idMarker = r.NextUploadIdMarker;
  }
}

const gone = (e: unknown) =>
  /NoSuchUpload|NotFound/.test(String((e as Error)?.name)) ||
  (e as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode === 404;

/**
 * Aborts the uploads this repository's earlier pushes left in progress on
 * this remote, and forgets them. An entry without an upload id (killed
 * between creating the upload and recording its id) aborts the uploads of
 * that key started within minutes of it. Returns how many were aborted.
 */
export async function abortStaleUploads(client: S3Client, journal: UploadJournal): Promise<number> {
  const stale = await journal.stale();
  let aborted = 0;
  for (const { file, entry } of stale) {
    let ids: string[] = entry.uploadId ? [entry.uploadId] : [];
    if (!entry.uploadId)
      ids = (await listUploads(client, entry.bucket, entry.key))
        .filter((u) => u.key === entry.key && Math.abs(u.initiated - entry.startedAt) < INTENT_WINDOW_MS)
        .map((u) => u.uploadId);
    for (const id of ids) {
      try {
        await client.send(new AbortMultipartUploadCommand({ Bucket: entry.bucket, Key: entry.key, UploadId: id }));
        aborted++;
      } catch (e) {
        if (!gone(e)) throw e;
      }
    }
    await fsp.rm(file, { force: true });
  }
  return aborted;
}

/**
 * A multipart upload of `body`, journalled so a killed push can be cleaned
 * up: parts PART_QUEUE at a time, completed with `If-None-Match: *` when
 * asked, aborted on failure. The key shows nothing until it completes.
 */
export async function putMultipart(
  client: S3Client,
  journal: UploadJournal | null,
  bucket: string,
  key: string,
  body: Uint8Array,
  opts: { ifNoneMatch?: boolean; part: number },
): Promise<string> {
  const entry = await journal?.begin(bucket, key);
  const created = await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }));
  const uploadId = created.UploadId as string;
  await entry?.set(uploadId);
  try {
    const count = Math.ceil(body.length / opts.part);
    const parts: { ETag: string; PartNumber: number }[] = new Array(count);
    await parallel(
      Array.from({ length: count }, (_, i) => i),
      PART_QUEUE,
      async (i) => {
        const r = await client.send(
          new UploadPartCommand({
            Bucket: bucket,
            Key: key,
            UploadId: uploadId,
            PartNumber: i + 1,
            Body: body.subarray(i * opts.part, Math.min(body.length, (i + 1) * opts.part)),
          }),
        );
        parts[i] = { ETag: r.ETag ?? '', PartNumber: i + 1 };
      },
    );
    const done = await client.send(
      new CompleteMultipartUploadCommand({
        Bucket: bucket,
        Key: key,
        UploadId: uploadId,
        MultipartUpload: { Parts: parts },
        IfNoneMatch: opts.ifNoneMatch ? '*' : undefined,
      }),
    );
    await entry?.done();
    return done.ETag ?? '';
  } catch (e) {
    try {
      await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: uploadId }));
      await entry?.done();
    } catch {
      // left in the journal: the next push aborts it
    }
    throw e;
  }
}
