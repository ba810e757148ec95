import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';

/**
 * s3rver 3.7.1 is a file-system S3: an overwrite truncates the object file
 * and rewrites it in place, so a GET racing a PUT of the same key can read a
 * short or empty object (real S3 PUTs are atomic); a DELETE removes parent
 * folders that a concurrent PUT has just created; a LIST stats files that a
 * concurrent DELETE removes (a 500); and ListMultipartUploads and
 * AbortMultipartUpload are not implemented. This makes it behave as S3 does
 * for what wgit relies on, without touching its request handling:
 *
 * - every request on one key runs alone (reads and writes of a key are
 *   atomic), and objects are written to a temporary file then renamed, so a
 *   GET still streaming the old bytes keeps reading them;
 * - LIST runs while no write runs (it sees whole objects only);
 * - DELETE leaves folders in place (S3 has none);
 * - `GET /bucket?uploads` and `DELETE /bucket/key?uploadId=` list and abort
 *   multipart uploads, from s3rver's own upload folders.
 */

type Ctx = {
  method: string;
  path: string;
  query: Record<string, string | string[] | undefined>;
  status: number;
  type: string;
  body: unknown;
};
type Next = () => Promise<void>;
interface Store {
  rootDirectory: string;
  getResourcePath(bucket: string, key: string | undefined, resource: string): string;
  putMetadata(bucket: string, key: string, metadata: unknown, md5: string): Promise<void>;
  putObject(o: { bucket: string; key: string; content: Buffer | NodeJS.ReadableStream; metadata: unknown }): Promise<{
    size: number;
    md5: string;
  }>;
  deleteObject(bucket: string, key: string): Promise<void>;
}

/** Many holders of `shared`, or one of `exclusive`; first come, first served. */
class Gate {
  private shared = 0;
  private exclusive = false;
  private readonly queue: { excl: boolean; go: () => void }[] = [];

  acquire(excl: boolean): Promise<void> {
    return new Promise((go) => {
      this.queue.push({ excl, go });
      this.pump();
    });
  }

  release(excl: boolean): void {
    if (excl) this.exclusive = false;
    else this.shared--;
    this.pump();
  }

  private pump(): void {
    while (this.queue.length > 0 && !this.exclusive) {
      const head = this.queue[0];
      if (head.excl && this.shared > 0) return;
      this.queue.shift();
      if (head.excl) this.exclusive = true;
      else this.shared++;
      head.go();
      if (head.excl) return;
    }
  }
}

const xml = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export function makeConsistent(server: { middleware: unknown[]; store: Store }): void {
  const store = server.store;
  const keyLocks = new Map<string, Promise<void>>();
  const gate = new Gate();

  const lockKey = async (key: string): Promise<() => void> => {
    const prev = keyLocks.get(key) ?? Promise.resolve();
    let done!: () => void;
    const mine = new Promise<void>((r) => {
      done = r;
    });
    const chained = prev.then(() => mine);
    keyLocks.set(key, chained);
    await prev;
    return () => {
      done();
      if (keyLocks.get(key) === chained) keyLocks.delete(key);
    };
  };

  store.putObject = async (o) => {
    const file = store.getResourcePath(o.bucket, o.key, 'object');
    fs.mkdirSync(path.dirname(file), { recursive: true });
    const tmp = `${file}.tmp-${randomBytes(6).toString('hex')}`;
    const md5 = createHash('md5');
    let size = 0;
    const count = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        md5.update(chunk);
        size += chunk.length;
        cb(null, chunk);
      },
    });
    const src = Buffer.isBuffer(o.content) ? [o.content] : o.content;
    await pipeline(src as NodeJS.ReadableStream, count, fs.createWriteStream(tmp));
    const digest = md5.digest('hex');
    await store.putMetadata(o.bucket, o.key, o.metadata, digest);
    fs.renameSync(tmp, file);
    return { size, md5: digest };
  };

  store.deleteObject = async (bucket, key) => {
    for (const r of ['object', 'object.md5', 'metadata.json'])
      fs.rmSync(store.getResourcePath(bucket, key, r), { force: true });
  };

  const uploadsDir = (bucket: string) => store.getResourcePath(bucket, undefined, 'uploads');

  const multipart = (ctx: Ctx, bucket: string, key: string): boolean => {
    if (ctx.method === 'GET' && !key && 'uploads' in ctx.query) {
      const prefix = String(ctx.query.prefix ?? '');
      const dir = uploadsDir(bucket);
      const rows: string[] = [];
      for (const id of fs.existsSync(dir) ? fs.readdirSync(dir).sort() : []) {
        let k: string;
        let st: fs.Stats;
        try {
          k = fs.readFileSync(path.join(dir, id, 'key'), 'utf8');
          st = fs.statSync(path.join(dir, id));
        } catch {
          continue;
        }
        if (k.startsWith(prefix))
          rows.push(
            `<Upload><Key>${xml(k)}</Key><UploadId>${xml(id)}</UploadId><Initiated>${st.mtime.toISOString()}</Initiated><StorageClass>STANDARD</StorageClass></Upload>`,
          );
      }
      ctx.status = 200;
      ctx.type = 'application/xml';
      ctx.body = `<?xml version="1.0" encoding="UTF-8"?>\n<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Bucket>${xml(bucket)}</Bucket><Prefix>${xml(prefix)}</Prefix><MaxUploads>1000</MaxUploads><IsTruncated>false</IsTruncated>${rows.join('')}</ListMultipartUploadsResult>`;
      return true;
    }
    if (ctx.method === 'DELETE' && key && typeof ctx.query.uploadId === 'string') {
      const dir = path.join(uploadsDir(bucket), path.basename(ctx.query.uploadId));
      if (!fs.existsSync(dir)) {
        ctx.status = 404;
        ctx.type = 'application/xml';
        ctx.body =
          '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchUpload</Code><Message>The specified upload does not exist.</Message></Error>';
        return true;
      }
      fs.rmSync(dir, { recursive: true, force: true });
      ctx.status = 204;
      ctx.body = null;
      return true;
    }
    return false;
  };

  server.middleware.unshift(async (ctx: Ctx, next: Next) => {
    const [, bucket = '', ...rest] = ctx.path.split('/');
    const key = decodeURIComponent(rest.join('/'));
    const write = ctx.method === 'PUT' || ctx.method === 'POST' || ctx.method === 'DELETE';
    const list = ctx.method === 'GET' && !key;
    if (list || write) await gate.acquire(list);
    try {
      if (multipart(ctx, bucket, key)) return;
      // Parts of one upload go up in parallel; they do not touch the key's object.
      const part = ctx.method === 'PUT' && 'uploadId' in ctx.query;
      const unlock = key && !part ? await lockKey(`${bucket}/${key}`) : () => {};
      try {
        await next();
      } finally {
        unlock();
      }
    } finally {
      if (list || write) gate.release(list);
    }
  });
}
