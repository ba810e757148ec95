/**
 * The papers' effects in miniature, through the built CLI, on the digits
 * lineage (trained here, in seconds). Accuracies come from the test splits of
 * each task; margins were checked on several seeds, the test uses seed 1.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { evaluateModel, taskSplits } from '../../packages/cli/src/demo/evaluate.js';
import {
  buildLineage,
  DEFAULT_DIMS,
  type Lineage,
  saveMlp,
  trainLineage,
} from '../../packages/cli/src/demo/lineage.js';
import { type ModelSource, openModel, toF32, writeSafetensors } from '../../packages/core/src/index.js';
import { Repository } from '../../packages/store/src/index.js';
import { type TaskScores as Scores, scoreTensors, TASK_NAMES } from './digits-oracle.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const BIN = path.join(ROOT, 'packages/cli/bin/run.js');

let tmp: string;
let repoDir: string;
let lineage: Lineage;
const commits: Record<string, string> = {};
const scores: Record<string, Scores> = {};

function wgit(args: string[], opts: { ok?: boolean } = {}): { status: number; json: any } {
  const r = spawnSync(process.execPath, [BIN, ...args, '--json'], { cwd: repoDir, encoding: 'utf8' });
  let json: any = null;
  try {
    json = JSON.parse(r.stdout);
  } catch {
    json = null;
  }
  if (opts.ok !== false && r.status !== 0) {
    assert.fail(`wgit ${args.join(' ')} exited ${r.status}: ${r.stdout} ${r.stderr}`);
  }
  return { status: r.status ?? -1, json };
}

async function withRepoModel<T>(rev: string, fn: (m: ModelSource) => Promise<T>, group?: string): Promise<T> {
  const repo = await Repository.open(repoDir);
  const m = await repo.openModel(rev, group);
  try {
    return await fn(m);
  } finally {
    await m.close();
  }
}

/** Accuracies from the scorer written in the test (digits-oracle.ts), not the demo's evaluator. */
async function scoreSource(m: ModelSource): Promise<Scores> {
  const t = new Map<string, Float32Array>();
  const shapes = new Map<string, number[]>();
  for (const info of m.tensors) {
    assert.equal(info.dtype, 'F32', info.name);
    const b = await m.readTensor(info.name);
    t.set(info.name, new Float32Array(b.slice().buffer));
    shapes.set(info.name, info.shape);
  }
  return scoreTensors(t, shapes);
}
const scoreOf = (rev: string) => withRepoModel(rev, scoreSource);

async function tensorsOf(m: ModelSource): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const t of m.tensors) out.set(t.name, toF32(await m.readTensor(t.name), t.dtype));
  return out;
}

async function localTensors(p: string): Promise<Map<string, Float32Array>> {
  const m = await openModel(p);
  try {
    return await tensorsOf(m);
  } finally {
    await m.close();
  }
}

async function tensorHashes(rev: string): Promise<Record<string, string>> {
  return withRepoModel(rev, async (m) => {
    const out: Record<string, string> = {};
    for (const t of m.tensors)
      out[t.name] = createHash('sha256')
        .update(await m.readTensor(t.name))
        .digest('hex');
    return out;
  });
}

/** Every tensor's name, dtype, shape and sha256 of its bytes. */
async function rawTensors(p: string): Promise<string[]> {
  const m = await openModel(p);
  const out: string[] = [];
  for (const t of m.tensors) {
    const h = createHash('sha256')
      .update(await m.readTensor(t.name))
      .digest('hex');
    out.push(`${t.name} ${t.dtype} [${t.shape}] ${h}`);
  }
  await m.close();
  return out;
}

/** ‖a − b‖ / ‖b‖ over every tensor (f64). */
function relError(a: Map<string, Float32Array>, b: Map<string, Float32Array>): number {
  let num = 0;
  let den = 0;
  for (const [name, bv] of b) {
    const av = a.get(name)!;
    for (let i = 0; i < bv.length; i++) {
      num += (av[i] - bv[i]) ** 2;
      den += bv[i] ** 2;
    }
  }
  return Math.sqrt(num / den);
}

async function branchHead(name: string): Promise<string | null> {
  const repo = await Repository.open(repoDir);
  return (await repo.branches()).find((b) => b.name === name)?.commit ?? null;
}

const avg = (s: Scores, a: keyof Scores, b: keyof Scores) => (s[a] + s[b]) / 2;

before(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-'));
  lineage = await buildLineage({ dir: path.join(tmp, 'models'), seed: 1 });
  repoDir = path.join(tmp, 'repo');
  fs.mkdirSync(repoDir);
  wgit(['init', '.']);
  // fine-tune branches are made while main is at base-v1, so they start from it
  const order: [string, string][] = [
    ['base-v1', 'main'],
    ['ft-invert', 'ft-invert'],
    ['ft-flip', 'ft-flip'],
    ['ft-rot', 'ft-rot'],
    ['base-v2', 'main'],
    ['v2-ft-invert', 'v2-ft-invert'],
  ];
  for (const [name, branch] of order) {
    const r = wgit(['commit', lineage.models[name as keyof Lineage['models']].dir, '-m', name, '--branch', branch]);
    commits[name] = r.json.commit;
    scores[name] = await scoreOf(r.json.commit);
  }
});

after(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

describe('lineage as committed', () => {
  test("the demo's evaluator agrees with the scorer written here", async () => {
    for (const name of ['base-v1', 'ft-rot']) {
      const theirs = await withRepoModel(commits[name], evaluateModel);
      for (const t of TASK_NAMES) {
        // f32 against f64 sums may flip an argmax at a near tie: one image in 539 at most
        assert.ok(
          Math.abs(theirs[t] - scores[name][t]) <= 1 / 539 + 1e-12,
          `${name} ${t}: ${theirs[t]} vs ${scores[name][t]}`,
        );
      }
    }
  });

  test('the bases do poorly on the transformed tasks, each fine-tune does well on its own', () => {
    for (const b of ['base-v1', 'base-v2']) {
      assert.ok(scores[b].clean > 0.9, `${b} clean ${scores[b].clean}`);
      for (const t of ['invert', 'flip', 'rot'] as const) assert.ok(scores[b][t] < 0.5, `${b} ${t} ${scores[b][t]}`);
    }
    assert.ok(scores['ft-invert'].invert > 0.75);
    assert.ok(scores['ft-flip'].flip > 0.85);
    assert.ok(scores['ft-rot'].rot > 0.85);
    assert.ok(scores['v2-ft-invert'].invert > 0.75);
  });
});

describe('transfer (Lin et al. 2025)', () => {
  let res: any;
  test('v2 + (ft-invert − v1) is committed with parents [v2, ft, v1] and its recipe', async () => {
    res = wgit(['transfer', commits['ft-invert'], '--from', commits['base-v1'], '--onto', commits['base-v2']]).json;
    assert.deepEqual(res.parents, [commits['base-v2'], commits['ft-invert'], commits['base-v1']]);
    assert.match(res.branch, /^transfer\//);
    const info = await (await Repository.open(repoDir)).readCommit(res.commit);
    assert.equal(info.recipe?.method, 'transfer');
    assert.equal(info.recipe?.scale, 1);
    assert.ok(Number.isFinite(res.closeness.cosine) && res.closeness.relDistance > 0);
  });

  test('every tensor equals v2 + (ft − v1) computed here in f32', async () => {
    const [ft, v1, v2, out] = await Promise.all(
      [commits['ft-invert'], commits['base-v1'], commits['base-v2'], res.commit].map((r) =>
        withRepoModel(r, tensorsOf),
      ),
    );
    for (const [name, o] of out) {
      const a = ft.get(name)!;
      const b = v1.get(name)!;
      const c = v2.get(name)!;
      for (let i = 0; i < o.length; i++) {
        const want = Math.fround(c[i] + Math.fround(a[i] - b[i]));
        assert.ok(Math.abs(o[i] - want) <= 1e-6 * Math.max(1, Math.abs(want)), `${name}[${i}] ${o[i]} vs ${want}`);
      }
    }
  });

  test('it beats v2 on the task by a wide margin and recovers most of a direct fine-tune of v2', async () => {
    const s = await scoreOf(res.commit);
    assert.ok(s.invert > scores['base-v2'].invert + 0.4, `transfer ${s.invert} vs v2 ${scores['base-v2'].invert}`);
    assert.ok(
      s.invert > 0.7 * scores['v2-ft-invert'].invert,
      `transfer ${s.invert} vs direct ${scores['v2-ft-invert'].invert}`,
    );
  });
});

describe('LiNeS (Wang et al. 2025)', () => {
  test('the edited fine-tune keeps most of its task and forgets less of the clean task', async () => {
    const r = wgit(['lines', 'ft-flip', '--base', commits['base-v1']]).json;
    assert.equal(r.blocks, 3);
    assert.equal(r.alpha, 0.5);
    assert.equal(r.beta, 0.5);
    assert.deepEqual(r.parents, [commits['ft-flip'], commits['base-v1']]);
    const s = await scoreOf(r.commit);
    const ft = scores['ft-flip'];
    const base = scores['base-v1'];
    assert.ok(
      s.flip - base.flip > 0.75 * (ft.flip - base.flip),
      `lines flip ${s.flip}, ft ${ft.flip}, base ${base.flip}`,
    );
    assert.ok(s.clean > ft.clean + 0.05, `lines clean ${s.clean} vs ft ${ft.clean}`);
  });
});

describe('merging (Ilharco et al. 2023, Yadav et al. 2023)', () => {
  // Three lineages (seeds 1, 2, 3, as docs/results.md): a claim about merging holds on the
  // mean over seeds, not on one seed picked for it. Seeds 2 and 3 commit the three models
  // a merge needs on branches of their own.
  const SEEDS = [1, 2, 3];
  const revs: Record<number, { base: string; flip: string; rot: string }> = {};
  const single: Record<number, number> = {};
  before(async () => {
    revs[1] = { base: commits['base-v1'], flip: commits['ft-flip'], rot: commits['ft-rot'] };
    const splits = taskSplits();
    for (const seed of SEEDS.slice(1)) {
      const models = trainLineage(seed, DEFAULT_DIMS, splits);
      const c: Record<string, string> = {};
      for (const name of ['base-v1', 'ft-flip', 'ft-rot'] as const) {
        const dir = path.join(tmp, `seed${seed}`, name);
        await saveMlp(models[name], dir, { seed });
        c[name] = wgit(['commit', dir, '-m', `${name} seed ${seed}`, '--branch', `seed${seed}/${name}`]).json.commit;
      }
      revs[seed] = { base: c['base-v1'], flip: c['ft-flip'], rot: c['ft-rot'] };
    }
    for (const seed of SEEDS) {
      const [flip, rot] = [await scoreOf(revs[seed].flip), await scoreOf(revs[seed].rot)];
      single[seed] = Math.max(avg(flip, 'flip', 'rot'), avg(rot, 'flip', 'rot'));
    }
  });

  /** Per seed, the merged model's mean of flip and rot minus the better single fine-tune's. */
  async function margins(method: string, extra: string[]): Promise<number[]> {
    const out: number[] = [];
    for (const seed of SEEDS) {
      const r = revs[seed];
      const m = wgit(['merge', r.flip, r.rot, '--method', method, '--base', r.base, ...extra]).json;
      assert.deepEqual(m.parents, [r.flip, r.rot, r.base]);
      assert.equal((await (await Repository.open(repoDir)).readCommit(m.commit)).recipe?.method, method);
      out.push(avg(await scoreOf(m.commit), 'flip', 'rot') - single[seed]);
    }
    process.stderr.write(`# ${method} ${extra.join(' ')}: margins ${out.map((x) => x.toFixed(3)).join(' ')}\n`);
    return out;
  }
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

  test('task arithmetic of two fine-tunes beats each one on the average of both tasks (mean of 3 seeds)', async () => {
    const m = await margins('task-arithmetic', ['--lambda', '1']);
    assert.ok(mean(m) > 0.03, `mean margin ${mean(m)} (${m})`);
  });

  // TIES's λ = 1.5 is one value for every seed, picked on seed 1; at λ = 1 TIES trails the better
  // single fine-tune on every seed here (docs/results.md), which this test does not hide.
  test('so does TIES at λ = 1.5 (mean of 3 seeds)', async () => {
    const m = await margins('ties', ['--density', '0.5', '--lambda', '1.5']);
    assert.ok(mean(m) > 0.03, `mean margin ${mean(m)} (${m})`);
  });

  test('re-running a recipe gives the same bytes; another seed does not', async () => {
    const args = [
      'merge',
      'ft-flip',
      'ft-rot',
      '--method',
      'dare-ties',
      '--base',
      commits['base-v1'],
      '--density',
      '0.5',
    ];
    const a = wgit([...args, '--seed', '7']).json;
    const b = wgit([...args, '--seed', '7']).json;
    const c = wgit([...args, '--seed', '8']).json;
    assert.notEqual(a.branch, b.branch);
    const info = await (await Repository.open(repoDir)).readCommit(a.commit);
    assert.equal(info.recipe?.seed, 7);
    const [ha, hb, hc] = await Promise.all([a, b, c].map((r) => tensorHashes(r.commit)));
    assert.deepEqual(ha, hb);
    assert.notDeepEqual(ha, hc);
  });

  test('a mergekit config gives the same model as the same merge spelled in flags', async () => {
    const cfg = path.join(tmp, 'merge.yml');
    fs.writeFileSync(
      cfg,
      [
        'merge_method: task_arithmetic',
        `base_model: ${commits['base-v1']}`,
        'models:',
        '  - model: ft-flip',
        '    parameters: {weight: 0.7}',
        '  - model: ft-rot',
        '    parameters: {weight: 0.9}',
        'parameters: {lambda: 1.0}',
      ].join('\n'),
    );
    const viaConfig = wgit(['merge', '--config', cfg]).json;
    const viaFlags = wgit([
      'merge',
      'ft-flip',
      'ft-rot',
      '--method',
      'task-arithmetic',
      '--base',
      commits['base-v1'],
      '--weights',
      '0.7,0.9',
      '--lambda',
      '1',
    ]).json;
    assert.deepEqual(await tensorHashes(viaConfig.commit), await tensorHashes(viaFlags.commit));
  });
});

describe('reversible merge (rmm)', () => {
  const inputs = ['ft-invert', 'ft-flip', 'ft-rot'] as const;
  const modelFile = (name: string) =>
    path.join(lineage.models[name as keyof Lineage['models']].dir, 'model.safetensors');

  test('with a full basis every input is recovered byte for byte', async () => {
    const r = wgit(['merge', ...inputs, '--method', 'rmm', '--base', commits['base-v1']]).json;
    assert.equal(r.rmm.rank, 3);
    for (let n = 0; n < inputs.length; n++) {
      const out = path.join(tmp, `rmm-full-${n}`);
      const co = wgit(['checkout', r.commit, '--model', String(n), '--out', out]).json;
      assert.equal(co.exact, true);
      assert.deepEqual(await rawTensors(out), await rawTensors(modelFile(inputs[n])));
      // The whole file, header and its __metadata__ included, is the input's.
      assert.deepEqual(
        fs.readFileSync(path.join(out, 'model.safetensors')),
        fs.readFileSync(path.join(lineage.models[inputs[n]].dir, 'model.safetensors')),
      );
    }
  });

  test('with rank 1 each recovered input is closer to it than the merged model is', async () => {
    const r = wgit(['merge', ...inputs, '--method', 'rmm', '--base', commits['base-v1'], '--rank', '1']).json;
    const mergedDir = path.join(tmp, 'rmm-merged');
    wgit(['checkout', r.commit, '--out', mergedDir]);
    const merged = await localTensors(mergedDir);
    for (let n = 0; n < inputs.length; n++) {
      const out = path.join(tmp, `rmm-r1-${n}`);
      wgit(['checkout', r.commit, '--model', String(n), '--out', out]);
      const original = await localTensors(lineage.models[inputs[n]].dir);
      const recovered = await localTensors(out);
      const eRec = relError(recovered, original);
      const eMerged = relError(merged, original);
      assert.ok(eRec > 0, 'rank 1 of 3 cannot be exact');
      assert.ok(eRec < eMerged, `input ${n}: recovered ${eRec} vs merged ${eMerged}`);
    }
  });

  test('--model on a commit that is not a reversible merge is refused', () => {
    const r = wgit(['checkout', commits['ft-flip'], '--model', '0', '--out', path.join(tmp, 'nope')], { ok: false });
    assert.equal(r.status, 1);
    assert.equal(r.json.error.code, 'E_NOT_RMM');
  });
});

describe('bad input changes nothing', () => {
  let odd: string;
  let fewer: string;
  before(async () => {
    // same names as the lineage but a narrower first block; and one tensor short
    const src = await openModel(lineage.models['ft-flip'].dir);
    const all = [];
    for (const t of src.tensors)
      all.push({ name: t.name, dtype: t.dtype, shape: t.shape, data: await src.readTensor(t.name) });
    await src.close();
    odd = path.join(tmp, 'odd.safetensors');
    await writeSafetensors(
      odd,
      all.map((t) => (t.name === 'layers.0.bias' ? { ...t, shape: [64], data: t.data.subarray(0, 256) } : t)),
    );
    fewer = path.join(tmp, 'fewer.safetensors');
    await writeSafetensors(
      fewer,
      all.filter((t) => t.name !== 'head.bias'),
    );
  });

  const refusal = (argsOf: () => string[], code: string) => async () => {
    const args = argsOf();
    const before = await branchHead('main');
    const branches = (await (await Repository.open(repoDir)).branches()).length;
    const r = wgit([...args, '--branch', 'main'], { ok: false });
    assert.notEqual(r.status, 0);
    assert.equal(r.json?.error?.code, code, JSON.stringify(r.json));
    assert.equal(await branchHead('main'), before);
    assert.equal((await (await Repository.open(repoDir)).branches()).length, branches);
  };

  test('a shape mismatch names the tensor', async () => {
    const r = wgit(['merge', 'ft-flip', odd, '--method', 'ties', '--base', commits['base-v1']], { ok: false });
    assert.equal(r.json.error.code, 'E_SHAPE_MISMATCH');
    assert.match(r.json.error.message, /layers\.0\.bias/);
  });
  test(
    'a linear merge of one model is refused as a copy',
    refusal(() => ['merge', 'ft-flip', '--method', 'linear'], 'E_USAGE'),
  );
  test(
    'shape mismatch: branch unchanged',
    refusal(() => ['merge', 'ft-flip', odd, '--method', 'linear'], 'E_SHAPE_MISMATCH'),
  );
  test(
    'missing tensor',
    refusal(() => ['merge', 'ft-flip', fewer, '--method', 'task-arithmetic', '--base', 'main'], 'E_TENSOR_MISMATCH'),
  );
  test(
    'transfer onto a mismatched base',
    refusal(() => ['transfer', 'ft-flip', '--from', 'main~1', '--onto', odd], 'E_SHAPE_MISMATCH'),
  );
  test(
    'missing --base',
    refusal(() => ['merge', 'ft-flip', 'ft-rot', '--method', 'ties'], 'E_BASE_REQUIRED'),
  );
  test(
    'wrong number of weights',
    refusal(() => ['merge', 'ft-flip', 'ft-rot', '--method', 'linear', '--weights', '1,2,3'], 'E_BAD_PARAM'),
  );
  test(
    'unknown method',
    refusal(() => ['merge', 'ft-flip', 'ft-rot', '--method', 'soup'], 'E_USAGE'),
  );
  test(
    'unknown revision',
    refusal(() => ['lines', 'no-such-model', '--base', 'main'], 'E_UNKNOWN_REVISION'),
  );
});
