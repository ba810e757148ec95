import type { Rng } from './rng.js';

/**
 * A plain multi-layer perceptron with ReLU between layers, laid out like a
 * PyTorch model (`weight` is [out, in], row-major) and named like a
 * transformer stack (`layers.<i>.weight`, …, `head.weight`), so LiNeS and
 * the other block-aware methods find its blocks by name.
 */
export interface Param {
  name: string;
  shape: number[];
  data: Float32Array;
}

export interface Mlp {
  /** Layer widths, input first: [64, 64, 64, 64, 10] is three hidden blocks and a head. */
  dims: number[];
  /** weight then bias for each layer, layers in order, head last. */
  params: Param[];
}

export function layerName(i: number, layers: number): string {
  return i === layers - 1 ? 'head' : `layers.${i}`;
}

export function mlpSpecs(dims: number[]): { name: string; shape: number[] }[] {
  const L = dims.length - 1;
  const specs: { name: string; shape: number[] }[] = [];
  for (let i = 0; i < L; i++) {
    specs.push({ name: `${layerName(i, L)}.weight`, shape: [dims[i + 1], dims[i]] });
    specs.push({ name: `${layerName(i, L)}.bias`, shape: [dims[i + 1]] });
  }
  return specs;
}

/** He-normal weights, zero biases. */
export function initMlp(dims: number[], rng: Rng): Mlp {
  const params = mlpSpecs(dims).map(({ name, shape }) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    if (shape.length === 2) {
      const std = Math.sqrt(2 / shape[1]);
      for (let k = 0; k < n; k++) data[k] = rng.normal() * std;
    }
    return { name, shape, data };
  });
  return { dims: [...dims], params };
}

export function cloneMlp(m: Mlp): Mlp {
  return {
    dims: [...m.dims],
    params: m.params.map((p) => ({ name: p.name, shape: [...p.shape], data: p.data.slice() })),
  };
}

/** Rebuilds a model from named tensors (f32 values), checking every shape against `dims`. */
export function mlpFromTensors(dims: number[], get: (name: string) => Float32Array | undefined): Mlp {
  const params = mlpSpecs(dims).map(({ name, shape }) => {
    const data = get(name);
    const n = shape.reduce((a, b) => a * b, 1);
    if (!data || data.length !== n) throw new RangeError(`tensor ${name}: expected ${n} values`);
    return { name, shape, data };
  });
  return { dims: [...dims], params };
}

/**
 * Forward pass for one sample; fills `acts[l]` with the post-activation of
 * layer l (logits for the head) and `active[l]` / `nActive[l]` with the indices
 * of the non-zero inputs of layer l. Digits are about half blank pixels and
 * ReLU zeroes about half the units, so looping over non-zero inputs only
 * roughly halves the work of both passes.
 */
function forward(
  m: Mlp,
  x: Float32Array,
  xOff: number,
  acts: Float64Array[],
  active: Uint16Array[],
  nActive: Int32Array,
): void {
  const L = m.dims.length - 1;
  for (let l = 0; l < L; l++) {
    const W = m.params[2 * l].data;
    const b = m.params[2 * l + 1].data;
    const nin = m.dims[l];
    const nout = m.dims[l + 1];
    const out = acts[l];
    const idx = active[l];
    let na = 0;
    if (l === 0) {
      for (let i = 0; i < nin; i++) if (x[xOff + i] !== 0) idx[na++] = i;
    } else {
      const inp = acts[l - 1];
      for (let i = 0; i < nin; i++) if (inp[i] !== 0) idx[na++] = i;
    }
    nActive[l] = na;
    const inp = l === 0 ? null : acts[l - 1];
    for (let o = 0; o < nout; o++) {
      let s = b[o];
      const row = o * nin;
      if (inp === null) {
        for (let k = 0; k < na; k++) {
          const i = idx[k];
          s += W[row + i] * x[xOff + i];
        }
      } else {
        for (let k = 0; k < na; k++) {
          const i = idx[k];
          s += W[row + i] * inp[i];
        }
      }
      out[o] = l < L - 1 && s < 0 ? 0 : s;
    }
  }
}

function allocActs(dims: number[]): Float64Array[] {
  return dims.slice(1).map((d) => new Float64Array(d));
}

function allocActive(dims: number[]): Uint16Array[] {
  return dims.slice(0, -1).map((d) => new Uint16Array(d));
}

function argmax(a: Float64Array): number {
  let best = 0;
  for (let i = 1; i < a.length; i++) if (a[i] > a[best]) best = i;
  return best;
}

/** Fraction of rows of `x` (n × dims[0]) classified as `y`. */
export function accuracy(m: Mlp, x: Float32Array, y: Uint8Array): number {
  const acts = allocActs(m.dims);
  const active = allocActive(m.dims);
  const nActive = new Int32Array(m.dims.length);
  const nin = m.dims[0];
  const L = m.dims.length - 1;
  let right = 0;
  for (let s = 0; s < y.length; s++) {
    forward(m, x, s * nin, acts, active, nActive);
    if (argmax(acts[L - 1]) === y[s]) right++;
  }
  return right / y.length;
}

export interface TrainOptions {
  epochs: number;
  lr: number;
  batch: number;
  rng: Rng;
  /** Parameters left unchanged (e.g. a shared classification head during fine-tuning). */
  frozen?: ReadonlySet<string>;
}

/** Mini-batch Adam on softmax cross-entropy; updates `m` in place. */
export function train(m: Mlp, x: Float32Array, y: Uint8Array, opts: TrainOptions): void {
  const { dims, params } = m;
  const L = dims.length - 1;
  const nin = dims[0];
  const n = y.length;
  const grads = params.map((p) => new Float64Array(p.data.length));
  const m1 = params.map((p) => new Float64Array(p.data.length));
  const m2 = params.map((p) => new Float64Array(p.data.length));
  const acts = allocActs(dims);
  const deltas = allocActs(dims);
  const active = allocActive(dims);
  const nActive = new Int32Array(dims.length);
  const order = new Uint32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  const b1 = 0.9;
  const b2 = 0.999;
  const eps = 1e-8;
  let step = 0;
  for (let epoch = 0; epoch < opts.epochs; epoch++) {
    opts.rng.shuffle(order);
    for (let start = 0; start < n; start += opts.batch) {
      const end = Math.min(n, start + opts.batch);
      for (const g of grads) g.fill(0);
      for (let k = start; k < end; k++) {
        const s = order[k];
        forward(m, x, s * nin, acts, active, nActive);
        // softmax cross-entropy gradient on the logits
        const logits = acts[L - 1];
        const dOut = deltas[L - 1];
        let mx = -Infinity;
        for (let c = 0; c < logits.length; c++) mx = Math.max(mx, logits[c]);
        let z = 0;
        for (let c = 0; c < logits.length; c++) {
          dOut[c] = Math.exp(logits[c] - mx);
          z += dOut[c];
        }
        for (let c = 0; c < logits.length; c++) dOut[c] = dOut[c] / z - (c === y[s] ? 1 : 0);
        for (let l = L - 1; l >= 0; l--) {
          const W = params[2 * l].data;
          const gW = grads[2 * l];
          const gb = grads[2 * l + 1];
          const d = deltas[l];
          const li = dims[l];
          const lo = dims[l + 1];
          const idx = active[l];
          const na = nActive[l];
          const inp = l === 0 ? null : acts[l - 1];
          for (let o = 0; o < lo; o++) {
            const dv = d[o];
            if (dv === 0) continue;
            gb[o] += dv;
            const row = o * li;
            if (inp === null) {
              for (let k = 0; k < na; k++) {
                const i = idx[k];
                gW[row + i] += dv * x[s * nin + i];
              }
            } else {
              for (let k = 0; k < na; k++) {
                const i = idx[k];
                gW[row + i] += dv * inp[i];
              }
            }
          }
          if (l > 0) {
            // only active units pass gradient back through the ReLU
            const dPrev = deltas[l - 1];
            dPrev.fill(0);
            for (let o = 0; o < lo; o++) {
              const dv = d[o];
              if (dv === 0) continue;
              const row = o * li;
              for (let k = 0; k < na; k++) {
                const i = idx[k];
                dPrev[i] += dv * W[row + i];
              }
            }
          }
        }
      }
      step++;
      const scale = 1 / (end - start);
      const c1 = 1 - b1 ** step;
      const c2 = 1 - b2 ** step;
      for (let p = 0; p < params.length; p++) {
        if (opts.frozen?.has(params[p].name)) continue;
        const w = params[p].data;
        const g = grads[p];
        const a = m1[p];
        const v = m2[p];
        for (let i = 0; i < w.length; i++) {
          const gi = g[i] * scale;
          a[i] = b1 * a[i] + (1 - b1) * gi;
          v[i] = b2 * v[i] + (1 - b2) * gi * gi;
          w[i] -= (opts.lr * (a[i] / c1)) / (Math.sqrt(v[i] / c2) + eps);
        }
      }
    }
  }
}
