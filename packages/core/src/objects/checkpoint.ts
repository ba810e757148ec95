/**
 * The plain object: every tensor of a model plus its side files. A tensor
 * set whose manifest names no kind is a checkpoint, so every repository
 * written before kinds existed reads as one.
 */
import { copySideFiles, discardOutDir, prepareOutDir } from '../pipeline/index.js';
import { type ModelSource, ModelWriter } from '../safetensors/index.js';
import type { ObjectKind, ObjectValue } from './kind.js';

export const CHECKPOINT_KIND = 'checkpoint';

/** Writes a model's tensors (in its order, with its `__metadata__`) and side files to an empty folder. */
export async function writeModelCopy(source: ModelSource, outDir: string, maxShardBytes?: number): Promise<void> {
  await prepareOutDir(outDir);
  const writer = await ModelWriter.create(
    outDir,
    source.tensors.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape })),
    { maxShardBytes, metadata: source.metadata ?? undefined },
  );
  try {
    for (const t of source.tensors) await writer.write(t.name, await source.readTensor(t.name));
    await writer.finish();
    await copySideFiles(source, outDir);
  } catch (e) {
    await writer.abort();
    await discardOutDir(outDir);
    throw e;
  }
}

export const checkpoint: ObjectKind = {
  name: CHECKPOINT_KIND,
  version: 1,
  description: 'a model: every tensor plus its side files',
  async compute(opts) {
    await writeModelCopy(opts.inputs[0], opts.outDir, opts.maxShardBytes);
    return { header: { kind: CHECKPOINT_KIND, version: 1 }, report: { tensors: opts.inputs[0].tensors.length } };
  },
  async encode(value: ObjectValue, outDir: string) {
    await writeModelCopy(value.source, outDir);
    return { kind: CHECKPOINT_KIND, version: 1 };
  },
  async decode(source, header) {
    return { header, source };
  },
  async apply(value, opts) {
    await writeModelCopy(value.source, opts.outDir, opts.maxShardBytes);
    return { outDir: opts.outDir, model: null, exact: true, details: { tensors: value.source.tensors.length } };
  },
  describe(value) {
    return {
      kind: CHECKPOINT_KIND,
      version: value.header.version,
      detected: false,
      description: `checkpoint: ${value.source.tensors.length} tensors`,
      models: 0,
      details: { tensors: value.source.tensors.length },
    };
  },
};
