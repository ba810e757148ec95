/** `wgit demo --json` through the built CLI: the story's key facts hold. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';

const ROOT = path.resolve(import.meta.dirname, '../..');
const BIN = path.join(ROOT, 'packages/cli/bin/run.js');
let tmp: string;

after(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

test('wgit demo --json trains, commits, verifies, transfers, merges, reports accuracies, pushes and clones back', {
  timeout: 240_000,
}, () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-'));
  const dir = path.join(tmp, 'demo');
  const r = spawnSync(process.execPath, [BIN, 'demo', '--dir', dir, '--json'], {
    encoding: 'utf8',
    timeout: 180_000,
    killSignal: 'SIGKILL',
  });
  assert.equal(r.status, 0, r.stderr);
  const d = JSON.parse(r.stdout);
  const row = (name: string) => {
    const x = d.table.find((t: { name: string }) => t.name === name);
    assert.ok(x, `row ${name}`);
    return x.scores;
  };

  assert.equal(d.dir, dir);
  assert.equal(d.inspect.tensors.length, 8);
  assert.equal(
    d.inspect.parameters,
    d.inspect.tensors.reduce((s: number, t: { shape: number[] }) => s + t.shape.reduce((a, b) => a * b, 1), 0),
  );
  assert.equal(d.inspect.bytes, d.inspect.parameters * 4);
  assert.equal(d.repo.commits.length, 6);
  assert.ok(d.repo.storedBytes < d.repo.rawBytes, `stored ${d.repo.storedBytes} vs raw ${d.repo.rawBytes}`);
  assert.ok(fs.existsSync(path.join(d.repo.root, '.wgit')));
  // The checked-out copy is the committed folder, file for file and byte for byte, compared here
  // (the demo's own `identical` flag is always true when it returns: it throws otherwise).
  const original = path.join(dir, 'models/ft-flip');
  const files = (root: string) =>
    (fs.readdirSync(root, { recursive: true }) as string[])
      .filter((f) => fs.statSync(path.join(root, f)).isFile())
      .sort();
  const want = files(original);
  assert.ok(want.includes('model.safetensors'), want.join(', '));
  assert.deepEqual(files(d.checkout.dir), want);
  assert.deepEqual([...d.checkout.files].sort(), want);
  let bytes = 0;
  for (const f of want) {
    const a = fs.readFileSync(path.join(original, f));
    bytes += a.length;
    assert.ok(fs.readFileSync(path.join(d.checkout.dir, f)).equals(a), f);
  }
  assert.equal(d.checkout.bytes, bytes);

  const v2 = row('base-v2');
  const transfer = row('transfer');
  const direct = row('v2-ft-invert');
  assert.ok(transfer.invert > v2.invert + 0.4);
  assert.ok(transfer.invert > 0.7 * direct.invert);

  const ft = row('ft-flip');
  const lines = row('lines');
  assert.ok(lines.clean > ft.clean);
  assert.ok(lines.flip > 0.85 * ft.flip);

  const avg = (s: { flip: number; rot: number }) => (s.flip + s.rot) / 2;
  const best = Math.max(avg(row('ft-flip')), avg(row('ft-rot')));
  assert.ok(avg(row('merge task-arithmetic')) > best);
  assert.ok(avg(row('merge ties')) > best);
  for (const t of d.table) for (const v of Object.values(t.scores) as number[]) assert.ok(v >= 0 && v <= 1);

  // A PEFT LoRA adapter of ft-flip's change, in PEFT's layout: read here with the safetensors
  // format written out by hand (8-byte length, JSON header).
  const cfg = JSON.parse(fs.readFileSync(path.join(d.lora.dir, 'adapter_config.json'), 'utf8'));
  assert.equal(cfg.peft_type, 'LORA');
  assert.equal(cfg.r, 8);
  const st = fs.readFileSync(path.join(d.lora.dir, 'adapter_model.safetensors'));
  const header = JSON.parse(st.subarray(8, 8 + Number(st.readBigUInt64LE(0))).toString('utf8'));
  for (const m of d.lora.modules) {
    assert.equal(header[`base_model.model.${m}.lora_A.weight`].shape[0], 8, m);
    assert.equal(header[`base_model.model.${m}.lora_B.weight`].shape[1], 8, m);
  }
  assert.ok(d.lora.modules.length > 0 && d.lora.relError > 0 && d.lora.relError < 1);

  // The demo ends with a push to a folder remote and a clone of it: every model of the
  // lineage, checked out of the clone, is the file training wrote; Debian git accepts
  // both repositories; the clone tracks every branch the demo made, at the same commit.
  const models = ['base-v1', 'base-v2', 'ft-flip', 'ft-rot', 'ft-invert', 'v2-ft-invert'];
  assert.deepEqual(Object.keys(d.remote.checkouts).sort(), [...models].sort());
  for (const m of models) {
    const files = fs.readdirSync(path.join(dir, 'models', m)).sort();
    assert.deepEqual(fs.readdirSync(d.remote.checkouts[m]).sort(), files, m);
    for (const f of files)
      assert.ok(
        fs.readFileSync(path.join(d.remote.checkouts[m], f)).equals(fs.readFileSync(path.join(dir, 'models', m, f))),
        `${m}/${f} from the clone`,
      );
  }
  const git = (gitdir: string, ...args: string[]) => {
    const g = spawnSync('git', [`--git-dir=${gitdir}`, ...args], { encoding: 'utf8' });
    assert.equal(g.status, 0, g.stderr);
    return g.stdout;
  };
  for (const g of [path.join(d.remote.url, '.wgit'), path.join(d.remote.clone, '.wgit')])
    git(g, 'fsck', '--full', '--strict', '--no-dangling');
  const refs = (gitdir: string, prefix: string) =>
    git(gitdir, 'for-each-ref', '--format=%(refname) %(objectname)', prefix)
      .trim()
      .split('\n')
      .map((l) => l.replace(prefix, ''))
      .sort();
  const branches = refs(path.join(d.repo.root, '.wgit'), 'refs/heads/');
  assert.ok(branches.length >= 6, branches.join(' '));
  assert.deepEqual(refs(path.join(d.remote.clone, '.wgit'), 'refs/remotes/origin/'), branches);
  assert.equal(d.remote.pushed.refs, branches.length + 2, 'every branch and both base tags');
});

test('wgit demo refuses a folder that is not empty', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-'));
  fs.writeFileSync(path.join(dir, 'x'), 'x');
  const r = spawnSync(process.execPath, [BIN, 'demo', '--dir', dir, '--json'], { encoding: 'utf8' });
  fs.rmSync(dir, { recursive: true, force: true });
  assert.equal(r.status, 1);
  assert.equal(JSON.parse(r.stdout).error.code, 'E_OUTPUT_NOT_EMPTY');
});
