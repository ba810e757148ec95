import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openModel, writeSafetensors } from '../../packages/core/src/safetensors/index.js';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const BIN = path.join(ROOT, 'packages', 'cli', 'bin', 'run.js');
const ENV = {
  ...process.env,
  WGIT_AUTHOR_DATE: '1700000000',
  WGIT_AUTHOR_NAME: 'T',
  WGIT_AUTHOR_EMAIL: 't@example.com',
};

function wgit(cwd: string, ...args: string[]): { status: number; json: any; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd, env: ENV, encoding: 'utf8' });
  const json = args.includes('--json') && r.stdout ? JSON.parse(r.stdout) : null;
  return { status: r.status ?? -1, json, stdout: r.stdout, stderr: r.stderr };
}

function lcg(seed: number) {
  let x = seed;
  return () => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return x / 2 ** 31 - 1;
  };
}
const rand = (n: number, seed: number) => Array.from({ length: n }, lcg(seed));
function product(x: number[], y: number[], m: number, r: number, n: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let t = 0; t < r; t++) s += x[i * r + t] * y[t * n + j];
      out.push(s);
    }
  return out;
}
const f32 = (xs: number[]) => new Uint8Array(Float32Array.from(xs).buffer);
const values = async (dir: string, name: string) => {
  const m = await openModel(dir);
  const b = await m.readTensor(name);
  await m.close();
  return [...new Float32Array(b.slice().buffer)];
};

const Q = 'model.layers.0.self_attn.q_proj.weight';
const V = 'model.layers.0.self_attn.v_proj.weight';
const NORM = 'model.layers.0.input_layernorm.weight';
let dir: string;
let repo: string;
const base = { q: rand(192, 1), v: rand(192, 2), norm: rand(12, 3) };
const dq = product(rand(32, 4), rand(24, 5), 16, 2, 12);
const dv = product(rand(16, 6), rand(12, 7), 16, 1, 12);
const ft = {
  q: base.q.map((x, i) => Math.fround(x + dq[i])),
  v: base.v.map((x, i) => Math.fround(x + dv[i])),
  norm: base.norm.map((x) => Math.fround(x + 0.25)),
};

async function model(name: string, m: typeof base) {
  const d = path.join(dir, name);
  fs.mkdirSync(d);
  await writeSafetensors(path.join(d, 'model.safetensors'), [
    { name: Q, dtype: 'F32', shape: [16, 12], data: f32(m.q) },
    { name: V, dtype: 'F32', shape: [16, 12], data: f32(m.v) },
    { name: NORM, dtype: 'F32', shape: [12], data: f32(m.norm) },
  ]);
  fs.writeFileSync(path.join(d, 'config.json'), '{"model_type":"tiny"}');
}

const near = (got: number[], want: number[], what: string) => {
  for (let i = 0; i < want.length; i++)
    assert.ok(Math.abs(got[i] - want[i]) < 1e-5, `${what}[${i}]: ${got[i]} vs ${want[i]}`);
};

describe('wgit lowrank, export-lora, import-lora', () => {
  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-e2e-lr-'));
    repo = path.join(dir, 'repo');
    fs.mkdirSync(repo);
    await model('base', base);
    await model('ft', ft);
    assert.equal(wgit(repo, 'init', '--json').status, 0);
    assert.equal(wgit(repo, 'commit', path.join(dir, 'base'), '-m', 'base', '--json').status, 0);
    assert.equal(wgit(repo, 'tag', 'base', '--json').status, 0);
    assert.equal(wgit(repo, 'commit', path.join(dir, 'ft'), '-m', 'ft', '--json').status, 0);
    assert.equal(wgit(repo, 'tag', 'ft', '--json').status, 0);
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('commits a low-rank basis with parents [FT, BASE] and its recipe; apply onto the base gives FT back', async () => {
    const r = wgit(repo, 'lowrank', 'ft', '--base', 'base', '--rank', '2', '--branch', 'ft-lr', '--json');
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(
      r.json.tensors.map((t: any) => [t.name, t.rank]),
      [
        [Q, 2],
        [V, 2],
      ],
    );
    for (const t of r.json.tensors) assert.ok(t.error < 1e-5, `${t.name} ${t.error}`);
    assert.deepEqual(r.json.dense, [NORM]);
    assert.ok(r.json.storedBytes > 0);
    const show = wgit(repo, 'show', 'ft-lr', '--json').json;
    assert.equal(show.object.kind, 'low-rank');
    assert.equal(show.recipe.kind, 'low-rank');
    assert.equal(show.recipe.base.rev, 'base');
    assert.equal(show.recipe.ft.rev, 'ft');
    assert.equal(show.recipe.rank, 2);
    assert.equal(show.recipe.oversample, 10);
    assert.equal(show.recipe.powerIters, 2);
    assert.ok(show.recipe.tensors[Q].error < 1e-5);
    const ftCommit = wgit(repo, 'show', 'ft', '--json').json.commit;
    const baseCommit = wgit(repo, 'show', 'base', '--json').json.commit;
    assert.deepEqual(show.parents, [ftCommit, baseCommit]);

    const applied = wgit(repo, 'apply', 'ft-lr', '--onto', 'base', '--json');
    assert.equal(applied.status, 0, applied.stderr);
    assert.deepEqual(applied.json.tensors, { changed: 3, replaced: 0, removed: 0, kept: 0 });
    const out = path.join(dir, 'applied');
    assert.equal(wgit(repo, 'checkout', applied.json.commit, '--out', out, '--json').status, 0);
    near(await values(out, Q), ft.q, 'q');
    near(await values(out, V), ft.v, 'v');
    near(await values(out, NORM), ft.norm, 'norm');

    const text = wgit(repo, 'lowrank', 'ft', '--base', 'base', '--energy', '0.999', '--others', 'drop');
    assert.equal(text.status, 0, text.stderr);
    assert.match(text.stdout, /low-rank basis of ft − base: 2 tensors factored \(rank 1–2\)/);
    assert.match(text.stdout, /dropped \(1\): model\.layers\.0\.input_layernorm\.weight/);
  });

  it('exports a PEFT adapter, and imports it back with --merge', async () => {
    const adapter = path.join(dir, 'adapter');
    const e = wgit(repo, 'export-lora', 'ft-lr', '--out', adapter, '--base-model', 'org/tiny', '--json');
    assert.equal(e.status, 0, e.stderr);
    assert.deepEqual(e.json.targetModules, ['q_proj', 'v_proj']);
    assert.deepEqual(
      e.json.skipped.map((s: any) => s.tensor),
      [NORM],
    );
    const config = JSON.parse(fs.readFileSync(path.join(adapter, 'adapter_config.json'), 'utf8'));
    assert.equal(config.base_model_name_or_path, 'org/tiny');
    const st = await openModel(path.join(adapter, 'adapter_model.safetensors'));
    assert.deepEqual(
      st.tensors.map((t) => t.name),
      [
        'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight',
        'base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight',
        'base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight',
        'base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight',
      ],
    );
    await st.close();

    const i = wgit(
      repo,
      'import-lora',
      adapter,
      '--base',
      'base',
      '--branch',
      'adapter',
      '--merge',
      'merged',
      '--json',
    );
    assert.equal(i.status, 0, i.stderr);
    assert.equal(i.json.modules.length, 2);
    assert.equal(wgit(repo, 'show', 'adapter', '--json').json.object.kind, 'low-rank');
    const out = path.join(dir, 'merged');
    assert.equal(wgit(repo, 'checkout', 'merged', '--out', out, '--json').status, 0);
    near(await values(out, Q), ft.q, 'q');
    near(await values(out, V), ft.v, 'v');
    near(await values(out, NORM), base.norm, 'the adapter does not carry the norm');
  });

  it('refuses bad input with a typed error and commits nothing', () => {
    const before = wgit(repo, 'branch', '--json').stdout;
    const big = wgit(repo, 'lowrank', 'ft', '--base', 'base', '--rank', '13', '--json');
    assert.equal(big.json.error.code, 'E_RANK_TOO_LARGE');
    assert.match(big.json.error.message, /q_proj/);
    const none = wgit(repo, 'lowrank', 'ft', '--base', 'base');
    assert.equal(none.status, 2);
    assert.match(none.stderr, /E_USAGE/);
    const notLr = wgit(repo, 'export-lora', 'base', '--out', path.join(dir, 'never'), '--json');
    assert.equal(notLr.json.error.code, 'E_NOT_AN_OBJECT');
    const wrong = path.join(dir, 'wrong-adapter');
    fs.mkdirSync(wrong);
    fs.writeFileSync(path.join(wrong, 'adapter_config.json'), '{"peft_type":"LORA","r":1,"lora_alpha":1}');
    const imp = wgit(repo, 'import-lora', path.join(dir, 'adapter'), '--base', path.join(dir, 'ft'), '--json');
    assert.equal(imp.status, 0, 'a base of the same architecture fits');
    const bad = wgit(repo, 'import-lora', wrong, '--base', 'base', '--json');
    assert.equal(bad.json.error.code, 'E_BAD_ADAPTER');
    assert.equal(fs.existsSync(path.join(dir, 'never')), false);
    const after = wgit(repo, 'branch', '--json').stdout;
    assert.equal(JSON.parse(after).branches.length, JSON.parse(before).branches.length + 1, 'only the good import');
  });
});
