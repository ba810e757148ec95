import { open, stat } from 'node:fs/promises';
import { type DType, dtypeSize, isDType } from '../dtypes.js';
import { type ErrorCode, WgitError } from '../errors.js';
import { JsonObject, JsonSyntaxError, type JsonValue, parseJson, safeInteger, setOwn } from './json.js';

/** Offsets are relative to the start of the data section, as in the file. */
export interface TensorInfo {
  name: string;
  dtype: DType;
  shape: number[];
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  path: string;
  fileSize: number;
  /** The 8-byte length prefix and the JSON exactly as in the file. */
  headerBytes: Uint8Array;
  /** 8 + JSON length: where the data section starts. */
  dataStart: number;
  /** In header (file) order, which need not be offset order. */
  tensors: TensorInfo[];
  metadata: Record<string, string> | null;
}

export interface TensorSpec {
  name: string;
  dtype: DType;
  shape: number[];
}

/** The reference implementation's limit; a larger header is refused before anything is allocated. */
export const MAX_HEADER_BYTES = 100_000_000;

/** Positional reads of a file-like object; lets tests see every allocation the reader asks for. */
export interface ByteReader {
  size: number;
  read(position: number, length: number): Promise<Uint8Array>;
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const utf8Encoder = new TextEncoder();

/** A tensor name for one-line messages: quoted, escaped, and cut if absurdly long. */
export function quoteName(name: string): string {
  const q = JSON.stringify(name);
  return q.length > 200 ? `${q.slice(0, 197)}…"` : q;
}

function fail(code: ErrorCode, path: string, message: string, data: Record<string, unknown> = {}): never {
  throw new WgitError(code, `${path}: ${message}`, { path, ...data });
}

/**
 * Validates a header the way the reference implementation does (and a bit
 * stricter: duplicate keys and unknown entry fields are refused too).
 * `bytes` starts at the file's first byte and holds at least the whole header.
 */
export function parseSafetensorsHeader(bytes: Uint8Array, fileSize: number, path: string): SafetensorsHeader {
  if (fileSize < 8 || bytes.byteLength < 8) {
    fail(
      'E_SAFETENSORS_TRUNCATED',
      path,
      `file is ${Math.min(fileSize, bytes.byteLength)} bytes, shorter than the 8-byte header length`,
    );
  }
  const declared = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  if (declared > BigInt(MAX_HEADER_BYTES)) {
    fail(
      'E_SAFETENSORS_HEADER_TOO_LARGE',
      path,
      `declared header length ${declared} exceeds ${MAX_HEADER_BYTES} bytes`,
    );
  }
  const n = Number(declared);
  if (n > fileSize - 8) {
    fail(
      'E_SAFETENSORS_TRUNCATED',
      path,
      `declared header length ${n} exceeds the ${fileSize - 8} bytes after the length prefix`,
    );
  }
  if (bytes.byteLength < 8 + n) {
    fail('E_SAFETENSORS_TRUNCATED', path, `only ${bytes.byteLength - 8} of ${n} header bytes available`);
  }
  const headerBytes = bytes.subarray(0, 8 + n);
  const dataLength = fileSize - 8 - n;

  let text: string;
  try {
    text = utf8.decode(headerBytes.subarray(8));
  } catch {
    return fail('E_SAFETENSORS_JSON', path, 'header is not valid UTF-8');
  }
  if (text.charCodeAt(0) !== 0x7b) fail('E_SAFETENSORS_JSON', path, 'header does not start with "{"');
  let doc: JsonValue;
  try {
    doc = parseJson(text);
  } catch (e) {
    if (e instanceof JsonSyntaxError) fail('E_SAFETENSORS_JSON', path, `header is not valid JSON: ${e.message}`);
    throw e;
  }
  if (!(doc instanceof JsonObject)) fail('E_SAFETENSORS_JSON', path, 'header is not a JSON object');

  const seen = new Set<string>();
  const tensors: TensorInfo[] = [];
  let metadata: Record<string, string> | null = null;
  for (const [name, entry] of doc.entries) {
    if (seen.has(name))
      fail('E_SAFETENSORS_DUPLICATE', path, `tensor ${quoteName(name)} appears twice in the header`, { tensor: name });
    seen.add(name);
    if (name === '__metadata__') {
      metadata = parseMetadata(entry, path);
      continue;
    }
    tensors.push(parseEntry(name, entry, dataLength, path));
  }
  checkTiling(tensors, dataLength, path);
  return { path, fileSize, headerBytes, dataStart: 8 + n, tensors, metadata };
}

function parseMetadata(entry: JsonValue, path: string): Record<string, string> {
  if (!(entry instanceof JsonObject)) fail('E_SAFETENSORS_METADATA', path, '__metadata__ is not an object');
  const out: Record<string, string> = {};
  const keys = new Set<string>();
  for (const [k, v] of entry.entries) {
    if (keys.has(k)) fail('E_SAFETENSORS_DUPLICATE', path, `__metadata__ key ${quoteName(k)} appears twice`);
    keys.add(k);
    if (typeof v !== 'string')
      fail('E_SAFETENSORS_METADATA', path, `__metadata__ value of ${quoteName(k)} is not a string`);
    setOwn(out, k, v);
  }
  return out;
}

function parseEntry(name: string, entry: JsonValue, dataLength: number, path: string): TensorInfo {
  // Messages are built only on failure: quoting every name up front costs an allocation per tensor.
  const bad = (code: ErrorCode, what: string): never =>
    fail(code, path, name.length === 0 ? 'a tensor has an empty name' : `tensor ${quoteName(name)}: ${what}`, {
      tensor: name,
    });
  if (name.length === 0) bad('E_SAFETENSORS_NAME', 'empty name');
  if (name.includes('\0')) bad('E_SAFETENSORS_NAME', 'name contains a NUL character');
  if (!(entry instanceof JsonObject)) return bad('E_SAFETENSORS_ENTRY', 'entry is not an object');
  let dtype: JsonValue | undefined;
  let shape: JsonValue | undefined;
  let offsets: JsonValue | undefined;
  for (const [k, v] of entry.entries) {
    let again: boolean;
    if (k === 'dtype') {
      again = dtype !== undefined;
      dtype = v;
    } else if (k === 'shape') {
      again = shape !== undefined;
      shape = v;
    } else if (k === 'data_offsets') {
      again = offsets !== undefined;
      offsets = v;
    } else {
      return bad('E_SAFETENSORS_ENTRY', `unknown field ${quoteName(k)}`);
    }
    if (again) bad('E_SAFETENSORS_DUPLICATE', `field ${quoteName(k)} appears twice`);
  }
  if (dtype === undefined || shape === undefined || offsets === undefined) {
    const missing = [
      dtype === undefined && 'dtype',
      shape === undefined && 'shape',
      offsets === undefined && 'data_offsets',
    ];
    return bad('E_SAFETENSORS_ENTRY', `missing ${missing.filter(Boolean).join(', ')}`);
  }
  if (typeof dtype !== 'string') return bad('E_SAFETENSORS_DTYPE', 'dtype is not a string');
  if (!isDType(dtype)) return bad('E_SAFETENSORS_DTYPE', `unknown dtype ${quoteName(dtype)}`);
  if (!Array.isArray(shape)) return bad('E_SAFETENSORS_SHAPE', 'shape is not a list');
  const dims: number[] = new Array(shape.length);
  for (let i = 0; i < shape.length; i++) {
    const v = safeInteger(shape[i]);
    if (v === null)
      return bad('E_SAFETENSORS_SHAPE', 'shape has a dimension that is not a non-negative integer below 2^53');
    dims[i] = v;
  }
  if (!Array.isArray(offsets) || offsets.length !== 2)
    return bad('E_SAFETENSORS_OFFSETS', 'data_offsets is not a pair [begin, end]');
  const begin = safeInteger(offsets[0]);
  const end = safeInteger(offsets[1]);
  if (begin === null || end === null)
    return bad('E_SAFETENSORS_OFFSETS', 'data_offsets are not non-negative integers below 2^53');
  if (begin > end) bad('E_SAFETENSORS_OFFSETS', `data_offsets begin ${begin} > end ${end}`);
  if (end > dataLength) bad('E_SAFETENSORS_OFFSETS', `data ends at ${end}, past the ${dataLength}-byte data section`);
  const expected = byteLengthOf(dims, dtype, end - begin);
  if (expected !== end - begin) {
    const needs = expected === null ? `more than ${end - begin}` : String(expected);
    bad(
      'E_SAFETENSORS_SHAPE',
      `shape [${dims.join(',')}] of ${dtype} needs ${needs} bytes, data_offsets give ${end - begin}`,
    );
  }
  return { name, dtype, shape: dims, begin, end };
}

/** Bytes the shape needs, or null when that exceeds `limit` (so no product can overflow). */
function byteLengthOf(dims: number[], dtype: DType, limit: number): number | null {
  if (dims.includes(0)) return 0;
  let n = dtypeSize(dtype);
  for (const d of dims) {
    n *= d;
    if (n > limit) return null;
  }
  return n;
}

/** Tensors sorted by offset must cover the data section exactly: no gap, no overlap, no trailing bytes. */
function checkTiling(tensors: TensorInfo[], dataLength: number, path: string): void {
  const order = tensors
    .map((_, i) => i)
    .sort((a, b) => tensors[a].begin - tensors[b].begin || tensors[a].end - tensors[b].end);
  let at = 0;
  for (const i of order) {
    const t = tensors[i];
    if (t.begin !== at) {
      const what =
        t.begin > at
          ? `leaves a gap at bytes ${at}..${t.begin}`
          : `overlaps the previous tensor (begins at ${t.begin}, previous ends at ${at})`;
      fail('E_SAFETENSORS_OFFSETS', path, `tensor ${quoteName(t.name)}: ${what}`, { tensor: t.name });
    }
    at = t.end;
  }
  if (at !== dataLength) {
    fail('E_SAFETENSORS_OFFSETS', path, `tensors cover ${at} of the ${dataLength} data bytes`);
  }
}

/** What a file that is not safetensors looks like, from its first bytes, or null. */
export function otherFormat(prefix: Uint8Array): string | null {
  const [a, b, c, d] = prefix;
  if (a === 0x80 && b >= 2 && b <= 5) return 'a Python pickle (a PyTorch checkpoint saved by torch.save)';
  if (a === 0x50 && b === 0x4b && c === 3 && d === 4)
    return 'a zip archive (the format torch.save writes PyTorch checkpoints in)';
  if (a === 0x47 && b === 0x47 && c === 0x55 && d === 0x46) return 'a GGUF file (llama.cpp)';
  if (a === 0x89 && b === 0x48 && c === 0x44 && d === 0x46) return 'an HDF5 file (a Keras .h5 model)';
  if (prefix.length > 0 && prefix.every((x) => x === 9 || x === 10 || x === 13 || (x >= 0x20 && x < 0x7f)))
    return a === 0x7b || a === 0x5b ? 'JSON text' : 'text';
  return null;
}

/** How to turn a pickled PyTorch checkpoint into safetensors, for error messages. */
export const PICKLE_HINT =
  'wgit reads safetensors only (loading a pickle can run code); convert it with: python -c "import torch; ' +
  "from safetensors.torch import save_file; save_file(torch.load('pytorch_model.bin', weights_only=True), " +
  "'model.safetensors')\" (or save_pretrained(..., safe_serialization=True) in transformers)";

/** Reads and validates only the header of a file: 8 bytes, then the declared JSON once it is known to fit. */
export async function readSafetensorsHeaderFrom(reader: ByteReader, path: string): Promise<SafetensorsHeader> {
  const size = reader.size;
  if (size < 8) fail('E_SAFETENSORS_TRUNCATED', path, `file is ${size} bytes, shorter than the 8-byte header length`);
  const prefix = await reader.read(0, 8);
  if (prefix.byteLength < 8) fail('E_SAFETENSORS_TRUNCATED', path, 'file shrank while its header was read');
  const declared = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  // Check the length against the limit and the file size before allocating anything for it.
  if (declared > BigInt(MAX_HEADER_BYTES) || Number(declared) > size - 8) {
    // A file not named .safetensors whose first bytes say what else it is gets that said.
    const other = path.endsWith('.safetensors') ? null : otherFormat(prefix);
    if (other)
      throw new WgitError(
        'E_NOT_A_MODEL',
        `${path} is not a safetensors file: it looks like ${other}${other.includes('PyTorch') ? `; ${PICKLE_HINT}` : ''}`,
        { path, format: other },
      );
    return parseSafetensorsHeader(prefix, size, path);
  }
  const n = Number(declared);
  const bytes = new Uint8Array(8 + n);
  bytes.set(prefix.subarray(0, 8));
  if (n > 0) {
    const json = await reader.read(8, n);
    if (json.byteLength < n) fail('E_SAFETENSORS_TRUNCATED', path, 'file shrank while its header was read');
    bytes.set(json.subarray(0, n), 8);
  }
  return parseSafetensorsHeader(bytes, size, path);
}

export async function readSafetensorsHeader(path: string): Promise<SafetensorsHeader> {
  const fh = await openRegularFile(path);
  try {
    const { size } = await fh.stat();
    return await readSafetensorsHeaderFrom(
      {
        size,
        async read(position, length) {
          const buf = new Uint8Array(length);
          const got = await readFully(fh, buf, position);
          return got === length ? buf : buf.subarray(0, got);
        },
      },
      path,
    );
  } finally {
    await fh.close();
  }
}

type FileHandle = Awaited<ReturnType<typeof open>>;

/** Opens for reading after checking it is a regular file: opening a FIFO would block forever. */
export async function openRegularFile(path: string): Promise<FileHandle> {
  let st: Awaited<ReturnType<typeof stat>>;
  try {
    st = await stat(path);
  } catch (e) {
    if ((e as { code?: string }).code === 'ENOENT' || (e as { code?: string }).code === 'ENOTDIR') {
      throw new WgitError('E_NOT_FOUND', `${path}: no such file or folder`, { path });
    }
    throw e;
  }
  if (!st.isFile()) throw new WgitError('E_NOT_A_MODEL', `${path}: not a regular file`, { path });
  return open(path, 'r');
}

/** Node caps one read at 2 GiB; larger ranges are read in pieces. */
const MAX_READ = 1 << 30;

/** Reads into `buf` from `position` until full or end of file; returns the bytes read. */
export async function readFully(fh: FileHandle, buf: Uint8Array, position: number): Promise<number> {
  let done = 0;
  while (done < buf.byteLength) {
    const want = Math.min(buf.byteLength - done, MAX_READ);
    const { bytesRead } = await fh.read(buf, done, want, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}

/**
 * The header exactly as the reference implementation writes it: compact JSON,
 * `__metadata__` first, tensors in the given order with contiguous offsets,
 * padded with spaces to a multiple of 8 bytes.
 */
export function encodeSafetensorsHeader(
  specs: TensorSpec[],
  metadata?: Record<string, string> | null,
  path = '<new file>',
): { bytes: Uint8Array; tensors: TensorInfo[]; dataLength: number } {
  const parts: string[] = [];
  if (metadata) {
    if (typeof metadata !== 'object' || Array.isArray(metadata))
      fail('E_SAFETENSORS_METADATA', path, 'metadata is not an object');
    const kv: string[] = [];
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string')
        fail('E_SAFETENSORS_METADATA', path, `metadata value of ${quoteName(k)} is not a string`);
      kv.push(`${JSON.stringify(k)}:${JSON.stringify(v)}`);
    }
    parts.push(`"__metadata__":{${kv.join(',')}}`);
  }
  const names = new Set<string>();
  const tensors: TensorInfo[] = [];
  let offset = 0;
  for (const spec of specs) {
    const { name, dtype, shape } = spec;
    const t = quoteName(String(name));
    if (typeof name !== 'string' || name.length === 0 || name.includes('\0') || name === '__metadata__') {
      fail('E_SAFETENSORS_NAME', path, `invalid tensor name ${t}`, { tensor: name });
    }
    if (names.has(name)) fail('E_SAFETENSORS_DUPLICATE', path, `tensor ${t} given twice`, { tensor: name });
    names.add(name);
    if (typeof dtype !== 'string' || !isDType(dtype))
      fail('E_SAFETENSORS_DTYPE', path, `tensor ${t}: unknown dtype ${quoteName(String(dtype))}`, { tensor: name });
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      fail('E_SAFETENSORS_SHAPE', path, `tensor ${t}: shape is not a list of non-negative integers`, { tensor: name });
    }
    const n = byteLengthOf(shape, dtype, Number.MAX_SAFE_INTEGER - offset);
    if (n === null) fail('E_SAFETENSORS_SHAPE', path, `tensor ${t}: too large`, { tensor: name });
    tensors.push({ name, dtype, shape: [...shape], begin: offset, end: offset + n });
    parts.push(
      `${JSON.stringify(name)}:{"dtype":"${dtype}","shape":[${shape.join(',')}],"data_offsets":[${offset},${offset + n}]}`,
    );
    offset += n;
  }
  const json = utf8Encoder.encode(`{${parts.join(',')}}`);
  const padded = Math.ceil(json.byteLength / 8) * 8;
  if (padded > MAX_HEADER_BYTES) fail('E_SAFETENSORS_HEADER_TOO_LARGE', path, `header would be ${padded} bytes`);
  const bytes = new Uint8Array(8 + padded).fill(0x20, 8 + json.byteLength);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(padded), true);
  bytes.set(json, 8);
  return { bytes, tensors, dataLength: offset };
}
