import { Flags } from '@oclif/core';
import type { remotes } from '@wgit/store';
import { escapeControls } from './format.js';

/** --progress: progress lines on stderr even when it is not a terminal. */
export const progressFlag = {
  progress: Flags.boolean({ description: 'show progress on stderr even when it is not a terminal' }),
};

/** S3 connection flags (never credentials: those come from the AWS environment and files). */
export const s3Flags = {
  endpoint: Flags.string({
    description: 'S3 endpoint URL for S3-compatible servers (default: AWS_ENDPOINT_URL, else AWS)',
  }),
  region: Flags.string({ description: 'S3 region (default: AWS_REGION, else us-east-1)' }),
  'path-style': Flags.boolean({
    description: 'address the bucket path-style (the default with --endpoint)',
    allowNo: true,
  }),
};

/** A progress callback writing one refreshed line (terminal) or one line per report (--progress, not a terminal). */
export function progressReporter(
  verb: string,
  opts: { json: boolean; force: boolean },
  format: typeof remotes.formatProgress,
): { report?: (p: remotes.TransferProgress) => void; done(): void } {
  const tty = Boolean(process.stderr.isTTY) && !opts.json;
  if (!tty && !opts.force) return { done() {} };
  let shown = false;
  return {
    report: (p) => {
      shown = true;
      const line = escapeControls(format(verb, p));
      process.stderr.write(tty ? `\r\x1b[K${line}` : `${line}\n`);
    },
    done() {
      if (shown && tty) process.stderr.write('\n');
    },
  };
}
