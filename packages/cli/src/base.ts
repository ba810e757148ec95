import { Command, Flags, type Interfaces } from '@oclif/core';
import { errorSummary } from './error-summary.js';

export { errorSummary };

/**
 * Base for every wgit command: `--json` prints run()'s result as one JSON
 * document; any failure becomes one line on stderr (or
 * `{"error":{"code","message"}}` on stdout under --json) and a non-zero exit.
 */
export abstract class WgitCommand extends Command {
  static override enableJsonFlag = true;

  static override baseFlags = {
    repo: Flags.string({
      description: 'path of the wgit repository (default: search upward from the current folder)',
      helpGroup: 'GLOBAL',
    }),
  };

  /** Progress on stderr, only when stderr is a terminal and not under --json. */
  protected progress(message: string): void {
    if (!this.jsonEnabled() && process.stderr.isTTY) process.stderr.write(`\r\x1b[K${message}`);
  }

  protected progressDone(): void {
    if (!this.jsonEnabled() && process.stderr.isTTY) process.stderr.write('\r\x1b[K');
  }

  protected override toErrorJson(err: unknown): unknown {
    return { error: errorSummary(err) };
  }

  protected override async catch(err: Interfaces.CommandError): Promise<unknown> {
    const summary = errorSummary(err);
    if (this.jsonEnabled()) {
      this.logJson(this.toErrorJson(err));
    } else {
      process.stderr.write(`wgit: error: ${summary.message} [${summary.code}]\n`);
    }
    if (process.env.WGIT_DEBUG && err instanceof Error) process.stderr.write(`${err.stack}\n`);
    process.exitCode = summary.code === 'E_USAGE' ? 2 : 1;
    // Returning instead of rethrowing keeps oclif from printing a stack trace.
    return undefined;
  }
}
