import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { parseTimestamp, WgitError } from '@wgit/core';

export interface Identity {
  name: string;
  email: string;
  timestamp: number; // unix seconds
  timezoneOffset: number; // minutes, JavaScript's sign convention (UTC+2 is -120), as isomorphic-git wants
}

/** Who commits when nothing names an author: said so by `wgit commit` and `wgit config`. */
export const DEFAULT_AUTHOR = { name: 'wgit', email: 'wgit@localhost' };

/** user.name / user.email from git-style config files, and which file gave them. */
export interface UserConfig {
  name?: string;
  email?: string;
  source?: string;
}

/** The `[user]` name and email of one git config file (quotes and `#`/`;` comments handled); {} when absent. */
export function parseUserSection(text: string): { name?: string; email?: string } {
  const out: { name?: string; email?: string } = {};
  let inUser = false;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    const section = /^\[\s*([A-Za-z0-9.-]+)(?:\s+"[^"]*")?\s*\]$/.exec(line);
    if (section) {
      inUser = section[1].toLowerCase() === 'user' && !line.includes('"');
      continue;
    }
    if (!inUser) continue;
    const kv = /^([A-Za-z][A-Za-z0-9-]*)\s*=\s*(.*)$/.exec(line);
    if (!kv) continue;
    let v = kv[2].replace(/\s[#;].*$/, '').trim();
    if (v.startsWith('"') && v.endsWith('"') && v.length >= 2) v = v.slice(1, -1).replace(/\\(["\\])/g, '$1');
    const key = kv[1].toLowerCase();
    if ((key === 'name' || key === 'email') && v.length > 0 && !/[<>\0]/.test(v)) out[key] = v;
  }
  return out;
}

/**
 * The configured author, as git finds it: the repository's own config
 * (`wgit config user.name …` writes it), then the user's global git config
 * (~/.gitconfig, $XDG_CONFIG_HOME/git/config), key by key.
 */
export function readUserConfig(gitdir: string, env = process.env): UserConfig {
  const home = env.HOME ?? homedir();
  const files = [
    join(gitdir, 'config'),
    join(home, '.gitconfig'),
    join(env.XDG_CONFIG_HOME ?? join(home, '.config'), 'git', 'config'),
  ];
  const out: UserConfig = {};
  for (const f of files) {
    let text: string;
    try {
      text = readFileSync(f, 'utf8');
    } catch {
      continue;
    }
    const u = parseUserSection(text);
    if (out.name === undefined && u.name !== undefined) out.name = u.name;
    if (out.email === undefined && u.email !== undefined) out.email = u.email;
    if ((u.name || u.email) && out.source === undefined) out.source = f;
  }
  return out;
}

/**
 * Commit ids must be reproducible, so the date can be pinned with
 * WGIT_AUTHOR_DATE (unix seconds, or an ISO-8601 date or date-time; one
 * without a zone is UTC) and then the time zone is UTC. Without it: now,
 * local zone. Anything else is E_BAD_DATE.
 */
export function currentIdentity(
  override: { name?: string; email?: string; date?: string | number } = {},
  env = process.env,
  configured: UserConfig = {},
): Identity {
  const name = override.name ?? env.WGIT_AUTHOR_NAME ?? configured.name ?? DEFAULT_AUTHOR.name;
  const email = override.email ?? env.WGIT_AUTHOR_EMAIL ?? configured.email ?? DEFAULT_AUTHOR.email;
  if (/[<>\n\0]/.test(name) || /[<>\n\0]/.test(email)) {
    throw new WgitError('E_BAD_IDENTITY', `author name or email contains <, > or a newline: ${name} <${email}>`);
  }
  const pinned = override.date ?? env.WGIT_AUTHOR_DATE;
  if (pinned !== undefined && pinned !== '') {
    const timestamp = parseTimestamp(pinned, {
      what: override.date !== undefined ? 'the author date' : 'WGIT_AUTHOR_DATE',
      code: 'E_BAD_DATE',
    });
    return { name, email, timestamp, timezoneOffset: 0 };
  }
  const now = new Date();
  return { name, email, timestamp: Math.floor(now.getTime() / 1000), timezoneOffset: now.getTimezoneOffset() };
}

/** git's `+hhmm` form of a JavaScript-convention offset. */
export function formatTz(timezoneOffset: number): string {
  const east = -timezoneOffset;
  const sign = east < 0 ? '-' : '+';
  const a = Math.abs(east);
  return `${sign}${String(Math.floor(a / 60)).padStart(2, '0')}${String(a % 60).padStart(2, '0')}`;
}

/** The config keys `wgit config` reads and writes. */
export const USER_KEYS = ['user.name', 'user.email'] as const;
export type UserKey = (typeof USER_KEYS)[number];

/**
 * Sets (or with null, removes) user.name / user.email in the repository's own
 * git config (`.wgit/config`), which plain git reads too.
 */
export async function writeUserConfig(gitdir: string, key: UserKey, value: string | null): Promise<void> {
  if (value !== null && (value.length === 0 || /[<>\n\0]/.test(value)))
    throw new WgitError(
      'E_BAD_IDENTITY',
      `${key} must be non-empty without <, > or a newline: ${JSON.stringify(value)}`,
    );
  const fs = await import('node:fs');
  const git = (await import('isomorphic-git')).default;
  await git.setConfig({ fs, gitdir, path: key, value: value ?? undefined });
}
