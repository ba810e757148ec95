/**
 * `--eval "CMD {model}"`: split into arguments once (whitespace separates;
 * '…' and "…" quote; no other shell syntax), then run without a shell with
 * `{model}` replaced inside each argument by the model folder, so a folder or
 * revision name is always part of one argument and never parsed. The command
 * must exit 0 and print one finite number (higher is better).
 */
import { spawnSync } from 'node:child_process';
import { WgitError } from '@wgit/core';

export function splitCommand(cmd: string): string[] {
  const out: string[] = [];
  let cur = '';
  let have = false;
  let quote: '"' | "'" | null = null;
  for (const ch of cmd) {
    if (quote) {
      if (ch === quote) quote = null;
      else cur += ch;
    } else if (ch === '"' || ch === "'") {
      quote = ch;
      have = true;
    } else if (/\s/.test(ch)) {
      if (have) out.push(cur);
      cur = '';
      have = false;
    } else {
      cur += ch;
      have = true;
    }
  }
  if (quote) throw new WgitError('E_USAGE', `--eval: unclosed ${quote} in ${JSON.stringify(cmd)}`, { flag: 'eval' });
  if (have) out.push(cur);
  if (out.length === 0) throw new WgitError('E_USAGE', '--eval: an empty command', { flag: 'eval' });
  if (!out.some((a) => a.includes('{model}')))
    throw new WgitError('E_USAGE', '--eval: the command must name the model folder as {model}', { flag: 'eval' });
  return out;
}

/** Runs the evaluation on one model folder and returns the number it printed. */
export function runEval(argv: string[], modelDir: string, timeoutMs = 3_600_000): number {
  const args = argv.map((a) => a.split('{model}').join(modelDir));
  const r = spawnSync(args[0], args.slice(1), {
    encoding: 'utf8',
    shell: false,
    timeout: timeoutMs,
    maxBuffer: 1 << 20,
  });
  const fail = (why: string) =>
    new WgitError('E_EVAL_FAILED', `--eval ${JSON.stringify(argv.join(' '))}: ${why}`, {
      status: r.status,
      stderr: (r.stderr ?? '').slice(-2000),
    });
  if (r.error) throw fail(r.error.message);
  if (r.status !== 0) throw fail(`exited ${r.status ?? r.signal}`);
  const text = (r.stdout ?? '').trim();
  const v = Number(text);
  if (text === '' || !/^[-+0-9.eE]+$/.test(text) || !Number.isFinite(v))
    throw fail(`printed ${JSON.stringify(text.slice(0, 200))}, not one number`);
  return v;
}
