import { inflateSync } from 'node:zlib';
import { WgitError } from '@wgit/core';
import { checkLooseObject } from '../backend/fs/objects.js';

export const OID_RE = /^[0-9a-f]{40}$/;

/** The objects a loose git object points to: a commit's tree and parents, a tree's entries (gitlinks skipped). */
export interface ObjectLinks {
  type: 'commit' | 'tree' | 'blob' | 'tag';
  commits: string[];
  trees: string[];
  blobs: string[];
}

function remoteCorrupt(oid: string, why: string): WgitError {
  return new WgitError('E_REMOTE_CORRUPT', `remote object ${oid} ${why}`, { oid });
}

/**
 * Checks loose object bytes from a remote against their id (sha1 of the
 * inflated `<type> <size>\0<content>`) and reads the ids they link to. A
 * failure is E_REMOTE_CORRUPT naming the object.
 */
export function verifyAndParse(oid: string, bytes: Uint8Array, from: string): ObjectLinks {
  try {
    checkLooseObject(oid, bytes);
  } catch (e) {
    throw remoteCorrupt(oid, `(${from}) is damaged: ${(e as Error).message}`);
  }
  return parseLinks(oid, bytes);
}

/** Links of loose object bytes already known to be intact. */
export function parseLinks(oid: string, bytes: Uint8Array): ObjectLinks {
  const body = inflateSync(bytes);
  const nul = body.indexOf(0);
  const type = body.toString('latin1', 0, nul).split(' ')[0] as ObjectLinks['type'];
  const out: ObjectLinks = { type, commits: [], trees: [], blobs: [] };
  if (type === 'commit') {
    const text = body.toString('latin1', nul + 1);
    const headEnd = text.indexOf('\n\n');
    for (const line of (headEnd < 0 ? text : text.slice(0, headEnd)).split('\n')) {
      const m = /^(tree|parent) ([0-9a-f]{40})$/.exec(line);
      if (m) (m[1] === 'tree' ? out.trees : out.commits).push(m[2]);
    }
    if (out.trees.length !== 1) throw remoteCorrupt(oid, 'is a commit without one tree');
  } else if (type === 'tree') {
    let p = nul + 1;
    while (p < body.length) {
      const sp = body.indexOf(0x20, p);
      const z = body.indexOf(0, sp);
      if (sp < 0 || z < 0 || z + 21 > body.length) throw remoteCorrupt(oid, 'is a truncated tree');
      const mode = body.toString('latin1', p, sp);
      const child = body.toString('hex', z + 1, z + 21);
      if (mode === '40000') out.trees.push(child);
      else if (mode !== '160000') out.blobs.push(child);
      p = z + 21;
    }
  }
  return out;
}
