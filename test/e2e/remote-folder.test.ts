import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { gitFsck, lineage, ok, snapshot, wgit } from './remote-helpers.js';

/**
 * Folder remotes through the built CLI: push to a new folder, incremental
 * push of a fine-tune, clone back byte for byte, fast-forward rules on push
 * and pull, hostile remotes (corrupt chunk, missing object), credentials in
 * URLs refused. Oracles: the original safetensors bytes, Debian git's fsck,
 * plain directory listings.
 */
describe('folder remotes', () => {
  let tmp: string;
  let models: string[];
  before(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-remote-'));
    models = lineage(tmp, 3);
  });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  const repoDir = (n: string) => path.join(tmp, n);

  it('pushes to a new folder, sends only the fine-tune next time, and clones back byte for byte', async () => {
    const a = repoDir('a');
    await ok(tmp, ['init', a, '--chunk-size', '65536']);
    await ok(a, ['commit', models[0], '-m', 'base']);
    await ok(a, ['tag', 'v0']);
    await ok(a, ['remote', 'add', 'origin', repoDir('remote')]);
    const p1 = (await ok(a, ['push', 'origin', 'main', 'v0'])) as { sent: { chunks: number }; updates: unknown[] };
    assert.equal(p1.updates.length, 2);
    const base = snapshot(path.join(a, '.wgit'));
    assert.equal(p1.sent.chunks, base.chunks.length);
    gitFsck(path.join(repoDir('remote'), '.wgit'));
    assert.deepEqual(snapshot(path.join(repoDir('remote'), '.wgit')).refs, base.refs);

    await ok(a, ['commit', models[1], '-m', 'fine-tune']);
    const after1 = snapshot(path.join(a, '.wgit'));
    const newChunks = after1.chunks.filter((c) => !base.chunks.includes(c));
    const newObjects = after1.objects.filter((o) => !base.objects.includes(o));
    const p2 = (await ok(a, ['push'])) as { sent: { chunks: number; objects: number }; updates: { status: string }[] };
    assert.equal(p2.sent.chunks, newChunks.length, 'only the fine-tune’s new chunks go up');
    assert.equal(p2.sent.objects, newObjects.length);
    assert.equal(p2.updates[0].status, 'fast-forward');
    const again = (await ok(a, ['push'])) as { sent: { chunks: number }; updates: { status: string }[] };
    assert.equal(again.sent.chunks, 0);
    assert.equal(again.updates[0].status, 'up-to-date');
    gitFsck(path.join(repoDir('remote'), '.wgit'));
    assert.equal(((await ok(repoDir('remote'), ['fsck'])) as { ok: boolean }).ok, true);

    const c = await ok(tmp, ['clone', repoDir('remote'), repoDir('b')]);
    assert.equal(c.branch, 'main');
    const b = repoDir('b');
    for (const [rev, model] of [
      ['main', models[1]],
      ['main~1', models[0]],
      ['v0', models[0]],
      ['origin/main', models[1]],
    ]) {
      const out = path.join(tmp, `out-${rev.replace(/\W/g, '_')}`);
      await ok(b, ['checkout', rev, '--out', out]);
      const file = path.join(out, path.basename(model));
      assert.ok(Buffer.from(fs.readFileSync(file)).equals(fs.readFileSync(model)), `${rev} is byte-exact`);
    }
    assert.equal(((await ok(b, ['fsck'])) as { ok: boolean }).ok, true);
    assert.deepEqual(snapshot(path.join(b, '.wgit')).chunks, after1.chunks);
  });

  it('refuses a stale push and a diverged pull unless forced', async () => {
    const a = repoDir('a');
    const b = repoDir('b');
    await ok(b, ['commit', models[2], '-m', 'from b']);
    await ok(b, ['push']);
    await ok(a, ['commit', models[2], '-m', 'from a']);
    const remoteBefore = snapshot(path.join(repoDir('remote'), '.wgit')).refs;
    const stale = await wgit(a, ['push']);
    assert.equal(stale.code, 1);
    assert.equal(stale.json.error?.code, 'E_NON_FAST_FORWARD');
    assert.deepEqual(snapshot(path.join(repoDir('remote'), '.wgit')).refs, remoteBefore, 'the remote did not move');
    const pull = await wgit(a, ['pull']);
    assert.equal(pull.json.error?.code, 'E_NON_FAST_FORWARD');
    const forced = (await ok(a, ['push', '--force'])) as { updates: { status: string }[] };
    assert.equal(forced.updates[0].status, 'forced');
    const pb = (await ok(b, ['pull', '--force'])) as { status: string };
    assert.equal(pb.status, 'forced');
    await ok(b, ['commit', models[0], '-m', 'b on top']);
    await ok(b, ['push']);
    const pa = (await ok(a, ['pull'])) as { status: string; new: string };
    assert.equal(pa.status, 'fast-forward');
    assert.equal(pa.new, snapshot(path.join(repoDir('remote'), '.wgit')).refs['refs/heads/main']);
  });

  it('clone --depth 1 fetches only the chunks the tip needs and checks it out byte for byte', async () => {
    const d = repoDir('shallow');
    await ok(tmp, ['clone', repoDir('remote'), d, '--depth', '1']);
    const remote = snapshot(path.join(repoDir('remote'), '.wgit'));
    const local = snapshot(path.join(d, '.wgit'));
    assert.ok(local.chunks.length < remote.chunks.length, `${local.chunks.length} < ${remote.chunks.length}`);
    const out = path.join(tmp, 'out-shallow');
    await ok(d, ['checkout', 'main', '--out', out]);
    const full = path.join(tmp, 'out-full');
    await ok(repoDir('a'), ['checkout', 'main', '--out', full]);
    for (const f of fs.readdirSync(full))
      assert.ok(fs.readFileSync(path.join(out, f)).equals(fs.readFileSync(path.join(full, f))), f);

    // fsck knows the older commits' chunks are absent on purpose (the marker clone wrote) …
    const fk = await ok(d, ['fsck']);
    const sh = fk.shallow as { complete: string[]; tensorsWithoutChunks: number };
    assert.equal(fk.ok, true);
    assert.ok(sh.tensorsWithoutChunks > 0, JSON.stringify(sh));
    assert.ok(sh.complete.includes(local.refs['refs/heads/main']), JSON.stringify(sh));
    assert.match((fk.warnings as string[]).join('\n'), /shallow clone/);
    // … but a chunk the tip needs is still damage.
    const broken = repoDir('shallow-broken');
    fs.cpSync(d, broken, { recursive: true });
    const victim = local.chunks[0];
    fs.rmSync(path.join(broken, '.wgit', 'wgit', 'chunks', victim.slice(0, 2), victim.slice(2)));
    const bad = await wgit(broken, ['fsck']);
    assert.equal(bad.code, 1);
    assert.equal(bad.json.ok, false);
    assert.ok(
      (bad.json.problems as { code: string }[]).some((p) => p.code === 'E_MISSING_CHUNK'),
      JSON.stringify(bad.json.problems),
    );
    // A full fetch brings the rest and drops the marker.
    await ok(d, ['fetch']);
    await ok(tmp, ['clone', repoDir('remote'), repoDir('deep')]);
    assert.deepEqual(snapshot(path.join(d, '.wgit')).chunks, snapshot(path.join(repoDir('deep'), '.wgit')).chunks);
    assert.equal(fs.existsSync(path.join(d, '.wgit', 'wgit', 'shallow.json')), false);
    const full2 = await ok(d, ['fsck']);
    assert.equal(full2.ok, true);
    assert.equal(full2.shallow, undefined);
  });

  it('reports a corrupt or missing remote chunk or object by name, and nothing enters', async () => {
    const src = repoDir('bad-remote');
    fs.cpSync(repoDir('remote'), src, { recursive: true });
    const snap = snapshot(path.join(src, '.wgit'));
    const victim = snap.chunks[3];
    const file = path.join(src, '.wgit', 'wgit', 'chunks', victim.slice(0, 2), victim.slice(2));
    const bytes = fs.readFileSync(file);
    bytes[bytes.length - 5] ^= 0xff;
    fs.writeFileSync(file, bytes);
    const r = await wgit(tmp, ['clone', src, repoDir('c1')]);
    assert.equal(r.json.error?.code, 'E_REMOTE_CORRUPT');
    assert.match(r.json.error?.message ?? '', new RegExp(victim));
    assert.equal(fs.existsSync(repoDir('c1')), false, 'a failed clone leaves nothing');

    // Into an existing repository: the tracking ref stays unset and the bad chunk never lands.
    const c2 = repoDir('c2');
    await ok(tmp, ['init', c2]);
    await ok(c2, ['remote', 'add', 'origin', src]);
    const f = await wgit(c2, ['fetch']);
    assert.equal(f.json.error?.code, 'E_REMOTE_CORRUPT');
    const local = snapshot(path.join(c2, '.wgit'));
    assert.equal(local.chunks.includes(victim), false);
    assert.equal(fs.existsSync(path.join(c2, '.wgit', 'refs', 'remotes')), false);

    fs.writeFileSync(
      file,
      fs.readFileSync(path.join(repoDir('remote'), '.wgit', 'wgit', 'chunks', victim.slice(0, 2), victim.slice(2))),
    );
    const blob = spawnSync('git', [`--git-dir=${path.join(src, '.wgit')}`, 'rev-parse', 'main^{tree}'], {
      encoding: 'utf8',
    }).stdout.trim();
    assert.match(blob, /^[0-9a-f]{40}$/);
    fs.rmSync(path.join(src, '.wgit', 'objects', blob.slice(0, 2), blob.slice(2)));
    const c3 = repoDir('c3');
    const m = await wgit(tmp, ['clone', src, c3]);
    assert.equal(m.json.error?.code, 'E_REMOTE_CORRUPT');
    assert.match(m.json.error?.message ?? '', new RegExp(`${blob}.*missing`));
  });

  it('refuses URLs with credentials and never prints them', async () => {
    const a = repoDir('a');
    for (const url of [
      's3://AKIAEXAMPLE:hunter2secret@bucket/prefix',
      's3://bucket/prefix?X-Amz-Signature=hunter2secret',
      'https://user:hunter2secret@example.com/x',
    ]) {
      const r = await wgit(a, ['remote', 'add', 'leak', url]);
      assert.equal(r.json.error?.code, 'E_REMOTE_URL', url);
      assert.doesNotMatch(r.stdout + r.stderr, /hunter2secret/);
    }
    const e = await wgit(a, [
      'remote',
      'add',
      's3r',
      's3://bucket/p',
      '--endpoint',
      'http://k:hunter2secret@127.0.0.1:1',
    ]);
    assert.equal(e.json.error?.code, 'E_REMOTE_URL');
    assert.doesNotMatch(e.stdout + e.stderr, /hunter2secret/);
    const list = await wgit(a, ['remote', 'list', '-v']);
    assert.doesNotMatch(list.stdout, /hunter2secret|leak/);
    assert.doesNotMatch(fs.readFileSync(path.join(a, '.wgit', 'wgit', 'remotes.json'), 'utf8'), /hunter2secret/);
    const u = await wgit(a, ['push', 'nowhere']);
    assert.equal(u.json.error?.code, 'E_UNKNOWN_REMOTE');
  });

  it('push --delete removes a remote branch or tag by compare-and-swap, and keeps the HEAD branch unless forced', async () => {
    const a = repoDir('a');
    const remoteGit = path.join(repoDir('remote'), '.wgit');
    const remoteRefs = () =>
      spawnSync('git', [`--git-dir=${remoteGit}`, 'for-each-ref', '--format=%(refname)'], { encoding: 'utf8' })
        .stdout.trim()
        .split('\n');
    await ok(a, ['branch', 'old-experiment', 'main~1']);
    await ok(a, ['tag', 'v-old', 'main~1']);
    await ok(a, ['push', 'origin', 'old-experiment', 'v-old']);
    assert.ok(remoteRefs().includes('refs/heads/old-experiment'));
    assert.ok(fs.existsSync(path.join(a, '.wgit', 'refs', 'remotes', 'origin', 'old-experiment')));

    const d = await ok(a, ['push', 'origin', '--delete', 'old-experiment', 'v-old']);
    assert.deepEqual(
      (d.deleted as { ref: string }[]).map((x) => x.ref),
      ['refs/heads/old-experiment', 'refs/tags/v-old'],
    );
    assert.ok(!remoteRefs().includes('refs/heads/old-experiment'), remoteRefs().join(' '));
    assert.ok(!remoteRefs().includes('refs/tags/v-old'));
    assert.ok(remoteRefs().includes('refs/heads/main'));
    assert.equal(fs.existsSync(path.join(a, '.wgit', 'refs', 'remotes', 'origin', 'old-experiment')), false);
    gitFsck(remoteGit);

    const gone = await wgit(a, ['push', 'origin', '--delete', 'old-experiment']);
    assert.equal(gone.json.error?.code, 'E_REMOTE_REF_NOT_FOUND');
    const head = await wgit(a, ['push', 'origin', '--delete', 'main']);
    assert.equal(head.json.error?.code, 'E_CURRENT_BRANCH');
    assert.ok(remoteRefs().includes('refs/heads/main'), 'the HEAD branch stays');
  });
});
