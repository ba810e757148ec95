/**
 * Whose side files a derived model gets. A transfer moves a fine-tune onto a
 * new base release: the architecture files (config.json) describe the new
 * base, but the tokenizer, chat template and generation settings are what
 * the fine-tune was trained with. `mixSideFiles` builds the side-file source
 * a sink copies from; `TOKENIZER_FILES` names the files that follow the
 * fine-tune.
 */
import type { ModelSource } from '../safetensors/index.js';
import type { SideFileSource } from './sink.js';

/** Files that belong to the tokenizer and generation (Hugging Face names), by base name. */
const TOKENIZER_NAMES = new Set([
  'tokenizer.json',
  'tokenizer_config.json',
  'tokenizer.model',
  'special_tokens_map.json',
  'added_tokens.json',
  'vocab.json',
  'vocab.txt',
  'merges.txt',
  'spiece.model',
  'sentencepiece.bpe.model',
  'generation_config.json',
  'chat_template.json',
  'chat_template.jinja',
]);

/** True for a tokenizer, chat-template or generation file (anywhere in the folder). */
export function isTokenizerFile(rel: string): boolean {
  return TOKENIZER_NAMES.has(rel.split('/').pop() ?? rel);
}

/** Which model each side file of the output comes from. */
export interface SideFilePlan {
  source: SideFileSource;
  /** File → the index of the model (in the list given) it is taken from. */
  from: Map<string, number>;
}

/**
 * The output's side files: every file `pick(rel)` assigns to model i comes
 * from it; a file is listed once, from the first model that holds it among
 * those `pick` prefers (in order), falling back to `primary`.
 */
export function mixSideFiles(
  models: readonly Pick<ModelSource, 'sideFiles' | 'readSideFile'>[],
  prefer: (rel: string) => number[],
  primary = 0,
): SideFilePlan {
  const from = new Map<string, number>();
  const all = new Set(models.flatMap((m) => m.sideFiles));
  for (const rel of [...all].sort()) {
    const order = [...prefer(rel), primary];
    const i = order.find((k) => models[k]?.sideFiles.includes(rel));
    if (i !== undefined) from.set(rel, i);
  }
  return {
    from,
    source: {
      sideFiles: [...from.keys()],
      readSideFile: (rel: string) => {
        const i = from.get(rel);
        if (i === undefined) throw new Error(`no side file ${rel}`);
        return models[i].readSideFile(rel);
      },
    },
  };
}

/**
 * A transfer's default: the fine-tune's tokenizer, chat template and
 * generation files, everything else (config.json …) from the new base.
 * Models: [onto, ft]. A tokenizer file only the new base has is kept.
 */
export function transferSideFiles(
  onto: Pick<ModelSource, 'sideFiles' | 'readSideFile'>,
  ft: Pick<ModelSource, 'sideFiles' | 'readSideFile'>,
): SideFilePlan {
  return mixSideFiles([onto, ft], (rel) => (isTokenizerFile(rel) ? [1] : []), 0);
}
