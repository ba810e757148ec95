import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Repository } from '../../packages/store/src/index.js';
import { buildSafetensors } from '../../packages/store/test/helpers.js';

process.env.WGIT_AUTHOR_DATE = '1700000000';
const ROOT = path.resolve(import.meta.dirname, '..', '..');
const STORE_SRC = path.join(ROOT, 'packages', 'store', 'src', 'index.ts');
const CHECKOUT_TEMPS_SRC = path.join(ROOT, 'packages', 'store', 'src', 'checkout-temps.ts');
const MIB = 1 << 20;

/** A child process that checks out one commit with the library (from source, so it runs the code under test). */
function startCheckout(repo: string, commit: string, out: string): ChildProcess {
  const code = `import { Repository } from ${JSON.stringify(`file://${STORE_SRC}`)};
const repo = await Repository.open(${JSON.stringify(repo)});
await repo.checkout(${JSON.stringify(commit)}, ${JSON.stringify(out)});`;
  return spawn(process.execPath, ['--conditions=wgit-source', '--import', 'tsx', '--input-type=module', '-e', code], {
    cwd: ROOT,
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

/** The checkout's temp folder beside `out`, once it holds part of a shard; null if the child ended first. */
async function waitForPartial(out: string, child: ChildProcess): Promise<string | null> {
  const parent = path.dirname(out);
  const prefix = `.${path.basename(out)}.wgit-tmp-${child.pid}-`;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) return null;
    for (const n of fs.readdirSync(parent)) {
      if (!n.startsWith(prefix)) continue;
      const tmp = path.join(parent, n);
      try {
        if (fs.readdirSync(tmp).some((f) => fs.statSync(path.join(tmp, f)).size > 0)) return tmp;
      } catch {
        // Renamed or removed meanwhile.
      }
    }
    await sleep(1);
  }
}

/** A process id that is certainly not running. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  return Number(r.stdout);
}

describe('checkout temp folders of a killed checkout', () => {
  let dir: string;
  let repo: Repository;
  let commit: string;
  let model: Buffer;
  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-cotmp-'));
    repo = await Repository.init(path.join(dir, 'repo'), { chunkSize: 64 * 1024 });
    const src = path.join(dir, 'model.safetensors');
    model = Buffer.from(
      buildSafetensors([
        { name: 'a', dtype: 'U8', shape: [48 * MIB], data: randomBytes(48 * MIB) },
        { name: 'b', dtype: 'U8', shape: [16 * MIB], data: randomBytes(16 * MIB) },
      ]),
    );
    fs.writeFileSync(src, model);
    commit = (await repo.commit({ path: src, message: 'big' })).commit;
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('status lists the partial model a SIGKILLed checkout left, and gc removes it', async () => {
    const out = path.join(dir, 'killed');
    let tmp: string | null = null;
    for (let attempt = 0; tmp === null && attempt < 5; attempt++) {
      const child = startCheckout(repo.root, commit, out);
      tmp = await waitForPartial(out, child);
      child.kill('SIGKILL');
      await exited(child);
      if (tmp === null) fs.rmSync(out, { recursive: true, force: true });
    }
    assert.ok(tmp, 'no checkout was caught mid-way');
    assert.ok(fs.statSync(tmp).isDirectory());
    assert.ok(!fs.existsSync(out));

    const s = await repo.status();
    assert.deepEqual(s.staleCheckouts, [tmp]);
    const g = await repo.gc();
    assert.equal(g.checkoutTempsRemoved, 1);
    assert.ok(!fs.existsSync(tmp), 'gc removed the partial model');
    const after = await repo.status();
    assert.deepEqual(after.staleCheckouts, []);
    assert.deepEqual(after.tempFiles, []);
    const f = await repo.fsck();
    assert.deepEqual(f.warnings, []);
    assert.equal(f.ok, true);
  });

  it('a live checkout keeps its temp folder, then finishes', async () => {
    const { removeStaleCheckoutTemps } = await import(CHECKOUT_TEMPS_SRC);
    const out = path.join(dir, 'live');
    for (let attempt = 0; ; attempt++) {
      assert.ok(attempt < 5, 'no checkout was caught mid-way');
      const child = startCheckout(repo.root, commit, out);
      const tmp = await waitForPartial(out, child);
      if (tmp === null || !child.kill('SIGSTOP')) {
        await exited(child);
        fs.rmSync(out, { recursive: true, force: true });
        continue;
      }
      try {
        // Stopped, not gone: its folder is live work.
        assert.deepEqual((await repo.status()).staleCheckouts, []);
        assert.deepEqual(await removeStaleCheckoutTemps(repo.tmpDir), { removed: [], bytes: 0 });
        const g = await repo.gc().catch((e: { code?: string }) => e);
        if ('checkoutTempsRemoved' in g) assert.equal(g.checkoutTempsRemoved, 0);
        else assert.equal(g.code, 'E_LOCKED');
        assert.ok(fs.existsSync(tmp));
      } finally {
        child.kill('SIGCONT');
      }
      const ex = await exited(child);
      assert.equal(ex.code, 0);
      assert.ok(fs.readFileSync(path.join(out, 'model.safetensors')).equals(model));
      assert.ok(!fs.existsSync(tmp));
      assert.deepEqual(
        fs.readdirSync(repo.tmpDir).filter((n) => n.startsWith('checkout-')),
        [],
      );
      break;
    }
  });

  it('removes only folders that look like checkout temp folders, never through a link', async () => {
    const { staleCheckoutTemps } = await import(CHECKOUT_TEMPS_SRC);
    const { HOST } = await import('../../packages/store/src/fsutil.js');
    const host = HOST.replace(/[^A-Za-z0-9]/g, '_');
    const pid = deadPid();
    const marker = (hex: string, folder: string) =>
      fs.writeFileSync(path.join(repo.tmpDir, `checkout-${host}-${pid}-${hex}`), JSON.stringify({ path: folder }));

    const precious = path.join(dir, 'precious');
    fs.mkdirSync(precious);
    fs.writeFileSync(path.join(precious, 'keep.txt'), 'keep');
    marker('000000000001', precious); // not a temp folder name
    const linked = path.join(dir, `.x.wgit-tmp-${pid}-0123456789ab`);
    fs.symlinkSync(precious, linked);
    marker('000000000002', linked); // the right name, but a link
    const otherPid = path.join(dir, `.y.wgit-tmp-${pid + 1}-0123456789ab`);
    fs.mkdirSync(otherPid);
    marker('000000000003', otherPid); // a name carrying another process id
    const real = path.join(dir, `.z.wgit-tmp-${pid}-abcdef012345`);
    fs.mkdirSync(real);
    fs.writeFileSync(path.join(real, 'part.safetensors'), 'partial');
    marker('000000000004', real);
    fs.writeFileSync(path.join(repo.tmpDir, `checkout-otherhost-${pid}-000000000005`), JSON.stringify({ path: real }));

    assert.deepEqual(
      (await staleCheckoutTemps(repo.tmpDir)).map((t: { path: string }) => t.path),
      [real],
    );
    assert.deepEqual((await repo.status()).staleCheckouts, [real]);
    const g = await repo.gc();
    assert.equal(g.checkoutTempsRemoved, 1);
    assert.ok(!fs.existsSync(real));
    assert.equal(fs.readFileSync(path.join(precious, 'keep.txt'), 'utf8'), 'keep');
    assert.ok(fs.lstatSync(linked).isSymbolicLink());
    assert.ok(fs.existsSync(otherPid));
    // Markers that name nothing removable go; another host's marker stays (its process may be alive).
    assert.deepEqual(
      fs.readdirSync(repo.tmpDir).filter((n) => n.startsWith('checkout-')),
      [`checkout-otherhost-${pid}-000000000005`],
    );
  });
});
