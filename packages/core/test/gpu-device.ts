// The GPU device the parity tests run on: explicit `gpu` (a software adapter such as lavapipe is
// accepted), with small slices so that slicing and both staging sets are exercised. Without one,
// tests that need it fail under CI=true (CI installs lavapipe) or WGIT_REQUIRE_GPU=1, and are left
// out elsewhere with one line saying why.
import { type Device, getDevice } from '@wgit/core';

export const GPU_REQUIRED = process.env.CI === 'true' || process.env.WGIT_REQUIRE_GPU === '1';

let device: Promise<Device | undefined> | undefined;

export function gpuUnderTest(sliceElements = 1024): Promise<Device | undefined> {
  device ??= getDevice({ device: 'gpu', sliceElements }).catch((e: Error) => {
    if (GPU_REQUIRED) throw e;
    console.error(`# no GPU backend on this machine (${e.message}): GPU parity not run`);
    return undefined;
  });
  return device;
}
