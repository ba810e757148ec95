import { WgitError } from '@wgit/core';
import type { FolderRefs } from '../backend/fs/refs.js';
import { buildTree, type GitStore } from '../gitstore.js';
import type { Identity } from '../identity.js';
import { checkRefName } from '../names.js';

/** What landing a commit needs of a repository. */
export interface LandingContext {
  readonly git: GitStore;
  readonly refs: FolderRefs;
  resolve(rev: string): Promise<string>;
}

/** The branch a commit lands on, and the head it was at when checked. */
export interface LandingTarget {
  ref: string;
  oldHead: string | null;
}

/**
 * The branch a commit lands on, checked before any chunk is written: a valid
 * name that clashes with no other ref's folder, still at `expectedHead` when
 * the caller names one.
 */
export async function landingBranch(
  refs: FolderRefs,
  branch: string,
  expectedHead: string | null | undefined,
): Promise<LandingTarget> {
  checkRefName(branch, 'branch');
  const ref = `refs/heads/${branch}`;
  await refs.checkNameFree(ref);
  const oldHead = await refs.readRef(ref);
  if (expectedHead !== undefined && expectedHead !== oldHead) {
    throw new WgitError(
      'E_BRANCH_MOVED',
      `branch ${branch} is at ${oldHead?.slice(0, 12) ?? 'nothing'}, expected ${expectedHead?.slice(0, 12) ?? 'nothing'}`,
      { branch, expected: expectedHead, found: oldHead },
    );
  }
  return { ref, oldHead };
}

/**
 * Parents of a new commit: the revisions given, else the branch head, else
 * (a new branch) where HEAD is, so its first commit can be a delta against it.
 */
export async function parentsFor(
  ctx: LandingContext,
  head: string | null,
  given: string[] | undefined,
): Promise<string[]> {
  if (given) {
    const out: string[] = [];
    for (const p of given) out.push(await ctx.resolve(p));
    return out;
  }
  if (head) return [head];
  const h = await ctx.refs.readRef(await ctx.refs.readHead());
  return h ? [h] : [];
}

/**
 * Writes the tree and commit object, then moves the branch by
 * compare-and-swap from `expectedHead` (else the head seen when the target
 * was checked). The chunks must be durable already. With `unlessUnchanged`,
 * a commit whose only parent is the branch head and whose tree is the
 * head's is not made: the head is returned with `landed: false` ("nothing to
 * commit", as git says).
 */
export async function landCommit(
  ctx: LandingContext,
  target: LandingTarget,
  expectedHead: string | null | undefined,
  entries: Map<string, string>,
  parents: string[],
  message: string,
  identity: Identity,
  unlessUnchanged = false,
): Promise<{ commit: string; landed: boolean }> {
  const tree = await buildTree(ctx.git, entries);
  const head = expectedHead !== undefined ? expectedHead : target.oldHead;
  if (unlessUnchanged && head !== null && parents.length === 1 && parents[0] === head) {
    if ((await ctx.git.readCommit(head)).tree === tree) return { commit: head, landed: false };
  }
  const text = `${message.replace(/\s+$/, '')}\n`;
  const commit = await ctx.git.writeCommit({ tree, parents, message: text, author: identity, committer: identity });
  const kind = parents.length === 0 ? ' (initial)' : parents.length > 1 ? ' (merge)' : '';
  await ctx.refs.compareAndSwapRef(target.ref, expectedHead !== undefined ? expectedHead : target.oldHead, commit, {
    message: `commit${kind}: ${text.split('\n')[0]}`,
    identity,
  });
  return { commit, landed: true };
}
