// `wgit merge --method rmm` commits the merged model and its basis group
// straight into the store; WGIT_SCRATCH_COMMIT=1 writes folders and commits
// them. Both must give the same commit: same model, same group records, same
// recovered inputs.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openModel } from '../../packages/core/src/index.js';
import { Repository } from '../../packages/store/src/index.js';
import {
  bf16Weights,
  buildSafetensors,
  fineTune,
  type RawTensor,
  readTreeFiles,
  rng,
} from '../../packages/store/test/helpers.js';

process.env.WGIT_AUTHOR_DATE = '1700000000';
const ROOT = path.resolve(import.meta.dirname, '..', '..');
const BIN = path.join(ROOT, 'packages', 'cli', 'bin', 'run.js');

/** f32 weights N(0, 0.02)-ish; a fine-tune (seed > 0) adds its own small noise. */
function f32Weights(count: number, seed: number): Uint8Array {
  const base = rng(1);
  const noise = rng(100 + seed);
  const v = new Float32Array(count);
  for (let i = 0; i < count; i++) v[i] = (base() + base() + base() - 1.5) * 0.02 + (seed ? (noise() - 0.5) * 0.004 : 0);
  return new Uint8Array(v.buffer);
}

function version(seed: number): RawTensor[] {
  const base = bf16Weights(96 * 80, 5);
  return [
    { name: 'embed', dtype: 'BF16', shape: [96, 80], data: seed ? fineTune(base, 0.3, seed) : base },
    { name: 'proj', dtype: 'F32', shape: [30, 40], data: f32Weights(1200, seed) },
    { name: 'step', dtype: 'I64', shape: [1], data: new Uint8Array(8).fill(seed) },
  ];
}

describe('wgit merge --method rmm: streamed into the store or committed from folders, the same commit', () => {
  let dir: string;
  let repo: Repository;
  const files: Record<string, string> = {};
  const wgit = (args: string[], env: Record<string, string> = {}) => {
    const r = spawnSync(process.execPath, [BIN, ...args, '--json'], {
      cwd: repo.root,
      encoding: 'utf8',
      env: { ...process.env, ...env },
    });
    assert.equal(r.status, 0, `wgit ${args.join(' ')}: ${r.stdout} ${r.stderr}`);
    return JSON.parse(r.stdout);
  };
  const git = (...args: string[]) =>
    execFileSync('git', ['--git-dir', repo.gitdir, ...args], { encoding: 'utf8' }).trim();
  const sameFiles = (got: string, want: string) => {
    const g = readTreeFiles(got);
    const w = readTreeFiles(want);
    assert.deepEqual([...g.keys()].sort(), [...w.keys()].sort());
    for (const [f, bytes] of w) assert.ok(g.get(f)?.equals(bytes), f);
  };

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-rmm-commit-'));
    repo = await Repository.init(path.join(dir, 'repo'), { chunkSize: 4096 });
    for (const [name, seed] of [
      ['base', 0],
      ['ft-a', 1],
      ['ft-b', 2],
    ] as const) {
      const d = path.join(dir, name);
      fs.mkdirSync(d);
      files[name] = path.join(d, 'model.safetensors');
      fs.writeFileSync(files[name], buildSafetensors(version(seed), { metadata: { format: 'pt', v: name } }));
      fs.writeFileSync(path.join(d, 'config.json'), `{"name":"${name}"}`);
      await repo.commit({ path: d, message: name, branch: name });
    }
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('gives byte-identical checkouts of the model and of each recovered input, and the same group records', async () => {
    const merge = ['merge', 'ft-a', 'ft-b', '--method', 'rmm', '--base', 'base', '-m', 'reversible'];
    const streamed = wgit([...merge, '--branch', 'streamed']);
    const folders = wgit([...merge, '--branch', 'folders'], { WGIT_SCRATCH_COMMIT: '1' });
    assert.equal(streamed.rmm.rank, 2);
    assert.deepEqual(streamed.rmm, folders.rmm);
    assert.ok(
      streamed.rmm.models.some((m: { fixes: number }) => m.fixes > 0),
      'the f32 tensor needs fixes: they are covered',
    );
    // The group's records (and every other blob of the tree) are the same objects.
    assert.equal(git('rev-parse', `${streamed.commit}:groups/rmm`), git('rev-parse', `${folders.commit}:groups/rmm`));
    assert.equal(git('rev-parse', `${streamed.commit}^{tree}`), git('rev-parse', `${folders.commit}^{tree}`));
    const show = wgit(['show', 'streamed', '--group', 'rmm']);
    assert.equal(show.object.kind, 'rmm-basis');
    assert.equal(show.object.detected, false);
    assert.equal(wgit(['fsck']).ok, true);

    const co = (rev: string, ...extra: string[]) => {
      const out = path.join(dir, `co-${rev}-${extra.join('-')}`);
      wgit(['checkout', rev, '--out', out, ...extra]);
      return out;
    };
    sameFiles(co('streamed'), co('folders'));
    for (const [i, name] of ['ft-a', 'ft-b'].entries()) {
      const a = co('streamed', '--model', String(i));
      sameFiles(a, co('folders', '--model', String(i)));
      // a full basis gives the input back: every tensor's bytes, its metadata and its side files
      assert.equal(fs.readFileSync(path.join(a, 'config.json'), 'utf8'), `{"name":"${name}"}`);
      const got = await openModel(a);
      const want = await openModel(files[name]);
      try {
        assert.deepEqual(
          got.tensors.map((t) => t.name),
          want.tensors.map((t) => t.name),
        );
        assert.deepEqual(got.metadata, want.metadata);
        for (const t of want.tensors)
          assert.ok(
            Buffer.from(await got.readTensor(t.name)).equals(await want.readTensor(t.name)),
            `${name} ${t.name}`,
          );
      } finally {
        await got.close();
        await want.close();
      }
    }
  });
});
