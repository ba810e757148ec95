import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { LockFile } from '../src/backend/fs/lock.js';
import { readRef, readReflog, updateRef } from '../src/backend/fs/refs.js';
import { HOST } from '../src/fsutil.js';
import type { Identity } from '../src/identity.js';
import { formatTz } from '../src/identity.js';
import { codeOf } from './helpers.js';

const id: Identity = { name: 'T', email: 't@x', timestamp: 1700000000, timezoneOffset: -90 };
const A = 'a'.repeat(40);
const B = 'b'.repeat(40);
const C = 'c'.repeat(40);

describe('refs', () => {
  let dir: string;
  let ctx: { gitdir: string; tmpDir: string; lockWaitMs: number };
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-'));
    fs.mkdirSync(path.join(dir, 'tmp'));
    ctx = { gitdir: dir, tmpDir: path.join(dir, 'tmp'), lockWaitMs: 200 };
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('formats time zones the way git does', () => {
    assert.equal(formatTz(-90), '+0130');
    assert.equal(formatTz(300), '-0500');
    assert.equal(formatTz(0), '+0000');
  });

  it('creates, compares-and-swaps and logs a ref in git format', async () => {
    assert.equal(await updateRef(ctx, 'refs/heads/main', A, { expectedOld: null, message: 'one', identity: id }), null);
    assert.equal(fs.readFileSync(path.join(dir, 'refs/heads/main'), 'utf8'), `${A}\n`);
    assert.equal(
      await codeOf(updateRef(ctx, 'refs/heads/main', B, { expectedOld: C, message: 'x', identity: id })),
      'E_BRANCH_MOVED',
    );
    assert.equal(await readRef(dir, 'refs/heads/main'), A);
    await updateRef(ctx, 'refs/heads/main', B, { expectedOld: A, message: 'two', identity: id });
    const log = fs.readFileSync(path.join(dir, 'logs/refs/heads/main'), 'utf8');
    assert.equal(
      log,
      `${'0'.repeat(40)} ${A} T <t@x> 1700000000 +0130\tone\n${A} ${B} T <t@x> 1700000000 +0130\ttwo\n`,
    );
    assert.deepEqual(
      (await readReflog(dir, 'refs/heads/main')).map((e) => [e.old.slice(0, 1), e.new.slice(0, 1), e.message]),
      [
        ['0', 'a', 'one'],
        ['a', 'b', 'two'],
      ],
    );
    assert.deepEqual(fs.readdirSync(ctx.tmpDir), []);
  });

  it('repairs a reflog line cut short by a crash before appending', async () => {
    fs.appendFileSync(path.join(dir, 'logs/refs/heads/main'), `${B} ${C} T <t@x> 17000`);
    await updateRef(ctx, 'refs/heads/main', C, { expectedOld: B, message: 'three', identity: id });
    const lines = fs.readFileSync(path.join(dir, 'logs/refs/heads/main'), 'utf8').split('\n');
    assert.equal(lines.length, 4);
    assert.equal(lines[2], `${B} ${C} T <t@x> 1700000000 +0130\tthree`);
  });

  it('waits for a live lock, then fails with E_LOCKED naming the holder', async () => {
    const lock = await LockFile.acquire(path.join(dir, 'refs/heads/main.lock'), { what: 'main' });
    const t0 = Date.now();
    assert.equal(await codeOf(updateRef(ctx, 'refs/heads/main', A, { message: 'x', identity: id })), 'E_LOCKED');
    assert.ok(Date.now() - t0 >= 150);
    await lock.release();
    assert.equal(await readRef(dir, 'refs/heads/main'), C);
  });

  it('breaks a lock left by a dead process and an empty lock once it is old', async () => {
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']);
    const deadPid = Number(dead.stdout.toString());
    const lockFile = path.join(dir, 'refs/heads/main.lock');
    fs.writeFileSync(lockFile, JSON.stringify({ pid: deadPid, host: HOST, time: Date.now() }));
    await updateRef(ctx, 'refs/heads/main', A, { expectedOld: C, message: 'after dead', identity: id });
    assert.equal(await readRef(dir, 'refs/heads/main'), A);
    assert.ok(!fs.existsSync(lockFile));

    fs.writeFileSync(lockFile, '');
    assert.equal(await codeOf(updateRef(ctx, 'refs/heads/main', B, { message: 'x', identity: id })), 'E_LOCKED');
    const old = new Date(Date.now() - 120_000);
    fs.utimesSync(lockFile, old, old);
    await updateRef(ctx, 'refs/heads/main', B, { expectedOld: A, message: 'after stale', identity: id });
    assert.equal(await readRef(dir, 'refs/heads/main'), B);
  });

  it('deletes a ref with its reflog', async () => {
    await updateRef(ctx, 'refs/heads/gone', A, { expectedOld: null, message: 'x', identity: id });
    await updateRef(ctx, 'refs/heads/gone', null, { expectedOld: A, message: 'del', identity: id });
    assert.equal(await readRef(dir, 'refs/heads/gone'), null);
    assert.ok(!fs.existsSync(path.join(dir, 'logs/refs/heads/gone')));
  });
});
