import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { WgitError } from '@wgit/core';
import { LockFile } from '../backend/fs/lock.js';
import { atomicWrite } from '../fsutil.js';
import { canonicalUrl, checkEndpoint, parseRemoteUrl } from './url.js';

/** What the first contact with an S3 remote found out (see probe.ts). */
export interface RemoteCapabilities {
  /** The server honours If-None-Match / If-Match on PutObject (refs move by conditional PUT, else by lock object). */
  conditionalWrites: boolean;
  /** When the probe ran (ISO 8601). */
  probedAt: string;
}

/** One configured remote, as kept in `.wgit/wgit/remotes.json`. Never holds credentials. */
export interface RemoteConfig {
  name: string;
  url: string;
  /** S3 only: a custom endpoint (S3-compatible servers); addressing is then path-style unless `pathStyle` is false. */
  endpoint?: string;
  region?: string;
  pathStyle?: boolean;
  capabilities?: RemoteCapabilities;
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** Remote names become ref folders (`refs/remotes/<name>/`): a plain single component. */
export function checkRemoteName(name: string): void {
  if (!NAME_RE.test(name) || name.endsWith('.lock') || name.includes('..'))
    throw new WgitError('E_REMOTE_URL', `invalid remote name ${JSON.stringify(name)} (letters, digits, . _ -)`, {
      name,
    });
}

function validate(raw: unknown, file: string): RemoteConfig[] {
  const fail = () => new WgitError('E_BAD_CONFIG', `${file} is damaged (not a list of remotes)`, { path: file });
  const obj = raw as { remotes?: unknown } | null;
  if (!obj || typeof obj !== 'object' || !Array.isArray(obj.remotes)) throw fail();
  const out: RemoteConfig[] = [];
  for (const r of obj.remotes as RemoteConfig[]) {
    if (!r || typeof r.name !== 'string' || typeof r.url !== 'string') throw fail();
    checkRemoteName(r.name);
    const loc = parseRemoteUrl(r.url);
    const c: RemoteConfig = { name: r.name, url: canonicalUrl(loc) };
    if (r.endpoint !== undefined) c.endpoint = checkEndpoint(String(r.endpoint));
    if (typeof r.region === 'string' && /^[a-z0-9-]{1,40}$/.test(r.region)) c.region = r.region;
    if (typeof r.pathStyle === 'boolean') c.pathStyle = r.pathStyle;
    const cap = r.capabilities;
    if (cap && typeof cap.conditionalWrites === 'boolean' && typeof cap.probedAt === 'string')
      c.capabilities = { conditionalWrites: cap.conditionalWrites, probedAt: cap.probedAt };
    out.push(c);
  }
  return out;
}

/** The remotes of a repository, kept apart from config.json (fixed at init) since they change often. */
export class RemoteConfigFile {
  readonly file: string;
  constructor(
    wgitDir: string,
    private readonly tmpDir: string,
  ) {
    this.file = path.join(wgitDir, 'remotes.json');
  }

  async list(): Promise<RemoteConfig[]> {
    let text: string;
    try {
      text = await fsp.readFile(this.file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw new WgitError('E_BAD_CONFIG', `cannot read ${this.file}`, { path: this.file });
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new WgitError('E_BAD_CONFIG', `${this.file} is not valid JSON`, { path: this.file });
    }
    return validate(parsed, this.file);
  }

  async get(name: string): Promise<RemoteConfig> {
    const r = (await this.list()).find((x) => x.name === name);
    if (!r) throw new WgitError('E_UNKNOWN_REMOTE', `no remote named ${JSON.stringify(name)}`, { remote: name });
    return r;
  }

  /** Read-modify-write under `remotes.json.lock`; `change` gets the list and returns the new one. */
  async update<T>(change: (list: RemoteConfig[]) => { list: RemoteConfig[]; result: T }): Promise<T> {
    const lock = await LockFile.acquire(`${this.file}.lock`, { what: 'the remotes configuration' });
    try {
      const { list, result } = change(await this.list());
      await atomicWrite(this.tmpDir, this.file, `${JSON.stringify({ remotes: list }, null, 2)}\n`);
      return result;
    } finally {
      await lock.release();
    }
  }

  add(r: RemoteConfig): Promise<RemoteConfig> {
    checkRemoteName(r.name);
    return this.update((list) => {
      if (list.some((x) => x.name === r.name))
        throw new WgitError('E_REMOTE_EXISTS', `remote ${JSON.stringify(r.name)} exists already`, { remote: r.name });
      return { list: [...list, r], result: r };
    });
  }

  remove(name: string): Promise<RemoteConfig> {
    return this.update((list) => {
      const found = list.find((x) => x.name === name);
      if (!found) throw new WgitError('E_UNKNOWN_REMOTE', `no remote named ${JSON.stringify(name)}`, { remote: name });
      return { list: list.filter((x) => x !== found), result: found };
    });
  }

  setCapabilities(name: string, capabilities: RemoteCapabilities): Promise<void> {
    return this.update((list) => ({
      list: list.map((x) => (x.name === name ? { ...x, capabilities } : x)),
      result: undefined,
    }));
  }
}
