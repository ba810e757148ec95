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
