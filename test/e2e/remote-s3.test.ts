import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Repository, remotes } from '../../packages/store/src/index.js';
import { PreconditionFailed, S3Store } from '../../packages/store/src/remote/s3-client.js';
import { lineage, ok, STORE_DIST, snapshot, wgit } from './remote-helpers.js';
import { S3_ENV, startProxy, startS3 } from './s3-harness.js';

/**
 * S3 remotes against a real S3-compatible server (s3rver) on loopback: the
 * probe (s3rver ignores conditional writes, so refs move under lock
 * objects), the conditional path through our proxy that honours them,
 * concurrent pushers in two processes, and injected faults (500, SlowDown,
 * dropped uploads): retried with backoff, then a clear error, never a ref
 * naming a missing object.
 */
describe('S3 remotes', { timeout: 240_000 }, () => {
  let tmp: string;
  let s3: Awaited<ReturnType<typeof startS3>>;
  let models: string[];
  let src: Repository;
  const saved = { ...process.env };

  before(
    async () => {
      tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-s3-'));
      Object.assign(process.env, S3_ENV, { WGIT_AUTHOR_DATE: '1700000000' });
      s3 = await startS3(path.join(tmp, 's3'));
      models = lineage(tmp, 3);
      src = await Repository.init(path.join(tmp, 'src'), { chunkSize: 65536 });
      await src.commit({ path: models[0], message: 'base' });
      await src.commit({ path: models[1], message: 'fine-tune' });
    },
    { timeout: 60_000 },
  );
  after(
    async () => {
      await s3.close();
      process.env = saved;
      fs.rmSync(tmp, { recursive: true, force: true });
    },
    { timeout: 30_000 },
  );

  const checkoutEquals = async (repo: Repository, rev: string, model: string) => {
    const out = fs.mkdtempSync(path.join(tmp, 'out-'));
    await repo.checkout(rev, out);
    assert.ok(fs.readFileSync(path.join(out, path.basename(model))).equals(fs.readFileSync(model)), rev);
  };

  it('probes s3rver, records that it ignores conditional writes, pushes and clones back byte for byte', {
    timeout: 120_000,
  }, async () => {
    await remotes.addRemote(src, 'origin', 's3://wgit/team/models', { endpoint: s3.url });
    const r = await remotes.pushToRemote(src, 'origin', []);
    assert.equal(r.updates[0].status, 'created');
    const cfg = (await remotes.listRemotes(src))[0];
    assert.equal(cfg.capabilities?.conditionalWrites, false, 's3rver overwrites despite If-None-Match');
    const local = snapshot(src.gitdir);
    assert.equal(r.sent.chunks, local.chunks.length);

    // The CLI clones it back (credentials only in the environment).
    const cl = await wgit(tmp, ['clone', 's3://wgit/team/models', path.join(tmp, 'c1'), '--endpoint', s3.url], S3_ENV);
    assert.equal(cl.code, 0, cl.stdout + cl.stderr);
    const c1 = await Repository.open(path.join(tmp, 'c1'));
    await checkoutEquals(c1, 'main', models[1]);
    await checkoutEquals(c1, 'main~1', models[0]);
    assert.deepEqual(snapshot(c1.gitdir).chunks, local.chunks);
    assert.equal((await c1.fsck()).ok, true);
    const show = await ok(path.join(tmp, 'c1'), ['remote', 'show', 'origin'], S3_ENV);
    assert.doesNotMatch(JSON.stringify(show), /S3RVER/);

    // A stale push is refused; nothing moves.
    await c1.commit({ path: models[2], message: 'c1' });
    await remotes.pushToRemote(c1, 'origin', []);
    await src.commit({ path: models[2], message: 'src diverges' });
    await assert.rejects(remotes.pushToRemote(src, 'origin', []), { code: 'E_NON_FAST_FORWARD' });
    const f = await remotes.fetchFromRemote(src, 'origin');
    assert.equal(f.branches[0].new, await c1.refs.readRef('refs/heads/main'));
  });

  it('moves refs by conditional PUT where the server honours it (our proxy)', { timeout: 120_000 }, async () => {
    const proxy = await startProxy(s3.url, { conditional: true });
    try {
      const a = await Repository.init(path.join(tmp, 'cond-a'), { chunkSize: 65536 });
      await a.commit({ path: models[0], message: 'base' });
      await remotes.addRemote(a, 'origin', 's3://wgit/cond', { endpoint: proxy.url });
      await remotes.pushToRemote(a, 'origin', []);
      assert.equal((await remotes.listRemotes(a))[0].capabilities?.conditionalWrites, true);
      const { remote } = await remotes.open(a, 'origin');
      const tip = (await a.refs.readRef('refs/heads/main'))!;
      const id = { message: 't', identity: { name: 't', email: 't@t', timestamp: 0, timezoneOffset: 0 } };
      // Compare-and-swap from a stale value is refused by the server's 412.
      await assert.rejects(remote.backend.refs.compareAndSwapRef('refs/heads/main', null, tip, id), {
        code: 'E_BRANCH_MOVED',
      });
      await a.commit({ path: models[1], message: 'ft' });
      const r = await remotes.pushToRemote(a, 'origin', []);
      assert.equal(r.updates[0].status, 'fast-forward');
      assert.equal(await remote.backend.refs.readRef('refs/heads/main'), await a.refs.readRef('refs/heads/main'));

      // Deleting is conditional too: a DELETE with an ETag the ref no longer has is refused (412) …
      const store = new S3Store({ name: 'x', url: 's3://wgit/cond', endpoint: proxy.url }, 'wgit', 'cond');
      await assert.rejects(
        store.delete('refs/heads/main', { ifMatch: '"00000000000000000000000000000000"' }),
        PreconditionFailed,
      );
      assert.equal(await remote.backend.refs.readRef('refs/heads/main'), await a.refs.readRef('refs/heads/main'));
      // … and push --delete, through the CLI, removes a branch at the value it read.
      await a.createBranch('gone', 'main~1');
      await remotes.pushToRemote(a, 'origin', ['gone']);
      const d = await ok(a.gitdir.replace(/\/\.wgit$/, ''), ['push', 'origin', '--delete', 'gone'], S3_ENV);
      assert.deepEqual(
        (d.deleted as { ref: string }[]).map((x) => x.ref),
        ['refs/heads/gone'],
      );
      assert.equal(await remote.backend.refs.readRef('refs/heads/gone'), null);
      assert.equal(await a.refs.readRef('refs/remotes/origin/gone'), null);
    } finally {
      await proxy.close();
    }
  });

  it('retries 500s, SlowDown and dropped uploads, then fails clearly with nothing half-written', {
    timeout: 120_000,
  }, async () => {
    const proxy = await startProxy(s3.url);
    try {
      for (const [i, mode] of [
        { kind: 'status', every: 3, status: 503, code: 'SlowDown' },
        { kind: 'status', every: 4, status: 500, code: 'InternalError' },
        { kind: 'drop', every: 3 },
      ].entries()) {
        proxy.mode = mode as never;
        const before = proxy.faults;
        const a = await Repository.init(path.join(tmp, `fault-${i}`), { chunkSize: 65536 });
        await a.commit({ path: models[0], message: 'base' });
        await remotes.addRemote(a, 'origin', `s3://wgit/fault-${i}`, { endpoint: proxy.url });
        const r = await remotes.pushToRemote(a, 'origin', []);
        assert.equal(r.updates[0].status, 'created');
        assert.ok(proxy.faults > before, `faults were injected (${JSON.stringify(mode)})`);
        proxy.mode = { kind: 'none' };
        const back = await Repository.init(path.join(tmp, `fault-back-${i}`));
        await remotes.addRemote(back, 'origin', `s3://wgit/fault-${i}`, { endpoint: s3.url });
        await remotes.fetchFromRemote(back, 'origin');
        await checkoutEquals(back, 'origin/main', models[0]);
      }
      // A server that always fails: a clear error after the retries, and no ref on the remote.
      proxy.mode = { kind: 'status', every: 1, status: 503, code: 'SlowDown' };
      const a = await Repository.init(path.join(tmp, 'fault-down'), { chunkSize: 65536 });
      await a.commit({ path: models[0], message: 'base' });
      await remotes.addRemote(a, 'origin', 's3://wgit/fault-down', { endpoint: proxy.url });
      process.env.WGIT_S3_MAX_ATTEMPTS = '2';
      await assert.rejects(remotes.pushToRemote(a, 'origin', []), (e: Error & { code?: string }) => {
        assert.equal(e.code, 'E_REMOTE_UNAVAILABLE');
        assert.match(e.message, /s3:\/\/wgit\/fault-down/);
        assert.doesNotMatch(e.message, /S3RVER/);
        return true;
      });
      process.env.WGIT_S3_MAX_ATTEMPTS = S3_ENV.WGIT_S3_MAX_ATTEMPTS;
      proxy.mode = { kind: 'none' };
      const { remote } = await remotes.open(a, 'origin');
      assert.equal(await remote.backend.refs.readRef('refs/heads/main'), null);
    } finally {
      await proxy.close();
    }
  });

  it('two processes pushing to one branch under lock objects never lose a commit', { timeout: 120_000 }, async () => {
    const seed = await Repository.init(path.join(tmp, 'race-seed'), { chunkSize: 65536 });
    await seed.commit({ path: models[0], message: 'base' });
    await remotes.addRemote(seed, 'origin', 's3://wgit/race', { endpoint: s3.url });
    await remotes.pushToRemote(seed, 'origin', []);
    const ROUNDS = 4;
    const child = `const [dist, dir, url, endpoint, model, k, rounds] = process.argv.slice(2);
const { Repository, remotes } = await import(dist);
const repo = await Repository.init(dir);
await remotes.addRemote(repo, 'origin', url, { endpoint });
await remotes.pullFromRemote(repo, 'origin');
const landed = [];
for (let i = 0; i < Number(rounds); i++) {
  for (let attempt = 0; ; attempt++) {
    const c = await repo.commit({ path: model, message: 'writer ' + k + ' round ' + i + ' try ' + attempt });
    try { await remotes.pushToRemote(repo, 'origin', []); landed.push(c.commit); break; }
    catch (e) { if (e.code !== 'E_NON_FAST_FORWARD') throw e; await remotes.pullFromRemote(repo, 'origin', { force: true }); }
  }
}
console.log(JSON.stringify(landed));`;
    const script = path.join(tmp, 'pusher.mjs');
    fs.writeFileSync(script, child);
    const runChild = (k: number) =>
      new Promise<string[]>((resolve, reject) => {
        const p = spawn(
          process.execPath,
          [
            script,
            `file://${STORE_DIST}`,
            path.join(tmp, `race-${k}`),
            's3://wgit/race',
            s3.url,
            models[k],
            String(k),
            String(ROUNDS),
          ],
          { env: process.env, stdio: ['ignore', 'pipe', 'pipe'] },
        );
        let out = '';
        let err = '';
        p.stdout.on('data', (d) => {
          out += d;
        });
        p.stderr.on('data', (d) => {
          err += d;
        });
        // A pusher that hangs is killed; the test then fails with what it printed.
        const timer = setTimeout(() => p.kill('SIGKILL'), 90_000);
        p.on('exit', (code) => {
          clearTimeout(timer);
          if (code === 0) resolve(JSON.parse(out));
          else reject(new Error(`pusher ${k} (exit ${code}): ${err}`));
        });
      });
    const [l1, l2] = await Promise.all([runChild(1), runChild(2)]);
    assert.equal(l1.length + l2.length, 2 * ROUNDS);
    const f = await remotes.fetchFromRemote(seed, 'origin');
    const tip = f.branches.find((b) => b.branch === 'main')!.new;
    const history = new Set((await seed.log(tip)).map((e) => e.commit));
    for (const c of [...l1, ...l2]) assert.ok(history.has(c), `landed commit ${c} is in the remote's history`);
    assert.equal((await seed.fsck()).ok, true);
  });
});
