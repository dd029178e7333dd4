/**
 * WebSocket interop: a Corral echo server, spoken to by real clients over loopback.
 *
 * The server runs three ways: `websocketProtocol` on a `tcp` listener (ws://), the same protocol
 * on a `tls` listener with the test CA's localhost certificate (wss://), and `handleUpgrade` in a
 * plain `node:http` server's 'upgrade' event. Its handler echoes every message and obeys a few
 * text commands (`!info`, `!close <code> <reason>`, `!stop`, `!ping <payload>`); its `terminate`
 * callback records why each connection ended, by request target, so that every close is checked
 * from both ends.
 *
 * The clients: the `ws` package; undici's WebSocket; Node 24's global WebSocket (a child process,
 * fetched with `npx -y node@24`); Python's `websockets` library; headless Chromium driven by
 * playwright-core. The standard-API clients (undici, Node 24, Chromium) all run the scenarios of
 * test/peers/websocket-client.mjs. A missing client fails its tests with the command that installs
 * it (`node test/peers/ensure.mjs` does so as root); none is skipped.
 */

import { createHash, randomBytes, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { Agent, WebSocket as UndiciWebSocket } from 'undici';
import { describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { startListener, tcp, tls } from '@corral/listener';
import {
  handleUpgrade, websocketProtocol,
  type HandlerResult, type Session, type SessionSocket, type TerminateReason, type WebSocketHandler,
} from '@corral/websocket';
import { launchChromium } from './peers/chromium.js';
import { fixture } from './peers/fixture.js';
import { node24 } from './peers/node24.js';
import { runPeer } from './peers/process.js';
import { runPythonClient } from './peers/python-websockets.js';
import { Terminations, WAIT_MS, within, wsConnect, type WsClient } from './peers/ws-client.js';
import {
  ALL_BYTES_HEX, LARGE_BYTES, TEXT, runScenarios, type ScenarioResult,
} from './peers/websocket-client.mjs';

const HOST = '127.0.0.1';
const FIXTURES = fileURLToPath(new URL('../packages/listener/test/fixtures/tls/', import.meta.url));
const CA_FILE = `${FIXTURES}ca.crt`;
const CA = readFileSync(CA_FILE);
const KEY = readFileSync(`${FIXTURES}localhost.key`);
const CERT = readFileSync(`${FIXTURES}localhost.crt`);
const CLIENT_SCRIPT = fileURLToPath(new URL('./peers/websocket-client.mjs', import.meta.url));

/** The server's subprotocols, in its order of preference. */
const SUBPROTOCOLS = ['corral.echo.v2', 'corral.echo.v1'];


// ---- the server -------------------------------------------------------------------------------


interface EchoState {
  url: string;
  secure: boolean;
  pings: string[];
  pongs: string[];
}

/** What `!info` answers. */
interface Info {
  url: string;
  secure: boolean;
  protocol: string | null;
  pings: string[];
  pongs: string[];
}

function command(text: string, state: EchoState, session: Session<EchoState>): HandlerResult<EchoState> {
  const [name = '', ...args] = text.slice(1).split(' ');
  switch (name) {
    case 'info': {
      const info: Info = { url: state.url, secure: state.secure, protocol: session.protocol ?? null, pings: state.pings, pongs: state.pongs };
      return { reply: JSON.stringify(info) };
    }
    case 'close':
      return { stop: { code: Number(args[0]), reason: args.slice(1).join(' ') } };
    case 'stop':
      return { stop: true };
    case 'ping':
      return { reply: { type: 'ping', data: args.join(' ') } };
    default:
      return { reply: `unknown command ${name}` };
  }
}

/**
 * Echoes messages and obeys commands. The request target may ask for `frag=<bytes>` (the server
 * sends its messages in frames this large), `max=<bytes>` (the largest message it accepts),
 * `closeTimeout=<ms>` (how long it waits for the peer's side of a close) and `proto=<name>`
 * (`init` picks that subprotocol).
 */
function echoHandler(ends: Terminations): WebSocketHandler<EchoState, undefined> {
  return {
    init(req) {
      const query = new URL(req.url, 'http://server').searchParams;
      const frag = query.get('frag');
      const max = query.get('max');
      const closeTimeout = query.get('closeTimeout');
      const proto = query.get('proto');
      return {
        state: { url: req.url, secure: req.secure, pings: [], pongs: [] },
        ...(proto !== null ? { subprotocol: proto } : {}),
        options: {
          ...(frag !== null ? { outgoingFrameSize: Number(frag) } : {}),
          ...(max !== null ? { maxMessageSize: Number(max) } : {}),
          ...(closeTimeout !== null ? { closeTimeout: Number(closeTimeout) } : {}),
        },
      };
    },
    websocketHandle(frame, state, session) {
      switch (frame.type) {
        case 'text':
          return frame.data.startsWith('!') ? command(frame.data, state, session) : { reply: frame.data };
        case 'binary':
          return { reply: frame.data };
        case 'ping':
          return { state: { ...state, pings: [...state.pings, frame.data.toString('utf8')] } };
        case 'pong':
          return { state: { ...state, pongs: [...state.pongs, frame.data.toString('utf8')] } };
      }
    },
    terminate(reason, req) {
      ends.record(String(req.url), reason);
    },
  };
}

const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>Corral WebSocket interop</title>
<script type="module">
import { runScenarios } from '/websocket-client.mjs';
const base = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host;
const tag = new URLSearchParams(location.search).get('tag') ?? 'browser';
runScenarios((url, protocols) => new WebSocket(url, protocols), base, tag).then(
  (results) => { window.__result = results; },
  (err) => { window.__result = [{ scenario: 'page', error: String(err) }]; },
);
</script>
`;

/** The servers' plain HTTP side: the page, and the client script it imports. */
function servePage(req: http.IncomingMessage, res: http.ServerResponse): void {
  const path = new URL(req.url ?? '/', 'http://server').pathname;
  if (path === '/') {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
    res.end(PAGE);
  } else if (path === '/websocket-client.mjs') {
    res.writeHead(200, { 'Content-Type': 'text/javascript; charset=utf-8', 'Cache-Control': 'no-store' });
    res.end(readFileSync(CLIENT_SCRIPT));
  } else {
    res.writeHead(404, { 'Content-Type': 'text/plain' });
    res.end('not found\n');
  }
}

interface Servers {
  ends: Terminations;
  /** Base URLs: `ws://127.0.0.1:<port>` and the like. */
  ws: string;
  wss: string;
  embedded: string;
}

const servers = fixture<Servers>(async (cleanup) => {
  const ends = new Terminations();
  const handler = echoHandler(ends);
  const protocol = websocketProtocol(handler, { subprotocols: SUBPROTOCOLS, http: servePage });

  // Every test closes its connections: whatever is left at the end (after a failure) is dropped.
  const plain = await startListener(
    `websocket-interop-tcp-${process.pid}`, tcp, { socketOpts: { host: HOST, port: 0 }, shutdown: 'brutal_kill' }, protocol, undefined,
  );
  cleanup(() => plain.stop());
  const secure = await startListener(
    `websocket-interop-tls-${process.pid}`, tls,
    { socketOpts: { host: HOST, port: 0, key: KEY, cert: CERT }, shutdown: 'brutal_kill' }, protocol, undefined,
  );
  cleanup(() => secure.stop());

  const server = http.createServer(servePage);
  const sockets = new Set<SessionSocket>();
  server.on('upgrade', (req: http.IncomingMessage, socket: SessionSocket, head: Buffer) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    handleUpgrade(req, socket, head, handler, { subprotocols: SUBPROTOCOLS }).catch(() => socket.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: HOST, port: 0 }, () => resolve());
  });
  cleanup(async () => {
    // The upgraded sockets are no longer the server's: close what a failed test left open.
    for (const socket of sockets) socket.destroy();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  return {
    ends,
    ws: `ws://${HOST}:${plain.getPort()!}`,
    wss: `wss://${HOST}:${secure.getPort()!}`,
    embedded: `ws://${HOST}:${(server.address() as AddressInfo).port}`,
  };
}, { timeoutMs: 60_000 });

// ---- the ws package ---------------------------------------------------------------------------


/** Open a `ws` client; resolves once it is open. */

async function info(client: WsClient): Promise<Info> {
  const m = await client.echo('!info');
  expect(m.isBinary).toBe(false);
  return JSON.parse(m.data.toString('utf8')) as Info;
}

async function closeNormally(client: WsClient): Promise<void> {
  client.ws.close(1000);
  expect(await client.closed()).toEqual({ code: 1000, reason: '' });
}

let ids = 0;
/** A request target no other connection uses. */
const target = (name: string, query = ''): string => `/${name}?client=ws-${++ids}${query}`;

const WS_SERVERS: { name: string; url: (s: Servers) => string; secure: boolean; opts: WebSocket.ClientOptions }[] = [
  { name: 'ws:// on the tcp transport', url: (s) => s.ws, secure: false, opts: {} },
  { name: 'wss:// on the TLS transport', url: (s) => s.wss, secure: true, opts: { ca: CA } },
  { name: 'handleUpgrade in a node:http server', url: (s) => s.embedded, secure: false, opts: {} },
];

for (const { name, url, secure, opts } of WS_SERVERS) describe(`the ws client, ${name}`, () => {
  const connect = (path: string, protocols?: string[]): Promise<WsClient> => wsConnect(`${url(servers())}${path}`, protocols, opts);

  it('gets text and binary messages of every length encoding echoed', async () => {
    const path = target('echo');
    const client = await connect(path, ['corral.echo.v1']);
    for (const text of [TEXT, '', 'a'.repeat(125), 'b'.repeat(126), 'c'.repeat(65_535), 'd'.repeat(65_536)]) {
      const m = await client.echo(text);
      expect(m.isBinary).toBe(false);
      expect(m.data.toString('utf8')).toBe(text);
    }
    for (const size of [0, 1, 125, 126, 65_535, 65_536, 300_000]) {
      const data = randomBytes(size);
      const m = await client.echo(data);
      expect(m.isBinary).toBe(true);
      expect(m.data.equals(data), `${size} bytes`).toBe(true);
    }
    expect(await info(client)).toEqual({ url: path, secure, protocol: 'corral.echo.v1', pings: [], pongs: [] });
    await closeNormally(client);
    expect(await servers().ends.of(path)).toEqual({ type: 'remote', code: 1000, reason: '' });
  });

  it('gets a fragmented message echoed whole, with a ping between its fragments', async () => {
    const path = target('fragments');
    const client = await connect(path);
    const [first, second, third] = [randomBytes(1000), randomBytes(1), randomBytes(70_000)];
    client.ws.send(first, { binary: true, fin: false });
    client.ws.ping('between fragments');
    client.ws.send(second, { binary: true, fin: false });
    client.ws.send(third, { binary: true, fin: true });
    const [pong, binary] = await Promise.all([client.nextEvent('pong'), client.next()]);
    expect(pong.toString()).toBe('between fragments');
    expect(binary.isBinary).toBe(true);
    expect(binary.data.equals(Buffer.concat([first, second, third]))).toBe(true);

    // A text message whose fragments split a UTF-8 sequence: '✓' is e2 9c 93.
    const text = Buffer.from('checked \u2713 in three fragments');
    const cut = text.indexOf(0x9c);
    client.ws.send(text.subarray(0, cut), { binary: false, fin: false });
    client.ws.send(text.subarray(cut, cut + 1), { binary: false, fin: false });
    client.ws.send(text.subarray(cut + 1), { binary: false, fin: true });
    const m = await client.next();
    expect(m.isBinary).toBe(false);
    expect(m.data.toString('utf8')).toBe('checked \u2713 in three fragments');

    expect((await info(client)).pings).toEqual(['between fragments']);
    await closeNormally(client);
  });

  it('gets 16 MiB messages echoed: in one frame, and in 1 MiB fragments both ways', async () => {
    const size = 16 * 1024 * 1024;
    const data = randomBytes(size);
    const whole = await connect(target('large'));
    const m = await whole.echo(data);
    expect(m.isBinary).toBe(true);
    expect(m.data.length).toBe(size);
    expect(m.data.equals(data)).toBe(true);
    await closeNormally(whole);

    // The server is asked to send in 1 MiB frames too.
    const mib = 1024 * 1024;
    const fragmented = await connect(target('large', `&frag=${mib}`));
    for (let offset = 0; offset < size; offset += mib) {
      fragmented.ws.send(data.subarray(offset, offset + mib), { binary: true, fin: offset + mib >= size });
    }
    const back = await fragmented.next();
    expect(back.isBinary).toBe(true);
    expect(back.data.length).toBe(size);
    expect(back.data.equals(data)).toBe(true);
    await closeNormally(fragmented);
  }, 60_000);

  it('answers pings, sends pings when the handler asks, and hears pongs', async () => {
    const path = target('ping');
    const client = await connect(path);
    const pong = client.nextEvent('pong');
    client.ws.ping('are you there?');
    expect((await pong).toString()).toBe('are you there?');

    // ws answers the server's ping before it reports it.
    const ping = client.nextEvent('ping');
    client.ws.send('!ping corral');
    expect((await ping).toString()).toBe('corral');
    client.ws.pong('unsolicited');

    const seen = await info(client);
    expect(seen.pings).toEqual(['are you there?']);
    expect(seen.pongs).toEqual(['corral', 'unsolicited']);
    await closeNormally(client);
  });

  it('negotiates the subprotocol: the server\'s preference, the one offered, none, or init\'s choice', async () => {
    const cases = [
      { offer: ['corral.echo.v1', 'corral.echo.v2'], query: '', expected: 'corral.echo.v2' },
      { offer: ['corral.unknown', 'corral.echo.v1'], query: '', expected: 'corral.echo.v1' },
      { offer: [], query: '', expected: '' },
      { offer: ['corral.echo.v2', 'corral.echo.v1'], query: '&proto=corral.echo.v1', expected: 'corral.echo.v1' },
    ];
    for (const { offer, query, expected } of cases) {
      const client = await connect(target('subprotocol', query), offer);
      expect(client.ws.protocol, `offered ${offer.join(', ')}${query}`).toBe(expected);
      expect(client.response.headers['sec-websocket-protocol']).toBe(expected === '' ? undefined : expected);
      expect((await info(client)).protocol).toBe(expected === '' ? null : expected);
      await closeNormally(client);
    }

    // Nothing the server speaks: it answers without a subprotocol, which ws refuses by dropping
    // the connection; the server sees a connection that ended without a close frame.
    const refused = target('subprotocol');
    const ws = new WebSocket(`${url(servers())}${refused}`, ['corral.unknown'], { handshakeTimeout: WAIT_MS, ...opts });
    const response = new Promise<http.IncomingMessage>((resolve) => ws.once('upgrade', resolve));
    const error = await within(new Promise<Error>((resolve) => ws.once('error', resolve)), WAIT_MS, 'handshake error');
    expect(error.message).toBe('Server sent no subprotocol');
    expect((await response).headers['sec-websocket-protocol']).toBeUndefined();
    await within(new Promise((resolve) => ws.once('close', resolve)), WAIT_MS, 'close event');
    // A FIN ('closed'), or a reset should unread bytes have been in the client's buffers ('socket').
    const ended = await servers().ends.of(refused);
    expect(ended.type === 'error' && ['closed', 'socket'].includes(ended.error), JSON.stringify(ended)).toBe(true);
  });

  it('closes with 1007 on a text message that is not UTF-8, and with 1009 on one over the limit', async () => {
    const a = await connect(target('bad-utf8'));
    // A lone continuation byte, sent as text.
    a.ws.send(Buffer.from([0x68, 0x69, 0x80]), { binary: false });
    expect((await a.closed()).code).toBe(1007);

    const b = await connect(target('too-big', '&max=1024'));
    expect((await b.echo(randomBytes(1024))).data.length).toBe(1024);
    b.ws.send(randomBytes(1025));
    expect((await b.closed()).code).toBe(1009);
  });

  it('ends the connection after a protocol error once the client has answered the close and hung up', async () => {
    // The close timer is set far beyond the wait below: the server must notice the client's close
    // frame and end of stream by itself, not only when its timer gives up on them.
    const badText = target('bad-utf8', '&closeTimeout=60000');
    const a = await connect(badText);
    a.ws.send(Buffer.from([0x68, 0x69, 0x80]), { binary: false });
    // ws answers the server's close frame and closes its socket before it reports the close.
    expect((await a.closed()).code).toBe(1007);
    expect(await servers().ends.of(badText)).toMatchObject({ type: 'error', error: 'badencoding' });

    const tooBig = target('too-big', '&max=1024&closeTimeout=60000');
    const b = await connect(tooBig);
    b.ws.send(randomBytes(1025));
    expect((await b.closed()).code).toBe(1009);
    expect(await servers().ends.of(tooBig)).toMatchObject({ type: 'error', error: 'toobig' });
  });

  it("closes with the client's code and reason, or none", async () => {
    const withCode = target('client-close');
    const a = await connect(withCode);
    a.ws.close(4000, 'bye \u2713');
    // The server answers with the code alone.
    expect(await a.closed()).toEqual({ code: 4000, reason: '' });
    expect(await servers().ends.of(withCode)).toEqual({ type: 'remote', code: 4000, reason: 'bye \u2713' });

    const longest = 'r'.repeat(123);
    const withLongest = target('client-close');
    const b = await connect(withLongest);
    b.ws.close(1000, longest);
    expect(await b.closed()).toEqual({ code: 1000, reason: '' });
    expect(await servers().ends.of(withLongest)).toEqual({ type: 'remote', code: 1000, reason: longest });

    const withoutCode = target('client-close');
    const c = await connect(withoutCode);
    c.ws.close();
    expect(await c.closed()).toEqual({ code: 1005, reason: '' });
    expect(await servers().ends.of(withoutCode)).toEqual({ type: 'remote', reason: '' });
  });

  it("closes with the server's code and reason when the handler stops", async () => {
    const withCode = target('server-close');
    const a = await connect(withCode);
    a.ws.send('!close 4001 server says bye \u2713');
    expect(await a.closed()).toEqual({ code: 4001, reason: 'server says bye \u2713' });
    expect(await servers().ends.of(withCode)).toEqual({ type: 'stop' });

    const plainStop = target('server-close');
    const b = await connect(plainStop);
    b.ws.send('!stop');
    expect(await b.closed()).toEqual({ code: 1000, reason: '' });
    expect(await servers().ends.of(plainStop)).toEqual({ type: 'stop' });
  });
});

// ---- standard WebSocket API clients -----------------------------------------------------------

/** The scenarios of websocket-client.mjs, as a client with the standard API must have seen them. */
async function expectScenarios(results: readonly ScenarioResult[], secure: boolean): Promise<void> {
  for (const r of results) expect(r.error, `scenario ${r.scenario}`).toBeUndefined();
  expect(results.map((r) => r.scenario)).toEqual(['echo', 'server-close', 'fragmented']);
  const [echo, serverClose, fragmented] = results as [ScenarioResult, ScenarioResult, ScenarioResult];

  expect(echo).toMatchObject({
    protocol: 'corral.echo.v1',
    text: TEXT,
    binary: { kind: 'ArrayBuffer', hex: ALL_BYTES_HEX },
    large: { kind: 'ArrayBuffer', length: LARGE_BYTES, same: true },
    info: { url: echo.path, secure, protocol: 'corral.echo.v1', pings: [], pongs: [] },
    close: { code: 4000, reason: '', wasClean: true },
  });
  expect(serverClose).toMatchObject({ protocol: '', close: { code: 4001, reason: 'server says bye \u2713', wasClean: true } });
  expect(fragmented).toMatchObject({
    textSame: true,
    binary: { kind: 'ArrayBuffer', length: 1000, same: true },
    close: { code: 1000, reason: '', wasClean: true },
  });

  const { ends } = servers();
  expect(await ends.of(echo.path)).toEqual({ type: 'remote', code: 4000, reason: 'done' });
  expect(await ends.of(serverClose.path)).toEqual({ type: 'stop' });
  expect(await ends.of(fragmented.path)).toEqual({ type: 'remote', code: 1000, reason: '' });
}

const SCHEMES = [
  { scheme: 'ws', secure: false },
  { scheme: 'wss', secure: true },
] as const;

describe("undici's WebSocket", () => {
  const env = fixture(async (cleanup) => {
    // wss: trust the test CA, through a dispatcher of its own.
    const dispatcher = new Agent({ connect: { ca: CA } });
    cleanup(() => dispatcher.close());
    return { dispatcher };
  });

  for (const { scheme, secure } of SCHEMES) it(`runs the scenarios over ${scheme}://`, async () => {
    const { dispatcher } = env();
    const base = servers()[scheme];
    const results = await runScenarios(
      (url, protocols) => new UndiciWebSocket(url, { protocols, dispatcher }),
      base,
      `undici-${scheme}`,
      { timeoutMs: WAIT_MS },
    );
    await expectScenarios(results, secure);
  });
});

describe("Node 24's global WebSocket", () => {
  const env = fixture(() => node24(), { timeoutMs: 200_000 });

  for (const { scheme, secure } of SCHEMES) it(`runs the scenarios over ${scheme}://`, async () => {
    const { execPath, version } = env();
    const r = await runPeer(`node ${version}`, execPath, [CLIENT_SCRIPT, servers()[scheme], `node24-${scheme}`], {
      timeoutMs: 60_000,
      env: { NODE_EXTRA_CA_CERTS: CA_FILE },
    });
    expect(r.code, `${r.describe}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`).toBe(0);
    const [runtime, ...results] = r.stdout.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(runtime).toEqual({ runtime: `node ${version}`, webSocket: 'function' });
    await expectScenarios(results as unknown as ScenarioResult[], secure);
  }, 60_000);
});

describe("Python's websockets", () => {
  for (const { scheme, secure } of SCHEMES) it(`echoes, pings and closes over ${scheme}://`, async () => {
    const tag = `python-${scheme}`;
    const { steps } = await runPythonClient(servers()[scheme], tag, CA_FILE);
    const step = (name: string): Record<string, unknown> => {
      const s = steps.get(name);
      if (s === undefined) expect.fail(`the Python client did not report ${name}; it reported ${[...steps.keys()].join(', ')}`);
      return s;
    };
    expect(step('version').websockets).toMatch(/^\d+\.\d+/);
    expect(step('open')).toMatchObject({ subprotocol: 'corral.echo.v1' });
    expect(step('text')).toMatchObject({ data: 'hello from Python: \u00fcn\u00efc\u00f6d\u00e9 \u2713 \u{1F40D}' });
    expect(step('binary')).toMatchObject({ type: 'bytes', hex: ALL_BYTES_HEX });
    expect(step('large')).toMatchObject({ type: 'bytes', length: 1024 * 1024, same: true });
    expect(step('fragmented')).toMatchObject({ data: 'fragmented t\u00ebxt \u2713' });
    expect(step('ping')).toMatchObject({ pong: true });
    const echoPath = `/echo?client=${tag}`;
    expect(step('info')).toMatchObject({
      info: { url: echoPath, secure, protocol: 'corral.echo.v1', pings: ['python ping'], pongs: [] },
    });
    expect(step('close')).toMatchObject({ code: 4002, reason: '' });
    expect(step('server-close')).toMatchObject({ code: 4003, reason: 'the server closes \u2713' });

    const { ends } = servers();
    expect(await ends.of(echoPath)).toEqual({ type: 'remote', code: 4002, reason: 'python says bye' });
    expect(await ends.of(`/server-close?client=${tag}`)).toEqual({ type: 'stop' });
  }, 60_000);
});

describe('headless Chromium', () => {
  // wss://: Chromium trusts the localhost certificate's key, and no other certificate error.
  const spki = createHash('sha256')
    .update(new X509Certificate(CERT).publicKey.export({ type: 'spki', format: 'der' }))
    .digest('base64');
  const env = fixture(async (cleanup) => {
    const browser = await launchChromium([`--ignore-certificate-errors-spki-list=${spki}`]);
    cleanup(() => browser.close());
    return { browser };
  }, { timeoutMs: 90_000 });

  for (const { scheme, secure } of SCHEMES) it(`runs the scenarios from a page the server serves, over ${scheme}://`, async () => {
    const { browser } = env();
    const page = await browser.newPage();
    const problems: string[] = [];
    page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
    page.on('console', (msg) => {
      if (msg.type() === 'error') problems.push(`console: ${msg.text()}`);
    });
    try {
      const origin = servers()[scheme].replace(/^ws/, 'http');
      await page.goto(`${origin}/?tag=chromium-${scheme}`, { timeout: 30_000 });
      await page
        .waitForFunction(() => (globalThis as { __result?: unknown }).__result !== undefined, undefined, { timeout: 30_000 })
        .catch((err: Error) => {
          throw new Error(`${err.message}\n${problems.join('\n')}`);
        });
      const results = await page.evaluate(() => (globalThis as unknown as { __result: ScenarioResult[] }).__result);
      await expectScenarios(results, secure);
    } finally {
      await page.close();
    }
  }, 60_000);
});
