import * as path from 'node:path';
import { WgitError } from '@wgit/core';
import { listRefs } from '../backend/fs/refs.js';
import { atomicWrite } from '../fsutil.js';
import { currentIdentity } from '../identity.js';
import { checkRefName } from '../names.js';
import { type RemoteConfig, RemoteConfigFile } from './config.js';
import { type FetchResult, fetchRemote, remoteRefs } from './fetch.js';
import { type OpenedRemote, openRemote } from './open.js';
import type { TransferProgress } from './progress.js';
import { isAncestor, type PushResult, push, type RefUpdate, type RemoteHost, readRemoteRef } from './push.js';
import { canonicalUrl, checkEndpoint, parseRemoteUrl } from './url.js';

export type { RemoteCapabilities, RemoteConfig } from './config.js';
export type { FetchResult } from './fetch.js';
export { formatProgress, type TransferProgress } from './progress.js';
export type { PushResult, RefUpdateResult, RemoteHost } from './push.js';
export { canonicalUrl, parseRemoteUrl, type RemoteLocation, refuseCredentials } from './url.js';

/** The local repository as remote operations use it. */
export interface RemoteRepo extends RemoteHost {
  readonly wgitDir: string;
  readonly config: import('../config.js').RepoConfig;
  currentBranch(): Promise<string>;
}

export const DEFAULT_REMOTE = 'origin';

const remotesFile = (repo: RemoteRepo) => new RemoteConfigFile(repo.wgitDir, repo.tmpDir);

export function listRemotes(repo: RemoteRepo): Promise<RemoteConfig[]> {
  return remotesFile(repo).list();
}

export async function addRemote(
  repo: RemoteRepo,
  name: string,
  url: string,
  opts: { endpoint?: string; region?: string; pathStyle?: boolean } = {},
): Promise<RemoteConfig> {
  const loc = parseRemoteUrl(url);
  const cfg: RemoteConfig = { name, url: canonicalUrl(loc) };
  if (loc.kind === 's3') {
    if (opts.endpoint) cfg.endpoint = checkEndpoint(opts.endpoint);
    if (opts.region) {
      if (!/^[a-z0-9-]{1,40}$/.test(opts.region))
        throw new WgitError('E_REMOTE_URL', `bad region ${JSON.stringify(opts.region.slice(0, 50))}`);
      cfg.region = opts.region;
    }
    if (opts.pathStyle !== undefined) cfg.pathStyle = opts.pathStyle;
  } else if (opts.endpoint || opts.region) {
    throw new WgitError('E_REMOTE_URL', '--endpoint and --region apply to s3:// remotes only');
  }
  if (loc.kind === 'folder' && path.resolve(loc.path) === path.resolve(repo.gitdir, '..'))
    throw new WgitError('E_REMOTE_URL', 'a repository cannot be its own remote');
  return remotesFile(repo).add(cfg);
}

/** Removes a remote from the config, then its remote-tracking refs. */
export async function removeRemote(
  repo: RemoteRepo,
  name: string,
): Promise<{ removed: RemoteConfig; trackingRefsRemoved: number }> {
  const removed = await remotesFile(repo).remove(name);
  const tracking = await listRefs(repo.gitdir, `refs/remotes/${name}/` as 'refs/heads/');
  for (const [ref, oid] of tracking)
    await repo.refs.compareAndSwapRef(ref, oid, null, { message: 'remote remove', identity: currentIdentity() });
  return { removed, trackingRefsRemoved: tracking.size };
}

/** A configured remote, opened; the S3 probe's findings are saved to the remote's config. */
export async function open(repo: RemoteRepo, name: string): Promise<{ cfg: RemoteConfig; remote: OpenedRemote }> {
  const file = remotesFile(repo);
  const cfg = await file.get(name);
  const remote = await openRemote(
    cfg,
    async (caps) => {
      if (caps) await file.setCapabilities(name, caps);
    },
    { uploadJournal: path.join(repo.wgitDir, 's3-uploads'), tmpDir: repo.tmpDir },
  );
  return { cfg, remote };
}

/** The remote's configuration and its branches and tags. */
export async function showRemote(
  repo: RemoteRepo,
  name: string,
): Promise<RemoteConfig & { head: string | null; branches: Record<string, string>; tags: Record<string, string> }> {
  const { cfg, remote } = await open(repo, name);
  if (!(await remote.exists())) return { ...cfg, head: null, branches: {}, tags: {} };
  const { heads, tags } = await remoteRefs(remote.backend);
  const head = await remote.backend.refs.readHead().catch(() => null);
  const fresh = (await listRemotes(repo)).find((r) => r.name === name) ?? cfg;
  return { ...fresh, head, branches: Object.fromEntries(heads), tags: Object.fromEntries(tags) };
}

/** Which local refs a push names: branches or tags by short name, `src:dst` to push under another name. */
async function pushUpdates(
  repo: RemoteRepo,
  refs: string[],
  opts: { all?: boolean; tags?: boolean },
): Promise<RefUpdate[]> {
  const out: RefUpdate[] = [];
  const add = (local: string, remote: string) => {
    if (!out.some((u) => u.remote === remote)) out.push({ local, remote });
  };
  if (opts.all) for (const b of (await repo.refs.listRefs('refs/heads/')).keys()) add(b, b);
  if (opts.tags) for (const t of (await repo.refs.listRefs('refs/tags/')).keys()) add(t, t);
  const specs = refs.length > 0 || opts.all || opts.tags ? refs : [await repo.currentBranch()];
  for (const spec of specs) {
    const [src, dst = src] = spec.split(':');
    let local: string | null = null;
    for (const full of [`refs/heads/${src}`, `refs/tags/${src}`])
      if (!local && (await repo.refs.readRef(full))) local = full;
    if (!local)
      throw new WgitError('E_UNKNOWN_REVISION', `no branch or tag ${JSON.stringify(src)} to push`, { ref: src });
    const kind = local.startsWith('refs/tags/') ? 'tag' : 'branch';
    checkRefName(dst, kind);
    add(local, `refs/${kind === 'tag' ? 'tags' : 'heads'}/${dst}`);
  }
  return out;
}

export async function pushToRemote(
  repo: RemoteRepo,
  name: string,
  refs: string[],
  opts: { all?: boolean; tags?: boolean; force?: boolean; onProgress?: (p: TransferProgress) => void } = {},
): Promise<PushResult & { remote: string; url: string; abortedUploads: number }> {
  const updates = await pushUpdates(repo, refs, opts);
  const { cfg, remote } = await open(repo, name);
  await remote.ensureExists(repo.config);
  // Multipart uploads a killed push left in progress are aborted before anything new goes up.
  const abortedUploads = (await remote.abortStaleUploads?.()) ?? 0;
  const r = await push(repo, remote.backend, updates, {
    force: opts.force,
    onProgress: opts.onProgress,
    trackingPrefix: `refs/remotes/${name}/`,
  });
  return { remote: name, url: cfg.url, ...r, abortedUploads };
}

export interface DeleteResult {
  remote: string;
  url: string;
  /** Full remote ref names and the values they held. */
  deleted: { ref: string; old: string }[];
}

/**
 * Deletes branches or tags on a remote (`push --delete`): each by
 * compare-and-swap from the value read, so a ref someone moved meanwhile is
 * left alone (E_NON_FAST_FORWARD). The branch the remote's HEAD names is kept
 * unless `force` (clones start from it). The local remote-tracking ref goes too.
 */
export async function deleteRemoteRefs(
  repo: RemoteRepo,
  name: string,
  refs: string[],
  opts: { force?: boolean } = {},
): Promise<DeleteResult> {
  if (refs.length === 0) throw new WgitError('E_USAGE', 'push --delete needs the branches or tags to delete');
  const { cfg, remote } = await open(repo, name);
  const head = await remote.backend.refs.readHead().catch(() => null);
  const plan: { ref: string; old: string }[] = [];
  for (const short of refs) {
    let found: { ref: string; old: string } | null = null;
    for (const [kind, full] of [
      ['branch', `refs/heads/${short}`],
      ['tag', `refs/tags/${short}`],
    ] as const) {
      checkRefName(short, kind);
      const old: string | null = found ? null : await readRemoteRef(remote.backend, full);
      if (old) found = { ref: full, old };
    }
    if (!found)
      throw new WgitError('E_REMOTE_REF_NOT_FOUND', `remote ${name} has no branch or tag ${JSON.stringify(short)}`, {
        remote: name,
        ref: short,
      });
    if (found.ref === head && !opts.force)
      throw new WgitError(
        'E_CURRENT_BRANCH',
        `${found.ref} is the remote's HEAD branch (clones start from it); give --force to delete it anyway`,
        { ref: found.ref },
      );
    plan.push(found);
  }
  const identity = currentIdentity();
  for (const p of plan) {
    await remote.backend.refs.compareAndSwapRef(
      p.ref,
      p.old,
      null,
      { message: 'push: delete', identity },
      { movedCode: 'E_NON_FAST_FORWARD' },
    );
    if (p.ref.startsWith('refs/heads/')) {
      const tracking = `refs/remotes/${name}/${p.ref.slice('refs/heads/'.length)}`;
      const cur = await repo.refs.readRef(tracking);
      if (cur) await repo.refs.compareAndSwapRef(tracking, cur, null, { message: 'push: delete', identity });
    }
  }
  return { remote: name, url: cfg.url, deleted: plan };
}

export async function fetchFromRemote(
  repo: RemoteRepo,
  name: string,
  opts: { depth?: number; onProgress?: (p: TransferProgress) => void; branches?: string[] } = {},
): Promise<FetchResult & { remote: string; url: string }> {
  const { cfg, remote } = await open(repo, name);
  const r = await fetchRemote(repo, remote.backend, { name, url: cfg.url, ...opts });
  return { remote: name, url: cfg.url, ...r };
}

export interface PullResult {
  fetch: FetchResult & { remote: string; url: string };
  branch: string;
  old: string | null;
  new: string;
  status: 'up-to-date' | 'fast-forward' | 'created' | 'ahead' | 'forced';
}

/**
 * Fetches, then moves the current branch to its remote-tracking ref when
 * that is a fast-forward (or the branch is ahead already). Diverged history
 * is E_NON_FAST_FORWARD unless `force` (which resets the branch to the
 * remote's; the old commits stay in the reflog).
 */
export async function pullFromRemote(
  repo: RemoteRepo,
  name: string,
  opts: { force?: boolean; onProgress?: (p: TransferProgress) => void } = {},
): Promise<PullResult> {
  const branch = await repo.currentBranch();
  const fetch = await fetchFromRemote(repo, name, { onProgress: opts.onProgress });
  const upstream = await repo.refs.readRef(`refs/remotes/${name}/${branch}`);
  if (!upstream)
    throw new WgitError('E_REMOTE_REF_NOT_FOUND', `remote ${name} has no branch ${branch}`, { remote: name, branch });
  const full = `refs/heads/${branch}`;
  const old = await repo.refs.readRef(full);
  let status: PullResult['status'];
  if (old === upstream) status = 'up-to-date';
  else if (old === null) status = 'created';
  else if (await isAncestor(repo.git, old, upstream)) status = 'fast-forward';
  else if (await isAncestor(repo.git, upstream, old)) status = 'ahead';
  else if (opts.force) status = 'forced';
  else
    throw new WgitError(
      'E_NON_FAST_FORWARD',
      `${branch} and ${name}/${branch} have diverged; merge them yourself, or pull --force to reset ${branch} to the remote's`,
      { ref: full },
    );
  if (status !== 'up-to-date' && status !== 'ahead')
    await repo.refs.compareAndSwapRef(full, old, upstream, {
      message: `pull: ${status} to ${name}/${branch}`,
      identity: currentIdentity(),
    });
  return { fetch, branch, old, new: status === 'ahead' ? old! : upstream, status };
}

/**
 * Fills a freshly initialised repository from `url`: adds it as `origin`,
 * fetches (all chunks, or with `depth: 1` only those the tips need), creates
 * the branch the remote's HEAD names (or `branch`) and points HEAD at it.
 */
export async function cloneInto(
  repo: RemoteRepo,
  url: string,
  opts: {
    branch?: string;
    depth?: number;
    endpoint?: string;
    region?: string;
    pathStyle?: boolean;
    onProgress?: (p: TransferProgress) => void;
  } = {},
): Promise<{ remote: RemoteConfig; branch: string; commit: string; fetch: FetchResult }> {
  const cfg = await addRemote(repo, DEFAULT_REMOTE, url, opts);
  const { remote } = await open(repo, DEFAULT_REMOTE);
  if (!(await remote.exists()))
    throw new WgitError('E_REMOTE_REF_NOT_FOUND', `nothing to clone at ${cfg.url} (no wgit repository there)`);
  const heads = (await remoteRefs(remote.backend)).heads;
  let branch = opts.branch;
  if (!branch) {
    const head = await remote.backend.refs.readHead().catch(() => null);
    const named = head?.startsWith('refs/heads/') ? head.slice('refs/heads/'.length) : null;
    branch = named && heads.has(named) ? named : heads.has('main') ? 'main' : [...heads.keys()].sort()[0];
  }
  if (!branch || !heads.has(branch))
    throw new WgitError(
      'E_REMOTE_REF_NOT_FOUND',
      branch ? `the remote has no branch ${JSON.stringify(branch)}` : `the remote at ${cfg.url} has no branches`,
      { branch },
    );
  const fetch = await fetchRemote(repo, remote.backend, {
    name: DEFAULT_REMOTE,
    url: cfg.url,
    depth: opts.depth,
    onProgress: opts.onProgress,
    branches: opts.depth === 1 ? [branch] : undefined,
  });
  const commit = (await repo.refs.readRef(`refs/remotes/${DEFAULT_REMOTE}/${branch}`))!;
  await repo.refs.compareAndSwapRef(`refs/heads/${branch}`, await repo.refs.readRef(`refs/heads/${branch}`), commit, {
    message: `clone: from ${cfg.url}`,
    identity: currentIdentity(),
  });
  await atomicWrite(repo.tmpDir, path.join(repo.gitdir, 'HEAD'), `ref: refs/heads/${branch}\n`);
  return { remote: cfg, branch, commit, fetch };
}
