import type { Hook } from '@oclif/core';
import { escapeControls, jsonText } from '../format.js';

/**
 * oclif's own message for an unknown command is a decorated multi-line
 * error; wgit prints the same one-line form as every other usage error
 * (and the JSON error document under --json), exit status 2.
 */
const hook: Hook<'command_not_found'> = async (opts) => {
  const message = `unknown command "${opts.id}" (wgit --help lists the commands)`;
  if (opts.argv?.includes('--json')) {
    process.stdout.write(`${jsonText({ error: { code: 'E_USAGE', message } })}\n`);
  } else {
    process.stderr.write(`wgit: error: ${escapeControls(message)} [E_USAGE]\n`);
  }
  process.exitCode = 2;
};

export default hook;
