import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isWgitError } from '../src/errors.js';
import { ModelWriter, openModel, planShards, type TensorSpec, writeSafetensors } from '../src/safetensors/index.js';

let tmp: string;
before(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-'));
});
after(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

let dirCount = 0;
function freshDir(): string {
  const d = path.join(tmp, `m${dirCount++}`);
  fs.mkdirSync(d);
  return d;
}

async function codeOfAsync(fn: () => Promise<unknown>): Promise<string> {
  try {
    await fn();
  } catch (e) {
    assert.ok(isWgitError(e), `expected a WgitError, got ${e}`);
    return e.code;
  }
  assert.fail('expected an error');
}

const bytes = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed * 7) & 0xff);

async function writeFile(p: string, tensors: [string, number][]): Promise<void> {
  await writeSafetensors(
    p,
    tensors.map(([name, n], i) => ({ name, dtype: 'U8', shape: [n], data: bytes(n, i) })),
  );
}

describe('ModelWriter', () => {
  // 16 + 16 fit the 32-byte limit; 10 starts shard 2; 24 would push it to 34, so shard 3.
  const specs: TensorSpec[] = [
    { name: 'z.w', dtype: 'F32', shape: [4] },
    { name: 'a.w', dtype: 'BF16', shape: [2, 4] },
    { name: 'é', dtype: 'U8', shape: [10] },
    { name: 'B', dtype: 'F64', shape: [3] },
  ];
  const data = [bytes(16, 1), bytes(16, 2), bytes(10, 3), bytes(24, 4)];

  test('plans shards like transformers', () => {
    assert.deepEqual(
      planShards(specs, 32).map((s) => s.map((t) => t.name)),
      [['z.w', 'a.w'], ['é'], ['B']],
    );
    // A tensor bigger than the limit gets a shard of its own.
    assert.deepEqual(
      planShards(specs, 12).map((s) => s.map((t) => t.name)),
      [['z.w'], ['a.w'], ['é'], ['B']],
    );
    assert.equal(planShards(specs, 1000).length, 1);
  });

  test('writes shards and an index exactly as transformers does, and reads them back', async () => {
    const dir = freshDir();
    const w = await ModelWriter.create(dir, specs, { maxShardBytes: 32, metadata: { format: 'pt' } });
    for (let i = 0; i < specs.length; i++) await w.write(specs[i].name, data[i]);
    await w.finish();
    assert.deepEqual(fs.readdirSync(dir).sort(), [
      'model-00001-of-00003.safetensors',
      'model-00002-of-00003.safetensors',
      'model-00003-of-00003.safetensors',
      'model.safetensors.index.json',
    ]);
    const expectedIndex = `{
  "metadata": {
    "total_size": 66
  },
  "weight_map": {
    "B": "model-00003-of-00003.safetensors",
    "a.w": "model-00001-of-00003.safetensors",
    "z.w": "model-00001-of-00003.safetensors",
    "\\u00e9": "model-00002-of-00003.safetensors"
  }
}
`;
    assert.equal(fs.readFileSync(path.join(dir, 'model.safetensors.index.json'), 'utf8'), expectedIndex);

    // Shard 2 built by hand from the format description.
    const json = '{"__metadata__":{"format":"pt"},"é":{"dtype":"U8","shape":[10],"data_offsets":[0,10]}}';
    const jsonBytes = Buffer.from(json);
    const padded = Math.ceil(jsonBytes.length / 8) * 8;
    const expected = Buffer.concat([
      Buffer.alloc(8),
      jsonBytes,
      Buffer.alloc(padded - jsonBytes.length, 0x20),
      data[2],
    ]);
    expected.writeBigUInt64LE(BigInt(padded), 0);
    assert.deepEqual(fs.readFileSync(path.join(dir, 'model-00002-of-00003.safetensors')), expected);

    const m = await openModel(dir);
    assert.equal(m.kind, 'folder');
    assert.equal(m.indexFile, 'model.safetensors.index.json');
    assert.equal(m.shards.length, 3);
    assert.deepEqual(m.index?.metadata, { total_size: 66 });
    assert.deepEqual(
      m.tensors.map((t) => [t.name, t.dtype, t.shape, t.byteLength]),
      [
        ['z.w', 'F32', [4], 16],
        ['a.w', 'BF16', [2, 4], 16],
        ['é', 'U8', [10], 10],
        ['B', 'F64', [3], 24],
      ],
    );
    for (let i = 0; i < specs.length; i++) {
      assert.deepEqual(await m.readTensor(specs[i].name), data[i]);
      const loc = m.location(specs[i].name);
      const fd = fs.openSync(loc.file, 'r');
      const raw = Buffer.alloc(data[i].length);
      fs.readSync(fd, raw, 0, raw.length, loc.offset);
      fs.closeSync(fd);
      assert.deepEqual(new Uint8Array(raw), data[i]);
    }
    assert.deepEqual(m.sideFiles, []);
    assert.deepEqual(Buffer.from(await m.readSideFile('model.safetensors.index.json')).toString(), expectedIndex);
    await m.close();
  });

  test('writes a single model.safetensors when everything fits, also with no tensors', async () => {
    const dir = freshDir();
    const w = await ModelWriter.create(dir, specs);
    for (let i = 0; i < specs.length; i++) await w.write(specs[i].name, data[i]);
    await w.finish();
    assert.deepEqual(fs.readdirSync(dir), ['model.safetensors']);
    const empty = freshDir();
    const w2 = await ModelWriter.create(empty, []);
    await w2.finish();
    const m = await openModel(empty);
    assert.deepEqual(m.tensors, []);
    assert.equal(fs.statSync(path.join(empty, 'model.safetensors')).size, 16);
  });

  test('refuses out-of-order writes and an early finish', async () => {
    const dir = freshDir();
    const w = await ModelWriter.create(dir, specs, { maxShardBytes: 32 });
    assert.equal(await codeOfAsync(() => w.write('a.w', data[1])), 'E_SAFETENSORS_WRITE');
    await w.write('z.w', data[0]);
    assert.equal(await codeOfAsync(() => w.finish()), 'E_SAFETENSORS_WRITE');
    await w.abort();
    assert.deepEqual(fs.readdirSync(dir), []);
    assert.equal(await codeOfAsync(() => ModelWriter.create(dir, [...specs, specs[0]])), 'E_SAFETENSORS_DUPLICATE');
  });
});

describe('openModel on folders', () => {
  test('several files without an index form one model; side files are listed recursively without dotfiles', async () => {
    const dir = freshDir();
    await writeFile(path.join(dir, 'b.safetensors'), [['y', 2]]);
    await writeFile(path.join(dir, 'a.safetensors'), [
      ['x', 3],
      ['w', 1],
    ]);
    fs.writeFileSync(path.join(dir, 'config.json'), '{"model_type":"llama"}');
    fs.mkdirSync(path.join(dir, 'tok', 'sub'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'tok', 'sub', 'vocab.txt'), 'a b');
    fs.writeFileSync(path.join(dir, '.hidden'), 'x');
    fs.mkdirSync(path.join(dir, '.git'));
    fs.writeFileSync(path.join(dir, '.git', 'HEAD'), 'x');
    fs.symlinkSync('config.json', path.join(dir, 'config-link.json'));
    const m = await openModel(dir);
    assert.deepEqual(
      m.tensors.map((t) => t.name),
      ['x', 'w', 'y'],
    );
    assert.equal(m.index, null);
    assert.deepEqual(m.sideFiles, ['config-link.json', 'config.json', 'tok/sub/vocab.txt']);
    assert.equal(m.sideFileSizes.get('config.json'), 22);
    assert.equal(Buffer.from(await m.readSideFile('config-link.json')).toString(), '{"model_type":"llama"}');
    assert.equal(await codeOfAsync(() => m.readSideFile('.hidden')), 'E_NOT_FOUND');
    assert.equal(await codeOfAsync(() => m.readSideFile('../x')), 'E_NOT_FOUND');
    assert.deepEqual(await m.readTensor('y'), bytes(2, 0));
    await m.close();
    // A link to a folder (here a loop back to the root) is refused by name, never followed or skipped.
    fs.symlinkSync('.', path.join(dir, 'loop'));
    await assert.rejects(openModel(dir), (e: { code?: string; message: string }) => {
      assert.equal(e.code, 'E_UNSUPPORTED_FILE');
      assert.match(e.message, /loop/);
      return true;
    });
  });

  test('a single file opens as kind "file"', async () => {
    const p = path.join(freshDir(), 'one.safetensors');
    await writeFile(p, [['t', 4]]);
    const m = await openModel(p);
    assert.equal(m.kind, 'file');
    assert.equal(m.root, p);
    assert.deepEqual(m.sideFiles, []);
  });

  test('tensor names colliding across index-less files are refused', async () => {
    const dir = freshDir();
    await writeFile(path.join(dir, 'a.safetensors'), [['x', 3]]);
    await writeFile(path.join(dir, 'b.safetensors'), [['x', 2]]);
    assert.equal(await codeOfAsync(() => openModel(dir)), 'E_SAFETENSORS_DUPLICATE');
  });

  test('a folder without weights, a missing path', async () => {
    const dir = freshDir();
    fs.writeFileSync(path.join(dir, 'config.json'), '{}');
    fs.mkdirSync(path.join(dir, 'sub'));
    await writeFile(path.join(dir, 'sub', 'nested.safetensors'), [['x', 1]]);
    assert.equal(await codeOfAsync(() => openModel(dir)), 'E_NOT_A_MODEL');
    assert.equal(await codeOfAsync(() => openModel(path.join(dir, 'nope'))), 'E_NOT_FOUND');
    assert.equal(await codeOfAsync(() => openModel(path.join(dir, 'config.json', 'x'))), 'E_NOT_FOUND');
  });

  test('links leading outside the folder are refused', async () => {
    const outside = path.join(freshDir(), 'secret.txt');
    fs.writeFileSync(outside, 'secret');
    const dir = freshDir();
    await writeFile(path.join(dir, 'model.safetensors'), [['x', 1]]);
    fs.symlinkSync(outside, path.join(dir, 'config.json'));
    assert.equal(await codeOfAsync(() => openModel(dir)), 'E_UNSAFE_PATH');
    const dir2 = freshDir();
    await writeFile(path.join(dir2, 'model.safetensors'), [['x', 1]]);
    fs.symlinkSync(path.dirname(outside), path.join(dir2, 'up'));
    assert.equal(await codeOfAsync(() => openModel(dir2)), 'E_UNSAFE_PATH');
    const dir3 = freshDir();
    await writeFile(path.join(dir3, 'model.safetensors'), [['x', 1]]);
    fs.symlinkSync(path.join(dir3, 'nothing'), path.join(dir3, 'dangling'));
    assert.equal(await codeOfAsync(() => openModel(dir3)), 'E_NOT_FOUND');
  });

  describe('index checks', () => {
    /** Two shards: s1 holds a, b; s2 holds c. */
    async function sharded(
      weightMap: Record<string, string> | string,
      extra?: (dir: string) => Promise<void>,
    ): Promise<string> {
      const dir = freshDir();
      await writeFile(path.join(dir, 's1.safetensors'), [
        ['a', 1],
        ['b', 2],
      ]);
      await writeFile(path.join(dir, 's2.safetensors'), [['c', 3]]);
      const text =
        typeof weightMap === 'string'
          ? weightMap
          : JSON.stringify({ metadata: { total_size: 6 }, weight_map: weightMap });
      fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), text);
      await extra?.(dir);
      return dir;
    }
    const good = { a: 's1.safetensors', b: 's1.safetensors', c: 's2.safetensors' };

    test('a numbered shard left out of the index is refused', async () => {
      const dir = freshDir();
      await writeFile(path.join(dir, 'model-00001-of-00002.safetensors'), [['a', 1]]);
      await writeFile(path.join(dir, 'model-00002-of-00002.safetensors'), [['b', 1]]);
      fs.writeFileSync(
        path.join(dir, 'model.safetensors.index.json'),
        JSON.stringify({ weight_map: { a: 'model-00001-of-00002.safetensors' } }),
      );
      assert.equal(await codeOfAsync(() => openModel(dir)), 'E_SAFETENSORS_INDEX_MISMATCH');
      // A file of another series (or none) beside the index stays a side file.
      fs.renameSync(
        path.join(dir, 'model-00002-of-00002.safetensors'),
        path.join(dir, 'other-00002-of-00002.safetensors'),
      );
      assert.deepEqual((await openModel(dir)).sideFiles, ['other-00002-of-00002.safetensors']);
    });

    test('a consistent index opens; unreferenced .safetensors files are side files', async () => {
      const dir = await sharded(good, (d) => writeFile(path.join(d, 'consolidated.safetensors'), [['q', 1]]));
      const m = await openModel(dir);
      assert.deepEqual(
        m.tensors.map((t) => t.name),
        ['a', 'b', 'c'],
      );
      assert.deepEqual(m.sideFiles, ['consolidated.safetensors']);
      assert.deepEqual(m.index?.weight_map, good);
    });

    const cases: [string, Record<string, string> | string, string, ((d: string) => Promise<void>)?][] = [
      ['a missing shard', { ...good, d: 's3.safetensors' }, 'E_SAFETENSORS_SHARD_MISSING'],
      ['a shard outside the folder', { ...good, c: '../s2.safetensors' }, 'E_UNSAFE_PATH'],
      ['an absolute shard path', { ...good, c: '/etc/passwd' }, 'E_UNSAFE_PATH'],
      [
        'a tensor missing from the weight_map',
        { a: 's1.safetensors', c: 's2.safetensors' },
        'E_SAFETENSORS_INDEX_MISMATCH',
      ],
      ['a weight_map tensor missing from its shard', { ...good, d: 's2.safetensors' }, 'E_SAFETENSORS_INDEX_MISMATCH'],
      ['a tensor listed under the wrong shard', { ...good, b: 's2.safetensors' }, 'E_SAFETENSORS_INDEX_MISMATCH'],
      [
        'a tensor in two shards',
        { ...good, a: 's1.safetensors' },
        'E_SAFETENSORS_DUPLICATE',
        (d) =>
          writeFile(path.join(d, 's2.safetensors'), [
            ['c', 3],
            ['a', 1],
          ]),
      ],
      [
        'a tensor listed twice in the weight_map',
        '{"weight_map":{"a":"s1.safetensors","b":"s1.safetensors","c":"s2.safetensors","a":"s1.safetensors"}}',
        'E_SAFETENSORS_DUPLICATE',
      ],
      ['an index that is not JSON', '{"weight_map":', 'E_SAFETENSORS_INDEX'],
      ['an index without weight_map', '{"metadata":{}}', 'E_SAFETENSORS_INDEX'],
      ['a non-string shard name', '{"weight_map":{"a":1}}', 'E_SAFETENSORS_INDEX'],
      ['an empty weight_map', '{"weight_map":{}}', 'E_SAFETENSORS_INDEX'],
      [
        'a shard reached through a link that leaves the folder',
        { ...good, c: 'link.safetensors' },
        'E_UNSAFE_PATH',
        async (d) => {
          const elsewhere = path.join(freshDir(), 'x.safetensors');
          await writeFile(elsewhere, [['c', 3]]);
          fs.symlinkSync(elsewhere, path.join(d, 'link.safetensors'));
        },
      ],
      [
        'a corrupt shard',
        good,
        'E_SAFETENSORS_TRUNCATED',
        async (d) => {
          fs.truncateSync(path.join(d, 's2.safetensors'), 20);
        },
      ],
    ];
    for (const [what, map, code, extra] of cases) {
      test(`refuses ${what} (${code})`, async () => {
        const dir = await sharded(map, extra);
        assert.equal(await codeOfAsync(() => openModel(dir)), code);
      });
    }
  });
});
