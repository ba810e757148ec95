import { type ErrorCode, WgitError } from '@wgit/core';
import type { RefBackend } from '../backend/types.js';
import { currentIdentity } from '../identity.js';
import { checkRefName } from '../names.js';

/** Branches and tags over any ref backend: listing, creating and deleting, each one compare-and-swap. */
export type RefKind = 'branch' | 'tag';

const PREFIX: Record<RefKind, 'refs/heads/' | 'refs/tags/'> = { branch: 'refs/heads/', tag: 'refs/tags/' };
const EXISTS: Record<RefKind, ErrorCode> = { branch: 'E_BRANCH_EXISTS', tag: 'E_TAG_EXISTS' };

const byName = <T extends { name: string }>(a: T, b: T) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

/** Every branch or tag, sorted by name. */
export async function listNamed(refs: RefBackend, kind: RefKind): Promise<{ name: string; commit: string }[]> {
  const prefix = PREFIX[kind];
  return [...(await refs.listRefs(prefix))]
    .map(([full, commit]) => ({ name: full.slice(prefix.length), commit }))
    .sort(byName);
}

/** Creates a branch or tag at `commit`; E_BRANCH_EXISTS / E_TAG_EXISTS when the name is taken. */
export async function createNamed(
  refs: RefBackend,
  kind: RefKind,
  name: string,
  commit: string,
  logMessage: string,
): Promise<{ name: string; commit: string }> {
  checkRefName(name, kind);
  await refs.compareAndSwapRef(
    `${PREFIX[kind]}${name}`,
    null,
    commit,
    { message: logMessage, identity: currentIdentity() },
    { movedCode: EXISTS[kind] },
  );
  return { name, commit };
}

/** Deletes a branch or tag with its reflog; E_UNKNOWN_REVISION when there is none. */
export async function deleteNamed(
  refs: RefBackend,
  kind: RefKind,
  name: string,
): Promise<{ name: string; commit: string }> {
  checkRefName(name, kind);
  const full = `${PREFIX[kind]}${name}`;
  const old = await refs.readRef(full);
  if (!old) throw new WgitError('E_UNKNOWN_REVISION', `no ${kind} ${name}`, { rev: name });
  await refs.compareAndSwapRef(full, old, null, { message: 'delete', identity: currentIdentity() });
  return { name, commit: old };
}

/**
 * Points a branch at `commit` whatever it held (`branch -f`, `reset`): one
 * compare-and-swap from the value read, so a writer that moved it in between
 * makes this fail with E_BRANCH_MOVED rather than be lost. Creates the branch
 * when `create` and it does not exist. Returns the previous commit.
 */
export async function moveBranch(
  refs: RefBackend,
  name: string,
  commit: string,
  logMessage: string,
  create: boolean,
): Promise<{ name: string; commit: string; previous: string | null }> {
  checkRefName(name, 'branch');
  const full = `${PREFIX.branch}${name}`;
  const old = await refs.readRef(full);
  if (old === null && !create) throw new WgitError('E_UNKNOWN_REVISION', `no branch ${name}`, { rev: name });
  await refs.compareAndSwapRef(full, old, commit, { message: logMessage, identity: currentIdentity() });
  return { name, commit, previous: old };
}

/** What moving branches and HEAD needs of a repository. */
export interface BranchContext {
  readonly refs: RefBackend & { writeHead(branch: string): Promise<void> };
  resolve(rev: string): Promise<string>;
  currentBranch(): Promise<string>;
}

/** `branch -f NAME REV`: creates NAME or moves it to REV; the current branch moves with reset instead. */
export async function forceBranch(
  ctx: BranchContext,
  name: string,
  rev: string,
): Promise<{ name: string; commit: string; previous: string | null }> {
  if (name === (await ctx.currentBranch()))
    throw new WgitError(
      'E_CURRENT_BRANCH',
      `cannot force-move branch ${name}: HEAD points to it; use wgit reset ${rev} to move the current branch`,
      { branch: name },
    );
  return moveBranch(ctx.refs, name, await ctx.resolve(rev), `branch: Reset to ${rev}`, true);
}

/** `reset REV`: moves the current branch to REV (compare-and-swap; the old head stays in the reflog). */
export async function resetBranch(
  ctx: BranchContext,
  rev: string,
): Promise<{ name: string; commit: string; previous: string | null }> {
  const commit = await ctx.resolve(rev);
  return moveBranch(ctx.refs, await ctx.currentBranch(), commit, `reset: moving to ${rev}`, true);
}

/**
 * `switch NAME` points HEAD at an existing branch; with `create`, makes it
 * first at `start` (default HEAD; E_BRANCH_EXISTS when it exists). There is
 * no working folder, so nothing else changes.
 */
export async function switchBranch(
  ctx: BranchContext,
  name: string,
  opts: { create?: boolean; start?: string },
): Promise<{ name: string; commit: string | null; created: boolean }> {
  checkRefName(name, 'branch');
  let commit = await ctx.refs.readRef(`${PREFIX.branch}${name}`);
  if (opts.create) {
    const start = await ctx.resolve(opts.start ?? 'HEAD');
    commit = (await createNamed(ctx.refs, 'branch', name, start, `branch: Created from ${opts.start ?? 'HEAD'}`))
      .commit;
  } else if (commit === null) {
    throw new WgitError('E_UNKNOWN_REVISION', `no branch ${name}; wgit switch -c ${name} creates it`, { rev: name });
  } else if (opts.start !== undefined) {
    throw new WgitError('E_USAGE', `a start point is only for a new branch (wgit switch -c ${name} ${opts.start})`);
  }
  await ctx.refs.writeHead(`${PREFIX.branch}${name}`);
  return { name, commit, created: opts.create === true };
}
