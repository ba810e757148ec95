/**
 * `--device` on the computing commands: gpu (lavapipe in CI) gives the same
 * bytes as cpu for elementwise methods and TIES, the recipe records which,
 * and gpu without a Vulkan driver is a clear error that writes nothing.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { bf16Weights, fineTune, writeShardedFolder } from '../../packages/store/test/helpers.js';

const BIN = path.resolve(import.meta.dirname, '..', '..', 'packages', 'cli', 'bin', 'run.js');
const GPU_REQUIRED = process.env.CI === 'true' || process.env.WGIT_REQUIRE_GPU === '1';
let dir: string;
let repo: string;

function wgit(args: string[], env: Record<string, string> = {}): { status: number; json: any } {
  const r = spawnSync(process.execPath, [BIN, ...args, '--json'], {
    cwd: repo,
    env: { ...process.env, WGIT_AUTHOR_DATE: '1700000000', ...env },
    encoding: 'utf8',
  });
  return { status: r.status ?? -1, json: JSON.parse(r.stdout) };
}

function files(rev: string): Map<string, Buffer> {
  const out = path.join(dir, `co-${rev.replace(/\//g, '-')}`);
  assert.equal(wgit(['checkout', rev, '--out', out]).status, 0);
  return new Map(fs.readdirSync(out).map((f) => [f, fs.readFileSync(path.join(out, f))]));
}

describe('--device', () => {
  let gpu = true;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-dev-'));
    repo = path.join(dir, 'repo');
    fs.mkdirSync(repo);
    const names = ['model.layers.0.mlp.up_proj.weight', 'model.layers.1.mlp.up_proj.weight', 'lm_head.weight'];
    const side = { 'config.json': '{}' };
    const model = (f: (w: Uint8Array, i: number) => Uint8Array) => [
      names.map((name, i) => ({ name, dtype: 'BF16' as const, shape: [33, 65], data: f(bf16Weights(33 * 65, i), i) })),
    ];
    writeShardedFolder(
      path.join(dir, 'base'),
      model((w) => w),
      side,
    );
    writeShardedFolder(
      path.join(dir, 'a'),
      model((w, i) => fineTune(w, 0.2, 10 + i)),
      side,
    );
    writeShardedFolder(
      path.join(dir, 'b'),
      model((w, i) => fineTune(w, 0.2, 20 + i)),
      side,
    );
    assert.equal(wgit(['init']).status, 0);
    for (const m of ['base', 'a', 'b']) assert.equal(wgit(['commit', path.join(dir, m), '--branch', m]).status, 0);
    const probe = wgit(['doctor']);
    gpu = probe.json.gpu?.adapter !== undefined;
    if (!gpu) {
      assert.ok(!GPU_REQUIRED, `no GPU adapter in CI: ${probe.json.gpu?.detail}`);
      console.error(`# no GPU adapter here (${probe.json.gpu?.detail}): the gpu half is not run`);
    }
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  for (const [label, args] of [
    ['task arithmetic', ['merge', 'a', 'b', '--method', 'task-arithmetic', '--base', 'base', '--lambda', '0.7']],
    ['ties', ['merge', 'a', 'b', '--method', 'ties', '--base', 'base', '--density', '0.3']],
    ['transfer', ['transfer', 'a', '--from', 'base', '--onto', 'b', '--scale', '0.5']],
    ['lines', ['lines', 'a', '--base', 'base']],
  ] as const) {
    it(`${label}: gpu gives cpu's bytes, and the recipe says which computed it`, (t) => {
      if (!gpu) return t.skip('no GPU adapter');
      const key = label.replace(/ /g, '-');
      const cpu = wgit([...args, '--device', 'cpu', '--branch', `${key}-cpu`]);
      assert.equal(cpu.status, 0, JSON.stringify(cpu.json));
      const onGpu = wgit([...args, '--device', 'gpu', '--branch', `${key}-gpu`]);
      assert.equal(onGpu.status, 0, JSON.stringify(onGpu.json));
      assert.deepEqual(files(`${key}-gpu`), files(`${key}-cpu`));
      const recipe = (rev: string) => wgit(['show', rev]).json.recipe;
      assert.deepEqual(recipe(`${key}-cpu`).device, { device: 'cpu', backend: 'wasm' });
      assert.deepEqual(recipe(`${key}-gpu`).device, { device: 'gpu', backend: 'webgpu' });
    });
  }

  it('gpu without a Vulkan driver is E_DEVICE_UNAVAILABLE naming what is missing, and nothing is written', () => {
    const env = { VK_ICD_FILENAMES: '/nonexistent/icd.json', VK_DRIVER_FILES: '/nonexistent/icd.json' };
    const before = wgit(['branch']).json.branches.length;
    const r = wgit(['merge', 'a', 'b', '--method', 'linear', '--device', 'gpu'], env);
    assert.equal(r.status, 1);
    assert.equal(r.json.error.code, 'E_DEVICE_UNAVAILABLE');
    assert.match(r.json.error.message, /Vulkan|ICD|adapter|webgpu/i);
    assert.equal(wgit(['branch']).json.branches.length, before);
    assert.equal(wgit(['merge', 'a', 'b', '--method', 'linear', '--device', 'tpu']).json.error.code, 'E_USAGE');
  });
});
