/**
 * mergekit's `slices`: the output's layers are the concatenation of each
 * slice's `layer_range` [a, b) from its sources, renumbered from 0. The
 * merge runs on virtual models, one per source position: input i of output
 * layer k is layer a + o of slice s's i-th source (k counting through the
 * slices, o the offset inside slice s), renamed to layer k. Tensors outside
 * the layers come, as in mergekit, from the first slice's sources (the
 * embeddings: names with `embed`, `wte`, `wpe`) or the last slice's (final
 * norm, head …). Each virtual model is read through the real one, a tensor
 * at a time; the carrier's config.json gets the new layer count.
 * Gradients are interpolated per slice: t = o/(b − a − 1) (1 for a
 * one-layer slice), 0 outside the layers.
 */
import { WgitError } from '../errors.js';
import type { ModelSource, ModelTensor } from '../safetensors/index.js';
import { BLOCK_PATTERN, blockIndex, countBlocks } from './lines.js';

export interface SliceSource {
  /** Index into the opened models. */
  model: number;
  /** [a, b): layers a … b − 1. */
  layers: [number, number];
}

export interface SliceDef {
  sources: SliceSource[];
}

export interface SlicedInputs {
  /** One virtual model per source position. */
  inputs: ModelSource[];
  /** Gradient position t of every output tensor. */
  positions: Map<string, number>;
  /** Layers of the output. */
  layers: number;
}

const PRE = /(?:^|\.)(?:embed|embed_tokens|wte|wpe|word_embeddings)(?:\.|$)|embed/;

function bad(message: string, data: Record<string, unknown> = {}): WgitError {
  return new WgitError('E_BAD_PARAM', message, data);
}

/** The name with its layer number replaced by k. */
export function renumber(name: string, k: number): string {
  return name.replace(BLOCK_PATTERN, (m, n: string) => m.replace(`.${n}.`, `.${k}.`));
}

const LAYER_KEYS = ['num_hidden_layers', 'n_layer', 'num_layers'];

/** config.json with its layer count set to `layers` (other files as they are). */
function patchConfig(bytes: Uint8Array, layers: number): Uint8Array {
  let cfg: Record<string, unknown>;
  try {
    cfg = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return bytes;
  }
  if (typeof cfg !== 'object' || cfg === null) return bytes;
  let changed = false;
  for (const k of LAYER_KEYS)
    if (typeof cfg[k] === 'number') {
      cfg[k] = layers;
      changed = true;
    }
  return changed ? new TextEncoder().encode(`${JSON.stringify(cfg, null, 2)}\n`) : bytes;
}

/** The virtual models a sliced merge runs on. */
export function slicedInputs(models: ModelSource[], slices: SliceDef[]): SlicedInputs {
  if (slices.length === 0) throw bad('slices: none given', { param: 'slices' });
  const width = slices[0].sources.length;
  for (const [s, sl] of slices.entries()) {
    if (sl.sources.length !== width)
      throw bad(`slices[${s}] has ${sl.sources.length} sources; every slice must have ${width}, as slices[0]`, {
        param: 'slices',
      });
    const len = sl.sources[0].layers[1] - sl.sources[0].layers[0];
    for (const [i, src] of sl.sources.entries()) {
      const [a, b] = src.layers;
      const m = models[src.model];
      const total = countBlocks(m.tensors.map((t) => t.name));
      if (!(Number.isInteger(a) && Number.isInteger(b) && a >= 0 && b > a && b <= total))
        throw bad(`slices[${s}].sources[${i}]: layer_range [${a}, ${b}] is outside the model's ${total} layers`, {
          param: 'slices',
        });
      if (b - a !== len)
        throw bad(`slices[${s}]: every source must have the same number of layers (${len})`, { param: 'slices' });
    }
  }
  const positions = new Map<string, number>();
  let total = 0;
  for (const sl of slices) total += sl.sources[0].layers[1] - sl.sources[0].layers[0];
  const inputs = Array.from({ length: width }, (_, i) => {
    const map = new Map<string, { model: ModelSource; name: string; t: ModelTensor }>();
    const order: ModelTensor[] = [];
    const add = (model: ModelSource, t: ModelTensor, name: string, pos: number) => {
      map.set(name, { model, name: t.name, t });
      order.push({ ...t, name });
      positions.set(name, pos);
    };
    const first = models[slices[0].sources[i].model];
    for (const t of first.tensors) if (blockIndex(t.name) === null && PRE.test(t.name)) add(first, t, t.name, 0);
    let k = 0;
    for (const sl of slices) {
      const src = sl.sources[i];
      const m = models[src.model];
      const [a, b] = src.layers;
      for (let o = 0; o < b - a; o++, k++) {
        const pos = b - a > 1 ? o / (b - a - 1) : 1;
        for (const t of m.tensors) if (blockIndex(t.name) === a + o) add(m, t, renumber(t.name, k), pos);
      }
    }
    const last = models[slices[slices.length - 1].sources[i].model];
    for (const t of last.tensors) if (blockIndex(t.name) === null && !PRE.test(t.name)) add(last, t, t.name, 0);
    const get = (name: string) => {
      const e = map.get(name);
      if (!e) throw new WgitError('E_TENSOR_NOT_FOUND', `no tensor ${name} in the sliced model`, { tensor: name });
      return e;
    };
    const source: ModelSource = {
      root: first.root,
      kind: first.kind,
      tensors: order,
      tensor: (name) => ({ ...get(name).t, name }),
      sideFiles: first.sideFiles,
      readSideFile: async (rel) => {
        const bytes = await first.readSideFile(rel);
        return rel === 'config.json' ? patchConfig(bytes, total) : bytes;
      },
      metadata: first.metadata,
      readTensor: (name, into) => {
        const e = get(name);
        return e.model.readTensor(e.name, into);
      },
      close: async () => {},
    };
    return source;
  });
  return { inputs, positions, layers: total };
}
