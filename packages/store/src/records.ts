import { type DType, dtypeSize, isDType, type ObjectHeader, WgitError } from '@wgit/core';
import { Packr, Unpackr } from 'msgpackr';
import { HASH_RE } from './chunk-file.js';
import type { ChunkEncoding } from './codec/index.js';
import { checkRelPath } from './names.js';

/**
 * One msgpack record per tensor under `tensors/<escaped name>` in a commit's
 * tree (plain msgpack maps, no msgpackr extensions, so any msgpack reader
 * can decode them). Chunk i covers bytes [i·chunkSize, (i+1)·chunkSize).
 */
export interface ChunkRef {
  hash: string; // sha256 of the raw chunk bytes = the chunk file's name
  encoding: ChunkEncoding; // as stored when the commit was made
  stored: number; // chunk file bytes
  depth: number; // delta chain depth at commit time
}

/**
 * Record format 2 (written since the chunk pipeline hashes each chunk once):
 * `sha256` is the sha256 of the chunk ids (32 raw bytes each, in order), so it
 * needs no second pass over the tensor bytes; each chunk's bytes are checked
 * against its id. Format 1 records (older repositories) hold the sha256 of
 * the tensor's raw bytes and are still read.
 */
export type RecordFormat = 1 | 2;
export const RECORD_FORMAT: RecordFormat = 2;

export interface TensorRecord {
  format: RecordFormat;
  name: string;
  dtype: DType;
  shape: number[];
  byteLength: number;
  sha256: string; // format 2: of the chunk ids; format 1: of the raw bytes
  chunkSize: number;
  chunks: ChunkRef[];
}

export interface ShardEntry {
  file: string; // relative POSIX path of the .safetensors file in the model
  size: number; // its byte size
  tensors: string[]; // tensor names in data-offset order, the order their bytes follow the header
}

/**
 * `wgit.json` at the root of a commit's tree (and of each group). Format 2
 * adds `chunkedFiles`: side files stored in the chunk store, whose tree entry
 * under files/ holds a record (dtype U8) instead of the bytes. Format 3 adds
 * `object`: the kind of object the tensor set holds, when it is not a plain
 * checkpoint. Each set is written in the lowest format that holds it, so
 * plain commits stay readable by older wgit, and older wgit refuses what it
 * would misread.
 */
export type ManifestFormat = 1 | 2 | 3;

export interface Manifest {
  format: ManifestFormat;
  kind: 'file' | 'folder';
  shards: ShardEntry[];
  tensors: string[]; // model order: shard order, then header order
  index: string | null; // the sharded index file's relative path (kept under files/ like any side file)
  files: string[]; // side files, relative POSIX paths, under files/
  rawBytes: number;
  recipe: Record<string, unknown> | null;
  groups: string[];
  /** Format 2 and up: the side files (a subset of `files`) kept as chunk records. */
  chunkedFiles?: string[];
  /** Format 3: what object the set holds (absent: a checkpoint, or a form older wgit wrote, recognised by its tensors). */
  object?: ObjectHeader;
}

/** The lowest manifest format that holds a set with these parts. */
export function manifestFormat(parts: { chunkedFiles: boolean; object: boolean }): ManifestFormat {
  return parts.object ? 3 : parts.chunkedFiles ? 2 : 1;
}

const packr = new Packr({ useRecords: false, variableMapSize: true });
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true });

export function encodeRecord(r: TensorRecord): Uint8Array {
  return packr.pack({
    format: r.format,
    name: r.name,
    dtype: r.dtype,
    shape: r.shape,
    byteLength: r.byteLength,
    sha256: r.sha256,
    chunkSize: r.chunkSize,
    chunks: r.chunks.map((c) => ({ hash: c.hash, encoding: c.encoding, stored: c.stored, depth: c.depth })),
  });
}

const ENCODINGS = new Set(['raw', 'zipnn', 'xor-zipnn']);
const isCount = (x: unknown): x is number => Number.isSafeInteger(x) && (x as number) >= 0;

export function decodeRecord(bytes: Uint8Array, where: string): TensorRecord {
  const fail = (why: string) => new WgitError('E_CORRUPT', `tensor record ${where}: ${why}`, { where });
  let r: Record<string, unknown>;
  try {
    r = unpackr.unpack(bytes) as Record<string, unknown>;
  } catch {
    throw fail('not msgpack');
  }
  if (!r || typeof r !== 'object' || Array.isArray(r)) throw fail('not a map');
  if (r.format !== 1 && r.format !== 2) throw fail(`unsupported format ${String(r.format)}`);
  if (typeof r.name !== 'string') throw fail('name is not a string');
  if (typeof r.dtype !== 'string' || !isDType(r.dtype)) throw fail('unknown dtype');
  if (!Array.isArray(r.shape) || !r.shape.every(isCount)) throw fail('bad shape');
  if (!isCount(r.byteLength)) throw fail('bad byteLength');
  const elements = (r.shape as number[]).reduce((a, b) => a * b, 1);
  if (elements * dtypeSize(r.dtype) !== r.byteLength) throw fail('shape and dtype do not match byteLength');
  if (typeof r.sha256 !== 'string' || !HASH_RE.test(r.sha256)) throw fail('bad sha256');
  if (!isCount(r.chunkSize) || r.chunkSize === 0 || r.chunkSize % 8 !== 0) throw fail('bad chunkSize');
  if (!Array.isArray(r.chunks) || r.chunks.length !== Math.ceil(r.byteLength / r.chunkSize)) {
    throw fail('chunk list does not cover the tensor');
  }
  const chunks: ChunkRef[] = r.chunks.map((c: Record<string, unknown>) => {
    if (!c || typeof c !== 'object') throw fail('bad chunk entry');
    if (typeof c.hash !== 'string' || !HASH_RE.test(c.hash)) throw fail('bad chunk hash');
    if (typeof c.encoding !== 'string' || !ENCODINGS.has(c.encoding)) throw fail('bad chunk encoding');
    if (!isCount(c.stored) || !isCount(c.depth)) throw fail('bad chunk sizes');
    return { hash: c.hash, encoding: c.encoding as ChunkEncoding, stored: c.stored, depth: c.depth };
  });
  return {
    format: r.format,
    name: r.name,
    dtype: r.dtype,
    shape: r.shape as number[],
    byteLength: r.byteLength,
    sha256: r.sha256,
    chunkSize: r.chunkSize,
    chunks,
  };
}

export function encodeManifest(m: Manifest): Uint8Array {
  return Buffer.from(`${JSON.stringify(m, null, 2)}\n`);
}

export function decodeManifest(bytes: Uint8Array, where: string): Manifest {
  const fail = (why: string) => new WgitError('E_CORRUPT', `manifest ${where}: ${why}`, { where });
  let m: Manifest;
  try {
    m = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    throw fail('not JSON');
  }
  if (!m || typeof m !== 'object') throw fail('not an object');
  if (m.format !== 1 && m.format !== 2 && m.format !== 3) throw fail(`unsupported format ${String(m.format)}`);
  if (m.kind !== 'file' && m.kind !== 'folder') throw fail('bad kind');
  const strList = (x: unknown) => Array.isArray(x) && x.every((s) => typeof s === 'string');
  if (!strList(m.tensors) || !strList(m.files) || !strList(m.groups)) throw fail('bad lists');
  if (m.index !== null && typeof m.index !== 'string') throw fail('bad index');
  if (!isCount(m.rawBytes)) throw fail('bad rawBytes');
  if (m.recipe !== null && (typeof m.recipe !== 'object' || Array.isArray(m.recipe))) throw fail('bad recipe');
  if (!Array.isArray(m.shards) || m.shards.length === 0) throw fail('no shards');
  if (m.kind === 'file' && m.shards.length !== 1) throw fail('a file commit has exactly one shard');
  const seen = new Set<string>();
  for (const s of m.shards) {
    if (!s || typeof s.file !== 'string' || !isCount(s.size) || !strList(s.tensors)) throw fail('bad shard entry');
    checkRelPath(s.file, 'shard');
    for (const t of s.tensors) {
      if (seen.has(t)) throw fail(`tensor ${JSON.stringify(t)} listed twice`);
      seen.add(t);
    }
  }
  if (seen.size !== m.tensors.length || !m.tensors.every((t) => seen.has(t)))
    throw fail('shards and tensor list disagree');
  for (const f of m.files) checkRelPath(f, 'side file');
  if (m.index !== null) {
    checkRelPath(m.index, 'index');
    if (!m.files.includes(m.index)) throw fail('index is not among the side files');
  }
  if (m.format === 2 || (m.format === 3 && m.chunkedFiles !== undefined)) {
    const chunked = m.chunkedFiles;
    if (!strList(chunked) || !chunked!.every((f) => m.files.includes(f))) throw fail('bad chunkedFiles');
  } else if (m.chunkedFiles !== undefined) throw fail('chunkedFiles in a format 1 manifest');
  if (m.format === 3) {
    const o = m.object as unknown as Record<string, unknown> | undefined;
    if (!o || typeof o !== 'object' || Array.isArray(o)) throw fail('a format 3 manifest names its object');
    if (typeof o.kind !== 'string' || !/^[a-z][a-z0-9-]{0,63}$/.test(o.kind)) throw fail('bad object kind');
    if (!isCount(o.version)) throw fail('bad object version');
    if (o.meta !== undefined && (!o.meta || typeof o.meta !== 'object' || Array.isArray(o.meta)))
      throw fail('bad object meta');
  } else if (m.object !== undefined) throw fail(`object in a format ${m.format} manifest`);
  return m;
}
