// mergekit's published slerp and passthrough examples run unchanged:
// examples/gradient-slerp.yml (one slice of two full 40-layer models, t by
// filter and gradient) and examples/orcamini-platy-44layer.yml (a 44-layer
// frankenmerge of layers 0–23 of one model and 20–39 of another).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { toF32 } from '../../packages/core/src/index.js';
import { Repository } from '../../packages/store/src/index.js';
import { buildSafetensors, type RawTensor } from '../../packages/store/test/helpers.js';

process.env.WGIT_AUTHOR_DATE = '1700000000';
const ROOT = path.resolve(import.meta.dirname, '..', '..');
const BIN = path.join(ROOT, 'packages', 'cli', 'bin', 'run.js');

const GRADIENT_SLERP = `slices:
  - sources:
      - model: psmathur/orca_mini_v3_13b
        layer_range: [0, 40]
      - model: garage-bAInd/Platypus2-13B
        layer_range: [0, 40]
# or, the equivalent models: syntax:
# models:
#   - model: psmathur/orca_mini_v3_13b
#   - model: garage-bAInd/Platypus2-13B
merge_method: slerp
base_model: psmathur/orca_mini_v3_13b
parameters:
  t:
    - filter: self_attn
      value: [0, 0.5, 0.3, 0.7, 1]
    - filter: mlp
      value: [1, 0.5, 0.7, 0.3, 0]
    - value: 0.5 # fallback for rest of tensors
dtype: float16
`;

const FRANKEN = `slices:
  - sources:
    - model: psmathur/orca_mini_v3_13b
      layer_range: [0, 24]
  - sources:
    - model: garage-bAInd/Platypus2-13B
      layer_range: [20, 40]
merge_method: passthrough
dtype: float16
`;

const L = 40;
const ATT = (l: number) => `model.layers.${l}.self_attn.q_proj.weight`;
const MLP = (l: number) => `model.layers.${l}.mlp.up_proj.weight`;

/** A 40-layer toy; values exact in f16: model m, layer l, element j → m·100 + l + j/4 (embed/norm/head: m·100 + 50/60/70 + j/4). */
function model(m: number, seedSign = 1): RawTensor[] {
  const t = (name: string, v: number): RawTensor => ({
    name,
    dtype: 'F32',
    shape: [2, 4],
    data: new Uint8Array(Float32Array.from({ length: 8 }, (_, j) => seedSign * (v + j / 4) * (j % 2 ? 1 : -1)).buffer),
  });
  const out = [t('model.embed_tokens.weight', m * 100 + 50)];
  for (let l = 0; l < L; l++) out.push(t(ATT(l), m * 100 + l), t(MLP(l), m * 100 + l + 0.5));
  out.push(t('model.norm.weight', m * 100 + 60), t('lm_head.weight', m * 100 + 70));
  return out;
}

const norm = (v: ArrayLike<number>) => Math.sqrt(Array.from(v).reduce((s, x) => s + x * x, 0));
function slerpOracle(t: number, v0: Float32Array, v1: Float32Array): number[] {
  const n0 = norm(v0);
  const n1 = norm(v1);
  let d = 0;
  for (let j = 0; j < v0.length; j++) d += (v0[j] / n0) * (v1[j] / n1);
  if (Math.abs(d) > 0.9995) return Array.from(v0, (x, j) => (1 - t) * x + t * v1[j]);
  const th = Math.acos(d);
  return Array.from(v0, (x, j) => (Math.sin((1 - t) * th) * x + Math.sin(t * th) * v1[j]) / Math.sin(th));
}

describe('mergekit slices: published slerp and passthrough examples', () => {
  let dir: string;
  let repo: Repository;
  const run = (text: string, extra: string[] = []) => {
    const file = path.join(dir, `cfg-${Math.random().toString(36).slice(2)}.yml`);
    fs.writeFileSync(file, text);
    const r = spawnSync(process.execPath, [BIN, 'merge', '--config', file, '--json', ...extra], {
      cwd: repo.root,
      encoding: 'utf8',
    });
    return { status: r.status, json: JSON.parse(r.stdout || 'null'), stderr: r.stderr };
  };
  const read = async (commit: string) => {
    const m = await repo.openModel(commit);
    const out = new Map<string, { dtype: string; v: Float32Array }>();
    try {
      for (const t of m.tensors) out.set(t.name, { dtype: t.dtype, v: toF32(await m.readTensor(t.name), t.dtype) });
      const cfg = JSON.parse(new TextDecoder().decode(await m.readSideFile('config.json')));
      return { tensors: out, config: cfg, names: m.tensors.map((t) => t.name) };
    } finally {
      await m.close();
    }
  };
  const src = new Map<string, RawTensor[]>();

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-slices-'));
    repo = await Repository.init(path.join(dir, 'repo'), { chunkSize: 4096 });
    for (const [i, name] of ['psmathur/orca_mini_v3_13b', 'garage-bAInd/Platypus2-13B'].entries()) {
      const d = path.join(dir, `m${i}`);
      fs.mkdirSync(d);
      const ts = model(i + 1, i ? -1 : 1);
      src.set(name, ts);
      fs.writeFileSync(path.join(d, 'model.safetensors'), buildSafetensors(ts));
      fs.writeFileSync(path.join(d, 'config.json'), JSON.stringify({ model_type: 'llama', num_hidden_layers: L }));
      await repo.commit({ path: d, message: name, branch: name });
    }
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  const f32Of = (model: string, name: string) => {
    const t = src.get(model)?.find((x) => x.name === name) as RawTensor;
    return new Float32Array(t.data.slice().buffer);
  };

  it('gradient-slerp.yml: t by filter and gradient over the 40 layers', async () => {
    const r = run(GRADIENT_SLERP);
    assert.equal(r.status, 0, r.stderr + JSON.stringify(r.json));
    const out = await read(r.json.commit);
    const A = 'psmathur/orca_mini_v3_13b';
    const B = 'garage-bAInd/Platypus2-13B';
    // layer 0: self_attn t = 0 (model A); mlp t = 1 (model B)
    assert.deepEqual(Array.from(out.tensors.get(ATT(0))?.v ?? []), Array.from(f32Of(A, ATT(0))));
    assert.deepEqual(Array.from(out.tensors.get(MLP(0))?.v ?? []), Array.from(f32Of(B, MLP(0))));
    // layer 13: t = 13/39 = 1/3 → 4 anchors·(1/3) = 4/3: self_attn (2/3)·0.5 + (1/3)·0.3, mlp (2/3)·0.5 + (1/3)·0.7
    for (const [name, t] of [
      [ATT(13), (2 / 3) * 0.5 + (1 / 3) * 0.3],
      [MLP(13), (2 / 3) * 0.5 + (1 / 3) * 0.7],
      ['model.norm.weight', 0.5],
    ] as const) {
      const want = slerpOracle(t, f32Of(A, name), f32Of(B, name));
      const got = out.tensors.get(name);
      assert.equal(got?.dtype, 'F16');
      for (let j = 0; j < want.length; j++)
        assert.ok(Math.abs((got?.v[j] ?? Number.NaN) - want[j]) <= 1e-3 * Math.abs(want[j]) + 1e-3, `${name}[${j}]`);
    }
    assert.equal(out.config.num_hidden_layers, 40);
  });

  it('orcamini-platy-44layer.yml: 44 layers, renumbered, config.json updated', async () => {
    const r = run(FRANKEN);
    assert.equal(r.status, 0, r.stderr + JSON.stringify(r.json));
    const out = await read(r.json.commit);
    assert.equal(out.names.filter((n) => n.includes('.layers.')).length, 88);
    assert.equal(out.config.num_hidden_layers, 44);
    const A = 'psmathur/orca_mini_v3_13b';
    const B = 'garage-bAInd/Platypus2-13B';
    for (let k = 0; k < 44; k++) {
      const [m, l] = k < 24 ? [A, k] : [B, k - 4];
      assert.deepEqual(Array.from(out.tensors.get(ATT(k))?.v ?? []), Array.from(f32Of(m, ATT(l))), `layer ${k}`);
      assert.deepEqual(Array.from(out.tensors.get(MLP(k))?.v ?? []), Array.from(f32Of(m, MLP(l))), `layer ${k}`);
    }
    // outside the layers: embeddings from the first slice, norm and head from the last
    assert.deepEqual(
      Array.from(out.tensors.get('model.embed_tokens.weight')?.v ?? []),
      Array.from(f32Of(A, 'model.embed_tokens.weight')),
    );
    assert.deepEqual(Array.from(out.tensors.get('lm_head.weight')?.v ?? []), Array.from(f32Of(B, 'lm_head.weight')));
    const dry = run(FRANKEN, ['--dry-run']);
    assert.equal(dry.status, 0, dry.stderr);
    assert.equal(dry.json.layers, 44);
  });

  it('refuses a layer range outside the model, and slices with a base method', () => {
    const r = run(FRANKEN.replace('[20, 40]', '[20, 41]'));
    assert.equal(r.status, 1);
    assert.equal(r.json.error.code, 'E_BAD_PARAM');
    assert.match(r.json.error.message, /outside the model's 40 layers/);
    const t = run(FRANKEN.replace('passthrough', 'ties\nbase_model: psmathur/orca_mini_v3_13b'));
    assert.equal(t.json.error.code, 'E_MERGEKIT_UNSUPPORTED');
  });
});
