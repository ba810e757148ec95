/**
 * A damaged or conflicting repository gives one typed error naming what is
 * wrong (the ref, the object id, the file), never a raw errno or library text.
 * Each case builds a real repository, breaks it on disk and runs the operation.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { currentIdentity } from '../src/identity.js';
import { Repository } from '../src/index.js';
import { plannedThreads } from '../src/pool.js';
import { bf16Weights, buildSafetensors } from './helpers.js';

process.env.WGIT_AUTHOR_DATE = '1700000000';

async function errorOf(p: Promise<unknown>): Promise<{ code?: string; message: string }> {
  try {
    await p;
  } catch (e) {
    return { code: (e as { code?: string }).code, message: String((e as Error).message) };
  }
  return { code: 'no error', message: '' };
}

/** No errno text, no library text, one line. */
function assertClean(message: string): void {
  assert.ok(!message.includes('\n'), message);
  assert.doesNotMatch(message, /EISDIR|ENOENT|EEXIST|ENOTDIR|isomorphic|internal error|report/i);
}

function objectFile(gitdir: string, oid: string): string {
  return path.join(gitdir, 'objects', oid.slice(0, 2), oid.slice(2));
}

describe('repository damage and ref conflicts: clear typed errors', () => {
  let dir: string;
  let n = 0;
  let modelFile: string;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-errs-'));
    modelFile = path.join(dir, 'm.safetensors');
    fs.writeFileSync(
      modelFile,
      buildSafetensors([{ name: 'w', dtype: 'BF16', shape: [8, 8], data: bf16Weights(64, 1) }]),
    );
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  async function freshRepo(): Promise<{ repo: Repository; head: string }> {
    const root = path.join(dir, `r${n++}`);
    const repo = await Repository.init(root);
    const c = await repo.commit({ path: modelFile, message: 'one' });
    return { repo, head: c.commit };
  }

  it('branch x when x/y exists, and x/y when x exists, name the conflicting branch', async () => {
    const { repo } = await freshRepo();
    await repo.createBranch('x/y');
    const e1 = await errorOf(repo.createBranch('x'));
    assert.equal(e1.code, 'E_BAD_REF_NAME', e1.message);
    assert.match(e1.message, /x\/y/);
    assertClean(e1.message);

    await repo.createBranch('a');
    const e2 = await errorOf(repo.createBranch('a/b'));
    assert.equal(e2.code, 'E_BAD_REF_NAME', e2.message);
    assert.match(e2.message, /"a"/);
    assertClean(e2.message);

    const e3 = await errorOf(repo.commit({ path: modelFile, message: 'two', branch: 'a/b/c' }));
    assert.equal(e3.code, 'E_BAD_REF_NAME', e3.message);
    assertClean(e3.message);

    // tags follow the same rule
    await repo.createTag('v1/rc');
    const e4 = await errorOf(repo.createTag('v1'));
    assert.equal(e4.code, 'E_BAD_REF_NAME', e4.message);
    assertClean(e4.message);

    // nothing was left behind, and the existing branches still work
    assert.deepEqual(
      (await repo.branches()).map((b) => b.name),
      ['a', 'main', 'x/y'],
    );
    const leftovers: string[] = [];
    const walk = (d: string) => {
      for (const e of fs.readdirSync(d, { withFileTypes: true })) {
        if (e.isDirectory()) walk(path.join(d, e.name));
        else if (e.name.endsWith('.lock')) leftovers.push(path.join(d, e.name));
      }
    };
    walk(path.join(repo.gitdir, 'refs'));
    assert.deepEqual(leftovers, []);
    assert.ok(!fs.existsSync(path.join(repo.gitdir, 'logs', 'refs', 'heads', 'a', 'b')));
  });

  it('a deleted .wgit/HEAD is E_CORRUPT naming HEAD', async () => {
    const { repo } = await freshRepo();
    fs.rmSync(path.join(repo.gitdir, 'HEAD'));
    for (const op of [
      () => repo.log(),
      () => repo.currentBranch(),
      () => repo.resolve('HEAD'),
      () => repo.branches(),
    ]) {
      const e = await errorOf(op());
      assert.equal(e.code, 'E_CORRUPT', e.message);
      assert.match(e.message, /\.wgit[/\\]HEAD/);
      assertClean(e.message);
    }
  });

  it('a truncated commit object is E_CORRUPT naming the object id', async () => {
    const { repo, head } = await freshRepo();
    const file = objectFile(repo.gitdir, head);
    const bytes = fs.readFileSync(file);
    fs.chmodSync(file, 0o644);
    fs.writeFileSync(file, bytes.subarray(0, 20));
    for (const op of [
      () => repo.log(),
      () => repo.log('main'),
      () => repo.show('main'),
      () => repo.resolve(head),
      () => repo.resolve('main~1'),
    ]) {
      const e = await errorOf(op());
      assert.equal(e.code, 'E_CORRUPT', e.message);
      assert.ok(e.message.includes(head), e.message);
      assertClean(e.message);
    }
  });

  it('a branch whose commit object is missing names the branch and the missing id', async () => {
    const { repo, head } = await freshRepo();
    await repo.createBranch('side');
    fs.rmSync(objectFile(repo.gitdir, head));
    for (const [op, rev] of [
      [() => repo.resolve('side'), 'side'],
      [() => repo.log('side'), 'side'],
      [() => repo.show('main'), 'main'],
      [() => repo.createBranch('other', 'side'), 'side'],
    ] as const) {
      const e = await errorOf(op());
      assert.equal(e.code, 'E_MISSING_OBJECT', e.message);
      assert.ok(e.message.includes(`"${rev}"`), e.message);
      assert.ok(e.message.includes(head), e.message);
      assertClean(e.message);
    }
    assert.ok(!(await repo.branches()).some((b) => b.name === 'other'), 'no branch made on a missing commit');
    // a full id whose object is gone is still an unknown revision: nothing names it
    assert.equal((await errorOf(repo.resolve(head))).code, 'E_UNKNOWN_REVISION');
  });
});

describe('WGIT_AUTHOR_DATE: unix seconds or ISO-8601 only', () => {
  const at = (d: string) => currentIdentity({}, { WGIT_AUTHOR_DATE: d }).timestamp;
  const accepted: [string, number][] = [
    ['0', 0],
    ['1700000000', 1700000000],
    ['2024-03-07', Date.UTC(2024, 2, 7) / 1000],
    ['2024-03-07T10:00:00Z', Date.UTC(2024, 2, 7, 10) / 1000],
    ['2024-03-07T10:00Z', Date.UTC(2024, 2, 7, 10) / 1000],
    ['2024-03-07T10:00:00.750Z', Date.UTC(2024, 2, 7, 10) / 1000],
    ['2024-03-07T10:00:00+02:00', Date.UTC(2024, 2, 7, 8) / 1000],
    ['2024-03-07T10:00:00-0130', Date.UTC(2024, 2, 7, 11, 30) / 1000],
    // no zone: UTC, so the commit id does not depend on the machine's zone
    ['2024-03-07T10:00:00', Date.UTC(2024, 2, 7, 10) / 1000],
  ];
  for (const [d, want] of accepted) {
    it(`accepts ${JSON.stringify(d)}`, () => assert.equal(at(d), want));
  }
  const refused = [
    '-1',
    'March 7',
    ' 5',
    '5 ',
    '1e9',
    '0x10',
    '1700000000.5',
    '2024-3-7',
    '2024-02-30',
    '2024-03-07T25:00:00Z',
    '2024-03-07T10:00:60Z',
    '2024-03-07 10:00:00',
    '1969-12-31T23:59:59Z',
    '2024-03-07T10:00:00+25:00',
    'Thu, 07 Mar 2024 10:00:00 GMT',
    '99999999999999999999',
  ];
  for (const d of refused) {
    it(`refuses ${JSON.stringify(d)} with E_BAD_DATE`, () => {
      assert.throws(() => at(d), { code: 'E_BAD_DATE' });
    });
  }
  it('an empty WGIT_AUTHOR_DATE means now', () => {
    const t = at('');
    assert.ok(Math.abs(t - Date.now() / 1000) < 60);
  });
});

describe('integer environment variables are decimal', () => {
  const saved = process.env.WGIT_THREADS;
  after(() => {
    if (saved === undefined) delete process.env.WGIT_THREADS;
    else process.env.WGIT_THREADS = saved;
  });
  for (const v of ['0x4', '4.0', ' 4', '4 ', '1e1', '0b11', '+', '-', '04']) {
    it(`WGIT_THREADS=${JSON.stringify(v)} is E_BAD_ENV`, () => {
      process.env.WGIT_THREADS = v;
      assert.throws(() => plannedThreads(1 << 30), { code: 'E_BAD_ENV' });
    });
  }
  it('WGIT_THREADS=3 is 3', () => {
    process.env.WGIT_THREADS = '3';
    assert.equal(plannedThreads(1 << 30), 3);
  });
});
