import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ModelWriter, type TensorSpec, writeSafetensors } from '../../packages/core/src/safetensors/index.js';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const BIN = path.join(ROOT, 'packages', 'cli', 'bin', 'run.js');

interface Run {
  status: number;
  stdout: string;
  stderr: string;
}

/** Runs the built CLI; `oclif: true` turns off the inspect fast path so both routes are exercised. */
function wgit(args: string[], opts: { oclif?: boolean } = {}): Run {
  const env = { ...process.env };
  if (opts.oclif) env.WGIT_NO_FAST_PATH = '1';
  else delete env.WGIT_NO_FAST_PATH;
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

let tmp: string;
let model: string;
// Four tensors over three shards of at most 64 bytes: [emb 48 B + norm 8 B] [w1 64 B] [w2 24 B].
const specs: TensorSpec[] = [
  { name: 'model.embed_tokens.weight', dtype: 'BF16', shape: [6, 4] },
  { name: 'model.norm.weight', dtype: 'F16', shape: [4] },
  { name: 'model.layers.0.mlp.weight', dtype: 'F32', shape: [4, 4] },
  { name: 'lm_head.weight', dtype: 'BF16', shape: [3, 4] },
];
const sizes = [48, 8, 64, 24];

before(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-'));
  model = path.join(tmp, 'model');
  const w = await ModelWriter.create(model, specs, { maxShardBytes: 64, metadata: { format: 'pt' } });
  for (let i = 0; i < specs.length; i++) await w.write(specs[i].name, new Uint8Array(sizes[i]).fill(i + 1));
  await w.finish();
  fs.writeFileSync(path.join(model, 'config.json'), '{"model_type":"llama"}\n');
  fs.mkdirSync(path.join(model, 'tokenizer'));
  fs.writeFileSync(path.join(model, 'tokenizer', 'tokenizer.json'), '{}');
  fs.writeFileSync(path.join(model, '.gitattributes'), '*.safetensors filter=lfs');
});
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('wgit inspect', () => {
  test('--json describes a sharded folder, the same through oclif and the fast path', () => {
    const fast = wgit(['inspect', model, '--json']);
    const slow = wgit(['inspect', model, '--json'], { oclif: true });
    assert.equal(fast.status, 0, fast.stderr);
    assert.equal(slow.status, 0, slow.stderr);
    assert.equal(fast.stdout, slow.stdout);
    assert.equal(fast.stderr, '');
    const r = JSON.parse(fast.stdout);
    assert.equal(r.path, model);
    assert.equal(r.kind, 'folder');
    assert.equal(r.tensorCount, 4);
    assert.equal(r.parameters, 24 + 4 + 16 + 12);
    assert.equal(r.bytes, 48 + 8 + 64 + 24);
    assert.deepEqual(r.dtypes, [
      { dtype: 'BF16', tensors: 2, parameters: 36, bytes: 72 },
      { dtype: 'F32', tensors: 1, parameters: 16, bytes: 64 },
      { dtype: 'F16', tensors: 1, parameters: 4, bytes: 8 },
    ]);
    assert.deepEqual(
      r.shards.map((s: { file: string; tensors: number; bytes: number }) => [s.file, s.tensors, s.bytes]),
      [
        ['model-00001-of-00003.safetensors', 2, 56],
        ['model-00002-of-00003.safetensors', 1, 64],
        ['model-00003-of-00003.safetensors', 1, 24],
      ],
    );
    const onDisk = r.shards.reduce(
      (a: number, s: { file: string }) => a + fs.statSync(path.join(model, s.file)).size,
      0,
    );
    assert.equal(r.fileBytes, onDisk);
    assert.equal(r.shards[0].headerBytes + 56, fs.statSync(path.join(model, r.shards[0].file)).size);
    assert.deepEqual(r.shards[0].metadata, { format: 'pt' });
    assert.deepEqual(r.index, { file: 'model.safetensors.index.json', metadata: { total_size: 144 } });
    assert.deepEqual(r.sideFiles, [
      { path: 'config.json', bytes: 23 },
      { path: 'tokenizer/tokenizer.json', bytes: 2 },
    ]);
    assert.deepEqual(r.tensors[0], {
      name: 'model.embed_tokens.weight',
      dtype: 'BF16',
      shape: [6, 4],
      parameters: 24,
      bytes: 48,
      shard: 'model-00001-of-00003.safetensors',
    });
    assert.deepEqual(
      r.tensors.map((t: { name: string }) => t.name),
      specs.map((s) => s.name),
    );
  });

  test('text output lists every tensor in aligned columns', () => {
    const fast = wgit(['inspect', model]);
    const slow = wgit(['inspect', model], { oclif: true });
    assert.equal(fast.status, 0, fast.stderr);
    assert.equal(fast.stdout, slow.stdout);
    const lines = fast.stdout.split('\n');
    assert.match(lines[0], /\(folder, 3 weight files, index model\.safetensors\.index\.json\)$/);
    assert.equal(lines[1], '4 tensors, 56 parameters, 144 B of tensor data');
    const head = lines.findIndex((l) => l.startsWith('tensor '));
    assert.ok(head > 0);
    const rows = lines.slice(head + 1, head + 5);
    assert.deepEqual(
      rows.map((l) => l.split(/\s+/)[0]),
      specs.map((s) => s.name),
    );
    // Every row's dtype column starts where the header's does.
    const col = lines[head].indexOf('dtype');
    for (const [i, row] of rows.entries()) assert.equal(row.slice(col, col + specs[i].dtype.length), specs[i].dtype);
    assert.ok(lines.includes('config.json               23 B') || lines.some((l) => /^config\.json\s+23 B$/.test(l)));
  });

  test('a single file', async () => {
    const p = path.join(tmp, 'one.safetensors');
    await writeSafetensors(p, [{ name: 'x', dtype: 'I64', shape: [2, 3], data: new Uint8Array(48) }]);
    const r = JSON.parse(wgit(['inspect', '--json', p]).stdout);
    assert.equal(r.kind, 'file');
    assert.equal(r.parameters, 6);
    assert.deepEqual(r.shards, [
      { file: 'one.safetensors', tensors: 1, bytes: 48, headerBytes: fs.statSync(p).size - 48, metadata: null },
    ]);
    assert.equal(r.index, null);
  });

  test('a corrupt file: one error line, exit 1, the code in JSON', async () => {
    const p = path.join(tmp, 'corrupt.safetensors');
    await writeSafetensors(p, [{ name: 'x', dtype: 'F32', shape: [4], data: new Uint8Array(16) }]);
    fs.truncateSync(p, fs.statSync(p).size - 4);
    for (const oclif of [false, true]) {
      const text = wgit(['inspect', p], { oclif });
      assert.equal(text.status, 1);
      assert.equal(text.stdout, '');
      assert.match(text.stderr, /^wgit: error: .*corrupt\.safetensors: .* \[E_SAFETENSORS_OFFSETS\]\n$/);
      const json = wgit(['inspect', p, '--json'], { oclif });
      assert.equal(json.status, 1);
      assert.equal(JSON.parse(json.stdout).error.code, 'E_SAFETENSORS_OFFSETS');
      assert.ok(!json.stderr.includes('    at '), json.stderr);
    }
    const garbage = path.join(tmp, 'garbage.safetensors');
    fs.writeFileSync(garbage, 'not a safetensors file at all');
    assert.equal(JSON.parse(wgit(['inspect', garbage, '--json']).stdout).error.code, 'E_SAFETENSORS_HEADER_TOO_LARGE');
  });

  test('a missing path, a folder without weights, a broken index', () => {
    for (const oclif of [false, true]) {
      const missing = wgit(['inspect', path.join(tmp, 'nope'), '--json'], { oclif });
      assert.equal(missing.status, 1);
      assert.deepEqual(Object.keys(JSON.parse(missing.stdout).error).sort(), ['code', 'message']);
      assert.equal(JSON.parse(missing.stdout).error.code, 'E_NOT_FOUND');
    }
    const empty = path.join(tmp, 'empty');
    fs.mkdirSync(empty);
    fs.writeFileSync(path.join(empty, 'config.json'), '{}');
    assert.equal(JSON.parse(wgit(['inspect', empty, '--json']).stdout).error.code, 'E_NOT_A_MODEL');
    const broken = path.join(tmp, 'broken');
    fs.cpSync(model, broken, { recursive: true });
    const indexPath = path.join(broken, 'model.safetensors.index.json');
    const index = JSON.parse(fs.readFileSync(indexPath, 'utf8'));
    delete index.weight_map['lm_head.weight'];
    fs.writeFileSync(indexPath, JSON.stringify(index));
    const r = wgit(['inspect', broken, '--json']);
    assert.equal(r.status, 1);
    assert.equal(JSON.parse(r.stdout).error.code, 'E_SAFETENSORS_INDEX_MISMATCH');
  });

  test('usage errors exit 2', () => {
    const r = wgit(['inspect']);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /^wgit: error: Missing 1 required arg: path .*\[E_USAGE\]\n$/);
    const extra = wgit(['inspect', model, '--frob', '--json']);
    assert.equal(extra.status, 2);
    assert.equal(JSON.parse(extra.stdout).error.code, 'E_USAGE');
  });
});
