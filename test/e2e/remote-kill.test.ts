import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Repository, remotes } from '../../packages/store/src/index.js';
import { gitFsck, lineage, STORE_DIST, snapshot } from './remote-helpers.js';

/**
 * Kills a push and a fetch (real processes, SIGKILL) at random points, then
 * runs them again: the re-run sends only what is still missing, both
 * repositories pass wgit fsck and git fsck, and they end identical (same
 * chunks, objects and refs). A killed push never leaves a remote ref naming
 * a missing object.
 */
const TRIALS = Number(process.env.WGIT_KILL_TRIALS ?? 20);

const CHILD = `const [dist, dir, op] = process.argv.slice(2);
const { Repository, remotes } = await import(dist);
const repo = await Repository.open(dir);
process.stdout.write('go\\n');
if (op === 'push') await remotes.pushToRemote(repo, 'origin', [], { all: true, tags: true });
else await remotes.fetchFromRemote(repo, 'origin');
process.stdout.write('done\\n');`;

describe('killed transfers resume', () => {
  let tmp: string;
  let src: Repository;
  let script: string;
  let full: ReturnType<typeof snapshot>;
  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-kill-'));
    process.env.WGIT_AUTHOR_DATE = '1700000000';
    process.env.WGIT_REMOTE_PARALLEL = '4';
    const models = lineage(tmp, 2, { tensors: 8, elems: 96 * 1024 });
    src = await Repository.init(path.join(tmp, 'src'), { chunkSize: 16384 });
    await src.commit({ path: models[0], message: 'base' });
    await src.createTag('v0');
    await src.commit({ path: models[1], message: 'fine-tune' });
    full = snapshot(src.gitdir);
    script = path.join(tmp, 'child.mjs');
    fs.writeFileSync(script, CHILD);
  });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  /** Starts the child, kills it `delayMs` after it starts transferring; true when it finished first. */
  const runKilled = (dir: string, op: string, delayMs: number) =>
    new Promise<boolean>((resolve) => {
      const p = spawn(process.execPath, [script, `file://${STORE_DIST}`, dir, op], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      let out = '';
      p.stdout.on('data', async (d) => {
        out += d;
        if (out === 'go\n') {
          await sleep(delayMs);
          p.kill('SIGKILL');
        }
      });
      p.on('exit', () => resolve(out.includes('done')));
    });

  const sameRepos = (a: string, b: string) => {
    const x = snapshot(a);
    const y = snapshot(b);
    assert.deepEqual(x.chunks, y.chunks);
    assert.deepEqual(x.objects, y.objects);
    assert.deepEqual(x.refs, y.refs);
  };

  it(`push killed at random points, ${TRIALS} trials`, async () => {
    let interrupted = 0;
    for (let t = 0; t < TRIALS; t++) {
      const remoteDir = path.join(tmp, `push-remote-${t}`);
      const rs = await remotes.listRemotes(src);
      if (rs.length) await remotes.removeRemote(src, 'origin');
      await remotes.addRemote(src, 'origin', remoteDir);
      const finished = await runKilled(src.root, 'push', Math.random() * 400);
      if (!finished) interrupted++;
      const gitdir = path.join(remoteDir, '.wgit');
      const mid = snapshot(gitdir);
      // Whatever ref the killed push moved names a complete history.
      if (Object.keys(mid.refs).length > 0) assert.equal((await (await Repository.open(remoteDir)).fsck()).ok, true);
      const r = await remotes.pushToRemote(src, 'origin', [], { all: true, tags: true });
      assert.ok(r.sent.chunks <= full.chunks.length - mid.chunks.length, 'only what was missing is sent');
      sameRepos(src.gitdir, gitdir);
      assert.equal((await (await Repository.open(remoteDir)).fsck()).ok, true);
      gitFsck(gitdir);
    }
    assert.ok(interrupted >= TRIALS / 4, `${interrupted} of ${TRIALS} pushes were interrupted`);
  });

  it(`fetch killed at random points, ${TRIALS} trials`, async () => {
    let interrupted = 0;
    for (let t = 0; t < TRIALS; t++) {
      const dst = await Repository.init(path.join(tmp, `fetch-${t}`));
      await remotes.addRemote(dst, 'origin', src.root);
      const finished = await runKilled(dst.root, 'fetch', Math.random() * 400);
      if (!finished) interrupted++;
      const mid = snapshot(dst.gitdir);
      const r = await remotes.fetchFromRemote(dst, 'origin');
      assert.ok(r.received.chunks <= full.chunks.length - mid.chunks.length, 'only what was missing is fetched');
      assert.equal((await dst.fsck()).ok, true);
      gitFsck(dst.gitdir);
      const got = snapshot(dst.gitdir);
      assert.deepEqual(got.chunks, full.chunks);
      assert.deepEqual(got.objects, full.objects);
      assert.equal(await dst.refs.readRef('refs/remotes/origin/main'), full.refs['refs/heads/main']);
      assert.equal(await dst.refs.readRef('refs/tags/v0'), full.refs['refs/tags/v0']);
    }
    assert.ok(interrupted >= TRIALS / 4, `${interrupted} of ${TRIALS} fetches were interrupted`);
  });
});
