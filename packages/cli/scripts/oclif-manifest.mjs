#!/usr/bin/env node
// Writes oclif.manifest.json from the built command classes (dist/commands).
// Without it oclif imports every command file on each start to learn their
// flags; with it only the command being run is loaded. This is what the
// `oclif manifest` dev tool does, without pulling that tool's dependency tree.
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Plugin } from '@oclif/core';

const root = fileURLToPath(new URL('..', import.meta.url));
const target = join(root, 'oclif.manifest.json');
// A stale manifest would hide new commands while we list the current ones.
rmSync(target, { force: true });
const plugin = new Plugin({ root, type: 'core', isRoot: true, ignoreManifest: true, errorOnManifestCreate: true });
await plugin.load();
const ids = Object.keys(plugin.manifest.commands);
if (ids.length === 0) throw new Error(`no commands found under ${join(root, 'dist', 'commands')}`);

const tmp = `${target}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
const fd = openSync(tmp, 'wx');
try {
  writeSync(fd, `${JSON.stringify(plugin.manifest, null, 2)}\n`);
  fsyncSync(fd);
} finally {
  closeSync(fd);
}
renameSync(tmp, target);
console.log(`oclif.manifest.json: ${ids.length} commands`);
