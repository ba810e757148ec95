import { lstat, type open, readdir, readFile, realpath, stat } from 'node:fs/promises';
import { join, resolve, sep } from 'node:path';
import type { DType } from '../dtypes.js';
import { type ErrorCode, WgitError } from '../errors.js';
import { relPathProblem } from '../util/safe-path.js';
import {
  openRegularFile,
  PICKLE_HINT,
  quoteName,
  readFully,
  readSafetensorsHeader,
  type SafetensorsHeader,
  type TensorInfo,
} from './header.js';
import { JsonObject, JsonSyntaxError, type JsonValue, parseJson, setOwn, toPlain } from './json.js';

export interface ModelTensor {
  name: string;
  dtype: DType;
  shape: number[];
  byteLength: number;
}

/** A set of tensors plus side files; implemented by files on disk (here) and by commits (store). */
export interface ModelSource {
  root: string;
  kind: 'file' | 'folder';
  /** Shard order, then header order. */
  tensors: ModelTensor[];
  /** Throws E_TENSOR_NOT_FOUND. */
  tensor(name: string): ModelTensor;
  /** Relative POSIX paths of the non-weight files (config.json, tokenizer files …), sorted. */
  sideFiles: string[];
  readSideFile(rel: string): Promise<Uint8Array>;
  /**
   * The `__metadata__` string map of the (first) safetensors file, e.g.
   * `{"format":"pt"}`; methods carry it over to the models they write.
   */
  readonly metadata?: Record<string, string> | null;
  /** Reads only that tensor's bytes; into `into` (a prefix of it) when given. */
  readTensor(name: string, into?: Uint8Array): Promise<Uint8Array>;
  /**
   * An id of the tensor's bytes that two sources of the same kind share
   * exactly when the bytes are equal (the store: its record's tensor hash),
   * known without reading them; absent or null when the source cannot tell.
   */
  contentId?(name: string): string | null;
  /** The same for a side file (the store: its blob id, or its chunk record's hash). */
  sideFileId?(rel: string): Promise<string | null>;
  close(): Promise<void>;
}

export interface SafetensorsIndex {
  metadata: Record<string, unknown>;
  weight_map: Record<string, string>;
}

export interface LocalModel extends ModelSource {
  /** One entry for a single file; shard files sorted by name for a folder. */
  shards: SafetensorsHeader[];
  index: SafetensorsIndex | null;
  /** Relative path of the index file inside the folder (readable through readSideFile), or null. */
  indexFile: string | null;
  /** Size in bytes of each side file. */
  sideFileSizes: Map<string, number>;
  /** Where a side file's bytes are read from (links resolved), for readers that stream it. */
  sideFilePath(rel: string): string;
  /** Absolute path and absolute byte offset of a tensor's data. */
  location(name: string): { file: string; offset: number };
}

/** Index files are small JSON; a larger one is hostile and refused before reading it. */
const MAX_INDEX_BYTES = 100_000_000;
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Opens a .safetensors file or a model folder, reading and validating only the headers. */
export async function openModel(path: string): Promise<LocalModel> {
  const root = resolve(path);
  let st: Awaited<ReturnType<typeof stat>>;
  try {
    st = await stat(root);
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === 'ENOENT' || code === 'ENOTDIR')
      throw new WgitError('E_NOT_FOUND', `${path}: no such file or folder`, { path });
    throw e;
  }
  if (st.isFile()) {
    const header = await readSafetensorsHeader(root);
    return new DiskModel(root, 'file', [header], null, null, new Map(), new Map());
  }
  if (st.isDirectory()) return openFolder(root);
  throw new WgitError('E_NOT_A_MODEL', `${path}: not a file or folder`, { path });
}

interface Listed {
  /** Where reads go: the real path, links resolved. */
  real: string;
  size: number;
}

/**
 * Every regular file under root (relative POSIX path → real path), skipping
 * dot entries. Real folders are walked; a symbolic link to a folder is
 * refused, as git never follows one (following it would record the folder
 * twice, or once under the link's name only). A link to a file is followed
 * when it resolves inside the folder.
 */
async function listFolder(root: string): Promise<Map<string, Listed>> {
  const rootReal = await realpath(root);
  const inside = (p: string) => p === rootReal || p.startsWith(rootReal.endsWith(sep) ? rootReal : rootReal + sep);
  const out = new Map<string, Listed>();
  const walk = async (dirReal: string, relDir: string): Promise<void> => {
    const names = (await readdir(dirReal)).sort();
    for (const name of names) {
      if (name.startsWith('.')) continue;
      const rel = relDir ? `${relDir}/${name}` : name;
      const full = join(dirReal, name);
      let real = full;
      let st = await lstat(full);
      if (st.isSymbolicLink()) {
        try {
          real = await realpath(full);
        } catch {
          throw new WgitError('E_NOT_FOUND', `${join(root, rel)}: symbolic link points to nothing`, {
            path: join(root, rel),
          });
        }
        if (!inside(real)) {
          throw new WgitError('E_UNSAFE_PATH', `${join(root, rel)}: symbolic link leads outside the model folder`, {
            path: join(root, rel),
          });
        }
        st = await stat(real);
        if (st.isDirectory()) {
          throw new WgitError(
            'E_UNSUPPORTED_FILE',
            `${join(root, rel)}: symbolic link to a folder; wgit stores real folders only`,
            { path: join(root, rel) },
          );
        }
      }
      if (st.isDirectory()) {
        await walk(full, rel);
      } else if (st.isFile()) {
        out.set(rel, { real, size: st.size });
      } else {
        throw new WgitError('E_UNSUPPORTED_FILE', `${join(root, rel)}: not a regular file or folder`, {
          path: join(root, rel),
        });
      }
    }
  };
  await walk(rootReal, '');
  return out;
}

async function openFolder(root: string): Promise<LocalModel> {
  const files = await listFolder(root);
  const topLevel = [...files.keys()].filter((f) => !f.includes('/'));
  const indexes = topLevel.filter((f) => f.endsWith('.safetensors.index.json'));
  let indexFile: string | null = null;
  if (indexes.includes('model.safetensors.index.json')) indexFile = 'model.safetensors.index.json';
  else if (indexes.length === 1) indexFile = indexes[0];
  else if (indexes.length > 1) {
    throw new WgitError(
      'E_SAFETENSORS_INDEX',
      `${root}: several index files (${indexes.join(', ')}), cannot tell which is the model`,
      {
        path: root,
      },
    );
  }

  let index: SafetensorsIndex | null = null;
  let shardNames: string[];
  if (indexFile) {
    const listed = files.get(indexFile)!;
    index = await readIndex(join(root, indexFile), listed);
    shardNames = [...new Set(Object.values(index.weight_map))].sort();
    for (const s of shardNames) {
      if (!files.has(s)) await explainMissingShard(root, s, join(root, indexFile));
    }
  } else {
    shardNames = topLevel.filter((f) => f.endsWith('.safetensors')).sort();
    if (shardNames.length === 0) {
      const pickles = topLevel.filter((f) => /\.(bin|pt|pth|ckpt)$/.test(f));
      const other = topLevel.filter((f) => /\.(gguf|h5|msgpack|onnx)$/.test(f));
      const why = pickles.length
        ? `; ${pickles.slice(0, 3).join(', ')} ${pickles.length === 1 ? 'is a PyTorch checkpoint (a pickle)' : 'are PyTorch checkpoints (pickles)'}: ${PICKLE_HINT}`
        : other.length
          ? `; ${other.slice(0, 3).join(', ')} ${other.length === 1 ? 'is' : 'are'} in another format (GGUF, Keras, Flax or ONNX): export the weights as safetensors`
          : '';
      throw new WgitError('E_NOT_A_MODEL', `${root}: no .safetensors file in the folder${why}`, {
        path: root,
        ...(pickles.length ? { pickles } : {}),
      });
    }
  }

  const shards = await Promise.all(shardNames.map((s) => readSafetensorsHeader(join(root, s))));
  const owner = new Map<string, string>();
  shards.forEach((h, i) => {
    for (const t of h.tensors) {
      const prev = owner.get(t.name);
      if (prev !== undefined) {
        throw new WgitError(
          'E_SAFETENSORS_DUPLICATE',
          `${root}: tensor ${quoteName(t.name)} is in both ${prev} and ${shardNames[i]}`,
          {
            path: root,
            tensor: t.name,
          },
        );
      }
      owner.set(t.name, shardNames[i]);
      if (index) {
        const listedIn = Object.hasOwn(index.weight_map, t.name) ? index.weight_map[t.name] : undefined;
        if (listedIn !== shardNames[i]) {
          const where =
            listedIn === undefined ? 'is not in the weight_map' : `is listed in the weight_map under ${listedIn}`;
          throw new WgitError(
            'E_SAFETENSORS_INDEX_MISMATCH',
            `${join(root, shardNames[i])}: tensor ${quoteName(t.name)} ${where}`,
            {
              path: join(root, shardNames[i]),
              tensor: t.name,
            },
          );
        }
      }
    }
  });
  if (index) {
    for (const [name, shard] of Object.entries(index.weight_map)) {
      if (owner.get(name) !== shard) {
        throw new WgitError(
          'E_SAFETENSORS_INDEX_MISMATCH',
          `${join(root, shard)}: tensor ${quoteName(name)} from the weight_map is not in the shard`,
          {
            path: join(root, shard),
            tensor: name,
          },
        );
      }
    }
  }

  if (index) checkForgottenShards(root, topLevel, shardNames, indexFile!);

  const weightFiles = new Set<string>(shardNames);
  if (indexFile) weightFiles.add(indexFile);
  const side = new Map<string, string>();
  const sizes = new Map<string, number>();
  for (const [rel, l] of files) {
    if (weightFiles.has(rel)) continue;
    side.set(rel, l.real);
    sizes.set(rel, l.size);
  }
  if (indexFile) side.set(indexFile, files.get(indexFile)!.real);
  return new DiskModel(root, 'folder', shards, index, indexFile, side, sizes);
}

const SHARD_PATTERN = /^(.*)-(\d+)-of-(\d+)\.safetensors$/;

/**
 * Other .safetensors files may sit beside an index (Mistral's consolidated
 * file), but one numbered like the indexed shards and missing from the index
 * means the index lost its tensors.
 */
function checkForgottenShards(root: string, topLevel: string[], shardNames: string[], indexFile: string): void {
  const series = new Set<string>();
  for (const s of shardNames) {
    const m = SHARD_PATTERN.exec(s);
    if (m) series.add(`${m[1]}\0${m[3]}`);
  }
  const used = new Set(shardNames);
  for (const f of topLevel) {
    const m = SHARD_PATTERN.exec(f);
    if (m && !used.has(f) && series.has(`${m[1]}\0${m[3]}`)) {
      throw new WgitError(
        'E_SAFETENSORS_INDEX_MISMATCH',
        `${join(root, indexFile)}: shard ${quoteName(f)} is in the folder but not in the index`,
        {
          path: join(root, f),
        },
      );
    }
  }
}

/** A shard the listing lacks: absent, hidden, or reachable only through an escaping link. */
async function explainMissingShard(root: string, shard: string, indexPath: string): Promise<void> {
  const full = join(root, shard);
  let real: string;
  try {
    real = await realpath(full);
  } catch {
    throw new WgitError('E_SAFETENSORS_SHARD_MISSING', `${indexPath}: shard ${quoteName(shard)} does not exist`, {
      path: full,
    });
  }
  const rootReal = await realpath(root);
  if (real !== rootReal && !real.startsWith(rootReal + sep)) {
    throw new WgitError('E_UNSAFE_PATH', `${indexPath}: shard ${quoteName(shard)} leads outside the model folder`, {
      path: full,
    });
  }
  // Inside the folder but skipped by the listing (a dot folder): still refuse, the shard would not be committed.
  throw new WgitError(
    'E_SAFETENSORS_SHARD_MISSING',
    `${indexPath}: shard ${quoteName(shard)} is hidden or not a regular file`,
    { path: full },
  );
}

async function readIndex(path: string, listed: Listed): Promise<SafetensorsIndex> {
  const bad = (message: string, code: ErrorCode = 'E_SAFETENSORS_INDEX'): never => {
    throw new WgitError(code, `${path}: ${message}`, { path });
  };
  if (listed.size > MAX_INDEX_BYTES) bad(`index is ${listed.size} bytes, over the ${MAX_INDEX_BYTES}-byte limit`);
  let doc: JsonValue;
  try {
    doc = parseJson(utf8.decode(await readFile(listed.real)));
  } catch (e) {
    if (e instanceof JsonSyntaxError) return bad(`not valid JSON: ${e.message}`);
    if (e instanceof TypeError) return bad('not valid UTF-8');
    throw e;
  }
  if (!(doc instanceof JsonObject)) return bad('not a JSON object');
  let weightMap: JsonValue | undefined;
  let metadata: JsonValue | undefined;
  const keys = new Set<string>();
  for (const [k, v] of doc.entries) {
    if (keys.has(k)) bad(`key ${quoteName(k)} appears twice`, 'E_SAFETENSORS_DUPLICATE');
    keys.add(k);
    if (k === 'weight_map') weightMap = v;
    if (k === 'metadata') metadata = v;
  }
  if (!(weightMap instanceof JsonObject)) return bad('no "weight_map" object');
  if (metadata !== undefined && !(metadata instanceof JsonObject)) bad('"metadata" is not an object');
  if (weightMap.entries.length === 0) bad('"weight_map" is empty');
  const map: Record<string, string> = {};
  const names = new Set<string>();
  for (const [tensor, shard] of weightMap.entries) {
    if (names.has(tensor))
      bad(`tensor ${quoteName(tensor)} is listed twice in the weight_map`, 'E_SAFETENSORS_DUPLICATE');
    names.add(tensor);
    if (typeof shard !== 'string') return bad(`weight_map entry for ${quoteName(tensor)} is not a file name`);
    const problem = relPathProblem(shard);
    if (problem) {
      bad(`shard name ${quoteName(shard)} for tensor ${quoteName(tensor)} ${problem}`, 'E_UNSAFE_PATH');
    }
    setOwn(map, tensor, shard);
  }
  return { metadata: metadata ? (toPlain(metadata) as Record<string, unknown>) : {}, weight_map: map };
}

type FileHandle = Awaited<ReturnType<typeof open>>;

class DiskModel implements LocalModel {
  readonly tensors: ModelTensor[] = [];
  readonly sideFiles: string[];
  readonly metadata: Record<string, string> | null;
  private readonly byName = new Map<string, { shard: number; info: TensorInfo; tensor: ModelTensor }>();
  private readonly handles = new Map<number, Promise<FileHandle>>();

  constructor(
    readonly root: string,
    readonly kind: 'file' | 'folder',
    readonly shards: SafetensorsHeader[],
    readonly index: SafetensorsIndex | null,
    readonly indexFile: string | null,
    /** Readable side files (plus the index file) → real path. */
    private readonly readable: Map<string, string>,
    readonly sideFileSizes: Map<string, number>,
  ) {
    shards.forEach((h, shard) => {
      for (const info of h.tensors) {
        const tensor: ModelTensor = {
          name: info.name,
          dtype: info.dtype,
          shape: info.shape,
          byteLength: info.end - info.begin,
        };
        this.tensors.push(tensor);
        this.byName.set(info.name, { shard, info, tensor });
      }
    });
    this.sideFiles = [...sideFileSizes.keys()].sort();
    this.metadata = shards[0]?.metadata ?? null;
  }

  private entry(name: string) {
    const e = this.byName.get(name);
    if (!e)
      throw new WgitError('E_TENSOR_NOT_FOUND', `${this.root}: no tensor ${quoteName(name)}`, {
        path: this.root,
        tensor: name,
      });
    return e;
  }

  tensor(name: string): ModelTensor {
    return this.entry(name).tensor;
  }

  location(name: string): { file: string; offset: number } {
    const { shard, info } = this.entry(name);
    const h = this.shards[shard];
    return { file: h.path, offset: h.dataStart + info.begin };
  }

  sideFilePath(rel: string): string {
    const real = this.readable.get(rel);
    if (real === undefined)
      throw new WgitError('E_NOT_FOUND', `${this.root}: no side file ${quoteName(rel)}`, {
        path: this.root,
        file: rel,
      });
    return real;
  }

  async readSideFile(rel: string): Promise<Uint8Array> {
    const real = this.readable.get(rel);
    if (real === undefined)
      throw new WgitError('E_NOT_FOUND', `${this.root}: no side file ${quoteName(rel)}`, {
        path: this.root,
        file: rel,
      });
    return new Uint8Array(await readFile(real));
  }

  async readTensor(name: string, into?: Uint8Array): Promise<Uint8Array> {
    const { shard, info } = this.entry(name);
    const h = this.shards[shard];
    const n = info.end - info.begin;
    let target: Uint8Array;
    if (into) {
      if (into.byteLength < n) {
        throw new WgitError(
          'E_BUFFER_TOO_SMALL',
          `${h.path}: tensor ${quoteName(name)} needs ${n} bytes, buffer has ${into.byteLength}`,
          {
            path: h.path,
            tensor: name,
          },
        );
      }
      target = into.byteLength === n ? into : into.subarray(0, n);
    } else {
      target = new Uint8Array(n);
    }
    const fh = await this.handle(shard);
    const got = await readFully(fh, target, h.dataStart + info.begin);
    if (got < n) {
      throw new WgitError(
        'E_SAFETENSORS_TRUNCATED',
        `${h.path}: tensor ${quoteName(name)}: read ${got} of ${n} bytes, the file shrank`,
        {
          path: h.path,
          tensor: name,
        },
      );
    }
    return target;
  }

  private handle(shard: number): Promise<FileHandle> {
    let p = this.handles.get(shard);
    if (!p) {
      p = openRegularFile(this.shards[shard].path);
      this.handles.set(shard, p);
      // A failed open must not stick: the next read tries again.
      p.catch(() => this.handles.delete(shard));
    }
    return p;
  }

  async close(): Promise<void> {
    const hs = [...this.handles.values()];
    this.handles.clear();
    await Promise.all(hs.map(async (p) => (await p.catch(() => null))?.close()));
  }
}
