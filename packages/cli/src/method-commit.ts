/**
 * Shared by the commands whose result is a new model built from other models
 * (transfer, merge, lines): turning arguments into models, and committing the
 * result with its inputs as parents and its recipe.
 */
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isWgitError, type ModelSource, type ObjectHeader, WgitError } from '@wgit/core';
import type { CommitOptions, CommitResult, Repository, StoreSink } from '@wgit/store';

/** A model given on the command line: a revision of the repository, or a file/folder on disk. */
export interface ModelArg {
  /** As the user typed it. */
  spec: string;
  source: ModelSource;
  /** The commit, when the argument is a revision. */
  commit: string | null;
  /** Absolute path, when the argument is a file or folder. */
  path: string | null;
}

/**
 * Revisions win over paths of the same name (as in git); `./name` forces a
 * path. Anything that is neither is E_UNKNOWN_REVISION, naming the argument.
 */
export async function openModelArg(spec: string, repo: Repository | null): Promise<ModelArg> {
  if (typeof spec !== 'string' || spec.length === 0 || spec.includes('\0')) {
    throw new WgitError('E_USAGE', `bad model argument ${JSON.stringify(spec)}`, { arg: spec });
  }
  const looksLikePath = spec.startsWith('.') || spec.startsWith('/') || spec.endsWith('.safetensors');
  if (repo && !looksLikePath) {
    try {
      const commit = await repo.resolve(spec);
      return { spec, source: await repo.openModel(commit), commit, path: null };
    } catch (e) {
      if (!isWgitError(e) || e.code !== 'E_UNKNOWN_REVISION') throw e;
    }
  }
  const exists = await stat(spec).then(
    () => true,
    () => false,
  );
  if (!exists) {
    throw new WgitError(
      'E_UNKNOWN_REVISION',
      `${JSON.stringify(spec)} is neither a revision${repo ? '' : ' (no repository)'} nor a model file or folder`,
      { rev: spec },
    );
  }
  const { openModel } = await import('@wgit/core');
  const { resolve } = await import('node:path');
  const path = resolve(spec);
  return { spec, source: await openModel(path), commit: null, path };
}

export async function closeAll(args: (ModelArg | null | undefined)[]): Promise<void> {
  await Promise.all(args.map((a) => a?.source.close().catch(() => {})));
}

/** How an input is written in a recipe: the commit id when it is one, else the absolute path. */
export function recipeRef(a: ModelArg): { rev: string; commit: string | null; path: string | null } {
  return { rev: a.spec, commit: a.commit, path: a.path };
}

/** A scratch folder next to the system temp dir, removed by the returned function. */
export async function scratchDir(prefix: string): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), `wgit-${prefix}-`));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

const BRANCH_CHARS = /[^A-Za-z0-9._-]+/g;

/** A branch-name-safe piece from a revision or path (`models/ft-a/` → `ft-a`). */
export function branchPiece(a: ModelArg): string {
  const raw = a.path ? (a.path.replace(/\/+$/, '').split('/').pop() ?? 'model') : a.spec;
  const piece = raw
    .replace(/\.safetensors$/, '')
    .replace(BRANCH_CHARS, '-')
    .replace(/^[-.]+|[-.]+$/g, '')
    .replace(/\.\.+/g, '.')
    .replace(/\.lock$/, '-lock');
  return piece.slice(0, 60) || 'model';
}

export interface BranchChoice {
  branch: string;
  /** The branch head now (null: a new branch); passed as expectedHead so a concurrent commit is detected. */
  head: string | null;
}

/**
 * An explicit --branch is used as given (created when missing). Without one,
 * a new branch `<kind>/<name>` is made, with `-2`, `-3` … appended when the
 * name is taken, so a method never moves a branch the user did not name.
 */
export async function chooseBranch(
  repo: Repository,
  explicit: string | undefined,
  kind: string,
  name: string,
): Promise<BranchChoice> {
  const branches = new Map((await repo.branches()).map((b) => [b.name, b.commit]));
  if (explicit !== undefined) return { branch: explicit, head: branches.get(explicit) ?? null };
  const stem = `${kind}/${name}`;
  let branch = stem;
  for (let i = 2; branches.has(branch); i++) branch = `${stem}-${i}`;
  return { branch, head: null };
}

/**
 * Parents of a method's commit: its input commits, in argument order, without
 * repeats; when the target branch already has a head that is not one of them,
 * that head comes first so the branch's history continues.
 */
export function commitParents(inputs: ModelArg[], head: string | null): string[] {
  const out: string[] = [];
  if (head && !inputs.some((a) => a.commit === head)) out.push(head);
  for (const a of inputs) if (a.commit && !out.includes(a.commit)) out.push(a.commit);
  return out;
}

/** Opens the repository named by --repo, or the one around the current folder. */
export async function openRepo(flagRepo: string | undefined): Promise<Repository> {
  const { Repository } = await import('@wgit/store');
  return Repository.open(flagRepo ?? process.cwd());
}

export interface MethodCommitPlan<T> {
  /** --repo. */
  repo: string | undefined;
  /** Model arguments (revisions or paths), opened in this order and closed at the end. */
  models: string[];
  /** Branch prefix of the default branch (`transfer`, `lines`, `merge`). */
  kind: string;
  /** --branch. */
  branch: string | undefined;
  /** The name after `<kind>/` of the default branch. */
  branchName: (models: ModelArg[]) => string;
  /**
   * Writes the result model and says how to commit it: into `sink` (the store
   * commits it as it comes, its tensor groups too, no folder on disk), else to
   * `outDir` (group folders go under `scratch`, returned in `groups`). `sink`
   * is absent when WGIT_SCRATCH_COMMIT=1 forces the folder path.
   */
  compute: (
    models: ModelArg[],
    outDir: string,
    scratch: string,
    sink: StoreSink | undefined,
  ) => Promise<{
    value: T;
    message: string;
    /** The inputs that become parents, in order. */
    parents: ModelArg[];
    recipe: Record<string, unknown>;
    groups?: CommitOptions['groups'];
  }>;
  /** What the result is when it is an object other than a model (a diff vector), known before it is computed. */
  object?: (models: ModelArg[]) => ObjectHeader;
  /** The input whose chunks are offered as delta bases to a streamed result (default: the first model). */
  deltaBase?: (models: ModelArg[]) => ModelArg;
  progress: (message: string) => void;
  progressDone: () => void;
  /** What computes the result (device-flag.ts useDevice), recorded in the recipe. */
  device?: import('./device-flag.js').DeviceUsed;
}

/** WGIT_SCRATCH_COMMIT=1: write the result to a scratch folder and commit that (the path before streaming). */
function scratchCommitForced(): boolean {
  const v = process.env.WGIT_SCRATCH_COMMIT;
  if (v === undefined || v === '' || v === '0') return false;
  if (v === '1') return true;
  throw new WgitError('E_BAD_ENV', `WGIT_SCRATCH_COMMIT must be 0 or 1, got ${JSON.stringify(v)}`, {
    name: 'WGIT_SCRATCH_COMMIT',
  });
}

/** How many default branch names a method command tries when others take them at the same time. */
const BRANCH_RETRIES = 20;

/**
 * The shared life of a method command: open the models, compute the result
 * straight into a commit (a store sink, tensor groups included) or, on the
 * folder path, into scratch folders that are committed then; the commit has
 * the inputs as parents and the recipe (compare-and-swap on the branch).
 * Then close and clean up.
 */
export async function runMethodCommit<T>(
  plan: MethodCommitPlan<T>,
): Promise<{ value: T; models: ModelArg[]; result: CommitResult; parents: string[] }> {
  const repo = await openRepo(plan.repo);
  const opened: ModelArg[] = [];
  const scratch = await scratchDir(plan.kind);
  let sink: StoreSink | undefined;
  try {
    for (const spec of plan.models) opened.push(await openModelArg(spec, repo));
    const stem = plan.branchName(opened);
    let target = await chooseBranch(repo, plan.branch, plan.kind, stem);
    if (!scratchCommitForced()) {
      const base = plan.deltaBase ? plan.deltaBase(opened) : opened[0];
      sink = await repo.openSink({
        branch: target.branch,
        parents: commitParents(base ? [base] : [], target.head),
        object: plan.object?.(opened),
      });
    }
    const made = await plan.compute(opened, join(scratch.dir, 'model'), scratch.dir, sink);
    // A computation that did not use the sink wrote the folder (and its groups' folders) instead.
    const streamed = sink?.begun === true;
    if (streamed && !sink?.ready)
      throw new WgitError('E_INTERNAL', 'the method stopped before its result was complete');
    plan.progressDone();
    let result: CommitResult;
    for (let attempt = 1; ; attempt++) {
      try {
        const opts = {
          message: made.message,
          branch: target.branch,
          parents: commitParents(made.parents, target.head),
          expectedHead: target.head,
          recipe: plan.device ? { ...made.recipe, device: plan.device } : made.recipe,
        };
        if (streamed) result = await (sink as StoreSink).commit(opts);
        else
          result = await repo.commit({
            ...opts,
            path: join(scratch.dir, 'model'),
            groups: made.groups,
            object: plan.object?.(opened),
            onProgress: (e) => plan.progress(`commit ${e.phase} ${e.done}/${e.total}`),
          });
        break;
      } catch (e) {
        // Another process took the default branch name first: take the next
        // free one, as if it had been taken before we started. The chunks are
        // stored already, so the retry only rewrites the commit.
        const taken = isWgitError(e) && e.code === 'E_BRANCH_MOVED' && target.head === null;
        if (!taken || plan.branch !== undefined || attempt >= BRANCH_RETRIES) throw e;
        target = await chooseBranch(repo, undefined, plan.kind, stem);
      }
    }
    plan.progressDone();
    const { parents } = await repo.readCommit(result.commit);
    return { value: made.value, models: opened, result, parents };
  } finally {
    await sink?.close().catch(() => {});
    await closeAll(opened);
    await scratch.cleanup();
  }
}
