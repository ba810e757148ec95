import { Command, Flags, type Interfaces, ux } from '@oclif/core';
import { exitQuietlyOnClosedOutput } from './epipe.js';
import { errorSummary } from './error-summary.js';
import { escapeControls, jsonText } from './format.js';
import { closest } from './suggest.js';

export { errorSummary };

/**
 * Base for every wgit command: `--json` prints run()'s result as one JSON
 * document; any failure becomes one line on stderr (or
 * `{"error":{"code","message"}}` on stdout under --json) and a non-zero exit.
 * Text that came from users, files or the repository is printed through
 * format.ts (escapeControls, printable, jsonText), so it cannot rewrite the
 * terminal; a reader that closes stdout early ends the command quietly.
 */
export abstract class WgitCommand extends Command {
  static override enableJsonFlag = true;

  static override baseFlags = {
    help: Flags.help({ char: 'h', description: 'show this help', helpGroup: 'GLOBAL' }),
    repo: Flags.string({
      description: 'path of the wgit repository (default: search upward from the current folder)',
      helpGroup: 'GLOBAL',
    }),
  };

  override async init(): Promise<void> {
    exitQuietlyOnClosedOutput();
    await super.init();
  }

  /** Progress on stderr, only when stderr is a terminal and not under --json. */
  protected progress(message: string): void {
    if (!this.jsonEnabled() && process.stderr.isTTY) process.stderr.write(`\r\x1b[K${escapeControls(message)}`);
  }

  protected progressDone(): void {
    if (!this.jsonEnabled() && process.stderr.isTTY) process.stderr.write('\r\x1b[K');
  }

  /** A usage error with a "did you mean" for a mistyped flag and where help is. */
  private withHints(message: string): string {
    const id = this.id?.replace(/:/g, ' ') ?? '';
    const m = /^unknown flag (--?[\w-]+)/.exec(message);
    if (m) {
      const flags = Object.entries((this.constructor as typeof WgitCommand).flags ?? {}).flatMap(([name, f]) => [
        `--${name}`,
        ...((f as { char?: string }).char ? [`-${(f as { char?: string }).char}`] : []),
      ]);
      const guess = closest(m[1], [...flags, '--json', '--repo', '--help']);
      if (guess) message = `${message}; did you mean ${guess}?`;
    }
    return id ? `${message} (wgit ${id} --help)` : message;
  }

  /** JSON.stringify escapes only C0 controls; jsonText escapes the bidi and C1 controls too. */
  override logJson(json: unknown): void {
    ux.stdout(jsonText(json));
  }

  /** Warnings often quote names (tensors, files, revisions): escaped like everything else. */
  override warn(input: string | Error): string | Error {
    return super.warn(escapeControls(typeof input === 'string' ? input : input.message));
  }

  protected override toErrorJson(err: unknown): unknown {
    return { error: errorSummary(err) };
  }

  protected override async catch(err: Interfaces.CommandError): Promise<unknown> {
    // `-h` prints the help, then oclif ends the command with exit status 0: not an error.
    if ((err as { oclif?: { exit?: number } }).oclif?.exit === 0) return undefined;
    const summary = errorSummary(err);
    if (summary.code === 'E_USAGE') summary.message = this.withHints(summary.message);
    if (this.jsonEnabled()) {
      this.logJson(this.toErrorJson(err));
    } else {
      process.stderr.write(`wgit: error: ${escapeControls(summary.message)} [${escapeControls(summary.code)}]\n`);
    }
    if (process.env.WGIT_DEBUG && err instanceof Error) process.stderr.write(`${err.stack}\n`);
    process.exitCode = summary.code === 'E_USAGE' ? 2 : 1;
    // Returning instead of rethrowing keeps oclif from printing a stack trace.
    return undefined;
  }
}
