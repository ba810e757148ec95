import { WgitError } from '../errors.js';

type Code = ConstructorParameters<typeof WgitError>[0];

/**
 * An error as it crosses the thread boundary: WgitErrors keep code and data,
 * operating-system errors their errno code. The worker side writes it
 * (worker/host.js, `toWire`); fromWire turns it back into an error here.
 */
export interface WireError {
  wgit: boolean;
  code?: string;
  message: string;
  data?: Record<string, unknown>;
}

export function fromWire(w: WireError): Error {
  if (w.wgit) return new WgitError((w.code ?? 'E_INTERNAL') as Code, w.message, w.data);
  return Object.assign(new Error(w.message), w.code ? { code: w.code } : {});
}
