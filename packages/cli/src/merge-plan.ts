/**
 * `wgit merge --dry-run`: the resolved plan of a merge, from the models'
 * headers only — per group of tensors, the method, the parameters after
 * filters and gradients, and the inputs. Nothing is computed or committed.
 */
import type { DType, MergeParams, MergePlan, RecipeSlice } from '@wgit/core';
import { printable } from './format.js';
import { closeAll, type ModelArg, openModelArg } from './method-commit.js';

export interface DryRunResult {
  dryRun: true;
  method: string;
  inputs: string[];
  base: string | null;
  outDtype: DType | null;
  /** The parameters after validation and defaults, as a commit's recipe would record them. */
  params: Record<string, unknown>;
  /** Layers gradients are interpolated over. */
  layers: number;
  groups: MergePlan['groups'];
  copied: string[];
  warnings: string[];
}

export interface DryRunOptions {
  repo: string | undefined;
  method: string;
  params: MergeParams;
  inputs: string[];
  base: string | null;
  warnings: string[];
  outDtype: DType | null;
  slices?: RecipeSlice[];
}

/** Opens the models (headers), checks they line up, and resolves the plan. */
export async function dryRunPlan(o: DryRunOptions): Promise<DryRunResult> {
  const { mergePlan, slicedInputs, validateModels } = await import('@wgit/core');
  const { Repository } = await import('@wgit/store');
  // a repository when there is one; paths work without
  const repo = await Repository.open(o.repo ?? process.cwd()).catch((e) => {
    if (o.repo !== undefined) throw e;
    return null;
  });
  const opened: ModelArg[] = [];
  try {
    for (const spec of [...o.inputs, ...(o.base ? [o.base] : [])]) opened.push(await openModelArg(spec, repo));
    const sliced = o.slices
      ? slicedInputs(
          opened.map((a) => a.source),
          o.slices,
        )
      : null;
    const sources = sliced ? sliced.inputs : opened.map((a) => a.source);
    validateModels(sources);
    const plan = mergePlan({
      method: o.method,
      params: o.params,
      tensors: sources[0].tensors,
      // with slices, each input is the slices' sources at one position
      inputs: sliced ? sources.map((_, i) => `slices source ${i}`) : o.inputs,
      base: o.base,
      positions: sliced?.positions,
    });
    return {
      dryRun: true,
      method: plan.method,
      inputs: o.inputs,
      base: o.base,
      outDtype: o.outDtype,
      params: plan.params as unknown as Record<string, unknown>,
      layers: sliced ? sliced.layers : plan.layers,
      groups: plan.groups,
      copied: plan.copied,
      warnings: o.warnings,
    };
  } finally {
    await closeAll(opened);
  }
}

function show(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(show).join(', ')}]`;
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(6)));
  return JSON.stringify(v);
}

/** Tensor names of a group, shortened past a few. */
function names(ts: string[]): string {
  const shown = ts.slice(0, 3).map(printable).join(', ');
  return ts.length > 3 ? `${shown}, … (${ts.length} tensors)` : shown;
}

export function renderPlan(p: DryRunResult, log: (line: string) => void): void {
  log(`plan: ${p.method} of ${p.inputs.map(printable).join(', ')}${p.base ? ` onto ${printable(p.base)}` : ''}`);
  log(`layers: ${p.layers}${p.outDtype ? `, out dtype ${p.outDtype}` : ''}; nothing computed (--dry-run)`);
  for (const [i, g] of p.groups.entries()) {
    log(`group ${i + 1}: ${names(g.tensors)}`);
    log(
      `  ${Object.entries(g.params)
        .map(([k, v]) => `${k}=${show(v)}`)
        .join(' ')}`,
    );
    log(`  inputs: ${g.inputs.map(printable).join(', ')}`);
  }
  if (p.copied.length) log(`copied from the first model (integer/bool): ${names(p.copied)}`);
  for (const w of p.warnings) log(`warning: ${w}`);
}
