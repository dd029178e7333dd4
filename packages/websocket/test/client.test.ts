/**
 * The client's API, against real servers over loopback: Corral's own (`websocketProtocol` on
 * `tcp` and `tls` listeners) and the `ws` package's, both obeying the same text commands; and
 * raw-socket servers (raw-server.ts) for the answers a good server never gives (a wrong accept,
 * an unrequested subprotocol or extension, silence).
 *
 * Every wait is on an event (a message, a close, a socket event), bounded by the test timeout.
 */

import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as net from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocketServer, type WebSocket as WsSocket } from 'ws';
import { SocketError, startListener, tcp, tls, type Listener } from '@corral/listener';
import {
  WebSocketClosedError, WebSocketConnectError, connect, handleUpgrade, websocketProtocol,
  type ClientState, type InFrame, type OutFrame, type Session, type SessionSocket, type TerminateReason,
  type UpgradeResponse, type WebSocketClient, type WebSocketHandler,
} from '../src/index.js';
import { close as closeFrame, text as textFrame } from './raw-client.js';
import { RawServer, acceptFor, switching, type ClientFrame } from './raw-server.js';

const HOST = '127.0.0.1';
const FIXTURES = fileURLToPath(new URL('../../listener/test/fixtures/tls/', import.meta.url));
const CA = readFileSync(`${FIXTURES}ca.crt`);
const KEY = readFileSync(`${FIXTURES}localhost.key`);
const CERT = readFileSync(`${FIXTURES}localhost.crt`);
const OTHER_KEY = readFileSync(`${FIXTURES}a.test.key`);
const OTHER_CERT = readFileSync(`${FIXTURES}a.test.crt`);
/** The servers' subprotocols, in their order of preference. */
const SUBPROTOCOLS = ['corral.echo.v2', 'corral.echo.v1'];

let nextId = 0;
/** A request target no other test uses: servers record each connection by it. */
const uniquePath = (what: string, query = ''): string => `/${what}/${++nextId}${query === '' ? '' : `?${query}`}`;

// ---- what the servers report ------------------------------------------------------------------

/** Values recorded under a key, each awaitable before it is set. */
class Board<T> {
  readonly #values = new Map<string, T>();
  readonly #waiters = new Map<string, ((v: T) => void)[]>();

  set(key: string, value: T): void {
    this.#values.set(key, value);
    for (const w of this.#waiters.get(key)?.splice(0) ?? []) w(value);
  }

  get(key: string): Promise<T> {
    if (this.#values.has(key)) return Promise.resolve(this.#values.get(key)!);
    return new Promise((resolve) => this.#waiters.set(key, [...(this.#waiters.get(key) ?? []), resolve]));
  }

  now(key: string): T | undefined {
    return this.#values.get(key);
  }
}

/**
 * A server under test. Text commands (`!count N`, `!countclose N`, `!big N`, `!flood N SIZE`,
 * `!headers`, `!ping P`, `!close CODE REASON`) make it send; everything else is echoed. A pong
 * it receives is reported as `got pong <payload>`. `?frag=N` in the URL makes it send its
 * messages in frames of N bytes.
 */
interface Target {
  name: string;
  base: () => string;
  /** The close code the server received from the client on connection `path` (undefined: none). */
  closeCode: (path: string) => Promise<number | undefined>;
  /** The server's bytes written and not yet handed to the kernel, on connection `path`. */
  buffered: (path: string) => Promise<number>;
}

function numbers(from: number, to: number): string[] {
  return Array.from({ length: to - from }, (_, i) => String(from + i));
}

// ---- Corral's server --------------------------------------------------------------------------

interface CorralState {
  path: string;
  headers: http.IncomingHttpHeaders;
}

function corralHandler(ends: Board<TerminateReason>, sessions: Board<Session<CorralState>>): WebSocketHandler<CorralState, undefined> {
  return {
    init(req) {
      const query = new URL(req.url, 'http://server').searchParams;
      if (req.url.startsWith('/missing')) return { reject: { status: 404, headers: { 'x-reason': 'no such room' }, body: 'not here\n' } };
      const frag = query.get('frag');
      return { state: { path: req.url, headers: req.headers }, ...(frag !== null ? { options: { outgoingFrameSize: Number(frag) } } : {}) };
    },
    websocketInit(state, session) {
      sessions.set(state.path, session);
    },
    websocketHandle(frame, state) {
      if (frame.type === 'pong') return { reply: `got pong ${frame.data.toString()}` };
      if (frame.type === 'ping') return undefined;
      if (frame.type === 'binary' || !frame.data.startsWith('!')) return { reply: frame };
      const [name, ...args] = frame.data.slice(1).split(' ');
      switch (name) {
        case 'count': return { reply: numbers(0, Number(args[0])) };
        case 'countclose': return { reply: numbers(0, Number(args[0])), stop: { code: 4001, reason: 'enough' } };
        case 'big': return { reply: Buffer.alloc(Number(args[0]), 0x61) };
        case 'flood': {
          const one = Buffer.alloc(Number(args[1]), 0x62);
          return { reply: Array.from({ length: Number(args[0]) }, (): OutFrame => one) };
        }
        case 'headers': return { reply: JSON.stringify(state.headers) };
        case 'ping': return { reply: { type: 'ping', data: args.join(' ') } };
        case 'close': return { stop: { code: Number(args[0]), reason: args.slice(1).join(' ') } };
        default: return { reply: `unknown command ${name}` };
      }
    },
    terminate(reason, req) {
      ends.set(String(req.url), reason);
    },
  };
}

// ---- the ws package's server ------------------------------------------------------------------

function wsServe(wss: WebSocketServer, ends: Board<number | undefined>, sockets: Board<WsSocket>): void {
  wss.on('connection', (ws: WsSocket, req: http.IncomingMessage) => {
    const path = req.url ?? '/';
    const frag = new URL(path, 'http://server').searchParams.get('frag');
    sockets.set(path, ws);
    ws.on('error', () => {});
    ws.on('close', (code: number) => ends.set(path, code === 1005 || code === 1006 ? undefined : code));
    ws.on('pong', (data: Buffer) => ws.send(`got pong ${data.toString()}`));
    const sendBig = (data: Buffer): void => {
      const size = frag === null ? data.length : Number(frag);
      for (let at = 0; at < data.length; at += size) ws.send(data.subarray(at, at + size), { binary: true, fin: at + size >= data.length });
    };
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (isBinary) {
        sendBig(data);
        return;
      }
      const text = data.toString('utf8');
      if (!text.startsWith('!')) {
        ws.send(text);
        return;
      }
      const [name, ...args] = text.slice(1).split(' ');
      switch (name) {
        case 'count': for (const n of numbers(0, Number(args[0]))) ws.send(n); break;
        case 'countclose': for (const n of numbers(0, Number(args[0]))) ws.send(n); ws.close(4001, 'enough'); break;
        case 'big': sendBig(Buffer.alloc(Number(args[0]), 0x61)); break;
        case 'flood': {
          const one = Buffer.alloc(Number(args[1]), 0x62);
          for (let i = 0; i < Number(args[0]); i++) ws.send(one);
          break;
        }
        case 'headers': ws.send(JSON.stringify(req.headers)); break;
        case 'ping': ws.ping(args.join(' ')); break;
        case 'close': ws.close(Number(args[0]), args.slice(1).join(' ')); break;
        default: ws.send(`unknown command ${name}`);
      }
    });
  });
}

// ---- fixtures ---------------------------------------------------------------------------------

let corral: Listener;
let corralTls: Listener;
const corralEnds = new Board<TerminateReason>();
const corralSessions = new Board<Session<CorralState>>();
let wsHttp: http.Server;
let wss: WebSocketServer;
const wsEnds = new Board<number | undefined>();
const wsSockets = new Board<WsSocket>();
let raw: RawServer;
/** A wss server with a certificate for another name (a.test), signed by the test CA. */
let wrongName: https.Server;
const wrongNameSockets = new Set<SessionSocket>();

function codeOf(reason: TerminateReason): number | undefined {
  return reason.type === 'remote' ? reason.code : undefined;
}

const TARGETS: Target[] = [
  {
    name: "Corral's server",
    base: () => `ws://${HOST}:${corral.getPort()!}`,
    closeCode: async (path) => codeOf(await corralEnds.get(path)),
    buffered: async (path) => (await corralSessions.get(path)).bufferedAmount,
  },
  {
    name: 'the ws server',
    base: () => `ws://${HOST}:${(wsHttp.address() as net.AddressInfo).port}`,
    closeCode: (path) => wsEnds.get(path),
    buffered: async (path) => (await wsSockets.get(path)).bufferedAmount,
  },
];

beforeAll(async () => {
  const protocol = websocketProtocol(corralHandler(corralEnds, corralSessions), { subprotocols: SUBPROTOCOLS });
  corral = await startListener(`client-test-tcp-${process.pid}`, tcp, { socketOpts: { host: HOST, port: 0 } }, protocol, undefined);
  corralTls = await startListener(
    `client-test-tls-${process.pid}`, tls, { socketOpts: { host: HOST, port: 0, key: KEY, cert: CERT } }, protocol, undefined,
  );

  wsHttp = http.createServer();
  wss = new WebSocketServer({
    server: wsHttp,
    verifyClient: (info: { req: http.IncomingMessage }, done: (ok: boolean, status?: number, message?: string, headers?: http.OutgoingHttpHeaders) => void) => {
      if (info.req.url?.startsWith('/missing') === true) done(false, 404, 'Not Found', { 'X-Reason': 'no such room' });
      else done(true);
    },
    handleProtocols: (offered: Set<string>) => SUBPROTOCOLS.find((p) => offered.has(p)) ?? false,
  });
  wsServe(wss, wsEnds, wsSockets);
  wsHttp.listen(0, HOST);
  await once(wsHttp, 'listening');

  raw = await RawServer.start();

  wrongName = https.createServer({ key: OTHER_KEY, cert: OTHER_CERT });
  wrongName.on('upgrade', (req: http.IncomingMessage, socket: SessionSocket, head: Buffer) => {
    wrongNameSockets.add(socket);
    handleUpgrade(req, socket, head, { websocketHandle: (f) => ({ reply: f.type === 'text' ? f.data : 'x' }) }).catch(() => socket.destroy());
  });
  wrongName.listen(0, HOST);
  await once(wrongName, 'listening');
});

afterAll(async () => {
  await corral?.stop();
  await corralTls?.stop();
  for (const c of wss?.clients ?? []) c.terminate();
  await new Promise<void>((resolve) => (wss === undefined ? resolve() : wss.close(() => resolve())));
  await new Promise<void>((resolve) => (wsHttp === undefined ? resolve() : wsHttp.close(() => resolve())));
  await raw?.close();
  for (const s of wrongNameSockets) s.destroy();
  wrongName?.closeAllConnections();
  await new Promise<void>((resolve) => (wrongName === undefined ? resolve() : wrongName.close(() => resolve())));
});

/** The text of the next message (failing on anything else). */
async function nextText<S>(client: WebSocketClient<S>, timeoutMs?: number): Promise<string> {
  const f = await client.recv(timeoutMs);
  if (f.type !== 'text') throw new Error(`expected a text message, got ${f.type}`);
  return f.data;
}

/** A promise with its resolve function, and a counter-based trigger. */
function deferred<T = void>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

// ---- the API, against both servers ------------------------------------------------------------

describe.each(TARGETS)('against $name', (target) => {
  it('init sees the 101 (status, headers, subprotocol, extensions) and handlerOpts; echoes text and binary', async () => {
    const seen = deferred<{ res: UpgradeResponse; opts: { tag: string } }>();
    const client = await connect<{ tag: string; n: number }, { tag: string }>(`${target.base()}${uniquePath('init')}`, {
      subprotocols: ['not.spoken', 'corral.echo.v1'],
      handlerOpts: { tag: 'mine' },
      active: false,
      handler: {
        init(res, opts) {
          seen.resolve({ res, opts });
          return { state: { tag: opts.tag, n: 0 } };
        },
        websocketHandle: () => undefined,
      },
    });
    const { res, opts } = await seen.promise;
    expect(opts).toEqual({ tag: 'mine' });
    expect(res.status).toBe(101);
    expect(res.subprotocol).toBe('corral.echo.v1');
    expect(res.extensions).toEqual([]);
    expect(res.headers.upgrade?.toLowerCase()).toBe('websocket');
    expect(typeof res.headers['sec-websocket-accept']).toBe('string');
    expect(client.protocol).toBe('corral.echo.v1');
    expect(client.response).toBe(res);
    expect(client.session.handlerState).toEqual({ tag: 'mine', n: 0 });

    client.send('héllo ✓');
    expect(await client.recv()).toEqual({ type: 'text', data: 'héllo ✓' });
    client.send([Buffer.from([0, 1, 2, 255]), { type: 'text', data: 'second' }]);
    expect(await client.recv()).toEqual({ type: 'binary', data: Buffer.from([0, 1, 2, 255]) });
    expect(await nextText(client)).toBe('second');
    expect(typeof client.bufferedAmount).toBe('number');
    await client.close();
  });

  it('without subprotocols offered, none is chosen', async () => {
    const client = await connect(`${target.base()}${uniquePath('noproto')}`);
    expect(client.protocol).toBeUndefined();
    await client.close();
  });

  it('sends Origin and the extra headers; Host can be replaced; CR, LF and the handshake headers are refused', async () => {
    const client = await connect(`${target.base()}${uniquePath('headers')}`, {
      origin: 'https://app.example',
      extraHeaders: { 'X-Corral-Test': 'yes, really', Authorization: 'Bearer t0k3n', host: 'virtual.example' },
    });
    client.send('!headers');
    const headers = JSON.parse(await nextText(client)) as Record<string, string>;
    expect(headers).toMatchObject({
      origin: 'https://app.example', 'x-corral-test': 'yes, really', authorization: 'Bearer t0k3n', host: 'virtual.example',
    });
    await client.close();

    for (const extraHeaders of <Record<string, string>[]>[{ 'X-Bad': 'a\r\nInjected: 1' }, { 'X-Bad': 'a\nb' }, { 'X-Bad\r\nInjected': 'v' }, { 'X-Bad': 'nul\0' }]) {
      await expect(connect(`${target.base()}/refused`, { extraHeaders })).rejects.toThrow(/CR, LF or NUL/);
    }
    for (const name of ['Sec-WebSocket-Key', 'upgrade', 'Sec-WebSocket-Protocol']) {
      await expect(connect(`${target.base()}/refused`, { extraHeaders: { [name]: 'x' } })).rejects.toThrow(TypeError);
    }
  });

  it('goes through idle, upgrading, connected, closing, closed (a client close)', async () => {
    const states: ClientState[] = [];
    const client = await connect(`${target.base()}${uniquePath('states')}`, { onState: (s) => states.push(s) });
    expect(states).toEqual(['idle', 'upgrading', 'connected']);
    expect(client.state).toBe('connected');
    const closed = client.close(1000, 'bye');
    expect(client.state).toBe('closing');
    expect(await closed).toEqual({ type: 'stop' });
    expect(client.state).toBe('closed');
    expect(states).toEqual(['idle', 'upgrading', 'connected', 'closing', 'closed']);
    expect(await target.closeCode(new URL(client.response.url).pathname)).toBe(1000);
  });

  it('a handler that stops: closing is reported once the stop is applied, then closed', async () => {
    const path = uniquePath('handler-stop');
    const states: ClientState[] = [];
    const closing = deferred<ClientState>();
    const client = await connect<undefined, undefined>(`${target.base()}${path}`, {
      onState: (s) => {
        states.push(s);
        if (s === 'closing') closing.resolve(client.state);
      },
      handler: { websocketHandle: (f) => (f.type === 'text' && f.data === 'stop me' ? { stop: { code: 4005, reason: 'handler stop' } } : undefined) },
    });
    client.send('stop me');
    expect(await closing.promise).toBe('closing');
    expect(await client.closed).toEqual({ type: 'stop' });
    expect(states).toEqual(['idle', 'upgrading', 'connected', 'closing', 'closed']);
    expect(await target.closeCode(path)).toBe(4005);
  });

  it('a server close: the state ends closed, the reason carries its code and reason', async () => {
    const states: ClientState[] = [];
    const client = await connect(`${target.base()}${uniquePath('server-close')}`, { onState: (s) => states.push(s) });
    client.send('!close 4002 server says bye');
    expect(await client.closed).toEqual({ type: 'remote', code: 4002, reason: 'server says bye' });
    expect(client.state).toBe('closed');
    expect(states[0]).toBe('idle');
    expect(states.at(-1)).toBe('closed');
    // In order, each once.
    expect(states).toEqual([...new Set(states)]);
  });

  it('passive recv with a timeout: SocketError timeout, and the message that comes later is not lost', async () => {
    const client = await connect(`${target.base()}${uniquePath('recv')}`);
    const err = await client.recv(1).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SocketError);
    expect((err as SocketError).reason).toBe('timeout');
    // A message that arrives with no recv pending waits for the next one.
    client.send('!count 3');
    expect(await nextText(client)).toBe('0');
    const late = client.recv(1).catch((e: unknown) => e);
    expect(await late).toEqual({ type: 'text', data: '1' });
    expect(await nextText(client, 60_000)).toBe('2');
    await client.close();
    await expect(client.recv()).rejects.toBeInstanceOf(WebSocketClosedError);
  });

  it('async iteration yields every message in order and ends on close', async () => {
    const client = await connect(`${target.base()}${uniquePath('iterate')}`);
    client.send('!countclose 50');
    const got: string[] = [];
    for await (const f of client) if (f.type === 'text') got.push(f.data);
    expect(got).toEqual(numbers(0, 50));
    expect(await client.closed).toEqual({ type: 'remote', code: 4001, reason: 'enough' });
  });

  it('setActive switches active → passive → once → active on a stream: nothing lost or reordered', async () => {
    const N = 3000;
    const handled: { n: string; phase: string }[] = [];
    let phase = 'active';
    let client!: WebSocketClient<undefined>;
    const passive = deferred();
    const onceDone = deferred();
    const allDone = deferred();
    client = await connect<undefined, undefined>(`${target.base()}${uniquePath('modes')}`, {
      handler: {
        websocketHandle(f) {
          if (f.type !== 'text') return;
          handled.push({ n: f.data, phase });
          if (phase === 'active' && handled.length === 500) {
            client.setActive(false);
            passive.resolve();
          }
          if (phase === 'once') onceDone.resolve();
          if (f.data === String(N - 1)) allDone.resolve();
        },
      },
    });
    expect(client.active).toBe(true);
    client.send(`!count ${N}`);
    await passive.promise;
    const received: string[] = [];
    for (let i = 0; i < 700; i++) received.push(await nextText(client));
    expect(client.active).toBe(false);

    phase = 'once';
    client.setActive('once');
    await onceDone.promise;
    expect(client.active).toBe(false);
    phase = 'passive again';
    for (let i = 0; i < 300; i++) received.push(await nextText(client));

    phase = 'active again';
    client.setActive(true);
    await allDone.promise;

    const counts = Object.fromEntries(['active', 'once', 'active again'].map((p) => [p, handled.filter((h) => h.phase === p).length]));
    expect(counts).toEqual({ active: 500, once: 1, 'active again': N - 500 - 700 - 1 - 300 });
    const all = [
      ...handled.filter((h) => h.phase === 'active').map((h) => h.n),
      ...received.slice(0, 700),
      ...handled.filter((h) => h.phase === 'once').map((h) => h.n),
      ...received.slice(700),
      ...handled.filter((h) => h.phase === 'active again').map((h) => h.n),
    ];
    expect(all).toEqual(numbers(0, N));
    await client.close();
  });

  it('recv is refused in active mode; setActive(true) needs a handler', async () => {
    const withHandler = await connect(`${target.base()}${uniquePath('active-recv')}`, { handler: { websocketHandle: () => undefined } });
    await expect(withHandler.recv()).rejects.toThrow(/passive/);
    await withHandler.close();
    const without = await connect(`${target.base()}${uniquePath('no-handler')}`);
    expect(() => without.setActive(true)).toThrow(/handler/);
    await without.close();
  });

  it('a server ping is answered with its payload (the server reports the pong); passive recv sees the ping', async () => {
    const client = await connect(`${target.base()}${uniquePath('ping')}`);
    client.send('!ping are you there');
    expect(await client.recv()).toEqual({ type: 'ping', data: Buffer.from('are you there') });
    expect(await nextText(client)).toBe('got pong are you there');
    await client.close();
  });

  it('maxFrameSize: a larger frame fails the connection with 1009', async () => {
    const path = uniquePath('max-frame');
    const client = await connect(`${target.base()}${path}`, { maxFrameSize: 1024 });
    client.send('!big 1024');
    expect((await client.recv()).type).toBe('binary');
    client.send('!big 1025');
    expect(await client.closed).toMatchObject({ type: 'error', error: 'toobig' });
    await expect(client.recv()).rejects.toBeInstanceOf(WebSocketClosedError);
    expect(await target.closeCode(path)).toBe(1009);
  });

  it('maxMessageSize: a fragmented message over it fails with 1009; under it, it arrives whole', async () => {
    const okPath = uniquePath('max-message', 'frag=500');
    const ok = await connect(`${target.base()}${okPath}`, { maxFrameSize: 1000, maxMessageSize: 3000 });
    ok.send('!big 3000');
    expect(await ok.recv()).toEqual({ type: 'binary', data: Buffer.alloc(3000, 0x61) });
    await ok.close();

    const path = uniquePath('max-message', 'frag=500');
    const client = await connect(`${target.base()}${path}`, { maxFrameSize: 1000, maxMessageSize: 2000 });
    client.send('!big 3000');
    expect(await client.closed).toMatchObject({ type: 'error', error: 'toobig' });
    expect(await target.closeCode(path)).toBe(1009);
  });

  it('an AbortSignal after the upgrade closes the connection with 1001', async () => {
    const path = uniquePath('abort-after');
    const ac = new AbortController();
    const client = await connect(`${target.base()}${path}`, { signal: ac.signal });
    client.send('still here');
    expect(await nextText(client)).toBe('still here');
    ac.abort();
    expect(await client.closed).toEqual({ type: 'stop' });
    expect(await target.closeCode(path)).toBe(1001);
  });

  it('backpressure: a passive client that does not read stops reading; the server buffers; all arrives once read', async () => {
    const COUNT = 1024;
    const SIZE = 64 * 1024;
    const LIMIT = 4;
    const path = uniquePath('backpressure');
    const port = Number(new URL(target.base()).port);
    // Our own socket, to watch it: the transport's connect hands it over paused.
    const socket = await tcp.connect(HOST, port);
    const client = await connect(`${target.base()}${path}`, { socket, passiveQueue: LIMIT });
    const paused = once(socket, 'pause');
    client.send(`!flood ${COUNT} ${SIZE}`);
    await paused;
    expect(socket.isPaused()).toBe(true);
    // What the client holds: the queued messages, what the socket read ahead, one frame in the parser.
    const held = client.queued * SIZE + socket.readableLength + SIZE;
    expect(client.queued).toBeGreaterThanOrEqual(LIMIT);
    // 64 MiB were sent; the kernel's buffers hold a few MiB; the rest waits in the server.
    const serverHeld = await target.buffered(path);
    expect(serverHeld).toBeGreaterThan(held);
    expect(serverHeld).toBeGreaterThan(8 * 1024 * 1024);

    let bytes = 0;
    for (let i = 0; i < COUNT; i++) {
      const f = await client.recv();
      if (f.type !== 'binary') throw new Error(`expected binary, got ${f.type}`);
      bytes += f.data.length;
    }
    expect(bytes).toBe(COUNT * SIZE);
    expect(socket.isPaused()).toBe(false);
    client.send('done?');
    expect(await nextText(client)).toBe('done?');
    await client.close();
  });

  it('over an already-connected socket from the tcp transport: peername and sockname are its addresses', async () => {
    const port = Number(new URL(target.base()).port);
    const socket = await tcp.connect(HOST, port);
    const client = await connect(`${target.base()}${uniquePath('own-socket')}`, { socket, subprotocols: ['corral.echo.v2'] });
    expect(client.protocol).toBe('corral.echo.v2');
    expect(client.peername()).toEqual({ address: HOST, port, family: 'IPv4' });
    expect(client.sockname()).toEqual({ address: socket.localAddress, port: socket.localPort, family: 'IPv4' });
    client.send('over my socket');
    expect(await nextText(client)).toBe('over my socket');
    await client.close();
    expect(socket.destroyed).toBe(true);
  });

  it('a 404 keeps its status and headers', async () => {
    const err = await connect(`${target.base()}/missing/room`).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WebSocketConnectError);
    const e = err as WebSocketConnectError;
    expect(e.reason).toBe('status');
    expect(e.status).toBe(404);
    expect(e.headers?.['x-reason']).toBe('no such room');
  });
});

// ---- TLS ----------------------------------------------------------------------------------------

describe('wss://', () => {
  const wssBase = (): string => `wss://localhost:${corralTls.getPort()!}`;

  it('verifies the server against the system CAs by default: the test CA is not one of them', async () => {
    const err = await connect(`${wssBase()}/untrusted`).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WebSocketConnectError);
    expect((err as WebSocketConnectError).reason).toBe('tls');
    expect((err as Error).message).toMatch(/TLS/);
  });

  it('passes with tls: { ca }, sending SNI; echoes', async () => {
    const client = await connect(`${wssBase()}${uniquePath('tls')}`, { tls: { ca: CA }, subprotocols: ['corral.echo.v1'] });
    expect(client.protocol).toBe('corral.echo.v1');
    client.send('over TLS');
    expect(await nextText(client)).toBe('over TLS');
    await client.close();
  });

  it('checks the host name: a certificate for another name fails with reason tls', async () => {
    const port = (wrongName.address() as net.AddressInfo).port;
    const err = await connect(`wss://localhost:${port}/wrong-name`, { tls: { ca: CA } }).catch((e: unknown) => e);
    expect((err as WebSocketConnectError).reason).toBe('tls');
    // The user's options win: naming the certificate's host makes it pass.
    const client = await connect(`wss://localhost:${port}/right-name`, { tls: { ca: CA, servername: 'a.test' } });
    client.send('named');
    expect(await nextText(client)).toBe('named');
    await client.close();
  });

  it("over a socket from the listener's TLS transport connect", async () => {
    const socket = await tls.connect('localhost', corralTls.getPort()!, { ca: CA });
    expect(socket.isPaused()).toBe(true);
    const client = await connect(`${wssBase()}${uniquePath('tls-socket')}`, { socket });
    client.send('over a transport socket');
    expect(await nextText(client)).toBe('over a transport socket');
    expect(client.peername().port).toBe(corralTls.getPort());
    await client.close();
  });
});

// ---- connect failures ---------------------------------------------------------------------------

describe('connect fails with a typed reason', () => {
  it('dns: a name that does not resolve', async () => {
    const err = await connect('ws://nonexistent.invalid/').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WebSocketConnectError);
    expect((err as WebSocketConnectError).reason).toBe('dns');
    expect((err as WebSocketConnectError).code).toBe('ERR_CORRAL_WS_CONNECT');
  });

  it('refused: nothing listens', async () => {
    const probe = net.createServer();
    probe.listen(0, HOST);
    await once(probe, 'listening');
    const port = (probe.address() as net.AddressInfo).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const err = await connect(`ws://${HOST}:${port}/`).catch((e: unknown) => e);
    expect((err as WebSocketConnectError).reason).toBe('refused');
  });

  it('timeout: a server that never answers the upgrade', async () => {
    const states: ClientState[] = [];
    const peerP = raw.next();
    const result = connect(raw.url('/silent'), { timeout: 200, onState: (s) => states.push(s) }).catch((e: unknown) => e);
    const peer = await peerP;
    await peer.request;
    const err = await result;
    expect((err as WebSocketConnectError).reason).toBe('timeout');
    expect(states).toEqual(['idle', 'upgrading', 'closed']);
    await peer.closed;
  });

  it('aborted: before the connect, and during the upgrade', async () => {
    const before = await connect(raw.url('/never'), { signal: AbortSignal.abort() }).catch((e: unknown) => e);
    expect((before as WebSocketConnectError).reason).toBe('aborted');

    const ac = new AbortController();
    const peerP = raw.next();
    const result = connect(raw.url('/abort'), { signal: ac.signal }).catch((e: unknown) => e);
    const peer = await peerP;
    await peer.request;
    ac.abort(new Error('changed my mind'));
    const err = await result;
    expect((err as WebSocketConnectError).reason).toBe('aborted');
    expect((err as Error).cause).toEqual(new Error('changed my mind'));
    await peer.closed;
  });

  it('accept: a wrong Sec-WebSocket-Accept', async () => {
    const peerP = raw.next();
    const result = connect(raw.url('/bad-accept')).catch((e: unknown) => e);
    const peer = await peerP;
    const req = await peer.request;
    await peer.write(switching(req, {}, acceptFor(`${req.key}x`)));
    const err = (await result) as WebSocketConnectError;
    expect(err.reason).toBe('accept');
    expect(err.status).toBe(101);
    await peer.closed;
  });

  it('upgrade: a 101 without Upgrade: websocket', async () => {
    const peerP = raw.next();
    const result = connect(raw.url('/no-upgrade')).catch((e: unknown) => e);
    const peer = await peerP;
    const req = await peer.request;
    await peer.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptFor(req.key)}\r\n\r\n`);
    expect(((await result) as WebSocketConnectError).reason).toBe('upgrade');
    await peer.closed;
  });

  it('subprotocol: the server picks one that was not offered, or one when none was', async () => {
    for (const subprotocols of [['chat.v1'], []]) {
      const peerP = raw.next();
      const result = connect(raw.url('/subprotocol'), { subprotocols }).catch((e: unknown) => e);
      const peer = await peerP;
      await peer.accept({ 'Sec-WebSocket-Protocol': 'chat.v2' });
      const err = (await result) as WebSocketConnectError;
      expect(err.reason).toBe('subprotocol');
      expect(err.message).toContain('chat.v2');
      await peer.closed;
    }
  });

  it('extension: the server answers with one that was not offered, or one that is not supported', async () => {
    for (const extensions of [[], ['x-corral-test; level=1']]) {
      const peerP = raw.next();
      const result = connect(raw.url('/extension'), { extensions }).catch((e: unknown) => e);
      const peer = await peerP;
      const req = await peer.request;
      if (extensions.length > 0) expect(req.headers['sec-websocket-extensions']).toBe('x-corral-test; level=1');
      else expect(req.headers['sec-websocket-extensions']).toBeUndefined();
      await peer.write(switching(req, { 'Sec-WebSocket-Extensions': extensions.length > 0 ? 'x-corral-test' : 'permessage-deflate' }));
      const err = (await result) as WebSocketConnectError;
      expect(err.reason).toBe('extension');
      expect(err.message).toMatch(extensions.length > 0 ? /not supported/ : /not offered/);
      await peer.closed;
    }
  });

  it('init refusing the 101: reason upgrade, and the server is sent a close 1000', async () => {
    const peerP = raw.next();
    const result = connect<undefined, undefined>(raw.url('/refuse'), {
      handler: { init: () => ({ reject: 400 }), websocketHandle: () => undefined },
    }).catch((e: unknown) => e);
    const peer = await peerP;
    await peer.accept();
    expect(((await result) as WebSocketConnectError).reason).toBe('upgrade');
    const f = await peer.next();
    expect({ opcode: f.opcode, code: f.code, masked: f.masked }).toEqual({ opcode: 8, code: 1000, masked: true });
    await peer.write(closeFrame(1000, '', { mask: false }));
    await peer.fin;
    peer.end();
    await peer.closed;
  });

  it('bad options are refused before any connection', async () => {
    await expect(connect('http://example.test/')).rejects.toThrow(/Not a WebSocket URL/);
    await expect(connect(raw.url('/'), { timeout: -1 })).rejects.toThrow(/timeout/);
    await expect(connect(raw.url('/'), { subprotocols: ['has space'] })).rejects.toThrow(/subprotocols/);
    await expect(connect(raw.url('/'), { active: true })).rejects.toThrow(/handler/);
    await expect(connect(raw.url('/'), { maxFrameSize: 0 })).rejects.toThrow(/maxFrameSize/);
  });
});

// ---- the request and the frames on the wire --------------------------------------------------------

describe('on the wire', () => {
  it('the upgrade request: GET with the path and query, Host, key, version 13, offers in order', async () => {
    const peerP = raw.next();
    const clientP = connect(`${raw.url('/chat/room')}?id=7`, { subprotocols: ['a.v2', 'a.v1'], origin: 'https://o.example' });
    const peer = await peerP;
    const req = await peer.accept({ 'Sec-WebSocket-Protocol': 'a.v1' });
    const client = await clientP;
    expect(req.method).toBe('GET');
    expect(req.path).toBe('/chat/room?id=7');
    expect(req.headers).toMatchObject({
      host: `127.0.0.1:${raw.port}`, upgrade: 'websocket', connection: 'Upgrade', 'sec-websocket-version': '13',
      'sec-websocket-protocol': 'a.v2, a.v1', origin: 'https://o.example',
    });
    expect(Buffer.from(req.key, 'base64')).toHaveLength(16);
    expect(client.protocol).toBe('a.v1');
    client.terminate();
    await client.closed;
  });

  it('frames the raw server receives are masked, each with its own key; bytes from the 101 are not lost', async () => {
    const peerP = raw.next();
    const got: InFrame[] = [];
    const first = deferred();
    const clientP = connect<undefined, undefined>(raw.url('/masking'), {
      handler: {
        websocketHandle(f) {
          got.push(f);
          first.resolve();
        },
      },
    });
    const peer = await peerP;
    const req = await peer.request;
    // The 101 and a first frame in one write.
    await peer.write(Buffer.concat([Buffer.from(switching(req), 'latin1'), textFrame('right after the 101', { mask: false })]));
    const client = await clientP;
    await first.promise;
    expect(got).toEqual([{ type: 'text', data: 'right after the 101' }]);

    const N = 32;
    for (let i = 0; i < N; i++) client.send(`frame ${i}`);
    const frames: ClientFrame[] = [];
    for (let i = 0; i < N; i++) frames.push(await peer.next());
    expect(frames.map((f) => [f.masked, f.payload.toString()])).toEqual(Array.from({ length: N }, (_, i) => [true, `frame ${i}`]));
    expect(new Set(frames.map((f) => f.maskKey!.toString('hex'))).size).toBe(N);
    const closed = client.close(1000, 'done');
    const f = await peer.next();
    expect({ code: f.code, reason: f.reason, masked: f.masked }).toEqual({ code: 1000, reason: 'done', masked: true });
    await peer.write(closeFrame(1000, '', { mask: false }));
    peer.end();
    expect(await closed).toEqual({ type: 'stop' });
  });
});
