// Kept apart from base.ts (and free of oclif) so the inspect fast path in bin/run.js can format errors
// exactly like the commands do. Only the errors module of core: all of @wgit/core costs ~0.15 s of start-up.
import { isWgitError, systemErrorCode } from '@wgit/core/errors';

/** The stable code and one-line message printed for any failure. */
export function errorSummary(err: unknown): { code: string; message: string } {
  if (isWgitError(err)) return { code: err.code, message: err.message };
  const e = err as { code?: unknown; message?: unknown; oclif?: unknown };
  // oclif parse errors (unknown flag, missing argument) carry an oclif field.
  if (e && typeof e === 'object' && 'oclif' in e) {
    // Their text spans several lines (the missing argument on the next one); fold it into one.
    const lines = String(e.message ?? err)
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean);
    const text = lines
      .join(' ')
      .replace(/\s+/g, ' ')
      .replace(/^The following errors? occurred: /, '')
      .replace(/ ?See more help with --help$/, '')
      .replace(/^Nonexistent flags?: /, 'unknown flag ')
      .replace(/^Missing required flag /, 'missing required flag --');
    return { code: 'E_USAGE', message: text };
  }
  if (e && typeof e.code === 'string' && typeof e.message === 'string') {
    // Node system errors (ENOENT, ENOSPC, EACCES …) keep their code.
    return { code: systemErrorCode(e.code), message: e.message.split('\n')[0] };
  }
  const message = err instanceof Error ? err.message : String(err);
  return { code: 'E_INTERNAL', message: message.split('\n')[0] };
}
