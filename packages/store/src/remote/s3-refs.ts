import { randomBytes } from 'node:crypto';
import { type ErrorCode, WgitError } from '@wgit/core';
import type { RefBackend, RefLogLine, ReflogEntry } from '../backend/types.js';
import { formatTz } from '../identity.js';
import { OID_RE } from './gitobj.js';
import { PreconditionFailed, type S3Store } from './s3-client.js';
import { acquireLockObject } from './s3-lock.js';

const ZERO = '0'.repeat(40);
const REF_RE = /^refs\/(heads|tags)\/[^\0\n]+$/;

/**
 * Refs of an S3 remote, one object per ref (`refs/heads/main` holding
 * `<40 hex>\n`, as in git's folder). Moves are compare-and-swap: with
 * conditional writes, `If-None-Match: *` to create and `If-Match: <etag>` to
 * replace; without them (see probe.ts), under a lock object (s3-lock.ts).
 * Each move adds one reflog object, `logs/<ref>/<time>-<random>`.
 */
export class S3Refs implements RefBackend {
  constructor(
    private readonly s3: S3Store,
    private readonly conditional: () => Promise<boolean>,
  ) {}

  private check(name: string): void {
    if (!REF_RE.test(name) || name.split('/').some((s) => s === '' || s === '.' || s === '..'))
      throw new WgitError('E_BAD_REF_NAME', `invalid ref name ${JSON.stringify(name.slice(0, 100))}`, { ref: name });
  }

  async readHead(): Promise<string> {
    const r = await this.s3.get('HEAD', 4096);
    const m = r ? /^ref: (refs\/heads\/\S+)\s*$/.exec(Buffer.from(r.bytes).toString('utf8')) : null;
    return m ? m[1] : 'refs/heads/main';
  }

  private async readWithTag(name: string): Promise<{ oid: string | null; etag: string | null }> {
    this.check(name);
    const r = await this.s3.get(name, 4096);
    if (!r) return { oid: null, etag: null };
    const oid = Buffer.from(r.bytes).toString('utf8').trim();
    if (!OID_RE.test(oid))
      throw new WgitError('E_REMOTE_CORRUPT', `remote ref ${name} does not hold an object id`, { ref: name });
    return { oid, etag: r.etag };
  }

  async readRef(name: string): Promise<string | null> {
    return (await this.readWithTag(name)).oid;
  }

  async listRefs(prefix: 'refs/heads/' | 'refs/tags/'): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    const names = (await this.s3.list(prefix)).map((o) => o.rel).filter((n) => !n.endsWith('.lock'));
    await Promise.all(
      names.map(async (n) => {
        const r = await this.s3.get(n, 4096);
        if (!r) return; // deleted since the listing
        out.set(n, Buffer.from(r.bytes).toString('utf8').trim());
      }),
    );
    return new Map([...out].sort(([a], [b]) => (a < b ? -1 : 1)));
  }

  private moved(name: string, expected: string | null, found: string | null, code?: ErrorCode): WgitError {
    const s = (x: string | null) => (x ? x.slice(0, 12) : 'nothing');
    return new WgitError(code ?? 'E_BRANCH_MOVED', `${name} moved: expected ${s(expected)}, found ${s(found)}`, {
      ref: name,
      expected,
      found,
    });
  }

  async compareAndSwapRef(
    name: string,
    expected: string | null,
    next: string | null,
    log: RefLogLine,
    opts: { movedCode?: ErrorCode } = {},
  ): Promise<string | null> {
    this.check(name);
    if (next !== null && !OID_RE.test(next)) throw new Error(`compareAndSwapRef: bad object id ${next}`);
    if (await this.conditional()) {
      const cur = await this.readWithTag(name);
      if (cur.oid !== expected) throw this.moved(name, expected, cur.oid, opts.movedCode);
      try {
        if (next === null) await this.deleteIfMatch(name, cur.etag);
        else if (cur.etag === null) await this.s3.put(name, `${next}\n`, { ifNoneMatch: true });
        else await this.s3.put(name, `${next}\n`, { ifMatch: cur.etag });
      } catch (e) {
        if (e instanceof PreconditionFailed)
          throw this.moved(name, expected, await this.readRef(name).catch(() => null), opts.movedCode);
        throw e;
      }
    } else {
      const lock = await acquireLockObject(this.s3, name);
      try {
        const cur = await this.readRef(name);
        if (cur !== expected) throw this.moved(name, expected, cur, opts.movedCode);
        if (next === null) await this.s3.delete(name);
        else await this.s3.put(name, `${next}\n`);
      } finally {
        await lock.release();
      }
    }
    if (next !== null) await this.appendReflog(name, expected, next, log);
    return expected;
  }

  /**
   * Deletes a ref only while it holds what was read (`If-Match` on DELETE).
   * A server that honours conditional PUTs but rejects the header on DELETE
   * (400, 501) gets a plain DELETE, right after the value was checked.
   */
  private async deleteIfMatch(name: string, etag: string | null): Promise<void> {
    if (etag === null) return;
    try {
      await this.s3.delete(name, { ifMatch: etag });
    } catch (e) {
      const status = (e as WgitError).data?.status;
      if (!(e instanceof WgitError && (status === 400 || status === 501))) throw e;
      await this.s3.delete(name);
    }
  }

  private async appendReflog(name: string, old: string | null, next: string, log: RefLogLine): Promise<void> {
    const id = log.identity;
    const msg = log.message.replace(/[\n\t]/g, ' ');
    const line = `${old ?? ZERO} ${next} ${id.name} <${id.email}> ${id.timestamp} ${formatTz(id.timezoneOffset)}\t${msg}\n`;
    const key = `logs/${name}/${String(Date.now()).padStart(15, '0')}-${randomBytes(4).toString('hex')}`;
    await this.s3.put(key, line);
  }

  async readReflog(name: string): Promise<ReflogEntry[]> {
    this.check(name);
    const out: ReflogEntry[] = [];
    const keys = (await this.s3.list(`logs/${name}/`)).map((o) => o.rel).sort();
    for (const k of keys) {
      const r = await this.s3.get(k, 65536);
      const m = r
        ? /^([0-9a-f]{40}) ([0-9a-f]{40}) (.*) <([^>]*)> (\d+) ([+-]\d{4})(?:\t(.*))?$/.exec(
            Buffer.from(r.bytes).toString('utf8').trim(),
          )
        : null;
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

  async listReflogs(): Promise<string[]> {
    const names = new Set<string>();
    for (const o of await this.s3.list('logs/')) {
      const m = /^logs\/(refs\/.+)\/\d{15}-[0-9a-f]+$/.exec(o.rel);
      if (m) names.add(m[1]);
    }
    return [...names].sort();
  }
}
