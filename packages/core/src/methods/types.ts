import type { Device, KernelDType } from '../device/index.js';
import type { DType } from '../dtypes.js';
import type { BufferPool } from '../pipeline/buffers.js';
import type { GroupHeader, SideFileSource, Sink } from '../pipeline/sink.js';
import type { ModelSource } from '../safetensors/index.js';

/**
 * mergekit's gradient: anchor values spread evenly over the layers; a tensor
 * of layer i of L takes the piecewise-linear interpolation at t = i/(L−1)
 * (t = 1 when L = 1), a tensor outside the layers the value at t = 0.
 */
export type Gradient = number[];

/**
 * A parameter value that may differ per tensor, in mergekit's list form:
 * the first rule whose `filter` is a substring of the tensor name wins; a rule
 * without a filter, or with the filter `"*"`, matches every tensor (so it
 * belongs last). A value is a number or a gradient.
 */
export interface TensorRule<T> {
  filter?: string;
  value: T | T[];
}
export type PerTensor<T> = T | T[] | TensorRule<T>[];

/** Parameters as a caller (CLI, mergekit recipe) passes them; every field optional. */
export interface MergeParams {
  /** One per input model; default 1 each (linear divides by their sum). */
  weights?: PerTensor<number>[];
  /** Scale of the merged task vector, θ₀ + λ·τ (default 1). */
  lambda?: PerTensor<number>;
  /** Fraction kept: TIES top-k fraction by |τ|, DARE keep probability. One value or one per input. Default 0.2. */
  density?: PerTensor<number> | PerTensor<number>[];
  /** DARE drop probability, the same as density = 1 − drop (give one of the two). */
  drop?: number;
  /** Seed of the counter-based RNG (DARE). Default 0. */
  seed?: number;
  /** Magnitude trimming scope: per tensor (mergekit, default) or over the whole flattened model (paper). */
  trim?: 'tensor' | 'model';
  /** Divide the merged task vector by the sum of the weights that took part (mergekit's flag). */
  normalize?: boolean;
  /** rmm: number of basis tensors kept per tensor (default n = exact). */
  rank?: number;
  /** LiNeS as a post-step: depth-dependent scaling of the merged task vector. */
  lines?: { beta: number } | null;
  /** Parameters a method declares beyond the ones above (see ParamDecl). */
  [extra: string]: unknown;
}

/** Parameters after validation and defaults, with per-tensor values still unresolved. */
export interface ResolvedParams {
  weights: PerTensor<number>[];
  lambda: PerTensor<number>;
  density: PerTensor<number>[];
  seed: number;
  trim: 'tensor' | 'model';
  normalize: boolean;
  rank: number;
  lines: { beta: number } | null;
  /** Values of parameters a method declares beyond the ones above, by name. */
  [extra: string]: unknown;
}

/** The numbers one tensor is merged with. */
export interface TensorParams {
  weights: number[];
  lambda: number;
  density: number[];
  seed: number;
  normalize: boolean;
  /** Per-tensor values of the parameters a method declares beyond the fixed ones, by name. */
  extra?: Record<string, unknown>;
}

/**
 * One parameter of a merge method, declared next to the method's code.
 * Validation, the recorded recipe, the `wgit merge` flags and the mergekit
 * YAML mapping are all derived from these declarations (params.ts,
 * mergekit.ts, the CLI's merge command).
 */
export interface ParamDecl {
  /** Key in MergeParams and in the recorded recipe. */
  name: string;
  /** A number list per model is `number` with scope 'per-model'. */
  type: 'number' | 'integer' | 'boolean' | 'enum' | 'object';
  /**
   * 'global': one value. 'per-model': a list with one value per input model;
   * with `broadcast` a single value stands for every model.
   */
  scope: 'global' | 'per-model';
  broadcast?: boolean;
  /** Whether a number may be given per tensor as mergekit's list of {filter, value} rules. */
  perTensor: boolean;
  /** Inclusive bounds of a number; `max: 'inputs'` is the number of input models. */
  min?: number;
  max?: number | 'inputs';
  /** The upper bound itself is refused (a drop probability of 1 keeps nothing). */
  maxExclusive?: boolean;
  /** enum: the accepted values. */
  choices?: readonly string[];
  /** object: its number fields, each with the value used when it is left out. */
  fields?: Readonly<Record<string, { default: number; help: string; cli?: { description: string } }>>;
  /** Value when the parameter is not given; a function of the number of inputs where it depends on it. */
  default: number | boolean | string | null | ((nInputs: number) => unknown);
  required: boolean;
  /** What the parameter does for this method. */
  help: string;
  /**
   * Another parameter this one is a second spelling of (DARE's drop for
   * density): give one of the two; the value is converted and stored there.
   */
  alternativeTo?: { name: string; convert: (v: number) => number };
  /** Checks against the other resolved values; throws E_BAD_PARAM. */
  check?: (r: ResolvedParams) => void;
  /** The `wgit merge` flag (`--flag`; object fields become `--flag-field`); absent: no flag. */
  cli?: { flag: string; description: string };
  /**
   * The mergekit YAML key: under `parameters` for a global parameter, under
   * `models[].parameters` (and `parameters`, as every model's default) for a
   * per-model one. `default` is the value mergekit assumes when a config
   * leaves the key out; it is written into the recipe.
   */
  /**
   * The mergekit YAML key; `default` when the config omits it; `values` maps
   * mergekit's spelling of a value to ours where they differ (as text:
   * `{ true: 'l1' }`).
   */
  mergekit?: { key: string; default?: unknown; values?: Record<string, unknown> };
}

/** Earlier name of ParamDecl. */
export type MethodParamDef = ParamDecl;

/** Per-tensor context handed to the pure merge functions. */
export interface TensorContext {
  /** Tensor name (drives per-tensor parameters and the DARE stream id). */
  name: string;
  /** Number of layers of the model, for gradients (mergeTensor; the engine counts them itself). */
  layers?: number;
  /** The tensor's shape (the engine sets it; della ranks a 2-D tensor's entries per row). */
  shape?: number[];
  /**
   * Per input: keep entries with |τ| ≥ threshold. Set by the engine for model-wide
   * trimming; when absent, magnitude sparsification computes a per-tensor threshold.
   */
  thresholds?: number[];
  /**
   * Per input, with `thresholds`: how many entries of this tensor with |τ| equal
   * to the threshold are kept, the first by flat index (-1: every one), so the
   * model keeps exactly k. Absent: every tie.
   */
  tieQuotas?: number[];
}

/**
 * How the general sparsify + consensus method is configured. TIES, DARE and
 * task arithmetic are instances of it (see sparse-consensus.ts).
 */
export interface SparseConsensusConfig {
  sparsify: 'none' | 'magnitude' | 'random';
  consensus: 'none' | 'sum';
  defaultNormalize: boolean;
}

export interface MergeMethod {
  name: string;
  description: string;
  /** Paper the math follows. */
  reference: string;
  /** The parameters it takes; everything else derives from these. */
  params: readonly ParamDecl[];
  needsBase: boolean;
  /** Takes a base when one is given (nuslerp: task vectors then), merges without one otherwise. */
  optionalBase?: boolean;
  /**
   * mergekit's `base_model` is one of the two inputs, the one at t = 0
   * (slerp): a config's base goes first among the inputs instead of being a base.
   */
  mergekitBaseIsInput?: boolean;
  minInputs: number;
  /**
   * mergekit keys of this method that wgit takes only at one value (mergekit's
   * default), e.g. `{ filter_wise: false }`: that value is accepted, any other refused.
   */
  mergekitFixed?: Readonly<Record<string, unknown>>;
  /** Most inputs the method merges (slerp, nuslerp: 2). */
  maxInputs?: number;
  /** Its name in mergekit YAML configs (`merge_method`), where mergekit has the same method. */
  mergekitName?: string;
  /** For methods built on the general sparsify + consensus method. */
  config?: SparseConsensusConfig;
  /** Validate raw parameters against `params` and fill in defaults; throws E_BAD_PARAM (see defineMethod). */
  resolve(params: MergeParams, nInputs: number): ResolvedParams;
  /**
   * The per-tensor function: writes the merged values of one float tensor into
   * `out` (f32). `inputs` are the models' values, `base` the base's (when needsBase).
   */
  build(
    params: TensorParams,
  ): (inputs: Float32Array[], base: Float32Array | undefined, ctx: TensorContext, out: Float32Array) => void;
  /**
   * A kernel path for one tensor of a kernel dtype: writes the output bytes
   * and returns true, or false to take `build`'s plain path. `raw` holds the
   * inputs' bytes, then the base's.
   */
  fast?(
    f: { device: Device; params: TensorParams; ctx: TensorContext },
    raw: Uint8Array[],
    dtype: KernelDType,
    outDtype: KernelDType,
    outBytes: Uint8Array,
    pool: Pick<BufferPool, 'f32'>,
  ): Promise<boolean>;
  /**
   * Declared by a method whose result is more than a model (rmm writes a
   * basis group beside the merged model): the engine hands it the whole
   * merge — inputs, parameters, the output sink or folders — instead of
   * running the per-tensor path. It runs on the tensor pipeline like any
   * other method and names the groups it wrote in `MergeReport.groups`.
   */
  run?(opts: MethodRunOptions): Promise<MergeReport>;
}

/** What the engine hands a method that runs whole (`MergeMethod.run`). */
export interface MethodRunOptions {
  inputs: ModelSource[];
  base?: ModelSource;
  params?: MergeParams;
  /** The merged model's folder, unless `sink` is given. */
  outDir?: string;
  /** Where the merged model and its groups go instead of folders (e.g. a store commit). */
  sink?: Sink;
  /** With `outDir`: the folder of the method's group. */
  groupDir?: string;
  outDtype?: DType;
  onProgress?: (e: ProgressEvent) => void;
  maxShardBytes?: number;
  /** The device to compute on. */
  device?: Device;
  /** Where the output's side files come from (default: the base's, else the first input's). */
  sideFiles?: SideFileSource;
}

export interface TensorNote {
  name: string;
  dtype: DType;
  shape: number[];
  /** 'merged' | 'copied' (integer/bool: taken from the first model) | other method-specific notes */
  action: string;
  note?: string;
}

export interface ProgressEvent {
  phase: string;
  done: number;
  total: number;
  tensor?: string;
}

export interface Timings {
  validateMs: number;
  /** Whole-model first passes (model-wide trim threshold, LiNeS norms). */
  firstPassMs: number;
  mergeMs: number;
  totalMs: number;
}

export interface MergeReport {
  method: string;
  /** Resolved parameters (seed included) and the output dtype. */
  params: Partial<ResolvedParams> & Record<string, unknown> & { outDtype: DType | null };
  tensors: TensorNote[];
  warnings: string[];
  timings: Timings;
  /** Integer/bool tensors copied from the first model. */
  copied: string[];
  /** LiNeS post-step: α and the number of blocks found. */
  lines?: { alpha: number; beta: number; blocks: number };
  /** Model-wide trim: per-input threshold |τ| ≥ t. */
  thresholds?: number[];
  outDir: string;
  bytesWritten: number;
  /** The device (and whether it is a compiled backend), and how many tensors took the device kernel path. */
  engine?: { kernels: boolean; device: string; kernelTensors: number };
  /**
   * Zeros over the float tensors: the share of each input's entries that are
   * 0, and of the output's (a linear merge of inputs sharing a mask keeps it).
   */
  sparsity?: { elements: number; inputs: number[]; output: number };
  /** Tensor groups written beside the model: name, header, and the folder when they went to one (null: a sink). */
  groups?: { name: string; header: GroupHeader; dir: string | null }[];
}
