/**
 * `--device auto|cpu|gpu` on every computing command. The flag sets the
 * process's device (WGIT_DEVICE), which every kernel caller asking for
 * `auto` then gets; the device is opened once up front so that `gpu`
 * without a usable adapter fails before any work, naming what is missing,
 * and the recipe records what computed the result.
 */
import { Flags } from '@oclif/core';

export const deviceFlags = {
  device: Flags.string({
    description:
      'where to compute: auto (a hardware GPU when one is usable, else the CPU), cpu, or gpu (an error naming what is missing when there is none); see wgit doctor',
    options: ['auto', 'cpu', 'gpu'],
    default: 'auto',
    helpGroup: 'COMPUTE',
  }),
};

/** What computed a result, as recipes record it. */
export interface DeviceUsed {
  device: 'cpu' | 'gpu';
  backend: string;
}

/** Sets the process's device from the flag and opens it: E_DEVICE_UNAVAILABLE now rather than mid-run. */
export async function useDevice(kind: string | undefined): Promise<DeviceUsed> {
  const { getDevice } = await import('@wgit/core');
  const k = (kind ?? 'auto') as 'auto' | 'cpu' | 'gpu';
  process.env.WGIT_DEVICE = k;
  const d = await getDevice({ device: k });
  return { device: d.kind, backend: d.name };
}
