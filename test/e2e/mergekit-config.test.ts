// `wgit merge --config` reads mergekit configs the way mergekit does: the
// "*" filter, per-model lists falling back to the global value, linear
// merging base_model as one more input, dtype vs out_dtype, and a model
// without a weight refused before any model is opened.
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

const ATTN = 'model.layers.0.self_attn.q_proj.weight';
const MLP = 'model.layers.0.mlp.up_proj.weight';

/** Two f32 tensors, every element `v`. */
function model(v: number): RawTensor[] {
  const t = (name: string): RawTensor => ({
    name,
    dtype: 'F32',
    shape: [4, 4],
    data: new Uint8Array(new Float32Array(16).fill(v).buffer),
  });
  return [t(ATTN), t(MLP)];
}

describe('wgit merge --config: mergekit semantics', () => {
  let dir: string;
  let repo: Repository;
  const run = (cfg: string) => {
    const file = path.join(dir, `cfg-${Math.random().toString(36).slice(2)}.yml`);
    fs.writeFileSync(file, cfg);
    const r = spawnSync(process.execPath, [BIN, 'merge', '--config', file, '--json'], {
      cwd: repo.root,
      encoding: 'utf8',
    });
    return { status: r.status, json: JSON.parse(r.stdout || 'null'), stderr: r.stderr };
  };
  /** The merged model's tensors: dtype and first element. */
  const merged = async (commit: string) => {
    const m = await repo.openModel(commit);
    try {
      const out: Record<string, [string, number]> = {};
      for (const t of m.tensors) out[t.name] = [t.dtype, toF32(await m.readTensor(t.name), t.dtype)[0]];
      return out;
    } finally {
      await m.close();
    }
  };

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-mergekit-config-'));
    repo = await Repository.init(path.join(dir, 'repo'), { chunkSize: 4096 });
    for (const [name, v] of [
      ['base', 0],
      ['ft-a', 1],
      ['ft-b', 2],
    ] as const) {
      const d = path.join(dir, name);
      fs.mkdirSync(d);
      fs.writeFileSync(path.join(d, 'model.safetensors'), buildSafetensors(model(v)));
      await repo.commit({ path: d, message: name, branch: name });
    }
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('"*" filters and per-model lists fall back as in mergekit', async () => {
    const r = run(`
merge_method: task_arithmetic
base_model: base
parameters:
  weight: 0.75
models:
  - model: ft-a
    parameters:
      weight:
        - filter: self_attn
          value: 0.5
        - filter: "*"
          value: 0.25
  - model: ft-b
    parameters:
      weight:
        - filter: mlp
          value: 0.5
`);
    assert.equal(r.status, 0, r.stderr);
    const got = await merged(r.json.commit);
    // self_attn: 0.5·1 + 0.75·2 (ft-b's list falls back to the global weight)
    assert.deepEqual(got[ATTN], ['F32', 2]);
    // mlp: 0.25·1 ("*") + 0.5·2
    assert.deepEqual(got[MLP], ['F32', 1.25]);
  });

  it('linear merges base_model as one more input; out_dtype sets the output dtype', async () => {
    const r = run(`
merge_method: linear
base_model: ft-b
parameters:
  weight: 0.5
models:
  - model: ft-a
    parameters: { weight: 1.5 }
dtype: float32
out_dtype: float16
`);
    assert.equal(r.status, 0, r.stderr);
    const got = await merged(r.json.commit);
    // (1.5·1 + 0.5·2) / (1.5 + 0.5), normalized as mergekit's linear does by default
    assert.deepEqual(got[ATTN], ['F16', 1.25]);
    assert.deepEqual(got[MLP], ['F16', 1.25]);
  });

  it('a model without a weight is one clear error line', () => {
    const r = run(
      'merge_method: ties\nbase_model: base\nmodels:\n  - model: ft-a\n  - model: ft-b\n    parameters: {weight: 1}\n',
    );
    assert.equal(r.status, 1);
    assert.equal(r.json.error.code, 'E_MERGEKIT_INVALID');
    assert.match(r.json.error.message, /models\[0\] \(ft-a\): no weight/);
  });
});
