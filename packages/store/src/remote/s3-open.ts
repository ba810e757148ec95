import { randomBytes } from 'node:crypto';
import { WgitError } from '@wgit/core';
import type { StorageBackend } from '../backend/types.js';
import type { RepoConfig } from '../config.js';
import type { RemoteCapabilities, RemoteConfig } from './config.js';
import type { LocalState, OpenedRemote } from './opened.js';
import { S3Chunks, S3Objects } from './s3-backend.js';
import { PreconditionFailed, S3Store } from './s3-client.js';
import { UploadJournal } from './s3-multipart.js';
import { S3Refs } from './s3-refs.js';
import { parseRemoteUrl } from './url.js';

/**
 * Finds out whether the server honours conditional writes, by trying them on
 * a scratch object: a second `If-None-Match: *` PUT must fail with 412, and
 * so must an `If-Match` PUT with an ETag the object does not have. Some
 * S3-compatible servers accept the headers and overwrite anyway (s3rver);
 * wgit never assumes, it asks each remote once and records the answer.
 */
export async function probeConditionalWrites(s3: S3Store): Promise<RemoteCapabilities> {
  const rel = `wgit/probe/${Date.now()}-${randomBytes(6).toString('hex')}`;
  let honoured = true;
  try {
    await s3.put(rel, 'first', { ifNoneMatch: true });
    try {
      await s3.put(rel, 'second', { ifNoneMatch: true });
      honoured = false;
    } catch (e) {
      if (!(e instanceof PreconditionFailed)) throw e;
    }
    if (honoured) {
      try {
        await s3.put(rel, 'third', { ifMatch: '"00000000000000000000000000000000"' });
        honoured = false;
      } catch (e) {
        if (!(e instanceof PreconditionFailed)) throw e;
      }
    }
    const got = await s3.get(rel, 64);
    if (honoured && got && Buffer.from(got.bytes).toString() !== 'first') honoured = false;
  } catch (e) {
    // A server that rejects the headers outright (400/501) does not honour them either.
    const status = (e as WgitError).data?.status as number | undefined;
    if (!(e instanceof WgitError && (status === 400 || status === 501))) throw e;
    honoured = false;
  } finally {
    await s3.delete(rel).catch(() => {});
  }
  return { conditionalWrites: honoured, probedAt: new Date().toISOString() };
}

/** Opens an s3:// remote; probes conditional writes at the first write unless the config has the answer. */
export async function openS3Remote(
  cfg: RemoteConfig,
  onCapabilities?: (c: RemoteCapabilities) => Promise<void>,
  local?: LocalState,
): Promise<OpenedRemote> {
  const loc = parseRemoteUrl(cfg.url);
  if (loc.kind !== 's3') throw new WgitError('E_REMOTE_URL', `not an s3 URL: ${cfg.url}`);
  const journal = local ? new UploadJournal(local.uploadJournal, local.tmpDir, cfg.url, cfg.endpoint ?? null) : null;
  const s3 = new S3Store(cfg, loc.bucket, loc.prefix, journal);
  let caps: Promise<boolean> | null = cfg.capabilities ? Promise.resolve(cfg.capabilities.conditionalWrites) : null;
  const conditional = () => {
    caps ??= probeConditionalWrites(s3).then(async (c) => {
      await onCapabilities?.(c);
      return c.conditionalWrites;
    });
    return caps;
  };
  const backend: StorageBackend = {
    chunks: new S3Chunks(s3, conditional),
    objects: new S3Objects(s3, conditional),
    refs: new S3Refs(s3, conditional),
  };
  const exists = async () => (await s3.head('HEAD')) !== null || (await s3.list('refs/')).length > 0;
  return {
    backend,
    url: s3.url,
    exists,
    abortStaleUploads: () => s3.abortStaleUploads(),
    ensureExists: async (config: RepoConfig) => {
      await conditional();
      if (await s3.head('HEAD')) return;
      await s3.put('wgit/config.json', `${JSON.stringify(config, null, 2)}\n`);
      await s3.put('HEAD', 'ref: refs/heads/main\n');
    },
  };
}
