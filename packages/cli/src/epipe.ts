// Free of oclif and of @wgit/core, so the inspect fast path in bin/run.js can use it at no start-up cost.

let installed = false;

/**
 * A reader that stops early (`wgit log | head`, `wgit inspect F --json | head
 * -c 10`) closes the pipe; the next write fails with EPIPE. That is the
 * reader's choice, not an error: exit at once, quietly, with the status the
 * command had so far (0 unless it had already failed). Without this, Node
 * reports an unhandled 'error' event with a stack trace.
 */
export function exitQuietlyOnClosedOutput(): void {
  if (installed) return;
  installed = true;
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE') throw err;
      const code = process.exitCode;
      process.exit(typeof code === 'number' ? code : code ? Number(code) || 1 : 0);
    });
  }
}
