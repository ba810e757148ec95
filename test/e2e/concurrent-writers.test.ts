import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { Repository } from '../../packages/store/src/index.js';
import { bf16Weights, buildSafetensors } from '../../packages/store/test/helpers.js';

/**
 * Real processes committing at the same moment, trial after trial: models
 * that share chunks (the same model twice, models sharing tensors), to one
 * branch and to one branch each. Every commit a process reports as landed
 * must check out byte for byte afterwards, fsck must stay clean, and no
 * landed commit may be lost from its branch.
 *
 * The children stay alive across trials (start-up would otherwise dominate)
 * and meet at a barrier file per trial, so their commits overlap.
 */
const ROOT = path.resolve(import.meta.dirname, '..', '..');
const STORE_DIST = path.join(ROOT, 'packages', 'store', 'dist', 'index.js');
const BIN = path.join(ROOT, 'packages', 'cli', 'bin', 'run.js');
const MERGE_TRIALS = Number(process.env.WGIT_RACE_MERGE_TRIALS ?? 10);
const TRIALS = Number(process.env.WGIT_RACE_TRIALS ?? 20);
const CHUNK = 64 * 1024;
const TENSOR_ELEMS = 192 * 1024; // 384 KiB of bf16: six chunks

const CHILD = `import * as fs from 'node:fs';
import * as path from 'node:path';
const [dist, repoDir, work, k, trials, branchMode] = process.argv.slice(2);
const { Repository } = await import(dist);
const repo = await Repository.open(repoDir);
fs.writeFileSync(path.join(work, 'ready-' + k), '');
for (let t = 0; t < Number(trials); t++) {
  const go = path.join(work, 'go-' + t);
  while (!fs.existsSync(go)) await new Promise((r) => setTimeout(r, 1));
  const model = path.join(work, 'm-' + t + '-' + k + '.safetensors');
  const branch = branchMode === 'own' ? 'writer-' + k : 'main';
  let res;
  try {
    const r = await repo.commit({ path: model, branch, message: 'trial ' + t + ' writer ' + k });
    res = { ok: true, commit: r.commit, branch };
  } catch (e) {
    res = { ok: false, code: e.code ?? String(e), message: e.message };
  }
  const out = path.join(work, 'res-' + t + '-' + k + '.json');
  fs.writeFileSync(out + '.tmp', JSON.stringify(res));
  fs.renameSync(out + '.tmp', out);
}
`;

interface Landed {
  commit: string;
  branch: string;
  model: string;
}

function startChild(script: string, repoDir: string, work: string, k: number, branchMode: string): ChildProcess {
  const child = spawn(
    process.execPath,
    [script, `file://${STORE_DIST}`, repoDir, work, String(k), String(TRIALS), branchMode],
    { env: { ...process.env, WGIT_AUTHOR_DATE: '1700000000' }, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let err = '';
  child.stderr?.on('data', (d) => {
    err += d;
  });
  child.on('exit', (code) => {
    if (code !== 0 && code !== null) process.stderr.write(`# writer ${k} exited ${code}: ${err}\n`);
  });
  return child;
}

/** Waits for `file`, which the `writer` process is to write. */
async function waitFor(file: string, writer: ChildProcess): Promise<void> {
  while (!fs.existsSync(file)) {
    if (writer.exitCode !== null && !fs.existsSync(file))
      throw new Error(`a writer exited (${writer.exitCode}) before writing ${path.basename(file)}`);
    await sleep(2);
  }
}

/** Tensors named `name`, seeded so that every trial's chunks are new to the store. */
function tensor(name: string, seed: number) {
  return { name, dtype: 'BF16', shape: [384, 512], data: bf16Weights(TENSOR_ELEMS, seed) };
}

async function race(opts: {
  writers: number;
  branchMode: 'main' | 'own';
  /** The model writer k commits in trial t. */
  model: (t: number, k: number) => ReturnType<typeof tensor>[];
}): Promise<{ landed: Landed[]; refused: string[]; repo: Repository }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-race-'));
  const work = path.join(dir, 'work');
  fs.mkdirSync(work);
  const repo = await Repository.init(path.join(dir, 'repo'), { chunkSize: CHUNK });
  fs.writeFileSync(
    path.join(work, 'seed.safetensors'),
    buildSafetensors([tensor('seed', 1)] as Parameters<typeof buildSafetensors>[0]),
  );
  await repo.commit({ path: path.join(work, 'seed.safetensors'), message: 'seed' });
  const script = path.join(work, 'writer.mjs');
  fs.writeFileSync(script, CHILD);
  const children = Array.from({ length: opts.writers }, (_, k) =>
    startChild(script, repo.root, work, k, opts.branchMode),
  );
  const landed: Landed[] = [];
  const refused: string[] = [];
  try {
    for (let k = 0; k < opts.writers; k++) await waitFor(path.join(work, `ready-${k}`), children[k]);
    for (let t = 0; t < TRIALS; t++) {
      for (let k = 0; k < opts.writers; k++) {
        const file = path.join(work, `m-${t}-${k}.safetensors`);
        fs.writeFileSync(file, buildSafetensors(opts.model(t, k) as Parameters<typeof buildSafetensors>[0]));
      }
      fs.writeFileSync(path.join(work, `go-${t}`), '');
      for (let k = 0; k < opts.writers; k++) {
        const res = path.join(work, `res-${t}-${k}.json`);
        await waitFor(res, children[k]);
        const r = JSON.parse(fs.readFileSync(res, 'utf8'));
        if (r.ok)
          landed.push({ commit: r.commit, branch: r.branch, model: path.join(work, `m-${t}-${k}.safetensors`) });
        else {
          // The only acceptable refusal: another writer moved the branch first.
          assert.equal(r.code, 'E_BRANCH_MOVED', `trial ${t} writer ${k}: ${r.message}`);
          refused.push(r.code);
        }
      }
    }
  } finally {
    for (const c of children) if (c.exitCode === null) c.kill();
  }
  return { landed, refused, repo };
}

/** Every landed commit checks out byte for byte, and fsck finds nothing wrong. */
async function verify(repo: Repository, landed: Landed[]): Promise<void> {
  const f = await repo.fsck();
  assert.deepEqual(f.problems, []);
  const outs = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-race-out-'));
  try {
    for (const [i, l] of landed.entries()) {
      const out = path.join(outs, String(i));
      await repo.checkout(l.commit, out);
      const got = fs.readFileSync(path.join(out, path.basename(l.model)));
      assert.ok(got.equals(fs.readFileSync(l.model)), `landed commit ${l.commit.slice(0, 12)} checks out wrong`);
    }
  } finally {
    fs.rmSync(outs, { recursive: true, force: true });
  }
  // A gc right after must keep everything that landed.
  await repo.gc({ graceSeconds: 0 });
  const again = await repo.fsck();
  assert.deepEqual(again.problems, []);
}

/** Every landed commit is on its branch's first-parent chain. */
async function noLostUpdate(repo: Repository, landed: Landed[]): Promise<void> {
  const branches = new Set(landed.map((l) => l.branch));
  for (const b of branches) {
    const chain = new Set<string>();
    for (let c: string | undefined = await repo.resolve(b); c; ) {
      chain.add(c);
      c = (await repo.readCommit(c)).parents[0];
    }
    for (const l of landed.filter((x) => x.branch === b))
      assert.ok(chain.has(l.commit), `commit ${l.commit.slice(0, 12)} was reported landed on ${b} but is lost`);
  }
}

describe('concurrent writers sharing chunks (real processes)', () => {
  const dirs: string[] = [];
  before(() => assert.ok(fs.existsSync(STORE_DIST), 'run pnpm build first'));
  after(() => {
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  });

  it(`two processes commit the same model to one branch (${TRIALS} trials)`, async () => {
    const { landed, refused, repo } = await race({
      writers: 2,
      branchMode: 'main',
      model: (t) => [tensor('a', 1000 + t), tensor('b', 2000 + t)],
    });
    dirs.push(path.dirname(repo.root));
    assert.ok(landed.length >= TRIALS, `${landed.length} landed in ${TRIALS} trials`);
    await noLostUpdate(repo, landed);
    await verify(repo, landed);
    process.stderr.write(`# same model, one branch: ${landed.length} landed, ${refused.length} refused\n`);
  });

  it(`four processes commit overlapping models to one branch (${TRIALS} trials)`, async () => {
    const { landed, refused, repo } = await race({
      writers: 4,
      branchMode: 'main',
      model: (t, k) => [tensor('shared.a', 3000 + t), tensor('shared.b', 4000 + t), tensor('own', 5000 + t * 8 + k)],
    });
    dirs.push(path.dirname(repo.root));
    assert.ok(landed.length >= TRIALS);
    await noLostUpdate(repo, landed);
    await verify(repo, landed);
    process.stderr.write(`# overlapping, one branch: ${landed.length} landed, ${refused.length} refused\n`);
  });

  it(`four processes commit overlapping models to their own branches (${TRIALS} trials)`, async () => {
    const { landed, refused, repo } = await race({
      writers: 4,
      branchMode: 'own',
      model: (t, k) => [tensor('shared.a', 6000 + t), tensor('own', 7000 + t * 8 + k), tensor('shared.b', 8000 + t)],
    });
    dirs.push(path.dirname(repo.root));
    assert.equal(refused.length, 0, 'writers on different branches never refuse each other');
    assert.equal(landed.length, TRIALS * 4);
    await noLostUpdate(repo, landed);
    await verify(repo, landed);
  });

  it(`two identical merges at once both land, on merge/linear/a+b and the next free name (${MERGE_TRIALS} trials)`, async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-race-merge-'));
    dirs.push(dir);
    const repo = await Repository.init(path.join(dir, 'repo'), { chunkSize: CHUNK });
    for (const [name, seed] of [
      ['a', 11],
      ['b', 12],
    ] as const) {
      const file = path.join(dir, `${name}.safetensors`);
      fs.writeFileSync(
        file,
        buildSafetensors([tensor('w', seed), tensor('v', seed + 100)] as Parameters<typeof buildSafetensors>[0]),
      );
      await repo.commit({ path: file, branch: name, parents: [], message: name });
    }
    const run = promisify(execFile);
    const merge = () =>
      run(process.execPath, [BIN, 'merge', 'a', 'b', '--method', 'linear', '--json'], {
        cwd: repo.root,
        env: { ...process.env, WGIT_AUTHOR_DATE: '1700000000' },
      }).then((r) => JSON.parse(r.stdout));
    const seen = new Set<string>();
    for (let t = 0; t < MERGE_TRIALS; t++) {
      const [x, y] = await Promise.all([merge(), merge()]);
      assert.notEqual(x.branch, y.branch);
      for (const r of [x, y]) {
        assert.match(r.branch, /^merge\/linear\/a\+b(-\d+)?$/);
        assert.ok(!seen.has(r.branch), `branch ${r.branch} reused`);
        seen.add(r.branch);
        assert.equal(await repo.resolve(r.branch), r.commit);
      }
      // Same inputs, same recipe, same date: the same commit, landed twice.
      assert.equal(x.commit, y.commit);
    }
    assert.ok(seen.has('merge/linear/a+b') && seen.has('merge/linear/a+b-2'));
    const f = await repo.fsck();
    assert.deepEqual(f.problems, []);
  });
});
