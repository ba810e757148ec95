import * as path from 'node:path';
import { type ModelSource, type ObjectHeader, WgitError } from '@wgit/core';
import { FolderActivity } from './backend/fs/activity.js';
import type { FolderChunks } from './backend/fs/chunks.js';
import { FolderBackend, type FolderRefs } from './backend/fs/index.js';
import { createRepositoryFolder, findRepositoryFolder, WGIT_SUBDIR } from './backend/fs/layout.js';
import { checkoutSet } from './checkout.js';
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
import { DEFAULT_CONFIG, type RepoConfig, validateConfig } from './config.js';
import { limiter, mapFsError } from './fsutil.js';
import { GitStore } from './gitstore.js';
import { currentIdentity, readUserConfig, type UserConfig } from './identity.js';
import { type FsckResult, fsckRepository, type GcResult, gcRepository } from './maintenance.js';
import { GROUPS_DIR, loadTensorSet, readAllRecords, readShardHeader, StoreModel, type TensorSet } from './model.js';
import { checkRefName, escapeName } from './names.js';
import { createNamed, deleteNamed, forceBranch, listNamed, resetBranch, switchBranch } from './ops/branches.js';
import { type CommitInfo, type LogEntry, logEntry, logFrom, type ShowResult, showCommit } from './ops/history.js';
import { landCommit, landingBranch, parentsFor } from './ops/land.js';
import { type Reachable, reachable } from './ops/reachability.js';
import { repoStatus, type StatusResult } from './ops/status.js';
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
  /** What the committed set is, when it is an object other than a plain model (recorded in its manifest). */
  object?: ObjectHeader;
  /** Overrides WGIT_AUTHOR_* for this commit. */
  author?: { name?: string; email?: string; date?: string | number };
  /** Make no commit when the content equals the branch head's (the result says `unchanged`); the CLI's default. */
  skipUnchanged?: boolean;
}

export interface CommitResult {
  commit: string;
  branch: string;
  /** True when the content equalled the branch head's and no commit was made (`commit` is the head). */
  unchanged?: boolean;
  tensors: number;
  rawBytes: number;
  storedBytes: number;
  newBytes: number;
}

export type { CommitInfo, LogEntry, ShowResult, ShowTensor } from './ops/history.js';
export type { StatusResult } from './ops/status.js';

export interface InitOptions {
  chunkSize?: number;
  maxDeltaDepth?: number;
}

export class Repository {
  readonly wgitDir: string;
  readonly tmpDir: string;
  readonly git: GitStore;
  /** Chunks, git objects and refs of `.wgit`, as remotes see any repository. */
  readonly backend: FolderBackend;
  readonly chunks: ChunkStore<FolderChunks>;
  readonly refs: FolderRefs;
  private readonly activity: FolderActivity;

  private constructor(
    readonly root: string,
    readonly gitdir: string,
    readonly config: RepoConfig,
  ) {
    this.wgitDir = path.join(gitdir, WGIT_SUBDIR);
    this.backend = new FolderBackend(gitdir);
    this.tmpDir = this.backend.tmpDir;
    this.git = new GitStore(gitdir, this.tmpDir, this.backend.objects);
    this.chunks = new ChunkStore(this.backend.chunks);
    this.refs = this.backend.refs;
    this.activity = new FolderActivity(gitdir, this.wgitDir, this.tmpDir);
    this.user = readUserConfig(gitdir);
  }

  /** The author configured for this repository (its git config, then the user's), read at open. */
  readonly user: UserConfig;

  /** Creates `dir/.wgit` (E_REPO_EXISTS when there is one); an interrupted init leaves nothing behind. */
  static async init(dir: string, opts: InitOptions = {}): Promise<Repository> {
    const root = path.resolve(dir);
    const config = validateConfig({ ...DEFAULT_CONFIG, ...opts }, 'init options');
    return new Repository(root, await createRepositoryFolder(root, config), config);
  }

  /** Finds the repository containing `dir` (default: the current folder), searching upward. */
  static async open(dir: string = process.cwd()): Promise<Repository> {
    const found = await findRepositoryFolder(dir);
    return new Repository(found.root, found.gitdir, found.config);
  }

  async currentBranch(): Promise<string> {
    return (await this.refs.readHead()).slice('refs/heads/'.length);
  }

  private async lookupName(name: string): Promise<string | null> {
    if (name === 'HEAD' || name === '@') return this.refs.readRef(await this.refs.readHead());
    if (/[\0\n]/.test(name) || name.includes('..')) return null;
    for (const full of [`refs/heads/${name}`, `refs/tags/${name}`, `refs/remotes/${name}`]) {
      const oid = await this.refs.readRef(full).catch(() => null);
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

  private async tensorSet(commit: string, group: string | null = null): Promise<TensorSet> {
    const c = await this.git.readCommit(commit);
    return loadTensorSet(this.git, commit, c.tree, group);
  }

  async readCommit(rev: string): Promise<CommitInfo> {
    const commit = await this.resolve(rev);
    const {
      author: _author,
      rawBytes: _rawBytes,
      ...info
    } = await logEntry(this.git, await this.git.readCommit(commit));
    return info;
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

  async commit(opts: CommitOptions): Promise<CommitResult> {
    const identity = currentIdentity(opts.author, process.env, this.user);
    const branch = opts.branch ?? (await this.currentBranch());
    const target = await landingBranch(this.refs, branch, opts.expectedHead);
    const parents = await parentsFor(this, target.oldHead, opts.parents);
    const model = await openInput(opts.path);
    const groupModels: [string, Awaited<ReturnType<typeof openInput>>][] = [];
    const endWrite = await this.activity.beginWrite();
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
      const parentCommit = parents.length ? await this.git.readCommit(parents[0]) : null;
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
        opts.object,
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
      const landed = await landCommit(
        this,
        target,
        opts.expectedHead,
        all,
        parents,
        message,
        identity,
        opts.skipUnchanged === true,
      );
      return {
        commit: landed.commit,
        branch,
        ...(landed.landed ? {} : { unchanged: true }),
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
      await endWrite();
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
      /** The object kind the streamed set is (recorded in its manifest), when it is not a plain model. */
      object?: ObjectHeader;
    } = {},
  ): Promise<StoreSink> {
    const branch = opts.branch ?? (await this.currentBranch());
    checkRefName(branch, 'branch');
    const first = (await parentsFor(this, await this.refs.readRef(`refs/heads/${branch}`), opts.parents))[0];
    let parent: { set: TensorSet; git: GitStore } | null = null;
    if (first) {
      try {
        const c = await this.git.readCommit(first);
        parent = { set: await loadTensorSet(this.git, first, c.tree, null), git: this.git };
      } catch {
        parent = null;
      }
    }
    const endWrite = await this.activity.beginWrite();
    return new StoreSink({
      git: this.git,
      chunks: this.chunks.backend,
      config: this.config,
      tmpDir: this.tmpDir,
      parent,
      onProgress: opts.onProgress,
      object: opts.object,
      release: endWrite,
      land: async (tree, o, totals) => {
        try {
          const name = o.branch ?? branch;
          const target = await landingBranch(this.refs, name, o.expectedHead);
          const parents = await parentsFor(this, target.oldHead, o.parents);
          const { commit } = await landCommit(
            this,
            target,
            o.expectedHead,
            tree,
            parents,
            o.message,
            currentIdentity(o.author, process.env, this.user),
          );
          return { commit, branch: name, ...totals };
        } catch (e) {
          throw mapFsError(e, this.gitdir);
        }
      },
    });
  }

  /** The commits reachable from `rev` (default HEAD; none on an unborn branch), newest first. */
  async log(rev?: string, opts: { limit?: number } = {}): Promise<LogEntry[]> {
    const start = rev === undefined ? await this.lookupName('HEAD') : await this.resolve(rev);
    return start ? logFrom(this.git, start, opts.limit) : [];
  }

  async show(rev: string, opts: { group?: string } = {}): Promise<ShowResult> {
    return showCommit(this, await this.resolve(rev), opts.group);
  }

  status(): Promise<StatusResult> {
    return repoStatus(this);
  }

  /** Temp files left by processes that are gone. */
  staleTemps(): Promise<string[]> {
    return this.activity.staleTemps();
  }

  /** Lock files (refs, gc) whose owner is gone. */
  staleLocks(): Promise<string[]> {
    return this.activity.staleLocks();
  }

  async branches(): Promise<{ name: string; commit: string; current: boolean }[]> {
    const cur = await this.currentBranch();
    return (await listNamed(this.refs, 'branch')).map((b) => ({ ...b, current: b.name === cur }));
  }

  async createBranch(name: string, rev = 'HEAD'): Promise<{ name: string; commit: string }> {
    checkRefName(name, 'branch');
    return createNamed(this.refs, 'branch', name, await this.resolve(rev), `branch: Created from ${rev}`);
  }

  /** `branch -f NAME REV` (ops/branches.ts). */
  forceBranch(name: string, rev: string): Promise<{ name: string; commit: string; previous: string | null }> {
    return forceBranch(this, name, rev);
  }

  /** `reset REV`: moves the current branch (ops/branches.ts). */
  reset(rev: string): Promise<{ name: string; commit: string; previous: string | null }> {
    return resetBranch(this, rev);
  }

  /** `switch [-c] NAME [START]` (ops/branches.ts). */
  switchBranch(
    name: string,
    opts: { create?: boolean; start?: string } = {},
  ): Promise<{ name: string; commit: string | null; created: boolean }> {
    return switchBranch(this, name, opts);
  }

  async deleteBranch(name: string): Promise<{ name: string; commit: string }> {
    checkRefName(name, 'branch');
    if (name === (await this.currentBranch())) {
      throw new WgitError('E_CURRENT_BRANCH', `cannot delete branch ${name}: HEAD points to it`, { branch: name });
    }
    return deleteNamed(this.refs, 'branch', name);
  }

  tags(): Promise<{ name: string; commit: string }[]> {
    return listNamed(this.refs, 'tag');
  }

  async createTag(name: string, rev = 'HEAD'): Promise<{ name: string; commit: string }> {
    checkRefName(name, 'tag');
    return createNamed(this.refs, 'tag', name, await this.resolve(rev), `tag: ${name}`);
  }

  deleteTag(name: string): Promise<{ name: string; commit: string }> {
    return deleteNamed(this.refs, 'tag', name);
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
    return this.activity.exclusive(() => gcRepository(this, opts));
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
