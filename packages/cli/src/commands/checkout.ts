import { Args, Flags } from '@oclif/core';
import { WgitCommand } from '../base.js';
import { integerFlag } from '../numbers.js';

export interface CheckoutResult {
  commit: string;
  out: string;
  files: string[];
  bytes: number;
}

/**
 * `--model` writes through the method engine rather than the store's
 * checkout, so the output checks the store makes are repeated here: a
 * dangling link is refused, and so is a place inside the repository folder.
 */
async function checkRecoverOut(gitdir: string, out: string): Promise<void> {
  const { WgitError } = await import('@wgit/core');
  const fsp = await import('node:fs/promises');
  const path = await import('node:path');
  const missing: string[] = [];
  let cur = out;
  while ((await fsp.lstat(cur).catch(() => null)) === null && path.dirname(cur) !== cur) {
    missing.unshift(path.basename(cur));
    cur = path.dirname(cur);
  }
  const real = await fsp.realpath(cur).catch(() => null);
  if (real === null)
    throw new WgitError('E_OUT_DIR', `cannot use output folder ${out}: ${cur} is a symbolic link that leads nowhere`, {
      path: out,
    });
  const full = path.join(real, ...missing);
  const repo = await fsp.realpath(gitdir).catch(() => gitdir);
  if (full === repo || full.startsWith(repo + path.sep))
    throw new WgitError('E_UNSAFE_PATH', `output ${out} lies in the repository folder ${repo}`, { path: out });
}

/** The files written under `out` (relative, sorted) and their total size. */
async function listOut(out: string): Promise<{ files: string[]; bytes: number }> {
  const { readdir, stat } = await import('node:fs/promises');
  const path = await import('node:path');
  const files = (await readdir(out, { recursive: true, withFileTypes: true }))
    .filter((e) => e.isFile())
    .map((e) => path.relative(out, path.join(e.parentPath, e.name)))
    .sort();
  let bytes = 0;
  for (const f of files) bytes += (await stat(path.join(out, f))).size;
  return { files, bytes };
}

export default class Checkout extends WgitCommand {
  static override description = `Write the model of a revision into a new (or empty) folder, byte for byte as committed.

An object commit (a diff vector, sparse delta, low-rank basis or signature) gives the model it
stands for: the base its recipe names plus the object, with the object commit's side files;
--object writes the object's own tensors instead.`;
  static override examples = [
    '<%= config.bin %> checkout main --out base-copy',
    '<%= config.bin %> checkout v1~1 --out /tmp/older',
  ];
  static override args = { rev: Args.string({ description: 'branch, tag or commit', required: true }) };
  static override flags = {
    out: Flags.string({ char: 'o', description: 'output folder (must not exist or be empty)', required: true }),
    group: Flags.string({ description: 'check out an extra tensor set recorded with the commit instead of the model' }),
    model: Flags.string({
      description:
        'for an object that holds several models (a reversible merge): give back model N (0-based) instead of the commit',
      exclusive: ['group'],
    }),
    object: Flags.boolean({
      description:
        "for an object commit (diff vector, sparse delta, low-rank basis, signature): write the object's own tensors, not the model it stands for",
      exclusive: ['group', 'model'],
    }),
  };

  async run(): Promise<CheckoutResult> {
    const { args, flags } = await this.parse(Checkout);
    const { Repository } = await import('@wgit/store');
    const path = await import('node:path');
    const repo = await Repository.open(flags.repo);
    const commit = await repo.resolve(args.rev);
    const model = integerFlag(flags.model, 'model', { min: 0 });
    if (model !== undefined) {
      const out = path.resolve(flags.out);
      await checkRecoverOut(repo.gitdir, out);
      return this.recover(repo, commit, model, out);
    }
    if (!flags.object && flags.group === undefined) {
      const made = await this.materialise(repo, args.rev, commit, flags.out);
      if (made) return made;
    }
    const r = await repo.checkout(commit, flags.out, {
      group: flags.group,
      onProgress: (e) =>
        this.progress(`checkout: ${(e.done / 1048576).toFixed(1)} / ${(e.total / 1048576).toFixed(1)} MiB`),
    });
    this.progressDone();
    const out = path.resolve(flags.out);
    if (!this.jsonEnabled())
      this.log(`Checked out ${commit.slice(0, 12)} into ${out}: ${r.files.length} files, ${r.bytes} bytes`);
    return { commit, out, ...r };
  }

  /**
   * The model an object commit stands for: its base (the commit its recipe
   * names) plus the object, with the object commit's side files. Null when
   * the commit is not such an object (a plain checkout follows).
   */
  private async materialise(
    repo: import('@wgit/store').Repository,
    rev: string,
    commit: string,
    outFlag: string,
  ): Promise<(CheckoutResult & { object: string; base: string }) | null> {
    const { applyDelta, OBJECT_KINDS, WgitError } = await import('@wgit/core');
    const { manifestOf, openDelta } = await import('../delta-arg.js');
    const path = await import('node:path');
    const source = await repo.openModel(commit);
    try {
      const header = manifestOf(source)?.object;
      // A kind this wgit does not know is checked out as its own tensors.
      const kind = header ? OBJECT_KINDS.find((k) => k.name === header.kind) : undefined;
      if (!kind?.delta) return null;
      const opened = await openDelta(repo, rev, commit, source);
      try {
        if (opened.base === null)
          throw new WgitError(
            'E_OBJECT_BASE_MISSING',
            `${JSON.stringify(rev)} is a ${opened.kind} whose base is not a commit in this repository; check out its own tensors with --object, or apply it with wgit apply ${rev} --onto BASE`,
            { rev, kind: opened.kind },
          );
        const out = path.resolve(outFlag);
        await checkRecoverOut(repo.gitdir, out);
        const base = await repo.openModel(opened.base);
        try {
          await applyDelta(opened.view, base, opened.scale, {
            outDir: out,
            sideFiles: source,
            onProgress: (e) => this.progress(`checkout ${opened.kind}: ${e.done}/${e.total} tensors`),
          });
        } finally {
          await base.close();
        }
        this.progressDone();
        const { files, bytes } = await listOut(out);
        if (!this.jsonEnabled())
          this.log(
            `Checked out ${commit.slice(0, 12)} (${opened.kind} applied to ${opened.base.slice(0, 12)}) into ${out}: ${files.length} files, ${bytes} bytes; --object writes the ${opened.kind}'s own tensors`,
          );
        return { commit, out, files, bytes, object: opened.kind, base: opened.base };
      } finally {
        await opened.close();
      }
    } finally {
      await source.close();
    }
  }

  /**
   * Model N of the commit's object: the first tensor set (the model, then
   * each group) whose object kind holds models by index — today the
   * reversible-merge basis, byte-exact when its basis is full.
   */
  private async recover(
    repo: import('@wgit/store').Repository,
    commit: string,
    model: number,
    out: string,
  ): Promise<CheckoutResult & { model: number; exact: boolean; relError: number; mergedRelError: number }> {
    const { getObjectKind, WgitError } = await import('@wgit/core');
    const info = await repo.readCommit(commit);
    let holder: { group: string | undefined; object: import('@wgit/store').ShowResult['object'] } | null = null;
    for (const group of [undefined, ...info.groups]) {
      const { object } = await repo.show(commit, { group });
      if (object.models > 0) {
        holder = { group, object };
        break;
      }
    }
    if (!holder) {
      throw new WgitError(
        'E_NOT_RMM',
        `${commit.slice(0, 12)} holds no object that gives back models by index (no reversible-merge basis); --model needs one`,
        { commit },
      );
    }
    const kind = getObjectKind(holder.object.kind);
    const source = await repo.openModel(commit, holder.group);
    let r: Awaited<ReturnType<typeof kind.apply>>;
    try {
      r = await kind.apply(await kind.decode(source, holder.object.header), { model, outDir: out });
    } finally {
      await source.close();
    }
    const relError = typeof r.details.relError === 'number' ? r.details.relError : Number.NaN;
    const mergedRelError = typeof r.details.mergedRelError === 'number' ? r.details.mergedRelError : Number.NaN;
    const { files, bytes } = await listOut(out);
    if (!this.jsonEnabled()) {
      const how = r.exact
        ? 'byte-exact'
        : `relative error ${relError.toExponential(3)} (merged model: ${mergedRelError.toExponential(3)})`;
      this.log(`Recovered model ${model} of ${commit.slice(0, 12)} (${holder.object.kind}) into ${out}: ${how}`);
    }
    return { commit, out, files, bytes, model, exact: r.exact, relError, mergedRelError };
  }
}
