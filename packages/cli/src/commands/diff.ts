import { Args, Flags } from '@oclif/core';
import type { DiffReport, TensorDiff } from '@wgit/core';
import { WgitCommand } from '../base.js';
import { type DeviceUsed, deviceFlags, useDevice } from '../device-flag.js';
import { formatBytes, printable, table } from '../format.js';
import { closeAll, type ModelArg, openModelArg } from '../method-commit.js';
import { decimalFlag, integerFlag } from '../numbers.js';

export interface DiffResult extends DiffReport {
  a: { rev: string; commit: string | null; path: string | null };
  b: { rev: string; commit: string | null; path: string | null };
  /** Absolute path of the page written with --html. */
  html?: string;
  /** With --save: the diff-vector commit and its branch. */
  saved?: { commit: string; branch: string; storedBytes: number };
}

/** Relative figures in scientific notation, so 3e-5 and 0.2 line up readably. */
function rel(x: number | null): string {
  if (x === null) return '-';
  if (x === 0) return '0';
  return x.toExponential(2);
}

function percent(x: number | null): string {
  if (x === null) return '-';
  return `${(x * 100).toFixed(x === 1 || x === 0 ? 0 : 1)}%`;
}

function shapeText(d: TensorDiff, side: 'a' | 'b'): string {
  const shape = d.shape[side];
  return shape ? `${d.dtype[side]}[${shape.join(',')}]` : '-';
}

const ref = (m: ModelArg) => ({ rev: m.spec, commit: m.commit, path: m.path });

export default class Diff extends WgitCommand {
  static override description = `Compare two models: per tensor, per layer and in total.

A and B are revisions of the repository or model files/folders (a revision wins over a path of the
same name; ./name forces the path). Per tensor: ‖B−A‖, ‖B−A‖/‖A‖, cos(A, B), the share of elements
that are bit-identical and the largest |B−A|; tensors on one side only and shape or dtype mismatches
are listed; side files added, removed and changed. Tensors whose stored records are identical are
reported without reading them; layer and model totals are over the tensors that were read.`;

  static override examples = [
    '<%= config.bin %> diff base ft',
    '<%= config.bin %> diff v1 v2 --top 40',
    '<%= config.bin %> diff ./a.safetensors ./b.safetensors --json',
    '<%= config.bin %> diff base ft --html diff.html',
    '<%= config.bin %> diff base-v1 instruct --save instruct-delta',
  ];

  static override args = {
    a: Args.string({ description: 'the reference model: revision or path', required: true }),
    b: Args.string({ description: 'the model compared with it: revision or path', required: true }),
  };

  static override flags = {
    ...deviceFlags,
    top: Flags.string({ description: 'tensor rows to print, largest relative change first (default 20)' }),
    all: Flags.boolean({ description: 'print every tensor', default: false }),
    save: Flags.string({
      description: 'also store Δ = B − A as a diff-vector commit on this new branch (apply it with wgit apply)',
    }),
    html: Flags.string({
      description: 'also write a self-contained HTML page: per-layer chart, sortable tensor table, summary',
    }),
    rank: Flags.boolean({
      description:
        "per changed matrix, the rank that keeps 90% of Δ's energy (randomized SVD; reads and factors every changed 2-D tensor)",
    }),
    'rank-energy': Flags.string({ description: 'the energy fraction for --rank (default 0.9)', dependsOn: ['rank'] }),
  };

  private rankEnergy: number | undefined;

  async run(): Promise<DiffResult> {
    const { args, flags } = await this.parse(Diff);
    const device = await useDevice(flags.device);
    const energy = flags['rank-energy'] === undefined ? 0.9 : decimalFlag(flags['rank-energy'], 'rank-energy');
    if (energy !== undefined && !(energy > 0 && energy <= 1))
      throw new (await import('@wgit/core')).WgitError(
        'E_BAD_PARAM',
        `--rank-energy must be in (0, 1], got ${energy}`,
        {
          param: 'rank-energy',
        },
      );
    const rankEnergy = flags.rank ? energy : undefined;
    this.rankEnergy = rankEnergy;
    const top = flags.all ? Number.POSITIVE_INFINITY : (integerFlag(flags.top, 'top', { min: 0 }) ?? 20);
    const { diffModels, isWgitError } = await import('@wgit/core');
    const { Repository } = await import('@wgit/store');
    let a: ModelArg | null = null;
    let b: ModelArg | null = null;
    try {
      let result: DiffResult;
      if (flags.save !== undefined) result = await this.save(args.a, args.b, flags.save, flags.repo, device);
      else {
        const repo = await Repository.open(flags.repo).catch((e) => {
          // Two files can be compared outside a repository.
          if (flags.repo === undefined && isWgitError(e) && e.code === 'E_NOT_A_REPO') return null;
          throw e;
        });
        a = await openModelArg(args.a, repo);
        b = await openModelArg(args.b, repo);
        const report = await diffModels(a.source, b.source, {
          rankEnergy,
          onProgress: (e) => this.progress(`diff ${e.done}/${e.total} ${e.tensor}`),
        });
        this.progressDone();
        result = { a: ref(a), b: ref(b), ...report };
      }
      const report: DiffReport = result;
      if (flags.html !== undefined) {
        const { diffHtml } = await import('@wgit/core');
        const { writeFileAtomic } = await import('@wgit/core/atomic');
        const { resolve } = await import('node:path');
        result.html = resolve(flags.html);
        await writeFileAtomic(result.html, diffHtml(report, { a: args.a, b: args.b }));
      }
      if (!this.jsonEnabled()) {
        this.print(result, top);
        if (result.html) this.log(`\nwrote ${printable(result.html)}`);
        if (result.saved)
          this.log(
            `\n[${printable(result.saved.branch)} ${result.saved.commit.slice(0, 12)}] diff vector ${printable(args.b)} − ${printable(args.a)}, ${formatBytes(result.saved.storedBytes)} stored`,
          );
      }
      return result;
    } finally {
      await closeAll([a, b]);
    }
  }

  /** The diff, and Δ = B − A committed as a diff vector on a new branch in the same pass over the models. */
  private async save(
    specA: string,
    specB: string,
    branch: string,
    repoFlag: string | undefined,
    device: DeviceUsed,
  ): Promise<DiffResult> {
    const { computeDiffVector, diffModels, planDiffVector, WgitError } = await import('@wgit/core');
    const { recipeRef, runMethodCommit } = await import('../method-commit.js');
    const { Repository } = await import('@wgit/store');
    const repo = await Repository.open(repoFlag);
    if (await repo.refs.readRef(`refs/heads/${branch}`))
      throw new WgitError('E_BRANCH_EXISTS', `branch ${branch} already exists; --save names a new branch`, { branch });
    const { value, models, result } = await runMethodCommit({
      device,
      repo: repoFlag,
      models: [specA, specB],
      kind: 'diff',
      branch,
      branchName: () => branch,
      object: ([a, b]) => planDiffVector(a.source, b.source).header,
      deltaBase: ([, b]) => b,
      compute: async ([a, b], outDir, _scratch, sink) => {
        const report = await diffModels(a.source, b.source, {
          rankEnergy: this.rankEnergy,
          onProgress: (e) => this.progress(`diff ${e.done}/${e.total} ${e.tensor}`),
        });
        await computeDiffVector(a.source, b.source, {
          sink,
          outDir,
          onProgress: (e) => this.progress(`diff vector ${e.done}/${e.total}`),
        });
        return {
          value: report,
          message: `diff vector ${specB} − ${specA}`,
          parents: [b, a],
          recipe: { kind: 'diff-vector', a: recipeRef(a), b: recipeRef(b) },
        };
      },
      progress: (m) => this.progress(m),
      progressDone: () => this.progressDone(),
    });
    const [a, b] = models;
    return {
      a: ref(a),
      b: ref(b),
      ...value,
      saved: { commit: result.commit, branch: result.branch, storedBytes: result.storedBytes },
    };
  }

  private print(r: DiffResult, top: number): void {
    const t = r.totals;
    this.log(
      `${printable(r.b.rev)} vs ${printable(r.a.rev)}: ${t.tensors + t.mismatched + t.onlyA + t.onlyB} tensors, ` +
        `${t.changed} changed, ${t.identical} identical` +
        (t.mismatched ? `, ${t.mismatched} shape/dtype mismatches` : '') +
        (t.onlyA ? `, ${t.onlyA} only in ${printable(r.a.rev)}` : '') +
        (t.onlyB ? `, ${t.onlyB} only in ${printable(r.b.rev)}` : ''),
    );
    this.log(
      `relative change ${rel(t.relChange)} (‖Δ‖ ${t.normDelta.toPrecision(4)}, ‖A‖ ${t.normA.toPrecision(4)}), ` +
        `cosine ${t.cosine === null ? '-' : t.cosine.toFixed(6)}, ` +
        `${percent(t.elements ? t.identicalElements / t.elements : null)} of elements bit-identical, ${formatBytes(r.bytesRead)} read`,
    );
    const ranked = r.layers
      .filter((l) => l.layer !== null && l.changed > 0 && l.relChange !== null)
      .sort((x, y) => (y.relChange as number) - (x.relChange as number))
      .slice(0, 3);
    if (ranked.length) {
      this.log(`most changed layers: ${ranked.map((l) => `${l.layer} (${rel(l.relChange)})`).join(', ')}`);
    }
    const changed = r.tensors
      .filter((d) => d.status === 'changed')
      .sort((x, y) => (y.relChange ?? Number.POSITIVE_INFINITY) - (x.relChange ?? Number.POSITIVE_INFINITY));
    if (changed.length && top > 0) {
      this.log('');
      const ranked = changed.some((d) => d.energyRank !== undefined);
      const rows = [['tensor', 'kind', 'layer', '‖Δ‖/‖A‖', 'cosine', 'same', 'max |Δ|', ...(ranked ? ['rank90'] : [])]];
      for (const d of changed.slice(0, top)) {
        rows.push([
          printable(d.name),
          d.kind,
          d.layer === null ? '-' : String(d.layer),
          rel(d.relChange),
          d.cosine === null ? '-' : d.cosine.toFixed(6),
          percent(d.identicalFraction),
          d.maxAbsDelta === null ? '-' : d.maxAbsDelta.toPrecision(3),
          ...(ranked ? [d.energyRank == null ? '-' : `${d.energyRank}/${Math.min(...(d.shape.a ?? [0]))}`] : []),
        ]);
      }
      for (const line of table(rows, ['l', 'l', 'r', 'r', 'r', 'r', 'r', 'r'])) this.log(`  ${line}`);
      if (changed.length > top) this.log(`  … ${changed.length - top} more changed tensors (--all or --json)`);
    }
    const odd = r.tensors.filter((d) => d.status === 'mismatch' || d.status === 'only-a' || d.status === 'only-b');
    if (odd.length) {
      this.log('');
      for (const d of odd) {
        const what =
          d.status === 'mismatch'
            ? `${shapeText(d, 'a')} → ${shapeText(d, 'b')}`
            : d.status === 'only-a'
              ? `only in ${printable(r.a.rev)}`
              : `only in ${printable(r.b.rev)}`;
        this.log(`  ${printable(d.name)}: ${what}`);
      }
    }
    const s = r.sideFiles;
    if (s.added.length + s.removed.length + s.changed.length) {
      this.log('');
      for (const f of s.added) this.log(`  side file added: ${printable(f)}`);
      for (const f of s.removed) this.log(`  side file removed: ${printable(f)}`);
      for (const f of s.changed) this.log(`  side file changed: ${printable(f)}`);
    }
  }
}
