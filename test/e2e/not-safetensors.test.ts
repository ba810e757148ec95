/** Files that are not safetensors are named for what they are, with the way out for PyTorch pickles. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';

const BIN = path.resolve(import.meta.dirname, '..', '..', 'packages', 'cli', 'bin', 'run.js');
let dir: string;

function commit(target: string): { code: string; message: string; tree: string[] } {
  const r = spawnSync(process.execPath, [BIN, 'commit', target, '--json'], {
    cwd: path.join(dir, 'repo'),
    encoding: 'utf8',
  });
  const e = JSON.parse(r.stdout).error;
  return { code: e.code, message: e.message, tree: fs.readdirSync(path.join(dir, 'repo', '.wgit', 'refs', 'heads')) };
}

describe('commit of what is not safetensors', () => {
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-notst-'));
    fs.mkdirSync(path.join(dir, 'repo'));
    assert.equal(spawnSync(process.execPath, [BIN, 'init'], { cwd: path.join(dir, 'repo') }).status, 0);
    fs.mkdirSync(path.join(dir, 'trainer'));
    // A protocol-2 pickle header followed by filler, as torch.save's legacy format starts.
    fs.writeFileSync(
      path.join(dir, 'trainer', 'pytorch_model.bin'),
      Buffer.concat([Buffer.from([0x80, 2]), Buffer.alloc(64, 1)]),
    );
    fs.writeFileSync(path.join(dir, 'trainer', 'config.json'), '{"model_type": "llama"}\n');
    fs.writeFileSync(path.join(dir, 'zipped.pt'), Buffer.concat([Buffer.from('PK\x03\x04'), Buffer.alloc(64)]));
    fs.writeFileSync(path.join(dir, 'model.gguf'), Buffer.concat([Buffer.from('GGUF'), Buffer.alloc(64, 3)]));
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('a folder with only pytorch_model.bin: a pickle, and how to convert it', () => {
    const r = commit(path.join(dir, 'trainer'));
    assert.equal(r.code, 'E_NOT_A_MODEL');
    assert.match(r.message, /pytorch_model\.bin is a PyTorch checkpoint \(a pickle\)/);
    assert.match(r.message, /safe_serialization=True/);
    assert.deepEqual(r.tree, [], 'no branch was made');
  });

  it('config.json given as a model: JSON, not a header length', () => {
    const r = commit(path.join(dir, 'trainer', 'config.json'));
    assert.equal(r.code, 'E_NOT_A_MODEL');
    assert.match(r.message, /is not a safetensors file: it looks like JSON text$/);
    assert.doesNotMatch(r.message, /header length/);
  });

  it('a torch.save zip and a GGUF file are named as such', () => {
    assert.match(commit(path.join(dir, 'zipped.pt')).message, /zip archive .*torch\.save.*convert it with/);
    assert.match(commit(path.join(dir, 'model.gguf')).message, /a GGUF file/);
  });
});
