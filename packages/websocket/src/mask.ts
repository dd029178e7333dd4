/**
 * Payload masking (RFC 6455 §5.3): XOR with a 4-byte key repeated over the payload.
 *
 * Three implementations, picked once at load time and then by payload size, from measurements
 * (Node 20, x64, unaligned input; `bench/ws-codec.ts` re-measures them):
 *
 * | bytes                          |   64 |  256 | 1 KiB | 16 KiB | 1 MiB |
 * | ------------------------------ | ---: | ---: | ----: | -----: | ----: |
 * | JS, 4 bytes per iteration      | 0.06 | 0.21 |  0.83 |   12.9 |   811 |  (µs)
 * | JS, 32-bit words               | 0.07 | 0.14 |  0.53 |    6.1 |   385 |
 * | WebAssembly SIMD (with copies) | 0.12 | 0.13 |  0.16 |    0.9 |    84 |
 * | bufferutil (native)            | 0.07 | 0.07 |  0.10 |    0.7 |    43 |
 *
 * - `bufferutil`, an optional dependency, when its prebuilt native binary loads (its own
 *   JavaScript fallback is not used: it is a byte loop, slower than ours), from
 *   {@link NATIVE_MIN} bytes up.
 * - Otherwise WebAssembly SIMD: a payload is copied through a fixed 64 KiB linear memory, XORed
 *   32 bytes per iteration and copied back. The two copies are native `memcpy`s, and the whole
 *   stays 4-5 times faster than the best JavaScript from {@link WASM_MIN} bytes up.
 * - Otherwise (no WebAssembly, e.g. `--jitless`), JavaScript over 32-bit words for large payloads.
 * - Small payloads always take the JavaScript byte loop: below the thresholds the call into
 *   native or WebAssembly code costs more than the XOR itself.
 */

import { randomFillSync } from 'node:crypto';
import { createRequire } from 'node:module';

/** Payloads from this size up go to bufferutil when it is loaded. */
export const NATIVE_MIN = 64;
/** Payloads from this size up go to WebAssembly when bufferutil is not loaded. */
export const WASM_MIN = 192;
/** Payloads from this size up are XORed a word at a time when neither is available. */
export const WORD_MIN = 256;

type NativeMask = (source: Buffer, mask: Buffer, output: Buffer, offset: number, length: number) => void;
type NativeUnmask = (buffer: Buffer, mask: Buffer) => void;

// ---------------------------------------------------------------------------------------------
// JavaScript
// ---------------------------------------------------------------------------------------------

/** Scratch for building a key word in the platform's byte order. */
const keyBytes = new Uint8Array(4);
const keyWord = new Uint32Array(keyBytes.buffer);

/** The key as a 32-bit word in the platform's byte order, starting at key byte `phase`. */
function wordOf(key: Uint8Array, phase: number): number {
  keyBytes[0] = key[phase & 3]!;
  keyBytes[1] = key[(phase + 1) & 3]!;
  keyBytes[2] = key[(phase + 2) & 3]!;
  keyBytes[3] = key[(phase + 3) & 3]!;
  return keyWord[0]!;
}

/** XOR `source[0, length)` into `output[offset, offset + length)`, four bytes per iteration. */
function maskBytes(source: Uint8Array, key: Uint8Array, output: Uint8Array, offset: number, length: number): void {
  const k0 = key[0]!;
  const k1 = key[1]!;
  const k2 = key[2]!;
  const k3 = key[3]!;
  const end4 = length & ~3;
  let i = 0;
  for (; i < end4; i += 4) {
    output[offset + i] = source[i]! ^ k0;
    output[offset + i + 1] = source[i + 1]! ^ k1;
    output[offset + i + 2] = source[i + 2]! ^ k2;
    output[offset + i + 3] = source[i + 3]! ^ k3;
  }
  if (i < length) {
    output[offset + i] = source[i]! ^ k0;
    if (i + 1 < length) {
      output[offset + i + 1] = source[i + 1]! ^ k1;
      if (i + 2 < length) output[offset + i + 2] = source[i + 2]! ^ k2;
    }
  }
}

/**
 * XOR `source[0, length)` into `output[offset, offset + length)` through 32-bit words. Word access
 * needs both sides equally aligned; when they are not, the byte loop does it.
 */
function maskWords(source: Uint8Array, key: Uint8Array, output: Uint8Array, offset: number, length: number): void {
  const srcAt = source.byteOffset;
  const dstAt = output.byteOffset + offset;
  if (((srcAt ^ dstAt) & 3) !== 0) {
    maskBytes(source, key, output, offset, length);
    return;
  }
  let head = (4 - (srcAt & 3)) & 3;
  if (head > length) head = length;
  let i = 0;
  for (; i < head; i++) output[offset + i] = source[i]! ^ key[i & 3]!;
  const words = (length - i) >>> 2;
  if (words > 0) {
    const m = wordOf(key, i);
    const src = new Uint32Array(source.buffer, srcAt + i, words);
    const dst = src.buffer === output.buffer && srcAt === dstAt ? src : new Uint32Array(output.buffer, dstAt + i, words);
    for (let w = 0; w < words; w++) dst[w] = src[w]! ^ m;
    i += words << 2;
  }
  for (; i < length; i++) output[offset + i] = source[i]! ^ key[i & 3]!;
}

// ---------------------------------------------------------------------------------------------
// WebAssembly SIMD
// ---------------------------------------------------------------------------------------------

/**
 * A module exporting its memory (one 64 KiB page) and `xor(ptr, len, key)`, which XORs
 * `len` bytes at `ptr` (len a positive multiple of 32) with the little-endian word `key`:
 *
 * ```wat
 * (func (export "xor") (param $p i32) (param $n i32) (param $k i32)
 *   (local $m v128) (local $end i32)
 *   (local.set $m (i32x4.splat (local.get $k)))
 *   (local.set $end (i32.add (local.get $p) (local.get $n)))
 *   (loop
 *     (v128.store offset=0  (local.get $p) (v128.xor (v128.load offset=0  (local.get $p)) (local.get $m)))
 *     (v128.store offset=16 (local.get $p) (v128.xor (v128.load offset=16 (local.get $p)) (local.get $m)))
 *     (br_if 0 (i32.lt_u (local.tee $p (i32.add (local.get $p) (i32.const 32))) (local.get $end)))))
 * ```
 */
// prettier-ignore
const WASM_XOR = Uint8Array.of(
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version 1
  0x01, 0x07, 0x01, 0x60, 0x03, 0x7f, 0x7f, 0x7f, 0x00, // type section: (i32, i32, i32) -> ()
  0x03, 0x02, 0x01, 0x00, // function section: one function of type 0
  0x05, 0x03, 0x01, 0x00, 0x01, // memory section: one memory, at least 1 page
  0x07, 0x10, 0x02, // export section, 2 exports
  0x06, 0x6d, 0x65, 0x6d, 0x6f, 0x72, 0x79, 0x02, 0x00, // "memory": memory 0
  0x03, 0x78, 0x6f, 0x72, 0x00, 0x00, // "xor": function 0
  0x0a, 0x44, 0x01, 0x42, // code section, one body of 66 bytes
  0x02, 0x01, 0x7b, 0x01, 0x7f, // locals: 1 v128 ($m = 3), 1 i32 ($end = 4)
  0x20, 0x02, 0xfd, 0x11, 0x21, 0x03, // $m = i32x4.splat($k)
  0x20, 0x00, 0x20, 0x01, 0x6a, 0x21, 0x04, // $end = $p + $n
  0x03, 0x40, // loop
  0x20, 0x00, 0x20, 0x00, 0xfd, 0x00, 0x04, 0x00, 0x20, 0x03, 0xfd, 0x51, 0xfd, 0x0b, 0x04, 0x00, // [p] ^= m
  0x20, 0x00, 0x20, 0x00, 0xfd, 0x00, 0x04, 0x10, 0x20, 0x03, 0xfd, 0x51, 0xfd, 0x0b, 0x04, 0x10, // [p+16] ^= m
  0x20, 0x00, 0x41, 0x20, 0x6a, 0x22, 0x00, // $p = $p + 32
  0x20, 0x04, 0x49, 0x0d, 0x00, // br_if 0 ($p < $end)
  0x0b, // end loop
  0x0b, // end function
);

/** Bytes processed per trip through linear memory (its one page). */
const WASM_BLOCK = 65536;

interface WasmXor {
  xor: (ptr: number, len: number, key: number) => void;
  /** The module's memory as a Buffer. */
  mem: Buffer;
}

/** The parts of the WebAssembly global used here; it is absent under `--jitless`. */
interface WasmGlobal {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object) => { exports: { memory: { buffer: ArrayBuffer }; xor: WasmXor['xor'] } };
}

function loadWasm(): WasmXor | undefined {
  try {
    const wa = (globalThis as { WebAssembly?: WasmGlobal }).WebAssembly;
    if (wa === undefined) return undefined;
    const exports = new wa.Instance(new wa.Module(WASM_XOR)).exports;
    const mem = Buffer.from(exports.memory.buffer, 0, WASM_BLOCK);
    const self: WasmXor = { xor: exports.xor, mem };
    // Check it once: a broken SIMD engine must not corrupt payloads.
    mem.fill(0x5a, 0, 64);
    exports.xor(0, 64, 0x04030201);
    for (let i = 0; i < 64; i++) if (mem[i] !== (0x5a ^ ((i & 3) + 1))) return undefined;
    return self;
  } catch {
    return undefined;
  }
}

const wasm = loadWasm();

/** Little-endian key word starting at key byte `phase`. */
function leWord(key: Uint8Array, phase: number): number {
  return key[phase & 3]! | (key[(phase + 1) & 3]! << 8) | (key[(phase + 2) & 3]! << 16) | (key[(phase + 3) & 3]! << 24);
}

/** XOR `source[0, length)` into `output[offset, ...)` through the WebAssembly module, 64 KiB at a time. */
function maskWasm(w: WasmXor, source: Buffer, key: Uint8Array, output: Buffer, offset: number, length: number): void {
  const mem = w.mem;
  const k = leWord(key, 0);
  let done = 0;
  while (done < length) {
    let n = length - done;
    if (n > WASM_BLOCK) n = WASM_BLOCK;
    const n32 = n & ~31;
    if (n32 === 0) break;
    source.copy(mem, 0, done, done + n32);
    w.xor(0, n32, k);
    mem.copy(output, offset + done, 0, n32);
    done += n32;
  }
  for (let i = done; i < length; i++) output[offset + i] = source[i]! ^ key[i & 3]!;
}

// ---------------------------------------------------------------------------------------------
// bufferutil
// ---------------------------------------------------------------------------------------------

function loadNative(): { mask: NativeMask; unmask: NativeUnmask } | undefined {
  try {
    const mod = createRequire(import.meta.url)('bufferutil') as { mask?: unknown; unmask?: unknown };
    const { mask, unmask } = mod;
    if (typeof mask !== 'function' || typeof unmask !== 'function') return undefined;
    // bufferutil falls back to a JavaScript byte loop when its binary does not load; ours is faster.
    if (!Function.prototype.toString.call(mask).includes('[native code]')) return undefined;
    return { mask: mask as NativeMask, unmask: unmask as NativeUnmask };
  } catch {
    return undefined;
  }
}

const native = process.env.CORRAL_WS_NO_BUFFERUTIL ? undefined : loadNative();

/** Which implementation handles large payloads: `'bufferutil'`, `'wasm'` or `'js'`. */
export const maskBackend: 'bufferutil' | 'wasm' | 'js' = native ? 'bufferutil' : wasm ? 'wasm' : 'js';

// ---------------------------------------------------------------------------------------------
// API
// ---------------------------------------------------------------------------------------------

/**
 * Mask (or unmask: XOR is its own inverse) `source[0, length)` with the 4-byte `maskKey`, writing
 * the result to `output[offset, offset + length)`. `source` and `output` may be the same buffer
 * only with `offset` 0.
 */
export function mask(source: Buffer, maskKey: Buffer, output: Buffer, offset: number, length: number): void {
  if (native !== undefined) {
    if (length >= NATIVE_MIN) native.mask(source, maskKey, output, offset, length);
    else maskBytes(source, maskKey, output, offset, length);
  } else if (wasm !== undefined && length >= WASM_MIN) maskWasm(wasm, source, maskKey, output, offset, length);
  else if (length >= WORD_MIN) maskWords(source, maskKey, output, offset, length);
  else maskBytes(source, maskKey, output, offset, length);
}

/** Unmask (or mask) `buffer` in place with the 4-byte `maskKey`. */
export function unmask(buffer: Buffer, maskKey: Buffer): void {
  const length = buffer.length;
  if (native !== undefined) {
    if (length >= NATIVE_MIN) native.unmask(buffer, maskKey);
    else maskBytes(buffer, maskKey, buffer, 0, length);
  } else if (wasm !== undefined && length >= WASM_MIN) maskWasm(wasm, buffer, maskKey, buffer, 0, length);
  else if (length >= WORD_MIN) maskWords(buffer, maskKey, buffer, 0, length);
  else maskBytes(buffer, maskKey, buffer, 0, length);
}

/**
 * The individual implementations, for tests and benchmarks. Each has the signature of
 * {@link mask}; `wasm` and `bufferutil` are undefined where they did not load.
 */
export const maskImplementations: {
  bytes: (source: Buffer, maskKey: Buffer, output: Buffer, offset: number, length: number) => void;
  words: (source: Buffer, maskKey: Buffer, output: Buffer, offset: number, length: number) => void;
  wasm: ((source: Buffer, maskKey: Buffer, output: Buffer, offset: number, length: number) => void) | undefined;
  bufferutil: NativeMask | undefined;
} = {
  bytes: maskBytes,
  words: maskWords,
  wasm: wasm === undefined ? undefined : (s, k, o, off, len) => maskWasm(wasm, s, k, o, off, len),
  bufferutil: native?.mask,
};

// ---------------------------------------------------------------------------------------------
// Mask keys
// ---------------------------------------------------------------------------------------------

/**
 * Fresh mask keys from a pool of CSPRNG bytes (`crypto.randomFillSync`), refilled when used up:
 * one system call per `size / 4` keys instead of one per frame. RFC 6455 §10.3 wants keys the
 * application cannot predict, hence a cryptographic source.
 */
export class MaskPool {
  private readonly pool: Buffer;
  private pos: number;

  /** @param size - pool size in bytes, a positive multiple of 4 (default 8 KiB). */
  constructor(size = 8192) {
    if (!Number.isInteger(size) || size < 4 || size % 4 !== 0) {
      throw new RangeError(`MaskPool size must be a positive multiple of 4, got ${size}`);
    }
    this.pool = Buffer.allocUnsafeSlow(size);
    this.pos = size;
  }

  /** Write a fresh key to `target[offset, offset + 4)`. */
  writeKey(target: Uint8Array, offset: number): void {
    const pool = this.pool;
    let p = this.pos;
    if (p === pool.length) {
      randomFillSync(pool);
      p = 0;
    }
    target[offset] = pool[p]!;
    target[offset + 1] = pool[p + 1]!;
    target[offset + 2] = pool[p + 2]!;
    target[offset + 3] = pool[p + 3]!;
    this.pos = p + 4;
  }

  /** A fresh key in a new 4-byte Buffer. */
  next(): Buffer {
    const key = Buffer.allocUnsafe(4);
    this.writeKey(key, 0);
    return key;
  }
}

/** The pool {@link randomMaskKey} and the frame builder draw from. */
export const maskPool = new MaskPool();

/** A fresh random 4-byte mask key. */
export function randomMaskKey(): Buffer {
  return maskPool.next();
}
