// Choosing the GPU: explicit `gpu` takes any adapter (lavapipe included) or fails with
// E_DEVICE_UNAVAILABLE naming the missing piece; `auto` never takes a software adapter unless
// WGIT_GPU_ALLOW_SOFTWARE=1, and says why it computes on the CPU. Each case runs in a fresh process,
// since the environment decides what Dawn finds.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { GPU_REQUIRED, gpuUnderTest } from './gpu-device.js';

const child = fileURLToPath(new URL('./gpu-child.ts', import.meta.url));

function run(env: Record<string, string | undefined>) {
  const r = spawnSync(process.execPath, ['--conditions=wgit-source', '--import', 'tsx', child], {
    encoding: 'utf8',
    env: { ...process.env, WGIT_DEVICE: undefined, WGIT_GPU_ALLOW_SOFTWARE: undefined, ...env },
  });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout.trim().split('\n').pop() as string);
}

test('gpu with no Vulkan driver manifest: E_DEVICE_UNAVAILABLE naming the missing ICD; auto falls back with a notice', () => {
  const r = run({ VK_ICD_FILENAMES: '/nonexistent/icd.json', VK_DRIVER_FILES: '/nonexistent/icd.json' });
  assert.equal(r.gpu.code, 'E_DEVICE_UNAVAILABLE');
  assert.ok(['no-icd', 'no-vulkan-loader', 'no-webgpu-module'].includes(r.gpu.reason), r.gpu.reason);
  if (r.gpu.reason === 'no-icd') assert.match(r.gpu.message, /Vulkan ICD/);
  assert.equal(r.auto.device, 'cpu');
  assert.match(r.auto.notice, /^wgit: computing on the CPU: /);
});

test('explicit gpu takes lavapipe; auto does not, unless WGIT_GPU_ALLOW_SOFTWARE=1', async (t) => {
  const gpu = await gpuUnderTest();
  if (!gpu) return t.skip('no GPU adapter here (CI installs lavapipe)');
  const plain = run({});
  assert.deepEqual(plain.gpu, { name: 'webgpu', kind: 'gpu', y: [3, 6] });
  const allowed = run({ WGIT_GPU_ALLOW_SOFTWARE: '1' });
  assert.equal(allowed.auto.device, 'gpu');
  assert.equal(allowed.auto.notice, undefined);
  // lavapipe is a software adapter: without the variable, auto computes on the CPU and says why
  // (a machine with a hardware GPU takes it instead)
  if (plain.auto.device === 'cpu') assert.match(plain.auto.notice, /computing on the CPU/);
  const forced = run({ WGIT_DEVICE: 'cpu', WGIT_GPU_ALLOW_SOFTWARE: '1' });
  assert.equal(forced.auto.device, 'cpu');
});

test('GPU parity is required under CI', () => {
  if (process.env.CI === 'true') assert.ok(GPU_REQUIRED);
});
