import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { isWgitError } from '../src/errors.js';
import {
  encodeSafetensorsHeader,
  parseSafetensorsHeader,
  readSafetensorsHeaderFrom,
  SAFETENSORS_ERROR_CODES,
  type SafetensorsHeader,
} from '../src/safetensors/index.js';

// Written from the format description, independent of src/dtypes.ts.
const SIZES: Record<string, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
  F8_E4M3: 1,
  F8_E5M2: 1,
  U16: 2,
  U32: 4,
  U64: 8,
};
const HEADER_CODES = new Set([
  'E_SAFETENSORS_TRUNCATED',
  'E_SAFETENSORS_HEADER_TOO_LARGE',
  'E_SAFETENSORS_JSON',
  'E_SAFETENSORS_ENTRY',
  'E_SAFETENSORS_NAME',
  'E_SAFETENSORS_DTYPE',
  'E_SAFETENSORS_SHAPE',
  'E_SAFETENSORS_OFFSETS',
  'E_SAFETENSORS_DUPLICATE',
  'E_SAFETENSORS_METADATA',
]);

interface Spec {
  name: string;
  dtype: string;
  shape: number[];
}

const specArb = fc.record({
  name: fc
    .string({ minLength: 1, maxLength: 12, unit: 'grapheme' })
    .filter((s) => !s.includes('\0') && s !== '__metadata__'),
  dtype: fc.constantFrom(...Object.keys(SIZES)),
  shape: fc.array(fc.integer({ min: 0, max: 6 }), { maxLength: 3 }),
});
const modelArb = fc.record({
  specs: fc.uniqueArray(specArb, { selector: (s) => s.name, maxLength: 8 }),
  metadata: fc.option(fc.dictionary(fc.string({ maxLength: 6 }), fc.string({ maxLength: 6 }), { maxKeys: 3 }), {
    nil: null,
  }),
  // A permutation of header entries: the header need not list tensors in offset order.
  order: fc.array(fc.nat(), { maxLength: 8 }),
});

/** Builds a file by hand: entries in `order`, offsets assigned in spec order. */
function buildFile(
  specs: Spec[],
  metadata: Record<string, string> | null,
  order: number[],
): { file: Uint8Array; offsets: [number, number][] } {
  const offsets: [number, number][] = [];
  let at = 0;
  for (const s of specs) {
    const n = s.shape.reduce((a, b) => a * b, 1) * SIZES[s.dtype];
    offsets.push([at, at + n]);
    at += n;
  }
  const idx = specs.map((_, i) => i);
  // Fisher–Yates driven by the generated numbers.
  for (let i = idx.length - 1; i > 0; i--) {
    const j = order[i] === undefined ? i : order[i] % (i + 1);
    [idx[i], idx[j]] = [idx[j], idx[i]];
  }
  const parts: string[] = [];
  if (metadata) parts.push(`"__metadata__":${JSON.stringify(metadata)}`);
  for (const i of idx) {
    const s = specs[i];
    parts.push(
      `${JSON.stringify(s.name)}:{"dtype":"${s.dtype}","shape":[${s.shape.join(',')}],"data_offsets":[${offsets[i][0]},${offsets[i][1]}]}`,
    );
  }
  let json = Buffer.from(`{${parts.join(',')}}`);
  json = Buffer.concat([json, Buffer.alloc((8 - (json.length % 8)) % 8, 0x20)]);
  const file = new Uint8Array(8 + json.length + at);
  new DataView(file.buffer).setBigUint64(0, BigInt(json.length), true);
  file.set(json, 8);
  for (let i = 8 + json.length; i < file.length; i++) file[i] = (i * 13) & 0xff;
  return { file, offsets: idx.map((i) => offsets[i]) };
}

/** What any successful parse must satisfy, checked without the parser's own helpers. */
function checkValid(h: SafetensorsHeader, file: Uint8Array): void {
  const declared = Number(new DataView(file.buffer, file.byteOffset, 8).getBigUint64(0, true));
  assert.equal(h.dataStart, 8 + declared);
  assert.ok(h.dataStart <= file.length);
  assert.deepEqual(h.headerBytes, file.subarray(0, h.dataStart));
  assert.equal(new Set(h.tensors.map((t) => t.name)).size, h.tensors.length);
  const sorted = [...h.tensors].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let at = 0;
  for (const t of sorted) {
    assert.ok(t.name.length > 0 && !t.name.includes('\0'));
    assert.ok(t.dtype in SIZES);
    assert.equal(t.begin, at);
    assert.equal(t.end - t.begin, t.shape.reduce((a, b) => a * b, 1) * SIZES[t.dtype]);
    at = t.end;
  }
  assert.equal(at, file.length - h.dataStart);
}

function outcome(file: Uint8Array): SafetensorsHeader | string {
  try {
    return parseSafetensorsHeader(file, file.length, 'fuzz.safetensors');
  } catch (e) {
    if (!isWgitError(e)) throw new Error(`not a WgitError: ${e}`);
    assert.ok(HEADER_CODES.has(e.code) && e.code in SAFETENSORS_ERROR_CODES, `unexpected code ${e.code}`);
    assert.ok(!e.message.includes('\n'));
    return e.code;
  }
}

test('generated valid files parse to exactly their specs, in header order', () => {
  fc.assert(
    fc.property(modelArb, ({ specs, metadata, order }) => {
      const { file, offsets } = buildFile(specs, metadata, order);
      const h = parseSafetensorsHeader(file, file.length, 'gen.safetensors');
      checkValid(h, file);
      assert.deepEqual(
        h.tensors.map((t) => [t.begin, t.end]),
        offsets,
      );
      assert.deepEqual(h.metadata === null ? null : { ...h.metadata }, metadata === null ? null : { ...metadata });
      const bySpec = new Map(specs.map((s) => [s.name, { ...s }]));
      for (const t of h.tensors) assert.deepEqual({ name: t.name, dtype: t.dtype, shape: t.shape }, bySpec.get(t.name));
      // With entries in offset order, our writer produces the same header bytes.
      const inOrder = buildFile(specs, metadata, []);
      if (!metadata || Object.keys(metadata).every((k) => !/^\d+$/.test(k))) {
        const enc = encodeSafetensorsHeader(specs as never, metadata);
        assert.deepEqual(enc.bytes, inOrder.file.subarray(0, enc.bytes.length));
      }
    }),
    { numRuns: 600 },
  );
});

type Mutation =
  | { kind: 'flip'; pos: number; bit: number }
  | { kind: 'set'; pos: number; value: number }
  | { kind: 'truncate'; len: number }
  | { kind: 'append'; extra: number[] }
  | { kind: 'prefix'; value: bigint }
  | { kind: 'number'; nth: number; text: string }
  | { kind: 'insert'; pos: number; text: string }
  | { kind: 'delete'; pos: number; count: number }
  | { kind: 'dupEntry'; nth: number };

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), pos: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ kind: fc.constant('set' as const), pos: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constant('truncate' as const), len: fc.nat() }),
  fc.record({
    kind: fc.constant('append' as const),
    extra: fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 1, maxLength: 9 }),
  }),
  fc.record({
    kind: fc.constant('prefix' as const),
    value: fc.oneof(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), fc.bigInt({ min: 0n, max: 400n })),
  }),
  fc.record({
    kind: fc.constant('number' as const),
    nth: fc.nat(),
    text: fc.oneof(
      fc.integer({ min: -3, max: 300 }).map(String),
      fc.constantFrom('1e2', '2.0', '-0', '9007199254740993', '18446744073709551616', '0.5', '"3"', 'null', '[]'),
    ),
  }),
  fc.record({
    kind: fc.constant('insert' as const),
    pos: fc.nat(),
    text: fc.constantFrom(
      '{',
      '}',
      '[',
      ']',
      ',',
      ':',
      '"',
      '\\',
      ' ',
      '"x":1',
      '"__metadata__":{}',
      '\u0000',
      'é',
      '\\ud800',
    ),
  }),
  fc.record({ kind: fc.constant('delete' as const), pos: fc.nat(), count: fc.integer({ min: 1, max: 5 }) }),
  fc.record({ kind: fc.constant('dupEntry' as const), nth: fc.nat() }),
);

function mutate(file: Uint8Array, m: Mutation): Uint8Array {
  const headerLen =
    file.length < 8
      ? file.length
      : Math.min(file.length, 8 + Number(new DataView(file.buffer, file.byteOffset).getBigUint64(0, true) & 0xffffffn));
  const editHeader = (f: (json: string) => string): Uint8Array => {
    if (file.length < 8 || headerLen > file.length) return file;
    const json = Buffer.from(file.subarray(8, headerLen)).toString('latin1');
    const edited = Buffer.from(f(json), 'latin1');
    const out = new Uint8Array(8 + edited.length + (file.length - headerLen));
    out.set(file.subarray(0, 8));
    // Keep the prefix consistent with the edit, so the edit reaches the JSON checks.
    new DataView(out.buffer).setBigUint64(0, BigInt(edited.length), true);
    out.set(edited, 8);
    out.set(file.subarray(headerLen), 8 + edited.length);
    return out;
  };
  switch (m.kind) {
    case 'flip': {
      if (file.length === 0) return file;
      const out = file.slice();
      // Mostly hit the header, where the interesting checks are.
      const pos = m.pos % (m.pos % 4 === 0 ? file.length : Math.max(1, headerLen));
      out[pos] ^= 1 << m.bit;
      return out;
    }
    case 'set': {
      if (file.length === 0) return file;
      const out = file.slice();
      out[m.pos % Math.max(1, headerLen)] = m.value;
      return out;
    }
    case 'truncate':
      return file.slice(0, m.len % (file.length + 1));
    case 'append':
      return Uint8Array.from([...file, ...m.extra]);
    case 'prefix': {
      if (file.length < 8) return file;
      const out = file.slice();
      new DataView(out.buffer).setBigUint64(0, m.value, true);
      return out;
    }
    case 'number':
      return editHeader((json) => {
        const nums = [...json.matchAll(/\d+/g)];
        if (nums.length === 0) return json;
        const hit = nums[m.nth % nums.length];
        return json.slice(0, hit.index) + m.text + json.slice(hit.index! + hit[0].length);
      });
    case 'insert':
      return editHeader((json) => {
        const p = m.pos % (json.length + 1);
        return json.slice(0, p) + Buffer.from(m.text).toString('latin1') + json.slice(p);
      });
    case 'delete':
      return editHeader((json) => {
        const p = m.pos % (json.length + 1);
        return json.slice(0, p) + json.slice(p + m.count);
      });
    case 'dupEntry':
      return editHeader((json) => {
        const entries = [...json.matchAll(/"[^"]*":\{"dtype"[^}]*\}/g)];
        if (entries.length === 0) return json;
        const e = entries[m.nth % entries.length];
        const end = e.index! + e[0].length;
        return `${json.slice(0, end)},${e[0]}${json.slice(end)}`;
      });
  }
}

test('mutated files give a valid tiling parse or a documented WgitError, reading no more than the file', async () => {
  const codes = new Map<string, number>();
  await fc.assert(
    fc.asyncProperty(
      modelArb,
      fc.array(mutationArb, { minLength: 1, maxLength: 3 }),
      async ({ specs, metadata, order }, muts) => {
        let { file } = buildFile(specs, metadata, order);
        for (const m of muts) file = mutate(file, m);
        const result = outcome(file);
        if (typeof result === 'string') codes.set(result, (codes.get(result) ?? 0) + 1);
        else {
          checkValid(result, file);
          codes.set('valid', (codes.get('valid') ?? 0) + 1);
        }
        // The reading path agrees with the in-memory one and never asks for bytes the file lacks.
        let requested = 0;
        const reader = {
          size: file.length,
          async read(position: number, length: number) {
            assert.ok(
              position >= 0 && length >= 0 && position + length <= file.length,
              `read ${position}+${length} of ${file.length}`,
            );
            requested += length;
            return file.slice(position, position + length);
          },
        };
        let viaReader: SafetensorsHeader | string;
        try {
          viaReader = await readSafetensorsHeaderFrom(reader, 'fuzz.safetensors');
        } catch (e) {
          if (!isWgitError(e)) throw e;
          viaReader = e.code;
        }
        assert.equal(
          typeof viaReader === 'string' ? viaReader : 'valid',
          typeof result === 'string' ? result : 'valid',
        );
        assert.ok(requested <= Math.max(8, file.length));
      },
    ),
    { numRuns: 4000 },
  );
  if (process.env.FUZZ_STATS) console.error(JSON.stringify([...codes]));
  // The mutations must reach well past the first check, or the property says little.
  for (const c of [
    'valid',
    'E_SAFETENSORS_JSON',
    'E_SAFETENSORS_OFFSETS',
    'E_SAFETENSORS_TRUNCATED',
    'E_SAFETENSORS_SHAPE',
    'E_SAFETENSORS_DUPLICATE',
  ]) {
    assert.ok((codes.get(c) ?? 0) > 0, `no case ended in ${c}: ${JSON.stringify([...codes])}`);
  }
});

test('random bytes never escape as anything but a documented WgitError', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 64 }), fc.string({ maxLength: 40 }), (raw, tail) => {
      outcome(raw);
      // Random text behind a correct length prefix, so the JSON parser sees it.
      const json = Buffer.from(`{${tail}`);
      const file = new Uint8Array(8 + json.length);
      new DataView(file.buffer).setBigUint64(0, BigInt(json.length), true);
      file.set(json, 8);
      const r = outcome(file);
      if (typeof r !== 'string') checkValid(r, file);
    }),
    { numRuns: 3000 },
  );
});
