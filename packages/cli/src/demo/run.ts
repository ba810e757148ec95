/**
 * `wgit demo`: the whole story on the digits lineage, in-process — train,
 * inspect, commit, check out and verify, transfer, LiNeS, merge, evaluate.
 */
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import {
  type DiffReport,
  diffHtml,
  diffModels,
  linesEdit,
  type ModelSource,
  mergeModels,
  openModel,
  transferModel,
  WgitError,
} from '@wgit/core';
import { Repository } from '@wgit/store';
import { evaluateModel, type Scores } from './evaluate.js';
import { buildLineage, DEFAULT_SEED, LINEAGE, type LineageName } from './lineage.js';
import { type DemoLora, exportDemoLora } from './lora.js';
import { type DemoRemote, pushAndClone } from './remote.js';
import { TASKS } from './tasks.js';

export interface DemoRow {
  name: string;
  /** Branch or tag of the model in the demo repository. */
  rev: string;
  commit: string;
  about: string;
  /** Test accuracy per task, 0–1. */
  scores: Scores;
}

export interface DemoResult {
  dir: string;
  seed: number;
  trainMs: number;
  inspect: {
    model: string;
    tensors: { name: string; dtype: string; shape: number[] }[];
    parameters: number;
    bytes: number;
  };
  repo: {
    root: string;
    commits: { name: string; commit: string; branch: string; rawBytes: number; newBytes: number }[];
    rawBytes: number;
    storedBytes: number;
  };
  checkout: { rev: string; dir: string; files: string[]; bytes: number; identical: boolean };
  transfer: { commit: string; cosine: number; relDistance: number };
  table: DemoRow[];
  /** wgit diff base-v1 ft-flip: what the fine-tune changed. */
  diff: {
    a: string;
    b: string;
    totals: DiffReport['totals'];
    tensors: { name: string; relChange: number | null }[];
    /** The page `wgit diff --html` writes for it. */
    html: string;
  };
  /** The fine-tune's change as a rank-8 basis, exported as a PEFT LoRA adapter. */
  lora: DemoLora;
  /** Pushed to a folder remote and cloned back; every lineage model checked out of the clone. */
  remote: DemoRemote;
  totalMs: number;
}

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else out.push(relative(dir, p));
    }
  };
  await walk(dir);
  return out.sort();
}

/** Byte-for-byte comparison of two folders: same file names, same contents. */
export async function sameFolders(a: string, b: string): Promise<boolean> {
  const fa = await filesUnder(a);
  const fb = await filesUnder(b);
  if (fa.length !== fb.length || fa.some((f, i) => f !== fb[i])) return false;
  for (const f of fa) {
    const [x, y] = await Promise.all([readFile(join(a, f)), readFile(join(b, f))]);
    if (!x.equals(y)) return false;
  }
  return true;
}

function pct(x: number): string {
  return `${(x * 100).toFixed(1)}`.padStart(6);
}

function mb(bytes: number): string {
  return `${(bytes / 1e6).toFixed(2)} MB`;
}

async function withModel<T>(m: Promise<ModelSource>, fn: (m: ModelSource) => Promise<T>): Promise<T> {
  const src = await m;
  try {
    return await fn(src);
  } finally {
    await src.close();
  }
}

export async function runDemo(opts: { dir: string; seed?: number; log?: (line: string) => void }): Promise<DemoResult> {
  const t0 = performance.now();
  const log = opts.log ?? (() => {});
  const seed = opts.seed ?? DEFAULT_SEED;
  const dir = opts.dir;
  const existing = await readdir(dir).catch(() => [] as string[]);
  if (existing.length > 0) throw new WgitError('E_OUTPUT_NOT_EMPTY', `demo folder ${dir} is not empty`, { path: dir });
  await mkdir(dir, { recursive: true });

  log(`1. training the digits lineage (seed ${seed}) into ${join(dir, 'models')}`);
  const lineage = await buildLineage({ dir: join(dir, 'models'), seed });
  for (const spec of LINEAGE) log(`   ${spec.name.padEnd(13)} ${spec.about}`);
  log(`   trained in ${(lineage.trainMs / 1000).toFixed(1)} s`);

  const inspectDir = lineage.models['base-v1'].dir;
  const inspect = await withModel(openModel(inspectDir), async (m) => {
    const tensors = m.tensors.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape }));
    const parameters = m.tensors.reduce((s, t) => s + t.shape.reduce((a, b) => a * b, 1), 0);
    const bytes = m.tensors.reduce((s, t) => s + t.byteLength, 0);
    return { model: inspectDir, tensors, parameters, bytes };
  });
  log(`2. inspect ${relative(dir, inspectDir)}: ${inspect.tensors.length} tensors, ${inspect.parameters} parameters`);
  for (const t of inspect.tensors) log(`   ${t.name.padEnd(16)} ${t.dtype} [${t.shape.join(', ')}]`);

  const repoDir = join(dir, 'repo');
  log(`3. wgit init ${repoDir}, committing the lineage`);
  const repo = await Repository.init(repoDir);
  const commitOf = {} as Record<LineageName, string>;
  const commits: DemoResult['repo']['commits'] = [];
  const branchOf = (name: LineageName) => (name.startsWith('base-') ? 'main' : name);
  for (const spec of LINEAGE) {
    const r = await repo.commit({
      path: lineage.models[spec.name].dir,
      message: spec.about,
      branch: branchOf(spec.name),
      parents: spec.parent ? [commitOf[spec.parent]] : [],
    });
    if (spec.name.startsWith('base-')) await repo.createTag(spec.name, r.commit);
    commitOf[spec.name] = r.commit;
    commits.push({ name: spec.name, commit: r.commit, branch: r.branch, rawBytes: r.rawBytes, newBytes: r.newBytes });
    log(
      `   ${spec.name.padEnd(13)} ${r.commit.slice(0, 12)} on ${r.branch.padEnd(13)} raw ${mb(r.rawBytes)}, new in store ${mb(r.newBytes)}`,
    );
  }
  const status = await repo.status();
  const rawBytes = commits.reduce((s, c) => s + c.rawBytes, 0);
  log(
    `   store: ${mb(status.chunks.storedBytes)} for ${mb(rawBytes)} of checkpoints (${(rawBytes / status.chunks.storedBytes).toFixed(2)}×)`,
  );

  const coDir = join(dir, 'checkout-ft-flip');
  const co = await repo.checkout('ft-flip', coDir);
  const identical = await sameFolders(lineage.models['ft-flip'].dir, coDir);
  if (!identical)
    throw new WgitError('E_INTERNAL', `checkout of ft-flip differs from ${lineage.models['ft-flip'].dir}`);
  log(
    `4. wgit checkout ft-flip --out ${relative(dir, coDir)}: ${co.files.length} files, ${co.bytes} bytes, byte-identical to the original`,
  );

  const scratch = join(dir, 'work');
  const open = (rev: string) => repo.openModel(rev);
  // Models in recipes as the commands record them (method-commit.ts recipeRef).
  const ref = (rev: keyof typeof commitOf) => ({ rev, commit: commitOf[rev], path: null });
  const tr = await withModel(open('ft-invert'), (ft) =>
    withModel(open('base-v1'), (from) =>
      withModel(open('base-v2'), (onto) => transferModel({ ft, from, onto, outDir: join(scratch, 'transfer') })),
    ),
  );
  const trCommit = await repo.commit({
    path: join(scratch, 'transfer'),
    branch: 'transfer/ft-invert',
    parents: [commitOf['base-v2'], commitOf['ft-invert'], commitOf['base-v1']],
    message: 'transfer ft-invert from base-v1 onto base-v2',
    recipe: { method: 'transfer', ft: ref('ft-invert'), from: ref('base-v1'), onto: ref('base-v2'), scale: 1 },
  });
  log(
    `5. wgit transfer ft-invert --from base-v1 --onto base-v2 → ${trCommit.commit.slice(0, 12)}` +
      ` (bases: cosine ${tr.closeness.cosine.toPrecision(3)}, relative distance ${tr.closeness.relDistance.toFixed(3)})`,
  );

  const ln = await withModel(open('ft-flip'), (model) =>
    withModel(open('base-v1'), (base) => linesEdit({ model, base, outDir: join(scratch, 'lines') })),
  );
  const lnCommit = await repo.commit({
    path: join(scratch, 'lines'),
    branch: 'lines/ft-flip',
    parents: [commitOf['ft-flip'], commitOf['base-v1']],
    message: 'LiNeS of ft-flip over base-v1',
    recipe: { method: 'lines', ft: ref('ft-flip'), base: ref('base-v1'), ...ln.lines },
  });
  log(
    `6. wgit lines ft-flip --base base-v1 (α = ${ln.lines.alpha}, β = ${ln.lines.beta}) → ${lnCommit.commit.slice(0, 12)}`,
  );

  const merges: { name: string; branch: string; method: string; params: Record<string, unknown>; commit?: string }[] = [
    {
      name: 'merge task-arithmetic',
      branch: 'merge/task-arithmetic/ft-flip+ft-rot',
      method: 'task-arithmetic',
      params: { lambda: 1 },
    },
    { name: 'merge ties', branch: 'merge/ties/ft-flip+ft-rot', method: 'ties', params: { density: 0.5, lambda: 1.5 } },
  ];
  for (const [k, mg] of merges.entries()) {
    const outDir = join(scratch, mg.branch.replace(/[/+]/g, '-'));
    const report = await withModel(open('ft-flip'), (a) =>
      withModel(open('ft-rot'), (b) =>
        withModel(open('base-v1'), (base) =>
          mergeModels({ inputs: [a, b], base, method: mg.method, params: mg.params, outDir }),
        ),
      ),
    );
    const r = await repo.commit({
      path: outDir,
      branch: mg.branch,
      parents: [commitOf['ft-flip'], commitOf['ft-rot'], commitOf['base-v1']],
      message: `merge (${mg.method}) of ft-flip, ft-rot onto base-v1`,
      recipe: {
        method: mg.method,
        inputs: [ref('ft-flip'), ref('ft-rot')],
        base: ref('base-v1'),
        params: report.params,
      },
    });
    mg.commit = r.commit;
    const flags = Object.entries(mg.params)
      .map(([key, v]) => ` --${key} ${v}`)
      .join('');
    log(`${7 + k}. wgit merge ft-flip ft-rot --method ${mg.method} --base base-v1${flags} → ${r.commit.slice(0, 12)}`);
  }

  const rows: { name: string; rev: string; about: string }[] = [
    ...LINEAGE.map((s) => ({ name: s.name, rev: s.name, about: s.about })),
    { name: 'transfer', rev: 'transfer/ft-invert', about: 'base-v2 + (ft-invert − base-v1)' },
    { name: 'lines', rev: 'lines/ft-flip', about: `ft-flip edited with LiNeS (α = ${ln.lines.alpha})` },
    ...merges.map((m) => ({ name: m.name, rev: m.branch, about: `ft-flip + ft-rot over base-v1 (${m.method})` })),
  ];
  const table: DemoRow[] = [];
  for (const r of rows) {
    const commit = await repo.resolve(r.rev);
    const scores = await withModel(open(commit), evaluateModel);
    table.push({ ...r, commit, scores });
  }
  log(`${7 + merges.length}. test accuracy (%) on each task's held-out images`);
  log(`   ${'model'.padEnd(22)}${TASKS.map((t) => t.padStart(7)).join('')}`);
  for (const r of table) log(`   ${r.name.padEnd(22)}${TASKS.map((t) => ` ${pct(r.scores[t])}`).join('')}`);
  const d = await withModel(open('base-v1'), (a) => withModel(open('ft-flip'), (b) => diffModels(a, b)));
  log(
    `${8 + merges.length}. wgit diff base-v1 ft-flip: ${d.totals.changed} of ${d.tensors.length} tensors changed, ` +
      `relative change ${d.totals.relChange?.toExponential(2)}, cosine ${d.totals.cosine?.toFixed(5)}`,
  );
  for (const t of d.tensors)
    log(
      `   ${t.name.padEnd(16)} ${t.status === 'identical' ? 'unchanged' : `‖Δ‖/‖A‖ ${t.relChange?.toExponential(2) ?? '-'}`}`,
    );
  const html = join(dir, 'diff-base-v1-ft-flip.html');
  await writeFile(html, diffHtml(d, { a: 'base-v1', b: 'ft-flip' }));
  log(`   the same as a page (chart per layer, sortable table): ${html}`);
  const diff = {
    html,
    a: 'base-v1',
    b: 'ft-flip',
    totals: d.totals,
    tensors: d.tensors.map((t) => ({ name: t.name, relChange: t.relChange })),
  };
  const lora = await withModel(open('base-v1'), (base) =>
    withModel(open('ft-flip'), (ft) => exportDemoLora(base, ft, scratch, dir, 8)),
  );
  log(
    `${9 + merges.length}. wgit lowrank ft-flip --base base-v1 --rank 8; wgit export-lora → ./${relative(dir, lora.dir)}: ` +
      `a PEFT ${lora.peftType} adapter for ${lora.modules.join(', ')} (relative error ${lora.relError.toExponential(2)}; ` +
      `${lora.skipped.length} tensors a LoRA cannot carry left out)`,
  );
  const remote = await pushAndClone(
    repo,
    dir,
    Object.fromEntries(LINEAGE.map((spec) => [spec.name, lineage.models[spec.name].dir])),
    sameFolders,
  );
  log(
    `${10 + merges.length}. wgit push --all --tags to a folder remote, ./${relative(dir, remote.url)}: ${remote.pushed.refs} refs, ` +
      `${remote.pushed.objects} objects and ${remote.pushed.chunks} chunks (${mb(remote.pushed.bytes)})`,
  );
  log(
    `   wgit clone ./${relative(dir, remote.url)} ./${relative(dir, remote.clone)}: all ${Object.keys(remote.checkouts).length} models check out of the clone byte-identical to the originals`,
  );
  const totalMs = performance.now() - t0;
  log(`done in ${(totalMs / 1000).toFixed(1)} s; everything is in ${dir}`);
  await rm(scratch, { recursive: true, force: true });
  return {
    dir,
    seed,
    trainMs: lineage.trainMs,
    inspect,
    repo: { root: repoDir, commits, rawBytes, storedBytes: status.chunks.storedBytes },
    checkout: { rev: 'ft-flip', dir: coDir, files: co.files, bytes: co.bytes, identical },
    transfer: { commit: trCommit.commit, cosine: tr.closeness.cosine, relDistance: tr.closeness.relDistance },
    table,
    diff,
    lora,
    remote,
    totalMs,
  };
}
