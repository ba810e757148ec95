// `wgit merge --dry-run` prints the resolved plan without computing; mergekit's
// published TIES example (gradients, per-model lists, normalize, int8_mask,
// dtype) runs unchanged, model names included; gradients and filter rules on
// the command line.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Repository } from '../../packages/store/src/index.js';
import { buildSafetensors, type RawTensor } from '../../packages/store/test/helpers.js';

process.env.WGIT_AUTHOR_DATE = '1700000000';
const ROOT = path.resolve(import.meta.dirname, '..', '..');
const BIN = path.join(ROOT, 'packages', 'cli', 'bin', 'run.js');

const PUBLISHED_TIES = `models:
  - model: psmathur/orca_mini_v3_13b
    parameters:
      density: [1, 0.7, 0.1] # density gradient
      weight: 1.0
  - model: garage-bAInd/Platypus2-13B
    parameters:
      density: 0.5
      weight: [0, 0.3, 0.7, 1] # weight gradient
  - model: WizardLM/WizardMath-13B-V1.0
    parameters:
      density: 0.33
      weight:
        - filter: mlp
          value: 0.5
        - value: 0
merge_method: ties
base_model: TheBloke/Llama-2-13B-fp16
parameters:
  normalize: true
  int8_mask: true
dtype: float16
`;

const NAMES = ['model.embed_tokens.weight'];
for (let l = 0; l < 3; l++)
  NAMES.push(`model.layers.${l}.self_attn.q_proj.weight`, `model.layers.${l}.mlp.up_proj.weight`);
NAMES.push('model.norm.weight');

function model(seed: number): RawTensor[] {
  let s = seed;
  return NAMES.map((name) => {
    const v = new Float32Array(16);
    for (let j = 0; j < 16; j++) {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      v[j] = s / 2 ** 32 - 0.5;
    }
    return { name, dtype: 'F32', shape: [4, 4], data: new Uint8Array(v.buffer) };
  });
}

describe('wgit merge --dry-run and gradients', () => {
  let dir: string;
  let repo: Repository;
  const cli = (args: string[]) => {
    const r = spawnSync(process.execPath, [BIN, ...args], { cwd: repo.root, encoding: 'utf8' });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  };
  const cfg = (text: string) => {
    const file = path.join(dir, `cfg-${Math.random().toString(36).slice(2)}.yml`);
    fs.writeFileSync(file, text);
    return file;
  };
  const groupOf = (plan: { groups: { tensors: string[]; params: Record<string, unknown> }[] }, name: string) =>
    plan.groups.find((g) => g.tensors.includes(name))?.params;

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-dry-run-'));
    repo = await Repository.init(path.join(dir, 'repo'), { chunkSize: 4096 });
    const names = [
      'TheBloke/Llama-2-13B-fp16',
      'psmathur/orca_mini_v3_13b',
      'garage-bAInd/Platypus2-13B',
      'WizardLM/WizardMath-13B-V1.0',
    ];
    for (const [i, name] of names.entries()) {
      const d = path.join(dir, `m${i}`);
      fs.mkdirSync(d);
      fs.writeFileSync(path.join(d, 'model.safetensors'), buildSafetensors(model(i + 1)));
      await repo.commit({ path: d, message: name, branch: name });
    }
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('resolves filters and gradients per tensor group without computing', () => {
    const before = fs.readdirSync(path.join(repo.root, '.wgit', 'refs', 'heads'), { recursive: true }).length;
    const r = cli(['merge', '--config', cfg(PUBLISHED_TIES), '--dry-run', '--json']);
    assert.equal(r.status, 0, r.stderr);
    const plan = JSON.parse(r.stdout);
    assert.equal(plan.dryRun, true);
    assert.equal(plan.method, 'ties');
    assert.equal(plan.layers, 3);
    assert.equal(plan.outDtype, 'F16');
    // 3 layers: t = 0, 0.5, 1. density [1, 0.7, 0.1] → 1, 0.7, 0.1; weight [0, 0.3, 0.7, 1] at 3t → 0, 0.5, 1
    assert.deepEqual(groupOf(plan, 'model.layers.1.mlp.up_proj.weight'), {
      weights: [1, 0.5, 0.5],
      lambda: 1,
      density: [0.7, 0.5, 0.33],
      seed: 0,
      normalize: true,
    });
    assert.deepEqual(groupOf(plan, 'model.layers.2.self_attn.q_proj.weight')?.weights, [1, 1, 0]);
    assert.deepEqual(groupOf(plan, 'model.layers.2.self_attn.q_proj.weight')?.density, [0.1, 0.5, 0.33]);
    // outside the layers: the first anchor
    assert.deepEqual(groupOf(plan, 'model.embed_tokens.weight')?.weights, [1, 0, 0]);
    assert.deepEqual(groupOf(plan, 'model.norm.weight')?.density, [1, 0.5, 0.33]);
    assert.deepEqual(plan.groups[0].inputs, [
      'psmathur/orca_mini_v3_13b',
      'garage-bAInd/Platypus2-13B',
      'WizardLM/WizardMath-13B-V1.0',
      'TheBloke/Llama-2-13B-fp16',
    ]);
    assert.ok(plan.warnings.some((w: string) => /int8_mask/.test(w)));
    const after = fs.readdirSync(path.join(repo.root, '.wgit', 'refs', 'heads'), { recursive: true }).length;
    assert.equal(after, before, 'a dry run commits nothing');
    const text = cli(['merge', '--config', cfg(PUBLISHED_TIES), '--dry-run']);
    assert.equal(text.status, 0, text.stderr);
    assert.match(text.stdout, /^plan: ties of psmathur\/orca_mini_v3_13b/);
    assert.match(text.stdout, /density=\[0\.7, 0\.5, 0\.33\]/);
  });

  it('runs the published TIES example unchanged', async () => {
    const r = cli(['merge', '--config', cfg(PUBLISHED_TIES), '--json']);
    assert.equal(r.status, 0, r.stderr + r.stdout);
    const out = JSON.parse(r.stdout);
    assert.ok(out.warnings.some((w: string) => /int8_mask/.test(w)));
    const m = await repo.openModel(out.commit);
    try {
      assert.ok(m.tensors.every((t) => t.dtype === 'F16'));
    } finally {
      await m.close();
    }
  });

  it('takes gradients, filter rules and "*" on the command line', () => {
    const r = cli([
      'merge',
      'psmathur/orca_mini_v3_13b',
      'garage-bAInd/Platypus2-13B',
      '--method',
      'ties',
      '--base',
      'TheBloke/Llama-2-13B-fp16',
      '--density',
      '[1,0.5]',
      '--weights',
      '[0,2], mlp=0.5;*=0.25',
      '--lambda',
      'self_attn=[1,0];0.5',
      '--dry-run',
      '--json',
    ]);
    assert.equal(r.status, 0, r.stderr);
    const plan = JSON.parse(r.stdout);
    const p1 = groupOf(plan, 'model.layers.1.self_attn.q_proj.weight');
    assert.deepEqual(p1, { weights: [1, 0.25], lambda: 0.5, density: [0.75, 0.75], seed: 0, normalize: true });
    assert.deepEqual(groupOf(plan, 'model.layers.2.mlp.up_proj.weight')?.weights, [2, 0.5]);
    assert.equal(groupOf(plan, 'model.norm.weight')?.lambda, 0.5);
    const bad = cli(['merge', 'a', 'b', '--method', 'ties', '--base', 'c', '--density', '[1,,2]', '--json']);
    assert.equal(bad.status, 1);
    assert.equal(JSON.parse(bad.stdout).error.code, 'E_BAD_PARAM');
  });
});
