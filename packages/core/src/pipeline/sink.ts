/**
 * Where a pipeline's output goes: the one lifecycle every output follows —
 * begin (the tensors to come are known), write (tensor by tensor, in spec
 * order), finish (side files from the carrier model), or abort (anything the
 * output made so far is cleaned up). Two sinks exist: a model folder (here)
 * and the store itself (`@wgit/store`, a commit built from the stream).
 */
import type { ModelSource } from '../safetensors/index.js';
import { ModelWriter, type TensorSpec } from '../safetensors/index.js';
import { copySideFiles, discardOutDir, prepareOutDir } from './output.js';

export interface SinkPlan {
  /** Every tensor of the output, in the order write() is called. */
  specs: TensorSpec[];
  /** Safetensors `__metadata__` of the output files. */
  metadata?: Record<string, string>;
  /** Shard size limit (default: transformers' 5 GB). */
  maxShardBytes?: number;
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
  finish(carrier: ModelSource): Promise<void>;
  /** Drops what the output made so far; safe after a failed begin, write or finish, and more than once. */
  abort(): Promise<void>;
}

/** A model folder written by ModelWriter: refuses a non-empty folder, removes it again after a failure. */
export class FolderSink implements Sink {
  private writer: ModelWriter | null = null;
  private prepared = false;
  private state: 'new' | 'open' | 'finished' | 'aborted' = 'new';

  constructor(readonly outDir: string) {}

  async begin(plan: SinkPlan): Promise<void> {
    if (this.state !== 'new') throw new Error('FolderSink.begin called twice');
    await prepareOutDir(this.outDir);
    this.prepared = true;
    this.state = 'open';
    try {
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

  async finish(carrier: ModelSource): Promise<void> {
    if (!this.writer) throw new Error('FolderSink.finish before begin');
    await this.writer.finish();
    await copySideFiles(carrier, this.outDir);
    this.state = 'finished';
  }

  async abort(): Promise<void> {
    if (this.state === 'aborted' || this.state === 'finished') return;
    this.state = 'aborted';
    await this.writer?.abort().catch(() => {});
    // Only a folder this sink prepared (found empty or absent) is removed.
    if (this.prepared) await discardOutDir(this.outDir);
  }
}
