/**
 * Magnitude selection and TIES on the GPU. absHistogram counts with atomic
 * bins per slice; the host adds each slice's counts into the caller's
 * histogram (u32, wrapping as the reference's `++` does). kthLargestAbs is
 * the two-pass radix selection of abs-selector.ts with both passes on the
 * GPU and the bin choice on the host (a walk over 65,536 counts). TIES with
 * tie quotas first counts each 256-element group's ties per input on the
 * GPU; the host turns the counts into each group's starting rank (a prefix
 * sum in group order) and the TIES shader ranks within the group.
 */
import { HIST_BINS } from '../device.js';
import { type GpuRuntime, sliced, uniforms } from './runtime.js';
import { WG } from './shaders/common.js';
import { HIST_WGSL, tieCountShader, tiesShader } from './shaders/select.js';

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
const bits = (x: number) => {
  f32[0] = x;
  return u32[0];
};

async function histogram(rt: GpuRuntime, x: Float32Array, pass: 0 | 1, prefixHi: number, hist: Uint32Array) {
  if (x.length === 0) return;
  const pipeline = await rt.pipeline(HIST_WGSL);
  await rt.stream({
    n: x.length,
    inputs: [sliced(x, 4, rt.slice)],
    outputs: [
      {
        bytes: () => HIST_BINS * 4,
        clear: true,
        take: (_s, _l, data) => {
          const c = new Uint32Array(data.buffer, data.byteOffset, HIST_BINS);
          for (let i = 0; i < HIST_BINS; i++) if (c[i]) hist[i] += c[i];
        },
      },
    ],
    passes: [{ pipeline, groups: (len) => Math.ceil(len / (2 * WG)), inputs: [0], outputs: [0] }],
    uniforms: (_s, len) => uniforms(len, [], [pass, prefixHi]),
  });
}

/** Exact k-th largest |x| over the arrays: both histogram passes on the GPU, the bin walk on the host. */
async function kth(rt: GpuRuntime, arrays: Float32Array[], k: number): Promise<number> {
  const hi = new Uint32Array(HIST_BINS);
  for (const a of arrays) await histogram(rt, a, 0, 0, hi);
  let seen = 0;
  let count = 0;
  for (let b = 0; b < HIST_BINS; b++) count += hi[b];
  if (k > count) return 0;
  let prefix = -1;
  for (let b = HIST_BINS - 1; b >= 0; b--) {
    if (seen + hi[b] >= k) {
      prefix = b;
      break;
    }
    seen += hi[b];
  }
  const remaining = k - seen;
  const lo = new Uint32Array(HIST_BINS);
  for (const a of arrays) await histogram(rt, a, 1, prefix, lo);
  let acc = 0;
  for (let b = (1 << 15) - 1; b >= 0; b--) {
    acc += lo[b];
    if (acc >= remaining) {
      u32[0] = ((prefix << 15) | b) >>> 0;
      return f32[0];
    }
  }
  throw new Error('unreachable: pass 1 histogram is short');
}

export const kthFromHistograms = { histogram, kth };

/** TIES (reference.ts `ties`), quotas ranked over the whole call. */
export async function runTies(
  rt: GpuRuntime,
  taus: Float32Array[],
  weights: number[],
  thresholds: number[],
  out: Float32Array,
  tieQuotas?: number[],
): Promise<void> {
  const n = out.length;
  const k = taus.length;
  if (n === 0) return;
  const thr = new Uint32Array(16);
  thresholds.forEach((t, i) => {
    thr[i] = bits(t);
  });
  const quotas = taus.map((_t, i) => tieQuotas?.[i] ?? -1);
  quotas.forEach((q, i) => {
    thr[8 + i] = q >>> 0;
  });
  const useQuotas = quotas.some((q) => q >= 0);
  const thrInput = { data: () => new Uint8Array(thr.buffer), maxBytes: 64 };
  const groups = Math.ceil(n / WG);
  const base = new Uint32Array(groups * k);
  if (useQuotas) {
    const pipeline = await rt.pipeline(tieCountShader(k));
    const counts = new Uint32Array(groups * k);
    await rt.stream({
      n,
      inputs: [...taus.map((t) => sliced(t, 4, rt.slice)), thrInput],
      outputs: [
        {
          bytes: (len) => Math.ceil(len / WG) * k * 4,
          clear: true,
          take: (start, len, data) =>
            counts.set(new Uint32Array(data.buffer, data.byteOffset, Math.ceil(len / WG) * k), (start / WG) * k),
        },
      ],
      passes: [
        { pipeline, groups: (len) => Math.ceil(len / WG), inputs: taus.map((_t, i) => i).concat(k), outputs: [0] },
      ],
      uniforms: (_s, len) => uniforms(len),
    });
    // host glue: the ties before each group, per input, in group order
    const run = new Array<number>(k).fill(0);
    for (let g = 0; g < groups; g++) {
      for (let i = 0; i < k; i++) {
        base[g * k + i] = Math.min(run[i], 0xffffffff);
        run[i] += counts[g * k + i];
      }
    }
  }
  const pipeline = await rt.pipeline(tiesShader(k));
  const dst = new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
  const groupsPerSlice = rt.slice / WG;
  await rt.stream({
    n,
    inputs: [
      ...taus.map((t) => sliced(t, 4, rt.slice)),
      thrInput,
      {
        data: (start, len) => new Uint8Array(base.buffer, (start / WG) * k * 4, Math.ceil(len / WG) * k * 4),
        maxBytes: Math.min(groupsPerSlice, groups) * k * 4,
      },
    ],
    outputs: [{ bytes: (len) => len * 4, take: (start, len, data) => dst.set(data.subarray(0, len * 4), start * 4) }],
    passes: [
      {
        pipeline,
        groups: (len) => Math.ceil(len / WG),
        inputs: [...taus.map((_t, i) => i), k, k + 1],
        outputs: [0],
      },
    ],
    uniforms: (_s, len) => uniforms(len, weights, [0, 0, useQuotas ? 1 : 0]),
  });
}
