/**
 * RFC 6455 conformance against a real Corral listener, grouped as the Autobahn TestSuite's
 * fuzzing client groups its cases (framing, pings, reserved bits, opcodes, fragmentation,
 * UTF-8, close handling, limits), then masking, the opening handshake and session behaviour.
 *
 * Every byte is written by the raw client in raw-client.ts: frames are built by hand, split at
 * chosen byte boundaries and across separate TCP writes, and the server's frames are read back
 * raw. The server is an echo handler on `startListener(..., tcp, ..., websocketProtocol(...))`.
 */

import { once } from 'node:events';
import * as http from 'node:http';
import * as net from 'node:net';
import fc from 'fast-check';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startListener, tcp, type Listener, type ListenerOptions } from '@corral/listener';
import {
  SESSION_DEFAULTS, Session, handleUpgrade, websocketProtocol, type CallbackResult, type InFrame,
  type OutFrame, type TerminateReason, type WebSocketHandler, type WebSocketProtocolOptions,
} from '../src/index.js';
import {
  OP, RSV1, RawClient, binary, close, cont, describeFrame, expectedAccept, frame, ping, pong, randomSizes, text,
  upgradeRequest, type RawFrame, type RequestSpec,
} from './raw-client.js';

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

type St = { id: string };

/** Terminate calls and sessions, by connection id (the request path). */
class Recorder {
  readonly ends = new Map<string, TerminateReason[]>();
  readonly sessions = new Map<string, Session<St>>();
  readonly #waiters = new Map<string, ((r: TerminateReason) => void)[]>();
  readonly #sessionWaiters = new Map<string, ((s: Session<St>) => void)[]>();

  record(id: string, reason: TerminateReason): void {
    const list = this.ends.get(id) ?? [];
    list.push(reason);
    this.ends.set(id, list);
    for (const w of this.#waiters.get(id)?.splice(0) ?? []) w(reason);
  }

  /** The first terminate reason of connection `id`. */
  ended(id: string): Promise<TerminateReason> {
    const first = this.ends.get(id)?.[0];
    if (first) return Promise.resolve(first);
    return new Promise((resolve) => this.#waiters.set(id, [...(this.#waiters.get(id) ?? []), resolve]));
  }

  opened(id: string, session: Session<St>): void {
    this.sessions.set(id, session);
    for (const w of this.#sessionWaiters.get(id)?.splice(0) ?? []) w(session);
  }

  /** The session of connection `id`, once websocketInit ran. */
  session(id: string): Promise<Session<St>> {
    const s = this.sessions.get(id);
    if (s) return Promise.resolve(s);
    return new Promise((resolve) => this.#sessionWaiters.set(id, [...(this.#sessionWaiters.get(id) ?? []), resolve]));
  }
}

function echo(frame: InFrame): CallbackResult<St> {
  if (frame.type === 'text') return { reply: { type: 'text', data: frame.data } };
  if (frame.type === 'binary') return { reply: { type: 'binary', data: frame.data } };
  return undefined;
}

type Client = RawClient & { id: string };

interface Server {
  port: number;
  listener: Listener<typeof tcp, unknown>;
  rec: Recorder;
  /** Upgrade a new connection (its id is a fresh request path) and check the 101. */
  connect(spec?: RequestSpec, after?: Buffer): Promise<Client>;
  /** Send `request` as is and parse the response. */
  open(request: string | Buffer, after?: Buffer): Promise<RawClient>;
}

const listeners: Listener<typeof tcp, unknown>[] = [];
const clients: RawClient[] = [];
let seq = 0;
let refSeq = 0;

async function serve(
  opts: {
    protocol?: WebSocketProtocolOptions<unknown>;
    handler?: Partial<WebSocketHandler<St>>;
    listener?: ListenerOptions;
  } = {},
): Promise<Server> {
  const rec = new Recorder();
  const custom = opts.handler ?? {};
  const handler: WebSocketHandler<St> = {
    init: custom.init ?? ((req) => ({ state: { id: req.url } })),
    websocketInit(state, session) {
      rec.opened(state.id, session);
      return custom.websocketInit?.(state, session);
    },
    websocketHandle: custom.websocketHandle ?? echo,
    ...(custom.websocketInfo ? { websocketInfo: custom.websocketInfo } : {}),
    terminate(reason, req, state) {
      rec.record(String(req.url), reason);
      return custom.terminate?.(reason, req, state);
    },
  };
  const listener = await startListener(
    `ws-conformance-${process.pid}-${++refSeq}`,
    tcp,
    { socketOpts: { host: '127.0.0.1' }, ...opts.listener },
    websocketProtocol(handler, opts.protocol),
    undefined,
  );
  listeners.push(listener as unknown as Listener<typeof tcp, unknown>);
  const port = listener.getPort()!;
  return {
    port,
    listener: listener as unknown as Listener<typeof tcp, unknown>,
    rec,
    async connect(spec = {}, after) {
      const id = spec.path ?? `/c${++seq}`;
      const c = await RawClient.connect(port, { ...spec, path: id }, after);
      clients.push(c);
      return Object.assign(c, { id });
    },
    async open(request, after) {
      const c = await RawClient.open(port, request, after);
      clients.push(c);
      return c;
    },
  };
}

afterEach(() => {
  for (const c of clients.splice(0)) c.destroy();
});

afterAll(async () => {
  await Promise.all(listeners.splice(0).map((l) => l.stop()));
});

function bytesOf(payload: Buffer | string): Buffer {
  return typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload;
}

/** A server frame must be unmasked, with RSV clear. */
function checkServerFrame(f: RawFrame): void {
  expect(f.masked, describeFrame(f)).toBe(false);
  expect(f.rsv, describeFrame(f)).toBe(0);
}

/** The next message is `opcode` with exactly `payload`. */
async function expectMessage(c: RawClient, opcode: number, payload: Buffer | string): Promise<void> {
  const m = await c.message();
  const want = bytesOf(payload);
  expect(m.opcode).toBe(opcode);
  if (want.length <= 4096 && m.payload.length <= 4096) {
    // Small enough for a readable diff.
    const show = (b: Buffer): string => (opcode === OP.TEXT ? b.toString('utf8') : b.toString('hex'));
    expect(show(m.payload)).toBe(show(want));
  }
  expect(m.payload.length).toBe(want.length);
  // Buffer#equals first: a diff of megabytes would be useless.
  if (!m.payload.equals(want)) expect(m.payload).toEqual(want);
}

async function expectText(c: RawClient, payload: Buffer | string): Promise<void> {
  await expectMessage(c, OP.TEXT, payload);
}

/** The next frame is a control frame `opcode` with `payload`. */
async function expectControl(c: RawClient, opcode: number, payload: Buffer | string = ''): Promise<void> {
  const f = await c.next();
  checkServerFrame(f);
  expect(describeFrame(f)).toBe(describeFrame({ fin: true, rsv: 0, opcode, masked: false, payload: bytesOf(payload) }));
  expect(f.payload.equals(bytesOf(payload))).toBe(true);
}

/**
 * The server fails the connection: the next frame is its close frame with `code` (nothing before
 * it), then it closes the TCP connection itself and sends nothing more.
 */
async function expectFail(c: RawClient, code: number): Promise<RawFrame> {
  const f = await c.next();
  checkServerFrame(f);
  expect(f.opcode, describeFrame(f)).toBe(OP.CLOSE);
  expect(f.code, describeFrame(f)).toBe(code);
  await c.closed;
  expect(c.peerEnded).toBe(true);
  expect(c.pending.map(describeFrame)).toEqual([]);
  return f;
}

/** The next frame is the echo of our close (`code`, or an empty payload), then the server closes TCP. */
async function expectCloseEcho(c: RawClient, code: number | undefined): Promise<RawFrame> {
  const f = await c.next();
  checkServerFrame(f);
  expect(f.opcode, describeFrame(f)).toBe(OP.CLOSE);
  expect(f.code).toBe(code);
  if (code === undefined) expect(f.payload.length).toBe(0);
  await c.closed;
  expect(c.peerEnded).toBe(true);
  expect(c.pending.map(describeFrame)).toEqual([]);
  return f;
}

/** Deterministic printable ASCII of `n` bytes. */
function ascii(n: number, seed = n + 1): string {
  const b = bytes(n, seed);
  for (let i = 0; i < n; i++) b[i] = 0x20 + (b[i]! % 95);
  return b.toString('latin1');
}

/** Deterministic bytes. */
function bytes(n: number, seed = n + 7): Buffer {
  const out = Buffer.alloc(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

/** Each byte of `buf` in a frame of its own: first `opcode`, then continuations; FIN on the last. */
function byteFragments(opcode: number, buf: Buffer): Buffer[] {
  if (buf.length === 0) return [frame({ opcode, payload: buf })];
  return [...buf].map((b, i) => frame({ opcode: i === 0 ? opcode : OP.CONT, payload: Buffer.from([b]), fin: i === buf.length - 1 }));
}

function deferred<T = void>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

let echoServer: Server;
beforeAll(async () => {
  // Keep-alive long enough that a connection the server should close, but keeps, fails its test.
  echoServer = await serve({ protocol: { keepAliveTimeout: 60_000 } });
});

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

// ---------------------------------------------------------------------------------------------
// 1. Framing
// ---------------------------------------------------------------------------------------------

describe('1. framing', () => {
  const LENGTHS = [0, 125, 126, 127, 128, 65535, 65536];
  const KINDS = [
    { name: 'text', opcode: OP.TEXT, payload: (n: number) => Buffer.from(ascii(n)) },
    { name: 'binary', opcode: OP.BINARY, payload: (n: number) => bytes(n) },
  ];
  const cases = KINDS.flatMap((k) => LENGTHS.map((n) => ({ ...k, n })));

  it.each(cases)('$name of $n bytes in one write is echoed', async ({ opcode, payload, n }) => {
    const c = await echoServer.connect();
    const p = payload(n);
    await c.write(frame({ opcode, payload: p }));
    await expectMessage(c, opcode, p);
  });

  it.each(cases.filter((k) => k.n <= 128))('$name of $n bytes written byte by byte is echoed', async ({ opcode, payload, n }) => {
    const c = await echoServer.connect();
    const p = payload(n);
    await c.writeChunks(frame({ opcode, payload: p }), 1);
    await expectMessage(c, opcode, p);
  });

  it.each(cases.filter((k) => k.n >= 65535))('$name of $n bytes in random TCP writes is echoed', async ({ opcode, payload, n }) => {
    const c = await echoServer.connect();
    const p = payload(n);
    await c.writeChunks(frame({ opcode, payload: p }), randomSizes(n, 400, 1500));
    await expectMessage(c, opcode, p);
  });

  it.each(KINDS)('$name of 65536 bytes in 997-byte writes is echoed', async ({ opcode, payload }) => {
    const c = await echoServer.connect();
    const p = payload(65536);
    await c.writeChunks(frame({ opcode, payload: p }), 997);
    await expectMessage(c, opcode, p);
  });

  it('text of 4 MiB with multi-byte characters is echoed', async () => {
    const c = await echoServer.connect();
    const unit = 'Grüße, κόσμε, 日本語, 😀 and some ASCII. ';
    const p = Buffer.from(unit.repeat(Math.ceil((4 << 20) / Buffer.byteLength(unit))));
    await c.write(text(p));
    await expectText(c, p);
  });

  it('binary of 4 MiB is echoed', async () => {
    const c = await echoServer.connect();
    const p = bytes(4 << 20);
    await c.write(binary(p));
    await expectMessage(c, OP.BINARY, p);
  });

  it('binary of 3 MiB in random TCP writes is echoed', async () => {
    const c = await echoServer.connect();
    const p = bytes(3 << 20, 99);
    await c.writeChunks(binary(p), randomSizes(3, 500, 64 * 1024));
    await expectMessage(c, OP.BINARY, p);
  });

  it('binary of 16 MiB, the default maxFrameSize, is echoed', async () => {
    const c = await echoServer.connect();
    const p = bytes(16 << 20, 16);
    await c.write(binary(p));
    await expectMessage(c, OP.BINARY, p);
  });

  it.each([
    { name: 'text of 4 MiB in 256-byte fragments', opcode: OP.TEXT, p: () => Buffer.from(ascii(4 << 20, 4)), size: 256 },
    { name: 'binary of 1 MiB in 64-byte fragments', opcode: OP.BINARY, p: () => bytes(1 << 20, 1), size: 64 },
    { name: 'binary of 2 MiB in 64 KiB fragments', opcode: OP.BINARY, p: () => bytes(2 << 20, 2), size: 65536 },
  ])('$name is echoed whole', async ({ opcode, p, size }) => {
    const c = await echoServer.connect();
    const payload = p();
    const frames: Buffer[] = [];
    for (let at = 0; at < payload.length; at += size) {
      const end = Math.min(at + size, payload.length);
      frames.push(frame({ opcode: at === 0 ? opcode : OP.CONT, payload: payload.subarray(at, end), fin: end === payload.length }));
    }
    await c.writeChunks(Buffer.concat(frames), 256 * 1024);
    await expectMessage(c, opcode, payload);
  });

  it('messages over outgoingFrameSize are sent as fragments', async () => {
    const server = await serve({ protocol: { session: { outgoingFrameSize: 1000 } } });
    const c = await server.connect();
    const p = Buffer.from(ascii(3500));
    await c.write(text(p));
    const parts: RawFrame[] = [];
    do parts.push(await c.next()); while (!parts.at(-1)!.fin);
    for (const f of parts) checkServerFrame(f);
    expect(parts.map((f) => [f.opcode, f.fin, f.payload.length])).toEqual([
      [OP.TEXT, false, 1000], [OP.CONT, false, 1000], [OP.CONT, false, 1000], [OP.CONT, true, 500],
    ]);
    expect(Buffer.concat(parts.map((f) => f.payload)).equals(p)).toBe(true);
  });

  it('a frame split at every header boundary (2, 4 and 10-byte lengths, mask key) is echoed', async () => {
    const c = await echoServer.connect();
    for (const n of [5, 300, 70000]) {
      const f = binary(bytes(n));
      const head = (n < 126 ? 2 : n < 65536 ? 4 : 10) + 4;
      await c.writeChunks(f.subarray(0, head), 1);
      await c.write(f.subarray(head));
      await expectMessage(c, OP.BINARY, bytes(n));
    }
  });

  it('lengths in a longer encoding than needed are accepted', async () => {
    const c = await echoServer.connect();
    await c.write(Buffer.concat([
      text('sixteen', { lengthBits: 16 }),
      text('sixty-four', { lengthBits: 64 }),
      binary(bytes(200), { lengthBits: 64 }),
    ]));
    await expectText(c, 'sixteen');
    await expectText(c, 'sixty-four');
    await expectMessage(c, OP.BINARY, bytes(200));
  });

  it('an all-zero mask key is a valid mask', async () => {
    const c = await echoServer.connect();
    await c.write(text('zero key', { mask: Buffer.alloc(4) }));
    await expectText(c, 'zero key');
    await c.writeChunks(text('κόσμε 😀 zero key, split', { mask: Buffer.alloc(4) }), 1);
    await expectText(c, 'κόσμε 😀 zero key, split');
  });

  it('200 messages of mixed sizes in one write are echoed in order', async () => {
    const c = await echoServer.connect();
    const sizes = randomSizes(200, 200, 3000);
    const payloads = sizes.map((n, i) => (i % 2 ? bytes(n, i) : Buffer.from(ascii(n, i + 1))));
    await c.write(Buffer.concat(payloads.map((p, i) => frame({ opcode: i % 2 ? OP.BINARY : OP.TEXT, payload: p }))));
    for (let i = 0; i < payloads.length; i++) await expectMessage(c, i % 2 ? OP.BINARY : OP.TEXT, payloads[i]!);
  });
});

// ---------------------------------------------------------------------------------------------
// 2. Pings and pongs
// ---------------------------------------------------------------------------------------------

describe('2. pings and pongs', () => {
  it.each([
    { name: 'no payload', payload: Buffer.alloc(0) },
    { name: 'a small text payload', payload: Buffer.from('Hello, world!') },
    { name: 'a small binary payload', payload: hex('00 ff fe fd fc fb 00 ff') },
    { name: 'a 125-byte payload', payload: bytes(125) },
  ])('a ping with $name is answered by a pong with the same payload', async ({ payload }) => {
    const c = await echoServer.connect();
    await c.write(ping(payload));
    await expectControl(c, OP.PONG, payload);
  });

  it('a 125-byte ping written byte by byte is answered', async () => {
    const c = await echoServer.connect();
    await c.writeChunks(ping(bytes(125)), 1);
    await expectControl(c, OP.PONG, bytes(125));
  });

  it('a ping of 126 bytes fails the connection with 1002, unanswered', async () => {
    const c = await echoServer.connect();
    await c.write(ping(bytes(126)));
    await expectFail(c, 1002);
  });

  it('a fragmented ping fails the connection with 1002', async () => {
    const c = await echoServer.connect();
    await c.write(Buffer.concat([ping('frag', { fin: false }), cont('ment')]));
    await expectFail(c, 1002);
  });

  it('a fragmented pong fails the connection with 1002', async () => {
    const c = await echoServer.connect();
    await c.write(Buffer.concat([pong('frag', { fin: false }), cont('ment')]));
    await expectFail(c, 1002);
  });

  it.each([
    { name: 'without payload', payload: '' },
    { name: 'with payload', payload: 'unsolicited pong payload' },
  ])('an unsolicited pong $name is ignored', async ({ payload }) => {
    const c = await echoServer.connect();
    await c.write(Buffer.concat([pong(payload), text('after the pong')]));
    await expectText(c, 'after the pong');
  });

  it('an unsolicited pong then a ping: only the ping is answered', async () => {
    const c = await echoServer.connect();
    await c.write(Buffer.concat([pong('unsolicited'), ping('solicited'), text('end')]));
    await expectControl(c, OP.PONG, 'solicited');
    await expectText(c, 'end');
  });

  it('a ping inside a fragmented text message is answered at once, the message intact', async () => {
    const c = await echoServer.connect();
    await c.write(Buffer.concat([text('frag', { fin: false }), ping('in between'), cont('mented')]));
    await expectControl(c, OP.PONG, 'in between');
    await expectText(c, 'fragmented');
  });

  it('10 pings in one write get 10 pongs, in order', async () => {
    const c = await echoServer.connect();
    const payloads = Array.from({ length: 10 }, (_, i) => `payload-${i}`);
    await c.write(Buffer.concat(payloads.map((p) => ping(p))));
    for (const p of payloads) await expectControl(c, OP.PONG, p);
  });

  it('10 pings written byte by byte get 10 pongs, in order', async () => {
    const c = await echoServer.connect();
    const payloads = Array.from({ length: 10 }, (_, i) => `payload-${i}`);
    await c.writeChunks(Buffer.concat(payloads.map((p) => ping(p))), 1);
    for (const p of payloads) await expectControl(c, OP.PONG, p);
  });
});

// ---------------------------------------------------------------------------------------------
// 3. Reserved bits
// ---------------------------------------------------------------------------------------------

describe('3. reserved bits', () => {
  const KINDS = [
    { name: 'text', make: (rsv: number) => text('reserved', { rsv }) },
    { name: 'binary', make: (rsv: number) => binary(bytes(10), { rsv }) },
    { name: 'ping', make: (rsv: number) => ping('reserved', { rsv }) },
    { name: 'pong', make: (rsv: number) => pong('reserved', { rsv }) },
    { name: 'close', make: (rsv: number) => close(1000, '', { rsv }) },
    { name: 'continuation', make: (rsv: number) => Buffer.concat([text('start', { fin: false }), cont('end', { rsv })]) },
  ];
  const cases = KINDS.flatMap((k) => [1, 2, 3, 4, 5, 6, 7].map((rsv) => ({ ...k, rsv })));

  it.each(cases)('$name with RSV=$rsv after a valid message fails with 1002; neither it nor a ping after it is answered', async ({ make, rsv }) => {
    const c = await echoServer.connect();
    await c.write(Buffer.concat([text('valid'), make(rsv), ping('after')]));
    await expectText(c, 'valid');
    await expectFail(c, 1002);
  });

  it('text with RSV1 written byte by byte fails with 1002', async () => {
    const c = await echoServer.connect();
    await c.writeChunks(Buffer.concat([text('valid'), text('reserved', { rsv: RSV1 }), ping('after')]), 1);
    await expectText(c, 'valid');
    await expectFail(c, 1002);
  });

  it('RSV bits fail the frame from its header, before its payload arrives', async () => {
    const c = await echoServer.connect();
    await c.write(binary(bytes(1000), { rsv: 2 }).subarray(0, 4));
    await expectFail(c, 1002);
  });
});

// ---------------------------------------------------------------------------------------------
// 4. Opcodes
// ---------------------------------------------------------------------------------------------

describe('4. opcodes', () => {
  const RESERVED = [3, 4, 5, 6, 7, 11, 12, 13, 14, 15].map((opcode) => ({ opcode, kind: opcode < 8 ? 'non-control' : 'control' }));

  it.each(RESERVED)('reserved $kind opcode $opcode fails with 1002', async ({ opcode }) => {
    const c = await echoServer.connect();
    await c.write(frame({ opcode }));
    await expectFail(c, 1002);
  });

  it.each(RESERVED)('reserved $kind opcode $opcode with a payload, after a valid message, fails with 1002', async ({ opcode }) => {
    const c = await echoServer.connect();
    await c.write(Buffer.concat([text('valid'), frame({ opcode, payload: 'reserved opcode payload' }), ping('after')]));
    await expectText(c, 'valid');
    await expectFail(c, 1002);
  });

  it.each(RESERVED)('reserved $kind opcode $opcode with RSV bits, written byte by byte, fails with 1002', async ({ opcode }) => {
    const c = await echoServer.connect();
    await c.writeChunks(Buffer.concat([text('valid'), frame({ opcode, payload: 'x', rsv: 7 }), ping('after')]), 1);
    await expectText(c, 'valid');
    await expectFail(c, 1002);
  });
});

// ---------------------------------------------------------------------------------------------
// 5. Fragmentation
// ---------------------------------------------------------------------------------------------

describe('5. fragmentation', () => {
  it('text in two fragments is echoed whole', async () => {
    const c = await echoServer.connect();
    await c.write(Buffer.concat([text('fragment1', { fin: false }), cont('fragment2')]));
    await expectText(c, 'fragment1fragment2');
  });

  it('text in two fragments written byte by byte is echoed whole', async () => {
    const c = await echoServer.connect();
    await c.writeChunks(Buffer.concat([text('fragment1', { fin: false }), cont('fragment2')]), 1);
    await expectText(c, 'fragment1fragment2');
  });

  it.each([
    { name: 'text', opcode: OP.TEXT, payload: Buffer.from(ascii(300)) },
    { name: 'binary', opcode: OP.BINARY, payload: bytes(300) },
  ])('$name in 1-byte fragments is echoed whole', async ({ opcode, payload }) => {
    const c = await echoServer.connect();
    await c.write(Buffer.concat(byteFragments(opcode, payload)));
    await expectMessage(c, opcode, payload);
  });

  it('binary in 1-byte fragments, each in its own TCP write, is echoed whole', async () => {
    const c = await echoServer.connect();
    await c.writeEach(byteFragments(OP.BINARY, bytes(64)));
    await expectMessage(c, OP.BINARY, bytes(64));
  });

  it.each([
    { name: 'in one write', write: (c: RawClient, b: Buffer) => c.write(b) },
    { name: 'in random writes', write: (c: RawClient, b: Buffer) => c.writeChunks(b, randomSizes(5, 50, 7)) },
    { name: 'byte by byte', write: (c: RawClient, b: Buffer) => c.writeChunks(b, 1) },
  ])('pings and a pong between fragments ($name): pongs first, then the message', async ({ write }) => {
    const c = await echoServer.connect();
    await write(c, Buffer.concat([
      text('fragment1', { fin: false }), ping('p1'), cont('fragment2', { fin: false }), pong('unsolicited'),
      cont('fragment3', { fin: false }), ping('p2'), cont('fragment4', { fin: false }), cont('fragment5'),
    ]));
    await expectControl(c, OP.PONG, 'p1');
    await expectControl(c, OP.PONG, 'p2');
    await expectText(c, 'fragment1fragment2fragment3fragment4fragment5');
  });

  it.each([
    { name: 'with FIN', frames: [cont('non-continuation payload')] },
    { name: 'without FIN', frames: [cont('non-continuation payload', { fin: false })] },
    { name: 'with FIN, after a complete message', frames: [text('complete'), cont('non-continuation payload')] },
    { name: 'without FIN, followed by text', frames: [cont('fragment1', { fin: false }), text('fragment2', { fin: false }), cont('fragment3')] },
  ])('a continuation $name with no message open fails with 1002', async ({ frames }) => {
    const c = await echoServer.connect();
    await c.write(Buffer.concat(frames));
    if (frames.length === 2) await expectText(c, 'complete');
    await expectFail(c, 1002);
  });

  it('a continuation without a message, written byte by byte, fails with 1002', async () => {
    const c = await echoServer.connect();
    await c.writeChunks(cont('non-continuation payload', { fin: false }), 1);
    await expectFail(c, 1002);
  });

  it.each([
    { name: 'text', second: text('fragment2') },
    { name: 'unfinished text', second: text('fragment2', { fin: false }) },
    { name: 'binary', second: binary('fragment2') },
  ])('a new $name frame while a message is open fails with 1002', async ({ second }) => {
    const c = await echoServer.connect();
    await c.write(Buffer.concat([text('fragment1', { fin: false }), second, cont('fragment3')]));
    await expectFail(c, 1002);
  });

  it('a complete fragmented message, then a stray continuation, fails after the echo', async () => {
    const c = await echoServer.connect();
    await c.write(Buffer.concat([
      text('fragment1', { fin: false }), cont('fragment2'), cont('fragment3', { fin: false }), text('fragment4'),
    ]));
    await expectText(c, 'fragment1fragment2');
    await expectFail(c, 1002);
  });

  it('a fragmented message then an unfragmented one are echoed in order', async () => {
    const c = await echoServer.connect();
    await c.write(Buffer.concat([
      binary('frag', { fin: false }), cont('ment', { fin: false }), cont('ed'), text('whole'),
    ]));
    await expectMessage(c, OP.BINARY, 'fragmented');
    await expectText(c, 'whole');
  });

  it.each([
    { name: 'an empty text message', frames: [text('')], want: '' },
    { name: 'a text message of three empty fragments', frames: [text('', { fin: false }), cont('', { fin: false }), cont('')], want: '' },
    { name: 'a text message with an empty middle fragment', frames: [text('middle', { fin: false }), cont('', { fin: false }), cont('frame')], want: 'middleframe' },
    { name: 'a text message with empty first and last fragments', frames: [text('', { fin: false }), cont('body', { fin: false }), cont('')], want: 'body' },
  ])('$name is echoed', async ({ frames, want }) => {
    const c = await echoServer.connect();
    await c.write(Buffer.concat(frames));
    await expectText(c, want);
  });

  it('random messages cut into fragments with pings between them, written in random pieces, are answered in order', async () => {
    const message = fc.record({
      kind: fc.constantFrom('text' as const, 'binary' as const),
      payload: fc.uint8Array({ maxLength: 3000 }),
      cuts: fc.array(fc.nat(3000), { maxLength: 4 }),
      pings: fc.array(fc.uint8Array({ maxLength: 125 }), { maxLength: 3 }),
    });
    const item = fc.oneof(message, fc.record({ kind: fc.constant('ping' as const), payload: fc.uint8Array({ maxLength: 125 }) }));
    await fc.assert(
      fc.asyncProperty(fc.array(item, { minLength: 1, maxLength: 10 }), fc.array(fc.integer({ min: 1, max: 700 }), { minLength: 1, maxLength: 10 }), async (items, sizes) => {
        const wire: Buffer[] = [];
        const want: string[] = [];
        for (const it of items) {
          if (it.kind === 'ping') {
            wire.push(ping(Buffer.from(it.payload)));
            want.push(`pong ${Buffer.from(it.payload).toString('hex')}`);
            continue;
          }
          // Text payloads: valid UTF-8 of any script, cut anywhere (even inside a character).
          const payload = it.kind === 'text' ? Buffer.from(Buffer.from(it.payload).toString('utf8')) : Buffer.from(it.payload);
          const cuts = [...new Set(it.cuts.map((n) => n % (payload.length + 1)))].sort((a, b) => a - b);
          const bounds = [0, ...cuts, payload.length];
          const opcode = it.kind === 'text' ? OP.TEXT : OP.BINARY;
          for (let i = 0; i + 1 < bounds.length; i++) {
            const last = i + 2 === bounds.length;
            wire.push(frame({ opcode: i === 0 ? opcode : OP.CONT, payload: payload.subarray(bounds[i], bounds[i + 1]), fin: last }));
            const p = it.pings[i];
            if (!last && p) {
              wire.push(ping(Buffer.from(p)));
              want.push(`pong ${Buffer.from(p).toString('hex')}`);
            }
          }
          want.push(`${it.kind} ${payload.toString('hex')}`);
        }
        const c = await echoServer.connect();
        await c.writeChunks(Buffer.concat(wire), sizes);
        const got: string[] = [];
        for (let i = 0; i < want.length; i++) {
          const f = await c.next();
          checkServerFrame(f);
          expect(f.fin).toBe(true);
          got.push(`${describeFrame(f).split(' ')[0]} ${f.payload.toString('hex')}`);
        }
        expect(got).toEqual(want);
        c.destroy();
      }),
      { numRuns: 40 },
    );
  });

  it('an empty binary message of empty fragments is echoed', async () => {
    const c = await echoServer.connect();
    await c.write(Buffer.concat([binary('', { fin: false }), cont('')]));
    await expectMessage(c, OP.BINARY, '');
  });
});

// ---------------------------------------------------------------------------------------------
// 6. UTF-8
// ---------------------------------------------------------------------------------------------

describe('6. UTF-8', () => {
  const VALID = [
    { name: 'ASCII', s: 'Hello, World!' },
    { name: 'Latin-1 supplement', s: 'Hello-µ@ßöäüàá-UTF-8!!' },
    { name: 'Greek', s: 'κόσμε' },
    { name: 'Cyrillic', s: 'Съешь же ещё этих мягких французских булок' },
    { name: 'Hebrew', s: 'שלום עולם' },
    { name: 'Arabic', s: 'مرحبا بالعالم' },
    { name: 'Devanagari', s: 'नमस्ते दुनिया' },
    { name: 'Thai', s: 'สวัสดีชาวโลก' },
    { name: 'Chinese', s: '你好，世界' },
    { name: 'Japanese', s: 'こんにちは世界、カタカナ' },
    { name: 'Korean', s: '안녕하세요 세계' },
    { name: 'emoji and astral symbols', s: '😀🎉𝄞𝕳𐍈' },
    { name: 'combining marks and ZWJ sequences', s: 'e\u0301 👩‍👩‍👧‍👦 🏳️‍🌈' },
    { name: 'first code point of each length', s: '\u0000\u0080\u0800\u{10000}' },
    { name: 'last code point of each length', s: '\u007f\u07ff\uffff\u{10ffff}' },
    { name: 'boundaries around the surrogates', s: '\ud7ff\ue000\ufffd' },
    { name: 'noncharacters and the BOM', s: '\ufffe\uffff\ufeff\u{1fffe}\u{10fffe}' },
    { name: 'a leading BOM (kept)', s: '\ufeffstarts with a byte order mark' },
  ];

  it.each(VALID)('valid $name text is echoed (one frame, 1-byte frames, byte-by-byte writes)', async ({ s }) => {
    const c = await echoServer.connect();
    const b = Buffer.from(s, 'utf8');
    await c.write(text(b));
    await expectText(c, b);
    await c.write(Buffer.concat(byteFragments(OP.TEXT, b)));
    await expectText(c, b);
    await c.writeChunks(text(b), 1);
    await expectText(c, b);
  });

  const INVALID = [
    // Overlong forms
    { name: 'overlong "/" in 2 bytes', b: 'c0 af' },
    { name: 'overlong "/" in 3 bytes', b: 'e0 80 af' },
    { name: 'overlong "/" in 4 bytes', b: 'f0 80 80 af' },
    { name: 'overlong "/" in 5 bytes', b: 'f8 80 80 80 af' },
    { name: 'overlong "/" in 6 bytes', b: 'fc 80 80 80 80 af' },
    { name: 'largest overlong 2-byte form', b: 'c1 bf' },
    { name: 'largest overlong 3-byte form', b: 'e0 9f bf' },
    { name: 'largest overlong 4-byte form', b: 'f0 8f bf bf' },
    { name: 'overlong NUL in 2 bytes', b: 'c0 80' },
    { name: 'overlong NUL in 3 bytes', b: 'e0 80 80' },
    { name: 'overlong NUL in 4 bytes', b: 'f0 80 80 80' },
    // Surrogates
    { name: 'lone high surrogate U+D800', b: 'ed a0 80' },
    { name: 'lone high surrogate U+DB7F', b: 'ed ad bf' },
    { name: 'lone high surrogate U+DBFF', b: 'ed af bf' },
    { name: 'lone low surrogate U+DC00', b: 'ed b0 80' },
    { name: 'lone low surrogate U+DFFF', b: 'ed bf bf' },
    { name: 'paired surrogates U+D800 U+DC00', b: 'ed a0 80 ed b0 80' },
    { name: 'paired surrogates U+DBFF U+DFFF', b: 'ed af bf ed bf bf' },
    { name: 'κόσμε then a surrogate (Autobahn 6.3.1)', b: 'ce ba e1 bd b9 cf 83 ce bc ce b5 ed a0 80 65 64 69 74 65 64' },
    // Beyond U+10FFFF
    { name: 'U+110000', b: 'f4 90 80 80' },
    { name: 'lead byte F5', b: 'f5 80 80 80' },
    { name: 'lead byte F7', b: 'f7 bf bf bf' },
    { name: 'first 5-byte sequence', b: 'f8 88 80 80 80' },
    { name: 'first 6-byte sequence', b: 'fc 84 80 80 80 80' },
    { name: 'last 6-byte sequence', b: 'fd bf bf bf bf bf' },
    // Truncated sequences
    { name: '2-byte sequence missing its last byte', b: 'c2' },
    { name: '3-byte sequence missing its last byte', b: 'e2 82' },
    { name: '4-byte sequence missing its last byte', b: 'f0 9f 98' },
    { name: 'κόσμε missing its last byte', b: 'ce ba e1 bd b9 cf 83 ce bc ce' },
    { name: 'truncated 2-byte sequence before ASCII', b: 'c2 41' },
    { name: 'truncated 3-byte sequence before ASCII', b: 'e2 82 41' },
    { name: 'concatenated incomplete sequences', b: 'c0 e0 80 f0 80 80 df ef bf f7 bf bf' },
    // Bad continuation bytes
    { name: 'lone continuation byte 80', b: '80' },
    { name: 'lone continuation byte BF', b: 'bf' },
    { name: 'three continuation bytes', b: '80 bf 80' },
    { name: 'a 2-byte character with an extra continuation', b: 'c3 a9 80' },
    { name: 'lead byte followed by a lead byte', b: 'e2 e2 82 ac' },
    // Lonely start characters and impossible bytes
    { name: 'lonely 2-byte start followed by space', b: 'c3 20' },
    { name: 'lonely 3-byte start followed by space', b: 'e1 20' },
    { name: 'lonely 4-byte start followed by space', b: 'f1 20' },
    { name: 'impossible byte FE', b: 'fe' },
    { name: 'impossible byte FF', b: 'ff' },
    { name: 'impossible bytes FE FE FF FF', b: 'fe fe ff ff' },
  ];

  it.each(INVALID)('$name in a text message fails with 1007 (one frame, then 1-byte frames)', async ({ b }) => {
    const payload = Buffer.concat([Buffer.from('valid prefix '), hex(b), Buffer.from(' suffix')]);
    const c1 = await echoServer.connect();
    await c1.write(text(payload));
    await expectFail(c1, 1007);
    const c2 = await echoServer.connect();
    await c2.write(Buffer.concat(byteFragments(OP.TEXT, payload)));
    await expectFail(c2, 1007);
  });

  it.each(INVALID)('$name as the whole text message, written byte by byte, fails with 1007', async ({ b }) => {
    const c = await echoServer.connect();
    await c.writeChunks(text(hex(b)), 1);
    await expectFail(c, 1007);
  });

  it.each([
    { name: 'an invalid sequence in the middle', first: Buffer.concat([Buffer.from('κόσμε'), hex('c0 af'), Buffer.from('more')]) },
    { name: 'a surrogate prefix at its end', first: Buffer.concat([Buffer.from('κόσμε'), hex('ed a0')]) },
    { name: 'a prefix beyond U+10FFFF at its end', first: Buffer.concat([Buffer.from('κόσμε'), hex('f4 90')]) },
    { name: 'an overlong prefix at its end', first: Buffer.concat([Buffer.from('κόσμε'), hex('e0 80')]) },
    { name: 'an impossible byte at its end', first: Buffer.concat([Buffer.from('κόσμε'), hex('ff')]) },
  ])('fail fast: a first fragment with $name is refused with 1007 before the rest is sent', async ({ first }) => {
    const c = await echoServer.connect();
    await c.write(text(first, { fin: false }));
    await expectFail(c, 1007);
  });

  it('fail fast: a frame whose first TCP write holds an invalid sequence is refused before its payload ends', async () => {
    const c = await echoServer.connect();
    const payload = Buffer.concat([Buffer.from('κόσμε'), hex('ed a0 80'), Buffer.from(ascii(1000))]);
    const f = text(payload);
    const head = 2 + 2 + 4;
    await c.write(f.subarray(0, head + 20));
    await expectFail(c, 1007);
  });

  it('fail fast: the second of three fragments is invalid; the third is never needed', async () => {
    const c = await echoServer.connect();
    await c.write(text('κόσμε', { fin: false }));
    await c.write(cont(hex('ce ba e1 bd b9 cf 83 ce bc ce b5 f4 90 80 80'), { fin: false }));
    await expectFail(c, 1007);
  });

  it('a text message ending inside a sequence split over fragments fails with 1007', async () => {
    const c = await echoServer.connect();
    await c.write(Buffer.concat([text(hex('41 e2'), { fin: false }), cont(hex('82'))]));
    await expectFail(c, 1007);
  });

  it('a text message whose empty final fragment leaves a sequence open fails with 1007', async () => {
    const c = await echoServer.connect();
    await c.write(Buffer.concat([text(hex('41 e2 82'), { fin: false }), cont('')]));
    await expectFail(c, 1007);
  });

  it('random valid and invalid UTF-8, cut into random fragments and TCP writes: echoed exactly when valid, else 1007', async () => {
    // The oracle is the WHATWG decoder, independent of the validator under test.
    const decoder = new TextDecoder('utf-8', { fatal: true });
    const isValid = (b: Buffer): boolean => {
      try {
        decoder.decode(b);
        return true;
      } catch {
        return false;
      }
    };
    const piece = fc.oneof(
      { weight: 8, arbitrary: fc.string({ unit: 'binary', maxLength: 6 }).map((x) => Buffer.from(x)) },
      { weight: 1, arbitrary: fc.constantFrom(...INVALID.map((i) => hex(i.b))) },
    );
    await fc.assert(
      fc.asyncProperty(
        fc.array(piece, { maxLength: 8 }),
        fc.array(fc.nat(200), { maxLength: 4 }),
        fc.array(fc.integer({ min: 1, max: 9 }), { minLength: 1, maxLength: 6 }),
        async (pieces, rawCuts, sizes) => {
          const payload = Buffer.concat(pieces);
          const cuts = [...new Set(rawCuts.map((n) => n % (payload.length + 1)))].sort((a, b) => a - b);
          const bounds = [0, ...cuts, payload.length];
          const frames: Buffer[] = [];
          for (let i = 0; i + 1 < bounds.length; i++) {
            frames.push(frame({ opcode: i === 0 ? OP.TEXT : OP.CONT, payload: payload.subarray(bounds[i], bounds[i + 1]), fin: i + 2 === bounds.length }));
          }
          const c = await echoServer.connect();
          await c.writeChunks(Buffer.concat(frames), sizes);
          if (isValid(payload)) {
            await expectText(c, payload);
            c.destroy();
          } else {
            await expectFail(c, 1007);
          }
        },
      ),
      { numRuns: 60 },
    );
  });

  it('a surrogate split across two fragments fails with 1007', async () => {
    const c = await echoServer.connect();
    await c.write(Buffer.concat([text(hex('41 ed'), { fin: false }), cont(hex('a0 80 41'))]));
    await expectFail(c, 1007);
  });

  const CHARS = [
    { name: '2-byte ü', ch: 'ü' },
    { name: '3-byte €', ch: '€' },
    { name: '3-byte 日', ch: '日' },
    { name: '4-byte 😀', ch: '😀' },
    { name: '4-byte U+10FFFF', ch: '\u{10ffff}' },
  ];
  const splits = CHARS.flatMap(({ name, ch }) => {
    const b = Buffer.from(`a${ch}b`);
    return Array.from({ length: Buffer.byteLength(ch) - 1 }, (_, k) => ({ name, at: 2 + k, b }));
  });

  it.each(splits)('$name split across fragments after byte $at is accepted', async ({ b, at }) => {
    const c = await echoServer.connect();
    await c.write(Buffer.concat([text(b.subarray(0, at), { fin: false }), cont(b.subarray(at))]));
    await expectText(c, b);
  });

  it.each(splits)('$name split across TCP writes after payload byte $at is accepted', async ({ b, at }) => {
    const c = await echoServer.connect();
    const f = text(b);
    const head = 6;
    await c.writeEach([f.subarray(0, head + at), f.subarray(head + at)]);
    await expectText(c, b);
  });

  it.each(CHARS)('$name split into one fragment per byte, each in its own TCP write, is accepted', async ({ ch }) => {
    const c = await echoServer.connect();
    const b = Buffer.from(`a${ch}b${ch}`);
    await c.writeEach(byteFragments(OP.TEXT, b));
    await expectText(c, b);
  });

  it('a long multi-byte text split at every byte offset over TCP writes of 1 to 7 bytes is accepted', async () => {
    const c = await echoServer.connect();
    const b = Buffer.from('κόσμε日本語😀ü€'.repeat(20));
    await c.writeChunks(text(b), [1, 2, 3, 4, 5, 6, 7]);
    await expectText(c, b);
  });
});

// ---------------------------------------------------------------------------------------------
// 7. Close handling
// ---------------------------------------------------------------------------------------------

describe('7. close handling', () => {
  it('a close without payload is echoed without payload, then the server closes TCP', async () => {
    const c = await echoServer.connect();
    await c.write(close());
    await expectCloseEcho(c, undefined);
  });

  it('a close with 1000 is echoed with 1000', async () => {
    const c = await echoServer.connect();
    await c.write(close(1000));
    await expectCloseEcho(c, 1000);
  });

  it('a close with 1000 and a reason is echoed with 1000', async () => {
    const c = await echoServer.connect();
    await c.write(close(1000, 'Hello World!'));
    await expectCloseEcho(c, 1000);
  });

  it('a close with a 123-byte reason is echoed', async () => {
    const c = await echoServer.connect();
    await c.write(close(1000, ascii(123)));
    await expectCloseEcho(c, 1000);
  });

  it('a close with a 124-byte reason (payload over 125) fails with 1002', async () => {
    const c = await echoServer.connect();
    await c.write(close(1000, ascii(124)));
    await expectFail(c, 1002);
  });

  it('a close with a 1-byte payload fails with 1002', async () => {
    const c = await echoServer.connect();
    await c.write(frame({ opcode: OP.CLOSE, payload: hex('03') }));
    await expectFail(c, 1002);
  });

  it('a close whose reason is not UTF-8 fails with 1007', async () => {
    const c = await echoServer.connect();
    await c.write(close(1000, hex('ce ba e1 bd b9 cf 83 ce bc ce b5 ed a0 80 65 64 69 74 65 64')));
    await expectFail(c, 1007);
  });

  it.each([1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999])('close code %i is valid and echoed', async (code) => {
    const c = await echoServer.connect();
    await c.write(close(code, 'reason'));
    await expectCloseEcho(c, code);
  });

  it.each([0, 999, 1004, 1005, 1006, 1012, 1013, 1014, 1015, 1016, 1100, 2000, 2999, 5000, 65535])('close code %i is invalid: 1002', async (code) => {
    const c = await echoServer.connect();
    await c.write(close(code));
    await expectFail(c, 1002);
  });

  it('a text message then a close: echo, then the close echo', async () => {
    const c = await echoServer.connect();
    await c.write(Buffer.concat([text('Hello World!'), close(1000)]));
    await expectText(c, 'Hello World!');
    await expectCloseEcho(c, 1000);
  });

  it.each([
    { name: 'a text frame', after: text('after close') },
    { name: 'a ping', after: ping('after close') },
    { name: 'a second close', after: close(1001) },
    { name: 'an invalid frame', after: frame({ opcode: 5 }) },
  ])('$name after the close frame is ignored', async ({ after }) => {
    const c = await echoServer.connect();
    await c.write(Buffer.concat([close(1000), after]));
    await expectCloseEcho(c, 1000);
  });

  it('a frame sent after the close echo arrived is ignored', async () => {
    const c = await echoServer.connect();
    await c.write(close(1000));
    const f = await c.next();
    expect(f.code).toBe(1000);
    await c.write(text('too late'));
    await c.closed;
    expect(c.peerEnded).toBe(true);
    expect(c.pending).toEqual([]);
  });

  it('a close inside a fragmented message: close echoed, the message dropped', async () => {
    const c = await echoServer.connect();
    await c.write(Buffer.concat([text('fragment1', { fin: false }), close(1000), cont('fragment2')]));
    await expectCloseEcho(c, 1000);
  });

  it('large messages then a close: all echoed, then the close', async () => {
    const c = await echoServer.connect();
    const payloads = [1, 2, 3, 4].map((i) => Buffer.from(ascii(256 * 1024, i)));
    await c.write(Buffer.concat([...payloads.map((p) => text(p)), close(1000)]));
    for (const p of payloads) await expectText(c, p);
    await expectCloseEcho(c, 1000);
  });

  it('a close written byte by byte is echoed', async () => {
    const c = await echoServer.connect();
    await c.writeChunks(close(1000, 'slowly'), 1);
    await expectCloseEcho(c, 1000);
  });
});

// ---------------------------------------------------------------------------------------------
// 8. Limits
// ---------------------------------------------------------------------------------------------

describe('8. limits', () => {
  let limited: Server;
  beforeAll(async () => {
    limited = await serve({ protocol: { session: { maxFrameSize: 1024, maxMessageSize: 4096 } } });
  });

  it('a frame of exactly maxFrameSize is echoed', async () => {
    const c = await limited.connect();
    await c.write(binary(bytes(1024)));
    await expectMessage(c, OP.BINARY, bytes(1024));
  });

  it('a frame over maxFrameSize fails with 1009 from its header alone', async () => {
    const c = await limited.connect();
    await c.write(binary(bytes(1025)).subarray(0, 8));
    await expectFail(c, 1009);
  });

  it('a 64-bit length far over maxFrameSize fails with 1009 from its header alone', async () => {
    const c = await limited.connect();
    await c.write(frame({ opcode: OP.TEXT, length: 2n ** 40n }));
    await expectFail(c, 1009);
  });

  it('a message of exactly maxMessageSize over fragments is echoed', async () => {
    const c = await limited.connect();
    const p = bytes(4096);
    await c.write(Buffer.concat([binary(p.subarray(0, 1024), { fin: false }), ...[1, 2].map((i) => cont(p.subarray(i * 1024, (i + 1) * 1024), { fin: false })), cont(p.subarray(3072))]));
    await expectMessage(c, OP.BINARY, p);
  });

  it('a message over maxMessageSize over fragments fails with 1009 at the header of the frame that passes it', async () => {
    const c = await limited.connect();
    const piece = bytes(1024);
    await c.write(Buffer.concat([
      text(Buffer.alloc(1024, 0x61), { fin: false }), cont(Buffer.alloc(1024, 0x62), { fin: false }),
      cont(Buffer.alloc(1024, 0x63), { fin: false }), cont(Buffer.alloc(1024, 0x64), { fin: false }),
      cont(piece).subarray(0, 8),
    ]));
    await expectFail(c, 1009);
  });

  it('a 64-bit length with the top bit set fails with 1002', async () => {
    const c = await echoServer.connect();
    await c.write(frame({ opcode: OP.BINARY, length: 2n ** 63n + 5n }));
    await expectFail(c, 1002);
  });

  it('a 64-bit length of 2^53 fails with 1009 from its header (default limits)', async () => {
    const c = await echoServer.connect();
    await c.write(frame({ opcode: OP.BINARY, length: 2n ** 53n }));
    await expectFail(c, 1009);
  });

  it('a frame over the default 16 MiB maxFrameSize fails with 1009 from its header', async () => {
    const c = await echoServer.connect();
    await c.write(frame({ opcode: OP.BINARY, length: 16 * 1024 * 1024 + 1 }));
    await expectFail(c, 1009);
  });
});

// ---------------------------------------------------------------------------------------------
// 9. Masking
// ---------------------------------------------------------------------------------------------

describe('9. masking', () => {
  it.each([
    { name: 'text', f: text('unmasked', { mask: false }) },
    { name: 'binary', f: binary(bytes(300), { mask: false }) },
    { name: 'ping', f: ping('unmasked', { mask: false }) },
    { name: 'close', f: close(1000, '', { mask: false }) },
    { name: 'continuation', f: Buffer.concat([text('masked', { fin: false }), cont('unmasked', { mask: false })]) },
  ])('an unmasked client $name frame fails with 1002', async ({ f }) => {
    const c = await echoServer.connect();
    await c.write(f);
    await expectFail(c, 1002);
  });

  it('an unmasked frame after valid ones fails after their echoes', async () => {
    const c = await echoServer.connect();
    await c.write(Buffer.concat([text('one'), text('two'), text('three', { mask: false })]));
    await expectText(c, 'one');
    await expectText(c, 'two');
    await expectFail(c, 1002);
  });
});

// ---------------------------------------------------------------------------------------------
// 10. Opening handshake
// ---------------------------------------------------------------------------------------------

describe('10. opening handshake', () => {
  it('answers the RFC 6455 example key with its accept value', async () => {
    const c = await echoServer.open(upgradeRequest({ key: 'dGhlIHNhbXBsZSBub25jZQ==' }));
    expect(c.response!.status).toBe(101);
    expect(c.response!.headers['sec-websocket-accept']).toBe('s3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
    expect(expectedAccept('dGhlIHNhbXBsZSBub25jZQ==')).toBe('s3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
    expect(c.response!.headers.upgrade).toBe('websocket');
    expect(c.response!.headers.connection?.toLowerCase()).toBe('upgrade');
    expect(c.response!.headers['sec-websocket-protocol']).toBeUndefined();
    expect(c.response!.headers['sec-websocket-extensions']).toBeUndefined();
  });

  it('a permessage-deflate offer is not accepted, and RSV1 then fails with 1002', async () => {
    const c = await echoServer.connect({ headers: { 'Sec-WebSocket-Extensions': 'permessage-deflate; client_max_window_bits' } });
    expect(c.response!.headers['sec-websocket-extensions']).toBeUndefined();
    await c.write(text('plain'));
    await expectText(c, 'plain');
    await c.write(text('compressed?', { rsv: RSV1 }));
    await expectFail(c, 1002);
  });

  it('accepts header values in any case and Connection with several tokens', async () => {
    const c = await echoServer.connect({ upgrade: 'WebSocket', connection: 'keep-alive, Upgrade' });
    await c.write(text('ok'));
    await expectText(c, 'ok');
  });

  it.each([
    { name: 'missing', key: null },
    { name: 'of 15 bytes', key: Buffer.alloc(15, 1).toString('base64') },
    { name: 'of 17 bytes', key: Buffer.alloc(17, 1).toString('base64') },
    { name: 'not base64', key: 'not a key, not base64!==' },
    { name: 'empty', key: '' },
  ])('a Sec-WebSocket-Key $name is refused with 400', async ({ key }) => {
    const c = await echoServer.open(upgradeRequest({ key }));
    expect(c.response!.status).toBe(400);
    await c.closed;
    expect(c.peerEnded).toBe(true);
  });

  it.each([
    { name: '8', version: '8' },
    { name: '7', version: '7' },
    { name: 'missing', version: null },
  ])('Sec-WebSocket-Version $name is refused with 426 naming version 13', async ({ version }) => {
    const c = await echoServer.open(upgradeRequest({ version }));
    expect(c.response!.status).toBe(426);
    expect(c.response!.headers['sec-websocket-version']).toBe('13');
    await c.closed;
  });

  it('a POST upgrade is refused with 405', async () => {
    const c = await echoServer.open(upgradeRequest({ method: 'POST', headers: { 'Content-Length': '0' } }));
    expect(c.response!.status).toBe(405);
    expect(c.response!.headers.allow).toBe('GET');
    await c.closed;
  });

  it('an HTTP/1.0 upgrade is refused with 400', async () => {
    const c = await echoServer.open(upgradeRequest({ httpVersion: '1.0' }));
    expect(c.response!.status).toBe(400);
    await c.closed;
  });

  it('a plain request to a server without an http handler gets 426', async () => {
    const c = await echoServer.open('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n');
    expect(c.response!.status).toBe(426);
    expect(c.response!.headers.upgrade).toBe('websocket');
    expect(c.response!.headers.connection).toMatch(/\bupgrade\b/i);
    expect(c.response!.headers['sec-websocket-version']).toBe('13');
    await c.closed;
  });

  it('an Upgrade header without Connection: upgrade is not an upgrade: 426', async () => {
    const c = await echoServer.open(upgradeRequest({ connection: 'close' }));
    expect(c.response!.status).toBe(426);
    await c.closed;
  });

  it('Upgrade naming another protocol gets 426', async () => {
    const c = await echoServer.open(upgradeRequest({ upgrade: 'h2c' }));
    expect(c.response!.status).toBe(426);
    await c.closed;
  });

  describe('subprotocols', () => {
    let server: Server;
    beforeAll(async () => {
      server = await serve({ protocol: { subprotocols: ['chat.v2', 'chat.v1'] } });
    });

    it.each([
      { offered: 'chat.v1, chat.v2', chosen: 'chat.v2' },
      { offered: 'chat.v2, chat.v1', chosen: 'chat.v2' },
      { offered: 'other, chat.v1', chosen: 'chat.v1' },
      { offered: 'chat.v1', chosen: 'chat.v1' },
      { offered: 'other, another', chosen: undefined },
      { offered: null, chosen: undefined },
    ])('offered $offered: answered with $chosen', async ({ offered, chosen }) => {
      const c = await server.connect({ protocols: offered });
      expect(c.response!.headers['sec-websocket-protocol']).toBe(chosen);
      expect((await server.rec.session(c.id)).protocol).toBe(chosen);
      await c.write(text('works'));
      await expectText(c, 'works');
    });

    it('repeated Sec-WebSocket-Protocol headers are combined', async () => {
      const c = await server.connect({ headers: { 'Sec-WebSocket-Protocol': 'other', 'sec-websocket-protocol': 'chat.v1' } });
      expect(c.response!.headers['sec-websocket-protocol']).toBe('chat.v1');
    });
  });

  it('a request head over maxHeaderSize gets 431', async () => {
    const server = await serve({ protocol: { maxHeaderSize: 1024 } });
    const c = await server.open(upgradeRequest({ headers: { 'X-Padding': 'x'.repeat(2000) } }));
    expect(c.response!.status).toBe(431);
    await c.closed;
    const ok = await server.connect({ headers: { 'X-Padding': 'x'.repeat(200) } });
    expect(ok.response!.status).toBe(101);
  });

  it('a client that sends half a request is closed after requestTimeout', async () => {
    const server = await serve({ protocol: { requestTimeout: 100 } });
    const c = await RawClient.open(server.port, upgradeRequest().slice(0, 40)).catch((e: Error) => e);
    expect(c).toBeInstanceOf(Error);
    expect((c as Error).message).toMatch(/connection closed/);
  });

  it('a frame in the same TCP write as the request is handled', async () => {
    const c = await echoServer.connect({}, Buffer.concat([text('early bird'), ping('early ping'), binary(bytes(3000))]));
    await expectText(c, 'early bird');
    await expectControl(c, OP.PONG, 'early ping');
    await expectMessage(c, OP.BINARY, bytes(3000));
  });

  it('a close in the same TCP write as the request is echoed', async () => {
    const c = await echoServer.connect({}, close(1000));
    await expectCloseEcho(c, 1000);
  });

  it('an http option serves plain requests and upgrades still work', async () => {
    const server = await serve({
      protocol: {
        http: (req, res) => {
          res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': '3' });
          res.end(req.url === '/health' ? 'ok\n' : 'no\n');
        },
      },
    });
    const c = await server.open('GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    expect(c.response!.status).toBe(200);
    expect(c.response!.body.toString()).toBe('ok\n');
    // Keep-alive: the same connection serves another request, then an upgrade.
    const again = await c.request('GET /other HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    expect(again.body.toString()).toBe('no\n');
    const ws = await server.connect();
    await ws.write(text('still a websocket server'));
    await expectText(ws, 'still a websocket server');
  });

  describe('origins', () => {
    let server: Server;
    beforeAll(async () => {
      server = await serve({ protocol: { origins: ['https://good.example'] } });
    });

    it.each([
      { origin: 'https://evil.example' },
      { origin: 'https://good.example.evil' },
      { origin: null },
    ])('origin $origin is refused with 403', async ({ origin }) => {
      const c = await server.open(upgradeRequest({ origin }));
      expect(c.response!.status).toBe(403);
      await c.closed;
    });

    it('an allowed origin (in any case) is upgraded', async () => {
      const c = await server.connect({ origin: 'HTTPS://Good.Example' });
      await c.write(text('welcome'));
      await expectText(c, 'welcome');
    });

    it('a function decides too', async () => {
      const s = await serve({ protocol: { origins: (origin) => origin?.endsWith('.trusted') ?? false } });
      expect((await s.open(upgradeRequest({ origin: 'https://a.trusted' }))).response!.status).toBe(101);
      expect((await s.open(upgradeRequest({ origin: 'https://a.untrusted' }))).response!.status).toBe(403);
    });
  });

  it('init rejecting with 401, headers and a body', async () => {
    const server = await serve({
      handler: {
        init: (req) => (req.headers.authorization === 'Bearer good'
          ? { state: { id: req.url } }
          : { reject: { status: 401, headers: { 'WWW-Authenticate': 'Bearer realm="corral"' }, body: 'who are you?' } }),
      },
    });
    const c = await server.open(upgradeRequest());
    expect(c.response!.status).toBe(401);
    expect(c.response!.headers['www-authenticate']).toBe('Bearer realm="corral"');
    expect(c.response!.body.toString()).toBe('who are you?');
    await c.closed;
    const ok = await server.connect({ headers: { Authorization: 'Bearer good' } });
    expect(ok.response!.status).toBe(101);
  });

  it('init rejecting with a bare status', async () => {
    const server = await serve({ handler: { init: () => ({ reject: 403 }) } });
    const c = await server.open(upgradeRequest());
    expect(c.response!.status).toBe(403);
    await c.closed;
  });

  it('init throwing gets 500, init too slow gets 503', async () => {
    const thrower = await serve({ handler: { init: () => { throw new Error('init failed'); } } });
    expect((await thrower.open(upgradeRequest())).response!.status).toBe(500);
    const slow = await serve({ protocol: { initTimeout: 50 }, handler: { init: () => new Promise(() => {}) } });
    expect((await slow.open(upgradeRequest())).response!.status).toBe(503);
  });

  it('init headers are added to the 101', async () => {
    const server = await serve({ handler: { init: (req) => ({ state: { id: req.url }, headers: { 'X-Session': 'abc', 'Set-Cookie': ['a=1', 'b=2'] } }) } });
    const c = await server.connect();
    expect(c.response!.headers['x-session']).toBe('abc');
    expect(c.response!.headers['set-cookie']).toBe('a=1, b=2');
  });
});

// ---------------------------------------------------------------------------------------------
// 11. Session behaviour
// ---------------------------------------------------------------------------------------------

describe('11. session behaviour', () => {
  it('idleTimeout closes with 1001; terminate says timeout', async () => {
    const server = await serve({ protocol: { session: { idleTimeout: 100 } } });
    const c = await server.connect();
    const f = await c.next();
    expect(f.opcode).toBe(OP.CLOSE);
    expect(f.code).toBe(1001);
    await c.sendClose(1001);
    await c.closed;
    expect(c.peerEnded).toBe(true);
    expect(await server.rec.ended(c.id)).toEqual({ type: 'timeout' });
  });

  it('keepalive pings arrive; a client that stops answering is closed after pongTimeout', async () => {
    // pongTimeout generous enough that a loaded machine still answers the first pings in time.
    const server = await serve({ protocol: { session: { pingInterval: 20, pongTimeout: 1500 } } });
    const c = await server.connect();
    for (let i = 0; i < 3; i++) {
      const f = await c.next();
      checkServerFrame(f);
      expect(describeFrame(f)).toBe('ping 0 bytes');
      await c.write(pong(f.payload));
    }
    // The fourth ping goes unanswered.
    expect(describeFrame(await c.next())).toBe('ping 0 bytes');
    const f = await c.next();
    expect(f.opcode).toBe(OP.CLOSE);
    expect(f.code).toBe(1001);
    await c.sendClose(1001);
    await c.closed;
    expect(await server.rec.ended(c.id)).toEqual({ type: 'timeout' });
  });

  describe('closing from the handler', () => {
    let server: Server;
    beforeAll(async () => {
      server = await serve({
        handler: {
          websocketHandle(frame, _state, session) {
            if (frame.type !== 'text') return undefined;
            const [cmd, arg] = frame.data.split(' ');
            if (cmd === 'stop') return { reply: 'stopping', stop: { code: Number(arg), reason: 'bye' } };
            if (cmd === 'stop-true') return { stop: true };
            if (cmd === 'close') {
              session.close(Number(arg), 'bye');
              return undefined;
            }
            if (cmd === 'close-frame') return { reply: [{ type: 'close', code: Number(arg), reason: 'frame' }, 'never sent'] };
            return { reply: frame.data };
          },
        },
      });
    });

    it('a stop result sends the replies, then close, and waits for the echo before closing TCP', async () => {
      const c = await server.connect();
      await c.write(text('stop 1000'));
      await expectText(c, 'stopping');
      const f = await c.next();
      expect([f.code, f.reason]).toEqual([1000, 'bye']);
      // Frames after the server's close are not answered; the server keeps the TCP connection until our close.
      await c.write(text('ignored'));
      await c.write(ping('ignored'));
      expect(c.peerEnded).toBe(false);
      await c.sendClose(1000);
      await c.closed;
      expect(c.peerEnded).toBe(true);
      expect(c.pending).toEqual([]);
      expect(await server.rec.ended(c.id)).toEqual({ type: 'stop' });
    });

    it('stop: true closes with 1000 and no reason', async () => {
      const c = await server.connect();
      await c.write(text('stop-true'));
      const f = await c.next();
      expect([f.code, f.reason]).toEqual([1000, '']);
      await c.sendClose(1000);
      await c.closed;
    });

    it('session.close(code, reason) sends close and waits for the echo', async () => {
      const c = await server.connect();
      await c.write(text('close 4000'));
      const f = await c.next();
      expect([f.code, f.reason]).toEqual([4000, 'bye']);
      expect(c.peerEnded).toBe(false);
      await c.sendClose(4000);
      await c.closed;
      expect(c.peerEnded).toBe(true);
      expect(await server.rec.ended(c.id)).toEqual({ type: 'stop' });
    });

    it('a close frame in the replies ends the replies', async () => {
      const c = await server.connect();
      await c.write(text('close-frame 3001'));
      const f = await c.next();
      expect([f.code, f.reason]).toEqual([3001, 'frame']);
      await c.sendClose();
      await c.closed;
      expect(c.pending).toEqual([]);
    });

    it.each([
      { how: 'stop', code: 1005 },
      { how: 'stop', code: 999 },
      { how: 'close', code: 1006 },
      { how: 'close', code: 5000 },
      { how: 'close-frame', code: 1015 },
    ])('an invalid close code ($how $code) from the handler is sent as 1002', async ({ how, code }) => {
      const c = await server.connect();
      await c.write(text(`${how} ${code}`));
      if (how === 'stop') await expectText(c, 'stopping');
      const f = await c.next();
      expect(f.opcode).toBe(OP.CLOSE);
      expect(f.code).toBe(1002);
      await c.sendClose(1002);
      await c.closed;
    });
  });

  it('session.info reaches websocketInfo in order with frames', async () => {
    const server = await serve({
      handler: {
        websocketHandle(frame, _state, session) {
          if (frame.type !== 'text') return undefined;
          session.info(`after ${frame.data}`);
          return { reply: `echo ${frame.data}` };
        },
        websocketInfo(message) {
          return { reply: `info ${String(message)}` };
        },
      },
    });
    const c = await server.connect();
    await c.write(Buffer.concat([text('a'), text('b')]));
    for (const want of ['echo a', 'info after a', 'echo b', 'info after b']) await expectText(c, want);
    // From outside the handler, between frames.
    const session = await server.rec.session(c.id);
    session.info('from outside');
    await expectText(c, 'info from outside');
    await c.write(text('c'));
    for (const want of ['echo c', 'info after c']) await expectText(c, want);
  });

  it('a state returned by one callback is the state of the next, infos included', async () => {
    const server = await serve({
      handler: {
        init: (req) => ({ state: { id: req.url, n: 0 } as St }),
        websocketHandle(frame, state, session) {
          const s = state as St & { n: number };
          session.info('bump');
          return { state: { ...s, n: s.n + 1 }, reply: `frame n=${s.n}` };
        },
        websocketInfo(_m, state) {
          const s = state as St & { n: number };
          return { state: { ...s, n: s.n + 10 }, reply: `info n=${s.n}` };
        },
      },
    });
    const c = await server.connect();
    await c.write(Buffer.concat([text('x'), text('y')]));
    for (const want of ['frame n=0', 'info n=1', 'frame n=11', 'info n=12']) await expectText(c, want);
  });

  it('async callbacks run one at a time, in order', async () => {
    const gate = deferred();
    const started = deferred();
    let running = 0;
    let maxRunning = 0;
    const server = await serve({
      handler: {
        async websocketHandle(frame, _state, session) {
          running++;
          maxRunning = Math.max(maxRunning, running);
          try {
            if (frame.type !== 'text') return undefined;
            if (frame.data === '1') {
              started.resolve();
              await gate.promise;
              session.info('queued info');
            }
            await Promise.resolve();
            return { reply: `reply ${frame.data}` };
          } finally {
            running--;
          }
        },
        async websocketInfo(message) {
          running++;
          maxRunning = Math.max(maxRunning, running);
          await Promise.resolve();
          running--;
          return { reply: `info ${String(message)}` };
        },
      },
    });
    const c = await server.connect();
    await c.write(Buffer.concat([text('1'), text('2')]));
    await started.promise;
    // Message 1 is held; an info, a ping and a third message arrive meanwhile.
    (await server.rec.session(c.id)).info('outside');
    await c.write(Buffer.concat([ping('later'), text('3')]));
    gate.resolve();
    const got: string[] = [];
    for (let i = 0; i < 6; i++) {
      const f = await c.next();
      got.push(`${describeFrame(f).split(' ')[0]} ${f.payload.toString()}`);
    }
    expect(got).toEqual(['text reply 1', 'text reply 2', 'text info outside', 'text info queued info', 'pong later', 'text reply 3']);
    expect(maxRunning).toBe(1);
  });

  describe('a crashing handler', () => {
    it.each([
      { name: 'throws', handle: (): CallbackResult<St> => { throw new Error('boom'); } },
      { name: 'rejects', handle: async (): Promise<CallbackResult<St>> => { throw new Error('boom'); } },
      { name: 'returns a non-object', handle: (): CallbackResult<St> => 42 as unknown as CallbackResult<St> },
    ])('that $name closes with 1011; terminate says crash', async ({ handle }) => {
      const server = await serve({ handler: { websocketHandle: (f) => (f.type === 'text' && f.data === 'crash' ? handle() : echo(f)) } });
      const c = await server.connect();
      await c.write(Buffer.concat([text('fine'), text('crash'), text('never echoed')]));
      await expectText(c, 'fine');
      await expectFail(c, 1011);
      const reason = await server.rec.ended(c.id);
      expect(reason.type).toBe('crash');
    });

    it.each([
      { name: 'a ping over 125 bytes', reply: { type: 'ping', data: 'x'.repeat(126) }, async: false },
      { name: 'a pong over 125 bytes, from an async callback', reply: { type: 'pong', data: 'x'.repeat(200) }, async: true },
      { name: 'an unknown frame type', reply: { type: 'bogus' }, async: false },
      { name: 'an unknown frame type, from an async callback', reply: { type: 'bogus' }, async: true },
    ])('a reply that cannot be sent ($name) closes with 1011; the server carries on', async ({ reply, async }) => {
      const bad = { reply: reply as unknown as OutFrame };
      const server = await serve({
        handler: {
          websocketHandle(f) {
            if (f.type !== 'text' || f.data !== 'bad') return echo(f);
            return async ? Promise.resolve(bad) : bad;
          },
        },
      });
      const c = await server.connect();
      await c.write(Buffer.concat([text('fine'), text('bad'), text('never echoed')]));
      await expectText(c, 'fine');
      await expectFail(c, 1011);
      expect((await server.rec.ended(c.id)).type).toBe('crash');
      const other = await server.connect();
      await other.write(text('still serving'));
      await expectText(other, 'still serving');
    });

    it('websocketInit throwing closes with 1011 before any frame is handled', async () => {
      const server = await serve({ handler: { websocketInit: () => { throw new Error('init boom'); } } });
      const c = await server.connect({}, text('too early'));
      await expectFail(c, 1011);
      expect((await server.rec.ended(c.id)).type).toBe('crash');
    });
  });

  describe('terminate: once, with the reason of each ending', () => {
    /** Run `scenario` against a fresh server, stop the listener, and return every terminate call of the client. */
    async function ending(
      scenario: (c: Client, server: Server) => Promise<void>,
      opts: Parameters<typeof serve>[0] = {},
    ): Promise<TerminateReason[]> {
      const server = await serve(opts);
      const c = await server.connect();
      await scenario(c, server);
      await server.rec.ended(c.id);
      await server.listener.stop();
      return server.rec.ends.get(c.id)!;
    }

    it('remote, with the code and reason of the peer', async () => {
      const ends = await ending(async (c) => {
        await c.sendClose(4001, 'all done');
        await expectCloseEcho(c, 4001);
      });
      expect(ends).toEqual([{ type: 'remote', code: 4001, reason: 'all done' }]);
    });

    it('remote, without a code', async () => {
      const ends = await ending(async (c) => {
        await c.sendClose();
        await expectCloseEcho(c, undefined);
      });
      expect(ends).toEqual([{ type: 'remote', reason: '' }]);
    });

    it('stop', async () => {
      const ends = await ending(async (c, server) => {
        (await server.rec.session(c.id)).close(1000, 'go');
        expect((await c.next()).code).toBe(1000);
        await c.sendClose(1000);
        await c.closed;
      });
      expect(ends).toEqual([{ type: 'stop' }]);
    });

    it('timeout', async () => {
      const ends = await ending(async (c) => {
        expect((await c.next()).code).toBe(1001);
        await c.sendClose(1001);
        await c.closed;
      }, { protocol: { session: { idleTimeout: 50 } } });
      expect(ends).toEqual([{ type: 'timeout' }]);
    });

    it('shutdown: listener stop closes with 1001', async () => {
      const server = await serve();
      const c = await server.connect();
      await c.write(text('before shutdown'));
      await expectText(c, 'before shutdown');
      const stopped = server.listener.stop();
      const f = await c.next();
      expect([f.opcode, f.code]).toEqual([OP.CLOSE, 1001]);
      await c.sendClose(1001);
      await c.closed;
      expect(c.peerEnded).toBe(true);
      await stopped;
      expect(server.rec.ends.get(c.id)).toEqual([{ type: 'shutdown' }]);
    });

    it.each([
      { error: 'badframe', bytes: () => text('x', { rsv: 2 }), code: 1002 },
      { error: 'badframe', bytes: () => text('x', { mask: false }), code: 1002 },
      { error: 'badframe', bytes: () => close(1004), code: 1002 },
      { error: 'badencoding', bytes: () => text(hex('ff')), code: 1007 },
      { error: 'badencoding', bytes: () => close(1000, hex('ff')), code: 1007 },
      { error: 'toobig', bytes: () => binary(bytes(2000)), code: 1009 },
    ])('error $error (close $code)', async ({ bytes: make, code, error }) => {
      const ends = await ending(async (c) => {
        await c.write(make());
        await expectFail(c, code);
      }, { protocol: { session: { maxFrameSize: 1000 } } });
      expect(ends).toHaveLength(1);
      expect(ends[0]).toMatchObject({ type: 'error', error });
    });

    it('error closed: the TCP connection is cut without a close frame', async () => {
      const ends = await ending(async (c) => {
        await c.write(text('hello'));
        await expectText(c, 'hello');
        c.end();
        await c.closed;
      });
      expect(ends).toEqual([{ type: 'error', error: 'closed' }]);
    });

    it('error closed: cut in the middle of a frame', async () => {
      const ends = await ending(async (c) => {
        await c.write(text(ascii(1000)).subarray(0, 100));
        c.destroy();
        await c.closed;
      });
      expect(ends).toEqual([{ type: 'error', error: 'closed' }]);
    });

    it('terminate waits for an async callback in flight, and sees the state it returns', async () => {
      const gate = deferred();
      const started = deferred();
      const log: string[] = [];
      const server = await serve({
        handler: {
          init: (req) => ({ state: { id: req.url, n: 0 } as St }),
          async websocketHandle(_f, state) {
            log.push('handle start');
            started.resolve();
            await gate.promise;
            log.push('handle end');
            return { state: { ...state, n: 1 } as St };
          },
          terminate(reason, _req, state) {
            log.push(`terminate ${reason.type} n=${(state as St & { n: number }).n}`);
          },
        },
      });
      const c = await server.connect();
      await c.write(text('slow'));
      await started.promise;
      c.destroy();
      // The connection is gone on the server side too: its socket closed, its protocol returned.
      await server.listener.waitForConnections('==', 0);
      gate.resolve();
      expect(await server.rec.ended(c.id)).toMatchObject({ type: 'error', error: 'closed' });
      expect(log).toEqual(['handle start', 'handle end', 'terminate error n=1']);
    });

    it('crash', async () => {
      const ends = await ending(async (c) => {
        await c.write(text('crash'));
        await expectFail(c, 1011);
      }, { handler: { websocketHandle: () => { throw new Error('boom'); } } });
      expect(ends).toHaveLength(1);
      expect(ends[0]!.type).toBe('crash');
    });
  });

  it('a shutdown that begins while init runs refuses the upgrade with 503', async () => {
    const gate = deferred();
    const started = deferred();
    const shutdown = new AbortController();
    const server = http.createServer();
    server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
      void handleUpgrade(req, socket, head, {
        async init() {
          started.resolve();
          await gate.promise;
          return { state: {} };
        },
        websocketHandle: () => undefined,
      }, { signal: shutdown.signal });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const pending = RawClient.open((server.address() as net.AddressInfo).port, upgradeRequest());
      await started.promise;
      shutdown.abort();
      gate.resolve();
      const c = await pending;
      expect(c.response!.status).toBe(503);
      await c.closed;
    } finally {
      server.close();
    }
  });

  it('a session given an already aborted signal closes with 1001 at once', async () => {
    const ends: TerminateReason[] = [];
    const ended = deferred();
    const shutdown = new AbortController();
    shutdown.abort();
    const server = net.createServer((socket) => {
      new Session<object>({
        socket, role: 'server', state: {}, options: SESSION_DEFAULTS, req: {}, signal: shutdown.signal,
        handler: { websocketHandle: () => undefined, terminate: (r) => { ends.push(r); ended.resolve(); } },
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const c = await RawClient.raw((server.address() as net.AddressInfo).port);
      clients.push(c);
      const f = await c.next();
      expect([f.opcode, f.code]).toEqual([OP.CLOSE, 1001]);
      await c.sendClose(1001);
      await c.closed;
      expect(c.peerEnded).toBe(true);
      await ended.promise;
      expect(ends).toEqual([{ type: 'shutdown' }]);
    } finally {
      server.close();
    }
  });

  it('listener stop closes every open session with 1001 and waits for them', async () => {
    const server = await serve();
    const cs = await Promise.all([1, 2, 3].map(() => server.connect()));
    for (const c of cs) {
      await c.write(text('hi'));
      await expectText(c, 'hi');
    }
    const stopped = server.listener.stop();
    for (const c of cs) {
      const f = await c.next();
      expect([f.opcode, f.code]).toEqual([OP.CLOSE, 1001]);
    }
    await Promise.all(cs.map((c) => c.sendClose(1001)));
    await Promise.all(cs.map((c) => c.closed));
    await stopped;
    for (const c of cs) {
      expect(c.peerEnded).toBe(true);
      expect(server.rec.ends.get(c.id)).toEqual([{ type: 'shutdown' }]);
    }
  });
});
