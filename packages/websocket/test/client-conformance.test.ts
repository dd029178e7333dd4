/**
 * RFC 6455 conformance of the client: a raw-socket server (raw-server.ts) accepts the upgrade by
 * hand and then sends the client frames a server must not send. For each, the client must fail
 * the connection with the right close code (a masked close frame), give its handler's
 * `terminate` and `closed` the matching reason, and close its side of the TCP connection.
 * Then the good behaviour: pings answered with the same payload, the server's close echoed.
 */

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type ClientOptions, type InFrame, type TerminateReason, type WebSocketClient } from '../src/index.js';
import { OP, RSV1, RSV2, RSV3, binary, close, cont, frame, ping, pong, text } from './raw-client.js';
import { RawServer, type ClientFrame, type RawPeer } from './raw-server.js';

let server: RawServer;

beforeAll(async () => {
  server = await RawServer.start();
});

afterAll(async () => {
  await server.close();
});

interface Opened {
  client: WebSocketClient<undefined>;
  peer: RawPeer;
  /** Frames the handler received, in order. */
  frames: InFrame[];
  /** What the handler's `terminate` was told. */
  terminated: Promise<TerminateReason>;
}

/** Connect a client (active, recording) to the raw server and complete the upgrade by hand. */
async function open(opts: Omit<ClientOptions<undefined, undefined>, 'handler'> = {}): Promise<Opened> {
  const frames: InFrame[] = [];
  let told!: (r: TerminateReason) => void;
  const terminated = new Promise<TerminateReason>((resolve) => {
    told = resolve;
  });
  const peerP = server.next();
  const clientP = connect<undefined, undefined>(server.url('/conformance'), {
    timeout: 10_000,
    ...opts,
    handler: {
      websocketHandle(f) {
        frames.push(f);
      },
      terminate(reason) {
        told(reason);
      },
    },
  });
  const peer = await peerP;
  await peer.accept();
  const client = await clientP;
  return { client, peer, frames, terminated };
}

/** Close from the client and complete the handshake from the raw server. */
async function finish(client: WebSocketClient<undefined>, peer: RawPeer): Promise<TerminateReason> {
  const closed = client.close();
  let f: ClientFrame;
  do f = await peer.next(); while (f.opcode !== OP.CLOSE);
  await peer.write(close(f.code, '', { mask: false }));
  peer.end();
  return closed;
}

/** Unmasked, as a server sends. */
const U = { mask: false } as const;

interface BadCase {
  name: string;
  bytes: Buffer | Buffer[];
  code: number;
  error: 'badframe' | 'badencoding' | 'toobig';
  opts?: Omit<ClientOptions<undefined, undefined>, 'handler'>;
}

const INVALID_UTF8 = Buffer.from([0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5, 0xed, 0xa0, 0x80, 0x65, 0x64]);

const BAD: BadCase[] = [
  { name: 'a masked server frame', bytes: text('masked', { mask: true }), code: 1002, error: 'badframe' },
  { name: 'a masked server ping', bytes: ping('masked', { mask: true }), code: 1002, error: 'badframe' },
  { name: 'RSV1 without a negotiated extension', bytes: text('rsv1', { ...U, rsv: RSV1 }), code: 1002, error: 'badframe' },
  { name: 'RSV2 set', bytes: text('rsv2', { ...U, rsv: RSV2 }), code: 1002, error: 'badframe' },
  { name: 'RSV3 set', bytes: binary('rsv3', { ...U, rsv: RSV3 }), code: 1002, error: 'badframe' },
  { name: 'RSV bits on a ping', bytes: ping('x', { ...U, rsv: RSV1 | RSV2 | RSV3 }), code: 1002, error: 'badframe' },
  ...[3, 4, 5, 6, 7, 11, 12, 13, 14, 15].map((opcode): BadCase => ({
    name: `reserved opcode ${opcode}`, bytes: frame({ opcode, payload: 'reserved', mask: false }), code: 1002, error: 'badframe',
  })),
  { name: 'invalid UTF-8 in a text message', bytes: text(INVALID_UTF8, U), code: 1007, error: 'badencoding' },
  { name: 'a lone continuation byte in text', bytes: text(Buffer.from([0x80]), U), code: 1007, error: 'badencoding' },
  { name: 'an encoded surrogate (U+D800) in text', bytes: text(Buffer.from([0xed, 0xa0, 0x80]), U), code: 1007, error: 'badencoding' },
  {
    name: 'invalid UTF-8 split across fragments',
    bytes: [text(Buffer.from([0xce]), { ...U, fin: false }), cont(Buffer.from([0x28]), U)],
    code: 1007, error: 'badencoding',
  },
  { name: 'text ending inside a character', bytes: text(Buffer.from([0x68, 0xe2, 0x82]), U), code: 1007, error: 'badencoding' },
  ...[0, 999, 1004, 1005, 1006, 1012, 1015, 1016, 2999, 5000, 65535].map((code): BadCase => ({
    name: `close code ${code}`, bytes: close(code, '', U), code: 1002, error: 'badframe',
  })),
  { name: 'a close frame of 1 byte', bytes: frame({ opcode: OP.CLOSE, payload: Buffer.from([0x03]), mask: false }), code: 1002, error: 'badframe' },
  { name: 'a close reason that is not UTF-8', bytes: close(1000, Buffer.from([0x61, 0xff, 0x62]), U), code: 1007, error: 'badencoding' },
  { name: 'a ping of 126 bytes', bytes: ping(Buffer.alloc(126, 0x61), U), code: 1002, error: 'badframe' },
  { name: 'a pong of 126 bytes', bytes: pong(Buffer.alloc(126, 0x61), U), code: 1002, error: 'badframe' },
  { name: 'a close of 126 bytes', bytes: close(1000, 'r'.repeat(124), U), code: 1002, error: 'badframe' },
  {
    name: 'a ping announcing 200 bytes (16-bit length)',
    bytes: frame({ opcode: OP.PING, payload: 'x', lengthBits: 16, length: 200, mask: false }),
    code: 1002, error: 'badframe',
  },
  { name: 'a fragmented ping', bytes: ping('part', { ...U, fin: false }), code: 1002, error: 'badframe' },
  { name: 'a fragmented close', bytes: close(1000, '', { ...U, fin: false }), code: 1002, error: 'badframe' },
  { name: 'a continuation without a start', bytes: cont('orphan', U), code: 1002, error: 'badframe' },
  { name: 'a final continuation without a start', bytes: cont('orphan', { ...U, fin: true }), code: 1002, error: 'badframe' },
  {
    name: 'a new text message inside a fragmented one',
    bytes: [text('first', { ...U, fin: false }), text('second', U)],
    code: 1002, error: 'badframe',
  },
  {
    name: 'a 64-bit length with the top bit set',
    bytes: frame({ opcode: OP.BINARY, length: 1n << 63n, lengthBits: 64, mask: false }),
    code: 1002, error: 'badframe',
  },
  {
    name: 'a frame over maxFrameSize',
    bytes: binary(Buffer.alloc(2000, 1), U),
    code: 1009, error: 'toobig', opts: { maxFrameSize: 1024 },
  },
  {
    name: 'a frame header announcing more than maxFrameSize (no payload sent)',
    bytes: frame({ opcode: OP.TEXT, length: 1 << 30, mask: false }).subarray(0, 10),
    code: 1009, error: 'toobig', opts: { maxFrameSize: 1 << 20 },
  },
  {
    name: 'a fragmented message over maxMessageSize',
    bytes: [binary(Buffer.alloc(1000), { ...U, fin: false }), cont(Buffer.alloc(1000), { ...U, fin: false }), cont(Buffer.alloc(1000), U)],
    code: 1009, error: 'toobig', opts: { maxFrameSize: 1024, maxMessageSize: 2048 },
  },
];

describe('the client fails the connection on what a server must not send', () => {
  it.each(BAD)('$name → $code', async ({ bytes, code, error, opts }) => {
    const { client, peer, frames, terminated } = await open(opts);
    // A good message first: the connection works until the bad bytes.
    await peer.write(text('before', U));
    await peer.write(Array.isArray(bytes) ? Buffer.concat(bytes) : bytes);

    const f = await peer.nextNonPong();
    expect({ opcode: f.opcode, code: f.code, masked: f.masked }).toEqual({ opcode: OP.CLOSE, code, masked: true });
    // The client closes its side without waiting for the echo.
    await peer.fin;
    peer.end();
    const reason = await client.closed;
    expect(reason).toMatchObject({ type: 'error', error });
    expect(await terminated).toBe(reason);
    expect(client.state).toBe('closed');
    expect(frames[0]).toEqual({ type: 'text', data: 'before' });
    // Nothing after the bad frame reached the handler.
    expect(frames.filter((x) => x.type === 'text' || x.type === 'binary')).toHaveLength(1);
  });

  it('fails on bad bytes that arrive one byte at a time', async () => {
    const { client, peer } = await open();
    const bad = text(INVALID_UTF8, U);
    for (const byte of bad) await peer.write(Buffer.from([byte]));
    const f = await peer.nextNonPong();
    expect({ opcode: f.opcode, code: f.code }).toEqual({ opcode: OP.CLOSE, code: 1007 });
    await peer.fin;
    peer.end();
    expect(await client.closed).toMatchObject({ type: 'error', error: 'badencoding' });
  });

  it('a server that ends the TCP connection without a close frame: reason closed', async () => {
    const { client, peer, frames } = await open();
    await peer.write(text('last words', U));
    peer.end();
    expect(await client.closed).toEqual({ type: 'error', error: 'closed' });
    expect(frames).toEqual([{ type: 'text', data: 'last words' }]);
  });
});

describe('the client behaves', () => {
  it('answers a ping with a masked pong carrying the same payload', async () => {
    const { client, peer, frames } = await open();
    const payloads = [Buffer.alloc(0), Buffer.from('hello'), Buffer.alloc(125, 0xab), Buffer.from([0, 1, 2, 0xff])];
    for (const p of payloads) await peer.write(ping(p, U));
    const pongs: ClientFrame[] = [];
    for (let i = 0; i < payloads.length; i++) pongs.push(await peer.next());
    expect(pongs.map((f) => ({ opcode: f.opcode, masked: f.masked, payload: f.payload }))).toEqual(
      payloads.map((p) => ({ opcode: OP.PONG, masked: true, payload: p })),
    );
    // The handler hears of each ping after it was answered.
    expect(frames).toEqual(payloads.map((p) => ({ type: 'ping', data: p })));
    expect(await finish(client, peer)).toEqual({ type: 'stop' });
  });

  it('answers a ping that arrives between the fragments of a message, and reassembles the message', async () => {
    const { client, peer, frames } = await open();
    await peer.write(Buffer.concat([
      text('frag', { ...U, fin: false }), ping('in between', U), cont('men', { ...U, fin: false }), cont('ted ✓', U),
    ]));
    const f = await peer.next();
    expect({ opcode: f.opcode, payload: f.payload.toString() }).toEqual({ opcode: OP.PONG, payload: 'in between' });
    // A ping after it: its pong means 'after' has been handled.
    await peer.write(Buffer.concat([text('after', U), ping('sync', U)]));
    expect((await peer.next()).payload.toString()).toBe('sync');
    expect(await finish(client, peer)).toEqual({ type: 'stop' });
    expect(frames.filter((x) => x.type === 'text')).toEqual([{ type: 'text', data: 'fragmented ✓' }, { type: 'text', data: 'after' }]);
  });

  it('echoes the server close (its code) and closes its side; the reason is remote', async () => {
    const { client, peer, terminated } = await open();
    await peer.write(close(4000, 'server says bye ✓', U));
    const echo = await peer.next();
    expect({ opcode: echo.opcode, code: echo.code, masked: echo.masked }).toEqual({ opcode: OP.CLOSE, code: 4000, masked: true });
    await peer.fin;
    peer.end();
    const reason = await client.closed;
    expect(reason).toEqual({ type: 'remote', code: 4000, reason: 'server says bye ✓' });
    expect(await terminated).toEqual(reason);
    expect(client.state).toBe('closed');
  });

  it('echoes an empty close with an empty close', async () => {
    const { client, peer } = await open();
    await peer.write(close(undefined, '', U));
    const echo = await peer.next();
    expect({ opcode: echo.opcode, length: echo.payload.length }).toEqual({ opcode: OP.CLOSE, length: 0 });
    await peer.fin;
    peer.end();
    expect(await client.closed).toEqual({ type: 'remote', reason: '' });
  });

  it('a client close: masked close frame with code and reason; drops data after it; closes on the echo', async () => {
    const { client, peer, frames } = await open();
    const closed = client.close(1000, 'done');
    expect(client.state).toBe('closing');
    const f = await peer.next();
    expect({ opcode: f.opcode, code: f.code, reason: f.reason, masked: f.masked }).toEqual({ opcode: OP.CLOSE, code: 1000, reason: 'done', masked: true });
    // Data after the client's close is not delivered (RFC 6455 §5.5.1).
    await peer.write(Buffer.concat([text('too late', U), close(1000, '', U)]));
    await peer.fin;
    peer.end();
    expect(await closed).toEqual({ type: 'stop' });
    expect(frames).toEqual([]);
  });

  it('sends every frame masked, with a fresh key each time', async () => {
    const { client, peer } = await open();
    const N = 64;
    for (let i = 0; i < N; i++) client.send(i % 2 === 0 ? `message ${i}` : Buffer.from([i, i, i, i, i]));
    client.send({ type: 'ping', data: 'p' });
    const got: ClientFrame[] = [];
    for (let i = 0; i <= N; i++) got.push(await peer.next());
    expect(got.every((f) => f.masked && f.maskKey !== undefined)).toBe(true);
    expect(got.slice(0, N).map((f) => (f.opcode === OP.TEXT ? f.payload.toString() : [...f.payload])))
      .toEqual(Array.from({ length: N }, (_, i) => (i % 2 === 0 ? `message ${i}` : [i, i, i, i, i])));
    const keys = new Set(got.map((f) => f.maskKey!.toString('hex')));
    expect(keys.size).toBe(got.length);
    // A masked payload on the wire is not the plain payload (for a key that is not all zero).
    const wire = Buffer.concat(peer.received);
    expect(wire.includes(Buffer.from('message 0'))).toBe(false);
    expect(await finish(client, peer)).toEqual({ type: 'stop' });
  });
});
