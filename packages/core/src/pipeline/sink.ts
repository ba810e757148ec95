/**
 * Where a pipeline's output goes: the one lifecycle every output follows —
 * begin (the tensors to come are known), write (tensor by tensor, in spec
 * order), finish (side files from the carrier model), or abort (anything the
 * output made so far is cleaned up). Two sinks exist: a model folder (here)
 * and the store itself (`@wgit/store`, a commit built from the stream).
 *
 * An output may hold tensor groups beside its model (a reversible merge's
 * basis): `sink.group(name, header)` opens one as a sink of its own, with the
 * same lifecycle, written while the model is; the folder sink writes it to a
 * folder, the store sink stores it under `groups/<name>/` of the commit.
 */
import { WgitError } from '../errors.js';
import type { ModelSource } from '../safetensors/index.js';
import { ModelWriter, type TensorSpec } from '../safetensors/index.js';
import { copySideFiles, discardOutDir, prepareOutDir } from './output.js';

/** Where an output's side files (config.json, tokenizer …) come from: a model, or any set of named files. */
export type SideFileSource = Pick<ModelSource, 'sideFiles' | 'readSideFile'>;

export interface SinkPlan {
  /** Every tensor of the output, in the order write() is called. */
  specs: TensorSpec[];
  /** Safetensors `__metadata__` of the output files. */
  metadata?: Record<string, string>;
  /** Shard size limit (default: transformers' 5 GB). */
  maxShardBytes?: number;
}

/**
 * What a tensor group is, as its manifest records it: the object kind of its
 * tensors, the version of their stored form and a few figures (the
 * `ObjectHeader` of `objects/kind.ts`).
 */
export interface GroupHeader {
  kind: string;
  version: number;
  meta?: Record<string, unknown>;
}

export interface Sink {
  /** Called once, before any write. A sink that throws here has made nothing that needs cleaning up. */
  begin(plan: SinkPlan): Promise<void>;
  /**
   * One tensor's bytes, in spec order. `bytes` stays valid only until the
   * returned promise settles: a sink that keeps them longer copies them.
   */
  write(name: string, bytes: Uint8Array): Promise<void>;
  /** Every tensor is written: add the side files of `carrier` and complete the output. */
  finish(carrier: SideFileSource): Promise<void>;
  /** Drops what the output made so far, its groups included; safe after a failed begin, write or finish, and more than once. */
  abort(): Promise<void>;
  /**
   * Opens tensor group `name` beside the output, recorded with `header`: a
   * sink of its own (begin, write in its own spec order — interleaved with
   * this sink's writes as the computation goes — finish with the model whose
   * side files it takes). Open groups after this sink's begin and finish them
   * before its finish; this sink's abort drops them. Absent on a sink that
   * holds a model only.
   */
  group?(name: string, header: GroupHeader): Sink;
}

/**
 * A sink's whole life around `fill`: begin with `plan`, `fill` writes the
 * tensors, finish with the carrier's side files; after any failure the sink
 * is aborted (groups included) and the error rethrown. Every writer of an
 * output runs through here, so the lifecycle is written once.
 */
export async function fillSink(
  sink: Sink,
  plan: SinkPlan,
  carrier: SideFileSource,
  fill: () => Promise<void>,
): Promise<void> {
  try {
    await sink.begin(plan);
    await fill();
    await sink.finish(carrier);
  } catch (e) {
    await sink.abort();
    throw e;
  }
}

/** A group for `fillGroups`: its name and header, its tensors and the model whose side files it takes. */
export interface GroupPlan {
  name: string;
  header: GroupHeader;
  plan: SinkPlan;
  carrier: SideFileSource;
  /** Tensors written as soon as the group is open, before the streamed ones (a table the rest depends on). */
  head?: { name: string; bytes: Uint8Array }[];
}

/**
 * Opens the groups of `sink` (begin, head tensors), runs `fill` with them
 * open, then finishes them. A failure is left to the caller's abort of
 * `sink`, which drops the groups too.
 */
export async function fillGroups(
  sink: Sink,
  groups: GroupPlan[],
  fill: (open: Readonly<Record<string, Sink>>) => Promise<void>,
): Promise<void> {
  const open: Record<string, Sink> = {};
  for (const g of groups) {
    if (!sink.group)
      throw new WgitError('E_BAD_PARAM', `this output holds a model only: it cannot take tensor group ${g.name}`, {
        param: 'sink',
        group: g.name,
      });
    const s = sink.group(g.name, g.header);
    Object.defineProperty(open, g.name, { value: s, enumerable: true });
    await s.begin(g.plan);
    for (const h of g.head ?? []) await s.write(h.name, h.bytes);
  }
  await fill(open);
  for (const g of groups) await open[g.name].finish(g.carrier);
}

export interface FolderSinkOptions {
  /** The folder of each tensor group the output may open, by group name. */
  groups?: Record<string, string>;
}

/**
 * A model folder written by ModelWriter: refuses a non-empty folder, removes
 * it again after a failure. Its groups are folders too, named in the options
 * and checked (empty or absent) at begin, so a mistake fails before any work.
 */
export class FolderSink implements Sink {
  private writer: ModelWriter | null = null;
  /** Folders this sink found empty or absent: the only ones it removes after a failure. */
  private readonly prepared: string[] = [];
  private readonly children = new Map<string, FolderSink>();
  private state: 'new' | 'open' | 'finished' | 'aborted' = 'new';

  constructor(
    readonly outDir: string,
    private readonly opts: FolderSinkOptions = {},
  ) {}

  async begin(plan: SinkPlan): Promise<void> {
    if (this.state !== 'new') throw new Error('FolderSink.begin called twice');
    await prepareOutDir(this.outDir);
    this.prepared.push(this.outDir);
    this.state = 'open';
    try {
      for (const dir of Object.values(this.opts.groups ?? {})) {
        await prepareOutDir(dir);
        this.prepared.push(dir);
      }
      this.writer = await ModelWriter.create(this.outDir, plan.specs, {
        maxShardBytes: plan.maxShardBytes,
        metadata: plan.metadata,
      });
    } catch (e) {
      await this.abort();
      throw e;
    }
  }

  async write(name: string, bytes: Uint8Array): Promise<void> {
    if (!this.writer) throw new Error('FolderSink.write before begin');
    await this.writer.write(name, bytes);
  }

  group(name: string, _header: GroupHeader): Sink {
    if (this.state !== 'open') throw new Error(`FolderSink.group(${name}) outside begin … finish`);
    const dir = this.opts.groups?.[name];
    if (dir === undefined)
      throw new WgitError('E_BAD_PARAM', `no folder given for tensor group ${JSON.stringify(name)}`, {
        param: 'groupDir',
        group: name,
      });
    if (this.children.has(name)) throw new Error(`FolderSink: group ${name} opened twice`);
    const child = new FolderSink(dir);
    this.children.set(name, child);
    return child;
  }

  async finish(carrier: SideFileSource): Promise<void> {
    if (!this.writer) throw new Error('FolderSink.finish before begin');
    for (const [name, child] of this.children)
      if (child.state !== 'finished') throw new Error(`FolderSink.finish: group ${name} is not finished`);
    await this.writer.finish();
    await copySideFiles(carrier, this.outDir);
    this.state = 'finished';
  }

  async abort(): Promise<void> {
    if (this.state === 'aborted' || this.state === 'finished') return;
    this.state = 'aborted';
    for (const child of this.children.values()) await child.abort();
    await this.writer?.abort().catch(() => {});
    // Only folders this sink prepared (found empty or absent) are removed.
    for (const dir of this.prepared) await discardOutDir(dir);
  }
}
