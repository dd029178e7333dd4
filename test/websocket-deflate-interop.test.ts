/**
 * permessage-deflate (RFC 7692) interop over 127.0.0.1, both roles, against real peers.
 *
 * Corral as the server (`websocketProtocol` on `tcp` listeners, one per deflate setting, and
 * `handleUpgrade` in a `node:http` server that picks the setting from the request's `cfg`
 * parameter), spoken to by the `ws` package's client, Python's `websockets` client and headless
 * Chromium. Corral as the client (`connect` with `compress` / `perMessageDeflate`), against a
 * `ws` WebSocketServer and Python `websockets` servers, one per deflate setting of theirs.
 *
 * For each pairing of settings: the agreed `Sec-WebSocket-Extensions` (as the peer saw it and as
 * Corral's `session.extensions` gives it), echoes of text and binary messages from empty to
 * 1 MiB, compressible and random; whether what Corral sent travelled compressed (byte counts of
 * the socket, or the RSV1 bit and payload length the Python peers record), that a message below
 * the threshold did not, that context takeover shrinks a repeated message when it is allowed and
 * is not used when it is not (or when the window is too small to reach back); fragmented
 * compressed messages both ways with a ping between fragments; decompression bombs (a message
 * that inflates past `maxMessageSize` closes with 1009 and the other connections carry on); a
 * server without compression ignores offers, and a client offering it to a server without it runs
 * uncompressed.
 *
 * Expected answers are written out by hand from RFC 7692 and each peer's documented behaviour
 * (ws echoes the offer's parameter order; Python's `websockets` defaults to
 * server_max_window_bits=12, client_max_window_bits=12). A missing peer (Python's websockets,
 * Chromium) fails its tests with the command that installs it; none is skipped.
 */

import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import * as http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { BadOptionError, startListener, tcp } from '@corral/listener';
import {
  connect, handleUpgrade, websocketProtocol,
  type ClientOptions, type DeflateOptions, type InFrame, type SessionSocket, type TerminateReason,
  type UpgradeOptions, type UpgradeResponse, type WebSocketClient, type WebSocketHandler,
} from '@corral/websocket';
import { launchChromium } from './peers/chromium.js';
import { DEFLATE_PAGE } from './peers/deflate-browser.js';
import {
  runDeflatePythonClient, startDeflatePythonServers,
  type MessageSpec, type PythonClientCase, type PythonClientResult, type PythonOffer, type PythonServerConfig, type WireFrame,
} from './peers/deflate-python.js';
import { fixture } from './peers/fixture.js';
import { Terminations, WAIT_MS, within, wsConnect, type Message, type WsClient } from './peers/ws-client.js';

const HOST = '127.0.0.1';
/** Bound on any single wait for the peer: a message, an event, a close. */
const MIB = 1024 * 1024;


// ---- messages ---------------------------------------------------------------------------------

const ASCII = '{"corral": "permessage-deflate", "id": 12345, "ok": true}\n';
const UNICODE = 'interop \u2713 \u00fcn\u00efc\u00f6d\u00e9 \u{1F40D} \u2014 ';

/** The message a description stands for: the same kinds as the Python and browser peers make. */
function make(kind: MessageSpec['kind'], size: number): string | Buffer {
  switch (kind) {
    case 'ascii': return ASCII.repeat(Math.ceil(size / ASCII.length) + 1).slice(0, size);
    // Whole units: a cut could split a surrogate pair.
    case 'unicode': return UNICODE.repeat(Math.max(1, Math.round(size / UNICODE.length)));
    case 'random-text': return randomBytes(size).toString('base64').slice(0, size);
    case 'pattern': return pattern(size);
    case 'random': return randomBytes(size);
  }
}

/** Bytes 0..250 over and over: compresses well, and every peer can make it. */
function pattern(size: number): Buffer {
  const out = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) out[i] = i % 251;
  return out;
}

const byteLength = (data: string | Buffer): number => (typeof data === 'string' ? Buffer.byteLength(data) : data.length);

const BATTERY: readonly MessageSpec[] = [
  { label: 'empty text', kind: 'ascii', size: 0 },
  { label: 'empty binary', kind: 'pattern', size: 0 },
  { label: 'text 16 B', kind: 'ascii', size: 16 },
  { label: 'text 1000 B', kind: 'ascii', size: 1000 },
  { label: 'text 1 KiB', kind: 'ascii', size: 1024 },
  { label: 'text 64 KiB', kind: 'ascii', size: 65_536 },
  { label: 'unicode text ~16 KiB', kind: 'unicode', size: 16_384 },
  { label: 'random text 4 KiB', kind: 'random-text', size: 4096 },
  { label: 'binary 1000 B', kind: 'pattern', size: 1000 },
  { label: 'binary 1 KiB', kind: 'pattern', size: 1024 },
  { label: 'binary 4 KiB', kind: 'pattern', size: 4096 },
  { label: 'binary 16 KiB', kind: 'pattern', size: 16_384 },
  { label: 'binary 64 KiB', kind: 'pattern', size: 65_536 },
  { label: 'random binary 1 KiB', kind: 'random', size: 1024 },
  { label: 'random binary 64 KiB', kind: 'random', size: 65_536 },
];
/** The battery with 1 MiB messages: for the main pairings only, to keep the suite quick. */
const FULL_BATTERY: readonly MessageSpec[] = [
  ...BATTERY,
  { label: 'unicode text ~1 MiB', kind: 'unicode', size: MIB },
  { label: 'random text 1 MiB', kind: 'random-text', size: MIB },
  { label: 'binary 1 MiB', kind: 'pattern', size: MIB },
  { label: 'random binary 1 MiB', kind: 'random', size: MIB },
];

const COMPRESSIBLE = new Set<MessageSpec['kind']>(['ascii', 'unicode', 'pattern']);
/** The large messages of `!burst`: above the 8 KiB a session compresses inline. */
const BURST = 300_000;
/** What `!big 65536` sends. */
const BIG_SPEC: MessageSpec = { label: '!big 65536', kind: 'pattern', size: 65_536 };

/**
 * How a message should cross the wire: `compressed` (to less than half), `uncompressed` (not
 * compressed at all: every byte of it), or `window-bound`: compressed, but the {@link pattern}
 * repeats every 251 bytes, which a window of 2^9 bytes cannot reach (zlib's longest distance there
 * is 250), so it cannot shrink much; were it to, the sender would refer past the agreed window.
 */
type WireVerdict = 'compressed' | 'uncompressed' | 'window-bound';

function verdict(a: Agreed | null, sender: 'server' | 'client', spec: MessageSpec, bytes: number, threshold: number): WireVerdict {
  if (a === null || bytes < threshold) return 'uncompressed';
  const bits = (sender === 'server' ? a.serverMaxWindowBits : a.clientMaxWindowBits) ?? 15;
  return spec.kind === 'pattern' && bits <= 9 ? 'window-bound' : 'compressed';
}

/**
 * What a message cost on the wire (`wire`, which may include up to `overhead` bytes of other
 * frames) against the verdict: checked for compressible messages of 1000 bytes and more (`min`
 * raises that floor), where the difference is plain.
 */
function expectWire(what: string, spec: MessageSpec, bytes: number, wire: number, how: WireVerdict, overhead = 0, min = 1000): void {
  // NaN: the peer cannot count (a Python server without the counting extension).
  if (!COMPRESSIBLE.has(spec.kind) || bytes < min || Number.isNaN(wire)) return;
  const label = `${what}: ${spec.label} (${bytes} bytes) should travel ${how}`;
  if (how === 'compressed') expect(wire - overhead, label).toBeLessThan(bytes / 2);
  else if (how === 'uncompressed') expect(wire, label).toBeGreaterThanOrEqual(bytes);
  // Huffman coding alone saves at most a few percent on these bytes.
  else expect(wire, label).toBeGreaterThanOrEqual(bytes * 0.9);
}

// ---- window probes ----------------------------------------------------------------------------

/** A window probe: a random block of `block` bytes, `copies` times over. */
interface ProbeSpec {
  how: 'far' | 'near';
  block: number;
  copies: number;
}

/**
 * Probes of the sender's LZ77 window, for agreed window bits `bits`. `far`: blocks of 2^bits + 64
 * bytes, each copy further back than the window allows: the message must not shrink to a
 * fraction, or the sender referred past the window (Huffman coding alone saves a few percent on
 * such blocks). `near`: blocks a quarter of what zlib reaches with that window (2^bits - 262; a
 * 2^8 window is compressed with zlib's 2^9, reaching 250), so that every copy finds an earlier one
 * in reach: the message shrinks to a fraction, the sender does use the window it may.
 */
function windowProbeSpecs(bits: number): ProbeSpec[] {
  const reach = bits === 8 ? 250 : (1 << bits) - 262;
  const near = Math.floor(reach / 4);
  return [
    { how: 'far', block: (1 << bits) + 64, copies: 8 },
    { how: 'near', block: near, copies: Math.max(8, Math.ceil(4096 / near)) },
  ];
}

function windowProbes(bits: number): (ProbeSpec & { data: Buffer })[] {
  return windowProbeSpecs(bits).map((spec) => {
    const unit = randomBytes(spec.block);
    return { ...spec, data: Buffer.concat(Array.from({ length: spec.copies }, () => unit)) };
  });
}

function expectProbe(what: string, bits: number, spec: ProbeSpec, size: number, wire: number, overhead = 0): void {
  if (Number.isNaN(wire)) return;
  const label = `${what}: ${spec.copies} copies of ${spec.block} random bytes, window 2^${bits}`;
  expect(size, label).toBe(spec.block * spec.copies);
  if (spec.how === 'far') expect(wire, `${label}: must not refer back`).toBeGreaterThan(size * 0.75);
  else expect(wire - overhead, `${label}: should refer back`).toBeLessThan(size / 2);
}

// ---- extension headers ------------------------------------------------------------------------

interface Agreed {
  serverNoContextTakeover: boolean;
  clientNoContextTakeover: boolean;
  serverMaxWindowBits?: number;
  clientMaxWindowBits?: number;
}

/** A permessage-deflate answer's parameters (order-insensitive), or null for none. */
function agreed(header: string | null | undefined): Agreed | null {
  if (header === undefined || header === null || header === '') return null;
  const [name, ...params] = header.split(';').map((s) => s.trim());
  expect(name, `extension of ${JSON.stringify(header)}`).toBe('permessage-deflate');
  const out: Agreed = { serverNoContextTakeover: false, clientNoContextTakeover: false };
  for (const p of params) {
    const [key, value] = p.split('=').map((s) => s.trim());
    switch (key) {
      case 'server_no_context_takeover': out.serverNoContextTakeover = true; break;
      case 'client_no_context_takeover': out.clientNoContextTakeover = true; break;
      case 'server_max_window_bits': out.serverMaxWindowBits = Number(value); break;
      case 'client_max_window_bits': out.clientMaxWindowBits = Number(value); break;
      default: expect.fail(`unexpected parameter ${p} in ${JSON.stringify(header)}`);
    }
  }
  return out;
}

/**
 * Whether a sender holding to `a` can shrink the second of two identical 2 KiB random messages
 * by referring to the first: context takeover allowed, and a window (2^bits, less zlib's 262
 * bytes of lookahead) that reaches 2 KiB back.
 */
function takeoverShrinks(a: Agreed | null, side: 'server' | 'client', ownNoTakeover = false): boolean {
  if (a === null || ownNoTakeover) return false;
  const noTakeover = side === 'server' ? a.serverNoContextTakeover : a.clientNoContextTakeover;
  const bits = (side === 'server' ? a.serverMaxWindowBits : a.clientMaxWindowBits) ?? 15;
  return !noTakeover && bits >= 12;
}

/**
 * The repeated 2 KiB random message: with takeover it shrinks to a few back-references; without,
 * random bytes cannot shrink at all, so anything smaller would mean a reference the peer may not
 * follow (into a dropped context, or past the agreed window).
 */
function expectRepeats(what: string, wires: number[], shrinks: boolean): void {
  for (const [i, wire] of wires.entries()) {
    if (Number.isNaN(wire)) continue;
    if (i === 0) {
      expect(wire, `${what}: first of the repeated messages`).toBeGreaterThanOrEqual(2048);
    } else if (shrinks) {
      expect(wire, `${what}: repeat ${i} should refer back to the one before`).toBeLessThan(1024);
    } else {
      expect(wire, `${what}: repeat ${i} must not refer back`).toBeGreaterThanOrEqual(2048);
    }
  }
}

// ---- Corral's server --------------------------------------------------------------------------


interface EchoState {
  url: string;
}

/**
 * Echoes messages; `!ext` answers `{ extensions: session.extensions }`, `!wire` the socket's
 * byte counts (`null` where the test does not hold the socket), `!big N` sends N bytes of
 * {@link pattern}, `!burst` large and small messages and a ping in one reply, `!burststop` the
 * same then a close (4000). The request may ask for `frag=<bytes>` (the server's frame size) and
 * `nocompress` (`init` declines compression for this connection).
 */
function deflateHandler(ends: Terminations, sockets: Map<string, Socket>, seen: Map<string, number[]>): WebSocketHandler<EchoState, undefined> {
  return {
    init(req) {
      const query = new URL(req.url, 'http://server').searchParams;
      const frag = query.get('frag');
      return {
        state: { url: req.url },
        ...(frag !== null ? { options: { outgoingFrameSize: Number(frag) } } : {}),
        ...(query.has('nocompress') ? { compress: false } : {}),
      };
    },
    websocketHandle(frame, state, session) {
      if (frame.type === 'text' && frame.data.startsWith('!')) {
        const [name, arg] = frame.data.slice(1).split(' ');
        switch (name) {
          case 'ext': return { reply: JSON.stringify({ extensions: session.extensions }) };
          case 'wire': {
            const s = sockets.get(state.url);
            return { reply: JSON.stringify(s === undefined ? null : { read: s.bytesRead, written: s.bytesWritten }) };
          }
          case 'big': return { reply: pattern(Number(arg)) };
          // Large replies are compressed in the thread pool: what follows them must wait its turn.
          case 'burst': return { reply: [pattern(BURST), { type: 'ping', data: 'burst' }, 'small', pattern(100_000), 'last'] };
          case 'burststop': return { reply: [pattern(BURST), 'bye'], stop: { code: 4000, reason: 'burst' } };
          default: return { reply: `unknown command ${name}` };
        }
      }
      if (frame.type === 'text' || frame.type === 'binary') {
        seen.set(state.url, [...(seen.get(state.url) ?? []), frame.type === 'text' ? Buffer.byteLength(frame.data) : frame.data.length]);
        return { reply: frame };
      }
      return undefined;
    },
    terminate(reason, req) {
      ends.record(String(req.url), reason);
    },
  };
}

/** Corral's server settings under test, each on a listener of its own (and by name through handleUpgrade). */
const SERVER_CONFIGS = {
  off: {},
  default: { compress: true },
  snct: { compress: { serverNoContextTakeover: true } },
  cnct: { compress: { clientNoContextTakeover: true } },
  smwb10: { compress: { serverMaxWindowBits: 10 } },
  cmwb9: { compress: { clientMaxWindowBits: 9 } },
  all: { compress: { serverNoContextTakeover: true, clientNoContextTakeover: true, serverMaxWindowBits: 9, clientMaxWindowBits: 10 } },
  tuned: {
    compress: {
      threshold: 0, level: 9, memLevel: 9, serverMaxWindowBits: 15, clientMaxWindowBits: true, takeoverBytes: 32_768,
    } satisfies DeflateOptions,
  },
  alias: { perMessageDeflate: { serverMaxWindowBits: 12 } },
  bomb: { compress: true, session: { maxMessageSize: MIB } },
} satisfies Record<string, UpgradeOptions<undefined>>;
type ServerConfig = keyof typeof SERVER_CONFIGS;

/** What the server answers to the offer `permessage-deflate; client_max_window_bits` (ws's, Python's and Chromium's default). */
const ANSWER_TO_DEFAULT_OFFER: Record<ServerConfig, string | null> = {
  off: null,
  default: 'permessage-deflate',
  snct: 'permessage-deflate; server_no_context_takeover',
  cnct: 'permessage-deflate; client_no_context_takeover',
  smwb10: 'permessage-deflate; server_max_window_bits=10',
  cmwb9: 'permessage-deflate; client_max_window_bits=9',
  all: 'permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9; client_max_window_bits=10',
  tuned: 'permessage-deflate',
  alias: 'permessage-deflate; server_max_window_bits=12',
  bomb: 'permessage-deflate',
};

function serverThreshold(cfg: ServerConfig): number {
  return cfg === 'tuned' ? 0 : 1024;
}

interface CorralServers {
  ends: Terminations;
  /** `ws://127.0.0.1:<port>` of the listener for each setting. */
  listeners: Record<ServerConfig, string>;
  /** `ws://127.0.0.1:<port>` of the node:http server calling handleUpgrade (`?cfg=<setting>`). */
  embedded: string;
  /** Errors handleUpgrade logged, by request target. */
  upgradeErrors: Map<string, unknown>;
  /** Byte lengths of the messages the handler was given, by request target. */
  seen: Map<string, number[]>;
}

const corral = fixture<CorralServers>(async (cleanup) => {
  const ends = new Terminations();
  const sockets = new Map<string, Socket>();
  const seen = new Map<string, number[]>();
  const handler = deflateHandler(ends, sockets, seen);

  const listeners = {} as Record<ServerConfig, string>;
  for (const [name, opts] of Object.entries(SERVER_CONFIGS) as [ServerConfig, UpgradeOptions<undefined>][]) {
    const listener = await startListener(
      `deflate-interop-${name}-${process.pid}`, tcp, { socketOpts: { host: HOST, port: 0 }, shutdown: 'brutal_kill' },
      websocketProtocol(handler, opts), undefined,
    );
    cleanup(() => listener.stop());
    listeners[name] = `ws://${HOST}:${listener.getPort()!}`;
  }

  const upgradeErrors = new Map<string, unknown>();
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
    res.end(DEFLATE_PAGE);
  });
  const open = new Set<SessionSocket>();
  server.on('upgrade', (req: http.IncomingMessage, socket: SessionSocket, head: Buffer) => {
    const url = req.url ?? '/';
    const cfg = new URL(url, 'http://server').searchParams.get('cfg') ?? 'off';
    const logger = { error: (obj: object) => upgradeErrors.set(url, (obj as { err?: unknown }).err ?? obj) };
    const opts: UpgradeOptions<undefined> = cfg === 'both'
      ? { compress: true, perMessageDeflate: true, logger }
      : { ...(SERVER_CONFIGS[cfg as ServerConfig] as UpgradeOptions<undefined>), logger };
    open.add(socket);
    sockets.set(url, socket as unknown as Socket);
    socket.once('close', () => open.delete(socket));
    Promise.resolve()
      .then(() => handleUpgrade(req, socket, head, handler, opts))
      .catch((err: unknown) => {
        upgradeErrors.set(url, err);
        socket.destroy();
      });
  });
  server.listen({ host: HOST, port: 0 });
  await once(server, 'listening');
  cleanup(async () => {
    for (const socket of open) socket.destroy();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { ends, listeners, embedded: `ws://${HOST}:${(server.address() as AddressInfo).port}`, upgradeErrors, seen };
}, { timeoutMs: 60_000 });

let ids = 0;
/** A request target no other connection uses. */
const target = (name: string, query = ''): string => `/${name}?conn=${++ids}${query}`;

// ---- the ws client ----------------------------------------------------------------------------



function expectSame(what: string, sent: string | Buffer, got: Message): void {
  expect(got.isBinary, `${what}: message type`).toBe(typeof sent !== 'string');
  if (typeof sent === 'string') {
    const text = got.data.toString('utf8');
    expect(text.length, `${what}: length`).toBe(sent.length);
    expect(text === sent, `${what}: content`).toBe(true);
  } else {
    expect(got.data.length, `${what}: length`).toBe(sent.length);
    expect(got.data.equals(sent), `${what}: content`).toBe(true);
  }
}

/** ws's client options (perMessageDeflate), as offers. */
const WS_OFFERS = {
  none: false,
  default: {},
  snct: { serverNoContextTakeover: true },
  cnct: { clientNoContextTakeover: true },
  smwb9: { serverMaxWindowBits: 9 },
  smwb15: { serverMaxWindowBits: 15, clientMaxWindowBits: 15 },
  cmwb10: { clientMaxWindowBits: 10 },
  // Offers no client_max_window_bits at all.
  noCmwb: { clientMaxWindowBits: false as unknown as number },
  all: { serverNoContextTakeover: true, clientNoContextTakeover: true, serverMaxWindowBits: 10, clientMaxWindowBits: 9 },
  bits8: { serverMaxWindowBits: 8, clientMaxWindowBits: 8 },
  tuned: { threshold: 0, zlibDeflateOptions: { level: 9, memLevel: 9 } },
} satisfies Record<string, WebSocket.PerMessageDeflateOptions | false>;

interface WsCase {
  server: ServerConfig;
  offer: keyof typeof WS_OFFERS;
  expected: string | null;
  full?: boolean;
}

const WS_CASES: WsCase[] = [
  { server: 'off', offer: 'default', expected: null },
  { server: 'default', offer: 'none', expected: null },
  { server: 'default', offer: 'default', expected: 'permessage-deflate', full: true },
  { server: 'default', offer: 'snct', expected: 'permessage-deflate; server_no_context_takeover' },
  { server: 'default', offer: 'cnct', expected: 'permessage-deflate; client_no_context_takeover' },
  { server: 'default', offer: 'smwb9', expected: 'permessage-deflate; server_max_window_bits=9' },
  // client_max_window_bits=15 is not below 15: nothing to answer for it.
  { server: 'default', offer: 'smwb15', expected: 'permessage-deflate; server_max_window_bits=15' },
  { server: 'default', offer: 'cmwb10', expected: 'permessage-deflate; client_max_window_bits=10' },
  {
    server: 'default', offer: 'all', full: true,
    expected: 'permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=9',
  },
  { server: 'default', offer: 'bits8', expected: 'permessage-deflate; server_max_window_bits=8; client_max_window_bits=8', full: true },
  { server: 'snct', offer: 'default', expected: ANSWER_TO_DEFAULT_OFFER.snct },
  { server: 'cnct', offer: 'default', expected: ANSWER_TO_DEFAULT_OFFER.cnct },
  { server: 'smwb10', offer: 'default', expected: ANSWER_TO_DEFAULT_OFFER.smwb10 },
  { server: 'smwb10', offer: 'smwb9', expected: 'permessage-deflate; server_max_window_bits=9' },
  { server: 'cmwb9', offer: 'default', expected: ANSWER_TO_DEFAULT_OFFER.cmwb9 },
  { server: 'cmwb9', offer: 'cmwb10', expected: 'permessage-deflate; client_max_window_bits=9' },
  // The server must set the client's window, and the offer does not let it: declined.
  { server: 'cmwb9', offer: 'noCmwb', expected: null },
  { server: 'all', offer: 'default', expected: ANSWER_TO_DEFAULT_OFFER.all, full: true },
  { server: 'all', offer: 'smwb15', expected: ANSWER_TO_DEFAULT_OFFER.all },
  { server: 'tuned', offer: 'tuned', expected: 'permessage-deflate', full: true },
  { server: 'alias', offer: 'default', expected: ANSWER_TO_DEFAULT_OFFER.alias },
];

/** The ws client against a Corral server at `base` with setting `cfg`: the whole scenario. */
async function wsClientScenario(base: string, cfg: ServerConfig, c: WsCase, query = ''): Promise<void> {
  const { ends } = corral();
  const offer = WS_OFFERS[c.offer];
  const path = target('ws', query);
  const client = await wsConnect(`${base}${path}`, [], { perMessageDeflate: offer });
  const header = client.response.headers['sec-websocket-extensions'];
  expect(header ?? null, 'the 101 answer').toBe(c.expected);
  expect(client.ws.extensions).toBe(c.expected === null ? '' : 'permessage-deflate');
  const ext = await client.echo('!ext');
  expect(JSON.parse(ext.data.toString()), "the server's session.extensions").toEqual({ extensions: c.expected ?? '' });
  const a = agreed(c.expected);

  // Echoes: what the server sent is compressed when agreed and at the threshold or above.
  for (const spec of c.full === true ? FULL_BATTERY : BATTERY) {
    const data = make(spec.kind, spec.size);
    const bytes = byteLength(data);
    const before = client.socket.bytesRead;
    const back = await client.echo(data);
    expectSame(spec.label, data, back);
    expectWire('server to ws', spec, bytes, client.socket.bytesRead - before, verdict(a, 'server', spec, bytes, serverThreshold(cfg)));
  }

  // Several messages in a row: context takeover, where allowed, shrinks a repeat.
  const unit = randomBytes(2048);
  const wires: number[] = [];
  for (let i = 0; i < 4; i++) {
    const before = client.socket.bytesRead;
    expectSame(`repeat ${i}`, unit, await client.echo(unit));
    wires.push(client.socket.bytesRead - before);
  }
  expectRepeats('server to ws', wires, takeoverShrinks(a, 'server'));

  // The server's compressor keeps to the agreed window.
  if (a !== null) {
    const bits = a.serverMaxWindowBits ?? 15;
    for (const probe of windowProbes(bits)) {
      const before = client.socket.bytesRead;
      expectSame(`window probe of ${probe.block}`, probe.data, await client.echo(probe.data));
      expectProbe('server to ws', bits, probe, probe.data.length, client.socket.bytesRead - before);
    }
  }

  // Compressed fragmented messages, a ping between fragments: small (inflated in one go) and large.
  for (const parts of [
    [pattern(3000), randomBytes(1), Buffer.from(ASCII.repeat(10))],
    [pattern(100_000), randomBytes(20_000), pattern(150_000)],
  ]) {
    client.ws.send(parts[0]!, { binary: true, fin: false, compress: true });
    client.ws.ping('between fragments');
    for (const [i, p] of parts.slice(1).entries()) client.ws.send(p, { binary: true, fin: i === parts.length - 2, compress: true });
    const [pong, back] = await Promise.all([client.nextEvent('pong'), client.next()]);
    expect(pong.toString()).toBe('between fragments');
    expectSame('fragmented binary', Buffer.concat(parts), back);
  }
  // Text whose fragments split a UTF-8 sequence ('✓' is e2 9c 93).
  const text = Buffer.from(`${UNICODE.repeat(50)}checked \u2713 in three fragments`);
  const cut = text.lastIndexOf(0x9c);
  client.ws.send(text.subarray(0, cut), { binary: false, fin: false, compress: true });
  client.ws.send(text.subarray(cut, cut + 1), { binary: false, fin: false, compress: true });
  client.ws.send(text.subarray(cut + 1), { binary: false, fin: true, compress: true });
  expectSame('fragmented text', text.toString('utf8'), await client.next());

  // Many small compressed fragments, cutting through UTF-8 sequences; empty first and last fragments.
  const many = Buffer.from(UNICODE.repeat(60));
  for (let at = 0; at < many.length; at += 7) {
    client.ws.send(many.subarray(at, at + 7), { binary: false, fin: at + 7 >= many.length, compress: true });
  }
  expectSame('text in 7-byte fragments', many.toString('utf8'), await client.next());
  const pieces = Array.from({ length: 300 }, (_, i) => (i % 2 === 0 ? randomBytes(1024) : pattern(1024)));
  for (const [i, p] of pieces.entries()) client.ws.send(p, { binary: true, fin: i === pieces.length - 1, compress: true });
  expectSame('300 fragments of 1 KiB', Buffer.concat(pieces), await client.next());
  const middle = pattern(20_000);
  client.ws.send(Buffer.alloc(0), { binary: true, fin: false, compress: true });
  client.ws.send(middle, { binary: true, fin: false, compress: true });
  client.ws.send(Buffer.alloc(0), { binary: true, fin: true, compress: true });
  expectSame('empty first and last fragments', middle, await client.next());

  // One reply of large messages (compressed in the background), small ones and a ping: in order.
  // Both logged as they arrive.
  const order: string[] = [];
  const onPing = (data: Buffer): void => {
    order.push(`ping ${data.toString()}`);
  };
  const onMessage = (data: Buffer, isBinary: boolean): void => {
    order.push(`${isBinary ? 'binary' : 'text'} ${data.length}`);
  };
  client.ws.on('ping', onPing);
  client.ws.on('message', onMessage);
  client.ws.send('!burst');
  const burst: Message[] = [];
  for (let i = 0; i < 4; i++) burst.push(await client.next());
  client.ws.off('ping', onPing);
  client.ws.off('message', onMessage);
  expect(order, JSON.stringify(order)).toEqual([`binary ${BURST}`, 'ping burst', 'text 5', 'binary 100000', 'text 4']);
  expectSame('burst: first', pattern(BURST), burst[0]!);
  expectSame('burst: third', pattern(100_000), burst[2]!);

  client.ws.close(1000);
  expect(await client.closed()).toEqual({ code: 1000, reason: '' });
  expect(await ends.of(path)).toEqual({ type: 'remote', code: 1000, reason: '' });

  // The server sends in 1000-byte frames: a compressed message in fragments.
  const fragmentedPath = target('ws-frag', `${query}&frag=1000`);
  const fragmented = await wsConnect(`${base}${fragmentedPath}`, [], { perMessageDeflate: offer });
  const before = fragmented.socket.bytesRead;
  const big = await fragmented.echo('!big 65536');
  expectSame('server-fragmented message', pattern(65_536), big);
  expectWire('server to ws, fragmented', BIG_SPEC, 65_536, fragmented.socket.bytesRead - before, verdict(a, 'server', BIG_SPEC, 65_536, 0));
  const random = randomBytes(8192);
  expectSame('server-fragmented random message', random, await fragmented.echo(random));
  // A stop behind a compression still running: the messages go out first, then the close.
  fragmented.ws.send('!burststop');
  expectSame('before the stop', pattern(BURST), await fragmented.next());
  expectSame('before the stop', 'bye', await fragmented.next());
  expect(await fragmented.closed()).toEqual({ code: 4000, reason: 'burst' });
  expect(await ends.of(fragmentedPath)).toEqual({ type: 'stop' });
}

const caseName = (c: { server: string; offer: string; expected: string | null }): string =>
  `server ${c.server}, offer ${c.offer}: ${c.expected ?? 'no extension'}`;

describe('the ws client against a Corral server (websocketProtocol on tcp)', () => {
  for (const c of WS_CASES) {
    it(caseName(c), async () => {
      await wsClientScenario(corral().listeners[c.server], c.server, c);
    }, 30_000);
  }
});

describe('the ws client against a Corral server (handleUpgrade in a node:http server)', () => {
  const cases: WsCase[] = [
    { server: 'off', offer: 'default', expected: null },
    { server: 'default', offer: 'default', expected: 'permessage-deflate', full: true },
    { server: 'all', offer: 'default', expected: ANSWER_TO_DEFAULT_OFFER.all },
    { server: 'cmwb9', offer: 'noCmwb', expected: null },
    { server: 'alias', offer: 'smwb9', expected: 'permessage-deflate; server_max_window_bits=9' },
    { server: 'tuned', offer: 'cnct', expected: 'permessage-deflate; client_no_context_takeover' },
  ];
  for (const c of cases) {
    it(caseName(c), async () => {
      await wsClientScenario(corral().embedded, c.server, c, `&cfg=${c.server}`);
    }, 30_000);
  }

  it("declines compression for a connection whose init says compress: false", async () => {
    const client = await wsConnect(`${corral().embedded}${target('ws', '&cfg=default&nocompress')}`, [], { perMessageDeflate: {} });
    expect(client.response.headers['sec-websocket-extensions']).toBeUndefined();
    expect(JSON.parse((await client.echo('!ext')).data.toString())).toEqual({ extensions: '' });
    const data = pattern(65_536);
    const before = client.socket.bytesRead;
    expectSame('64 KiB', data, await client.echo(data));
    expect(client.socket.bytesRead - before).toBeGreaterThanOrEqual(65_536);
    client.ws.close(1000);
    await client.closed();
  });
});

describe('decompression bombs sent to a Corral server (maxMessageSize 1 MiB)', () => {
  it('closes with 1009 on a compressed message that inflates past the limit; other connections carry on', async () => {
    const { listeners, embedded, ends } = corral();
    const bystander = await wsConnect(`${listeners.bomb}${target('bystander')}`, [], { perMessageDeflate: {} });
    expect(bystander.response.headers['sec-websocket-extensions']).toBe('permessage-deflate');

    // Exactly at the limit: accepted (compressed to a few KiB, inflated to 1 MiB).
    const atLimit = await wsConnect(`${listeners.bomb}${target('at-limit')}`, [], { perMessageDeflate: {} });
    const zeros = Buffer.alloc(MIB);
    const sent = atLimit.socket.bytesWritten;
    expectSame('1 MiB of zeros', zeros, await atLimit.echo(zeros));
    expect(atLimit.socket.bytesWritten - sent, 'the 1 MiB went compressed').toBeLessThan(64 * 1024);
    atLimit.ws.close(1000);
    await atLimit.closed();

    const bombs: { name: string; send: (c: WsClient) => void; base: string }[] = [
      // One byte over: small enough to be inflated inline.
      { name: 'one byte over', base: listeners.bomb, send: (c) => c.ws.send(Buffer.alloc(MIB + 1), { compress: true }) },
      // 8 MiB of zeros: about 8 KiB compressed.
      { name: '8 MiB', base: listeners.bomb, send: (c) => c.ws.send(Buffer.alloc(8 * MIB), { compress: true }) },
      // 64 MiB of zeros: about 64 KiB compressed, inflated in the background.
      { name: '64 MiB', base: listeners.bomb, send: (c) => c.ws.send(Buffer.alloc(64 * MIB), { compress: true }) },
      // In fragments, each under the limit, four 512 KiB fragments together over it.
      {
        name: 'fragmented', base: listeners.bomb, send: (c) => {
          for (let i = 0; i < 4; i++) c.ws.send(Buffer.alloc(512 * 1024), { binary: true, fin: i === 3, compress: true });
        },
      },
      // Through handleUpgrade, with the same options.
      { name: 'handleUpgrade', base: embedded, send: (c) => c.ws.send(Buffer.alloc(8 * MIB), { compress: true }) },
    ];
    for (const bomb of bombs) {
      const path = target('bomb', bomb.base === embedded ? '&cfg=bomb' : '');
      const client = await wsConnect(`${bomb.base}${path}`, [], { perMessageDeflate: {} });
      expect(client.response.headers['sec-websocket-extensions'], bomb.name).toBe('permessage-deflate');
      const written = client.socket.bytesWritten;
      bomb.send(client);
      const closed = await client.closed();
      expect(closed.code, `${bomb.name}: close code`).toBe(1009);
      expect(await ends.of(path), bomb.name).toMatchObject({ type: 'error', error: 'toobig' });
      if (bomb.name !== 'one byte over') {
        // What the peer sent was far smaller than what it inflates to: a bomb indeed.
        expect(client.socket.bytesWritten - written, `${bomb.name}: bytes sent`).toBeLessThan(MIB);
      }
    }

    // The server is fine: the bystander still echoes, and new connections work.
    expectSame('bystander', pattern(100_000), await bystander.echo(pattern(100_000)));
    const after = await wsConnect(`${listeners.bomb}${target('after')}`, [], { perMessageDeflate: {} });
    expectSame('after the bombs', make('unicode', 50_000), await after.echo(make('unicode', 50_000)));
    for (const c of [bystander, after]) {
      c.ws.close(1000);
      expect((await c.closed()).code).toBe(1000);
    }
  }, 60_000);
});

describe('a close right behind a large compressed message', () => {
  it('the Corral server hands the message to its handler before it takes the close', async () => {
    const { listeners, ends, seen } = corral();
    for (const size of [MIB, 4 * MIB]) {
      const path = target('inflight');
      const client = await wsConnect(`${listeners.default}${path}`, [], { perMessageDeflate: {} });
      expect(client.response.headers['sec-websocket-extensions']).toBe('permessage-deflate');
      // Random bytes: compressed they stay large, inflated in the thread pool.
      client.ws.send(randomBytes(size), { binary: true, compress: true });
      client.ws.close(1000, 'right behind');
      expect((await client.closed()).code).toBe(1000);
      expect(await ends.of(path)).toEqual({ type: 'remote', code: 1000, reason: 'right behind' });
      expect(seen.get(path), `${size} bytes then a close`).toEqual([size]);
    }
  });

  it('the Corral client sends its close after a message still being compressed', async () => {
    const { base, received } = wsServer();
    const path = target('inflight', '&cfg=default');
    const client = await connect<undefined, undefined>(`${base}${path}`, { compress: true, timeout: WAIT_MS });
    expect(client.response.headers['sec-websocket-extensions']).toBe('permessage-deflate');
    client.send(randomBytes(4 * MIB));
    const reason = await within(client.close(4001, 'after the message'), WAIT_MS, 'close');
    expect(reason).toMatchObject({ type: 'stop' });
    expect(await wsServer().closedCode(path)).toBe(4001);
    expect(received(path), 'what the ws server got before the close').toEqual([4 * MIB]);
  });
});

// ---- Python's websockets client ---------------------------------------------------------------

interface PythonCase {
  name: string;
  server: ServerConfig;
  offer: PythonOffer | null;
  expected: string | null;
  full?: boolean;
}

const PY_CASES: PythonCase[] = [
  { name: 'default offer', server: 'default', offer: {}, expected: 'permessage-deflate', full: true },
  { name: 'server_no_context_takeover', server: 'default', offer: { server_no_context_takeover: true }, expected: 'permessage-deflate; server_no_context_takeover' },
  { name: 'client_no_context_takeover', server: 'default', offer: { client_no_context_takeover: true }, expected: 'permessage-deflate; client_no_context_takeover' },
  { name: 'server_max_window_bits=10', server: 'default', offer: { server_max_window_bits: 10 }, expected: 'permessage-deflate; server_max_window_bits=10' },
  // Python inflates with a 256-byte window; zlib cannot compress with less than 512 bytes.
  { name: 'server_max_window_bits=8', server: 'default', offer: { server_max_window_bits: 8 }, expected: 'permessage-deflate; server_max_window_bits=8', full: true },
  { name: 'client_max_window_bits=9', server: 'default', offer: { client_max_window_bits: 9 }, expected: 'permessage-deflate; client_max_window_bits=9' },
  {
    name: 'every parameter', server: 'default', full: true,
    offer: { server_no_context_takeover: true, client_no_context_takeover: true, server_max_window_bits: 9, client_max_window_bits: 10, compress_settings: { memLevel: 4 } },
    expected: 'permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9; client_max_window_bits=10',
  },
  { name: 'window bits of 15 to a server limited to 10', server: 'smwb10', offer: { server_max_window_bits: 15, client_max_window_bits: 15 }, expected: 'permessage-deflate; server_max_window_bits=10' },
  { name: 'to a server with every parameter', server: 'all', offer: {}, expected: ANSWER_TO_DEFAULT_OFFER.all },
  { name: 'bare client_max_window_bits to a server limiting it to 9', server: 'cmwb9', offer: {}, expected: ANSWER_TO_DEFAULT_OFFER.cmwb9 },
  { name: 'no client_max_window_bits to a server that must limit it: declined', server: 'cmwb9', offer: { client_max_window_bits: null }, expected: null },
  { name: 'to a server without compression', server: 'off', offer: {}, expected: null },
  { name: 'no offer', server: 'default', offer: null, expected: null },
  { name: 'to a server with threshold 0, level 9, memLevel 9', server: 'tuned', offer: {}, expected: 'permessage-deflate', full: true },
  { name: 'to a server configured with the perMessageDeflate alias', server: 'alias', offer: {}, expected: ANSWER_TO_DEFAULT_OFFER.alias },
];

const framesWire = (frames: readonly WireFrame[]): number => frames.reduce((n, f) => n + f[2], 0);

/** The probes of the server's window for an agreement (none without one). */
const probesFor = (a: Agreed | null): ProbeSpec[] => (a === null ? [] : windowProbeSpecs(a.serverMaxWindowBits ?? 15));

describe("Python's websockets client against a Corral server", () => {
  const batch = fixture(async () => {
    const { listeners } = corral();
    const cases: PythonClientCase[] = PY_CASES.map((c) => ({
      name: c.name, url: `${listeners[c.server]}/py?case=${encodeURIComponent(c.name)}`, offer: c.offer,
      battery: c.full === true ? FULL_BATTERY : BATTERY, probes: probesFor(agreed(c.expected)),
    }));
    cases.push({ name: 'bomb', url: `${listeners.bomb}/py-bomb?case=bomb`, offer: {}, limit: MIB, bomb: 8 * MIB });
    return runDeflatePythonClient(cases);
  }, { timeoutMs: 120_000 });

  const result = (name: string): PythonClientResult => {
    const r = batch().results.get(name);
    if (r === undefined) expect.fail(`the Python client reported nothing for ${name}`);
    expect(r.error, `${name} (websockets ${batch().version})`).toBeUndefined();
    return r;
  };

  for (const c of PY_CASES) {
    it(`${c.name}: ${c.expected ?? 'no extension'}`, async () => {
      const r = result(c.name);
      expect(r.header ?? null, 'the 101 answer').toBe(c.expected);
      expect(r.serverExt, "the server's session.extensions").toBe(c.expected ?? '');
      const a = agreed(c.expected);
      expect(r.local === null, 'Python runs the extension').toBe(a === null);

      const battery = c.full === true ? FULL_BATTERY : BATTERY;
      expect(r.messages!.map((m) => m.label)).toEqual(battery.map((m) => m.label));
      for (const [i, m] of r.messages!.entries()) {
        const spec = battery[i]!;
        expect(m.same, `${m.label} came back the same`).toBe(true);
        expect(m.type, m.label).toBe(spec.kind === 'pattern' || spec.kind === 'random' ? 'bytes' : 'str');
        if (a === null) continue;
        const frames = m.frames!;
        expect(frames.length, `${m.label}: one frame`).toBe(1);
        const bytes = typeof m.bytes === 'number' ? m.bytes : byteLength(make(spec.kind, spec.size));
        expect(frames[0]![1], `${m.label} (${bytes} bytes): RSV1`).toBe(bytes >= serverThreshold(c.server));
        expectWire('server to Python', spec, bytes, framesWire(frames), verdict(a, 'server', spec, bytes, serverThreshold(c.server)));
      }

      const repeats = r.repeats!;
      expect(repeats.every((x) => x.same)).toBe(true);
      if (a !== null) {
        expectRepeats('server to Python', repeats.map((x) => framesWire(x.frames!)), takeoverShrinks(a, 'server'));
      }

      const probes = probesFor(a);
      expect(r.probes!.map((p) => [p.block, p.same])).toEqual(probes.map((p) => [p.block, true]));
      for (const [i, p] of r.probes!.entries()) expectProbe('server to Python', a!.serverMaxWindowBits ?? 15, probes[i]!, p.size, framesWire(p.frames!));

      expect(r.fragmented).toEqual([
        { same: true, length: 3000 + 1 + 500 },
        { same: true, length: 270_000 },
        expect.objectContaining({ same: true }),
      ]);
      expect(r.pongs).toBe(2);
      expect(r.close).toBe(1000);
      expect(await corral().ends.of(`/py?case=${encodeURIComponent(c.name)}`)).toEqual({ type: 'remote', code: 1000, reason: 'done' });

      const sf = r.serverFragments!;
      expect(sf.map((x) => x.same), 'the messages the server sent in 1000-byte frames').toEqual([true, true]);
      for (const [i, { frames }] of sf.entries()) {
        if (frames === null) continue;
        const wire = framesWire(frames);
        expect(frames.length, `message ${i}: frames of at most 1000 bytes`).toBe(Math.max(1, Math.ceil(wire / 1000)));
        expect(frames[0]!.slice(0, 2), `message ${i}: the first frame, RSV1 when compressed`).toEqual([false, a !== null]);
        for (const f of frames.slice(1)) expect(f.slice(0, 2), `message ${i}: later frames, continuations with RSV1 clear`).toEqual([true, false]);
        if (i === 0) expectWire('server to Python, fragmented', BIG_SPEC, 65_536, wire, verdict(a, 'server', BIG_SPEC, 65_536, 0));
        // 8 KiB of random bytes: several frames whatever the compression.
        else expect(frames.length).toBeGreaterThan(8);
      }
    });
  }

  it('a decompression bomb closes with 1009', async () => {
    const r = result('bomb');
    expect(r.header).toBe('permessage-deflate');
    expect(r.atLimit, 'a message of exactly 1 MiB is echoed').toBe(true);
    expect(r.bombWire, '8 MiB of zeros, compressed').toBeLessThan(MIB);
    expect(r.close).toBe(1009);
    expect(await corral().ends.of('/py-bomb?case=bomb')).toMatchObject({ type: 'error', error: 'toobig' });
  });
});

// ---- headless Chromium ------------------------------------------------------------------------

interface BrowserResult {
  extensions: string;
  serverExt: string;
  messages: { label: string; same: boolean; type: string; up: number; down: number }[];
  repeats: { same: boolean; down: number }[];
  probes: { block: number; size: number; same: boolean; down: number }[];
  close: { code: number; reason: string; wasClean: boolean };
  serverFragments: { same: boolean; down: number };
}

/** Chromium sends a byte count request (`!wire`) between echoes: its reply costs up to this much. */
const WIRE_OVERHEAD = 100;

describe('headless Chromium against a Corral server (handleUpgrade)', () => {
  const env = fixture(async (cleanup) => {
    const browser = await launchChromium();
    cleanup(() => browser.close());
    const page = await browser.newPage();
    const problems: string[] = [];
    page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
    await page.goto(`${corral().embedded.replace(/^ws/, 'http')}/`, { timeout: 30_000 });
    await page.waitForFunction(() => (globalThis as { ready?: boolean }).ready === true, undefined, { timeout: 30_000 });
    return { page, problems };
  }, { timeoutMs: 90_000 });

  const cases: { cfg: ServerConfig; query?: string; expected: string | null; full?: boolean }[] = [
    { cfg: 'off', expected: null },
    { cfg: 'default', expected: 'permessage-deflate', full: true },
    { cfg: 'snct', expected: ANSWER_TO_DEFAULT_OFFER.snct },
    { cfg: 'cnct', expected: ANSWER_TO_DEFAULT_OFFER.cnct },
    { cfg: 'smwb10', expected: ANSWER_TO_DEFAULT_OFFER.smwb10 },
    { cfg: 'cmwb9', expected: ANSWER_TO_DEFAULT_OFFER.cmwb9 },
    { cfg: 'all', expected: ANSWER_TO_DEFAULT_OFFER.all, full: true },
    { cfg: 'tuned', expected: 'permessage-deflate' },
    { cfg: 'alias', expected: ANSWER_TO_DEFAULT_OFFER.alias },
    { cfg: 'default', query: '&nocompress', expected: null },
  ];

  for (const c of cases) {
    it(`server ${c.cfg}${c.query ?? ''}: ${c.expected ?? 'no extension'}`, async () => {
      const { page, problems } = env();
      const battery = c.full === true ? FULL_BATTERY : BATTERY;
      const url = `${corral().embedded}${target('chromium', `&cfg=${c.cfg}${c.query ?? ''}`)}`;
      const a = agreed(c.expected);
      const probes = probesFor(a);
      const r = await within(
        page.evaluate(`runDeflate(${JSON.stringify({ url, battery, probes })})`) as Promise<BrowserResult>,
        30_000,
        'browser scenario',
      ).catch((err: Error) => {
        throw new Error(`${err.message}\n${problems.join('\n')}`);
      });
      expect(r.extensions, 'the WebSocket\'s extensions').toBe(c.expected ?? '');
      expect(r.serverExt, "the server's session.extensions").toBe(c.expected ?? '');
      expect(r.probes.map((p) => [p.block, p.same])).toEqual(probes.map((p) => [p.block, true]));
      for (const [i, p] of r.probes.entries()) expectProbe('server to Chromium', a!.serverMaxWindowBits ?? 15, probes[i]!, p.size, p.down, WIRE_OVERHEAD);
      expect(r.messages.map((m) => m.label)).toEqual(battery.map((m) => m.label));
      for (const [i, m] of r.messages.entries()) {
        const spec = battery[i]!;
        expect(m.same, `${m.label} came back the same`).toBe(true);
        expect(m.type, m.label).toBe(spec.kind === 'pattern' || spec.kind === 'random' ? 'binary' : 'text');
        const bytes = byteLength(make(spec.kind, spec.size));
        expectWire('server to Chromium', spec, bytes, m.down, verdict(a, 'server', spec, bytes, serverThreshold(c.cfg)), WIRE_OVERHEAD);
      }
      expect(r.repeats.every((x) => x.same)).toBe(true);
      const downs = r.repeats.map((x) => x.down);
      // The byte counts include a `!wire` reply: at most WIRE_OVERHEAD, which moves no verdict.
      expectRepeats('server to Chromium', downs.map((d, i) => (i > 0 && takeoverShrinks(a, 'server') ? d - WIRE_OVERHEAD : d)), takeoverShrinks(a, 'server'));
      expect(r.close).toEqual({ code: 1000, reason: '', wasClean: true });
      expect(r.serverFragments.same).toBe(true);
      expectWire('server to Chromium, fragmented', BIG_SPEC, 65_536, r.serverFragments.down, verdict(a, 'server', BIG_SPEC, 65_536, 0), WIRE_OVERHEAD);
    }, 40_000);
  }
});

// ---- Corral's client --------------------------------------------------------------------------

/** Corral's client settings under test. */
const CLIENT_CONFIGS = {
  off: {},
  default: { compress: true },
  snct: { compress: { serverNoContextTakeover: true } },
  cnct: { compress: { clientNoContextTakeover: true } },
  smwb10: { compress: { serverMaxWindowBits: 10 } },
  cmwb9: { compress: { clientMaxWindowBits: 9 } },
  all: {
    compress: {
      serverNoContextTakeover: true, clientNoContextTakeover: true, serverMaxWindowBits: 9, clientMaxWindowBits: 10,
      level: 9, memLevel: 9, threshold: 0,
    },
  },
  alias: { perMessageDeflate: { serverMaxWindowBits: 12 } },
  bits8: { compress: { serverMaxWindowBits: 8, clientMaxWindowBits: 8 } },
} satisfies Record<string, ClientOptions<undefined, undefined>>;
type ClientConfig = keyof typeof CLIENT_CONFIGS;

function clientThreshold(cfg: ClientConfig): number {
  return cfg === 'all' ? 0 : 1024;
}

function clientOwnNoTakeover(cfg: ClientConfig): boolean {
  return cfg === 'cnct' || cfg === 'all';
}

/** What the peer server received and sent while `fn` ran, in payload bytes (plus small overheads for ws). */
type Measure = (client: WebSocketClient<undefined>, fn: () => Promise<void>) => Promise<{ up: number; down: number; upFrames?: WireFrame[] }>;

interface PeerServer {
  name: string;
  base: string;
  measure: Measure;
  /** Overheads counted in `up` by `measure` besides the message (ws: the byte count requests). */
  overhead: number;
}

async function nextFrame(client: WebSocketClient<undefined>): Promise<InFrame> {
  return within(client.recv(), WAIT_MS, 'message');
}

async function nextText(client: WebSocketClient<undefined>): Promise<string> {
  const f = await nextFrame(client);
  if (f.type !== 'text') throw new Error(`expected text, got ${f.type}`);
  return f.data;
}

async function corralEcho(client: WebSocketClient<undefined>, data: string | Buffer): Promise<InFrame> {
  client.send(data);
  return nextFrame(client);
}

function expectSameFrame(what: string, sent: string | Buffer, got: InFrame): void {
  if (typeof sent === 'string') {
    expect(got.type, what).toBe('text');
    const text = got.data as string;
    expect(text.length, `${what}: length`).toBe(sent.length);
    expect(text === sent, `${what}: content`).toBe(true);
  } else {
    expect(got.type, what).toBe('binary');
    const data = got.data as Buffer;
    expect(data.length, `${what}: length`).toBe(sent.length);
    expect(data.equals(sent), `${what}: content`).toBe(true);
  }
}

interface ClientCase {
  server: string;
  client: ClientConfig;
  /** The answer's parameters, in any order (null: no extension). */
  expected: string | null;
  full?: boolean;
}

/** Corral's client against a peer server: the whole scenario. */
async function corralClientScenario(peer: PeerServer, c: ClientCase): Promise<void> {
  const opts = CLIENT_CONFIGS[c.client];
  const url = `${peer.base}${target('corral', `&cfg=${c.server}`)}`;
  const client = await connect<undefined, undefined>(url, { ...opts, timeout: WAIT_MS });
  const header = client.response.headers['sec-websocket-extensions'];
  expect(agreed(header), `the 101 answer ${JSON.stringify(header)}`).toEqual(agreed(c.expected));
  expect(client.session.extensions, "the client's session.extensions").toBe(header ?? '');
  client.send('!ext');
  expect(JSON.parse(await nextText(client)), "the server's own answer").toEqual({ extensions: header ?? '' });
  const a = agreed(header);

  for (const spec of c.full === true ? FULL_BATTERY : BATTERY) {
    const data = make(spec.kind, spec.size);
    const bytes = byteLength(data);
    let back: InFrame | undefined;
    const { up, down } = await peer.measure(client, async () => {
      back = await corralEcho(client, data);
    });
    expectSameFrame(spec.label, data, back!);
    expectWire(`Corral client to ${peer.name}`, spec, bytes, up, verdict(a, 'client', spec, bytes, clientThreshold(c.client)), peer.overhead);
    // The peer compressed what it sent back (and Corral inflated it).
    expectWire(`${peer.name} to Corral client`, spec, bytes, down, verdict(a, 'server', spec, bytes, 0), 0, 4096);
  }

  const unit = randomBytes(2048);
  const ups: number[] = [];
  for (let i = 0; i < 4; i++) {
    let back: InFrame | undefined;
    const { up } = await peer.measure(client, async () => {
      back = await corralEcho(client, unit);
    });
    expectSameFrame(`repeat ${i}`, unit, back!);
    ups.push(up);
  }
  const shrinks = takeoverShrinks(a, 'client', clientOwnNoTakeover(c.client));
  expectRepeats(`Corral client to ${peer.name}`, ups.map((u, i) => (i > 0 && shrinks ? u - peer.overhead : u)), shrinks);

  // The client's compressor keeps to the agreed window.
  if (a !== null) {
    const bits = a.clientMaxWindowBits ?? 15;
    for (const probe of windowProbes(bits)) {
      let back: InFrame | undefined;
      const { up } = await peer.measure(client, async () => {
        back = await corralEcho(client, probe.data);
      });
      expectSameFrame(`window probe of ${probe.block}`, probe.data, back!);
      expectProbe(`Corral client to ${peer.name}`, bits, probe, probe.data.length, up, peer.overhead);
    }
  }

  // The server sends a compressed message in fragments, a ping between them.
  client.send('!fragping 100000 7000');
  expect(await nextFrame(client)).toEqual({ type: 'ping', data: Buffer.from('between fragments') });
  expectSameFrame('fragmented message from the server', pattern(100_000), await nextFrame(client));

  expect(await client.close()).toEqual({ type: 'stop' });

  // The client sends in 1000-byte frames: compressed messages in fragments.
  const fragmented = await connect<undefined, undefined>(`${peer.base}${target('corral-frag', `&cfg=${c.server}`)}`, {
    ...opts, timeout: WAIT_MS, session: { outgoingFrameSize: 1000 },
  });
  const specs: MessageSpec[] = [
    { label: 'fragmented binary 64 KiB', kind: 'pattern', size: 65_536 },
    { label: 'fragmented unicode text ~20 KiB', kind: 'unicode', size: 20_000 },
    { label: 'fragmented random binary 20 KiB', kind: 'random', size: 20_000 },
  ];
  for (const spec of specs) {
    const data = make(spec.kind, spec.size);
    let back: InFrame | undefined;
    const { up, upFrames } = await peer.measure(fragmented, async () => {
      back = await corralEcho(fragmented, data);
    });
    expectSameFrame(spec.label, data, back!);
    if (upFrames !== undefined) {
      // The payload, compressed or not, in frames of 1000 bytes; RSV1 on the first only.
      expect(upFrames.length, `${spec.label}: frames`).toBe(Math.ceil(up / 1000));
      expect(upFrames[0]!.slice(0, 2), `${spec.label}: first frame, RSV1 when compressed`).toEqual([false, a !== null]);
      for (const f of upFrames.slice(1)) expect(f.slice(0, 2), `${spec.label}: continuation`).toEqual([true, false]);
    }
    expectWire(`Corral client to ${peer.name}, fragmented`, spec, byteLength(data), up, verdict(a, 'client', spec, byteLength(data), clientThreshold(c.client)), peer.overhead);
  }
  await fragmented.close();
}

/** Corral's client in active mode: messages reach a handler, inflated and in order. */
async function activeScenario(peer: PeerServer, cfg: string): Promise<void> {
  const got: InFrame[] = [];
  let wake: (() => void) | undefined;
  const handler: WebSocketHandler<undefined, undefined, UpgradeResponse> = {
    websocketHandle(frame) {
      if (frame.type === 'text' || frame.type === 'binary') got.push(frame);
      wake?.();
    },
  };
  const client = await connect<undefined, undefined>(`${peer.base}${target('active', `&cfg=${cfg}`)}`, {
    compress: true, handler, timeout: WAIT_MS,
  });
  expect(client.active).toBe(true);
  expect(client.response.headers['sec-websocket-extensions']).toBeDefined();
  const sent = [pattern(MIB), make('unicode', 16_384), randomBytes(65_536), make('ascii', 10)];
  for (const data of sent) client.send(data);
  await within(new Promise<void>((resolve) => {
    wake = () => {
      if (got.length >= sent.length) resolve();
    };
    wake();
  }), WAIT_MS, 'the echoes');
  for (const [i, data] of sent.entries()) expectSameFrame(`active echo ${i}`, data, got[i]!);
  await client.close();
}

/** Corral's client with maxMessageSize 1 MiB, sent a message that inflates past it. */
async function bombScenario(peer: PeerServer, cfg: string, closedCode: (path: string) => Promise<number | null>): Promise<void> {
  const path = target('bombed', `&cfg=${cfg}`);
  const client = await connect<undefined, undefined>(`${peer.base}${path}`, { compress: true, maxMessageSize: MIB, timeout: WAIT_MS });
  expect(client.response.headers['sec-websocket-extensions']).toBeDefined();
  client.send(`!zeros ${MIB}`);
  expectSameFrame('exactly 1 MiB', Buffer.alloc(MIB), await nextFrame(client));
  client.send(`!zeros ${8 * MIB}`);
  expect(await within(client.closed, WAIT_MS, 'close')).toMatchObject({ type: 'error', error: 'toobig' });
  expect(await closedCode(path), 'the close code the server got').toBe(1009);
}

// ---- the ws server ----------------------------------------------------------------------------

const WS_SERVER_CONFIGS = {
  off: false,
  default: {},
  snct: { serverNoContextTakeover: true },
  cnct: { clientNoContextTakeover: true },
  smwb10: { serverMaxWindowBits: 10 },
  cmwb9: { clientMaxWindowBits: 9 },
  all: { serverNoContextTakeover: true, clientNoContextTakeover: true, serverMaxWindowBits: 9, clientMaxWindowBits: 10 },
} satisfies Record<string, WebSocket.PerMessageDeflateOptions | false>;

interface WsServerEnv {
  base: string;
  /** Byte lengths of the data messages the server got on the connection to `path`. */
  received(path: string): number[];
  /** Resolves with the close code the server got on the connection to `path`. */
  closedCode(path: string): Promise<number | null>;
}

const wsServer = fixture<WsServerEnv>(async (cleanup) => {
  const server = http.createServer();
  const answers = new Map<string, string>();
  const got = new Map<string, number[]>();
  const closes = new Map<string, { code?: number; waiters: ((code: number) => void)[] }>();
  const closeEntry = (path: string): { code?: number; waiters: ((code: number) => void)[] } => {
    let e = closes.get(path);
    if (e === undefined) closes.set(path, (e = { waiters: [] }));
    return e;
  };
  const closedCode = (path: string): Promise<number | null> => {
    const e = closeEntry(path);
    if (e.code !== undefined) return Promise.resolve(e.code);
    return within(new Promise<number>((resolve) => e.waiters.push(resolve)), WAIT_MS, `close of ${path} at the ws server`);
  };
  const servers = new Map<string, WebSocketServer>();
  for (const [name, perMessageDeflate] of Object.entries(WS_SERVER_CONFIGS)) {
    const wss = new WebSocketServer({ noServer: true, perMessageDeflate, maxPayload: 256 * MIB });
    wss.on('headers', (headers: string[], req: http.IncomingMessage) => {
      const line = headers.find((h) => h.toLowerCase().startsWith('sec-websocket-extensions:'));
      answers.set(req.url ?? '/', line === undefined ? '' : line.slice(line.indexOf(':') + 1).trim());
    });
    wss.on('connection', (ws: WebSocket, req: http.IncomingMessage) => {
      const url = req.url ?? '/';
      const socket = req.socket;
      ws.on('error', () => {});
      ws.on('close', (code: number) => {
        const e = closeEntry(url);
        e.code = code;
        for (const w of e.waiters.splice(0)) w(code);
      });
      ws.on('message', (data: Buffer, isBinary: boolean) => {
        got.set(url, [...(got.get(url) ?? []), data.length]);
        if (isBinary) {
          ws.send(data);
          return;
        }
        const text = data.toString('utf8');
        if (!text.startsWith('!')) {
          ws.send(text);
          return;
        }
        const [name, ...args] = text.slice(1).split(' ');
        switch (name) {
          case 'ext': ws.send(JSON.stringify({ extensions: answers.get(url) ?? '' })); break;
          case 'wire': ws.send(JSON.stringify({ read: socket.bytesRead, written: socket.bytesWritten })); break;
          case 'fragping': {
            const total = Number(args[0]);
            const size = Number(args[1]);
            const all = pattern(total);
            for (let at = 0; at < total; at += size) {
              ws.send(all.subarray(at, at + size), { binary: true, fin: at + size >= total, compress: true });
              if (at === 0) ws.ping('between fragments');
            }
            break;
          }
          case 'zeros': ws.send(Buffer.alloc(Number(args[0])), { compress: true }); break;
          case 'closed': void closedCode(args[0]!).then((code) => ws.send(JSON.stringify({ code })), () => ws.send('{"code":null}')); break;
          default: ws.send(`unknown command ${name}`);
        }
      });
    });
    servers.set(name, wss);
  }
  server.on('upgrade', (req: http.IncomingMessage, socket: Socket, head: Buffer) => {
    const cfg = new URL(req.url ?? '/', 'http://server').searchParams.get('cfg') ?? 'off';
    const wss = servers.get(cfg);
    if (wss === undefined) {
      socket.destroy();
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
  });
  server.listen({ host: HOST, port: 0 });
  await once(server, 'listening');
  cleanup(async () => {
    for (const wss of servers.values()) {
      for (const c of wss.clients) c.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
    }
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { base: `ws://${HOST}:${(server.address() as AddressInfo).port}`, closedCode, received: (path) => got.get(path) ?? [] };
}, { timeoutMs: 30_000 });

async function wsWire(client: WebSocketClient<undefined>): Promise<{ read: number; written: number }> {
  client.send('!wire');
  return JSON.parse(await nextText(client)) as { read: number; written: number };
}

const wsPeer = (): PeerServer => ({
  name: 'the ws server',
  base: wsServer().base,
  // The second `!wire` request is counted with the message: 30 bytes at most, compressed or not.
  overhead: 30,
  async measure(client, fn) {
    const before = await wsWire(client);
    await fn();
    const after = await wsWire(client);
    return { up: after.read - before.read, down: after.written - before.written };
  },
});

const WS_SERVER_CASES: ClientCase[] = [
  { server: 'off', client: 'default', expected: null },
  { server: 'default', client: 'off', expected: null },
  { server: 'default', client: 'default', expected: 'permessage-deflate', full: true },
  { server: 'default', client: 'snct', expected: 'permessage-deflate; server_no_context_takeover' },
  { server: 'default', client: 'cnct', expected: 'permessage-deflate; client_no_context_takeover' },
  { server: 'default', client: 'smwb10', expected: 'permessage-deflate; server_max_window_bits=10' },
  { server: 'default', client: 'cmwb9', expected: 'permessage-deflate; client_max_window_bits=9' },
  {
    server: 'default', client: 'all', full: true,
    expected: 'permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9; client_max_window_bits=10',
  },
  { server: 'default', client: 'alias', expected: 'permessage-deflate; server_max_window_bits=12' },
  { server: 'default', client: 'bits8', expected: 'permessage-deflate; server_max_window_bits=8; client_max_window_bits=8', full: true },
  { server: 'snct', client: 'default', expected: 'permessage-deflate; server_no_context_takeover' },
  { server: 'cnct', client: 'default', expected: 'permessage-deflate; client_no_context_takeover' },
  { server: 'smwb10', client: 'default', expected: 'permessage-deflate; server_max_window_bits=10' },
  { server: 'cmwb9', client: 'default', expected: 'permessage-deflate; client_max_window_bits=9' },
  {
    server: 'cmwb9', client: 'all',
    expected: 'permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9; client_max_window_bits=9',
  },
  {
    server: 'all', client: 'default', full: true,
    expected: 'permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9; client_max_window_bits=10',
  },
];

describe('Corral client against a ws server', () => {
  for (const c of WS_SERVER_CASES) {
    it(caseName({ server: c.server, offer: c.client, expected: c.expected }), async () => {
      await corralClientScenario(wsPeer(), c);
    }, 30_000);
  }

  it('active mode: compressed messages reach the handler inflated, in order', async () => {
    await activeScenario(wsPeer(), 'default');
  });

  it('an offer ws cannot accept (a smaller server window than its own) is refused with 400, which connect reports', async () => {
    // RFC 7692 lets a server decline an offer and carry on uncompressed; ws refuses the upgrade instead.
    const err = await connect(`${wsPeer().base}${target('refused', '&cfg=smwb10')}`, { compress: { serverMaxWindowBits: 9 }, timeout: WAIT_MS })
      .then(() => undefined, (e: unknown) => e);
    expect(err).toMatchObject({ reason: 'status', status: 400 });
  });

  it('a message from the server that inflates past maxMessageSize closes with 1009', async () => {
    await bombScenario(wsPeer(), 'default', (path) => wsServer().closedCode(path));
  }, 30_000);
});

// ---- Python's websockets servers --------------------------------------------------------------

const PY_SERVER_CONFIGS: Record<string, PythonServerConfig> = {
  off: null,
  // What `compression='deflate'` enables (server_max_window_bits=12, client_max_window_bits=12, memLevel 5), counted.
  default: { server_max_window_bits: 12, client_max_window_bits: 12, compress_settings: { memLevel: 5 } },
  builtin: 'builtin',
  nct: { server_no_context_takeover: true, client_no_context_takeover: true },
  bits: { server_max_window_bits: 9, client_max_window_bits: 10 },
  plain: {},
  cmwb9: { client_max_window_bits: 9, require_client_max_window_bits: true },
};

const PY_SERVER_CASES: ClientCase[] = [
  { server: 'off', client: 'default', expected: null },
  { server: 'default', client: 'off', expected: null },
  { server: 'default', client: 'default', expected: 'permessage-deflate; server_max_window_bits=12; client_max_window_bits=12', full: true },
  { server: 'builtin', client: 'default', expected: 'permessage-deflate; server_max_window_bits=12; client_max_window_bits=12' },
  { server: 'default', client: 'snct', expected: 'permessage-deflate; server_no_context_takeover; server_max_window_bits=12; client_max_window_bits=12' },
  { server: 'default', client: 'cnct', expected: 'permessage-deflate; client_no_context_takeover; server_max_window_bits=12; client_max_window_bits=12' },
  { server: 'default', client: 'smwb10', expected: 'permessage-deflate; server_max_window_bits=10; client_max_window_bits=12' },
  { server: 'default', client: 'cmwb9', expected: 'permessage-deflate; server_max_window_bits=12; client_max_window_bits=9' },
  {
    server: 'default', client: 'all', full: true,
    expected: 'permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9; client_max_window_bits=10',
  },
  { server: 'default', client: 'alias', expected: 'permessage-deflate; server_max_window_bits=12; client_max_window_bits=12' },
  { server: 'nct', client: 'default', expected: 'permessage-deflate; server_no_context_takeover; client_no_context_takeover' },
  { server: 'bits', client: 'default', expected: 'permessage-deflate; server_max_window_bits=9; client_max_window_bits=10' },
  { server: 'plain', client: 'default', expected: 'permessage-deflate' },
  {
    server: 'plain', client: 'all',
    expected: 'permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9; client_max_window_bits=10',
  },
  { server: 'cmwb9', client: 'default', expected: 'permessage-deflate; client_max_window_bits=9' },
];

describe("Corral client against Python's websockets servers", () => {
  const py = fixture(async (cleanup) => {
    const servers = await startDeflatePythonServers(PY_SERVER_CONFIGS);
    cleanup(() => servers.stop());
    return servers;
  }, { timeoutMs: 60_000 });

  /** One port per setting: the peer's base URL is the setting's server (the `cfg` parameter is then ignored). */
  const peerFor = (cfg: string): PeerServer => {
    const port = py().ports[cfg];
    if (port === undefined) throw new Error(`no Python server for ${cfg}`);
    return {
      name: `the Python server (${cfg})`,
      base: `ws://${HOST}:${port}`,
      overhead: 0,
      async measure(client, fn) {
        client.send('!stats');
        await nextText(client);
        await fn();
        client.send('!stats');
        const stats = JSON.parse(await nextText(client)) as { received: WireFrame[] | null; sent: WireFrame[] | null };
        // Nothing counts on a server without the counting extension (no compression, or the built-in one).
        if (stats.received === null || stats.sent === null) return { up: Number.NaN, down: Number.NaN };
        // The first frame sent is the answer to the first `!stats`.
        return { up: framesWire(stats.received), down: framesWire(stats.sent.slice(1)), upFrames: stats.received };
      },
    };
  };

  for (const c of PY_SERVER_CASES) {
    it(caseName({ server: c.server, offer: c.client, expected: c.expected }), async () => {
      await corralClientScenario(peerFor(c.server), c);
    }, 30_000);
  }

  it('active mode: compressed messages reach the handler inflated, in order', async () => {
    await activeScenario(peerFor('default'), 'default');
  });

  it('a message from the server that inflates past maxMessageSize closes with 1009', async () => {
    const peer = peerFor('default');
    await bombScenario(peer, 'default', async (path) => {
      const probe = await connect<undefined, undefined>(`${peer.base}/probe`, { timeout: WAIT_MS });
      probe.send(`!closed ${path}`);
      const { code } = JSON.parse(await nextText(probe)) as { code: number | null };
      await probe.close();
      return code;
    });
  }, 30_000);
});

// ---- options ----------------------------------------------------------------------------------

describe('compress and perMessageDeflate together', () => {
  const handler: WebSocketHandler<undefined, undefined> = { websocketHandle: () => undefined };

  it('websocketProtocol throws BadOptionError', () => {
    expect(() => websocketProtocol(handler, { compress: true, perMessageDeflate: true })).toThrow(BadOptionError);
  });

  it('connect rejects with BadOptionError before connecting', async () => {
    await expect(connect(`${corral().listeners.default}/both`, { compress: true, perMessageDeflate: {} })).rejects.toThrow(BadOptionError);
  });

  it('handleUpgrade refuses the upgrade and logs the BadOptionError', async () => {
    const path = target('both', '&cfg=both');
    const ws = new WebSocket(`${corral().embedded}${path}`, { handshakeTimeout: WAIT_MS, perMessageDeflate: {} });
    const error = await within(new Promise<Error>((resolve) => ws.once('error', resolve)), WAIT_MS, 'handshake error');
    expect(error.message).toMatch(/Unexpected server response: 5\d\d/);
    expect(corral().upgradeErrors.get(path)).toBeInstanceOf(BadOptionError);
  });
});
