import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
// @ts-expect-error s3rver ships no types
import S3rver from 's3rver';
import { makeConsistent } from './s3rver-consistent.js';

/** Credentials s3rver accepts; they only ever travel in the environment, as the AWS chain expects. */
export const S3_ENV = {
  AWS_ACCESS_KEY_ID: 'S3RVER',
  AWS_SECRET_ACCESS_KEY: 'S3RVER',
  AWS_REGION: 'us-east-1',
  WGIT_S3_MAX_ATTEMPTS: '6',
};

/**
 * A real S3-compatible server (s3rver) on loopback with one bucket, `wgit`,
 * made consistent per key as S3 is (see s3rver-consistent.ts).
 */
export async function startS3(dir: string): Promise<{ url: string; close(): Promise<void> }> {
  fs.mkdirSync(dir, { recursive: true });
  const server = new S3rver({
    port: 0,
    address: '127.0.0.1',
    silent: true,
    directory: dir,
    configureBuckets: [{ name: 'wgit' }],
  });
  makeConsistent(server);
  const addr = (await server.run()) as AddressInfo;
  return {
    url: `http://127.0.0.1:${addr.port}`,
    close: () => {
      // Keep-alive sockets of clients in this process would hold close() open.
      server.httpServer?.closeAllConnections();
      return server.close();
    },
  };
}

export type FaultMode =
  | { kind: 'none' }
  /** Every `every`-th request answers with this status and S3 error code (500 InternalError, 503 SlowDown). */
  | { kind: 'status'; every: number; status: number; code: string }
  /** Every `every`-th PUT with a body is cut: the connection drops after part of the body reached the proxy. */
  | { kind: 'drop'; every: number }
  /** Multipart part uploads after the first `after` get no answer (a pusher hangs mid-upload, to be killed). */
  | { kind: 'stall-parts'; after: number }
  /** CreateMultipartUpload reaches the server, but the answer is lost (the connection drops). */
  | { kind: 'swallow-creates' };

/**
 * Our proxy in front of the server: injects faults, and optionally honours
 * conditional PUTs and DELETEs (If-None-Match: *, If-Match) that s3rver ignores, one
 * request at a time per key, so the conditional compare-and-swap path runs
 * against a server that implements it.
 */
export async function startProxy(
  target: string,
  opts: { conditional?: boolean } = {},
): Promise<{
  url: string;
  mode: FaultMode;
  requests: number;
  faults: number;
  /** Request body bytes received (what clients sent), and response body bytes forwarded to them. */
  bytesIn: number;
  bytesOut: number;
  /** Part uploads seen, and those held without an answer (stall-parts). */
  parts: number;
  stalled: number;
  close(): Promise<void>;
}> {
  const t = new URL(target);
  const state = {
    mode: { kind: 'none' } as FaultMode,
    requests: 0,
    faults: 0,
    bytesIn: 0,
    bytesOut: 0,
    parts: 0,
    stalled: 0,
  };
  const keyLocks = new Map<string, Promise<void>>();
  const forward = (req: http.IncomingMessage, body: Buffer, res: http.ServerResponse) =>
    new Promise<void>((resolve) => {
      const headers = { ...req.headers };
      const up = http.request({ host: t.hostname, port: t.port, method: req.method, path: req.url, headers }, (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.on('data', (d: Buffer) => {
          state.bytesOut += d.length;
        });
        r.pipe(res);
        r.on('end', resolve);
        r.on('error', () => {
          res.destroy();
          resolve();
        });
      });
      // A server that stops answering must not hold the test: cut after 30 s.
      up.setTimeout(30_000, () => up.destroy(new Error('upstream timeout')));
      up.on('error', () => {
        res.destroy();
        resolve();
      });
      up.end(body);
    });
  const headEtag = (p: string) =>
    new Promise<string | null>((resolve) => {
      http
        .request({ host: t.hostname, port: t.port, method: 'HEAD', path: p.split('?')[0] }, (r) => {
          r.resume();
          resolve(r.statusCode === 200 ? String(r.headers.etag ?? '') : null);
        })
        .on('error', () => resolve(null))
        .setTimeout(30_000, function (this: http.ClientRequest) {
          this.destroy();
        })
        .end();
    });
  const server = http.createServer((req, res) => {
    state.requests++;
    const n = state.requests;
    const chunks: Buffer[] = [];
    const mode = state.mode;
    const isPut = req.method === 'PUT' && Number(req.headers['content-length'] ?? 0) > 0;
    if (isPut && /[?&]uploadId=/.test(req.url ?? '')) {
      state.parts++;
      if (mode.kind === 'stall-parts' && state.parts > mode.after) {
        state.stalled++;
        req.resume();
        return; // no answer until the client goes away or the proxy closes
      }
    }
    if (mode.kind === 'drop' && isPut && n % mode.every === 0) {
      let got = 0;
      const cut = () => {
        state.faults++;
        req.socket.destroy();
      };
      req.on('data', (d: Buffer) => {
        got += d.length;
        if (got > 16) cut();
      });
      req.on('end', cut);
      return;
    }
    req.on('data', (d: Buffer) => {
      state.bytesIn += d.length;
      chunks.push(d);
    });
    req.on('end', async () => {
      const body = Buffer.concat(chunks);
      if (mode.kind === 'status' && n % mode.every === 0) {
        state.faults++;
        res.writeHead(mode.status, { 'content-type': 'application/xml' });
        res.end(`<?xml version="1.0"?><Error><Code>${mode.code}</Code><Message>injected</Message></Error>`);
        return;
      }
      if (mode.kind === 'swallow-creates' && req.method === 'POST' && /[?&]uploads(=|&|$)/.test(req.url ?? '')) {
        state.faults++;
        const up = http.request(
          { host: t.hostname, port: t.port, method: req.method, path: req.url, headers: req.headers },
          (r) => {
            r.resume();
            r.on('end', () => req.socket.destroy());
          },
        );
        up.on('error', () => req.socket.destroy());
        up.end(body);
        return;
      }
      const ifNone = req.headers['if-none-match'];
      const ifMatch = req.headers['if-match'];
      if (opts.conditional && (req.method === 'PUT' || req.method === 'DELETE') && (ifNone || ifMatch)) {
        const key = (req.url ?? '').split('?')[0];
        const prev = keyLocks.get(key) ?? Promise.resolve();
        let done!: () => void;
        const mine = new Promise<void>((r) => {
          done = r;
        });
        keyLocks.set(
          key,
          prev.then(() => mine),
        );
        await prev;
        try {
          const etag = await headEtag(key);
          if ((ifNone === '*' && etag !== null) || (ifMatch && ifMatch !== etag)) {
            res.writeHead(412, { 'content-type': 'application/xml' });
            res.end(
              '<?xml version="1.0"?><Error><Code>PreconditionFailed</Code><Message>At least one of the pre-conditions you specified did not hold</Message></Error>',
            );
            return;
          }
          await forward(req, body, res);
        } finally {
          done();
        }
        return;
      }
      await forward(req, body, res);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return Object.assign(state, {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  }) as never;
}

export const tmpDirOf = (root: string, name: string) => path.join(root, name);
