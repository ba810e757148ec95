/**
 * Where a tensor sits in a transformer, from its name alone: the block it
 * belongs to (as LiNeS finds it) and what kind of weight it is. Used to
 * group a diff per layer and per kind.
 */
import { blockIndex } from '../methods/lines.js';

export type TensorKind = 'attention' | 'mlp' | 'norm' | 'embedding' | 'other';

export const TENSOR_KINDS: readonly TensorKind[] = ['attention', 'mlp', 'norm', 'embedding', 'other'];

// Checked in this order: a layer-norm inside an attention block is a norm.
const KIND_PATTERNS: [TensorKind, RegExp][] = [
  ['norm', /(?:^|[._])(?:[a-z_]*norm[a-z_0-9]*|ln_?\d*|ln_f|layernorm)(?:[._]|$)/i],
  ['embedding', /(?:^|[._])(?:embed[a-z_]*|wte|wpe|lm_head|embeddings?|tok_embeddings|output)(?:[._]|$)/i],
  [
    'attention',
    /(?:^|[._])(?:self_attn|attn|attention|[qkvo]_proj|qkv(?:_proj)?|c_attn|query|key|value|wq|wk|wv|wo)(?:[._]|$)/i,
  ],
  [
    'mlp',
    /(?:^|[._])(?:mlp|ffn|feed_forward|gate_proj|up_proj|down_proj|fc\d*|c_fc|c_proj|w[123]|dense_h_to_4h|dense_4h_to_h)(?:[._]|$)/i,
  ],
];

/** The kind of weight a tensor name stands for. */
export function tensorKind(name: string): TensorKind {
  for (const [kind, re] of KIND_PATTERNS) if (re.test(name)) return kind;
  return 'other';
}

/** The transformer block of a tensor, or null outside the blocks (embeddings, final norm, head). */
export function layerOf(name: string): number | null {
  return blockIndex(name);
}
