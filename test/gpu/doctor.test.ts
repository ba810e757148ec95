// `wgit doctor`: the adapter, its limits and driver, what is missing, and what `auto` picks.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const BIN = fileURLToPath(new URL('../../packages/cli/bin/run.js', import.meta.url));
const GPU_REQUIRED = process.env.CI === 'true' || process.env.WGIT_REQUIRE_GPU === '1';

function doctor(env: Record<string, string | undefined>, json = true) {
  const r = spawnSync(process.execPath, [BIN, 'doctor', ...(json ? ['--json'] : [])], {
    encoding: 'utf8',
    env: { ...process.env, WGIT_DEVICE: undefined, WGIT_GPU_ALLOW_SOFTWARE: undefined, ...env },
  });
  assert.equal(r.status, 0, r.stderr);
  return json ? JSON.parse(r.stdout) : r.stdout;
}

test('doctor --json: adapter, limits, self-test, and auto’s pick agree', () => {
  const r = doctor({});
  assert.ok(r.auto.device === 'cpu' || r.auto.device === 'gpu');
  const a = r.gpu.adapter;
  if (!a) {
    assert.ok(!GPU_REQUIRED, `no adapter under CI: ${r.gpu.detail}`);
    assert.equal(r.auto.device, 'cpu');
    assert.ok(r.gpu.missing && r.gpu.detail);
    return;
  }
  assert.equal(typeof a.limits.maxStorageBufferBindingSize, 'number');
  assert.ok(a.limits.maxComputeWorkgroupsPerDimension >= 65535);
  assert.deepEqual(r.gpu.selfTest, { ok: true });
  if (a.software) {
    assert.equal(r.gpu.missing, 'software-adapter');
    assert.equal(r.auto.device, 'cpu', 'auto never takes a software adapter by default');
    assert.equal(doctor({ WGIT_GPU_ALLOW_SOFTWARE: '1' }).auto.device, 'gpu');
  } else assert.equal(r.auto.device, 'gpu');
});

test('doctor without a Vulkan driver manifest names what is missing', () => {
  const env = { VK_ICD_FILENAMES: '/nonexistent/icd.json', VK_DRIVER_FILES: '/nonexistent/icd.json' };
  const r = doctor(env);
  assert.equal(r.gpu.adapter, undefined);
  assert.ok(['no-icd', 'no-vulkan-loader', 'no-webgpu-module'].includes(r.gpu.missing), r.gpu.missing);
  assert.equal(r.auto.device, 'cpu');
  const text = doctor(env, false) as string;
  assert.match(text, /GPU adapter: none/);
  assert.match(text, /auto picks: cpu/);
});
