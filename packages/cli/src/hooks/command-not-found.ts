import { type Hook, loadHelpClass } from '@oclif/core';
import { escapeControls, jsonText } from '../format.js';
import { closest } from '../suggest.js';

/**
 * oclif's own message for an unknown command is a decorated multi-line
 * error; wgit prints the same one-line form as every other usage error
 * (and the JSON error document under --json), exit status 2.
 */
const hook: Hook<'command_not_found'> = async (opts) => {
  // `wgit help merge` (and `wgit help`): help for a command, as git users type it.
  if (opts.id === 'help' || opts.id.startsWith('help:')) {
    const rest = opts.id === 'help' ? [] : opts.id.slice('help:'.length).split(':');
    const Help = await loadHelpClass(opts.config);
    await new Help(opts.config).showHelp([...rest, ...(opts.argv ?? [])]);
    return;
  }
  const typed = opts.id.replace(/:/g, ' ');
  const known = opts.config.commandIDs.map((c) => c.replace(/:/g, ' '));
  const guess = closest(typed, known) ?? closest(typed.split(' ')[0], known);
  const message = `unknown command "${typed}"${guess ? `; did you mean "${guess}"?` : ''} (wgit --help lists the commands)`;
  if (opts.argv?.includes('--json')) {
    process.stdout.write(`${jsonText({ error: { code: 'E_USAGE', message } })}\n`);
  } else {
    process.stderr.write(`wgit: error: ${escapeControls(message)} [E_USAGE]\n`);
  }
  process.exitCode = 2;
};

export default hook;
