import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { merge, scratch, split } from '../src/codec/wasm.js';
import { CODEC_WASM_BASE64, CODEC_WASM_SOURCE_SHA256 } from '../src/codec/wasm-binary.js';

function randomBytes(n: number, seed: number): Uint8Array {
  let x = seed >>> 0 || 1;
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    // xorshift32
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

/** Plain-loop reference: element i, rotated left by one bit when asked, byte k -> stream k. */
function referenceSplit(src: Uint8Array, n: number, w: number, rot: boolean): Uint8Array {
  const out = new Uint8Array(n * w);
  for (let i = 0; i < n; i++) {
    let value = 0n;
    for (let k = 0; k < w; k++) value |= BigInt(src[i * w + k]) << BigInt(8 * k);
    if (rot) {
      const bits = BigInt(8 * w);
      value = ((value << 1n) | (value >> (bits - 1n))) & ((1n << bits) - 1n);
    }
    for (let k = 0; k < w; k++) out[k * n + i] = Number((value >> BigInt(8 * k)) & 0xffn);
  }
  return out;
}

describe('regrouping kernels (WebAssembly SIMD) against a scalar reference', () => {
  const counts = [0, 1, 15, 16, 17, 31, 32, 33, 100, 1029];
  for (const [w, rot] of [
    [1, false],
    [2, false],
    [2, true],
    [4, false],
    [4, true],
    [8, false],
  ] as [number, boolean][]) {
    test(`width ${w}${rot ? ', rotated' : ''}`, () => {
      for (const n of counts) {
        const src = randomBytes(n * w, n * 7 + w);
        const s = scratch(n * w);
        s.mem.set(src, s.data);
        split(s, s.data, s.streams, n, w, rot);
        const expected = referenceSplit(src, n, w, rot);
        assert.deepEqual(s.mem.slice(s.streams, s.streams + n * w), expected, `split n=${n}`);
        s.mem.fill(0xee, s.data, s.data + n * w);
        merge(s, s.streams, s.data, n, w, rot);
        assert.deepEqual(s.mem.slice(s.data, s.data + n * w), src, `merge n=${n}`);
      }
    });
  }

  test('xorBytes and countZero', () => {
    for (const len of [0, 1, 63, 64, 65, 5000]) {
      const a = randomBytes(len, 1 + len);
      const b = randomBytes(len, 2 + len);
      for (let i = 0; i < len; i += 3) b[i] = a[i]; // some zero bytes in the XOR
      const s = scratch(len);
      s.mem.set(a, s.data);
      s.mem.set(b, s.base);
      s.k.xorBytes(s.data, s.base, s.data, len);
      const got = s.mem.slice(s.data, s.data + len);
      let zeros = 0;
      for (let i = 0; i < len; i++) {
        assert.equal(got[i], a[i] ^ b[i]);
        if ((a[i] ^ b[i]) === 0) zeros++;
      }
      assert.equal(s.k.countZero(s.data, len), zeros);
    }
    // more than 255 vectors of zeros: the lane counters must not wrap
    const s = scratch(1 << 16);
    s.mem.fill(0, s.data, s.data + (1 << 16));
    assert.equal(s.k.countZero(s.data, 1 << 16), 1 << 16);
  });

  test('the embedded module was built from the current assembly/codec.ts', () => {
    // Compiling here would take most of a minute; the build records the
    // source digest, and `node assembly/build.mjs --check` compares binaries.
    const digest = createHash('sha256')
      .update(readFileSync(new URL('../assembly/codec.ts', import.meta.url)))
      .digest('hex');
    assert.equal(CODEC_WASM_SOURCE_SHA256, digest, 'stale: run node packages/store/assembly/build.mjs');
    const wasm = (globalThis as unknown as { WebAssembly: { validate(b: Uint8Array): boolean } }).WebAssembly;
    assert.ok(wasm.validate(Buffer.from(CODEC_WASM_BASE64, 'base64')));
  });
});
