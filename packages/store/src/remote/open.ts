import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { WgitError } from '@wgit/core';
import { FolderBackend } from '../backend/fs/index.js';
import { createRepositoryFolder, WGIT_SUBDIR } from '../backend/fs/layout.js';
import type { StorageBackend } from '../backend/types.js';
import { DEFAULT_CONFIG } from '../config.js';
import type { RemoteConfig } from './config.js';
/** A remote opened for one command: its backend, and what to call it in messages (never a secret). */
import type { LocalState, OpenedRemote } from './opened.js';
import { parseRemoteUrl } from './url.js';

export type { LocalState, OpenedRemote };

/** The `.wgit` folder of a folder remote: `DIR/.wgit`, or DIR itself when it is one. */
async function folderGitdir(dir: string): Promise<string | null> {
  for (const g of [path.join(dir, '.wgit'), dir]) {
    try {
      await fsp.access(path.join(g, WGIT_SUBDIR, 'config.json'));
      return g;
    } catch {
      // not this one
    }
  }
  return null;
}

export type S3Opener = (
  cfg: RemoteConfig,
  onCapabilities?: (c: RemoteConfig['capabilities']) => Promise<void>,
  local?: LocalState,
) => Promise<OpenedRemote>;
let s3Opener: S3Opener | null = null;

/** Registers the S3 backend (kept apart so folder remotes never load the AWS SDK). */
export function registerS3(opener: S3Opener): void {
  s3Opener = opener;
}

/** Opens a configured remote. */
export async function openRemote(
  cfg: RemoteConfig,
  onCapabilities?: (c: RemoteConfig['capabilities']) => Promise<void>,
  local?: LocalState,
): Promise<OpenedRemote> {
  const loc = parseRemoteUrl(cfg.url);
  if (loc.kind === 's3') {
    if (!s3Opener) s3Opener = (await import('./s3-open.js')).openS3Remote;
    return s3Opener(cfg, onCapabilities, local);
  }
  const dir = loc.path;
  let backend: FolderBackend | null = null;
  const get = async (): Promise<FolderBackend> => {
    if (backend) return backend;
    const g = await folderGitdir(dir);
    if (!g)
      throw new WgitError('E_REMOTE_REF_NOT_FOUND', `no wgit repository at ${dir} (the remote is empty)`, {
        remote: cfg.name,
      });
    backend = new FolderBackend(g);
    return backend;
  };
  // Method calls are forwarded to the backend once it is found, so opening never touches the folder.
  const lazy = <K extends keyof StorageBackend>(k: K): StorageBackend[K] =>
    new Proxy({} as StorageBackend[K], {
      get:
        (_t, m: string) =>
        async (...a: unknown[]) => {
          const b = (await get())[k] as unknown as Record<string, (...x: unknown[]) => unknown>;
          return b[m](...a);
        },
    });
  return {
    url: dir,
    backend: { chunks: lazy('chunks'), objects: lazy('objects'), refs: lazy('refs') },
    exists: async () => (await folderGitdir(dir)) !== null,
    ensureExists: async (config) => {
      if (await folderGitdir(dir)) return;
      await fsp.mkdir(dir, { recursive: true });
      // `.wgit.<temp>` folders are inits that were interrupted (a killed first push): they do not count.
      const entries = (await fsp.readdir(dir)).filter((e) => e !== '.wgit' && !e.startsWith('.wgit.'));
      if (entries.length > 0)
        throw new WgitError('E_REMOTE_URL', `${dir} is not a wgit repository and not empty; push to an empty folder`, {
          remote: cfg.name,
        });
      await createRepositoryFolder(dir, { ...DEFAULT_CONFIG, ...config }).catch((e) => {
        if ((e as WgitError).code !== 'E_REPO_EXISTS') throw e;
      });
    },
  };
}
