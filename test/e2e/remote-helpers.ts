import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { bf16Weights, buildSafetensors, fineTune } from '../../packages/store/test/helpers.js';

export const ROOT = path.resolve(import.meta.dirname, '..', '..');
export const BIN = path.join(ROOT, 'packages', 'cli', 'bin', 'run.js');
export const STORE_DIST = path.join(ROOT, 'packages', 'store', 'dist', 'index.js');
const run = promisify(execFile);

export interface CliResult {
  code: number;
  json: Record<string, unknown> & { error?: { code: string; message: string } };
  stdout: string;
  stderr: string;
}

/** Runs the built CLI with --json; never throws on a non-zero exit. */
export async function wgit(cwd: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  try {
    const r = await run(process.execPath, [BIN, ...args, '--json'], {
      cwd,
      env: { ...process.env, WGIT_AUTHOR_DATE: '1700000000', ...env },
      maxBuffer: 64 * 1024 * 1024,
      // No CLI call in these tests takes a minute; one that hangs is killed and fails its test.
      timeout: 120_000,
      killSignal: 'SIGKILL',
    });
    return { code: 0, json: JSON.parse(r.stdout), stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const x = e as { code?: number; stdout?: string; stderr?: string };
    let json = {};
    try {
      json = JSON.parse(x.stdout ?? '');
    } catch {
      // not JSON
    }
    return { code: typeof x.code === 'number' ? x.code : 1, json, stdout: x.stdout ?? '', stderr: x.stderr ?? '' };
  }
}

export async function ok(cwd: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult['json']> {
  const r = await wgit(cwd, args, env);
  assert.equal(r.code, 0, `wgit ${args.join(' ')} failed: ${r.stdout} ${r.stderr}`);
  return r.json;
}

/** A base model and fine-tunes of it: `tensors` bf16 tensors of `elems` values each. */
export function lineage(dir: string, n: number, opts: { tensors?: number; elems?: number } = {}): string[] {
  const tensors = opts.tensors ?? 4;
  const elems = opts.elems ?? 128 * 1024;
  const base = Array.from({ length: tensors }, (_, i) => bf16Weights(elems, 1000 + i));
  const out: string[] = [];
  for (let k = 0; k < n; k++) {
    const data = k === 0 ? base : base.map((b, i) => fineTune(b, 0.3, k * 100 + i));
    const file = path.join(dir, `model-${k}.safetensors`);
    fs.writeFileSync(
      file,
      buildSafetensors(data.map((d, i) => ({ name: `layer.${i}.weight`, dtype: 'BF16', shape: [elems], data: d }))),
    );
    out.push(file);
  }
  return out;
}

/** Chunk ids, object ids and branch/tag values of a repository folder (its .wgit), read with plain fs. */
export function snapshot(gitdir: string): { chunks: string[]; objects: string[]; refs: Record<string, string> } {
  const walk = (dir: string, depth: number): string[] => {
    if (!fs.existsSync(dir)) return [];
    const out: string[] = [];
    for (const fan of fs.readdirSync(dir)) {
      if (!/^[0-9a-f]{2}$/.test(fan)) continue;
      for (const rest of fs.readdirSync(path.join(dir, fan))) if (/^[0-9a-f]+$/.test(rest)) out.push(fan + rest);
    }
    return depth ? out.sort() : out.sort();
  };
  const refs: Record<string, string> = {};
  const walkRefs = (dir: string, rel: string) => {
    if (!fs.existsSync(dir)) return;
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      if (e.isDirectory()) walkRefs(path.join(dir, e.name), `${rel}${e.name}/`);
      else if (!e.name.endsWith('.lock'))
        refs[`${rel}${e.name}`] = fs.readFileSync(path.join(dir, e.name), 'utf8').trim();
    }
  };
  walkRefs(path.join(gitdir, 'refs', 'heads'), 'refs/heads/');
  walkRefs(path.join(gitdir, 'refs', 'tags'), 'refs/tags/');
  return { chunks: walk(path.join(gitdir, 'wgit', 'chunks'), 1), objects: walk(path.join(gitdir, 'objects'), 0), refs };
}

/** Debian git's own fsck over a repository's objects and refs (an oracle independent of wgit). */
export function gitFsck(gitdir: string): void {
  const r = spawnSync('git', [`--git-dir=${gitdir}`, 'fsck', '--full', '--strict', '--no-dangling'], {
    encoding: 'utf8',
  });
  assert.equal(r.status, 0, `git fsck ${gitdir}: ${r.stdout}${r.stderr}`);
}
