import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Repository, remotes } from '../../packages/store/src/index.js';
import { S3Store } from '../../packages/store/src/remote/s3-client.js';
import { listUploads } from '../../packages/store/src/remote/s3-multipart.js';
import { BIN, gitFsck, lineage, ok, snapshot } from './remote-helpers.js';
import { S3_ENV, startProxy, startS3 } from './s3-harness.js';

/**
 * Multipart uploads (made small here: objects over 64 KiB, 16 KiB parts) that
 * a killed or failed push leaves in progress are aborted by the next push
 * from the same repository, and the remote ends whole. Oracles: the
 * server's own listing of uploads in progress, s3rver's upload folders on
 * disk, a CLI clone compared byte for byte, wgit fsck and git fsck.
 */
describe('S3 multipart uploads left by an interrupted push', { timeout: 200_000 }, () => {
  let tmp: string;
  let s3: Awaited<ReturnType<typeof startS3>>;
  let models: string[];
  const saved = { ...process.env };
  const MP = { WGIT_S3_MULTIPART_THRESHOLD: '65536', WGIT_S3_MULTIPART_PART: '16384' };

  before(
    async () => {
      tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-s3mp-'));
      Object.assign(process.env, S3_ENV, MP, { WGIT_AUTHOR_DATE: '1700000000' });
      s3 = await startS3(path.join(tmp, 's3'));
      models = lineage(tmp, 1, { tensors: 2, elems: 512 * 1024 });
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

  const inProgress = (prefix: string) =>
    listUploads(
      new S3Store({ name: 'x', url: `s3://wgit/${prefix}`, endpoint: s3.url }, 'wgit', prefix).client,
      'wgit',
      `${prefix}/`,
    );
  /** s3rver keeps each upload in progress as a folder: an oracle apart from the S3 API. */
  const uploadFolders = () => {
    const d = path.join(tmp, 's3', 'wgit', '._S3rver_uploads');
    return fs.existsSync(d) ? fs.readdirSync(d) : [];
  };
  const journal = (dir: string) => {
    const d = path.join(dir, '.wgit', 'wgit', 's3-uploads');
    return fs.existsSync(d) ? fs.readdirSync(d).filter((f) => f.endsWith('.json')) : [];
  };
  const cloneMatches = async (prefix: string, local: Repository) => {
    const dst = path.join(tmp, `clone-${prefix}`);
    await ok(tmp, ['clone', `s3://wgit/${prefix}`, dst, '--endpoint', s3.url]);
    const c = await Repository.open(dst);
    const out = path.join(tmp, `out-${prefix}`);
    await c.checkout('main', out);
    const f = path.basename(models[0]);
    assert.ok(fs.readFileSync(path.join(out, f)).equals(fs.readFileSync(models[0])), 'clone is byte-identical');
    assert.deepEqual(snapshot(c.gitdir).chunks, snapshot(local.gitdir).chunks);
    assert.equal((await c.fsck()).ok, true);
    gitFsck(c.gitdir);
  };

  it('a push killed mid-upload leaves uploads in progress; the next push aborts exactly those', {
    timeout: 150_000,
  }, async () => {
    const dir = path.join(tmp, 'killed');
    const repo = await Repository.init(dir, { chunkSize: 256 * 1024 });
    await repo.commit({ path: models[0], message: 'base' });
    const chunkSizes = snapshot(repo.gitdir).chunks.map(
      (id) => fs.statSync(path.join(repo.gitdir, 'wgit', 'chunks', id.slice(0, 2), id.slice(2))).size,
    );
    assert.ok(chunkSizes.filter((n) => n > 65536).length >= 2, `chunks go up in parts (${chunkSizes})`);
    const proxy = await startProxy(s3.url);
    try {
      proxy.mode = { kind: 'stall-parts', after: 3 };
      await remotes.addRemote(repo, 'origin', 's3://wgit/killed', { endpoint: proxy.url });
      const child = spawn(process.execPath, [BIN, 'push', 'origin', 'main', '--json'], {
        cwd: dir,
        env: { ...process.env },
        stdio: 'ignore',
      });
      const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
      const deadline = Date.now() + 60_000;
      while (proxy.stalled < 2 && Date.now() < deadline) await sleep(50);
      assert.ok(proxy.stalled >= 2, 'the push reached the part uploads');
      child.kill('SIGKILL');
      assert.equal(await exited, null);

      const left = await inProgress('killed');
      assert.ok(left.length >= 2, `uploads left in progress: ${left.length}`);
      assert.equal(uploadFolders().length, left.length);
      assert.equal(journal(dir).length, left.length, 'each upload was journalled before it started');
      const { remote } = await remotes.open(repo, 'origin');
      assert.equal(await remote.backend.refs.readRef('refs/heads/main'), null, 'no ref moved');

      proxy.mode = { kind: 'none' };
      const again = await ok(dir, ['push', 'origin', 'main']);
      assert.equal(again.abortedUploads, left.length);
      assert.deepEqual(await inProgress('killed'), []);
      assert.deepEqual(uploadFolders(), []);
      assert.deepEqual(journal(dir), []);
      await cloneMatches('killed', repo);
    } finally {
      await proxy.close();
    }
  });

  it('an upload whose id never came back (answer lost) is found by its key and aborted', {
    timeout: 100_000,
  }, async () => {
    const dir = path.join(tmp, 'lost');
    const repo = await Repository.init(dir, { chunkSize: 256 * 1024 });
    await repo.commit({ path: models[0], message: 'base' });
    const proxy = await startProxy(s3.url);
    try {
      await remotes.addRemote(repo, 'origin', 's3://wgit/lost', { endpoint: proxy.url });
      proxy.mode = { kind: 'swallow-creates' };
      process.env.WGIT_S3_MAX_ATTEMPTS = '2';
      await assert.rejects(remotes.pushToRemote(repo, 'origin', []), { code: 'E_REMOTE_UNAVAILABLE' });
      process.env.WGIT_S3_MAX_ATTEMPTS = S3_ENV.WGIT_S3_MAX_ATTEMPTS;
      const left = await inProgress('lost');
      assert.ok(left.length >= 1 && proxy.faults >= left.length, `created, answer lost: ${left.length}`);
      assert.ok(journal(dir).length >= 1, 'the intent was journalled');

      proxy.mode = { kind: 'none' };
      const r = await remotes.pushToRemote(repo, 'origin', []);
      assert.equal(r.abortedUploads, left.length);
      assert.equal(r.updates[0].status, 'created');
      assert.deepEqual(await inProgress('lost'), []);
      assert.deepEqual(uploadFolders(), []);
      assert.deepEqual(journal(dir), []);
      await cloneMatches('lost', repo);
    } finally {
      await proxy.close();
    }
  });
});
