import { join } from 'node:path';
import { Args, Flags, type Interfaces } from '@oclif/core';
import {
  type DType,
  isPerTensorText,
  METHODS,
  type MergeParams,
  type MergeReport,
  type ParamDecl,
  parsePerTensorList,
  parsePerTensorText,
  type RecipeSlice,
  WgitError,
} from '@wgit/core';
import type { CommitOptions } from '@wgit/store';
import { WgitCommand } from '../base.js';
import { deviceFlags, useDevice } from '../device-flag.js';
import { printable } from '../format.js';
import { dryRunPlan, renderPlan } from '../merge-plan.js';
import { branchPiece, recipeRef, runMethodCommit } from '../method-commit.js';
import { decimalFlag, decimalListFlag, integerFlag } from '../numbers.js';
import { readSmallFile } from '../small-file.js';

export interface MergeResult {
  commit: string;
  branch: string;
  parents: string[];
  method: string;
  inputs: string[];
  base: string | null;
  params: Record<string, unknown>;
  tensors: number;
  rawBytes: number;
  storedBytes: number;
  warnings: string[];
  /** rmm: basis size and, per input, the relative error of its recovery and of the merged model. */
  rmm?: { rank: number; basisTensors: number; models: { relError: number; mergedRelError: number; fixes: number }[] };
  /** LiNeS post-step: α (from the norms) and β. */
  lines?: { alpha: number; beta: number; blocks: number };
  /** Share of zero entries over the float tensors: per input, and of the merged model. */
  sparsity?: { elements: number; inputs: number[]; output: number };
}

/** The groups a method wrote to folders, as `repo.commit` takes them (none when they went to the store sink). */
function folderGroups(groups: MergeReport['groups']): CommitOptions['groups'] {
  const written = (groups ?? []).filter((g) => g.dir !== null);
  if (written.length === 0) return undefined;
  return Object.fromEntries(written.map((g) => [g.name, { path: g.dir as string, object: g.header }]));
}

/** The largest --config file read; parseMergekitYaml refuses longer text too. */
const MAX_CONFIG_BYTES = 1 << 20;

type ParamFlag = { decl: ParamDecl; flag: string; choices: string[] };

/**
 * The method parameters that have a flag, from the registry's declarations:
 * one flag per name (the first method declaring it gives the description),
 * enum choices merged over every method that declares it.
 */
function paramFlags(): ParamFlag[] {
  const byFlag = new Map<string, ParamFlag>();
  for (const m of METHODS) {
    for (const d of m.params) {
      if (!d.cli) continue;
      const seen = byFlag.get(d.cli.flag);
      if (seen) {
        for (const c of d.choices ?? []) if (!seen.choices.includes(c)) seen.choices.push(c);
      } else byFlag.set(d.cli.flag, { decl: d, flag: d.cli.flag, choices: [...(d.choices ?? [])] });
    }
  }
  return [...byFlag.values()];
}

const PARAM_FLAGS = paramFlags();

/** oclif flags for the declared parameters: numbers stay strings so that one strict parser reads them. */
function oclifFlags(list: ParamFlag[]): Interfaces.FlagInput {
  const out: Interfaces.FlagInput = {};
  for (const { decl: d, flag, choices } of list) {
    const description = d.cli?.description ?? d.help;
    if (d.type === 'boolean') out[flag] = Flags.boolean({ description, allowNo: true });
    else if (d.type === 'object') {
      out[flag] = Flags.boolean({ description });
      for (const [f, fd] of Object.entries(d.fields ?? {}))
        out[`${flag}-${f}`] = Flags.string({ description: fd.cli?.description ?? fd.help });
    } else if (d.type === 'enum') out[flag] = Flags.string({ description, options: choices });
    else if (d.scope === 'per-model' && !d.broadcast) out[flag] = Flags.string({ description, multiple: true });
    else out[flag] = Flags.string({ description });
  }
  return out;
}

/** MergeParams from the parameter flags given; numbers go through the strict parser. */
function paramsFromFlags(flags: Record<string, unknown>, nInputs: number): MergeParams {
  const params: MergeParams = {};
  for (const { decl: d, flag } of PARAM_FLAGS) {
    const raw = flags[flag];
    if (d.type === 'object') {
      const fields = Object.entries(d.fields ?? {});
      for (const [f] of fields)
        if (flags[`${flag}-${f}`] !== undefined && !raw)
          throw new WgitError('E_USAGE', `--${flag}-${f} needs --${flag}`);
      if (raw) {
        const value: Record<string, number> = {};
        for (const [f, fd] of fields)
          value[f] = decimalFlag(flags[`${flag}-${f}`] as string | undefined, `${flag}-${f}`) ?? fd.default;
        params[d.name] = value;
      }
      continue;
    }
    if (raw === undefined) continue;
    if (d.type === 'boolean' || d.type === 'enum') params[d.name] = raw;
    else if (d.type === 'integer') params[d.name] = integerFlag(raw as string, flag);
    else if (d.perTensor && [raw].flat().some((x) => isPerTensorText(x as string))) {
      // gradients and filter rules: `[1,0.7,0.1]`, `self_attn=0.3;mlp=[0,1];*=0.5`
      if (d.scope === 'global') params[d.name] = parsePerTensorText(raw as string, `--${flag}`);
      else {
        const list = parsePerTensorList(raw as string | string[], `--${flag}`);
        if (list.length !== nInputs && !(d.broadcast && list.length === 1))
          throw new WgitError('E_BAD_PARAM', `--${flag} has ${list.length} value(s) for ${nInputs} input model(s)`, {
            param: d.name,
          });
        // one gradient for every input is a rule without filter (a bare list of numbers is one per input)
        const one = list[0];
        params[d.name] =
          d.broadcast && list.length === 1
            ? Array.isArray(one) && typeof one[0] === 'number'
              ? [{ value: one }]
              : one
            : list;
      }
    } else if (d.scope === 'global') params[d.name] = decimalFlag(raw as string, flag);
    else {
      const list = decimalListFlag(raw as string | string[], flag) as number[];
      if (!d.broadcast && list.length !== nInputs) {
        throw new WgitError('E_BAD_PARAM', `--${flag} has ${list.length} value(s) for ${nInputs} input model(s)`, {
          param: d.name,
        });
      }
      params[d.name] = d.broadcast && list.length === 1 ? list[0] : list;
    }
  }
  return params;
}

export default class Merge extends WgitCommand {
  static override summary = 'Merge fine-tunes of one base into one model, committed with its recipe';
  static override description = `Inputs are revisions or paths of model files/folders. The result is committed
with every input (and the base) as parents and the recipe — method, every
parameter, seed — in the commit; the same inputs, recipe and seed give the same
bytes. Without --branch the commit goes on a new branch merge/<inputs>.
rmm keeps a basis and coefficients from which each input can be checked out
again (wgit checkout REV --model N).`;
  static override strict = false;
  static override args = {
    revs: Args.string({ description: 'models to merge (revisions or paths)', required: false }),
  };
  static override examples = [
    '<%= config.bin %> merge ft-flip ft-rot --method task-arithmetic --base base-v1',
    '<%= config.bin %> merge ft-flip ft-rot --method ties --base base-v1 --density 0.5 --lambda 1',
    '<%= config.bin %> merge ft-a ft-b ft-c --method rmm --base base-v1 --rank 1',
    '<%= config.bin %> merge --config merge.yml',
    '<%= config.bin %> merge --config merge.yml --dry-run',
    "<%= config.bin %> merge ft-a ft-b --method ties --base base-v1 --density '[1,0.7,0.1]' --weights '1,mlp=0.5;0'",
  ];
  static override flags = {
    ...deviceFlags,
    'side-files-from': Flags.string({
      description:
        "take the result's side files (config, tokenizer …) from this model (default: --base, else the first input)",
    }),
    method: Flags.string({
      description: 'merge method',
      options: METHODS.map((m) => m.name),
    }),
    base: Flags.string({ description: 'base model the fine-tunes come from (needed by all but linear)' }),
    ...oclifFlags(PARAM_FLAGS),
    config: Flags.string({ description: 'a mergekit YAML file (merge_method, models, base_model, parameters, dtype)' }),
    'out-dtype': Flags.string({ description: 'dtype of the merged float tensors (F32, F16, BF16)' }),
    message: Flags.string({ char: 'm', description: 'commit message' }),
    branch: Flags.string({ description: 'branch to commit on (default: a new branch merge/<inputs>)' }),
    'dry-run': Flags.boolean({
      description: 'print the resolved plan (per tensor group: method, parameters, inputs) without computing',
    }),
  };

  async run(): Promise<MergeResult | import('../merge-plan.js').DryRunResult> {
    const { flags, argv } = await this.parse(Merge);
    const device = await useDevice(flags.device);
    const revs = (argv as string[]).filter((a) => typeof a === 'string');
    const { mergeModels, getMethod, slicedInputs } = await import('@wgit/core');

    let method = flags.method;
    let baseSpec = flags.base;
    let inputs = revs;
    let params: MergeParams = {};
    let slices: RecipeSlice[] | undefined;
    let outDtype = flags['out-dtype'] as DType | undefined;
    const warnings: string[] = [];
    if (flags.config) {
      const { parseMergekitYaml } = await import('@wgit/core');
      const bytes = await readSmallFile(flags.config, {
        what: '--config',
        maxBytes: MAX_CONFIG_BYTES,
        code: 'E_MERGEKIT_INVALID',
      });
      let text: string;
      try {
        text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
      } catch {
        throw new WgitError('E_MERGEKIT_INVALID', `--config ${JSON.stringify(flags.config)} is not UTF-8 text`, {
          path: flags.config,
        });
      }
      const recipe = parseMergekitYaml(text, flags.config);
      if (revs.length > 0)
        throw new WgitError('E_USAGE', 'give the models in the --config file or as arguments, not both');
      if (method !== undefined && method !== recipe.method) {
        throw new WgitError(
          'E_USAGE',
          `--method ${method} disagrees with the config's merge_method (${recipe.mergekitMethod})`,
        );
      }
      method = recipe.method;
      inputs = recipe.models;
      slices = recipe.slices;
      baseSpec ??= recipe.base ?? undefined;
      params = { ...recipe.params };
      outDtype ??= recipe.outDtype ?? undefined;
      warnings.push(...recipe.warnings);
    }
    if (!method) throw new WgitError('E_USAGE', 'give --method (or a --config file)');
    const m = getMethod(method);
    // with slices, the merge's inputs are the sources of each slice
    const nIn = slices ? slices[0].sources.length : inputs.length;
    if (nIn < Math.max(1, m.minInputs)) {
      throw new WgitError('E_USAGE', `${method} needs at least ${Math.max(1, m.minInputs)} input model(s), got ${nIn}`);
    }
    if (m.maxInputs !== undefined && nIn > m.maxInputs)
      throw new WgitError('E_USAGE', `${method} merges at most ${m.maxInputs} input model(s), got ${nIn}`);
    if (m.name === 'linear' && inputs.length === 1 && !slices)
      throw new WgitError(
        'E_USAGE',
        `a linear merge of one model is a copy of ${inputs[0]}; give two or more models (wgit branch NAME ${inputs[0]} names it without copying)`,
      );
    if (m.needsBase && !baseSpec)
      throw new WgitError('E_BASE_REQUIRED', `${method} needs --base (the model the inputs were fine-tuned from)`);

    Object.assign(params, paramsFromFlags(flags as Record<string, unknown>, nIn));
    const takesBase = m.needsBase || m.optionalBase === true;
    if (baseSpec && !takesBase) warnings.push(`${method} does not use a base; --base ${baseSpec} ignored`);
    // parameter errors surface before any model is opened
    m.resolve(params, nIn);
    if (flags['dry-run']) {
      const plan = await dryRunPlan({
        repo: flags.repo,
        method,
        params,
        inputs,
        base: takesBase ? (baseSpec ?? null) : null,
        slices,
        warnings,
        outDtype: outDtype ?? null,
      });
      if (!this.jsonEnabled()) renderPlan(plan, (line) => this.log(line));
      return plan;
    }

    const useBase = Boolean(baseSpec && takesBase);
    const {
      value: report,
      models,
      result,
      parents,
    } = await runMethodCommit({
      device,
      repo: flags.repo,
      models: [
        ...inputs,
        ...(useBase ? [baseSpec as string] : []),
        ...(flags['side-files-from'] ? [flags['side-files-from']] : []),
      ],
      kind: 'merge',
      branch: flags.branch,
      // cut to 80 characters, never ending in '.' or '-' (not a valid branch name)
      branchName: (ms) =>
        `${m.name}/${ms
          .slice(0, inputs.length)
          .map(branchPiece)
          .join('+')
          .slice(0, 80)
          .replace(/[.+-]+$/, '')}`,
      compute: async (ms, outDir, scratch, sink) => {
        const ins = ms.slice(0, inputs.length);
        const base = useBase ? ms[inputs.length] : null;
        const sf = flags['side-files-from'] ? ms[ms.length - 1] : null;
        // With the store sink the merged model and any group it writes (rmm's basis) stream into the
        // commit; on the folder path they go to scratch folders, committed then.
        const sliced = slices
          ? slicedInputs(
              ins.map((a) => a.source),
              slices,
            )
          : null;
        const report = await mergeModels({
          inputs: sliced ? sliced.inputs : ins.map((a) => a.source),
          positions: sliced?.positions,
          base: base?.source,
          method,
          params,
          outDir,
          sink,
          outDtype,
          groupDir: join(scratch, 'group'),
          sideFiles: sf?.source,
          onProgress: (e) => this.progress(`${e.phase} ${e.done}/${e.total}`),
        });
        const recipe: Record<string, unknown> = {
          method,
          inputs: ins.map(recipeRef),
          base: base ? recipeRef(base) : null,
          params: report.params,
          seed: report.params.seed,
        };
        if (report.lines) recipe.lines = report.lines;
        if (report.sparsity) recipe.sparsity = report.sparsity;
        if (flags.config) recipe.config = flags.config;
        recipe.sideFilesFrom = recipeRef(sf ?? base ?? ins[0]);
        if (slices) recipe.slices = slices;
        return {
          value: report,
          message: flags.message ?? `merge (${method}) of ${inputs.join(', ')}${base ? ` onto ${base.spec}` : ''}`,
          parents: sf ? ms.slice(0, -1) : ms,
          recipe,
          groups: folderGroups(report.groups),
        };
      },
      progress: (msg) => this.progress(msg),
      progressDone: () => this.progressDone(),
    });
    const ins = models.slice(0, inputs.length);
    const base = useBase ? models[inputs.length] : null;
    const rmm = (report as { rmm?: MergeResult['rmm'] }).rmm;
    const out: MergeResult = {
      commit: result.commit,
      branch: result.branch,
      parents,
      method,
      inputs: ins.map((a) => a.commit ?? a.path ?? a.spec),
      base: base ? (base.commit ?? base.path) : null,
      params: report.params as unknown as Record<string, unknown>,
      tensors: result.tensors,
      rawBytes: result.rawBytes,
      storedBytes: result.storedBytes,
      warnings: [...warnings, ...report.warnings],
    };
    if (rmm) out.rmm = { rank: rmm.rank, basisTensors: rmm.basisTensors, models: rmm.models };
    if (report.lines) out.lines = report.lines;
    if (report.sparsity) out.sparsity = report.sparsity;
    if (!this.jsonEnabled()) this.render(out);
    return out;
  }

  private render(r: MergeResult): void {
    this.log(
      `merged ${r.inputs.length} model(s) with ${r.method} → ${r.commit.slice(0, 12)} on ${printable(r.branch)}`,
    );
    if (r.lines) this.log(`LiNeS: α = ${r.lines.alpha.toFixed(4)}, β = ${r.lines.beta}, ${r.lines.blocks} blocks`);
    if (r.rmm) {
      this.log(`reversible basis: rank ${r.rmm.rank}, ${r.rmm.basisTensors} basis tensors`);
      for (const [i, m] of r.rmm.models.entries()) {
        const rel = m.relError.toExponential(3);
        this.log(`  input ${i}: recovery rel. error ${rel} (merged model: ${m.mergedRelError.toExponential(3)})`);
      }
    }
    const sp = r.sparsity;
    if (sp && (sp.output > 0 || sp.inputs.some((x) => x > 0))) {
      const pct = (x: number) => `${(100 * x).toFixed(2)}%`;
      this.log(`sparsity: inputs ${sp.inputs.map(pct).join(', ')} → merged ${pct(sp.output)}`);
    }
    this.log(`stored ${r.storedBytes} bytes for ${r.rawBytes} raw`);
    for (const w of r.warnings) this.warn(w);
  }
}
