import { execFileSync } from 'node:child_process';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MaskPool, NATIVE_MIN, WASM_MIN, WORD_MIN, mask, maskBackend, maskImplementations, randomMaskKey, unmask } from '../src/mask.js';

/** The definition: byte i XOR key[i mod 4]. */
function reference(source: Uint8Array, key: Uint8Array): Buffer {
  return Buffer.from(source.map((b, i) => b ^ key[i & 3]!));
}

const KEY = Buffer.from([0x37, 0xfa, 0x21, 0x3d]);

/** Sizes around every threshold and block edge. */
const SIZES = [
  0, 1, 2, 3, 4, 5, 7, 8, 31, 32, 33, 63, 64, 65, 125, 126, WORD_MIN - 1, WORD_MIN, WORD_MIN + 3, NATIVE_MIN - 1, NATIVE_MIN,
  WASM_MIN - 1, WASM_MIN, WASM_MIN + 1, 1000, 65535, 65536, 65537, 65536 + 33, 200_000,
];

function bytes(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  let x = seed | 1;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

describe('mask / unmask', () => {
  it('match RFC 6455 §5.7: "Hello" under 37 fa 21 3d', () => {
    const out = Buffer.alloc(5);
    mask(Buffer.from('Hello'), KEY, out, 0, 5);
    expect(out).toEqual(Buffer.from([0x7f, 0x9f, 0x4d, 0x51, 0x58]));
    unmask(out, KEY);
    expect(out.toString()).toBe('Hello');
  });

  it(`use the ${maskBackend} backend for large payloads`, () => {
    expect(['bufferutil', 'wasm', 'js']).toContain(maskBackend);
  });

  it('every implementation matches the definition at every size, offset and alignment', () => {
    const impls = Object.entries(maskImplementations).filter(([, f]) => f !== undefined) as [
      string,
      (s: Buffer, k: Buffer, o: Buffer, off: number, len: number) => void,
    ][];
    expect(impls.map(([n]) => n)).toEqual(expect.arrayContaining(['bytes', 'words']));
    for (const n of SIZES) {
      const data = bytes(n + 8, n);
      for (const srcShift of [0, 1, 3]) {
        const source = data.subarray(srcShift, srcShift + n);
        const expected = reference(source, KEY);
        for (const outShift of [0, 2, 5]) {
          for (const [name, impl] of [...impls, ['mask', mask] as const]) {
            const output = Buffer.alloc(n + 16, 0xee);
            impl(source, KEY, output, outShift, n);
            expect(output.subarray(outShift, outShift + n).equals(expected), `${name} n=${n} src+${srcShift} out+${outShift}`).toBe(true);
            expect(output.subarray(0, outShift).every((b) => b === 0xee)).toBe(true);
            expect(output.subarray(outShift + n).every((b) => b === 0xee)).toBe(true);
          }
        }
        // In place, through the implementations and through unmask().
        for (const [name, impl] of impls) {
          const copy = Buffer.from(data);
          const view = copy.subarray(srcShift, srcShift + n);
          impl(view, KEY, view, 0, n);
          expect(view.equals(expected), `${name} in place n=${n} +${srcShift}`).toBe(true);
        }
        const copy = Buffer.from(data);
        const view = copy.subarray(srcShift, srcShift + n);
        unmask(view, KEY);
        expect(view.equals(expected), `unmask n=${n} +${srcShift}`).toBe(true);
        expect(copy.subarray(0, srcShift).equals(data.subarray(0, srcShift))).toBe(true);
        expect(copy.subarray(srcShift + n).equals(data.subarray(srcShift + n))).toBe(true);
      }
    }
  });

  it('mask is an involution for any data and key', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 700 }), fc.uint8Array({ minLength: 4, maxLength: 4 }), fc.nat(7), (raw, rawKey, shift) => {
        const key = Buffer.from(rawKey);
        const data = Buffer.concat([Buffer.alloc(shift), Buffer.from(raw)]).subarray(shift);
        const out = Buffer.alloc(data.length);
        mask(data, key, out, 0, data.length);
        expect(out.equals(reference(data, key))).toBe(true);
        unmask(out, key);
        expect(out.equals(data)).toBe(true);
      }),
      { numRuns: 500 },
    );
  });

  /** Load mask.ts in a child process with bufferutil disabled; returns "<backend> <correct>". */
  function fallback(flags: string[]): string {
    const script = `import('./packages/websocket/src/mask.ts').then((m) => {
      const key = Buffer.from([1, 2, 3, 4]);
      let ok = true;
      for (const n of [5, 100, 300, 70000]) {
        const data = Buffer.alloc(n + 1, 7).subarray(1);
        m.unmask(data, key);
        const out = Buffer.alloc(n + 2);
        m.mask(Buffer.alloc(n, 9), key, out, 2, n);
        ok &&= data.every((b, i) => b === (7 ^ key[i & 3])) && out.subarray(2).every((b, i) => b === (9 ^ key[i & 3]));
      }
      process.stdout.write(m.maskBackend + ' ' + ok);
    })`;
    return execFileSync(process.execPath, [...flags, '--import', 'tsx', '--input-type=module', '-e', script], {
      env: { ...process.env, CORRAL_WS_NO_BUFFERUTIL: '1' },
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    });
  }

  it('fall back to WebAssembly when bufferutil is disabled', () => {
    expect(fallback([])).toBe('wasm true');
  });

  it('fall back to JavaScript words when WebAssembly is unavailable too (--jitless)', () => {
    expect(fallback(['--jitless'])).toBe('js true');
  });
});

describe('MaskPool', () => {
  it('hands out 4-byte keys that differ and refills when used up', () => {
    const pool = new MaskPool(16);
    const keys = Array.from({ length: 40 }, () => pool.next().toString('hex'));
    expect(keys.every((k) => k.length === 8)).toBe(true);
    // 40 random 32-bit keys: a repeat has probability ~2e-7.
    expect(new Set(keys).size).toBe(40);
  });

  it('writes keys in place without allocating', () => {
    const pool = new MaskPool(8);
    const target = Buffer.alloc(10, 0xaa);
    pool.writeKey(target, 3);
    pool.writeKey(target, 6);
    expect(target[0]).toBe(0xaa);
    expect(target[1]).toBe(0xaa);
    expect(target[2]).toBe(0xaa);
  });

  it('rejects sizes that are not a positive multiple of 4', () => {
    expect(() => new MaskPool(0)).toThrow(RangeError);
    expect(() => new MaskPool(10)).toThrow(RangeError);
  });

  it('randomMaskKey returns fresh buffers', () => {
    const a = randomMaskKey();
    const b = randomMaskKey();
    expect(a).toHaveLength(4);
    expect(a).not.toBe(b);
  });
});
