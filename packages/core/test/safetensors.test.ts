import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isWgitError } from '../src/errors.js';
import {
  encodeSafetensorsHeader,
  openModel,
  parseSafetensorsHeader,
  readSafetensorsHeader,
  readSafetensorsHeaderFrom,
  SAFETENSORS_ERROR_CODES,
  SafetensorsWriter,
  writeSafetensors,
} from '../src/safetensors/index.js';

let tmp: string;
before(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-'));
});
after(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** A file built from the format description alone: u64 LE length, JSON padded with spaces to 8 bytes, data. */
function buildFile(
  json: string,
  data: Uint8Array | number = 0,
  opts: { pad?: boolean; declared?: bigint } = {},
): Uint8Array {
  let header = Buffer.from(json, 'utf8');
  if (opts.pad !== false) {
    const padded = Math.ceil(header.length / 8) * 8;
    header = Buffer.concat([header, Buffer.alloc(padded - header.length, 0x20)]);
  }
  const body = typeof data === 'number' ? new Uint8Array(data) : data;
  const out = new Uint8Array(8 + header.length + body.length);
  new DataView(out.buffer).setBigUint64(0, opts.declared ?? BigInt(header.length), true);
  out.set(header, 8);
  out.set(body, 8 + header.length);
  return out;
}

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    assert.ok(isWgitError(e), `expected a WgitError, got ${e}`);
    return e.code;
  }
  assert.fail('expected an error');
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

const parse = (bytes: Uint8Array) => parseSafetensorsHeader(bytes, bytes.length, 'test.safetensors');

// What the reference writer emits for {"a": f32[2] = [1, -2], "b": bf16[1,3] = [1, 2, 3]} with metadata {"format":"pt"}:
// metadata first, compact JSON, fields dtype/shape/data_offsets, padding with spaces.
const REF_JSON =
  '{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"BF16","shape":[1,3],"data_offsets":[8,14]}}';
const REF_DATA = new Uint8Array([0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0, 0x80, 0x3f, 0x00, 0x40, 0x40, 0x40]);

describe('parseSafetensorsHeader', () => {
  test('reads a hand-built file', () => {
    const file = buildFile(REF_JSON, REF_DATA);
    const h = parse(file);
    assert.equal(REF_JSON.length, 142); // padded to 144
    assert.equal(h.dataStart, 8 + 144);
    assert.equal(h.fileSize, file.length);
    assert.deepEqual(h.headerBytes, file.subarray(0, 152));
    assert.deepEqual(h.metadata, { format: 'pt' });
    assert.deepEqual(h.tensors, [
      { name: 'a', dtype: 'F32', shape: [2], begin: 0, end: 8 },
      { name: 'b', dtype: 'BF16', shape: [1, 3], begin: 8, end: 14 },
    ]);
  });

  test('keeps header order even when it differs from offset order, and integer-like names in place', () => {
    const json =
      '{"1":{"dtype":"U8","shape":[1],"data_offsets":[2,3]},"0":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}';
    const h = parse(buildFile(json, 3));
    assert.deepEqual(
      h.tensors.map((t) => t.name),
      ['1', '0'],
    );
    assert.equal(h.metadata, null);
  });

  test('accepts zero-sized tensors, scalars, an empty header, and a "__proto__" metadata key', () => {
    const json =
      '{"__metadata__":{"__proto__":"x"},"s":{"dtype":"I64","shape":[],"data_offsets":[0,8]},"z":{"dtype":"F16","shape":[0,4],"data_offsets":[8,8]},"z2":{"dtype":"F16","shape":[3,0],"data_offsets":[8,8]}}';
    const h = parse(buildFile(json, 8));
    assert.deepEqual(
      h.tensors.map((t) => [t.name, t.begin, t.end]),
      [
        ['s', 0, 8],
        ['z', 8, 8],
        ['z2', 8, 8],
      ],
    );
    assert.deepEqual(Object.keys(h.metadata!), ['__proto__']);
    assert.equal(Object.getOwnPropertyDescriptor(h.metadata, '__proto__')?.value, 'x');
    assert.deepEqual(parse(buildFile('{}')).tensors, []);
    // The largest exact dimension is fine next to a zero.
    const big = parse(buildFile(t1('U8', '[0,9007199254740991]', '[0,0]')));
    assert.deepEqual(big.tensors[0].shape, [0, 9007199254740991]);
  });

  const t1 = (dtype: string, shape: string, offsets: string, extra = '') =>
    `{"t":{"dtype":"${dtype}","shape":${shape},"data_offsets":${offsets}${extra}}}`;
  const cases: [string, Uint8Array, string][] = [
    ['file shorter than 8 bytes', new Uint8Array(5), 'E_SAFETENSORS_TRUNCATED'],
    ['header length past the end of the file', buildFile('{}', 0, { declared: 100n }), 'E_SAFETENSORS_TRUNCATED'],
    ['header length of 2^64-1', buildFile('{}', 0, { declared: 2n ** 64n - 1n }), 'E_SAFETENSORS_HEADER_TOO_LARGE'],
    [
      'header length just over 100 MB',
      buildFile('{}', 0, { declared: 100_000_001n }),
      'E_SAFETENSORS_HEADER_TOO_LARGE',
    ],
    ['raw control character in a string', buildFile('{"a\u0001":{}}'), 'E_SAFETENSORS_JSON'],
    ['leading space', buildFile(' {}'), 'E_SAFETENSORS_JSON'],
    ['an array', buildFile('[]'), 'E_SAFETENSORS_JSON'],
    ['broken JSON', buildFile('{"t":'), 'E_SAFETENSORS_JSON'],
    ['trailing garbage', buildFile('{}x'), 'E_SAFETENSORS_JSON'],
    ['NUL padding', buildFile('{}\0', 0, { pad: false }), 'E_SAFETENSORS_JSON'],
    [
      'lone surrogate escape',
      buildFile('{"\\ud800":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}'),
      'E_SAFETENSORS_JSON',
    ],
    ['nesting 10000 deep', buildFile(`{"t":${'['.repeat(10000)}${']'.repeat(10000)}}`), 'E_SAFETENSORS_JSON'],
    [
      'duplicate tensor',
      buildFile(
        `{"t":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"t":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}`,
        2,
      ),
      'E_SAFETENSORS_DUPLICATE',
    ],
    ['duplicate __metadata__', buildFile('{"__metadata__":{},"__metadata__":{}}'), 'E_SAFETENSORS_DUPLICATE'],
    ['duplicate metadata key', buildFile('{"__metadata__":{"a":"1","a":"2"}}'), 'E_SAFETENSORS_DUPLICATE'],
    ['duplicate field', buildFile(t1('U8', '[1]', '[0,1]', ',"dtype":"U8"'), 1), 'E_SAFETENSORS_DUPLICATE'],
    ['metadata value a number', buildFile('{"__metadata__":{"a":1}}'), 'E_SAFETENSORS_METADATA'],
    ['metadata null', buildFile('{"__metadata__":null}'), 'E_SAFETENSORS_METADATA'],
    ['metadata a list', buildFile('{"__metadata__":["a"]}'), 'E_SAFETENSORS_METADATA'],
    ['unknown dtype', buildFile(t1('F128', '[1]', '[0,16]'), 16), 'E_SAFETENSORS_DTYPE'],
    ['dtype not a string', buildFile(t1('F32', '[1]', '[0,4]').replace('"F32"', '4'), 4), 'E_SAFETENSORS_DTYPE'],
    ['lowercase dtype', buildFile(t1('f32', '[1]', '[0,4]'), 4), 'E_SAFETENSORS_DTYPE'],
    ['negative dim', buildFile(t1('U8', '[-1]', '[0,0]')), 'E_SAFETENSORS_SHAPE'],
    ['fractional dim', buildFile(t1('U8', '[1.5]', '[0,1]'), 1), 'E_SAFETENSORS_SHAPE'],
    ['dim written as 2.0', buildFile(t1('U8', '[2.0]', '[0,2]'), 2), 'E_SAFETENSORS_SHAPE'],
    ['dim written as 1e1', buildFile(t1('U8', '[1e1]', '[0,10]'), 10), 'E_SAFETENSORS_SHAPE'],
    ['dim with a leading zero', buildFile(t1('U8', '[01]', '[0,1]'), 1), 'E_SAFETENSORS_JSON'],
    ['dim 2^53', buildFile(t1('U8', '[0,9007199254740992]', '[0,0]')), 'E_SAFETENSORS_SHAPE'],
    ['dim 2^60', buildFile(t1('U8', '[1152921504606846976]', '[0,1]'), 1), 'E_SAFETENSORS_SHAPE'],
    [
      'dims whose product overflows',
      buildFile(t1('F64', '[4294967296,4294967296,4294967296]', '[0,8]'), 8),
      'E_SAFETENSORS_SHAPE',
    ],
    ['shape a string', buildFile(t1('U8', '"1"', '[0,1]'), 1), 'E_SAFETENSORS_SHAPE'],
    ['shape too small for the range', buildFile(t1('F32', '[2]', '[0,12]'), 12), 'E_SAFETENSORS_SHAPE'],
    ['shape too large for the range', buildFile(t1('BF16', '[2,3]', '[0,10]'), 10), 'E_SAFETENSORS_SHAPE'],
    ['begin > end', buildFile(t1('U8', '[0]', '[4,0]'), 4), 'E_SAFETENSORS_OFFSETS'],
    ['end past the data', buildFile(t1('U8', '[8]', '[0,8]'), 4), 'E_SAFETENSORS_OFFSETS'],
    ['three offsets', buildFile(t1('U8', '[1]', '[0,1,1]'), 1), 'E_SAFETENSORS_OFFSETS'],
    ['negative offset', buildFile(t1('U8', '[1]', '[-1,0]'), 1), 'E_SAFETENSORS_OFFSETS'],
    ['offsets not a list', buildFile(t1('U8', '[1]', '{}'), 1), 'E_SAFETENSORS_OFFSETS'],
    ['gap before the first tensor', buildFile(t1('U8', '[1]', '[1,2]'), 2), 'E_SAFETENSORS_OFFSETS'],
    ['bytes after the last tensor', buildFile(t1('U8', '[1]', '[0,1]'), 2), 'E_SAFETENSORS_OFFSETS'],
    ['data but no tensors', buildFile('{}', 3), 'E_SAFETENSORS_OFFSETS'],
    [
      'overlap',
      buildFile(
        '{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}}',
        6,
      ),
      'E_SAFETENSORS_OFFSETS',
    ],
    [
      'two tensors on one range',
      buildFile(
        '{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}',
        4,
      ),
      'E_SAFETENSORS_OFFSETS',
    ],
    [
      'gap between tensors',
      buildFile(
        '{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[3,5]}}',
        5,
      ),
      'E_SAFETENSORS_OFFSETS',
    ],
    ['unknown field', buildFile(t1('U8', '[1]', '[0,1]', ',"strides":[1]'), 1), 'E_SAFETENSORS_ENTRY'],
    ['missing data_offsets', buildFile('{"t":{"dtype":"U8","shape":[1]}}', 1), 'E_SAFETENSORS_ENTRY'],
    ['entry a string', buildFile('{"t":"U8"}'), 'E_SAFETENSORS_ENTRY'],
    ['empty name', buildFile('{"":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}'), 'E_SAFETENSORS_NAME'],
    ['NUL in name', buildFile('{"a\\u0000b":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}'), 'E_SAFETENSORS_NAME'],
  ];
  for (const [what, bytes, code] of cases) {
    test(`rejects ${what} with ${code}`, () => {
      assert.ok(code in SAFETENSORS_ERROR_CODES);
      assert.equal(
        codeOf(() => parse(bytes)),
        code,
      );
    });
  }

  test('invalid UTF-8 bytes (not just odd characters) are refused', () => {
    const file = buildFile('{"ab":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}');
    file[10] = 0xff;
    assert.equal(
      codeOf(() => parse(file)),
      'E_SAFETENSORS_JSON',
    );
  });

  test('messages are one line naming the file and the tensor', () => {
    const bytes = buildFile('{"layer\\n1.weight":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}', 8);
    try {
      parseSafetensorsHeader(bytes, bytes.length, '/models/x.safetensors');
      assert.fail('expected an error');
    } catch (e) {
      assert.ok(isWgitError(e));
      assert.equal(e.code, 'E_SAFETENSORS_SHAPE');
      assert.ok(e.message.startsWith('/models/x.safetensors: '), e.message);
      assert.ok(e.message.includes('"layer\\n1.weight"'), e.message);
      assert.ok(!e.message.includes('\n'));
      assert.equal(e.data.tensor, 'layer\n1.weight');
    }
  });

  test('the reported file size bounds the header, not the buffer size', () => {
    // A buffer holding the whole header but a file size claiming it is cut short.
    const file = buildFile(REF_JSON, REF_DATA);
    assert.equal(
      codeOf(() => parseSafetensorsHeader(file, 100, 'x')),
      'E_SAFETENSORS_TRUNCATED',
    );
    // Buffer shorter than the declared header.
    assert.equal(
      codeOf(() => parseSafetensorsHeader(file.subarray(0, 60), file.length, 'x')),
      'E_SAFETENSORS_TRUNCATED',
    );
  });
});

describe('readSafetensorsHeader', () => {
  test('reads only the header, never allocating more than the file holds', async () => {
    const file = buildFile(REF_JSON, REF_DATA);
    const requests: [number, number][] = [];
    const reader = (bytes: Uint8Array) => ({
      size: bytes.length,
      async read(position: number, length: number) {
        requests.push([position, length]);
        assert.ok(position + length <= bytes.length, `read past the end: ${position}+${length}`);
        return bytes.slice(position, position + length);
      },
    });
    const h = await readSafetensorsHeaderFrom(reader(file), 'x');
    assert.equal(h.tensors.length, 2);
    assert.deepEqual(requests, [
      [0, 8],
      [8, 144],
    ]);
    // Declared lengths that the file cannot hold are refused after reading just the prefix.
    for (const declared of [2n ** 63n, 100_000_000n, 50n]) {
      requests.length = 0;
      const tiny = buildFile('{}', 0, { declared });
      const code = await codeOfAsync(() => readSafetensorsHeaderFrom(reader(tiny), 'x'));
      assert.ok(['E_SAFETENSORS_TRUNCATED', 'E_SAFETENSORS_HEADER_TOO_LARGE'].includes(code), code);
      assert.deepEqual(requests, [[0, 8]]);
    }
  });

  test('reads a file on disk; errors for a missing path, a folder and a FIFO (without hanging)', async () => {
    const p = path.join(tmp, 'ref.safetensors');
    fs.writeFileSync(p, buildFile(REF_JSON, REF_DATA));
    const h = await readSafetensorsHeader(p);
    assert.equal(h.path, p);
    assert.deepEqual(
      h.tensors.map((t) => t.name),
      ['a', 'b'],
    );
    assert.equal(await codeOfAsync(() => readSafetensorsHeader(path.join(tmp, 'nope.safetensors'))), 'E_NOT_FOUND');
    assert.equal(await codeOfAsync(() => readSafetensorsHeader(tmp)), 'E_NOT_A_MODEL');
    const fifo = path.join(tmp, 'fifo.safetensors');
    execFileSync('mkfifo', [fifo]);
    assert.equal(await codeOfAsync(() => readSafetensorsHeader(fifo)), 'E_NOT_A_MODEL');
    assert.equal(await codeOfAsync(() => openModel(fifo)), 'E_NOT_A_MODEL');
    fs.rmSync(fifo);
  });
});

describe('writer', () => {
  test('a file written by the reference writer, read and written again, is byte-identical', async () => {
    const src = path.join(tmp, 'rt-src.safetensors');
    const dst = path.join(tmp, 'rt-dst.safetensors');
    const original = buildFile(REF_JSON, REF_DATA);
    fs.writeFileSync(src, original);
    const m = await openModel(src);
    const h = m.shards[0];
    const tensors = [];
    for (const t of h.tensors)
      tensors.push({ name: t.name, dtype: t.dtype, shape: t.shape, data: await m.readTensor(t.name) });
    await m.close();
    await writeSafetensors(dst, tensors, h.metadata);
    assert.deepEqual(new Uint8Array(fs.readFileSync(dst)), original);
  });

  test('header bytes follow the reference layout for names of every padding length', () => {
    for (let len = 1; len <= 17; len++) {
      const name = 'n'.repeat(len);
      const { bytes } = encodeSafetensorsHeader([{ name, dtype: 'F16', shape: [3, 1] }], null);
      const json = `{"${name}":{"dtype":"F16","shape":[3,1],"data_offsets":[0,6]}}`;
      assert.deepEqual(bytes, buildFile(json).subarray(0, bytes.length));
      assert.equal((bytes.length - 8) % 8, 0);
    }
  });

  test('escapes names like serde_json and keeps non-ASCII as UTF-8', () => {
    const { bytes } = encodeSafetensorsHeader([{ name: 'é"\\\n\u0001/', dtype: 'U8', shape: [] }], { k: 'v\t' });
    const json = '{"__metadata__":{"k":"v\\t"},"é\\"\\\\\\n\\u0001/":{"dtype":"U8","shape":[],"data_offsets":[0,1]}}';
    assert.deepEqual(bytes, buildFile(json).subarray(0, bytes.length));
    assert.equal(parse(buildFile(json, 1)).tensors[0].name, 'é"\\\n\u0001/');
  });

  test('streams tensors in order, nothing at the target before finish, no temp file left', async () => {
    const p = path.join(tmp, 'stream.safetensors');
    const w = await SafetensorsWriter.create(
      p,
      [
        { name: 'x', dtype: 'I32', shape: [2] },
        { name: 'y', dtype: 'U8', shape: [3] },
      ],
      { a: 'b' },
    );
    await w.write('x', new Uint8Array([1, 0, 0, 0, 2, 0, 0, 0]));
    assert.ok(!fs.existsSync(p));
    assert.equal(await codeOfAsync(() => w.write('x', new Uint8Array(3))), 'E_SAFETENSORS_WRITE');
    assert.equal(await codeOfAsync(() => w.write('y', new Uint8Array(4))), 'E_SAFETENSORS_WRITE');
    assert.equal(await codeOfAsync(() => w.finish()), 'E_SAFETENSORS_WRITE');
    await w.write('y', new Uint8Array([7, 8, 9]));
    await w.finish();
    assert.equal(await codeOfAsync(() => w.write('y', new Uint8Array(3))), 'E_SAFETENSORS_WRITE');
    const m = await openModel(p);
    assert.deepEqual(m.shards[0].metadata, { a: 'b' });
    assert.deepEqual(await m.readTensor('y'), new Uint8Array([7, 8, 9]));
    assert.deepEqual(new Int32Array((await m.readTensor('x')).buffer), new Int32Array([1, 2]));
    await m.close();
    assert.deepEqual(
      fs.readdirSync(tmp).filter((f) => f.includes('.tmp-')),
      [],
    );
  });

  test('abort removes the temp file and leaves an existing target untouched', async () => {
    const p = path.join(tmp, 'abort.safetensors');
    fs.writeFileSync(p, 'old');
    const w = await SafetensorsWriter.create(p, [{ name: 'x', dtype: 'U8', shape: [4] }]);
    assert.equal(fs.readdirSync(tmp).filter((f) => f.startsWith('abort.safetensors.tmp-')).length, 1);
    await w.abort();
    await w.abort();
    assert.deepEqual(
      fs.readdirSync(tmp).filter((f) => f.startsWith('abort.safetensors.tmp-')),
      [],
    );
    assert.equal(fs.readFileSync(p, 'utf8'), 'old');
  });

  test('refuses bad specs', async () => {
    const p = path.join(tmp, 'bad.safetensors');
    const bad: [unknown[], unknown, string][] = [
      [
        [
          { name: 'a', dtype: 'F32', shape: [1] },
          { name: 'a', dtype: 'F32', shape: [1] },
        ],
        null,
        'E_SAFETENSORS_DUPLICATE',
      ],
      [[{ name: '', dtype: 'F32', shape: [1] }], null, 'E_SAFETENSORS_NAME'],
      [[{ name: '__metadata__', dtype: 'F32', shape: [1] }], null, 'E_SAFETENSORS_NAME'],
      [[{ name: 'a', dtype: 'F31', shape: [1] }], null, 'E_SAFETENSORS_DTYPE'],
      [[{ name: 'a', dtype: 'F32', shape: [-1] }], null, 'E_SAFETENSORS_SHAPE'],
      [[{ name: 'a', dtype: 'F32', shape: [2 ** 40, 2 ** 40] }], null, 'E_SAFETENSORS_SHAPE'],
      [[{ name: 'a', dtype: 'F32', shape: [1] }], { k: 1 }, 'E_SAFETENSORS_METADATA'],
    ];
    for (const [specs, meta, code] of bad) {
      assert.equal(await codeOfAsync(() => SafetensorsWriter.create(p, specs as any, meta as any)), code);
    }
    assert.ok(!fs.existsSync(p));
  });
});

describe('readTensor', () => {
  test('reads into a caller buffer, refuses a small one, and reports a file that shrank', async () => {
    const p = path.join(tmp, 'read.safetensors');
    fs.writeFileSync(p, buildFile(REF_JSON, REF_DATA));
    const m = await openModel(p);
    // Stands in for a view into WebAssembly memory: a window into a larger buffer.
    const mem = new ArrayBuffer(65536);
    const view = new Uint8Array(mem, 64, 100);
    const got = await m.readTensor('b', view);
    assert.equal(got.buffer, mem);
    assert.equal(got.byteOffset, 64);
    assert.deepEqual([...got], [0x80, 0x3f, 0x00, 0x40, 0x40, 0x40]);
    assert.equal(await codeOfAsync(() => m.readTensor('a', new Uint8Array(7))), 'E_BUFFER_TOO_SMALL');
    assert.equal(await codeOfAsync(() => m.readTensor('c')), 'E_TENSOR_NOT_FOUND');
    assert.equal(
      codeOf(() => m.tensor('c')),
      'E_TENSOR_NOT_FOUND',
    );
    assert.deepEqual(m.location('b'), { file: p, offset: 152 + 8 });
    fs.truncateSync(p, 152 + 10);
    try {
      await m.readTensor('b');
      assert.fail('expected an error');
    } catch (e) {
      assert.ok(isWgitError(e));
      assert.equal(e.code, 'E_SAFETENSORS_TRUNCATED');
      assert.ok(e.message.includes(p) && e.message.includes('"b"'), e.message);
    }
    await m.close();
  });
});
