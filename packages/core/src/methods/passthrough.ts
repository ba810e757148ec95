/**
 * passthrough: the one input's tensor, times its `scale` when given
 * (mergekit's passthrough). With `slices` (see slices.ts) it stacks layer
 * ranges of several models into a deeper model.
 */
import { defineMethod, seedParam } from './params.js';
import type { MergeMethod } from './types.js';

const fr = Math.fround;

export const passthrough: MergeMethod = defineMethod({
  name: 'passthrough',
  description: "copies the input's tensors (times scale); with slices, stacks layer ranges of several models",
  reference: "mergekit's passthrough (frankenmerges)",
  params: [
    {
      name: 'scale',
      type: 'number',
      scope: 'per-model',
      broadcast: true,
      perTensor: true,
      default: 1,
      required: false,
      help: 'factor on the tensor (mergekit: none, the tensor as it is)',
      cli: { flag: 'scale', description: 'passthrough: factor on the tensors (filters and gradients allowed)' },
      mergekit: { key: 'scale', default: 1 },
    },
    seedParam({ help: 'recorded in the recipe; passthrough draws nothing at random' }),
  ],
  needsBase: false,
  minInputs: 1,
  maxInputs: 1,
  mergekitName: 'passthrough',
  build(tp) {
    const s = fr(((tp.extra?.scale ?? [1]) as number[])[0]);
    return (inputs, _base, _ctx, out) => {
      const x = inputs[0];
      if (s === 1) out.set(x);
      else for (let j = 0; j < out.length; j++) out[j] = fr(s * x[j]);
    };
  },
  async fast({ device, params }, raw, dtype, outDtype, outBytes) {
    const s = fr(((params.extra?.scale ?? [1]) as number[])[0]);
    if (s === 1 && dtype === outDtype) outBytes.set(raw[0]);
    else await device.weightedSumTyped([raw[0]], dtype, [s], outDtype, outBytes);
    return true;
  },
});
