/**
 * The demo's last step: push every branch and tag to a folder remote, clone
 * it into a second repository, and check every model of the lineage out of
 * the clone, compared byte for byte with the files training wrote.
 */
import { join } from 'node:path';
import { WgitError } from '@wgit/core';
import { Repository, remotes } from '@wgit/store';

export interface DemoRemote {
  /** The folder remote. */
  url: string;
  pushed: { objects: number; chunks: number; bytes: number; refs: number };
  /** The clone, and where each model was checked out of it. */
  clone: string;
  checkouts: Record<string, string>;
  /** Every checkout equals the original model folder. */
  identical: boolean;
}

export async function pushAndClone(
  repo: Repository,
  dir: string,
  models: Record<string, string>,
  sameFolders: (a: string, b: string) => Promise<boolean>,
): Promise<DemoRemote> {
  const url = join(dir, 'remote');
  await remotes.addRemote(repo, 'origin', url);
  const p = await remotes.pushToRemote(repo, 'origin', [], { all: true, tags: true });
  const clone = join(dir, 'clone');
  const cloned = await Repository.init(clone);
  await remotes.cloneInto(cloned, url);
  const checkouts: Record<string, string> = {};
  for (const [name, original] of Object.entries(models)) {
    const out = join(dir, 'clone-checkout', name);
    // Tags for the base releases, remote-tracking branches for the fine-tunes.
    const rev = name.startsWith('base-') ? name : `origin/${name}`;
    await cloned.checkout(rev, out);
    if (!(await sameFolders(original, out)))
      throw new WgitError('E_INTERNAL', `${name} checked out of the clone differs from ${original}`);
    checkouts[name] = out;
  }
  return {
    url,
    pushed: { objects: p.sent.objects, chunks: p.sent.chunks, bytes: p.sent.bytes, refs: p.updates.length },
    clone,
    checkouts,
    identical: true,
  };
}
