import { constants as fsc } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import {
  isWgitError,
  type ModelSource,
  type ObjectHeader,
  type ObjectSummary,
  resolveObject,
  WgitError,
} from '@wgit/core';
import type { FolderChunks } from './backend/fs/chunks.js';
import { FolderBackend } from './backend/fs/index.js';
import { inspectLock, LockFile } from './backend/fs/lock.js';
import { checkRefNameFree, listRefs, readHeadTarget, readRef, updateRef } from './backend/fs/refs.js';
import { checkoutSet } from './checkout.js';
import { staleCheckoutTemps } from './checkout-temps.js';
import { ChunkStore } from './chunkstore.js';
import {
  chunkedBytes,
  discardTemps,
  flushChunks,
  openInput,
  type StoreContext,
  type StoredSet,
  storeModel,
} from './commit.js';
import { StoreSink } from './commit-stream.js';
import { DEFAULT_CONFIG, type RepoConfig, readConfig, validateConfig } from './config.js';
import { atomicWrite, HOST, isPidAlive, limiter, mapFsError, parseTempName, tempName } from './fsutil.js';
import { buildTree, type GitCommit, GitStore } from './gitstore.js';
import { currentIdentity } from './identity.js';
import { type FsckResult, fsckRepository, type GcResult, gcRepository } from './maintenance.js';
import { GROUPS_DIR, loadTensorSet, readAllRecords, readShardHeader, StoreModel, type TensorSet } from './model.js';
import { checkRefName, escapeName } from './names.js';
import { type Reachable, reachable } from './ops/reachability.js';
import { type ChunkRunner, startRunner } from './pool.js';
import { resolveRevision } from './revparse.js';

export interface CommitOptions {
  path: string;
  message?: string;
  branch?: string;
  parents?: string[];
  recipe?: Record<string, unknown>;
  /** Extra tensor sets: a model folder, or one with the kind of object it holds (recorded in its manifest). */
  groups?: Record<string, string | { path: string; object?: ObjectHeader }>;
  expectedHead?: string | null;
  onProgress?: (e: { phase: string; done: number; total: number }) => void;
  /** Overrides WGIT_AUTHOR_* for this commit. */
  author?: { name?: string; email?: string; date?: string | number };
}

export interface CommitResult {
  commit: string;
  branch: string;
  tensors: number;
  rawBytes: number;
  storedBytes: number;
  newBytes: number;
}

export interface CommitInfo {
  commit: string;
  parents: string[];
  message: string;
  timestamp: number;
  recipe: Record<string, unknown> | null;
  groups: string[];
}

export interface LogEntry extends CommitInfo {
  author: string;
  rawBytes: number;
}

export interface ShowTensor {
  name: string;
  dtype: string;
  shape: number[];
  byteLength: number;
  storedBytes: number;
  chunks: number;
  encodings: Record<string, number>;
  maxDepth: number;
}

export interface ShowResult extends LogEntry {
  kind: 'file' | 'folder';
  /** What the shown tensor set holds, as its object kind describes it. */
  object: ObjectSummary & { header: ObjectHeader };
  /** The object kind of each group, from its manifest (or recognised from its tensors in older repositories). */
  groupKinds: Record<string, string>;
  shards: string[];
  files: string[];
  tensors: ShowTensor[];
  storedBytes: number;
}

export interface StatusResult {
  root: string;
  branch: string;
  head: string | null;
  branches: number;
  tags: number;
  chunks: { count: number; rawBytes: number; storedBytes: number };
  config: RepoConfig;
  tempFiles: string[];
  staleLocks: string[];
  /** Temp folders (absolute paths) of checkouts whose process died; gc removes them. */
  staleCheckouts: string[];
}

export interface InitOptions {
  chunkSize?: number;
  maxDeltaDepth?: number;
}

const WGIT = 'wgit';

export class Repository {
  readonly wgitDir: string;
  readonly tmpDir: string;
  readonly git: GitStore;
  /** Chunks, git objects and refs of `.wgit`, as remotes see any repository. */
  readonly backend: FolderBackend;
  readonly chunks: ChunkStore<FolderChunks>;

  private constructor(
    readonly root: string,
    readonly gitdir: string,
    readonly config: RepoConfig,
  ) {
    this.wgitDir = path.join(gitdir, WGIT);
    this.tmpDir = path.join(this.wgitDir, 'tmp');
    this.git = new GitStore(gitdir, this.tmpDir);
    this.backend = new FolderBackend(gitdir);
    this.chunks = new ChunkStore(this.backend.chunks);
  }

  /**
   * Creates `dir/.wgit`. Built under a temp name and renamed, so an
   * interrupted init leaves no half repository behind.
   */
  static async init(dir: string, opts: InitOptions = {}): Promise<Repository> {
    const root = path.resolve(dir);
    const gitdir = path.join(root, '.wgit');
    try {
      await fsp.lstat(gitdir);
      throw new WgitError('E_REPO_EXISTS', `${gitdir} already exists`, { path: gitdir });
    } catch (e) {
      if (isWgitError(e)) throw e;
    }
    const config = validateConfig({ ...DEFAULT_CONFIG, ...opts }, 'init options');
    const staging = path.join(root, `.wgit.${tempName('init')}`);
    try {
      await fsp.mkdir(path.join(staging, WGIT, 'tmp'), { recursive: true });
      await fsp.mkdir(path.join(staging, WGIT, 'chunks'), { recursive: true });
      const git = new GitStore(staging, path.join(staging, WGIT, 'tmp'));
      await git.init();
      await fsp.mkdir(path.join(staging, 'refs', 'tags'), { recursive: true });
      await atomicWrite(
        path.join(staging, WGIT, 'tmp'),
        path.join(staging, WGIT, 'config.json'),
        `${JSON.stringify(config, null, 2)}\n`,
      );
      await fsp.rename(staging, gitdir).catch((e) => {
        if (e.code === 'ENOTEMPTY' || e.code === 'EEXIST')
          throw new WgitError('E_REPO_EXISTS', `${gitdir} already exists`, { path: gitdir });
        throw e;
      });
    } catch (e) {
      await fsp.rm(staging, { recursive: true, force: true }).catch(() => {});
      throw mapFsError(e, gitdir);
    }
    return new Repository(root, gitdir, config);
  }

  /** Finds the repository containing `dir` (default: the current folder), searching upward. */
  static async open(dir: string = process.cwd()): Promise<Repository> {
    let cur = path.resolve(dir);
    for (;;) {
      const gitdir = path.join(cur, '.wgit');
      const cfg = path.join(gitdir, WGIT, 'config.json');
      try {
        await fsp.access(cfg);
        return new Repository(cur, gitdir, await readConfig(cfg));
      } catch (e) {
        if (isWgitError(e)) throw e;
      }
      const up = path.dirname(cur);
      if (up === cur)
        throw new WgitError(
          'E_NOT_A_REPO',
          `not a wgit repository (no .wgit here or in any parent of ${path.resolve(dir)})`,
        );
      cur = up;
    }
  }

  private refCtx() {
    return { gitdir: this.gitdir, tmpDir: this.tmpDir };
  }

  async currentBranch(): Promise<string> {
    return (await readHeadTarget(this.gitdir)).slice('refs/heads/'.length);
  }

  private async lookupName(name: string): Promise<string | null> {
    if (name === 'HEAD' || name === '@') return readRef(this.gitdir, await readHeadTarget(this.gitdir));
    if (/[\0\n]/.test(name) || name.includes('..')) return null;
    for (const full of [`refs/heads/${name}`, `refs/tags/${name}`]) {
      const oid = await readRef(this.gitdir, full).catch(() => null);
      if (oid) return oid;
    }
    if (/^[0-9a-f]{40}$/.test(name) && (await this.git.typeOf(name)) === 'commit') return name;
    return null;
  }

  /** Resolves branch, tag, HEAD, full or short commit id, with `~N` / `^N` steps. */
  async resolve(rev: string): Promise<string> {
    return resolveRevision(rev, {
      lookupName: (n) => this.lookupName(n),
      commitsWithPrefix: async (p) => {
        const ids = await this.git.idsWithPrefix(p);
        const out: string[] = [];
        for (const id of ids) if ((await this.git.typeOf(id)) === 'commit') out.push(id);
        return out;
      },
      parentsOf: async (c) => (await this.git.readCommit(c)).parents,
    });
  }

  private async gitCommit(oid: string): Promise<GitCommit> {
    return this.git.readCommit(oid);
  }

  private async tensorSet(commit: string, group: string | null = null): Promise<TensorSet> {
    const c = await this.gitCommit(commit);
    return loadTensorSet(this.git, commit, c.tree, group);
  }

  async readCommit(rev: string): Promise<CommitInfo> {
    const commit = await this.resolve(rev);
    const c = await this.gitCommit(commit);
    const set = await loadTensorSet(this.git, commit, c.tree, null);
    return {
      commit,
      parents: c.parents,
      message: c.message.replace(/\n$/, ''),
      timestamp: c.committer.timestamp,
      recipe: set.manifest.recipe,
      groups: set.manifest.groups,
    };
  }

  async openModel(rev: string, group?: string): Promise<ModelSource & StoreModel> {
    const commit = await this.resolve(rev);
    const set = await this.tensorSet(commit, group ?? null);
    const records = await readAllRecords(this.git, set);
    const first = set.manifest.shards[0];
    const metadata = first ? (await readShardHeader(this.git, set, first)).metadata : null;
    return new StoreModel(this.git, this.chunks, set, records, 255, metadata);
  }

  async checkout(
    rev: string,
    outDir: string,
    opts: { group?: string; onProgress?: (e: { phase: string; done: number; total: number }) => void } = {},
  ): Promise<{ files: string[]; bytes: number }> {
    const commit = await this.resolve(rev);
    const set = await this.tensorSet(commit, opts.group ?? null);
    return checkoutSet(this.git, this.chunks, set, outDir, opts.onProgress, this.tmpDir);
  }

  /**
   * Marks this process as writing, so gc (which deletes unreferenced chunks)
   * never runs while a commit has chunks that no ref reaches yet.
   */
  private async beginWrite(): Promise<string> {
    await fsp.mkdir(this.tmpDir, { recursive: true });
    const marker = path.join(this.tmpDir, tempName('active'));
    try {
      const fh = await fsp.open(marker, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL);
      await fh.close();
    } catch (e) {
      throw mapFsError(e, marker);
    }
    const gc = await inspectLock(path.join(this.wgitDir, 'gc.lock'), 3600);
    if (gc.state === 'live') {
      await fsp.unlink(marker).catch(() => {});
      throw new WgitError('E_LOCKED', `wgit gc is running (process ${gc.owner?.pid ?? '?'}); retry when it is done`);
    }
    return marker;
  }

  /**
   * The branch a commit lands on, checked before any chunk is written: a valid
   * name that clashes with no other ref's folder, still at `expectedHead` when
   * the caller names one.
   */
  private async landingBranch(
    branch: string,
    expectedHead: string | null | undefined,
  ): Promise<{ ref: string; oldHead: string | null }> {
    checkRefName(branch, 'branch');
    const ref = `refs/heads/${branch}`;
    await checkRefNameFree(this.gitdir, ref);
    const oldHead = await readRef(this.gitdir, ref);
    if (expectedHead !== undefined && expectedHead !== oldHead) {
      throw new WgitError(
        'E_BRANCH_MOVED',
        `branch ${branch} is at ${oldHead?.slice(0, 12) ?? 'nothing'}, expected ${expectedHead?.slice(0, 12) ?? 'nothing'}`,
        { branch, expected: expectedHead, found: oldHead },
      );
    }
    return { ref, oldHead };
  }

  /**
   * Parents of a new commit: the revisions given, else the branch head, else
   * (a new branch) where HEAD is, so its first commit can be a delta against it.
   */
  private async parentsFor(head: string | null, given: string[] | undefined): Promise<string[]> {
    if (given) {
      const out: string[] = [];
      for (const p of given) out.push(await this.resolve(p));
      return out;
    }
    if (head) return [head];
    const h = await this.lookupName('HEAD');
    return h ? [h] : [];
  }

  /** Writes the tree and commit object, then moves the branch by compare-and-swap (the chunks are durable already). */
  private async land(
    target: { ref: string; oldHead: string | null },
    expectedHead: string | null | undefined,
    entries: Map<string, string>,
    parents: string[],
    message: string,
    identity: ReturnType<typeof currentIdentity>,
  ): Promise<string> {
    const tree = await buildTree(this.git, entries);
    const text = `${message.replace(/\s+$/, '')}\n`;
    const commit = await this.git.writeCommit({ tree, parents, message: text, author: identity, committer: identity });
    await updateRef(this.refCtx(), target.ref, commit, {
      expectedOld: expectedHead !== undefined ? expectedHead : target.oldHead,
      message: `commit${parents.length === 0 ? ' (initial)' : parents.length > 1 ? ' (merge)' : ''}: ${text.split('\n')[0]}`,
      identity,
    });
    return commit;
  }

  async commit(opts: CommitOptions): Promise<CommitResult> {
    const identity = currentIdentity(opts.author);
    const branch = opts.branch ?? (await this.currentBranch());
    const target = await this.landingBranch(branch, opts.expectedHead);
    const parents = await this.parentsFor(target.oldHead, opts.parents);
    const model = await openInput(opts.path);
    const groupModels: [string, Awaited<ReturnType<typeof openInput>>][] = [];
    const marker = await this.beginWrite();
    let runner: ChunkRunner | null = null;
    const ctx: StoreContext = {
      git: this.git,
      chunks: this.chunks.backend,
      config: this.config,
      runner: null as unknown as ChunkRunner, // started once the input size is known
      pending: new Map(),
      replacing: new Set(),
      duplicates: [],
      syncs: new Map(),
      syncLimit: limiter(4),
      onProgress: opts.onProgress,
      progress: { done: 0, total: 0 },
    };
    try {
      for (const [name, p] of Object.entries(opts.groups ?? {})) {
        if (name.length === 0 || name.length > 200)
          throw new WgitError('E_BAD_GROUP_NAME', `bad group name ${JSON.stringify(name)}`);
        groupModels.push([name, await openInput(typeof p === 'string' ? p : p.path)]);
      }
      ctx.progress.total = [model, ...groupModels.map((g) => g[1])].reduce((a, m) => a + chunkedBytes(m), 0);
      runner = await startRunner(ctx.progress.total, this.chunks.backend.dir, this.tmpDir);
      ctx.runner = runner;
      const parentCommit = parents.length ? await this.gitCommit(parents[0]) : null;
      const parentSet = async (group: string | null) => {
        if (!parentCommit) return null;
        try {
          return { set: await loadTensorSet(this.git, parents[0], parentCommit.tree, group), git: this.git };
        } catch {
          return null;
        }
      };
      const main = await storeModel(
        ctx,
        model,
        await parentSet(null),
        opts.recipe ?? null,
        groupModels.map((g) => g[0]),
      );
      const all = new Map(main.entries);
      const totals: StoredSet[] = [main];
      for (const [name, gm] of groupModels) {
        const spec = opts.groups?.[name];
        const object = typeof spec === 'object' ? spec.object : undefined;
        const g = await storeModel(ctx, gm, await parentSet(name), null, [], object);
        for (const [p, oid] of g.entries) all.set(`${GROUPS_DIR}/${escapeName(name)}/${p}`, oid);
        totals.push(g);
      }
      await runner.close();
      runner = null;
      // Every chunk the commit names is durable before the commit object exists, let alone the ref.
      await flushChunks(ctx);
      const message = opts.message ?? `Commit ${path.basename(path.resolve(opts.path))}`;
      const commit = await this.land(target, opts.expectedHead, all, parents, message, identity);
      return {
        commit,
        branch,
        tensors: main.tensors,
        rawBytes: totals.reduce((a, t) => a + t.rawBytes, 0),
        storedBytes: totals.reduce((a, t) => a + t.storedBytes, 0),
        newBytes: totals.reduce((a, t) => a + t.newBytes, 0),
      };
    } catch (e) {
      await runner?.close().catch(() => {});
      runner = null;
      // Only this commit's own temp files go. Chunks already under their final
      // names stay: they are immutable and content-addressed, so another
      // writer may have found and referenced any of them; gc removes those
      // that end up unreferenced, after its grace period.
      await discardTemps(ctx, true).catch(() => {});
      throw mapFsError(e, this.gitdir);
    } finally {
      await model.close();
      for (const [, gm] of groupModels) await gm.close();
      await fsp.unlink(marker).catch(() => {});
    }
  }

  /**
   * A pipeline sink that commits the model streamed into it (no model folder
   * on disk): `runTensorPipeline({ sink })`, then `sink.commit({ message,
   * branch, parents, expectedHead, recipe })`, and `sink.close()` in any case.
   * `branch`/`parents` here pick the commit whose chunks are offered as delta
   * bases (the first parent, as commit does); commit() may name others.
   */
  async openSink(
    opts: {
      branch?: string;
      parents?: string[];
      onProgress?: (e: { phase: string; done: number; total: number }) => void;
    } = {},
  ): Promise<StoreSink> {
    const branch = opts.branch ?? (await this.currentBranch());
    checkRefName(branch, 'branch');
    const first = (await this.parentsFor(await readRef(this.gitdir, `refs/heads/${branch}`), opts.parents))[0];
    let parent: { set: TensorSet; git: GitStore } | null = null;
    if (first) {
      try {
        const c = await this.gitCommit(first);
        parent = { set: await loadTensorSet(this.git, first, c.tree, null), git: this.git };
      } catch {
        parent = null;
      }
    }
    const marker = await this.beginWrite();
    return new StoreSink({
      git: this.git,
      chunks: this.chunks.backend,
      config: this.config,
      tmpDir: this.tmpDir,
      parent,
      onProgress: opts.onProgress,
      release: () => fsp.unlink(marker).catch(() => {}),
      land: async (tree, o, totals) => {
        try {
          const name = o.branch ?? branch;
          const target = await this.landingBranch(name, o.expectedHead);
          const parents = await this.parentsFor(target.oldHead, o.parents);
          const commit = await this.land(target, o.expectedHead, tree, parents, o.message, currentIdentity(o.author));
          return { commit, branch: name, ...totals };
        } catch (e) {
          throw mapFsError(e, this.gitdir);
        }
      },
    });
  }

  /** Entries in the temp folder that belong to a live process on this host. */
  private async liveTemps(): Promise<string[]> {
    const names = await fsp.readdir(this.tmpDir).catch(() => [] as string[]);
    return names.filter((n) => {
      const t = parseTempName(n);
      return t && t.host === HOST.replace(/[^A-Za-z0-9]/g, '_') && isPidAlive(t.pid);
    });
  }

  async log(rev?: string, opts: { limit?: number } = {}): Promise<LogEntry[]> {
    let start: string;
    if (rev === undefined) {
      const head = await this.lookupName('HEAD');
      if (!head) return [];
      start = head;
    } else start = await this.resolve(rev);
    const limit = opts.limit ?? Number.POSITIVE_INFINITY;
    const out: LogEntry[] = [];
    const seen = new Set<string>([start]);
    const queue: GitCommit[] = [await this.gitCommit(start)];
    while (queue.length > 0 && out.length < limit) {
      // Newest first, like git log's default order for a DAG.
      queue.sort((a, b) => b.committer.timestamp - a.committer.timestamp);
      const c = queue.shift()!;
      out.push(await this.logEntry(c));
      for (const p of c.parents) {
        if (seen.has(p)) continue;
        seen.add(p);
        queue.push(await this.gitCommit(p));
      }
    }
    return out;
  }

  private async logEntry(c: GitCommit): Promise<LogEntry> {
    const set = await loadTensorSet(this.git, c.oid, c.tree, null);
    return {
      commit: c.oid,
      parents: c.parents,
      message: c.message.replace(/\n$/, ''),
      timestamp: c.committer.timestamp,
      author: `${c.author.name} <${c.author.email}>`,
      recipe: set.manifest.recipe,
      groups: set.manifest.groups,
      rawBytes: set.manifest.rawBytes,
    };
  }

  async show(rev: string, opts: { group?: string } = {}): Promise<ShowResult> {
    const commit = await this.resolve(rev);
    const c = await this.gitCommit(commit);
    const entry = await this.logEntry(c);
    const set = await loadTensorSet(this.git, commit, c.tree, opts.group ?? null);
    const records = await readAllRecords(this.git, set);
    const resolved = resolveObject(set.manifest.object, set.manifest.tensors);
    const source = await this.openModel(commit, opts.group);
    let object: ShowResult['object'];
    try {
      const value = await resolved.kind.decode(source, resolved.header);
      object = { ...resolved.kind.describe(value), detected: resolved.detected, header: resolved.header };
    } finally {
      await source.close();
    }
    const groupKinds: Record<string, string> = {};
    for (const g of set.manifest.groups) {
      const gs = await loadTensorSet(this.git, commit, c.tree, g).catch(() => null);
      if (gs) groupKinds[g] = resolveObject(gs.manifest.object, gs.manifest.tensors).kind.name;
    }
    const tensors: ShowTensor[] = set.manifest.tensors.map((name) => {
      const r = records.get(name)!;
      const encodings: Record<string, number> = {};
      for (const ch of r.chunks) encodings[ch.encoding] = (encodings[ch.encoding] ?? 0) + 1;
      return {
        name,
        dtype: r.dtype,
        shape: r.shape,
        byteLength: r.byteLength,
        storedBytes: r.chunks.reduce((a, ch) => a + ch.stored, 0),
        chunks: r.chunks.length,
        encodings,
        maxDepth: r.chunks.reduce((a, ch) => Math.max(a, ch.depth), 0),
      };
    });
    return {
      ...entry,
      rawBytes: set.manifest.rawBytes,
      kind: set.manifest.kind,
      object,
      groupKinds,
      shards: set.manifest.shards.map((s) => s.file),
      files: set.manifest.files,
      tensors,
      storedBytes: tensors.reduce((a, t) => a + t.storedBytes, 0),
    };
  }

  async status(): Promise<StatusResult> {
    const branch = await this.currentBranch();
    const head = await readRef(this.gitdir, `refs/heads/${branch}`);
    let rawBytes = 0;
    let storedBytes = 0;
    const ids = await this.chunks.list();
    for (const id of ids) {
      try {
        const h = await this.chunks.readHeader(id);
        rawBytes += h.rawLength;
        storedBytes += h.fileSize;
      } catch {
        // fsck reports damaged chunks; status only counts.
      }
    }
    return {
      root: this.root,
      branch,
      head,
      branches: (await listRefs(this.gitdir, 'refs/heads/')).size,
      tags: (await listRefs(this.gitdir, 'refs/tags/')).size,
      chunks: { count: ids.length, rawBytes, storedBytes },
      config: this.config,
      tempFiles: await this.staleTemps(),
      staleLocks: await this.staleLocks(),
      staleCheckouts: (await staleCheckoutTemps(this.tmpDir)).map((t) => t.path),
    };
  }

  /** Temp files left by processes that are gone. */
  async staleTemps(): Promise<string[]> {
    const names = await fsp.readdir(this.tmpDir).catch(() => [] as string[]);
    const live = new Set(await this.liveTemps());
    return names.filter((n) => !live.has(n)).sort();
  }

  /** Lock files (refs, gc) whose owner is gone. */
  async staleLocks(): Promise<string[]> {
    const out: string[] = [];
    const walk = async (dir: string): Promise<void> => {
      for (const e of await fsp.readdir(dir, { withFileTypes: true }).catch(() => [])) {
        const full = path.join(dir, e.name);
        if (e.isDirectory()) await walk(full);
        else if (e.name.endsWith('.lock')) {
          const v = await inspectLock(full, 30);
          if (v.state === 'stale') out.push(path.relative(this.gitdir, full));
        }
      }
    };
    await walk(path.join(this.gitdir, 'refs'));
    const gc = path.join(this.wgitDir, 'gc.lock');
    if ((await inspectLock(gc, 3600)).state === 'stale') out.push(path.relative(this.gitdir, gc));
    return out.sort();
  }

  async branches(): Promise<{ name: string; commit: string; current: boolean }[]> {
    const cur = await this.currentBranch();
    const refs = await listRefs(this.gitdir, 'refs/heads/');
    return [...refs]
      .map(([full, commit]) => ({
        name: full.slice('refs/heads/'.length),
        commit,
        current: full === `refs/heads/${cur}`,
      }))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  async createBranch(name: string, rev = 'HEAD'): Promise<{ name: string; commit: string }> {
    checkRefName(name, 'branch');
    const commit = await this.resolve(rev);
    await updateRef(this.refCtx(), `refs/heads/${name}`, commit, {
      expectedOld: null,
      movedCode: 'E_BRANCH_EXISTS',
      message: `branch: Created from ${rev}`,
      identity: currentIdentity(),
    });
    return { name, commit };
  }

  async deleteBranch(name: string): Promise<{ name: string; commit: string }> {
    checkRefName(name, 'branch');
    if (name === (await this.currentBranch())) {
      throw new WgitError('E_CURRENT_BRANCH', `cannot delete branch ${name}: HEAD points to it`, { branch: name });
    }
    const old = await readRef(this.gitdir, `refs/heads/${name}`);
    if (!old) throw new WgitError('E_UNKNOWN_REVISION', `no branch ${name}`, { rev: name });
    await updateRef(this.refCtx(), `refs/heads/${name}`, null, {
      expectedOld: old,
      message: 'delete',
      identity: currentIdentity(),
    });
    return { name, commit: old };
  }

  async tags(): Promise<{ name: string; commit: string }[]> {
    const refs = await listRefs(this.gitdir, 'refs/tags/');
    return [...refs]
      .map(([full, commit]) => ({ name: full.slice('refs/tags/'.length), commit }))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  async createTag(name: string, rev = 'HEAD'): Promise<{ name: string; commit: string }> {
    checkRefName(name, 'tag');
    const commit = await this.resolve(rev);
    await updateRef(this.refCtx(), `refs/tags/${name}`, commit, {
      expectedOld: null,
      movedCode: 'E_TAG_EXISTS',
      message: `tag: ${name}`,
      identity: currentIdentity(),
    });
    return { name, commit };
  }

  async deleteTag(name: string): Promise<{ name: string; commit: string }> {
    checkRefName(name, 'tag');
    const old = await readRef(this.gitdir, `refs/tags/${name}`);
    if (!old) throw new WgitError('E_UNKNOWN_REVISION', `no tag ${name}`, { rev: name });
    await updateRef(this.refCtx(), `refs/tags/${name}`, null, {
      expectedOld: old,
      message: 'delete',
      identity: currentIdentity(),
    });
    return { name, commit: old };
  }

  async fsck(
    opts: { onProgress?: (e: { phase: string; done: number; total: number }) => void } = {},
  ): Promise<FsckResult> {
    return fsckRepository(this, opts);
  }

  /**
   * Deletes what nothing reaches. Unreferenced chunks younger than
   * `graceSeconds` (default DEFAULT_GC_GRACE_SECONDS) are kept; 0 removes
   * them all.
   */
  async gc(
    opts: { graceSeconds?: number; onProgress?: (e: { phase: string; done: number; total: number }) => void } = {},
  ): Promise<GcResult> {
    if (opts.graceSeconds !== undefined && !(Number.isFinite(opts.graceSeconds) && opts.graceSeconds >= 0))
      throw new WgitError('E_BAD_PARAM', `gc grace period must be a number of seconds >= 0, got ${opts.graceSeconds}`);
    const lock = await LockFile.acquire(path.join(this.wgitDir, 'gc.lock'), {
      what: 'the repository (gc)',
      waitMs: 0,
      staleSeconds: 3600,
    });
    try {
      const live = (await this.liveTemps()).filter((n) => parseTempName(n)?.pid !== process.pid);
      if (live.length > 0) {
        const pid = parseTempName(live[0])?.pid;
        throw new WgitError(
          'E_LOCKED',
          `another wgit process (pid ${pid}) is writing to the repository; run gc when it is done`,
        );
      }
      return await gcRepository(this, opts);
    } finally {
      await lock.release();
    }
  }

  /** Every commit id any ref or reflog entry names (what gc keeps and fsck checks). */
  async rootCommits(): Promise<{ refs: Map<string, string>; reflog: Set<string> }> {
    const refs = this.backend.refs;
    const heads = new Map<string, string>([
      ...(await refs.listRefs('refs/heads/')),
      ...(await refs.listRefs('refs/tags/')),
    ]);
    const reflog = new Set<string>();
    for (const name of await refs.listReflogs())
      for (const entry of await refs.readReflog(name))
        for (const oid of [entry.old, entry.new]) if (!/^0{40}$/.test(oid)) reflog.add(oid);
    return { refs: heads, reflog };
  }

  /**
   * Commits, trees, blobs and chunks (delta bases included) that the given
   * revisions need, or by default every ref and reflog entry: what gc keeps
   * and what a push or clone has to send.
   */
  async reachable(revs?: string[]): Promise<Reachable> {
    let roots: string[];
    if (revs) {
      roots = [];
      for (const r of revs) roots.push(await this.resolve(r));
    } else {
      const r = await this.rootCommits();
      roots = [...r.refs.values(), ...r.reflog];
    }
    return reachable(this, roots);
  }
}
