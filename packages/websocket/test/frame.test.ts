import { kMaxLength } from 'node:buffer';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  CloseCode,
  MAX_CLOSE_REASON_BYTES,
  encodeClosePayload,
  isEncodableCloseCode,
  isValidSendCloseCode,
  isValidWireCloseCode,
  normalizeCloseCode,
  parseClosePayload,
  truncateCloseReason,
} from '../src/close-codes.js';
import { ProtocolViolation, WebSocketError, WsErrorCode } from '../src/errors.js';
import {
  COALESCE_MAX,
  FrameParser,
  type FrameParserOptions,
  Opcode,
  encodeFrame,
  encodeMessage,
  frameHeader,
  headerLength,
  isControlOpcode,
} from '../src/frame.js';

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

interface Frame {
  fin: boolean;
  rsv1: boolean;
  opcode: number;
  payload: Buffer;
}

type Role = 'server' | 'client';

function collect(role: Role, options: Partial<FrameParserOptions> = {}) {
  const frames: Frame[] = [];
  const errors: ProtocolViolation[] = [];
  const parser = new FrameParser({
    role,
    ...options,
    onFrame: (fin, rsv1, opcode, payload) => {
      frames.push({ fin, rsv1, opcode, payload: Buffer.from(payload) });
    },
    onError: (err) => {
      errors.push(err);
    },
  });
  return { parser, frames, errors };
}

/** Feed `bytes` in pieces cut at `cuts`. The pieces are copies: the parser unmasks in place. */
function feed(parser: FrameParser, bytes: Uint8Array, cuts: readonly number[] = []): void {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  let start = 0;
  for (const p of [...points, bytes.length]) {
    if (p > start || (p === bytes.length && start === 0)) parser.push(Buffer.from(bytes.subarray(start, p)));
    start = p;
  }
}

function feedBytewise(parser: FrameParser, bytes: Uint8Array): void {
  for (let i = 0; i < bytes.length; i++) parser.push(Buffer.from(bytes.subarray(i, i + 1)));
}

/**
 * A frame built by hand, independent of the builder under test: first byte as given, shortest
 * length encoding unless `lengthBytes` forces 2 or 8 extended bytes, optional mask key.
 */
function raw(b0: number, payload: Uint8Array | number[] = [], key?: number[], lengthBytes?: 0 | 2 | 8, announced?: number): Buffer {
  const data = Buffer.from(payload);
  const len = announced ?? data.length;
  const ext = lengthBytes ?? (len < 126 ? 0 : len < 65536 ? 2 : 8);
  const head: number[] = [b0];
  const m = key ? 0x80 : 0;
  if (ext === 0) head.push(m | len);
  else if (ext === 2) head.push(m | 126, len >> 8, len & 0xff);
  else {
    const hi = Math.floor(len / 2 ** 32);
    head.push(m | 127, hi >>> 24, (hi >>> 16) & 0xff, (hi >>> 8) & 0xff, hi & 0xff, len >>> 24, (len >>> 16) & 0xff, (len >>> 8) & 0xff, len & 0xff);
  }
  if (key) {
    head.push(...key);
    for (let i = 0; i < data.length; i++) data[i]! ^= key[i & 3]!;
  }
  return Buffer.concat([Buffer.from(head), data]);
}

const KEY = [0x37, 0xfa, 0x21, 0x3d];
const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

/** Parse `bytes` whole and byte by byte; both must end in exactly one violation with these codes. */
function expectViolation(role: Role, bytes: Buffer, closeCode: number, code: string, options: Partial<FrameParserOptions> = {}): ProtocolViolation {
  let first: ProtocolViolation | undefined;
  for (const bytewise of [false, true]) {
    const { parser, errors } = collect(role, options);
    if (bytewise) feedBytewise(parser, bytes);
    else parser.push(Buffer.from(bytes));
    expect(errors, `${bytewise ? 'byte by byte' : 'whole'}`).toHaveLength(1);
    const err = errors[0]!;
    expect(err).toBeInstanceOf(ProtocolViolation);
    expect(err).toBeInstanceOf(WebSocketError);
    expect(err.closeCode).toBe(closeCode);
    expect(err.code).toBe(code);
    expect(parser.errored).toBe(true);
    first ??= err;
  }
  return first!;
}

// ---------------------------------------------------------------------------------------------
// RFC 6455 §5.7 examples
// ---------------------------------------------------------------------------------------------

describe('RFC 6455 §5.7 examples', () => {
  const HELLO = Buffer.from('Hello');
  const unmaskedHello = hex('81 05 48 65 6c 6c 6f');
  const maskedHello = hex('81 85 37 fa 21 3d 7f 9f 4d 51 58');

  it('parses a single-frame unmasked text message (client side)', () => {
    const { parser, frames, errors } = collect('client');
    parser.push(Buffer.from(unmaskedHello));
    expect(errors).toEqual([]);
    expect(frames).toEqual([{ fin: true, rsv1: false, opcode: Opcode.Text, payload: HELLO }]);
  });

  it('parses a single-frame masked text message (server side)', () => {
    const { parser, frames, errors } = collect('server');
    parser.push(Buffer.from(maskedHello));
    expect(errors).toEqual([]);
    expect(frames).toEqual([{ fin: true, rsv1: false, opcode: Opcode.Text, payload: HELLO }]);
  });

  it('parses a fragmented unmasked text message "Hel" + "lo"', () => {
    const { parser, frames, errors } = collect('client');
    parser.push(hex('01 03 48 65 6c'));
    parser.push(hex('80 02 6c 6f'));
    expect(errors).toEqual([]);
    expect(frames).toEqual([
      { fin: false, rsv1: false, opcode: Opcode.Text, payload: Buffer.from('Hel') },
      { fin: true, rsv1: false, opcode: Opcode.Continuation, payload: Buffer.from('lo') },
    ]);
  });

  it('parses an unmasked ping and a masked pong "Hello"', () => {
    const c = collect('client');
    c.parser.push(hex('89 05 48 65 6c 6c 6f'));
    expect(c.frames).toEqual([{ fin: true, rsv1: false, opcode: Opcode.Ping, payload: HELLO }]);
    const s = collect('server');
    s.parser.push(hex('8a 85 37 fa 21 3d 7f 9f 4d 51 58'));
    expect(s.frames).toEqual([{ fin: true, rsv1: false, opcode: Opcode.Pong, payload: HELLO }]);
  });

  it('parses 256 bytes and 64 KiB binary messages (16-bit and 64-bit lengths)', () => {
    const b256 = Buffer.alloc(256, 0xab);
    const b64k = Buffer.alloc(65536, 0xcd);
    const { parser, frames, errors } = collect('client');
    parser.push(Buffer.concat([hex('82 7e 01 00'), b256]));
    parser.push(Buffer.concat([hex('82 7f 00 00 00 00 00 01 00 00'), b64k]));
    expect(errors).toEqual([]);
    expect(frames.map((f) => [f.opcode, f.fin, f.payload.length])).toEqual([
      [2, true, 256],
      [2, true, 65536],
    ]);
    expect(frames[0]!.payload.equals(b256)).toBe(true);
    expect(frames[1]!.payload.equals(b64k)).toBe(true);
  });

  it('builds the same bytes', () => {
    expect(Buffer.concat(encodeFrame(Opcode.Text, HELLO))).toEqual(unmaskedHello);
    expect(Buffer.concat(encodeFrame(Opcode.Text, Buffer.from('Hel'), { fin: false }))).toEqual(hex('01 03 48 65 6c'));
    expect(Buffer.concat(encodeFrame(Opcode.Continuation, Buffer.from('lo')))).toEqual(hex('80 02 6c 6f'));
    expect(Buffer.concat(encodeFrame(Opcode.Ping, HELLO))).toEqual(hex('89 05 48 65 6c 6c 6f'));
    expect(frameHeader(Opcode.Text, true, false, 5, Buffer.from(KEY))).toEqual(hex('81 85 37 fa 21 3d'));
    expect(frameHeader(Opcode.Pong, true, false, 5, Buffer.from(KEY))).toEqual(hex('8a 85 37 fa 21 3d'));
    expect(frameHeader(Opcode.Binary, true, false, 256)).toEqual(hex('82 7e 01 00'));
    expect(frameHeader(Opcode.Binary, true, false, 65536)).toEqual(hex('82 7f 00 00 00 00 00 01 00 00'));
  });
});

// ---------------------------------------------------------------------------------------------
// Parser rules
// ---------------------------------------------------------------------------------------------

describe('FrameParser: framing rules', () => {
  it('rejects RSV2 and RSV3 always [1002]', () => {
    for (const bits of [0x20, 0x10, 0x30]) {
      expectViolation('client', raw(0x80 | bits | 1, [0x61]), 1002, WsErrorCode.ReservedBits);
      expectViolation('client', raw(0x80 | bits | 1, [0x61]), 1002, WsErrorCode.ReservedBits, { allowRsv1: true });
    }
  });

  it('rejects RSV1 unless an extension allows it, and then only on the first frame of a data message [1002]', () => {
    expectViolation('client', raw(0xc1, [0x61]), 1002, WsErrorCode.ReservedBits);
    expectViolation('client', raw(0xc2, [0x61]), 1002, WsErrorCode.ReservedBits);
    // Allowed on a first data frame.
    const ok = collect('client', { allowRsv1: true });
    ok.parser.push(Buffer.concat([raw(0x41, [1, 2]), raw(0x80, [3])]));
    expect(ok.errors).toEqual([]);
    expect(ok.frames.map((f) => [f.opcode, f.rsv1, f.fin])).toEqual([
      [1, true, false],
      [0, false, true],
    ]);
    // Never on a continuation or a control frame.
    expectViolation('client', Buffer.concat([raw(0x41, [1]), raw(0xc0, [2])]), 1002, WsErrorCode.ReservedBits, { allowRsv1: true });
    for (const op of [8, 9, 10]) expectViolation('client', raw(0xc0 | op), 1002, WsErrorCode.ReservedBits, { allowRsv1: true });
  });

  it('rejects the reserved opcodes 3-7 and 11-15 [1002]', () => {
    for (const op of [3, 4, 5, 6, 7, 11, 12, 13, 14, 15]) {
      const err = expectViolation('client', raw(0x80 | op), 1002, WsErrorCode.UnknownOpcode);
      expect(err.message).toContain(String(op));
    }
  });

  it('rejects fragmented control frames [1002]', () => {
    for (const op of [8, 9, 10]) expectViolation('client', raw(op), 1002, WsErrorCode.BadControlFrame);
  });

  it('rejects control frames over 125 bytes [1002], accepts exactly 125', () => {
    for (const op of [8, 9, 10]) {
      const payload = Buffer.alloc(126, 0x61);
      payload.writeUInt16BE(1000, 0);
      expectViolation('client', raw(0x80 | op, payload), 1002, WsErrorCode.BadControlFrame);
      // Even announced through a 16-bit length.
      expectViolation('client', raw(0x80 | op, Buffer.alloc(100), undefined, 2), 1002, WsErrorCode.BadControlFrame);
    }
    const { parser, frames, errors } = collect('client');
    parser.push(raw(0x89, Buffer.alloc(125, 1)));
    expect(errors).toEqual([]);
    expect(frames[0]!.payload).toHaveLength(125);
  });

  it('rejects a close frame of 1 byte [1002], from the header', () => {
    const { parser, errors } = collect('client');
    parser.push(hex('88 01'));
    expect(errors.map((e) => [e.closeCode, e.code])).toEqual([[1002, WsErrorCode.BadControlFrame]]);
    expectViolation('server', raw(0x88, [3], KEY), 1002, WsErrorCode.BadControlFrame);
  });

  it('requires masked frames on the server and unmasked ones on the client [1002]', () => {
    const err1 = expectViolation('server', raw(0x81, [0x61]), 1002, WsErrorCode.BadMask);
    expect(err1.message).toMatch(/unmasked/i);
    const err2 = expectViolation('client', raw(0x81, [0x61], KEY), 1002, WsErrorCode.BadMask);
    expect(err2.message).toMatch(/masked/i);
    expectViolation('server', raw(0x89), 1002, WsErrorCode.BadMask);
  });

  it('rejects a 64-bit length with the most significant bit set [1002]', () => {
    expectViolation('client', hex('82 7f 80 00 00 00 00 00 00 00'), 1002, WsErrorCode.BadLength);
    expectViolation('client', hex('82 7f ff ff ff ff ff ff ff ff'), 1002, WsErrorCode.BadLength, { maxFrameSize: Infinity });
  });

  it('accepts lengths that do not use the shortest encoding', () => {
    const { parser, frames, errors } = collect('client');
    parser.push(raw(0x82, [1, 2, 3], undefined, 2));
    parser.push(raw(0x82, [4, 5], undefined, 8));
    expect(errors).toEqual([]);
    expect(frames.map((f) => [...f.payload])).toEqual([[1, 2, 3], [4, 5]]);
  });

  it('rejects a continuation without a message to continue [1002]', () => {
    expectViolation('client', raw(0x80, [0x61]), 1002, WsErrorCode.BadFragmentation);
    expectViolation('client', raw(0x00, [0x61]), 1002, WsErrorCode.BadFragmentation);
    // After a complete message, too.
    expectViolation('client', Buffer.concat([raw(0x81, [0x61]), raw(0x80, [0x62])]), 1002, WsErrorCode.BadFragmentation);
  });

  it('rejects a new Text/Binary frame inside a fragmented message [1002]', () => {
    expectViolation('client', Buffer.concat([raw(0x01, [0x61]), raw(0x81, [0x62])]), 1002, WsErrorCode.BadFragmentation);
    expectViolation('client', Buffer.concat([raw(0x02, [1]), raw(0x02, [2])]), 1002, WsErrorCode.BadFragmentation);
    expectViolation('client', Buffer.concat([raw(0x01, [0x61]), raw(0x00), raw(0x82, [2])]), 1002, WsErrorCode.BadFragmentation);
  });

  it('lets control frames interleave with a fragmented message', () => {
    const { parser, frames, errors } = collect('server');
    feedBytewise(
      parser,
      Buffer.concat([raw(0x01, [0x48], KEY), raw(0x89, [1, 2], KEY), raw(0x00, [0x65], KEY), raw(0x8a, [], KEY), raw(0x80, [0x79], KEY)]),
    );
    expect(errors).toEqual([]);
    expect(frames.map((f) => [f.opcode, f.fin, f.payload.toString('latin1')])).toEqual([
      [1, false, 'H'],
      [9, true, '\x01\x02'],
      [0, false, 'e'],
      [10, true, ''],
      [0, true, 'y'],
    ]);
    expect(parser.inMessage).toBe(false);
  });

  it('delivers empty frames, including empty fragments', () => {
    const { parser, frames, errors } = collect('client');
    parser.push(Buffer.concat([raw(0x01), raw(0x00), raw(0x80), raw(0x82), raw(0x88), raw(0x89)]));
    expect(errors).toEqual([]);
    expect(frames.map((f) => [f.opcode, f.fin, f.payload.length])).toEqual([
      [1, false, 0],
      [0, false, 0],
      [0, true, 0],
      [2, true, 0],
      [8, true, 0],
      [9, true, 0],
    ]);
  });

  it('reports one error, then ignores all input', () => {
    const { parser, frames, errors } = collect('client');
    parser.push(Buffer.concat([raw(0x81, [0x61]), raw(0x83), raw(0x81, [0x62])]));
    parser.push(raw(0x81, [0x63]));
    parser.push(hex('ff ff ff'));
    expect(frames).toHaveLength(1);
    expect(errors).toHaveLength(1);
  });

  it('names what is wrong in the message', () => {
    expect(expectViolation('client', raw(0xa1), 1002, WsErrorCode.ReservedBits).message).toMatch(/RSV2/);
    expect(expectViolation('client', raw(0x09), 1002, WsErrorCode.BadControlFrame).message).toMatch(/Fragmented control frame/);
    expect(expectViolation('client', raw(0x80), 1002, WsErrorCode.BadFragmentation).message).toMatch(/Continuation/);
  });
});

describe('FrameParser: size limits', () => {
  it('fails a frame announcing 2^40 bytes with 1009 from its header alone', () => {
    for (const role of ['client', 'server'] as const) {
      const { parser, errors, frames } = collect(role);
      const header = role === 'client' ? hex('82 7f 00 00 01 00 00 00 00 00') : hex('82 ff 00 00 01 00 00 00 00 00 01 02 03 04');
      parser.push(header);
      expect(errors.map((e) => [e.closeCode, e.code])).toEqual([[1009, WsErrorCode.FrameTooBig]]);
      expect(errors[0]!.message).toContain('1099511627776');
      expect(frames).toEqual([]);
    }
    // Byte by byte: the error comes with the last header byte.
    const { parser, errors } = collect('client');
    const header = hex('82 7f 00 00 01 00 00 00 00 00');
    for (let i = 0; i < header.length; i++) {
      expect(errors).toHaveLength(0);
      parser.push(header.subarray(i, i + 1));
    }
    expect(errors).toHaveLength(1);
  });

  it('enforces maxFrameSize exactly (16 MiB by default)', () => {
    const ok = collect('client', { maxFrameSize: 100 });
    ok.parser.push(raw(0x82, Buffer.alloc(100)));
    expect(ok.errors).toEqual([]);
    expect(ok.frames).toHaveLength(1);
    expectViolation('client', raw(0x82, [], undefined, 2, 101), 1009, WsErrorCode.FrameTooBig, { maxFrameSize: 100 });
    expectViolation('client', raw(0x82, [], undefined, 8, 16 * 1024 * 1024 + 1), 1009, WsErrorCode.FrameTooBig);
    const { parser, errors } = collect('client');
    parser.push(raw(0x82, [], undefined, 8, 16 * 1024 * 1024));
    expect(errors).toEqual([]);
  });

  it('enforces maxMessageSize over the frames of an uncompressed message', () => {
    const opts = { maxMessageSize: 10, allowRsv1: true };
    const ok = collect('client', opts);
    ok.parser.push(Buffer.concat([raw(0x02, Buffer.alloc(4)), raw(0x80, Buffer.alloc(6)), raw(0x82, Buffer.alloc(10))]));
    expect(ok.errors).toEqual([]);
    expectViolation('client', Buffer.concat([raw(0x02, Buffer.alloc(4)), raw(0x80, Buffer.alloc(7))]), 1009, WsErrorCode.MessageTooBig, opts);
    // Control frames do not count; compressed messages are left to the session.
    const mixed = collect('client', opts);
    mixed.parser.push(Buffer.concat([raw(0x02, Buffer.alloc(8)), raw(0x89, Buffer.alloc(100)), raw(0x80, Buffer.alloc(2))]));
    mixed.parser.push(Buffer.concat([raw(0x42, Buffer.alloc(8)), raw(0x80, Buffer.alloc(8))]));
    expect(mixed.errors).toEqual([]);
  });
});

describe('FrameParser: UTF-8', () => {
  const invalid = hex('ce ba e1 bd b9 cf 83 ce bc ce b5 f4 90 80 80 65 64 69 74 65 64');

  it('fails invalid text with 1007', () => {
    expectViolation('client', raw(0x81, invalid), 1007, WsErrorCode.InvalidUtf8);
    expectViolation('server', raw(0x81, invalid, KEY), 1007, WsErrorCode.InvalidUtf8);
  });

  it('fails within a frame, in the chunk that makes the text invalid (Autobahn 6.4.3/6.4.4)', () => {
    for (const role of ['client', 'server'] as const) {
      const frame = raw(0x81, invalid, role === 'server' ? KEY : undefined);
      const headerLen = role === 'server' ? 6 : 2;
      const { parser, errors } = collect(role);
      parser.push(frame.subarray(0, headerLen + 11)); // "κόσμε"
      expect(errors).toHaveLength(0);
      parser.push(frame.subarray(headerLen + 11, headerLen + 12)); // F4: still a valid prefix
      expect(errors).toHaveLength(0);
      parser.push(frame.subarray(headerLen + 12, headerLen + 13)); // 90: above U+10FFFF
      expect(errors.map((e) => e.closeCode)).toEqual([1007]);
    }
  });

  it('fails across fragments, in the fragment that makes the text invalid (Autobahn 6.4.1/6.4.2)', () => {
    const { parser, errors, frames } = collect('client');
    parser.push(raw(0x01, invalid.subarray(0, 12)));
    expect(errors).toHaveLength(0);
    parser.push(raw(0x00, invalid.subarray(12, 13)));
    expect(errors.map((e) => e.closeCode)).toEqual([1007]);
    expect(frames).toHaveLength(1);
  });

  it('fails a text message that ends inside a sequence', () => {
    expectViolation('client', Buffer.concat([raw(0x01, [0xe2, 0x82]), raw(0x80)]), 1007, WsErrorCode.InvalidUtf8);
    expectViolation('client', raw(0x81, [0x61, 0xc3]), 1007, WsErrorCode.InvalidUtf8);
  });

  it('accepts code points split across fragments and chunks, with control frames between', () => {
    const text = Buffer.from('€😀ü', 'utf8');
    const stream = Buffer.concat([raw(0x01, text.subarray(0, 2), KEY), raw(0x89, [0xff], KEY), raw(0x00, text.subarray(2, 5), KEY), raw(0x80, text.subarray(5), KEY)]);
    for (let cut = 0; cut < stream.length; cut++) {
      const { parser, frames, errors } = collect('server');
      feed(parser, stream, [cut, cut + 3]);
      expect(errors).toEqual([]);
      expect(Buffer.concat(frames.filter((f) => f.opcode !== 9).map((f) => f.payload)).toString()).toBe('€😀ü');
    }
  });

  it('does not validate binary, control or compressed messages, nor anything with validateUtf8: false', () => {
    const bad = [0xff, 0xfe];
    const { parser, errors, frames } = collect('client', { allowRsv1: true });
    parser.push(Buffer.concat([raw(0x82, bad), raw(0x89, bad), raw(0xc1, bad), raw(0x01, bad), raw(0x89, bad)]));
    expect(errors.map((e) => e.closeCode)).toEqual([1007]);
    expect(frames).toHaveLength(3);
    const off = collect('client', { validateUtf8: false });
    off.parser.push(raw(0x81, bad));
    expect(off.errors).toEqual([]);
  });
});

describe('FrameParser: buffers', () => {
  it('hands out a view of the chunk when a frame is wholly inside it', () => {
    const chunk = Buffer.concat([raw(0x82, [1, 2, 3], KEY), raw(0x82, [4, 5], KEY)]);
    const seen: Buffer[] = [];
    const parser = new FrameParser({ role: 'server', onFrame: (_f, _r, _o, p) => seen.push(p), onError: () => {} });
    parser.push(chunk);
    expect(seen.map((p) => [...p])).toEqual([[1, 2, 3], [4, 5]]);
    for (const p of seen) expect(p.buffer).toBe(chunk.buffer);
    expect(seen[0]!.byteOffset).toBe(chunk.byteOffset + 6);
  });

  it('assembles a split payload once, into a buffer of exactly its size', () => {
    const payload = Buffer.alloc(70000, 0x5a);
    const frame = raw(0x82, payload, KEY);
    const chunks = [frame.subarray(0, 1000), frame.subarray(1000, 30000), frame.subarray(30000)];
    const seen: Buffer[] = [];
    const parser = new FrameParser({ role: 'server', onFrame: (_f, _r, _o, p) => seen.push(p), onError: () => {} });
    for (const c of chunks) parser.push(c);
    expect(seen).toHaveLength(1);
    expect(seen[0]!.equals(payload)).toBe(true);
    expect(seen[0]!.length).toBe(70000);
    for (const c of chunks) expect(seen[0]!.buffer).not.toBe(c.buffer);
  });

  it('treats an all-zero mask key as no mask', () => {
    const { parser, frames } = collect('server');
    parser.push(raw(0x82, [9, 8, 7, 6, 5], [0, 0, 0, 0]));
    expect([...frames[0]!.payload]).toEqual([9, 8, 7, 6, 5]);
  });
});

describe('FrameParser: pause, resume, stop', () => {
  const stream = Buffer.concat([raw(0x81, [0x61]), raw(0x81, [0x62]), raw(0x81, [0x63]), raw(0x81, [0x64])]);

  it('stops after the frame whose handler paused it and resumes where it left off', () => {
    const seen: string[] = [];
    const parser: FrameParser = new FrameParser({
      role: 'client',
      onFrame: (_f, _r, _o, p) => {
        seen.push(p.toString());
        parser.pause();
      },
      onError: () => {},
    });
    parser.push(stream.subarray(0, 7));
    expect(seen).toEqual(['a']);
    expect(parser.isPaused).toBe(true);
    parser.push(stream.subarray(7)); // queued, not parsed
    expect(seen).toEqual(['a']);
    parser.resume();
    expect(seen).toEqual(['a', 'b']);
    parser.resume();
    parser.resume();
    expect(seen).toEqual(['a', 'b', 'c', 'd']);
    parser.resume(); // nothing left: stays running
    expect(parser.isPaused).toBe(false);
    parser.push(raw(0x81, [0x65]));
    expect(seen).toEqual(['a', 'b', 'c', 'd', 'e']);
  });

  it('does not copy the held-back bytes', () => {
    const seen: Buffer[] = [];
    const parser: FrameParser = new FrameParser({
      role: 'client',
      onFrame: (_f, _r, _o, p) => {
        seen.push(p);
        parser.pause();
      },
      onError: () => {},
    });
    const chunk = Buffer.from(stream);
    parser.push(chunk);
    parser.resume();
    parser.resume();
    parser.resume();
    expect(seen.map((p) => p.buffer === chunk.buffer)).toEqual([true, true, true, true]);
  });

  it('handles pause then resume inside the same handler, and pushes made from a handler', () => {
    const seen: string[] = [];
    let pushed = false;
    const parser: FrameParser = new FrameParser({
      role: 'client',
      onFrame: (_f, _r, _o, p) => {
        seen.push(p.toString());
        parser.pause();
        parser.resume();
        if (!pushed) {
          pushed = true;
          parser.push(raw(0x81, [0x7a]));
        }
      },
      onError: () => {},
    });
    parser.push(stream);
    expect(seen).toEqual(['a', 'b', 'c', 'd', 'z']);
  });

  it('keeps its place when a handler throws', () => {
    const seen: string[] = [];
    const parser = new FrameParser({
      role: 'client',
      onFrame: (_f, _r, _o, p) => {
        seen.push(p.toString());
        if (seen.length === 2) throw new Error('handler failed');
      },
      onError: () => {},
    });
    expect(() => parser.push(Buffer.from(stream))).toThrow('handler failed');
    parser.push(raw(0x81, [0x65]));
    expect(seen).toEqual(['a', 'b', 'c', 'd', 'e']);
  });

  it('stop() drops everything without reporting an error', () => {
    const errors: unknown[] = [];
    const seen: string[] = [];
    const parser: FrameParser = new FrameParser({
      role: 'client',
      onFrame: (_f, _r, _o, p) => {
        seen.push(p.toString());
        if (seen.length === 2) parser.stop();
      },
      onError: (e) => errors.push(e),
    });
    parser.push(Buffer.from(stream));
    parser.push(hex('ff ff'));
    expect(seen).toEqual(['a', 'b']);
    expect(errors).toEqual([]);
    expect(parser.errored).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------
// Builder
// ---------------------------------------------------------------------------------------------

describe('frame builder', () => {
  it('uses 7-, 16- and 64-bit lengths at the boundaries', () => {
    for (const [n, size] of [
      [0, 2],
      [125, 2],
      [126, 4],
      [65535, 4],
      [65536, 10],
      [2 ** 32 + 5, 10],
    ] as const) {
      expect(headerLength(n, false)).toBe(size);
      expect(headerLength(n, true)).toBe(size + 4);
      const h = frameHeader(Opcode.Binary, true, false, n);
      expect(h).toHaveLength(size);
      const { parser, errors } = collect('client', { maxFrameSize: Infinity });
      parser.push(h);
      // Past what a Buffer can hold (4 GiB on Node 20) a frame is too big whatever maxFrameSize says.
      expect(errors.map((e) => e.closeCode)).toEqual(n > kMaxLength ? [1009] : []);
    }
    expect(frameHeader(Opcode.Binary, false, true, 2 ** 32 + 5)).toEqual(hex('42 7f 00 00 00 01 00 00 00 05'));
    expect(frameHeader(Opcode.Text, true, false, Number.MAX_SAFE_INTEGER)).toEqual(hex('81 7f 00 1f ff ff ff ff ff ff'));
  });

  it('keeps a large unmasked payload out of the header buffer (no copy)', () => {
    const big = Buffer.alloc(COALESCE_MAX + 1, 1);
    const parts = encodeFrame(Opcode.Binary, big);
    expect(parts).toHaveLength(2);
    expect(parts[1]).toBe(big);
    const small = Buffer.alloc(COALESCE_MAX, 1);
    const one = encodeFrame(Opcode.Binary, small);
    expect(one).toHaveLength(1);
    expect(one[0]).toHaveLength(COALESCE_MAX + 4);
  });

  it('masks with a fresh key per frame, into one buffer, leaving the source intact', () => {
    const payload = Buffer.from('Hello, masked world');
    const a = encodeFrame(Opcode.Text, payload, { mask: true });
    const b = encodeFrame(Opcode.Text, payload, { mask: true });
    expect(a).toHaveLength(1);
    expect(payload.toString()).toBe('Hello, masked world');
    expect(a[0]![1]! & 0x80).toBe(0x80);
    expect(a[0]!.subarray(2, 6).equals(b[0]!.subarray(2, 6))).toBe(false);
    const { parser, frames } = collect('server');
    parser.push(Buffer.concat([...a, ...b]));
    expect(frames.map((f) => f.payload.toString())).toEqual(['Hello, masked world', 'Hello, masked world']);
  });

  it('refuses frames it must not build', () => {
    const bad = (fn: () => unknown) => expect(fn).toThrow(expect.objectContaining({ code: WsErrorCode.BadFrame }));
    bad(() => encodeFrame(Opcode.Ping, Buffer.alloc(126)));
    bad(() => encodeFrame(Opcode.Close, Buffer.alloc(2), { fin: false }));
    bad(() => encodeFrame(Opcode.Pong, Buffer.alloc(0), { rsv1: true }));
    bad(() => encodeFrame(Opcode.Continuation, Buffer.alloc(1), { rsv1: true }));
    bad(() => encodeFrame(3, Buffer.alloc(0)));
    bad(() => encodeFrame(11, Buffer.alloc(0)));
    bad(() => frameHeader(Opcode.Binary, true, false, -1));
    bad(() => frameHeader(Opcode.Binary, true, false, 1.5));
    bad(() => frameHeader(Opcode.Binary, true, false, 2 ** 53));
    bad(() => frameHeader(Opcode.Binary, true, false, 4, Buffer.alloc(3)));
    bad(() => encodeMessage(Opcode.Continuation, Buffer.alloc(3)));
    bad(() => encodeMessage(Opcode.Ping, Buffer.alloc(200), { maxFrameSize: 100 }));
  });

  it('splits a message into frames of at most maxFrameSize, RSV1 on the first only', () => {
    const payload = Buffer.from(Array.from({ length: 1000 }, (_, i) => i & 0xff));
    for (const mask of [false, true]) {
      const parts = encodeMessage(Opcode.Binary, payload, { maxFrameSize: 300, mask, rsv1: true });
      const { parser, frames, errors } = collect(mask ? 'server' : 'client', { allowRsv1: true });
      parser.push(Buffer.concat(parts));
      expect(errors).toEqual([]);
      expect(frames.map((f) => [f.opcode, f.fin, f.rsv1, f.payload.length])).toEqual([
        [2, false, true, 300],
        [0, false, false, 300],
        [0, false, false, 300],
        [0, true, false, 100],
      ]);
      expect(Buffer.concat(frames.map((f) => f.payload)).equals(payload)).toBe(true);
    }
    const whole = encodeMessage(Opcode.Text, Buffer.from('hi'));
    expect(Buffer.concat(whole)).toEqual(hex('81 02 68 69'));
    expect(Buffer.concat(encodeMessage(Opcode.Text, Buffer.alloc(0), { maxFrameSize: 1 }))).toEqual(hex('81 00'));
  });

  it('rejects bad options', () => {
    const handlers = { onFrame: () => {}, onError: () => {} };
    expect(() => new FrameParser({ role: 'peer' as 'server', ...handlers })).toThrow(/role/);
    expect(() => new FrameParser({ role: 'server', maxFrameSize: -1, ...handlers })).toThrow(/maxFrameSize/);
    expect(() => new FrameParser({ role: 'server', maxMessageSize: NaN, ...handlers })).toThrow(/maxMessageSize/);
    expect(() => encodeMessage(Opcode.Binary, Buffer.alloc(3), { maxFrameSize: 0 })).toThrow(/maxFrameSize/);
  });

  it('classifies control opcodes', () => {
    expect([0, 1, 2, 8, 9, 10].map(isControlOpcode)).toEqual([false, false, false, true, true, true]);
  });
});

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

/** Deterministic filler so large payloads cost nothing to generate. */
function filler(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  let x = seed | 1;
  for (let i = 0; i < n; i++) {
    x = (x * 1664525 + 1013904223) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

const sizeArb = fc.oneof(
  { weight: 8, arbitrary: fc.integer({ min: 0, max: 300 }) },
  { weight: 3, arbitrary: fc.constantFrom(0, 1, 125, 126, 127) },
  { weight: 1, arbitrary: fc.constantFrom(65535, 65536) },
);

const controlArb = fc
  .tuple(fc.constantFrom(Opcode.Ping, Opcode.Pong, Opcode.Close), fc.integer({ min: 0, max: 125 }), fc.nat())
  .map(([opcode, size, seed]): Frame => {
    const n = opcode === Opcode.Close && size === 1 ? 2 : size;
    return { fin: true, rsv1: false, opcode, payload: filler(n, seed) };
  });

/** A data message as frames: binary of random sizes, or valid UTF-8 text cut anywhere, with controls between. */
const messageArb = fc
  .tuple(
    fc.boolean(),
    fc.array(sizeArb, { minLength: 1, maxLength: 4 }),
    fc.string({ unit: 'binary', maxLength: 60 }),
    fc.array(fc.nat(), { maxLength: 3 }),
    fc.boolean(),
    fc.array(fc.option(controlArb, { freq: 3 }), { maxLength: 4 }),
    fc.nat(),
  )
  .map(([text, sizes, str, cuts, rsv1, controls, seed]): Frame[] => {
    let parts: Buffer[];
    if (text) {
      const bytes = Buffer.from(str.repeat(1 + (seed % 3) * 40), 'utf8');
      const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
      parts = [];
      let start = 0;
      for (const p of points) {
        parts.push(bytes.subarray(start, p));
        start = p;
      }
      parts.push(bytes.subarray(start));
    } else {
      parts = sizes.map((n, i) => filler(n, seed + i));
    }
    const frames: Frame[] = [];
    parts.forEach((payload, i) => {
      frames.push({ fin: i === parts.length - 1, rsv1: rsv1 && i === 0, opcode: i === 0 ? (text ? 1 : 2) : 0, payload });
      const control = controls[i];
      if (control && i < parts.length - 1) frames.push(control);
    });
    return frames;
  });

const streamArb = fc.array(fc.oneof({ weight: 3, arbitrary: messageArb }, { weight: 1, arbitrary: controlArb.map((f) => [f]) }), { maxLength: 5 }).map((ms) => ms.flat());

/** Frame lists are equal; payloads compared with Buffer.equals (deep equality is slow on 64 KiB). */
function expectSameFrames(got: readonly Frame[], want: readonly Frame[]): void {
  const meta = (fs: readonly Frame[]) => fs.map((f) => [f.fin, f.rsv1, f.opcode, f.payload.length]);
  expect(meta(got)).toEqual(meta(want));
  for (let i = 0; i < want.length; i++) expect(got[i]!.payload.equals(want[i]!.payload), `payload of frame ${i}`).toBe(true);
}

function encodeAll(frames: readonly Frame[], masked: boolean): Buffer {
  return Buffer.concat(frames.flatMap((f) => encodeFrame(f.opcode, f.payload, { fin: f.fin, rsv1: f.rsv1, mask: masked })));
}

const chunkingArb = fc.oneof(fc.constant('bytewise' as const), fc.array(fc.nat(), { maxLength: 12 }));

describe('FrameParser: properties', () => {
  it('parses back any encoded frame sequence, for any chunking (1-byte chunks included)', () => {
    fc.assert(
      fc.property(streamArb, fc.constantFrom<Role>('server', 'client'), chunkingArb, (frames, role, chunking) => {
        const wire = encodeAll(frames, role === 'server');
        const { parser, frames: got, errors } = collect(role, { allowRsv1: true });
        if (chunking === 'bytewise' && wire.length <= 20_000) feedBytewise(parser, wire);
        else feed(parser, wire, chunking === 'bytewise' ? [] : chunking);
        expect(errors).toEqual([]);
        expectSameFrames(got, frames);
        expect(parser.inMessage).toBe(false);
      }),
      { numRuns: 300 },
    );
  });

  it('delivers the same frames when paused after every frame and resumed later', () => {
    fc.assert(
      fc.property(streamArb, fc.constantFrom<Role>('server', 'client'), fc.array(fc.nat(), { maxLength: 8 }), (frames, role, cuts) => {
        const wire = encodeAll(frames, role === 'server');
        const got: Frame[] = [];
        const parser: FrameParser = new FrameParser({
          role,
          allowRsv1: true,
          onFrame: (fin, rsv1, opcode, payload) => {
            got.push({ fin, rsv1, opcode, payload: Buffer.from(payload) });
            parser.pause();
          },
          onError: (e) => {
            throw e;
          },
        });
        feed(parser, wire, cuts);
        let guard = 0;
        while (parser.isPaused && guard++ < 10_000) parser.resume();
        expectSameFrames(got, frames);
      }),
      { numRuns: 200 },
    );
  });

  /** Invariants for any input: no throw, at most one ProtocolViolation, nothing delivered after it. */
  function checkNoThrow(role: Role, bytes: Uint8Array, cuts: readonly number[], options: Partial<FrameParserOptions>): void {
    let framesAtError = -1;
    let frames = 0;
    const errors: unknown[] = [];
    const parser = new FrameParser({
      role,
      ...options,
      onFrame: () => {
        frames++;
      },
      onError: (e) => {
        errors.push(e);
        framesAtError = frames;
      },
    });
    expect(() => feed(parser, bytes, cuts)).not.toThrow();
    expect(errors.length).toBeLessThanOrEqual(1);
    if (errors.length === 1) {
      const e = errors[0] as ProtocolViolation;
      expect(e).toBeInstanceOf(ProtocolViolation);
      expect([1002, 1007, 1009]).toContain(e.closeCode);
      expect(e.message.length).toBeGreaterThan(0);
      expect(frames).toBe(framesAtError);
    }
  }

  const optionsArb = fc.record({
    allowRsv1: fc.boolean(),
    validateUtf8: fc.boolean(),
    maxFrameSize: fc.constantFrom(16 * 1024 * 1024, 100, 0),
  });

  it('never throws on random bytes: at most one ProtocolViolation', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), fc.constantFrom<Role>('server', 'client'), fc.array(fc.nat(), { maxLength: 10 }), optionsArb, (bytes, role, cuts, options) => {
        checkNoThrow(role, bytes, cuts, options);
      }),
      { numRuns: 2000 },
    );
  });

  it('never throws on mutated valid streams: at most one ProtocolViolation', () => {
    fc.assert(
      fc.property(
        streamArb,
        fc.constantFrom<Role>('server', 'client'),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }),
        fc.array(fc.nat(), { maxLength: 10 }),
        optionsArb,
        (frames, role, edits, cuts, options) => {
          const wire = encodeAll(frames, role === 'server');
          if (wire.length === 0) return;
          for (const [at, value] of edits) wire[at % Math.min(wire.length, 64)] = value;
          checkNoThrow(role, wire, cuts, options);
        },
      ),
      { numRuns: 500 },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Close codes and close payloads
// ---------------------------------------------------------------------------------------------

describe('close codes', () => {
  it('accepts 1000-1003, 1007-1011 and 3000-4999 on the wire, nothing else', () => {
    const valid = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999];
    const invalid = [0, 999, 1004, 1005, 1006, 1012, 1013, 1014, 1015, 1016, 2000, 2999, 5000, 65535, 1000.5, NaN];
    for (const c of valid) expect(isValidWireCloseCode(c), String(c)).toBe(true);
    for (const c of invalid) expect(isValidWireCloseCode(c), String(c)).toBe(false);
    for (const c of [...valid, ...invalid]) expect(isValidSendCloseCode(c)).toBe(isValidWireCloseCode(c));
  });

  it('normalizes codes that may not be sent to 1002', () => {
    expect(normalizeCloseCode(1000)).toBe(1000);
    expect(normalizeCloseCode(4321)).toBe(4321);
    expect(normalizeCloseCode(1005)).toBe(1002);
    expect(normalizeCloseCode(1006)).toBe(1002);
    expect(normalizeCloseCode(1013)).toBe(1002);
    expect(normalizeCloseCode(42)).toBe(1002);
  });

  it('names the codes', () => {
    expect(CloseCode).toMatchObject({
      Normal: 1000, GoingAway: 1001, ProtocolError: 1002, Unsupported: 1003, NoStatus: 1005, Abnormal: 1006,
      InvalidPayload: 1007, PolicyViolation: 1008, MessageTooBig: 1009, MandatoryExtension: 1010, InternalError: 1011,
      TryAgainLater: 1013,
    });
  });

  it('can encode the registered 1012-1014 but not reserved or unassigned codes', () => {
    for (const c of [1012, 1013, 1014]) expect(isEncodableCloseCode(c)).toBe(true);
    for (const c of [1004, 1005, 1006, 1015, 2500, 5000]) expect(isEncodableCloseCode(c)).toBe(false);
    expect(encodeClosePayload(1013)).toEqual(hex('03 f5'));
  });
});

describe('close payloads', () => {
  it('parses an empty payload as no code (1005 semantics)', () => {
    expect(parseClosePayload(Buffer.alloc(0))).toEqual({ code: undefined, reason: '' });
  });

  it('parses a code and a UTF-8 reason', () => {
    expect(parseClosePayload(hex('03 e8'))).toEqual({ code: 1000, reason: '' });
    expect(parseClosePayload(Buffer.concat([hex('0f a0'), Buffer.from('bye 👋')]))).toEqual({ code: 4000, reason: 'bye 👋' });
  });

  it('rejects a 1-byte payload and invalid codes with 1002, invalid reasons with 1007', () => {
    const violation = (payload: Buffer) => {
      try {
        parseClosePayload(payload);
      } catch (e) {
        expect(e).toBeInstanceOf(ProtocolViolation);
        return [(e as ProtocolViolation).closeCode, (e as ProtocolViolation).code];
      }
      return undefined;
    };
    expect(violation(hex('03'))).toEqual([1002, WsErrorCode.BadClosePayload]);
    for (const code of [0, 999, 1004, 1005, 1006, 1012, 1013, 1014, 1016, 2999, 5000, 65535]) {
      const p = Buffer.alloc(2);
      p.writeUInt16BE(code);
      expect(violation(p), String(code)).toEqual([1002, WsErrorCode.BadClosePayload]);
    }
    expect(violation(hex('03 e8 ce ba e1 bd b9 cf 83 ce bc ce b5 ed a0 80 65 64 69 74 65 64'))).toEqual([1007, WsErrorCode.InvalidUtf8]);
    expect(violation(hex('03 e8 c3'))).toEqual([1007, WsErrorCode.InvalidUtf8]);
    expect(violation(Buffer.concat([hex('03 e8'), Buffer.alloc(124, 0x61)]))).toEqual([1002, WsErrorCode.BadControlFrame]);
  });

  it('encodes a code and reason, and round-trips through parseClosePayload', () => {
    expect(encodeClosePayload()).toEqual(Buffer.alloc(0));
    expect(encodeClosePayload(1000)).toEqual(hex('03 e8'));
    expect(encodeClosePayload(1001, 'bye')).toEqual(hex('03 e9 62 79 65'));
    fc.assert(
      fc.property(fc.constantFrom(1000, 1003, 1011, 3000, 4999), fc.string({ unit: 'binary', maxLength: 30 }), (code, reason) => {
        const r = truncateCloseReason(reason);
        expect(parseClosePayload(encodeClosePayload(code, r))).toEqual({ code, reason: r });
      }),
    );
  });

  it('throws for a reason over 123 bytes, a reason without a code, and unsendable codes', () => {
    expect(encodeClosePayload(1000, 'a'.repeat(MAX_CLOSE_REASON_BYTES))).toHaveLength(125);
    expect(() => encodeClosePayload(1000, 'a'.repeat(124))).toThrow(expect.objectContaining({ code: WsErrorCode.CloseReasonTooLong }));
    expect(() => encodeClosePayload(1000, 'é'.repeat(62))).toThrow(WebSocketError);
    expect(() => encodeClosePayload(undefined, 'x')).toThrow(expect.objectContaining({ code: WsErrorCode.BadCloseCode }));
    for (const c of [1005, 1006, 999, 5000]) expect(() => encodeClosePayload(c)).toThrow(expect.objectContaining({ code: WsErrorCode.BadCloseCode }));
  });

  it('truncates reasons on a code point boundary', () => {
    expect(truncateCloseReason('short')).toBe('short');
    expect(truncateCloseReason('a'.repeat(200))).toBe('a'.repeat(123));
    const cut = truncateCloseReason('é'.repeat(100)); // 2 bytes each
    expect(cut).toBe('é'.repeat(61));
    const emoji = truncateCloseReason('😀'.repeat(40)); // 4 bytes each: 30 fit
    expect(emoji).toBe('😀'.repeat(30));
    expect(truncateCloseReason('ab€€', 4)).toBe('ab');
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 80 }), fc.integer({ min: 0, max: 130 }), (s, max) => {
        const t = truncateCloseReason(s, max);
        expect(Buffer.byteLength(t)).toBeLessThanOrEqual(Math.max(max, 0));
        expect(s.startsWith(t)).toBe(true);
        expect(Buffer.byteLength(s) <= max ? t === s : Buffer.byteLength(t) > max - 4).toBe(true);
      }),
    );
  });
});
