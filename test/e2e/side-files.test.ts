/**
 * Whose side files a derived model gets: a transfer keeps the fine-tune's
 * tokenizer, chat template and generation settings with the new base's
 * config.json; --side-files-from names one model for all of them.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { bf16Weights, fineTune, writeShardedFolder } from '../../packages/store/test/helpers.js';

const BIN = path.resolve(import.meta.dirname, '..', '..', 'packages', 'cli', 'bin', 'run.js');
let dir: string;
let repo: string;

function wgit(...args: string[]): { status: number; json: any } {
  const r = spawnSync(process.execPath, [BIN, ...args, '--json'], { cwd: repo, encoding: 'utf8' });
  return { status: r.status ?? -1, json: JSON.parse(r.stdout) };
}
function sideFiles(rev: string): Record<string, string> {
  const out = path.join(dir, `co-${rev.replace(/\W/g, '-')}`);
  assert.equal(wgit('checkout', rev, '--out', out).status, 0);
  return Object.fromEntries(
    fs
      .readdirSync(out)
      .filter((f) => !f.endsWith('.safetensors') && !f.endsWith('.index.json'))
      .map((f) => [f, fs.readFileSync(path.join(out, f), 'utf8')]),
  );
}

describe('side files of derived models', () => {
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-side-'));
    repo = path.join(dir, 'repo');
    fs.mkdirSync(repo);
    const w = bf16Weights(512, 9);
    const t = (data: Uint8Array) => [
      [{ name: 'model.layers.0.mlp.up_proj.weight', dtype: 'BF16' as const, shape: [16, 32], data }],
    ];
    writeShardedFolder(path.join(dir, 'v1'), t(w), { 'config.json': '{"v":1}', 'tokenizer_config.json': '{"base":1}' });
    writeShardedFolder(path.join(dir, 'v2'), t(fineTune(w, 0.05, 1)), {
      'config.json': '{"v":2}',
      'tokenizer_config.json': '{"base":2}',
      'generation_config.json': '{"temperature":1}',
    });
    writeShardedFolder(path.join(dir, 'instruct'), t(fineTune(w, 0.1, 2)), {
      'config.json': '{"v":1}',
      'tokenizer_config.json': '{"chat_template":"<|user|>"}',
      'generation_config.json': '{"temperature":0.6}',
    });
    assert.equal(wgit('init').status, 0);
    for (const m of ['v1', 'v2', 'instruct']) assert.equal(wgit('commit', path.join(dir, m), '--branch', m).status, 0);
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it("transfer keeps the fine-tune's chat template and generation settings, with the new base's config", () => {
    const r = wgit('transfer', 'instruct', '--from', 'v1', '--onto', 'v2', '--branch', 'instruct-v2');
    assert.equal(r.status, 0, JSON.stringify(r.json));
    assert.deepEqual(r.json.sideFiles, {
      'config.json': 'v2',
      'generation_config.json': 'instruct',
      'tokenizer_config.json': 'instruct',
    });
    assert.deepEqual(sideFiles('instruct-v2'), {
      'config.json': '{"v":2}',
      'generation_config.json': '{"temperature":0.6}',
      'tokenizer_config.json': '{"chat_template":"<|user|>"}',
    });
    assert.deepEqual(wgit('show', 'instruct-v2').json.recipe.sideFiles, r.json.sideFiles);
  });

  it('--side-files-from takes them all from one model', () => {
    const r = wgit(
      'transfer',
      'instruct',
      '--from',
      'v1',
      '--onto',
      'v2',
      '--side-files-from',
      'v2',
      '--branch',
      'plain',
    );
    assert.equal(r.status, 0, JSON.stringify(r.json));
    assert.deepEqual(sideFiles('plain'), {
      'config.json': '{"v":2}',
      'generation_config.json': '{"temperature":1}',
      'tokenizer_config.json': '{"base":2}',
    });
  });

  it('merge --side-files-from: the files of that model, which is not a parent', () => {
    const r = wgit('merge', 'instruct', 'v2', '--method', 'linear', '--side-files-from', 'instruct', '--branch', 'm');
    assert.equal(r.status, 0, JSON.stringify(r.json));
    assert.equal(sideFiles('m')['tokenizer_config.json'], '{"chat_template":"<|user|>"}');
    const ids = [wgit('show', 'instruct').json.commit, wgit('show', 'v2').json.commit];
    assert.deepEqual(wgit('show', 'm').json.parents, ids);
    assert.equal(wgit('show', 'm').json.recipe.sideFilesFrom.rev, 'instruct');
  });
});
