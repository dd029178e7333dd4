import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { crc32c } from '../src/crc32c.js';

/** Bit-at-a-time reference: slow but obviously the Castagnoli definition. */
function reference(data: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of data) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

describe('crc32c', () => {
  // RFC 3720 appendix B.4.
  it('matches the RFC 3720 vectors', () => {
    expect(crc32c(new Uint8Array(32))).toBe(0x8a9136aa);
    expect(crc32c(new Uint8Array(32).fill(0xff))).toBe(0x62a8ab43);
    expect(crc32c(Uint8Array.from({ length: 32 }, (_, i) => i))).toBe(0x46dd794e);
    expect(crc32c(Uint8Array.from({ length: 32 }, (_, i) => 31 - i))).toBe(0x113fdb5c);
    const readPdu = Buffer.from(
      '01c00000' + '00000000' + '00000000' + '00000000' + '14000000' + '00000400' +
        '00000014' + '00000018' + '28000000' + '00000000' + '02000000' + '00000000',
      'hex',
    );
    expect(readPdu).toHaveLength(48);
    expect(crc32c(readPdu)).toBe(0xd9963a56);
  });

  it('matches the standard check value and the empty input', () => {
    expect(crc32c(Buffer.from('123456789'))).toBe(0xe3069283);
    expect(crc32c(new Uint8Array(0))).toBe(0);
    expect(crc32c(new Uint8Array(0), 0x12345678)).toBe(0x12345678);
  });

  it('returns unsigned 32-bit integers', () => {
    const v = crc32c(new Uint8Array(32)); // 0x8a9136aa, top bit set
    expect(v).toBeGreaterThan(0x7fffffff);
    expect(Number.isInteger(v)).toBe(true);
  });

  it('honours the view of a subarray, not its whole buffer', () => {
    const whole = Uint8Array.from({ length: 64 }, (_, i) => i * 7);
    const view = whole.subarray(5, 50);
    expect(crc32c(view)).toBe(reference(Uint8Array.from(view)));
  });

  it('agrees with the bitwise reference on any input length and alignment', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat(7), (data, skip) => {
        const view = data.subarray(Math.min(skip, data.length));
        expect(crc32c(view)).toBe(reference(view));
      }),
    );
  });

  it('is incremental: continuing from a previous result equals one shot', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 80 }), { maxLength: 6 }), (chunks) => {
        let running = 0;
        for (const c of chunks) running = crc32c(c, running);
        expect(running).toBe(crc32c(Buffer.concat(chunks)));
      }),
    );
  });
});
