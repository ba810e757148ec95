#!/usr/bin/env node
// `wgit inspect PATH [--json]` skips oclif (about a quarter second of module
// loading) unless WGIT_NO_FAST_PATH is set; everything else goes through oclif.
async function fastPath(argv) {
  if (argv[0] !== 'inspect' || process.env.WGIT_NO_FAST_PATH) return false;
  const { fastInspect } = await import('../dist/inspect-model.js');
  return fastInspect(argv.slice(1));
}

if (!(await fastPath(process.argv.slice(2)))) {
  const { execute } = await import('@oclif/core');
  await execute({ dir: import.meta.url });
}
