import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { isWgitError, WgitError } from '@wgit/core';
import { type RepoConfig, readConfig } from '../../config.js';
import { atomicWrite, mapFsError, tempName } from '../../fsutil.js';
import { GitStore } from '../../gitstore.js';

/** The folder of a repository's own data inside `.wgit` (chunks, temp files, config). */
export const WGIT_SUBDIR = 'wgit';

/**
 * Creates `<root>/.wgit`: a bare git repository plus `wgit/chunks`,
 * `wgit/tmp` and `wgit/config.json`. Built under a temp name and renamed,
 * so an interrupted init leaves no half repository behind.
 */
export async function createRepositoryFolder(root: string, config: RepoConfig): Promise<string> {
  const gitdir = path.join(root, '.wgit');
  try {
    await fsp.lstat(gitdir);
    throw new WgitError('E_REPO_EXISTS', `${gitdir} already exists`, { path: gitdir });
  } catch (e) {
    if (isWgitError(e)) throw e;
  }
  const staging = path.join(root, `.wgit.${tempName('init')}`);
  const tmp = path.join(staging, WGIT_SUBDIR, 'tmp');
  try {
    await fsp.mkdir(tmp, { recursive: true });
    await fsp.mkdir(path.join(staging, WGIT_SUBDIR, 'chunks'), { recursive: true });
    await new GitStore(staging, tmp).init();
    await fsp.mkdir(path.join(staging, 'refs', 'tags'), { recursive: true });
    await atomicWrite(tmp, path.join(staging, WGIT_SUBDIR, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
    await fsp.rename(staging, gitdir).catch((e) => {
      if (e.code === 'ENOTEMPTY' || e.code === 'EEXIST')
        throw new WgitError('E_REPO_EXISTS', `${gitdir} already exists`, { path: gitdir });
      throw e;
    });
  } catch (e) {
    await fsp.rm(staging, { recursive: true, force: true }).catch(() => {});
    throw mapFsError(e, gitdir);
  }
  return gitdir;
}

/** The repository containing `dir`, searching upward: its root, git folder and checked config. */
export async function findRepositoryFolder(dir: string): Promise<{ root: string; gitdir: string; config: RepoConfig }> {
  let cur = path.resolve(dir);
  for (;;) {
    const gitdir = path.join(cur, '.wgit');
    const cfg = path.join(gitdir, WGIT_SUBDIR, 'config.json');
    try {
      await fsp.access(cfg);
      return { root: cur, gitdir, config: await readConfig(cfg) };
    } catch (e) {
      if (isWgitError(e)) throw e;
    }
    const up = path.dirname(cur);
    if (up === cur)
      throw new WgitError(
        'E_NOT_A_REPO',
        `not a wgit repository (no .wgit here or in any parent of ${path.resolve(dir)})`,
      );
    cur = up;
  }
}
