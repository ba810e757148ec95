// wgit soup --greedy through the built CLI with a tiny evaluator written here:
// the greedy order, the accepted members, the scores in the recipe, the soup's
// values; the model folder reaches the evaluator as one argument.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type RawTensor, writeShardedFolder } from '../../packages/store/test/helpers.js';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const BIN = path.join(ROOT, 'packages', 'cli', 'bin', 'run.js');
const ENV = {
  ...process.env,
  WGIT_AUTHOR_DATE: '1700000000',
  WGIT_AUTHOR_NAME: 'T',
  WGIT_AUTHOR_EMAIL: 't@example.com',
};

function wgit(cwd: string, ...args: string[]): { status: number; json: any; out: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd, env: ENV, encoding: 'utf8' });
  let json: any = null;
  try {
    json = JSON.parse(r.stdout);
  } catch {}
  return { status: r.status ?? -1, json, out: r.stdout + r.stderr };
}

// score = −|mean of the tensor − 1|, read from the folder's safetensors files by hand
const EVALUATOR = `
const fs = require('node:fs'); const path = require('node:path');
if (process.argv.length !== 3) { console.error('want one argument, got', process.argv.length - 2); process.exit(3); }
const dir = process.argv[2];
let sum = 0, n = 0;
for (const f of fs.readdirSync(dir).filter((f) => f.endsWith('.safetensors'))) {
  const b = fs.readFileSync(path.join(dir, f));
  const len = Number(b.readBigUInt64LE(0));
  const h = JSON.parse(b.subarray(8, 8 + len).toString('utf8'));
  const t = h['model.layers.0.w'];
  if (!t) continue;
  const [s, e] = t.data_offsets;
  for (let o = 8 + len + s; o < 8 + len + e; o += 4) { sum += b.readFloatLE(o); n++; }
}
console.log(String(-Math.abs(sum / n - 1)));
`;

describe('wgit soup (CLI)', () => {
  let dir: string;
  let repo: string;
  const values: Record<string, number> = { A: 1.2, B: 0.7, C: 3, D: 0.9 };
  const commits: Record<string, string> = {};

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-soup-'));
    repo = path.join(dir, 'repo');
    fs.mkdirSync(repo);
    fs.writeFileSync(path.join(dir, 'eval.cjs'), EVALUATOR);
    assert.equal(wgit(repo, 'init', '--json').status, 0);
    for (const [name, v] of Object.entries(values)) {
      const data = new Uint8Array(new Float32Array([v, v, v, v]).buffer);
      const t: RawTensor[] = [{ name: 'model.layers.0.w', dtype: 'F32', shape: [2, 2], data }];
      writeShardedFolder(path.join(dir, name), [t], { 'config.json': '{"v":1}' });
      const c = wgit(repo, 'commit', path.join(dir, name), '-m', name, '--json');
      assert.equal(c.status, 0, c.out);
      commits[name] = c.json.commit;
      assert.equal(wgit(repo, 'tag', `ft-${name}`, c.json.commit, '--json').status, 0);
    }
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('--greedy: candidates by own score, each kept only when the soup does not get worse', async () => {
    const evalCmd = `"${process.execPath}" "${path.join(dir, 'eval.cjs')}" {model}`;
    const r = wgit(repo, 'soup', 'ft-A', 'ft-B', 'ft-C', 'ft-D', '--greedy', '--eval', evalCmd, '--json');
    assert.equal(r.status, 0, r.out);
    const own = r.json.candidates.map((c: { score: number }) => c.score);
    const want = [1.2, 0.7, 3, 0.9].map((v) => -Math.abs(Math.fround(v) - 1));
    for (const [i, s] of own.entries()) assert.ok(Math.abs(s - want[i]) < 1e-6, `${i}: ${s}`);
    // D (−0.1) first; D+A (1.05) is better, kept; D+A+B (0.933) worse; D+A+C (1.7) worse
    assert.deepEqual(r.json.members, ['ft-D', 'ft-A']);
    assert.deepEqual(
      r.json.trials.map((t: { members: string[]; accepted: boolean }) => [t.members.join('+'), t.accepted]),
      [
        ['ft-D+ft-A', true],
        ['ft-D+ft-A+ft-B', false],
        ['ft-D+ft-A+ft-C', false],
      ],
    );
    assert.ok(Math.abs(r.json.score + 0.05) < 1e-6, String(r.json.score));
    assert.deepEqual(r.json.parents, [commits.D, commits.A]);
    const show = wgit(repo, 'show', r.json.commit, '--json');
    assert.equal(show.status, 0, show.out);
    assert.equal(show.json.recipe.method, 'soup');
    assert.deepEqual(show.json.recipe.order, ['ft-D', 'ft-A', 'ft-B', 'ft-C']);
    assert.equal(show.json.recipe.eval, evalCmd);
    assert.equal(show.json.recipe.candidates.length, 4);
    const { openModel } = await import('../../packages/core/src/safetensors/index.js');
    const out = path.join(dir, 'soup-out');
    assert.equal(wgit(repo, 'checkout', r.json.commit, '--out', out, '--json').status, 0);
    const m = await openModel(out);
    const got = new Float32Array((await m.readTensor('model.layers.0.w')).slice().buffer);
    await m.close();
    const avg = Math.fround(Math.fround(Math.fround(0.9) * 0.5) + Math.fround(Math.fround(1.2) * 0.5));
    assert.deepEqual(Array.from(got), [avg, avg, avg, avg]);
  });

  it('refuses an evaluator that fails or prints no number, and --greedy without --eval', () => {
    const bad = path.join(dir, 'bad.cjs');
    fs.writeFileSync(bad, "console.log('accuracy: high')");
    const r1 = wgit(
      repo,
      'soup',
      'ft-A',
      'ft-B',
      '--greedy',
      '--eval',
      `"${process.execPath}" "${bad}" {model}`,
      '--json',
    );
    assert.notEqual(r1.status, 0);
    assert.match(r1.out, /E_EVAL_FAILED/);
    const r2 = wgit(
      repo,
      'soup',
      'ft-A',
      'ft-B',
      '--greedy',
      '--eval',
      `"${process.execPath}" -e "process.exit(4)" {model}`,
      '--json',
    );
    assert.match(r2.out, /E_EVAL_FAILED/);
    const r3 = wgit(repo, 'soup', 'ft-A', 'ft-B', '--greedy', '--json');
    assert.match(r3.out, /E_USAGE/);
  });
});
