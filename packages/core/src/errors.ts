/**
 * Every failure a user can cause is a WgitError: a stable machine-readable
 * `code`, a one-line message, and optional structured data. Tests assert on
 * the code, never on the message text. The codes, with their meanings, are
 * listed in errors/codes.ts (and docs/errors.md); a test fails on a code
 * thrown anywhere that the catalogue lacks.
 */
import type { ErrorCode } from './errors/codes.js';

export {
  ERROR_CODES,
  type ErrorCode,
  type ErrorCodeInfo,
  exitStatus,
  isErrorCode,
  SYSTEM_ERROR_NOTE,
} from './errors/codes.js';

declare const systemCode: unique symbol;
/** An operating-system failure's code behind `E_` (`E_NOENT`, `E_ACCES`…): made by systemErrorCode only. */
export type SystemErrorCode = string & { readonly [systemCode]: true };

/** `ENOENT` → `E_NOENT`: how a failure the operating system reports keeps its code (see SYSTEM_ERROR_NOTE). */
export function systemErrorCode(errno: string): SystemErrorCode {
  return `E_${errno.replace(/^E/, '')}` as SystemErrorCode;
}

/** A code a WgitError can carry: one of the catalogue's, or an operating-system code. */
export type WgitErrorCode = ErrorCode | SystemErrorCode;

export class WgitError extends Error {
  readonly code: WgitErrorCode;
  readonly data: Record<string, unknown>;

  constructor(code: WgitErrorCode, message: string, data: Record<string, unknown> = {}) {
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
