// Run by gpu-select.test.ts in a fresh process (the environment decides what Dawn finds):
// prints what autoChoice and getDevice({ device: 'gpu' }) give, as one JSON line.
import { autoChoice, getDevice, isWgitError } from '@wgit/core';

const out: Record<string, unknown> = {};
const choice = await autoChoice();
out.auto = { device: choice.device, notice: choice.notice };
try {
  const d = await getDevice({ device: 'gpu' });
  const y = new Float32Array(2);
  await d.axpy(Float32Array.of(1, 2), 0.5, Float32Array.of(4, 8), y);
  out.gpu = { name: d.name, kind: d.kind, y: [...y] };
  await d.close();
} catch (e) {
  out.gpu = isWgitError(e)
    ? { code: e.code, reason: (e.data as { reason?: string }).reason, message: e.message }
    : String(e);
}
process.stdout.write(`${JSON.stringify(out)}\n`);
