import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { WgitError } from '@wgit/core';

/** Where a remote lives: a folder holding a wgit repository, or a bucket and key prefix in S3-compatible storage. */
export type RemoteLocation = { kind: 'folder'; path: string } | { kind: 's3'; bucket: string; prefix: string };

/** Query parameters of pre-signed or token-carrying URLs: their values are secrets. */
const SECRET_PARAMS =
  /(^|[?&])(x-amz-signature|x-amz-credential|x-amz-security-token|awsaccesskeyid|signature|access_?key|secret|token|password)=/i;

function bad(why: string): WgitError {
  return new WgitError('E_REMOTE_URL', why);
}

/**
 * Checks that a URL carries no secret (user:password@host, a signed or
 * token-bearing query) and gives back what is safe to print. The message of
 * a refusal never repeats the secret.
 */
export function refuseCredentials(url: string): void {
  const m = /^([a-z][a-z0-9+.-]*):\/\/([^/?#]*)/i.exec(url);
  if (m?.[2].includes('@'))
    throw bad(
      `remote URLs must not carry credentials (${m[1]}://…@…): use the AWS credential chain (environment, ~/.aws files) instead`,
    );
  if (SECRET_PARAMS.test(url.replace(/^[^?]*/, '')))
    throw bad('remote URLs must not carry credentials in their query (signatures, keys, tokens)');
}

/** An S3 bucket name as S3 allows it (3–63 of a-z 0-9 . -), so it cannot smuggle a host or a path. */
const BUCKET_RE = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

/** A key prefix: plain path segments, no `.`/`..`, no empty or control characters. */
function checkPrefix(prefix: string): string {
  const p = prefix.replace(/^\/+|\/+$/g, '');
  if (p === '') return '';
  for (const seg of p.split('/')) {
    if (seg === '' || seg === '.' || seg === '..' || /[\0-\x1f\x7f\\]/.test(seg))
      throw bad(`bad key prefix in s3 URL: ${JSON.stringify(prefix)}`);
  }
  return p;
}

/**
 * Parses a remote URL: `s3://bucket[/prefix]`, `file:///abs/path`, or a
 * plain folder path (relative to `cwd`). Anything else, and any URL with
 * credentials in it, is E_REMOTE_URL.
 */
export function parseRemoteUrl(url: string, cwd = process.cwd()): RemoteLocation {
  if (typeof url !== 'string' || url.length === 0 || url.length > 4096 || /[\0\n\r]/.test(url))
    throw bad('a remote URL must be a non-empty single line');
  refuseCredentials(url);
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(url)?.[1]?.toLowerCase();
  if (scheme === 's3') {
    const rest = url.slice(5);
    if (/[?#]/.test(rest)) throw bad('s3 URLs take no query or fragment: s3://bucket/prefix');
    const slash = rest.indexOf('/');
    const bucket = slash < 0 ? rest : rest.slice(0, slash);
    if (!BUCKET_RE.test(bucket) || bucket.includes('..'))
      throw bad(`bad bucket name in s3 URL: ${JSON.stringify(bucket)}`);
    return { kind: 's3', bucket, prefix: checkPrefix(slash < 0 ? '' : rest.slice(slash + 1)) };
  }
  if (scheme === 'file') {
    let p: string;
    try {
      p = fileURLToPath(url);
    } catch {
      throw bad('a file:// URL must name an absolute local path (file:///path)');
    }
    return { kind: 'folder', path: path.resolve(p) };
  }
  if (scheme) throw bad(`unsupported remote scheme ${scheme}:// (use a folder, file:// or s3://)`);
  return { kind: 'folder', path: path.resolve(cwd, url) };
}

/** The URL as stored and shown: folders as absolute paths, s3 as s3://bucket/prefix. */
export function canonicalUrl(loc: RemoteLocation): string {
  return loc.kind === 'folder' ? loc.path : `s3://${loc.bucket}${loc.prefix ? `/${loc.prefix}` : ''}`;
}

/** An endpoint URL (http[s]://host[:port][/path]) without credentials. */
export function checkEndpoint(endpoint: string): string {
  refuseCredentials(endpoint);
  let u: URL;
  try {
    u = new URL(endpoint);
  } catch {
    throw bad(`bad endpoint URL ${JSON.stringify(endpoint.slice(0, 200))}`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw bad('an endpoint must be an http:// or https:// URL');
  if (u.search || u.hash) throw bad('an endpoint URL takes no query or fragment');
  return u.toString().replace(/\/$/, '');
}
