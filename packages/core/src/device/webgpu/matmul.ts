/**
 * matmul on the GPU: out[m×n] = A'·B' with A' = A or Aᵀ and B' = B or Bᵀ,
 * row-major f32, accumulated in f32 in 16-element tiles (the KernelSet
 * contract: equal to the reference to rounding, not bit for bit).
 *
 * Host glue, stated: the shader reads A' as m rows of k and B' as n rows of k
 * (both contiguous along k), so A is transposed on the host when transA is
 * set and B when transB is not — O(mk + kn) copies against the O(mkn)
 * product. The output is computed in blocks of
 * rows × columns whose operands each fit the slice size (the device's binding
 * limit), so any shape runs; each block's result maps back once.
 */
import type { GpuRuntime } from './runtime.js';

const TILE = 16;

const MATMUL_WGSL = /* wgsl */ `
struct P { m: u32, n: u32, k: u32, pad: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> A: array<f32>;
@group(0) @binding(2) var<storage, read> B: array<f32>;
@group(0) @binding(3) var<storage, read_write> O: array<f32>;
var<workgroup> ta: array<array<f32, ${TILE}>, ${TILE}>;
var<workgroup> tb: array<array<f32, ${TILE}>, ${TILE}>;

@compute @workgroup_size(${TILE}, ${TILE})
fn main(@builtin(local_invocation_id) l: vec3<u32>, @builtin(workgroup_id) w: vec3<u32>) {
  let row = w.y * ${TILE}u + l.y;
  let col = w.x * ${TILE}u + l.x;
  let bcol = w.x * ${TILE}u + l.y;
  var acc = 0.0;
  let tiles = (p.k + ${TILE - 1}u) / ${TILE}u;
  for (var t = 0u; t < tiles; t = t + 1u) {
    let ka = t * ${TILE}u + l.x;
    var va = 0.0;
    if (row < p.m && ka < p.k) { va = A[row * p.k + ka]; }
    ta[l.y][l.x] = va;
    var vb = 0.0;
    if (bcol < p.n && ka < p.k) { vb = B[bcol * p.k + ka]; }
    tb[l.y][l.x] = vb;
    workgroupBarrier();
    for (var q = 0u; q < ${TILE}u; q = q + 1u) { acc = acc + ta[l.y][q] * tb[l.x][q]; }
    workgroupBarrier();
  }
  if (row < p.m && col < p.n) { O[row * p.n + col] = acc; }
}
`;

/** rows×cols row-major → cols×rows row-major. */
function transpose(x: Float32Array, rows: number, cols: number): Float32Array {
  const t = new Float32Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) t[j * rows + i] = x[i * cols + j];
  return t;
}

export async function gpuMatmul(
  rt: GpuRuntime,
  a: Float32Array,
  b: Float32Array,
  out: Float32Array,
  m: number,
  k: number,
  n: number,
  transA: boolean,
  transB: boolean,
): Promise<void> {
  if (m === 0 || n === 0) return;
  if (k === 0) {
    out.fill(0);
    return;
  }
  const A = transA ? transpose(a, k, m) : a; // m rows of k
  const Bt = transB ? b : transpose(b, k, n); // n rows of k
  // Each operand block and the output block stay within one slice (the binding limit).
  const cap = rt.slice;
  const rowsPer = Math.max(1, Math.min(m, Math.floor(cap / k)));
  const colsPer = Math.max(1, Math.min(n, Math.floor(cap / k), Math.floor(cap / rowsPer)));
  const pipeline = await rt.pipeline(MATMUL_WGSL);
  const d = rt.device;
  const S = GPUBufferUsage.STORAGE;
  const uniform = rt.buffer(16, GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST);
  const aBuf = rt.buffer(rowsPer * k * 4, S | GPUBufferUsage.COPY_DST);
  const bBuf = rt.buffer(colsPer * k * 4, S | GPUBufferUsage.COPY_DST);
  const oBuf = rt.buffer(rowsPer * colsPer * 4, S | GPUBufferUsage.COPY_SRC);
  const readback = rt.buffer(rowsPer * colsPer * 4, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST);
  try {
    for (let c0 = 0; c0 < n; c0 += colsPer) {
      const cb = Math.min(colsPer, n - c0);
      d.queue.writeBuffer(bBuf, 0, Bt, c0 * k, cb * k);
      for (let r0 = 0; r0 < m; r0 += rowsPer) {
        const rb = Math.min(rowsPer, m - r0);
        d.queue.writeBuffer(aBuf, 0, A, r0 * k, rb * k);
        d.queue.writeBuffer(uniform, 0, new Uint32Array([rb, cb, k, 0]));
        const bind = d.createBindGroup({
          layout: pipeline.getBindGroupLayout(0),
          entries: [uniform, aBuf, bBuf, oBuf].map((buffer, binding) => ({ binding, resource: { buffer } })),
        });
        const enc = d.createCommandEncoder();
        const cp = enc.beginComputePass();
        cp.setPipeline(pipeline);
        cp.setBindGroup(0, bind);
        cp.dispatchWorkgroups(Math.ceil(cb / TILE), Math.ceil(rb / TILE));
        cp.end();
        enc.copyBufferToBuffer(oBuf, 0, readback, 0, rb * cb * 4);
        d.queue.submit([enc.finish()]);
        await readback.mapAsync(GPUMapMode.READ, 0, rb * cb * 4);
        const got = new Float32Array(readback.getMappedRange(0, rb * cb * 4));
        for (let i = 0; i < rb; i++) out.set(got.subarray(i * cb, (i + 1) * cb), (r0 + i) * n + c0);
        readback.unmap();
      }
    }
  } finally {
    for (const buf of [uniform, aBuf, bBuf, oBuf, readback]) buf.destroy();
  }
}
