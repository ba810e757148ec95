/**
 * A commit built from a stream of tensors: the store as a pipeline sink.
 * Each tensor's bytes are cut into chunks, and each chunk is hashed, encoded
 * (against the parent's chunk at the same position when name, dtype and
 * shape match) and written as a temp file on the chunk worker threads, while
 * the pipeline goes on with the next tensor. The shard headers, the index of
 * a sharded model and the manifest are exactly those a commit of the folder
 * ModelWriter would write holds, so checkout rebuilds that folder byte for
 * byte; nothing is written to a scratch folder and read back.
 *
 * Tensor groups (`sink.group(name, header)`: a reversible merge's basis)
 * stream in the same way, interleaved with the model, and land under
 * `groups/<name>/` with the header in their manifest (format 3): the tree a
 * folder commit of the same group gets with `repo.commit({ groups })`.
 *
 * Lifecycle: begin → (group: begin → write… → finish)… and write… → finish
 * (side files; every chunk durable and under its name) → commit (manifest,
 * tree, commit, ref by compare-and-swap; may be called again after
 * E_BRANCH_MOVED) → close. abort/close after a failure removes this commit's
 * temp files; chunks already placed stay (unreferenced, for gc), as with a
 * failed folder commit.
 */
import {
  DEFAULT_MAX_SHARD_BYTES,
  encodeSafetensorsHeader,
  formatIndex,
  type GroupHeader,
  INDEX_FILE_NAME,
  parseSafetensorsHeader,
  planShards,
  SINGLE_FILE_NAME,
  type SideFileSource,
  type Sink,
  type SinkPlan,
  shardFileName,
  type TensorSpec,
  WgitError,
} from '@wgit/core';
import type { FolderChunks } from './backend/fs/chunks.js';
import type { PutBytesJob } from './chunkio.js';
import { chunkStored, discardTemps, flushChunks, gitBlobId, JobWindow, type StoreContext } from './commit.js';
import type { RepoConfig } from './config.js';
import { limiter, mapFsError } from './fsutil.js';
import type { GitStore } from './gitstore.js';
import {
  GROUPS_DIR,
  headerTreePath,
  loadTensorSet,
  MANIFEST,
  readAllRecords,
  SIDE_FILE_BLOB_MAX,
  sideFileTreePath,
  type TensorSet,
  tensorHashOf,
  tensorTreePath,
} from './model.js';
import { checkRelPath, escapeName } from './names.js';
import { type ChunkRunner, startRunner } from './pool.js';
import {
  type ChunkRef,
  encodeManifest,
  encodeRecord,
  type Manifest,
  manifestFormat,
  RECORD_FORMAT,
  type ShardEntry,
  type TensorRecord,
} from './records.js';

/** What the repository gives a stream commit: where chunks and objects go, and how the commit lands. */
export interface StreamCommitContext {
  git: GitStore;
  chunks: FolderChunks;
  config: RepoConfig;
  tmpDir: string;
  /** The tensor set whose chunks are offered as delta bases (the first parent's), or null. */
  parent: { set: TensorSet; git: GitStore } | null;
  onProgress?: (e: { phase: string; done: number; total: number }) => void;
  /** Writes the commit of `tree` and moves the branch (compare-and-swap); see Repository.openSink. */
  land: (tree: Map<string, string>, opts: StreamCommitOptions, result: StreamTotals) => Promise<StreamCommitResult>;
  /** Ends the repository's write marker (gc waits while it exists). */
  release: () => Promise<void>;
  /** What the model set is, when it is an object other than a plain checkpoint (a diff vector). */
  object?: GroupHeader;
}

export interface StreamCommitOptions {
  message: string;
  branch?: string;
  /** Default: the branch head (none for a new branch: the current HEAD, as commit does). */
  parents?: string[];
  expectedHead?: string | null;
  recipe?: Record<string, unknown> | null;
  author?: { name?: string; email?: string; date?: string | number };
}

export interface StreamTotals {
  tensors: number;
  rawBytes: number;
  storedBytes: number;
  newBytes: number;
}

export interface StreamCommitResult extends StreamTotals {
  commit: string;
  branch: string;
}

/**
 * Fixed-size chunk buffers shared with the worker threads: a job holds one
 * until it is done, so the bytes in flight stay bounded whatever the model.
 */
class ChunkBuffers {
  private readonly free: Uint8Array[] = [];
  private readonly waiting: ((b: Uint8Array) => void)[] = [];
  private made = 0;
  constructor(
    private readonly size: number,
    private readonly max: number,
    private readonly shared: boolean,
  ) {}

  async take(): Promise<Uint8Array> {
    const b = this.free.pop();
    if (b) return b;
    if (this.made < this.max) {
      this.made++;
      return new Uint8Array(this.shared ? new SharedArrayBuffer(this.size) : new ArrayBuffer(this.size));
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  give(b: Uint8Array): void {
    const w = this.waiting.shift();
    if (w) w(b);
    else this.free.push(b);
  }
}

interface PlannedShard {
  file: string;
  header: Uint8Array;
  entry: ShardEntry;
  /** Tensor names in header order, as a reader of the file lists them. */
  headerOrder: string[];
}

type SetState = 'new' | 'open' | 'staged' | 'aborted';

/** One tensor set streamed in: the commit's model, or one of its groups. */
class StreamSet {
  state: SetState = 'new';
  specs: TensorSpec[] = [];
  next = 0;
  shards: PlannedShard[] = [];
  index: Uint8Array | null = null;
  parentRecords: Map<string, TensorRecord> | null = null;
  readonly records: TensorRecord[] = [];
  readonly totals = { rawBytes: 0, storedBytes: 0, newBytes: 0 };
  /** Tree entries relative to the set, and its manifest, once staged. */
  staged: { entries: Map<string, string>; manifest: Manifest } | null = null;

  constructor(
    /** null: the model; else the group's name. */
    readonly group: string | null,
    readonly header?: GroupHeader,
  ) {}

  get label(): string {
    return this.group === null ? 'the stream' : `group ${JSON.stringify(this.group)}`;
  }
}

type State = 'new' | 'open' | 'staged' | 'aborted' | 'closed';

export class StoreSink implements Sink {
  private state: State = 'new';
  private began = false;
  private readonly main: StreamSet;
  private readonly groups = new Map<string, StreamSet>();
  private runner: ChunkRunner | null = null;
  private window: JobWindow | null = null;
  private buffers: ChunkBuffers | null = null;
  private readonly sctx: StoreContext;
  private stagedCommit: { entries: Map<string, string>; manifest: Manifest } | null = null;

  constructor(private readonly ctx: StreamCommitContext) {
    this.main = new StreamSet(null, ctx.object);
    this.sctx = {
      git: ctx.git,
      chunks: ctx.chunks,
      config: ctx.config,
      runner: null as unknown as ChunkRunner, // started in begin, once the size is known
      pending: new Map(),
      replacing: new Set(),
      duplicates: [],
      syncs: new Map(),
      syncLimit: limiter(4),
      onProgress: ctx.onProgress,
      progress: { done: 0, total: 0 },
    };
  }

  private misuse(message: string): never {
    throw new WgitError('E_SAFETENSORS_WRITE', `commit stream: ${message}`, {});
  }

  /** The same validation, shard plan, headers and index as ModelWriter's; returns the data length. */
  private plan(set: StreamSet, plan: SinkPlan): number {
    const { dataLength } = encodeSafetensorsHeader(plan.specs, plan.metadata ?? null);
    const groups = planShards(plan.specs, plan.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES);
    const weightMap: Record<string, string> = {};
    set.shards = groups.map((specs, i) => {
      const file = groups.length === 1 ? SINGLE_FILE_NAME : shardFileName(i, groups.length);
      const { bytes, dataLength: n } = encodeSafetensorsHeader(specs, plan.metadata ?? null, file);
      const parsed = parseSafetensorsHeader(bytes, bytes.byteLength + n, file);
      for (const s of specs)
        Object.defineProperty(weightMap, s.name, { value: file, enumerable: true, writable: true, configurable: true });
      return {
        file,
        header: bytes,
        entry: { file, size: bytes.byteLength + n, tensors: specs.map((s) => s.name) },
        headerOrder: parsed.tensors.map((t) => t.name),
      };
    });
    set.index = groups.length > 1 ? new TextEncoder().encode(formatIndex(dataLength, weightMap)) : null;
    set.specs = plan.specs;
    set.state = 'open';
    return dataLength;
  }

  async begin(plan: SinkPlan): Promise<void> {
    if (this.state !== 'new') this.misuse(`cannot begin: the stream is ${this.state}`);
    this.began = true;
    const dataLength = this.plan(this.main, plan);
    this.state = 'open';
    try {
      const { config } = this.ctx;
      this.sctx.progress.total = dataLength;
      this.runner = await startRunner(dataLength, this.ctx.chunks.dir, this.ctx.tmpDir);
      this.sctx.runner = this.runner;
      this.window = new JobWindow(this.runner.window);
      this.buffers = new ChunkBuffers(config.chunkSize, this.runner.window + 1, this.runner.threads > 1);
      const parent = this.ctx.parent;
      this.main.parentRecords = parent ? await readAllRecords(parent.git, parent.set).catch(() => null) : null;
    } catch (e) {
      await this.abort();
      throw e;
    }
  }

  /**
   * A tensor group of this commit, stored under `groups/<name>/` with `header`
   * in its manifest. Open it after begin, finish it before this sink's finish.
   */
  group(name: string, header: GroupHeader): Sink {
    if (this.state !== 'open') this.misuse(`cannot open group ${JSON.stringify(name)}: the stream is ${this.state}`);
    if (name.length === 0 || name.length > 200)
      throw new WgitError('E_BAD_GROUP_NAME', `bad group name ${JSON.stringify(name)}`);
    if (this.groups.has(name)) this.misuse(`group ${JSON.stringify(name)} opened twice`);
    const set = new StreamSet(name, header);
    this.groups.set(name, set);
    return {
      begin: (plan) => this.beginGroup(set, plan),
      write: (tensor, bytes) => this.writeSet(set, tensor, bytes),
      finish: (carrier) => this.finishGroup(set, carrier),
      // A group cannot be dropped from the commit alone: the commit's finish then refuses, and its abort or close cleans up.
      abort: async () => {
        if (set.state !== 'staged') set.state = 'aborted';
      },
    };
  }

  private async beginGroup(set: StreamSet, plan: SinkPlan): Promise<void> {
    if (this.state !== 'open') this.misuse(`cannot begin ${set.label}: the stream is ${this.state}`);
    if (set.state !== 'new') this.misuse(`cannot begin ${set.label}: it is ${set.state}`);
    this.sctx.progress.total += this.plan(set, plan);
    // The parent commit's group of the same name offers its chunks as delta bases, as a folder commit does.
    const parent = this.ctx.parent;
    if (parent && parent.set.group === null) {
      try {
        const gs = await loadTensorSet(parent.git, parent.set.commit, parent.set.tree, set.group);
        set.parentRecords = await readAllRecords(parent.git, gs);
      } catch {
        set.parentRecords = null;
      }
    }
  }

  private newRecord(name: string, dtype: TensorRecord['dtype'], shape: number[], byteLength: number): TensorRecord {
    const cs = this.ctx.config.chunkSize;
    return {
      format: RECORD_FORMAT,
      name,
      dtype,
      shape,
      byteLength,
      sha256: '', // set once every chunk id is known
      chunkSize: cs,
      chunks: new Array<ChunkRef>(Math.ceil(byteLength / cs)),
    };
  }

  /** Queues the chunks of `bytes`; copies them, so the caller may reuse `bytes` when this resolves. */
  private async submit(set: StreamSet, rec: TensorRecord, bytes: Uint8Array, bases: ChunkRef[] | null): Promise<void> {
    const window = this.window as JobWindow;
    const buffers = this.buffers as ChunkBuffers;
    const runner = this.runner as ChunkRunner;
    const { chunkSize: cs, maxDeltaDepth } = this.ctx.config;
    for (let off = 0, i = 0; off < bytes.byteLength; off += cs, i++) {
      const n = Math.min(cs, bytes.byteLength - off);
      const buf = await buffers.take();
      const view = buf.subarray(0, n);
      view.set(bytes.subarray(off, off + n));
      const job: PutBytesJob = {
        op: 'put-bytes',
        bytes: view,
        dtype: rec.dtype,
        base: bases?.[i]?.hash ?? null,
        maxDepth: maxDeltaDepth,
      };
      let started = false;
      try {
        await window.submit(
          () => {
            started = true;
            return runner.run(job).finally(() => buffers.give(buf));
          },
          (r) => chunkStored(this.sctx, set.totals, rec, i, n, r),
        );
      } catch (e) {
        if (!started) buffers.give(buf);
        throw e;
      }
    }
    set.totals.rawBytes += rec.byteLength;
  }

  async write(name: string, bytes: Uint8Array): Promise<void> {
    if (this.state !== 'open') this.misuse(`cannot write tensor ${JSON.stringify(name)}: the stream is ${this.state}`);
    return this.writeSet(this.main, name, bytes);
  }

  private async writeSet(set: StreamSet, name: string, bytes: Uint8Array): Promise<void> {
    if (this.state !== 'open' || set.state !== 'open')
      this.misuse(
        `cannot write tensor ${JSON.stringify(name)} to ${set.label}: it is ${this.state !== 'open' ? this.state : set.state}`,
      );
    const spec = set.specs[set.next];
    if (!spec) this.misuse(`tensor ${JSON.stringify(name)} was not declared`);
    if (spec.name !== name)
      this.misuse(`expected tensor ${JSON.stringify(spec.name)} next, got ${JSON.stringify(name)}`);
    const rec = this.newRecord(spec.name, spec.dtype, [...spec.shape], bytes.byteLength);
    const want = this.byteLength(spec);
    if (bytes.byteLength !== want)
      this.misuse(`tensor ${JSON.stringify(name)}: got ${bytes.byteLength} bytes, its shape and dtype need ${want}`);
    set.next++;
    set.records.push(rec);
    const pr = set.parentRecords?.get(spec.name);
    const same =
      pr &&
      pr.dtype === spec.dtype &&
      pr.chunkSize === this.ctx.config.chunkSize &&
      pr.shape.length === spec.shape.length &&
      pr.shape.every((d, i) => d === spec.shape[i]);
    try {
      await this.submit(set, rec, bytes, same ? pr.chunks : null);
    } catch (e) {
      throw mapFsError(e, this.ctx.tmpDir);
    }
  }

  private byteLength(spec: TensorSpec): number {
    return encodeSafetensorsHeader([spec], null).dataLength;
  }

  private async finishGroup(set: StreamSet, carrier: SideFileSource): Promise<void> {
    if (this.state !== 'open') this.misuse(`cannot finish ${set.label}: the stream is ${this.state}`);
    if (set.state !== 'open') this.misuse(`cannot finish ${set.label}: it is ${set.state}`);
    try {
      await this.stageSet(set, carrier);
    } catch (e) {
      throw mapFsError(e, this.ctx.tmpDir);
    }
  }

  /** Side files: small ones become git blobs, larger ones are chunked as U8 records (as commit does). */
  async finish(carrier: SideFileSource): Promise<void> {
    if (this.state !== 'open') this.misuse(`cannot finish: the stream is ${this.state}`);
    for (const g of this.groups.values())
      if (g.state !== 'staged')
        this.misuse(`cannot finish: ${g.label} is ${g.state === 'open' ? 'not finished' : g.state}`);
    try {
      await this.stage(carrier);
    } catch (e) {
      throw mapFsError(e, this.ctx.tmpDir);
    }
  }

  /**
   * Every tensor of `set` is written: its side files go in, its chunks finish,
   * and its headers, records and manifest become blobs (the chunks are made
   * durable by the commit's finish, before any commit object exists).
   */
  private async stageSet(set: StreamSet, carrier: SideFileSource): Promise<void> {
    if (set.next !== set.specs.length)
      this.misuse(`cannot finish ${set.label}: tensor ${JSON.stringify(set.specs[set.next].name)} not written`);
    const { git } = this.ctx;
    const window = this.window as JobWindow;
    const side = new Map<string, Uint8Array>();
    if (set.index) side.set(INDEX_FILE_NAME, set.index);
    // The carrier's files are copied after ModelWriter's, so one of the same name wins.
    for (const rel of carrier.sideFiles) {
      checkRelPath(rel, 'side file');
      side.set(rel, await carrier.readSideFile(rel));
    }
    const files = [...side.keys()].sort();
    const fileRecords: TensorRecord[] = [];
    try {
      for (const rel of files) {
        const data = side.get(rel) as Uint8Array;
        if (data.byteLength <= SIDE_FILE_BLOB_MAX) continue;
        const rec = this.newRecord(rel, 'U8', [data.byteLength], data.byteLength);
        fileRecords.push(rec);
        this.sctx.progress.total += data.byteLength;
        await this.submit(set, rec, data, null);
      }
      await window.drain();
    } finally {
      await window.settle();
    }
    const entries = new Map<string, string>();
    for (const s of set.shards) entries.set(headerTreePath(s.file), await git.writeBlob(s.header));
    for (const rec of [...set.records, ...fileRecords]) {
      rec.sha256 = tensorHashOf(rec.chunks.map((c) => c.hash));
      const where = fileRecords.includes(rec) ? sideFileTreePath(rec.name) : tensorTreePath(rec.name);
      entries.set(where, await git.writeBlob(encodeRecord(rec)));
    }
    const chunked = new Set(fileRecords.map((r) => r.name));
    for (const rel of files) {
      if (chunked.has(rel)) continue;
      const data = side.get(rel) as Uint8Array;
      const isNew = (await git.typeOf(gitBlobId(data))) === null;
      entries.set(sideFileTreePath(rel), await git.writeBlob(data));
      set.totals.rawBytes += data.byteLength;
      set.totals.storedBytes += data.byteLength;
      if (isNew) set.totals.newBytes += data.byteLength;
    }
    const manifest: Manifest = {
      format: manifestFormat({ chunkedFiles: chunked.size > 0, object: set.header !== undefined }),
      kind: 'folder',
      shards: set.shards.map((s) => s.entry),
      tensors: set.shards.flatMap((s) => s.headerOrder),
      index: set.index ? INDEX_FILE_NAME : null,
      files,
      rawBytes: set.totals.rawBytes,
      recipe: null,
      groups: set.group === null ? [...this.groups.keys()] : [],
      ...(chunked.size > 0 ? { chunkedFiles: [...chunked].sort() } : {}),
      ...(set.header ? { object: set.header } : {}),
    };
    // A group's manifest is final here; the model's takes the recipe at commit().
    if (set.group !== null) entries.set(MANIFEST, await git.writeBlob(encodeManifest(manifest)));
    set.staged = { entries, manifest };
    set.state = 'staged';
  }

  private async stage(carrier: SideFileSource): Promise<void> {
    await this.stageSet(this.main, carrier);
    await this.runner?.close();
    this.runner = null;
    // Every chunk the commit names is durable and under its name before any commit object exists.
    await flushChunks(this.sctx);
    const staged = this.main.staged as NonNullable<StreamSet['staged']>;
    const entries = new Map(staged.entries);
    for (const [name, g] of this.groups) {
      for (const [p, oid] of (g.staged as NonNullable<StreamSet['staged']>).entries)
        entries.set(`${GROUPS_DIR}/${escapeName(name)}/${p}`, oid);
    }
    this.stagedCommit = { entries, manifest: staged.manifest };
    this.state = 'staged';
  }

  /** Writes the manifest, tree and commit and moves the branch; again after E_BRANCH_MOVED, with another branch. */
  async commit(opts: StreamCommitOptions): Promise<StreamCommitResult> {
    if (this.state !== 'staged' || !this.stagedCommit) this.misuse(`cannot commit: the stream is ${this.state}`);
    const manifest: Manifest = { ...this.stagedCommit.manifest, recipe: opts.recipe ?? null };
    const tree = new Map(this.stagedCommit.entries);
    tree.set(MANIFEST, await this.ctx.git.writeBlob(encodeManifest(manifest)));
    const sets = [this.main, ...this.groups.values()];
    const sum = (k: keyof StreamSet['totals']) => sets.reduce((a, s) => a + s.totals[k], 0);
    return this.ctx.land(tree, opts, {
      tensors: this.main.records.length,
      rawBytes: sum('rawBytes'),
      storedBytes: sum('storedBytes'),
      newBytes: sum('newBytes'),
    });
  }

  /** True once finish succeeded: the stream holds a complete model, ready to commit. */
  get ready(): boolean {
    return this.state === 'staged';
  }

  /** True once begin was called: the pipeline used this sink. */
  get begun(): boolean {
    return this.began;
  }

  async abort(): Promise<void> {
    if (this.state === 'aborted' || this.state === 'closed') return;
    this.state = 'aborted';
    for (const g of this.groups.values()) if (g.state !== 'staged') g.state = 'aborted';
    await this.window?.settle().catch(() => {});
    await this.runner?.close().catch(() => {});
    this.runner = null;
    // Only this commit's temp files go; placed chunks stay for gc (see Repository.commit).
    await discardTemps(this.sctx, true).catch(() => {});
  }

  /** Releases everything: temp files of an unfinished stream, the runner, the write marker. */
  async close(): Promise<void> {
    if (this.state === 'closed') return;
    if (this.state !== 'staged') await this.abort();
    else await discardTemps(this.sctx, true).catch(() => {});
    this.state = 'closed';
    await this.ctx.release();
  }
}
