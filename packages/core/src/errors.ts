/**
 * Every failure a user can cause is a WgitError: a stable machine-readable
 * `code`, a one-line message, and optional structured data. Tests assert on
 * the code, never on the message text. The codes, with their meanings, are
 * listed in errors/codes.ts (and docs/errors.md); a test fails on a code
 * thrown anywhere that the catalogue lacks.
 */
export {
  ERROR_CODES,
  type ErrorCode,
  type ErrorCodeInfo,
  exitStatus,
  isErrorCode,
  SYSTEM_ERROR_NOTE,
} from './errors/codes.js';

export class WgitError extends Error {
  readonly code: string;
  readonly data: Record<string, unknown>;

  constructor(code: string, message: string, data: Record<string, unknown> = {}) {
    super(message.replace(/\s*\n\s*/g, ' '));
    this.name = 'WgitError';
    this.code = code;
    this.data = data;
  }
}

export function isWgitError(err: unknown): err is WgitError {
  return (
    typeof err === 'object' &&
    err !== null &&
    (err as { name?: unknown }).name === 'WgitError' &&
    typeof (err as { code?: unknown }).code === 'string'
  );
}
