import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Repository } from '../../packages/store/src/index.js';
import { bf16Weights, buildSafetensors, fineTune, rng } from '../../packages/store/test/helpers.js';

process.env.WGIT_AUTHOR_DATE = '1700000000';
const ROOT = path.resolve(import.meta.dirname, '..', '..');
const STORE_DIST = path.join(ROOT, 'packages', 'store', 'dist', 'index.js');
const TRIALS = 20;

/**
 * A child process that commits one model with the built library (no CLI
 * start-up, so more of its life is spent writing). It creates its marker in
 * .wgit/wgit/tmp when the commit starts; the parent kills it from then on.
 */
function startCommit(repo: string, model: string, message: string): ChildProcess {
  const code = `import { Repository } from ${JSON.stringify(`file://${STORE_DIST}`)};
const repo = await Repository.open(${JSON.stringify(repo)});
await repo.commit({ path: ${JSON.stringify(model)}, message: ${JSON.stringify(message)} });`;
  return spawn(process.execPath, ['--input-type=module', '-e', code], {
    env: { ...process.env, WGIT_AUTHOR_DATE: '1700000000' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
}

function exited(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null)
      resolve({ code: child.exitCode, signal: child.signalCode });
    else child.once('exit', (code, signal) => resolve({ code, signal }));
  });
}

async function waitForWriter(tmpDir: string, child: ChildProcess): Promise<boolean> {
  for (;;) {
    if (child.exitCode !== null) return false;
    // This child's own marker (active-<host>-<pid>-…): an earlier killed writer's marker is still there.
    if (fs.readdirSync(tmpDir).some((n) => n.startsWith('active-') && n.includes(`-${child.pid}-`))) return true;
    await sleep(1);
  }
}

describe('crash safety: commits killed with SIGKILL at random points', () => {
  let dir: string;
  let repo: Repository;
  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-'));
    repo = await Repository.init(path.join(dir, 'repo'), { chunkSize: 4096, maxDeltaDepth: 4 });
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it(`leaves a valid repository after each of ${TRIALS} kills, and the re-run succeeds`, async () => {
    assert.ok(fs.existsSync(STORE_DIST), 'run pnpm build first');
    const r = rng(2024);
    const tensors = [
      { name: 'embed.weight', dtype: 'BF16', shape: [128, 128], data: bf16Weights(128 * 128, 1) },
      { name: 'layers.0.up.weight', dtype: 'BF16', shape: [128, 128], data: bf16Weights(128 * 128, 2) },
      {
        name: 'layers.0.norm.weight',
        dtype: 'F32',
        shape: [128],
        data: new Uint8Array(new Float32Array(128).fill(1).buffer),
      },
    ];
    const base = path.join(dir, 'base.safetensors');
    fs.writeFileSync(base, buildSafetensors(tensors));
    let head = (await repo.commit({ path: base, message: 'base' })).commit;

    // Calibrate: how long an uninterrupted commit lives after it starts writing.
    const calib = path.join(dir, 'calib.safetensors');
    fs.writeFileSync(
      calib,
      buildSafetensors(
        tensors.map((t, i) => ({ ...t, data: t.dtype === 'BF16' ? fineTune(t.data, 0.1, 900 + i) : t.data })),
      ),
    );
    const c = startCommit(repo.root, calib, 'calibration');
    assert.ok(await waitForWriter(repo.tmpDir, c));
    const t0 = performance.now();
    assert.equal((await exited(c)).code, 0);
    const span = performance.now() - t0;
    head = await repo.resolve('main');

    let killed = 0;
    let movedBeforeKill = 0;
    for (let trial = 0; trial < TRIALS; trial++) {
      const model = path.join(dir, `trial-${trial}.safetensors`);
      const ts = tensors.map((t, i) => ({
        ...t,
        data: t.dtype === 'BF16' ? fineTune(t.data, 0.05, trial * 10 + i) : t.data,
      }));
      fs.writeFileSync(model, buildSafetensors(ts));
      const child = startCommit(repo.root, model, `trial ${trial}`);
      let stderr = '';
      child.stderr!.on('data', (d) => {
        stderr += d;
      });
      const started = await waitForWriter(repo.tmpDir, child);
      if (started) {
        await sleep(r() * span * 1.1);
        if (child.kill('SIGKILL')) killed++;
      }
      const ex = await exited(child);
      assert.ok(ex.signal === 'SIGKILL' || ex.code === 0, `trial ${trial}: child failed by itself: ${stderr}`);

      // The repository is valid and holds either the old state or the complete new commit.
      const f = await repo.fsck();
      assert.deepEqual(f.problems, [], `trial ${trial}: fsck after kill`);
      const now = await repo.resolve('main');
      if (now !== head) {
        movedBeforeKill++;
        assert.deepEqual(
          (await repo.readCommit(now)).parents,
          [head],
          `trial ${trial}: new head descends from the old one`,
        );
      } else {
        const again = await repo.commit({ path: model, message: `trial ${trial}` });
        assert.deepEqual((await repo.readCommit(again.commit)).parents, [head]);
      }
      head = await repo.resolve('main');
      const m = await repo.openModel(head);
      for (const t of ts)
        assert.ok(Buffer.from(await m.readTensor(t.name)).equals(Buffer.from(t.data)), `trial ${trial}: ${t.name}`);
    }
    assert.ok(killed >= TRIALS / 2, `only ${killed} of ${TRIALS} children were killed mid-commit`);
    // Every child is dead, so everything in the temp folder is a killed writer's leftover: its
    // activity marker and any half-written temp file. A child killed before its commit landed
    // still has its marker there.
    const leftovers = fs.readdirSync(repo.tmpDir);
    assert.ok(
      leftovers.length >= killed - movedBeforeKill,
      `${leftovers.length} leftovers for ${killed - movedBeforeKill} commits killed before landing`,
    );
    const gc = await repo.gc();
    assert.equal(gc.tempFilesRemoved, leftovers.length, `leftovers: ${leftovers.join(', ')}`);
    assert.deepEqual(fs.readdirSync(repo.tmpDir), []);
    const final = await repo.fsck();
    assert.deepEqual(final.problems, []);
    assert.deepEqual(final.warnings, []);
    assert.equal((await repo.log()).length, TRIALS + 2);
    process.stderr.write(
      `# crash test: ${killed} kills, ${movedBeforeKill} landed before the kill, span ${span.toFixed(0)} ms\n`,
    );
  });
});
