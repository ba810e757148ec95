/**
 * Stored size and error of the objects that change a model, against a dense
 * f32 diff vector of the same pair, on synthetic bf16 models of ~51 M
 * parameters (~102 MB each; WGIT_BENCH_SCALE=0.25 for a quick run):
 *   - sparse delta, --exact, of a fine-tune that changed 5 % of the entries;
 *   - sparse delta, --density 0.1, of a fine-tune that moved every entry;
 *   - robust weight signature, 8 and 4 bits (and f32), of a robust model
 *     against the dense fine-tune as the clean model, first half of the blocks.
 * Each object is made by the CLI (`--json`) in one repository holding the
 * models; stored bytes are the commit's `storedBytes`.
 *
 *   npx tsc -b packages/cli   (the CLI runs from its build)
 *   node --conditions=wgit-source --import tsx test/bench/objects-size.bench.ts
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ModelWriter, type TensorSpec } from '../../packages/core/src/index.js';
import { Repository } from '../../packages/store/src/index.js';
import { bf16, bf16ToF32, bytesOf, machineLine, normalBf16, Rng, table } from './fixtures/synthetic.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const work = path.join(root, '.bench', 'objects-size');
const cli = path.join(root, 'packages', 'cli', 'bin', 'run.js');
const SCALE = Number(process.env.WGIT_BENCH_SCALE ?? 1);

/** A small Llama-shaped model: embeddings and 4 blocks (~51 M parameters at scale 1). */
function specs(): TensorSpec[] {
  const h = Math.round(1024 * Math.sqrt(SCALE));
  const inter = Math.round(2816 * Math.sqrt(SCALE));
  const s: TensorSpec[] = [{ name: 'model.embed_tokens.weight', dtype: 'BF16', shape: [8000, h] }];
  for (let l = 0; l < 4; l++) {
    const p = `model.layers.${l}.`;
    s.push({ name: `${p}input_layernorm.weight`, dtype: 'BF16', shape: [h] });
    s.push({ name: `${p}mlp.down_proj.weight`, dtype: 'BF16', shape: [h, inter] });
    s.push({ name: `${p}mlp.gate_proj.weight`, dtype: 'BF16', shape: [inter, h] });
    s.push({ name: `${p}mlp.up_proj.weight`, dtype: 'BF16', shape: [inter, h] });
    s.push({ name: `${p}self_attn.o_proj.weight`, dtype: 'BF16', shape: [h, h] });
    s.push({ name: `${p}self_attn.q_proj.weight`, dtype: 'BF16', shape: [h, h] });
  }
  s.push({ name: 'model.norm.weight', dtype: 'BF16', shape: [h] });
  return s;
}

const numel = (shape: number[]) => shape.reduce((a, b) => a * b, 1);
type Weights = Map<string, Uint16Array>;

/** Writes a model whose tensor t is make(t.name, n); returns the weights. */
async function writeModel(dir: string, make: (name: string, n: number) => Uint16Array): Promise<Weights> {
  const sp = specs();
  const w = await ModelWriter.create(dir, sp, { metadata: { format: 'pt' } });
  const out: Weights = new Map();
  for (const t of sp) {
    const v = make(t.name, numel(t.shape));
    out.set(t.name, v);
    await w.write(t.name, bytesOf(v));
  }
  await w.finish();
  fs.writeFileSync(path.join(dir, 'config.json'), '{"model_type": "llama"}\n');
  return out;
}

function wgit(...args: string[]): any {
  const t = performance.now();
  const p = spawnSync(process.execPath, [cli, ...args, '--json'], {
    cwd: path.join(work, 'repo'),
    encoding: 'utf8',
    maxBuffer: 1 << 28,
  });
  if (p.status !== 0) throw new Error(`wgit ${args.join(' ')}: ${p.stdout}${p.stderr}`);
  const json = JSON.parse(p.stdout);
  json.seconds = (performance.now() - t) / 1000;
  return json;
}

const MB = (x: number) => x / 1e6;

async function main(): Promise<void> {
  console.log(machineLine());
  fs.rmSync(work, { recursive: true, force: true });
  fs.mkdirSync(work, { recursive: true });
  const repo = await Repository.init(path.join(work, 'repo'));
  const rng = new Rng(7);
  const init = await writeModel(path.join(work, 'init'), (_, n) => normalBf16(n, 0.02, rng));
  const moved = (b: Uint16Array, share: number, sigma: number) =>
    b.map((x) => (share >= 1 || rng.uniform() < share ? bf16(bf16ToF32(x) + sigma * rng.normal()) : x));
  await writeModel(path.join(work, 'ft-sparse'), (name) => moved(init.get(name) as Uint16Array, 0.05, 0.002));
  const clean = await writeModel(path.join(work, 'clean'), (name) => moved(init.get(name) as Uint16Array, 1, 0.002));
  await writeModel(path.join(work, 'robust'), (name) => {
    const i = init.get(name) as Uint16Array;
    const c = clean.get(name) as Uint16Array;
    return i.map((x, j) => bf16(bf16ToF32(x) + 0.5 * (bf16ToF32(c[j]) - bf16ToF32(x)) + 0.002 * rng.normal()));
  });
  for (const m of ['init', 'ft-sparse', 'clean', 'robust']) {
    await repo.commit({ path: path.join(work, m), branch: m, message: m });
    fs.rmSync(path.join(work, m), { recursive: true, force: true });
  }
  const params = specs().reduce((a, t) => a + numel(t.shape), 0);
  console.log(`models: ${(params / 1e6).toFixed(1)} M parameters, ${MB(2 * params).toFixed(1)} MB each in bf16`);

  const dvSparse = wgit('diff', 'init', 'ft-sparse', '--save', 'dv-sparse').saved.storedBytes;
  const dvDense = wgit('diff', 'init', 'clean', '--save', 'dv-dense').saved.storedBytes;
  const dvRobust = wgit('diff', 'init', 'robust', '--save', 'dv-robust').saved.storedBytes;
  const rows: (string | number)[][] = [
    ['object', 'raw MB', 'stored MB', 'f32 diff MB', 'diff / object', 'full copy / object', 'rel. error', 's'],
  ];
  const full = 2 * params;
  const row = (label: string, r: any, dv: number) =>
    rows.push([
      label,
      MB(r.objectBytes),
      MB(r.storedBytes),
      MB(dv),
      dv / r.storedBytes,
      full / r.storedBytes,
      r.relError.toExponential(2),
      r.seconds,
    ]);
  row('sparse --exact (5 % changed)', wgit('sparsify', 'ft-sparse', '--base', 'init', '--exact'), dvSparse);
  row('sparse --density 0.1 (all moved)', wgit('sparsify', 'clean', '--base', 'init', '--density', '0.1'), dvDense);
  for (const bits of ['32', '8', '4'])
    row(
      `rws --bits ${bits} (2 of 4 blocks)`,
      wgit('rws', 'extract', 'robust', '--clean', 'clean', '--init', 'init', '--bits', bits),
      dvRobust,
    );
  console.log(table(rows));
  console.log(
    'raw: the stored tensors before compression; f32 diff: `wgit diff init FT --save` of the same pair, stored;' +
      ' full copy: the model in bf16, uncompressed; rel. error: ‖Δ − Δ̂‖/‖Δ‖ (sparse), ‖RWS − Q(RWS)‖/‖RWS‖ (rws).',
  );
  fs.rmSync(work, { recursive: true, force: true });
}

await main();
