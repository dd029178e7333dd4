import { isUtf8 } from 'node:buffer';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Utf8Validator, isValidUtf8 } from '../src/utf8.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

/** "κόσμε" */
const KOSME = 'ce ba e1 bd b9 cf 83 ce bc ce b5';
const EDITED = '65 64 69 74 65 64';

/**
 * True if `prefix` can be extended to valid UTF-8. Reference built on `isUtf8` alone: try every
 * way to finish an open sequence (a second byte from each range a lead byte allows, then
 * continuation bytes).
 */
function isValidPrefix(prefix: Uint8Array): boolean {
  if (isUtf8(prefix)) return true;
  for (const second of [0x80, 0x90, 0xa0]) {
    for (let k = 1; k <= 3; k++) {
      const extended = Buffer.concat([prefix, Buffer.from([second]), Buffer.alloc(k - 1, 0x80)]);
      if (isUtf8(extended)) return true;
    }
  }
  return false;
}

/** Push `chunks` one by one; returns the index of the first chunk refused (or -1) and end()'s verdict. */
function run(chunks: readonly Uint8Array[]): { failedAt: number; valid: boolean } {
  const v = new Utf8Validator();
  let failedAt = -1;
  for (let i = 0; i < chunks.length; i++) {
    if (!v.push(chunks[i]!) && failedAt < 0) failedAt = i;
  }
  return { failedAt, valid: v.end() };
}

/** Index of the first chunk whose bytes, with all before it, are no valid prefix; -1 if none. */
function expectedFailure(chunks: readonly Uint8Array[]): number {
  let acc = Buffer.alloc(0);
  for (let i = 0; i < chunks.length; i++) {
    acc = Buffer.concat([acc, chunks[i]!]);
    if (!isValidPrefix(acc)) return i;
  }
  return -1;
}

function splitAt(bytes: Uint8Array, cuts: readonly number[]): Uint8Array[] {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const out: Uint8Array[] = [];
  let start = 0;
  for (const p of points) {
    out.push(bytes.subarray(start, p));
    start = p;
  }
  out.push(bytes.subarray(start));
  return out;
}

function bytewise(bytes: Uint8Array): Uint8Array[] {
  return Array.from(bytes, (_, i) => bytes.subarray(i, i + 1));
}

/** Check a vector whole, split in two at every point, and byte by byte, with fail-fast timing. */
function checkVector(bytes: Buffer, valid: boolean): void {
  expect(isValidUtf8(bytes)).toBe(valid);
  expect(run([bytes]).valid).toBe(valid);
  for (let cut = 0; cut <= bytes.length; cut++) {
    const chunks = [bytes.subarray(0, cut), bytes.subarray(cut)];
    const r = run(chunks);
    expect(r.valid).toBe(valid);
    expect(r.failedAt).toBe(expectedFailure(chunks));
  }
  const single = bytewise(bytes);
  const r = run(single);
  expect(r.valid).toBe(valid);
  expect(r.failedAt).toBe(expectedFailure(single));
}

// The UTF-8 cases of the Autobahn test suite (section 6), built on Markus Kuhn's decoder stress test.
const VALID: Record<string, string[]> = {
  '6.2 valid text in pieces': [Buffer.from('Hello-µ@ßöäüàá-UTF-8!!').toString('hex')],
  '6.5 κόσμε': [KOSME],
  '6.7 first possible sequence of each length': ['00', 'c2 80', 'e0 a0 80', 'f0 90 80 80'],
  '6.9 last possible sequence of each length': ['7f', 'df bf', 'ef bf bf', 'f4 8f bf bf'],
  '6.11 other boundaries': ['ed 9f bf', 'ee 80 80', 'ef bf bd', 'f4 8f bf bf'],
  '6.22 noncharacters are valid': [
    'ef bf be', 'ef bf bf', 'f0 9f bf be', 'f0 9f bf bf', 'f0 af bf be', 'f4 8f bf be', 'f4 8f bf bf',
    'ef b7 90', 'ef b7 af',
  ],
  '6.23 U+FFFD': ['ef bf bd', `${KOSME} ef bf bd ${EDITED}`],
};

const INVALID: Record<string, string[]> = {
  '6.3 κόσμε with a surrogate, then "edited"': [`${KOSME} ed a0 80 ${EDITED}`],
  '6.4 κόσμε, a code point above U+10FFFF, "edited"': [`${KOSME} f4 90 80 80 ${EDITED}`],
  '6.6 truncated κόσμε': ['ce', 'ce ba e1', 'ce ba e1 bd', `${KOSME.slice(0, -3)}`],
  '6.8 five- and six-byte forms': ['f8 88 80 80 80', 'fc 84 80 80 80 80'],
  '6.10 above U+10FFFF': ['f7 bf bf bf', 'fb bf bf bf bf', 'fd bf bf bf bf bf', 'f4 90 80 80'],
  '6.12 unexpected continuation bytes': ['80', 'bf', '80 bf', '80 bf 80', '80 bf 80 bf', '80 bf 80 bf 80', '80 bf 80 bf 80 bf'],
  '6.13 lonely lead bytes followed by a space': ['c0 20 c1 20', 'e0 20 e1 20', 'f0 20 f1 20', 'f8 20 f9 20', 'fc 20 fd 20', 'c2 20'],
  '6.14 sequences missing their last byte': [
    'c0', 'e0 80', 'f0 80 80', 'f8 80 80 80', 'fc 80 80 80 80', 'df', 'ef bf', 'f7 bf bf', 'fb bf bf bf', 'fd bf bf bf bf',
    'c2', 'e1 80', 'f1 80 80',
  ],
  '6.15 concatenated incomplete sequences': ['c0 e0 80 f0 80 80 f8 80 80 80 fc 80 80 80 80 df ef bf f7 bf bf fb bf bf bf fd bf bf bf bf'],
  '6.16 impossible bytes': ['fe', 'ff', 'fe fe ff ff', 'f5 80 80 80'],
  '6.17 overlong "/"': ['c0 af', 'e0 80 af', 'f0 80 80 af', 'f8 80 80 80 af', 'fc 80 80 80 80 af'],
  '6.18 maximum overlongs': ['c1 bf', 'e0 9f bf', 'f0 8f bf bf', 'f8 87 bf bf bf', 'fc 83 bf bf bf bf'],
  '6.19 overlong NUL': ['c0 80', 'e0 80 80', 'f0 80 80 80', 'f8 80 80 80 80', 'fc 80 80 80 80 80'],
  '6.20 single surrogates': ['ed a0 80', 'ed ad bf', 'ed ae 80', 'ed af bf', 'ed b0 80', 'ed be 80', 'ed bf bf'],
  '6.21 surrogate pairs': [
    'ed a0 80 ed b0 80', 'ed a0 80 ed bf bf', 'ed ad bf ed b0 80', 'ed ad bf ed bf bf',
    'ed ae 80 ed b0 80', 'ed ae 80 ed bf bf', 'ed af bf ed b0 80', 'ed af bf ed bf bf',
  ],
};

describe('Utf8Validator: Autobahn section 6 vectors', () => {
  for (const [name, vectors] of Object.entries(VALID)) {
    it(`accepts ${name}`, () => {
      for (const v of vectors) checkVector(hex(v), true);
    });
  }
  for (const [name, vectors] of Object.entries(INVALID)) {
    it(`rejects ${name}`, () => {
      for (const v of vectors) checkVector(hex(v), false);
    });
  }

  it('6.1 empty pieces are valid', () => {
    expect(run([Buffer.alloc(0), Buffer.alloc(0), Buffer.alloc(0)])).toEqual({ failedAt: -1, valid: true });
  });
});

describe('Utf8Validator: fail fast (Autobahn 6.4.x)', () => {
  it('6.4.1: fails on the fragment holding F4 90 80 80', () => {
    expect(run([hex(KOSME), hex('f4 90 80 80'), hex(EDITED)]).failedAt).toBe(1);
  });

  it('6.4.2: fails on the fragment holding the 0x90 after a lone F4', () => {
    expect(run([hex(`${KOSME} f4`), hex('90'), hex(`80 80 ${EDITED}`)]).failedAt).toBe(1);
  });

  it('6.4.3/6.4.4: fails on the chunk that makes the prefix impossible, byte by byte', () => {
    expect(run([hex(KOSME), hex('f4'), hex('90'), hex('80'), hex('80'), hex(EDITED)]).failedAt).toBe(2);
  });

  it('fails on a chunk ending in a truncated sequence whose lead is already impossible', () => {
    const cases: [string, string][] = [
      ['61 62 f5', 'f5..ff lead'],
      ['61 62 ff', 'ff'],
      ['61 c0', 'c0 lead'],
      ['61 c1', 'c1 lead'],
      ['61 e0 80', 'overlong E0 80'],
      ['61 e0 9f', 'overlong E0 9f'],
      ['61 ed a0', 'surrogate ED A0'],
      ['61 ed bf', 'surrogate ED BF'],
      ['61 f0 80', 'overlong F0 80'],
      ['61 f0 8f bf', 'overlong F0 8F BF'],
      ['61 f4 90', 'above U+10FFFF F4 90'],
      ['61 f4 bf bf', 'above U+10FFFF F4 BF BF'],
      ['61 e1 c0', 'non-continuation after a lead'],
      ['61 f1 80 7f', 'ASCII inside a sequence'],
    ];
    for (const [bytes, what] of cases) {
      const v = new Utf8Validator();
      expect(v.push(hex(bytes)), what).toBe(false);
      expect(v.valid).toBe(false);
    }
  });

  it('keeps a valid open sequence across chunks and fails at the end if it never finishes', () => {
    const v = new Utf8Validator();
    expect(v.push(hex('61 f0 9f'))).toBe(true);
    expect(v.atBoundary).toBe(false);
    expect(v.push(hex('98'))).toBe(true);
    expect(v.push(hex('80 62'))).toBe(true); // U+1F600 then "b"
    expect(v.atBoundary).toBe(true);
    expect(v.push(hex('e2 82'))).toBe(true);
    expect(v.end()).toBe(false);
  });

  it('stays failed until reset, and end() resets', () => {
    const v = new Utf8Validator();
    expect(v.push(hex('ff'))).toBe(false);
    expect(v.push(hex('61'))).toBe(false);
    expect(v.end()).toBe(false);
    expect(v.push(hex('61'))).toBe(true);
    expect(v.push(hex('ff'))).toBe(false);
    v.reset();
    expect(v.push(hex('61'))).toBe(true);
    expect(v.end()).toBe(true);
  });
});

describe('Utf8Validator: properties against buffer.isUtf8', () => {
  /** Valid UTF-8 with up to three random byte edits, or random bytes. */
  const nearlyUtf8 = fc.oneof(
    fc.uint8Array({ maxLength: 64 }),
    fc
      .tuple(
        fc.string({ unit: 'binary', maxLength: 40 }),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 3 }),
        fc.nat(),
      )
      .map(([s, edits, cut]) => {
        const b = Buffer.from(s, 'utf8');
        for (const [at, value] of edits) if (b.length > 0) b[at % b.length] = value;
        return b.subarray(0, b.length === 0 ? 0 : b.length - (cut % 4));
      }),
  );

  it('push/end agree with isUtf8 and fail on the first impossible prefix, for any split', () => {
    fc.assert(
      fc.property(nearlyUtf8, fc.array(fc.nat(), { maxLength: 8 }), (bytes, cuts) => {
        const chunks = splitAt(bytes, cuts);
        const r = run(chunks);
        expect(r.valid).toBe(isUtf8(bytes));
        expect(r.failedAt).toBe(expectedFailure(chunks));
      }),
      { numRuns: 3000 },
    );
  });

  it('byte-by-byte pushes agree too', () => {
    fc.assert(
      fc.property(nearlyUtf8, (bytes) => {
        const chunks = bytewise(bytes);
        const r = run(chunks);
        expect(r.valid).toBe(isUtf8(bytes));
        expect(r.failedAt).toBe(expectedFailure(chunks));
      }),
      { numRuns: 1000 },
    );
  });

  it('isValidUtf8 agrees with isUtf8, on views at any offset', () => {
    fc.assert(
      fc.property(nearlyUtf8, fc.nat(3), (bytes, offset) => {
        const padded = Buffer.concat([Buffer.alloc(offset, 0x61), bytes]);
        expect(isValidUtf8(padded.subarray(offset))).toBe(isUtf8(bytes));
      }),
      { numRuns: 2000 },
    );
  });

  it('validates long inputs through the native path with open sequences at the edges', () => {
    const text = Buffer.from('Grüße, 世界! 😀 '.repeat(500), 'utf8');
    for (const cut of [1, 2, 3, 7, 100, 4097]) {
      const chunks = [];
      for (let i = 0; i < text.length; i += cut * 13) chunks.push(text.subarray(i, Math.min(text.length, i + cut * 13)));
      expect(run(chunks)).toEqual({ failedAt: -1, valid: true });
    }
    const broken = Buffer.from(text);
    broken[5000] = 0xff;
    expect(run([broken.subarray(0, 4000), broken.subarray(4000)]).failedAt).toBe(1);
  });
});
