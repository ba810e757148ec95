import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Repository } from '../../packages/store/src/index.js';
import { bf16Weights, buildSafetensors, fineTune } from '../../packages/store/test/helpers.js';

process.env.WGIT_AUTHOR_DATE = '1700000000';
const ROOT = path.resolve(import.meta.dirname, '..', '..');
const STORE_DIST = path.join(ROOT, 'packages', 'store', 'dist', 'index.js');

/**
 * Several real processes commit different models to the same branch at
 * once. They start together: each waits for a go-file before committing.
 */
function committer(
  repo: string,
  model: string,
  message: string,
  go: string,
): Promise<{ ok: boolean; commit?: string; code?: string }> {
  const code = `import * as fs from 'node:fs';
import { Repository } from ${JSON.stringify(`file://${STORE_DIST}`)};
const repo = await Repository.open(${JSON.stringify(repo)});
while (!fs.existsSync(${JSON.stringify(go)})) await new Promise((r) => setTimeout(r, 2));
try {
  const r = await repo.commit({ path: ${JSON.stringify(model)}, message: ${JSON.stringify(message)} });
  process.stdout.write(JSON.stringify({ ok: true, commit: r.commit }));
} catch (e) {
  process.stdout.write(JSON.stringify({ ok: false, code: e.code, message: e.message }));
}`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', code], {
    env: { ...process.env, WGIT_AUTHOR_DATE: '1700000000' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => {
    out += d;
  });
  child.stderr.on('data', (d) => {
    err += d;
  });
  return new Promise((resolve, reject) =>
    child.on('exit', () => {
      try {
        resolve(JSON.parse(out));
      } catch {
        reject(new Error(`committer died: ${out} ${err}`));
      }
    }),
  );
}

describe('concurrent commits from several processes', () => {
  let dir: string;
  let repo: Repository;
  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-'));
    repo = await Repository.init(path.join(dir, 'repo'), { chunkSize: 4096 });
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('lands every commit in order or fails it with E_BRANCH_MOVED, losing nothing', async () => {
    assert.ok(fs.existsSync(STORE_DIST), 'run pnpm build first');
    const data = bf16Weights(96 * 128, 5);
    const base = path.join(dir, 'base.safetensors');
    fs.writeFileSync(base, buildSafetensors([{ name: 'w', dtype: 'BF16', shape: [96, 128], data }]));
    await repo.commit({ path: base, message: 'base' });
    const landed: string[] = [];
    const failures: string[] = [];
    for (let round = 0; round < 3; round++) {
      const go = path.join(dir, `go-${round}`);
      const jobs = [0, 1, 2].map((k) => {
        const model = path.join(dir, `r${round}-${k}.safetensors`);
        fs.writeFileSync(
          model,
          buildSafetensors([
            { name: 'w', dtype: 'BF16', shape: [96, 128], data: fineTune(data, 0.05, round * 10 + k) },
          ]),
        );
        return {
          model,
          message: `round ${round} job ${k}`,
          result: committer(repo.root, model, `round ${round} job ${k}`, go),
        };
      });
      await new Promise((r) => setTimeout(r, 1500)); // let every child load and wait at the barrier
      fs.writeFileSync(go, '');
      for (const j of jobs) {
        const r = await j.result;
        if (r.ok) landed.push(r.commit!);
        else {
          assert.ok(r.code === 'E_BRANCH_MOVED' || r.code === 'E_LOCKED', JSON.stringify(r));
          failures.push(r.code!);
          // Nothing is lost: re-running the failed commit succeeds.
          landed.push((await repo.commit({ path: j.model, message: j.message })).commit);
        }
      }
    }
    // The branch is one linear chain holding every landed commit exactly once.
    const log = await repo.log('main');
    assert.equal(log.length, landed.length + 1);
    assert.deepEqual(new Set(log.slice(0, -1).map((c) => c.commit)), new Set(landed));
    for (let i = 0; i < log.length - 1; i++) assert.deepEqual(log[i].parents, [log[i + 1].commit]);
    const reflog = fs.readFileSync(path.join(repo.gitdir, 'logs/refs/heads/main'), 'utf8').trim().split('\n');
    assert.equal(reflog.length, landed.length + 1);
    const f = await repo.fsck();
    assert.deepEqual(f.problems, []);
    process.stderr.write(
      `# concurrency: ${landed.length} commits, ${failures.length} refused first (${failures.join(', ')})\n`,
    );
  });
});
