import { createRequire } from 'node:module';

// zstd-napi's binding entry picks its .node file with a computed require(),
// which ESM named-export detection cannot see through; load it as CommonJS.
const zstd = createRequire(import.meta.url)('zstd-napi/binding.js') as typeof import('zstd-napi/binding.js');

// ZSTD_c_literalCompressionMode (experimental parameter 5) = ZSTD_ps_enable.
// Negative levels switch Huffman coding of literals off by default; forcing
// it on while the level is at its minimum gives an almost pure order-0
// Huffman coder, which is what an exponent stream wants: LZ matches on such
// data are short, rare, and break the Huffman symbol runs (measured: 2.9x
// at level 1 vs 3.08x this way, and 2.5x faster to encode).
const LITERAL_COMPRESSION_MODE = 1002;
const PS_ENABLE = 1;

export type StreamCoder = 'huffman' | 'lz';

function makeCCtx(kind: StreamCoder): InstanceType<typeof zstd.CCtx> {
  const c = new zstd.CCtx();
  if (kind === 'huffman') {
    c.setParameter(zstd.CParameter.compressionLevel, zstd.minCLevel());
    try {
      c.setParameter(LITERAL_COMPRESSION_MODE, PS_ENABLE);
    } catch {
      // a zstd build without the experimental parameter: level 1 still Huffman-codes literals
      c.setParameter(zstd.CParameter.compressionLevel, 1);
    }
  } else {
    // Mostly-zero XOR streams: long runs, where LZ matching wins.
    c.setParameter(zstd.CParameter.compressionLevel, 1);
  }
  // 4 bytes per frame buy detection of corrupted compressed streams.
  c.setParameter(zstd.CParameter.checksumFlag, 1);
  return c;
}

let huffman: InstanceType<typeof zstd.CCtx> | null = null;
let lz: InstanceType<typeof zstd.CCtx> | null = null;
let dctx: InstanceType<typeof zstd.DCtx> | null = null;

/** Compresses `src` into `dst` (at least compressBound(src.length) long); returns the byte count. */
export function compressStream(dst: Uint8Array, src: Uint8Array, kind: StreamCoder): number {
  if (kind === 'huffman') {
    huffman ??= makeCCtx('huffman');
    return huffman.compress2(dst, src);
  }
  lz ??= makeCCtx('lz');
  return lz.compress2(dst, src);
}

/** Decompresses into exactly `dst`; throws (zstd's error) on bad frames or a size over dst.length. */
export function decompressStream(dst: Uint8Array, src: Uint8Array): number {
  dctx ??= new zstd.DCtx();
  return dctx.decompress(dst, src);
}

export function compressBound(n: number): number {
  return zstd.compressBound(n);
}
