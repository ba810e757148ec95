/**
 * Object kinds: what a stored tensor set *is* (a checkpoint, a
 * reversible-merge basis, …) and how to turn it back into a model. Each kind
 * lives in one file and is tested by round trip; the store records the kind
 * in the tensor set's manifest, and commands ask the kind, never the method
 * that made the object.
 */
import type { ProgressEvent } from '../methods/types.js';
import type { ModelSource } from '../safetensors/index.js';
import type { DeltaView } from './delta.js';

/** What a manifest records about its tensor set: absent means a plain checkpoint. */
export interface ObjectHeader {
  kind: string;
  /** Version of the kind's stored form; 0 for forms written before manifests named their kind. */
  version: number;
  /** Small, kind-specific figures (counts, rank): enough to describe the object without reading tensors. */
  meta?: Record<string, unknown>;
}

/** A decoded object: its header and the stored tensors, read lazily. Kinds extend it. */
export interface ObjectValue {
  header: ObjectHeader;
  source: ModelSource;
}

/** What `wgit show` prints about an object. */
export interface ObjectSummary {
  kind: string;
  version: number;
  /** True when the stored form predates the manifest's object field and was recognised by its tensors. */
  detected: boolean;
  description: string;
  /** How many models `apply` can give back by index (0: only the object itself). */
  models: number;
  details: Record<string, unknown>;
}

export interface ComputeOptions {
  inputs: ModelSource[];
  base?: ModelSource;
  params?: Record<string, unknown>;
  /** The model a plain checkout gives (for a reversible merge: the merged model). */
  outDir: string;
  /** Where the object's own tensors go when they are not the model itself. */
  objectDir?: string;
  onProgress?: (e: ProgressEvent) => void;
  maxShardBytes?: number;
}

export interface ApplyOptions {
  /** Which model to produce, for kinds that hold several (0-based); absent: the object's own model. */
  model?: number;
  /** For kinds that are a change to a model (a diff vector): the model it is applied to, and its scale. */
  onto?: ModelSource;
  scale?: number;
  outDir: string;
  onProgress?: (e: ProgressEvent) => void;
  maxShardBytes?: number;
}

export interface ApplyReport {
  outDir: string;
  model: number | null;
  /** True when the output is byte-identical to the model the object was made from. */
  exact: boolean;
  /** Kind-specific figures (errors, fixes applied). */
  details: Record<string, unknown>;
}

/**
 * One kind of stored object. Methods use method syntax so a kind with a
 * richer value type still fits the registry's list.
 */
export interface ObjectKind<V extends ObjectValue = ObjectValue> {
  readonly name: string;
  /** The stored form this code writes. Readers accept every version up to it. */
  readonly version: number;
  readonly description: string;
  /**
   * Recognises a stored form written before manifests named their kind, from
   * its tensor names: the version it counts as, or null.
   */
  detect?(tensorNames: readonly string[]): number | null;
  /** Builds the object from models, writing it as stored tensors; returns the header to record and a report. */
  compute(opts: ComputeOptions): Promise<{ header: ObjectHeader; report: unknown }>;
  /** Writes a value as a tensor folder (the stored form of the current version); returns its header. */
  encode(value: V, outDir: string): Promise<ObjectHeader>;
  /** Reads the stored form (any supported version) into a value; checks what it reads. */
  decode(source: ModelSource, header: ObjectHeader): Promise<V>;
  /** Produces a model from the object. */
  apply(value: V, opts: ApplyOptions): Promise<ApplyReport>;
  describe(value: V): ObjectSummary;
  /**
   * For kinds that are a change to a model (diff vector, sparse delta,
   * low-rank basis, signature): what adding the object to a model does,
   * tensor by tensor; `applyDelta` (delta.ts) writes the result.
   */
  delta?(value: V): DeltaView;
}
