/**
 * permessage-deflate on the wire: a Corral listener and a Corral client with compression on,
 * spoken to by the raw peers of raw-client.ts and raw-server.ts. The peers compress and inflate
 * with node:zlib directly, not with the codec under test, so every frame is checked byte for
 * byte against RFC 7692: RSV1 on the first frame only, the 0x00 0x00 0xff 0xff tail removed,
 * context takeover, limits applied to the inflated size, order kept around slow compressions.
 */

import * as zlib from 'node:zlib';
import fc from 'fast-check';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { BadOptionError, startListener, tcp, type Listener } from '@corral/listener';
import {
  connect, websocketProtocol, type InFrame, type Session, type TerminateReason, type WebSocketHandler,
  type WebSocketProtocolOptions,
} from '../src/index.js';
import { OP, RSV1, RawClient, close, cont, frame, ping, text, binary, describeFrame, type RawFrame } from './raw-client.js';
import { RawServer } from './raw-server.js';

const TAIL = Buffer.from([0x00, 0x00, 0xff, 0xff]);

/** Compress one message alone (no context takeover), as §7.2.1 sends it. */
function deflate(data: Buffer | string, windowBits = 15): Buffer {
  const out = zlib.deflateRawSync(Buffer.from(data), { finishFlush: zlib.constants.Z_SYNC_FLUSH, windowBits });
  expect(out.subarray(-4).equals(TAIL)).toBe(true);
  return out.subarray(0, -4);
}

/** Inflate one message payload as §7.2.2 says (append the tail). */
function inflate(payload: Buffer, windowBits = 15): Buffer {
  return zlib.inflateRawSync(Buffer.concat([payload, TAIL]), { finishFlush: zlib.constants.Z_SYNC_FLUSH, windowBits });
}

/** A zlib stream kept across messages (context takeover), flushed after each one. */
class Stream {
  readonly #z: zlib.DeflateRaw | zlib.InflateRaw;
  #out: Buffer[] = [];

  constructor(kind: 'deflate' | 'inflate') {
    this.#z = kind === 'deflate' ? zlib.createDeflateRaw({ windowBits: 15 }) : zlib.createInflateRaw();
    this.#z.on('data', (d: Buffer) => this.#out.push(d));
  }

  async push(data: Buffer | string): Promise<Buffer> {
    this.#z.write(Buffer.from(data));
    await new Promise<void>((resolve) => this.#z.flush(zlib.constants.Z_SYNC_FLUSH, () => resolve()));
    return Buffer.concat(this.#out.splice(0));
  }

  /** Compress one message: the flushed output without its tail. */
  async compress(data: Buffer | string): Promise<Buffer> {
    const all = await this.push(data);
    expect(all.subarray(-4).equals(TAIL)).toBe(true);
    return all.subarray(0, -4);
  }

  close(): void {
    this.#z.close();
  }
}

const OFFER = 'permessage-deflate; client_max_window_bits';

// ---------------------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------------------

type St = { id: string };
const listeners: Listener<typeof tcp, unknown>[] = [];
const clients: RawClient[] = [];
let refSeq = 0;
let seq = 0;

interface Server {
  port: number;
  ends: Map<string, TerminateReason>;
  ended(id: string): Promise<TerminateReason>;
  connect(extensions?: string | null, headers?: Record<string, string>): Promise<RawClient & { id: string }>;
}

function echo(f: InFrame): { reply: InFrame } | undefined {
  return f.type === 'text' || f.type === 'binary' ? { reply: f } : undefined;
}

async function serve(protocol: WebSocketProtocolOptions<unknown>, custom: Partial<WebSocketHandler<St>> = {}): Promise<Server> {
  const ends = new Map<string, TerminateReason>();
  const waiters = new Map<string, (r: TerminateReason) => void>();
  const handler: WebSocketHandler<St> = {
    init: custom.init ?? ((req) => ({ state: { id: req.url } })),
    websocketHandle: custom.websocketHandle ?? echo,
    terminate(reason, req) {
      ends.set(String(req.url), reason);
      waiters.get(String(req.url))?.(reason);
    },
  };
  const listener = await startListener(`ws-deflate-${process.pid}-${++refSeq}`, tcp, { socketOpts: { host: '127.0.0.1' } },
    websocketProtocol(handler, protocol), undefined);
  listeners.push(listener as unknown as Listener<typeof tcp, unknown>);
  const port = listener.getPort()!;
  return {
    port,
    ends,
    ended: (id) => ends.has(id) ? Promise.resolve(ends.get(id)!) : new Promise((resolve) => waiters.set(id, resolve)),
    async connect(extensions = OFFER, headers = {}) {
      const id = `/c${++seq}`;
      const c = await RawClient.connect(port, {
        path: id,
        headers: { ...(extensions === null ? {} : { 'Sec-WebSocket-Extensions': extensions }), ...headers },
      });
      clients.push(c);
      return Object.assign(c, { id });
    },
  };
}

afterEach(() => {
  for (const c of clients.splice(0)) c.destroy();
});

afterAll(async () => {
  await Promise.all(listeners.map((l) => l.stop()));
});

/** The next message, its frames reassembled; with `compressed`, RSV1 is checked on the first frame only. */
async function nextMessage(c: RawClient, compressed: boolean): Promise<{ opcode: number; payload: Buffer; frames: RawFrame[] }> {
  const frames: RawFrame[] = [await c.next()];
  while (!frames.at(-1)!.fin) frames.push(await c.next());
  expect(frames[0]!.rsv, describeFrame(frames[0]!)).toBe(compressed ? RSV1 : 0);
  for (const f of frames.slice(1)) expect(f.rsv, describeFrame(f)).toBe(0);
  expect(frames.every((f) => !f.masked)).toBe(true);
  const payload = Buffer.concat(frames.map((f) => f.payload));
  return { opcode: frames[0]!.opcode, payload: compressed ? inflate(payload) : payload, frames };
}

async function expectClose(c: RawClient, code: number): Promise<void> {
  const f = await c.next();
  expect(describeFrame(f)).toContain('close');
  expect(f.code).toBe(code);
  await c.closed;
}

const COMPRESSIBLE = Buffer.from('{"user":"corral","event":"update","payload":[1,2,3,4,5,6,7,8]}'.repeat(40));

describe('server: negotiation on the wire', () => {
  it.each([
    [OFFER, 'permessage-deflate'],
    ['permessage-deflate', 'permessage-deflate'],
    ['permessage-deflate; server_no_context_takeover; client_no_context_takeover', 'permessage-deflate; server_no_context_takeover; client_no_context_takeover'],
    ['permessage-deflate; server_max_window_bits=10; client_max_window_bits=12', 'permessage-deflate; server_max_window_bits=10; client_max_window_bits=12'],
    ['x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=16, permessage-deflate', 'permessage-deflate'],
  ])('offer %j is answered %j', async (offer, answer) => {
    const s = await serve({ compress: true });
    const c = await s.connect(offer);
    expect(c.response!.headers['sec-websocket-extensions']).toBe(answer);
  });

  it('the server settings narrow the answer', async () => {
    const s = await serve({ perMessageDeflate: { serverNoContextTakeover: true, serverMaxWindowBits: 11, clientMaxWindowBits: 10 } });
    const c = await s.connect(OFFER);
    expect(c.response!.headers['sec-websocket-extensions'])
      .toBe('permessage-deflate; server_no_context_takeover; server_max_window_bits=11; client_max_window_bits=10');
    // An offer that does not let the server limit the client's window is declined.
    const d = await s.connect('permessage-deflate');
    expect(d.response!.headers['sec-websocket-extensions']).toBeUndefined();
  });

  it('compress off, or init saying compress: false, declines every offer; RSV1 then fails with 1002', async () => {
    for (const s of [
      await serve({}),
      await serve({ compress: true }, { init: (req) => ({ state: { id: req.url }, compress: false }) }),
    ]) {
      const c = await s.connect(OFFER);
      expect(c.response!.headers['sec-websocket-extensions']).toBeUndefined();
      await c.write(text(deflate('hello'), { rsv: RSV1 }));
      await expectClose(c, 1002);
    }
  });

  it('compress and perMessageDeflate together, or a bad setting, fail before the listener starts', () => {
    const handler = { websocketHandle: () => undefined };
    expect(() => websocketProtocol(handler, { compress: true, perMessageDeflate: true })).toThrow(BadOptionError);
    expect(() => websocketProtocol(handler, { compress: { level: 10 } })).toThrow(/compress\.level/);
    expect(() => websocketProtocol(handler, { perMessageDeflate: { serverMaxWindowBits: 7 } })).toThrow(/perMessageDeflate\.serverMaxWindowBits/);
    expect(() => websocketProtocol(handler, { compress: 'yes' as unknown as boolean })).toThrow(BadOptionError);
  });
});

describe('server: messages', () => {
  it('inflates a compressed message, and compresses its echo with RSV1 on the first frame only', async () => {
    const s = await serve({ compress: { threshold: 0 } });
    const c = await s.connect();
    await c.write(text(deflate('Hello'), { rsv: RSV1 }));
    const m = await nextMessage(c, true);
    expect(m.opcode).toBe(OP.TEXT);
    expect(m.payload.toString()).toBe('Hello');
    // RFC 7692 §7.2.3.1: "Hello" alone is f2 48 cd c9 c9 07 00.
    expect(m.frames[0]!.payload.toString('hex')).toBe('f248cdc9c90700');
  });

  it('messages under the threshold and uncompressed messages go out without RSV1', async () => {
    const s = await serve({ compress: { threshold: 100 } });
    const c = await s.connect();
    await c.write(binary(deflate(Buffer.alloc(50, 7)), { rsv: RSV1 }));
    expect((await nextMessage(c, false)).payload.equals(Buffer.alloc(50, 7))).toBe(true);
    // A message the client sent uncompressed is legal too; its echo is compressed by size.
    await c.write(binary(COMPRESSIBLE));
    expect((await nextMessage(c, true)).payload.equals(COMPRESSIBLE)).toBe(true);
  });

  it('a compressed message in fragments, with a ping between them: the pong first, then the message', async () => {
    const s = await serve({ compress: true });
    const c = await s.connect();
    const z = deflate(COMPRESSIBLE);
    const third = Math.floor(z.length / 3);
    await c.write(Buffer.concat([
      text(z.subarray(0, third), { rsv: RSV1, fin: false }),
      ping('between'),
      cont(z.subarray(third, 2 * third), { fin: false }),
      cont(z.subarray(2 * third)),
    ]));
    const pong = await c.next();
    expect(pong.opcode).toBe(OP.PONG);
    expect(pong.payload.toString()).toBe('between');
    expect((await nextMessage(c, true)).payload.equals(COMPRESSIBLE)).toBe(true);
  });

  it('context takeover: messages compressed over one window by the client are inflated in turn', async () => {
    const s = await serve({ compress: { threshold: 1 << 30 } });
    const c = await s.connect();
    const z = new Stream('deflate');
    const sent: string[] = [];
    for (let i = 0; i < 20; i++) {
      const msg = `message ${i}: ${COMPRESSIBLE.toString().slice(0, 200 + i * 37)}`;
      sent.push(msg);
      await c.write(text(await z.compress(msg), { rsv: RSV1 }));
    }
    z.close();
    for (const msg of sent) expect((await nextMessage(c, false)).payload.toString()).toBe(msg);
  });

  it("the server's own messages use context takeover, which the peer decodes with one inflater", async () => {
    const s = await serve({ compress: { threshold: 0 } });
    const c = await s.connect();
    const inflater = new Stream('inflate');
    const lengths: number[] = [];
    for (let i = 0; i < 5; i++) {
      await c.write(text(COMPRESSIBLE.toString()));
      const frames = [await c.next()];
      expect(frames[0]!.rsv).toBe(RSV1);
      lengths.push(frames[0]!.payload.length);
      expect((await inflater.push(Buffer.concat([frames[0]!.payload, TAIL]))).equals(COMPRESSIBLE)).toBe(true);
    }
    inflater.close();
    // Later copies refer to the first: much shorter.
    expect(lengths[4]!).toBeLessThan(lengths[0]! / 2);
  });

  it('a large message whose compression runs in the background keeps its place among frames and the close', async () => {
    const big = Buffer.alloc(2 << 20);
    for (let i = 0; i < big.length; i++) big[i] = (i * 7) % 251;
    const s = await serve({ compress: { threshold: 1000 } }, {
      websocketHandle(f, state, session) {
        if (f.type !== 'text') return undefined;
        // Compressed in the background, then frames written at once: they must wait their turn.
        session.send([{ type: 'binary', data: big }, 'small', { type: 'ping', data: 'p' }, { type: 'text', data: 'x'.repeat(2000) }]);
        return { state, stop: { code: 4000, reason: 'done' } };
      },
    });
    const c = await s.connect();
    await c.write(text('go'));
    const first = await nextMessage(c, true);
    expect(first.payload.equals(big)).toBe(true);
    expect((await nextMessage(c, false)).payload.toString()).toBe('small');
    const p = await c.next();
    expect([p.opcode, p.payload.toString()]).toEqual([OP.PING, 'p']);
    expect((await nextMessage(c, true)).payload.toString()).toBe('x'.repeat(2000));
    const closing = await c.next();
    expect([closing.opcode, closing.code]).toEqual([OP.CLOSE, 4000]);
    await c.write(close(4000));
    await c.closed;
  });

  it('outgoing compressed messages split by outgoingFrameSize carry RSV1 on the first frame only', async () => {
    const s = await serve({ compress: { threshold: 0 }, session: { outgoingFrameSize: 64 } });
    const c = await s.connect();
    const data = Buffer.from(Array.from({ length: 3000 }, (_, i) => i % 256));
    await c.write(binary(data));
    const m = await nextMessage(c, true);
    expect(m.frames.length).toBeGreaterThan(2);
    expect(m.payload.equals(data)).toBe(true);
  });

  it('answers in window bits 9 when the client asks for them, and the client decodes with a 512-byte window', async () => {
    const s = await serve({ compress: { threshold: 0 } });
    const c = await s.connect('permessage-deflate; server_max_window_bits=9');
    expect(c.response!.headers['sec-websocket-extensions']).toBe('permessage-deflate; server_max_window_bits=9');
    await c.write(binary(COMPRESSIBLE));
    const f = await c.next();
    const out = inflate(f.payload, 9);
    expect(out.equals(COMPRESSIBLE)).toBe(true);
  });
});

describe('server: bad compressed input', () => {
  it('RSV1 on a continuation or on a control frame fails with 1002', async () => {
    const s = await serve({ compress: true });
    const a = await s.connect();
    await a.write(Buffer.concat([text(deflate('ab'), { rsv: RSV1, fin: false }), cont(Buffer.alloc(0), { rsv: RSV1 })]));
    await expectClose(a, 1002);
    const b = await s.connect();
    await b.write(frame({ opcode: OP.PING, payload: 'x', rsv: RSV1 }));
    await expectClose(b, 1002);
    expect(await s.ended(b.id)).toMatchObject({ type: 'error', error: 'badframe' });
  });

  it('data that is not DEFLATE fails with 1007, inline and in the background', async () => {
    const s = await serve({ compress: true });
    for (const size of [16, 200_000]) {
      const c = await s.connect();
      const junk = Buffer.alloc(size, 0xff);
      await c.write(binary(junk, { rsv: RSV1 }));
      await expectClose(c, 1007);
      expect(await s.ended(c.id)).toMatchObject({ type: 'error', error: 'badencoding' });
    }
  });

  it('compressed text that inflates to invalid UTF-8 fails with 1007', async () => {
    const s = await serve({ compress: true });
    const c = await s.connect();
    await c.write(text(deflate(Buffer.from([0x68, 0x69, 0xc0, 0xaf])), { rsv: RSV1 }));
    await expectClose(c, 1007);
    expect(await s.ended(c.id)).toMatchObject({ type: 'error', error: 'badencoding' });
  });

  it('a decompression bomb is stopped at maxMessageSize with 1009; other connections go on', async () => {
    const s = await serve({ compress: true, session: { maxMessageSize: 1 << 20 } });
    const bystander = await s.connect();
    const bomb = deflate(Buffer.alloc(64 << 20));
    expect(bomb.length).toBeLessThan(100_000);
    const c = await s.connect();
    await c.write(binary(bomb, { rsv: RSV1 }));
    await expectClose(c, 1009);
    expect(await s.ended(c.id)).toMatchObject({ type: 'error', error: 'toobig' });
    // Sent in fragments, the limit is the same.
    const d = await s.connect();
    const half = bomb.length >> 1;
    await d.write(Buffer.concat([binary(bomb.subarray(0, half), { rsv: RSV1, fin: false }), cont(bomb.subarray(half))]));
    await expectClose(d, 1009);
    await bystander.write(text(deflate('still here'), { rsv: RSV1 }));
    expect((await nextMessage(bystander, false)).payload.toString()).toBe('still here');
  });

  it('a message exactly at maxMessageSize once inflated passes', async () => {
    const s = await serve({ compress: { threshold: 1 << 30 }, session: { maxMessageSize: 100_000 } });
    const c = await s.connect();
    await c.write(binary(deflate(Buffer.alloc(100_000, 1)), { rsv: RSV1 }));
    expect((await nextMessage(c, false)).payload.length).toBe(100_000);
  });
});

// ---------------------------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------------------------

describe('client', () => {
  let raw: RawServer;
  afterAll(async () => {
    await raw?.close();
  });

  async function clientWith(answer: string | undefined, opts: Parameters<typeof connect>[1] = { compress: true }) {
    raw ??= await RawServer.start();
    const peerP = raw.next();
    const clientP = connect(raw.url('/'), { timeout: 10_000, ...opts });
    const peer = await peerP;
    const req = await peer.accept(answer === undefined ? {} : { 'Sec-WebSocket-Extensions': answer });
    return { peer, req, client: clientP };
  }

  it('offers permessage-deflate with client_max_window_bits, and the agreed settings are used', async () => {
    const { peer, req, client } = await clientWith('permessage-deflate; client_max_window_bits=10', { perMessageDeflate: { threshold: 0 } });
    expect(req.headers['sec-websocket-extensions']).toBe('permessage-deflate; client_max_window_bits');
    const c = await client;
    expect(c.response.headers['sec-websocket-extensions']).toBe('permessage-deflate; client_max_window_bits=10');
    await c.send({ type: 'text', data: 'Hello' });
    const f = await peer.next();
    expect([f.rsv, f.masked]).toEqual([RSV1, true]);
    expect(inflate(f.payload, 10).toString()).toBe('Hello');
    await peer.write(frame({ opcode: OP.BINARY, payload: deflate(COMPRESSIBLE), rsv: RSV1, mask: false }));
    const m = await c.recv();
    expect(m.type === 'binary' && Buffer.from(m.data).equals(COMPRESSIBLE)).toBe(true);
    peer.destroy();
  });

  it('asks for what its settings need and sends them in the offer', async () => {
    const { req, client, peer } = await clientWith('permessage-deflate; server_no_context_takeover; server_max_window_bits=10',
      { compress: { serverNoContextTakeover: true, clientNoContextTakeover: true, serverMaxWindowBits: 10, clientMaxWindowBits: 12 } });
    expect(req.headers['sec-websocket-extensions'])
      .toBe('permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=12');
    await client;
    peer.destroy();
  });

  it.each([
    ['permessage-deflate; server_max_window_bits=16', /server_max_window_bits/],
    ['permessage-deflate; client_max_window_bits', /client_max_window_bits/],
    ['permessage-deflate; foo=1', /unknown parameter foo/],
    ['permessage-deflate; server_no_context_takeover; server_no_context_takeover', /server_no_context_takeover/],
    ['permessage-deflate, permessage-deflate', /more than once/],
    ['x-unknown', /not offered/],
  ])('fails the connect on the answer %j', async (answer, why) => {
    const { client, peer } = await clientWith(answer);
    await expect(client).rejects.toMatchObject({ reason: 'extension', message: expect.stringMatching(why) });
    await peer.closed;
  });

  it('fails the connect when the server drops a parameter it was asked to agree to', async () => {
    const { client, peer } = await clientWith('permessage-deflate', { compress: { serverNoContextTakeover: true } });
    await expect(client).rejects.toMatchObject({ reason: 'extension', message: expect.stringMatching(/server_no_context_takeover/) });
    await peer.closed;
  });

  it('without compress, an answer with permessage-deflate fails the connect; a server that declines runs uncompressed', async () => {
    const a = await clientWith('permessage-deflate', {});
    expect(a.req.headers['sec-websocket-extensions']).toBeUndefined();
    await expect(a.client).rejects.toMatchObject({ reason: 'extension' });
    const b = await clientWith(undefined, { compress: { threshold: 0 } });
    const c = await b.client;
    await c.send('plain');
    const f = await b.peer.next();
    expect([f.rsv, f.payload.toString()]).toEqual([0, 'plain']);
    b.peer.destroy();
  });

  it('refuses compress with a permessage-deflate offer in extensions, or with its alias', async () => {
    await expect(connect('ws://127.0.0.1:1/', { compress: true, extensions: ['permessage-deflate'] })).rejects.toThrow(BadOptionError);
    await expect(connect('ws://127.0.0.1:1/', { compress: true, perMessageDeflate: true })).rejects.toThrow(BadOptionError);
  });
});

// ---------------------------------------------------------------------------------------------
// Both ends Corral
// ---------------------------------------------------------------------------------------------

describe('Corral client to Corral server', () => {
  it('any messages round-trip under any parameters on both sides', async () => {
    const bits = fc.option(fc.integer({ min: 8, max: 15 }), { nil: undefined });
    const side = fc.record({
      serverNoContextTakeover: fc.boolean(),
      clientNoContextTakeover: fc.boolean(),
      serverMaxWindowBits: bits,
      clientMaxWindowBits: bits,
      threshold: fc.constantFrom(0, 64, 1024),
      takeoverBytes: fc.constantFrom(0, 1024, 8192, 32768),
    }, { requiredKeys: [] });
    const message = fc.oneof(
      fc.string({ unit: 'grapheme', maxLength: 300 }).map((s) => ({ type: 'text' as const, data: s.repeat(3) })),
      fc.uint8Array({ maxLength: 3000 }).map((b) => ({ type: 'binary' as const, data: Buffer.from(b) })),
      fc.integer({ min: 0, max: 200_000 }).map((n) => ({ type: 'binary' as const, data: Buffer.alloc(n, n % 7) })),
    );
    await fc.assert(fc.asyncProperty(side, side, fc.array(message, { minLength: 1, maxLength: 12 }), fc.integer({ min: 16, max: 100_000 }),
      async (serverOpts, clientOpts, messages, frameSize) => {
        const clean = (o: Record<string, unknown>) => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
        const s = await serve({ compress: clean(serverOpts), session: { outgoingFrameSize: frameSize } });
        const c = await connect(`ws://127.0.0.1:${s.port}/p${++seq}`, { compress: clean(clientOpts), session: { outgoingFrameSize: frameSize } });
        try {
          for (const m of messages) await c.send(m);
          for (const m of messages) {
            const got = await c.recv();
            expect(got.type).toBe(m.type);
            if (m.type === 'text') expect(got.data).toBe(m.data);
            else expect(Buffer.from(got.data as Uint8Array).equals(m.data)).toBe(true);
          }
        } finally {
          await c.close();
        }
      }), { numRuns: 25 });
  }, 60_000);

  it('the session reports what was agreed', async () => {
    let session: Session<St> | undefined;
    const s = await serve({ compress: { serverNoContextTakeover: true } }, {
      websocketHandle(f, state, sess) {
        session = sess;
        return echo(f);
      },
    });
    const c = await connect(`ws://127.0.0.1:${s.port}/agreed`, { compress: true });
    await c.send('x');
    await c.recv();
    expect(session!.extensions).toBe('permessage-deflate; server_no_context_takeover');
    await c.close();
  });
});
