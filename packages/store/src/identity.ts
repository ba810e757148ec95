import { parseTimestamp, WgitError } from '@wgit/core';

export interface Identity {
  name: string;
  email: string;
  timestamp: number; // unix seconds
  timezoneOffset: number; // minutes, JavaScript's sign convention (UTC+2 is -120), as isomorphic-git wants
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
): Identity {
  const name = override.name ?? env.WGIT_AUTHOR_NAME ?? 'wgit';
  const email = override.email ?? env.WGIT_AUTHOR_EMAIL ?? 'wgit@localhost';
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
