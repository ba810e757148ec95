import { join } from 'node:path';
import { Args, Flags } from '@oclif/core';
import { type DType, type MergeParams, WgitError } from '@wgit/core';
import { WgitCommand } from '../base.js';
import { printable } from '../format.js';
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
}

/** The largest --config file read; parseMergekitYaml refuses longer text too. */
const MAX_CONFIG_BYTES = 1 << 20;

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
  ];
  static override flags = {
    method: Flags.string({
      description: 'merge method',
      options: ['linear', 'task-arithmetic', 'ties', 'dare-linear', 'dare-ties', 'rmm'],
    }),
    base: Flags.string({ description: 'base model the fine-tunes come from (needed by all but linear)' }),
    weights: Flags.string({
      description: 'one weight per input, comma separated (or the flag repeated)',
      multiple: true,
    }),
    density: Flags.string({
      description: 'TIES/DARE: fraction of each task vector kept (one value, or one per input)',
    }),
    lambda: Flags.string({ description: 'scale of the merged task vector' }),
    drop: Flags.string({ description: 'DARE: drop probability (1 − density)' }),
    seed: Flags.string({ description: 'seed of every random choice (DARE), an integer' }),
    trim: Flags.string({ description: 'TIES trimming scope', options: ['tensor', 'model'] }),
    normalize: Flags.boolean({ description: 'divide by the sum of the weights', allowNo: true }),
    lines: Flags.boolean({ description: 'apply LiNeS depth scaling to the merged task vector' }),
    'lines-beta': Flags.string({ description: 'LiNeS β (with --lines)' }),
    rank: Flags.string({ description: 'rmm: basis tensors kept per tensor (default: all = exact)' }),
    config: Flags.string({ description: 'a mergekit YAML file (merge_method, models, base_model, parameters, dtype)' }),
    'out-dtype': Flags.string({ description: 'dtype of the merged float tensors (F32, F16, BF16)' }),
    message: Flags.string({ char: 'm', description: 'commit message' }),
    branch: Flags.string({ description: 'branch to commit on (default: a new branch merge/<inputs>)' }),
  };

  async run(): Promise<MergeResult> {
    const { flags, argv } = await this.parse(Merge);
    const revs = (argv as string[]).filter((a) => typeof a === 'string');
    const { mergeModels, getMethod } = await import('@wgit/core');

    let method = flags.method;
    let baseSpec = flags.base;
    let inputs = revs;
    let params: MergeParams = {};
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
      baseSpec ??= recipe.base ?? undefined;
      params = { ...recipe.params };
      outDtype ??= recipe.outDtype ?? undefined;
      warnings.push(...recipe.warnings);
    }
    if (!method) throw new WgitError('E_USAGE', 'give --method (or a --config file)');
    const m = getMethod(method);
    if (inputs.length < Math.max(1, m.minInputs)) {
      throw new WgitError(
        'E_USAGE',
        `${method} needs at least ${Math.max(1, m.minInputs)} input model(s), got ${inputs.length}`,
      );
    }
    if (m.needsBase && !baseSpec)
      throw new WgitError('E_BASE_REQUIRED', `${method} needs --base (the model the inputs were fine-tuned from)`);

    const weights = decimalListFlag(flags.weights, 'weights');
    if (weights) {
      if (weights.length !== inputs.length) {
        throw new WgitError(
          'E_BAD_PARAM',
          `--weights has ${weights.length} value(s) for ${inputs.length} input model(s)`,
          {
            param: 'weights',
          },
        );
      }
      params.weights = weights;
    }
    const density = decimalListFlag(flags.density, 'density');
    if (density) params.density = density.length === 1 ? density[0] : density;
    const lambda = decimalFlag(flags.lambda, 'lambda');
    if (lambda !== undefined) params.lambda = lambda;
    const drop = decimalFlag(flags.drop, 'drop');
    if (drop !== undefined) params.drop = drop;
    const seed = integerFlag(flags.seed, 'seed');
    if (seed !== undefined) params.seed = seed;
    if (flags.trim) params.trim = flags.trim as 'tensor' | 'model';
    if (flags.normalize !== undefined) params.normalize = flags.normalize;
    const rank = integerFlag(flags.rank, 'rank');
    if (rank !== undefined) params.rank = rank;
    if (flags['lines-beta'] !== undefined && !flags.lines) throw new WgitError('E_USAGE', '--lines-beta needs --lines');
    if (flags.lines) params.lines = { beta: decimalFlag(flags['lines-beta'], 'lines-beta') ?? 1 };
    if (baseSpec && !m.needsBase) warnings.push(`${method} does not use a base; --base ${baseSpec} ignored`);
    // parameter errors surface before any model is opened
    m.resolve(params, inputs.length);

    const useBase = Boolean(baseSpec && m.needsBase);
    const {
      value: report,
      models,
      result,
      parents,
    } = await runMethodCommit({
      repo: flags.repo,
      models: useBase ? [...inputs, baseSpec as string] : inputs,
      kind: 'merge',
      branch: flags.branch,
      branchName: (ms) => ms.slice(0, inputs.length).map(branchPiece).join('+').slice(0, 80),
      compute: async (ms, outDir, scratch) => {
        const ins = ms.slice(0, inputs.length);
        const base = useBase ? ms[inputs.length] : null;
        const groupDir = join(scratch, 'rmm');
        const report = await mergeModels({
          inputs: ins.map((a) => a.source),
          base: base?.source,
          method,
          params,
          outDir,
          outDtype,
          groupDir: method === 'rmm' ? groupDir : undefined,
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
        if (flags.config) recipe.config = flags.config;
        return {
          value: report,
          message: flags.message ?? `merge (${method}) of ${inputs.join(', ')}${base ? ` onto ${base.spec}` : ''}`,
          parents: ms,
          recipe,
          groups: method === 'rmm' ? { rmm: groupDir } : undefined,
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
    this.log(`stored ${r.storedBytes} bytes for ${r.rawBytes} raw`);
    for (const w of r.warnings) this.warn(w);
  }
}
