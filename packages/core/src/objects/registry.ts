/**
 * The object kinds this wgit knows, and how a stored tensor set is mapped to
 * one: by the manifest's `object` header when it has one, else by
 * recognising an older stored form from its tensor names, else a checkpoint.
 */
import { WgitError } from '../errors.js';
import { checkpoint } from './checkpoint.js';
import { diffVector } from './diff-vector.js';
import type { ObjectHeader, ObjectKind } from './kind.js';
import { lowRank } from './low-rank.js';
import { rmmBasis } from './rmm-basis.js';
import { rws } from './rws.js';
import { sparseDelta } from './sparse-delta.js';

export const OBJECT_KINDS: readonly ObjectKind[] = [
  checkpoint,
  rmmBasis,
  diffVector as unknown as ObjectKind,
  sparseDelta as unknown as ObjectKind,
  rws as unknown as ObjectKind,
  lowRank as unknown as ObjectKind,
];

export function listObjectKinds(): string[] {
  return OBJECT_KINDS.map((k) => k.name);
}

/** The kind of that name; a name this wgit does not know means a newer writer. */
export function getObjectKind(name: string): ObjectKind {
  const k = OBJECT_KINDS.find((x) => x.name === name);
  if (!k)
    throw new WgitError(
      'E_CORRUPT',
      `unknown object kind ${JSON.stringify(name)} (known: ${listObjectKinds().join(', ')}); was it written by a newer wgit?`,
      { kind: name },
    );
  return k;
}

export interface ResolvedObject {
  kind: ObjectKind;
  header: ObjectHeader;
  /** True when the kind was recognised from the tensors, not read from the manifest. */
  detected: boolean;
}

/** The kind of a tensor set from its manifest header (absent in older repositories) and its tensor names. */
export function resolveObject(header: ObjectHeader | undefined, tensorNames: readonly string[]): ResolvedObject {
  if (header) {
    const kind = getObjectKind(header.kind);
    if (!Number.isInteger(header.version) || header.version < 0 || header.version > kind.version)
      throw new WgitError(
        'E_CORRUPT',
        `object kind ${kind.name} version ${String(header.version)} is not supported (this wgit reads up to ${kind.version}); was it written by a newer wgit?`,
        { kind: kind.name, version: header.version },
      );
    return { kind, header, detected: false };
  }
  for (const kind of OBJECT_KINDS) {
    const version = kind.detect?.(tensorNames);
    if (version !== undefined && version !== null)
      return { kind, header: { kind: kind.name, version }, detected: true };
  }
  return { kind: checkpoint, header: { kind: checkpoint.name, version: checkpoint.version }, detected: false };
}
