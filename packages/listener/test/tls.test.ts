/**
 * The TLS transport on real sockets: full and paused handshakes, misbehaving clients, mutual
 * TLS, resumption, the PROXY protocol in front, and real clients (Node's, openssl s_client, curl).
 */

import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Duplex } from 'node:stream';
import * as tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import {
  BadArgumentError, BadOptionError, HandshakeError, ListenerNotFoundError, ListenerStateError, SocketError,
  buildProxyHeader, getStatus, parseClientHello, startListener, tlsTransport,
  type Connection, type Listener, type ListenerMetrics, type ListenerOptions, type TlsHandshakeOptions,
  type TlsHello, type TlsSocketOptions,
} from '../src/index.js';
import { findExecutable } from '../../../test/peers/ensure.mjs';
import { requirePeer } from '../../../test/peers/process.js';
import { Reader, closed, connect, deferred, ref, roundTrip } from './helpers.js';

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

const FIXTURES = fileURLToPath(new URL('./fixtures/tls/', import.meta.url));
const fixture = (name: string): string => join(FIXTURES, name);
const pem = (name: string): Buffer => readFileSync(fixture(name));
const pair = (name: string): { key: Buffer; cert: Buffer } => ({ key: pem(`${name}.key`), cert: pem(`${name}.crt`) });

const CA = pem('ca.crt');
const LOCALHOST = pair('localhost');
const CLIENT = pair('client');
const UNTRUSTED_CLIENT = pair('untrusted-client');
/** Certificates by server name, as `{ key, cert }` objects (one object per name: its context is made once). */
const KEYS = new Map([['a.test', pair('a.test')], ['b.test', pair('b.test')]]);
/** The same certificates as contexts made once. */
const CONTEXTS = new Map([...KEYS].map(([name, kc]) => [name, tls.createSecureContext(kc)]));

// ---------------------------------------------------------------------------------------------
// Listeners and protocols
// ---------------------------------------------------------------------------------------------

type TlsConn = Connection<tls.TLSSocket, TlsHandshakeOptions, TlsHello>;
type TlsListener = Listener<typeof tlsTransport, unknown>;

const listeners: TlsListener[] = [];
afterEach(async () => {
  await Promise.all(listeners.splice(0).map((l) => l.stop()));
});

async function start(opts: ListenerOptions<TlsSocketOptions>, protocol: (conn: TlsConn) => unknown): Promise<TlsListener> {
  const l = await startListener(ref('tls'), tlsTransport, {
    shutdown: 'brutal_kill', ...opts, socketOpts: { host: '127.0.0.1', ...opts.socketOpts },
  }, protocol, undefined) as TlsListener;
  listeners.push(l);
  return l;
}

/** The handshake of a full-handshake listener: the TLS socket. */
async function secure(conn: TlsConn, opts?: TlsHandshakeOptions): Promise<tls.TLSSocket> {
  const r = await conn.handshake(opts);
  if (!(r instanceof tls.TLSSocket)) throw new Error('the handshake paused on a full-handshake listener');
  return r;
}

/** The handshake of a paused listener: the ClientHello. */
async function hello(conn: TlsConn): Promise<TlsHello> {
  const r = await conn.handshake();
  if (r instanceof tls.TLSSocket) throw new Error('the handshake did not pause');
  return r.continue;
}

async function echoOn(socket: tls.TLSSocket): Promise<void> {
  socket.pipe(socket);
  await closed(socket);
}

async function echo(conn: TlsConn): Promise<void> {
  await echoOn(await secure(conn));
}

/** Paused: the certificate named by SNI (as a context made once, or as key and cert), or an unrecognized_name alert. */
function sniEcho(via: 'context' | 'key and cert' = 'context', onHello?: (h: TlsHello, conn: TlsConn) => void) {
  return async (conn: TlsConn): Promise<void> => {
    const h = await hello(conn);
    onHello?.(h, conn);
    const name = h.serverName?.toLowerCase() ?? '';
    const ctx = CONTEXTS.get(name);
    if (ctx === undefined) {
      await conn.handshakeCancel({ alert: 'unrecognized_name' });
      return;
    }
    await echoOn(await conn.handshakeContinue(via === 'context' ? { secureContext: ctx } : KEYS.get(name)!));
  };
}

/** A logger that keeps what it is given. */
function capturingLogger() {
  const entries: { level: string; obj: Record<string, unknown>; msg: string | undefined }[] = [];
  const at = (level: string) => (obj: object, msg?: string): void => {
    entries.push({ level, obj: obj as Record<string, unknown>, msg });
  };
  return {
    logger: { error: at('error'), warn: at('warn'), info: at('info'), debug: at('debug') },
    handshakeFailures: () => entries.filter((e) => e.msg === 'handshake failed'),
  };
}

// ---------------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------------

const TRUSTING: tls.ConnectionOptions = { ca: CA, servername: 'localhost' };

/** A Node TLS client connected and past its handshake. */
function tlsConnect(port: number, opts: tls.ConnectionOptions = {}): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ...TRUSTING, ...opts });
    socket.once('secureConnect', () => {
      socket.off('error', reject);
      resolve(socket);
    });
    socket.once('error', reject);
  });
}

async function tlsClient(port: number, opts: tls.ConnectionOptions = {}): Promise<Reader> {
  return new Reader(await tlsConnect(port, opts));
}

function tlsOf(reader: Reader): tls.TLSSocket {
  return reader.socket as tls.TLSSocket;
}

interface Attempt {
  /** The client finished its side of the handshake. */
  secured: boolean;
  error: (Error & { code?: string }) | undefined;
  /** What came back for the `ping` written once secured. */
  received: string;
}

/** A client the server is expected to refuse: runs until the connection closes. */
function attempt(port: number, opts: tls.ConnectionOptions = {}): Promise<Attempt> {
  return new Promise((resolve) => {
    const result: Attempt = { secured: false, error: undefined, received: '' };
    const socket = tls.connect({ host: '127.0.0.1', port, ...TRUSTING, ...opts });
    socket.on('secureConnect', () => {
      result.secured = true;
      socket.write('ping');
    });
    socket.on('data', (d: Buffer) => {
      result.received += d.toString();
    });
    socket.on('error', (err) => {
      result.error ??= err;
    });
    socket.on('close', () => resolve(result));
  });
}

/** The ClientHello a Node client sends, as captured by a plain TCP server. */
async function captureHello(opts: tls.ConnectionOptions = {}): Promise<Buffer> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const got = new Promise<Buffer>((resolve, reject) => {
    server.once('connection', (s) => {
      let bytes = Buffer.alloc(0);
      s.on('data', (chunk: Buffer) => {
        bytes = Buffer.concat([bytes, chunk]);
        try {
          if (parseClientHello(bytes).status === 'done') resolve(bytes);
        } catch (err) {
          reject(err);
        }
      });
      s.on('error', () => {});
    });
  });
  const client = tls.connect({ host: '127.0.0.1', port: (server.address() as net.AddressInfo).port, ...TRUSTING, ...opts });
  client.on('error', () => {});
  try {
    return await got;
  } finally {
    client.destroy();
    server.close();
  }
}

function writeAsync(socket: net.Socket, data: Uint8Array | string): Promise<void> {
  return new Promise((resolve, reject) => socket.write(data, (err) => (err ? reject(err) : resolve())));
}

/**
 * A TCP socket under a TLS client that shapes the client's first write (its ClientHello): sent
 * after a prefix in the same write, or byte by byte, each byte awaited.
 */
class Wire extends Duplex {
  #first = true;

  constructor(readonly raw: net.Socket, readonly shape: { prefix?: Buffer; byteByByte?: boolean }) {
    super();
    raw.on('data', (chunk: Buffer) => {
      if (!this.push(chunk)) raw.pause();
    });
    raw.on('end', () => this.push(null));
    raw.on('error', (err) => this.destroy(err));
    raw.on('close', () => this.destroy());
  }

  override _read(): void {
    this.raw.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (err?: Error | null) => void): void {
    const first = this.#first;
    this.#first = false;
    if (first && this.shape.byteByByte === true) {
      void (async () => {
        for (const byte of chunk) await writeAsync(this.raw, Buffer.of(byte));
      })().then(() => done(), done);
      return;
    }
    const data = first && this.shape.prefix !== undefined ? Buffer.concat([this.shape.prefix, chunk]) : chunk;
    this.raw.write(data, done);
  }

  override _final(done: (err?: Error | null) => void): void {
    this.raw.end(() => done());
  }

  override _destroy(err: Error | null, done: (err: Error | null) => void): void {
    this.raw.destroy();
    done(err);
  }
}

/** A TLS client over a shaped wire, past its handshake. */
async function tlsOverWire(port: number, shape: ConstructorParameters<typeof Wire>[1], opts: tls.ConnectionOptions): Promise<Reader> {
  const raw = await connect(port);
  raw.setNoDelay(true);
  return new Reader(await tlsOverSocket(new Wire(raw, shape), opts));
}

function tlsOverSocket(socket: Duplex, opts: tls.ConnectionOptions): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ socket, ...TRUSTING, ...opts });
    s.once('secureConnect', () => {
      s.off('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  });
}

const sha256 = (data: Uint8Array): string => createHash('sha256').update(data).digest('hex');

/** Deterministic bytes that are no TLS: a handshake record whose body is noise. */
const GARBAGE = Buffer.concat([Buffer.from('1603010040', 'hex'), Buffer.of(0x63), createHash('sha512').update('garbage').digest().subarray(1)]);

/** Bytes that are not all ASCII and not all the same, for "arrives intact" checks. */
function payload(length: number): Buffer {
  const out = Buffer.alloc(length);
  for (let i = 0; i < length; i++) out[i] = (i * 31 + (i >> 8)) & 0xff;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Full handshake
// ---------------------------------------------------------------------------------------------

describe('full handshake', () => {
  it('echoes over TLS: the client verifies the server, the protocol gets a paused TLSSocket', async () => {
    const seen = deferred<{ tlsSocket: boolean; paused: boolean; version: string | null; encrypted: boolean }>();
    const l = await start({ socketOpts: LOCALHOST }, async (conn) => {
      const s = await secure(conn);
      seen.resolve({ tlsSocket: s instanceof tls.TLSSocket, paused: s.isPaused(), version: s.getProtocol(), encrypted: s.encrypted });
      await echoOn(s);
    });
    expect(l.getPort()).toBeGreaterThan(0);
    expect(l.info()).toMatchObject({ transport: 'tls', port: l.getPort() });
    const c = await tlsClient(l.getPort()!);
    expect(tlsOf(c).authorized).toBe(true);
    expect(tlsOf(c).getPeerCertificate().subject.CN).toBe('localhost');
    expect(await roundTrip(c, 'hello over TLS')).toBe('hello over TLS');
    expect(await seen.promise).toEqual({ tlsSocket: true, paused: true, version: 'TLSv1.3', encrypted: true });
    const big = payload(1 << 20);
    c.socket.write(big);
    expect(sha256(await c.read(big.length))).toBe(sha256(big));
    c.socket.end();
    await c.closed;
    await l.waitForConnections('==', 0);
    expect(l.info().metrics).toMatchObject({ started: 1, terminated: 1, handshakeFailures: 0, protocolCrashes: 0 });
  });

  it('negotiates ALPN from the listener ALPNProtocols', async () => {
    const negotiated = deferred<string | false | null>();
    const l = await start({ socketOpts: { ...LOCALHOST, ALPNProtocols: ['h2', 'http/1.1'] } }, async (conn) => {
      const s = await secure(conn);
      negotiated.resolve(s.alpnProtocol);
      await echoOn(s);
    });
    const c = await tlsClient(l.getPort()!, { ALPNProtocols: ['http/1.1'] });
    expect(tlsOf(c).alpnProtocol).toBe('http/1.1');
    expect(await negotiated.promise).toBe('http/1.1');
  });

  it('passes ALPNCallback through', async () => {
    const calls: { servername: string; protocols: string[] }[] = [];
    const l = await start({
      socketOpts: {
        ...LOCALHOST,
        ALPNCallback: (arg) => {
          calls.push(arg);
          return arg.protocols.includes('corral/2') ? 'corral/2' : undefined;
        },
      },
    }, echo);
    const c = await tlsClient(l.getPort()!, { ALPNProtocols: ['corral/1', 'corral/2'] });
    expect(tlsOf(c).alpnProtocol).toBe('corral/2');
    expect(calls).toEqual([{ servername: 'localhost', protocols: ['corral/1', 'corral/2'] }]);
    expect(await roundTrip(c, 'alpn')).toBe('alpn');
  });

  it('passes SNICallback through: each name gets its own certificate', async () => {
    const asked: string[] = [];
    const l = await start({
      socketOpts: {
        SNICallback: (name, cb) => {
          asked.push(name);
          cb(null, CONTEXTS.get(name));
        },
      },
    }, echo);
    for (const name of ['a.test', 'b.test']) {
      const c = await tlsClient(l.getPort()!, { servername: name });
      expect(tlsOf(c).authorized).toBe(true);
      expect(tlsOf(c).getPeerCertificate().subject.CN).toBe(name);
      expect(await roundTrip(c, name)).toBe(name);
    }
    expect(asked).toEqual(['a.test', 'b.test']);
  });

  it('takes handshake options from the protocol', async () => {
    const l = await start({ socketOpts: LOCALHOST }, async (conn) => {
      await echoOn(await secure(conn, { ALPNProtocols: ['corral/1'] }));
    });
    const c = await tlsClient(l.getPort()!, { ALPNProtocols: ['other', 'corral/1'] });
    expect(tlsOf(c).alpnProtocol).toBe('corral/1');
  });
});

// ---------------------------------------------------------------------------------------------
// Misbehaving clients
// ---------------------------------------------------------------------------------------------

interface Misbehaviour {
  name: string;
  act: (socket: net.Socket, clientHello: Buffer) => void;
  metric: 'handshakeFailures' | 'handshakeTimeouts';
  reason: 'error' | 'timeout' | 'closed';
  /** What the logged error says. */
  detail?: RegExp;
}

/** A real ClientHello, for the clients that send part of one. */
const CLIENT_HELLO = captureHello({ servername: 'a.test' });

const MISBEHAVIOURS: Misbehaviour[] = [
  { name: 'plain text', act: (s) => s.write('hello there\r\n'), metric: 'handshakeFailures', reason: 'error' },
  {
    name: 'an HTTP request', act: (s) => s.write('GET / HTTP/1.1\r\nHost: localhost\r\n\r\n'),
    metric: 'handshakeFailures', reason: 'error', detail: /HTTP/,
  },
  { name: 'silence', act: () => {}, metric: 'handshakeTimeouts', reason: 'timeout', detail: /within 100 ms/ },
  {
    name: 'half a ClientHello, then a stall', act: (s, h) => s.write(h.subarray(0, h.length >> 1)),
    metric: 'handshakeTimeouts', reason: 'timeout', detail: /within 100 ms/,
  },
  {
    name: 'half a ClientHello, then a close', act: (s, h) => s.end(h.subarray(0, h.length >> 1)),
    metric: 'handshakeFailures', reason: 'closed',
  },
  { name: 'garbage bytes', act: (s) => s.write(GARBAGE), metric: 'handshakeFailures', reason: 'error' },
];

describe.each([
  { mode: 'full' as const, socketOpts: LOCALHOST, protocol: echo, servername: 'localhost' },
  { mode: 'hello' as const, socketOpts: { handshake: 'hello' as const }, protocol: sniEcho(), servername: 'a.test' },
])('a misbehaving client, $mode handshake', ({ socketOpts, protocol, servername }) => {
  it.each(MISBEHAVIOURS)('$name: closed, counted, logged; a live connection keeps working', async ({ act, metric, reason, detail }) => {
    const log = capturingLogger();
    const l = await start({ socketOpts, logger: log.logger }, protocol);
    const port = l.getPort()!;
    const live = await tlsClient(port, { servername });
    expect(await roundTrip(live, 'before')).toBe('before');
    // Lowered only now, so the live connection's own handshake never races the short deadline.
    if (reason === 'timeout') l.setTransportOptions({ ...l.getTransportOptions(), handshakeTimeout: 100 });

    const bad = new Reader(await connect(port));
    const badPort = bad.socket.localPort;
    act(bad.socket, await CLIENT_HELLO);
    await bad.closed;
    await expect.poll(() => l.info().metrics[metric]).toBe(1);
    const other: keyof ListenerMetrics = metric === 'handshakeFailures' ? 'handshakeTimeouts' : 'handshakeFailures';
    expect(l.info().metrics).toMatchObject({ [other]: 0, protocolCrashes: 0 });
    const failures = log.handshakeFailures();
    expect(failures).toHaveLength(1);
    expect(failures[0]).toMatchObject({ level: 'info', obj: { peer: `127.0.0.1:${badPort}`, reason } });
    const err = failures[0]!.obj.err;
    expect(err).toBeInstanceOf(HandshakeError);
    expect((err as HandshakeError).peer).toEqual({ address: '127.0.0.1', port: badPort });
    if (detail !== undefined) expect((err as Error).message).toMatch(detail);

    expect(await roundTrip(live, 'after')).toBe('after');
  });
});


// ---------------------------------------------------------------------------------------------
// Mutual TLS
// ---------------------------------------------------------------------------------------------

describe('mutual TLS', () => {
  async function startMutual(extra: TlsSocketOptions = {}) {
    const log = capturingLogger();
    const peers: { cn: unknown; authorized: boolean; authorizationError: unknown }[] = [];
    const l = await start({ socketOpts: { ...LOCALHOST, requestCert: true, ca: [CA], ...extra }, logger: log.logger }, async (conn) => {
      const s = await secure(conn);
      const cert = s.getPeerCertificate();
      peers.push({ cn: cert.subject?.CN, authorized: s.authorized, authorizationError: s.authorizationError });
      await echoOn(s);
    });
    return { l, log, peers };
  }

  it('lets in a client with a certificate the CA signed; the protocol reads its name', async () => {
    const { l, peers } = await startMutual();
    const c = await tlsClient(l.getPort()!, CLIENT);
    expect(await roundTrip(c, 'mutual')).toBe('mutual');
    expect(peers).toEqual([{ cn: 'Corral Test Client', authorized: true, authorizationError: null }]);
  });

  it('refuses a client without a certificate', async () => {
    const { l, peers, log } = await startMutual();
    const a = await attempt(l.getPort()!);
    expect(a.received).toBe('');
    await expect.poll(() => l.info().metrics.handshakeFailures).toBe(1);
    expect(peers).toEqual([]);
    expect(log.handshakeFailures()[0]?.obj).toMatchObject({ reason: 'error' });
  });

  it('refuses a self-signed client certificate, and counts it', async () => {
    const { l, peers, log } = await startMutual();
    const a = await attempt(l.getPort()!, UNTRUSTED_CLIENT);
    expect(a.received).toBe('');
    await expect.poll(() => l.info().metrics.handshakeFailures).toBe(1);
    expect(peers).toEqual([]);
    expect(String((log.handshakeFailures()[0]?.obj.err as Error).message)).toMatch(/client certificate refused/);
  });

  it('with rejectUnauthorized false, lets the untrusted client in, unauthorized, with the reason', async () => {
    const { l, peers } = await startMutual({ rejectUnauthorized: false });
    const c = await tlsClient(l.getPort()!, UNTRUSTED_CLIENT);
    expect(await roundTrip(c, 'let in')).toBe('let in');
    expect(peers).toEqual([{ cn: 'Untrusted Client', authorized: false, authorizationError: 'DEPTH_ZERO_SELF_SIGNED_CERT' }]);
    const c2 = await tlsClient(l.getPort()!, CLIENT);
    expect(await roundTrip(c2, 'trusted')).toBe('trusted');
    expect(peers[1]).toEqual({ cn: 'Corral Test Client', authorized: true, authorizationError: null });
  });
});

// ---------------------------------------------------------------------------------------------
// Versions and resumption
// ---------------------------------------------------------------------------------------------

describe('versions and session resumption', () => {
  /** Connect twice, the second time with the session of the first. */
  async function resumed(port: number, opts: tls.ConnectionOptions): Promise<tls.TLSSocket> {
    const first = tls.connect({ host: '127.0.0.1', port, ...TRUSTING, ...opts });
    const session = new Promise<Buffer>((resolve) => first.once('session', resolve));
    await once(first, 'secureConnect');
    const r = new Reader(first);
    // A TLS 1.3 ticket comes after the handshake: reading brings it in.
    expect(await roundTrip(r, 'first')).toBe('first');
    const ticket = await session;
    expect(first.isSessionReused()).toBe(false);
    first.end();
    await r.closed;
    const second = await tlsConnect(port, { ...opts, session: ticket });
    const r2 = new Reader(second);
    expect(await roundTrip(r2, 'second')).toBe('second');
    return second;
  }

  it.each(['TLSv1.3', 'TLSv1.2'] as const)('resumes a %s session with a ticket', async (version) => {
    const l = await start({ socketOpts: LOCALHOST }, echo);
    const second = await resumed(l.getPort()!, { maxVersion: version });
    expect(second.getProtocol()).toBe(version);
    expect(second.isSessionReused()).toBe(true);
  });

  it('resumes on a paused listener continued with the same key and cert object', async () => {
    const l = await start({ socketOpts: { handshake: 'hello' } }, sniEcho('key and cert'));
    const second = await resumed(l.getPort()!, { servername: 'b.test' });
    expect(second.isSessionReused()).toBe(true);
  });

  it.each(['TLSv1.3', 'TLSv1.2'] as const)('resumes a %s session under mutual TLS', async (version) => {
    const l = await start({ socketOpts: { ...LOCALHOST, requestCert: true, ca: [CA] } }, echo);
    const second = await resumed(l.getPort()!, { maxVersion: version, ...CLIENT });
    expect(second.isSessionReused()).toBe(true);
    expect(l.info().metrics.handshakeFailures).toBe(0);
  });

  it('refuses TLS 1.1 by default, and counts it', async () => {
    const l = await start({ socketOpts: LOCALHOST }, echo);
    const a = await attempt(l.getPort()!, { minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' });
    expect(a.secured).toBe(false);
    expect(a.error?.code).toMatch(/^ERR_SSL_.*ALERT_PROTOCOL_VERSION$/);
    await expect.poll(() => l.info().metrics.handshakeFailures).toBe(1);
  });

  it('serves TLS 1.1 when minVersion allows it (the refusal above is the default, not the client)', async () => {
    const l = await start({ socketOpts: { ...LOCALHOST, minVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' } }, echo);
    const c = await tlsClient(l.getPort()!, { minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' });
    expect(tlsOf(c).getProtocol()).toBe('TLSv1.1');
    expect(await roundTrip(c, 'old')).toBe('old');
  });
});

// ---------------------------------------------------------------------------------------------
// Paused handshake
// ---------------------------------------------------------------------------------------------

describe("paused handshake (handshake: 'hello')", () => {
  const PAUSED: TlsSocketOptions = { handshake: 'hello' };

  it('gives the protocol the ClientHello', async () => {
    const seen = deferred<TlsHello>();
    const l = await start({ socketOpts: PAUSED }, sniEcho('context', (h) => seen.resolve(h)));
    const c = await tlsClient(l.getPort()!, { servername: 'a.test', ALPNProtocols: ['h2', 'http/1.1'] });
    expect(await roundTrip(c, 'hi')).toBe('hi');
    const h = await seen.promise;
    expect(h.serverName).toBe('a.test');
    expect(h.alpnProtocols).toEqual(['h2', 'http/1.1']);
    expect(h.supportedVersions).toEqual(expect.arrayContaining([0x0304, 0x0303]));
    expect(h.cipherSuites).toEqual(expect.arrayContaining([0x1301, 0x1302]));
    expect(h.signatureAlgorithms).toEqual(expect.arrayContaining([0x0804]));
    expect(h.keyShareGroups).toEqual(expect.arrayContaining([0x001d]));
  });

  it.each(['context', 'key and cert'] as const)('serves the certificate SNI names, chosen as a %s', async (via) => {
    const l = await start({ socketOpts: PAUSED }, sniEcho(via));
    for (const name of ['a.test', 'b.test', 'A.TEST']) {
      const c = await tlsClient(l.getPort()!, { servername: name });
      expect(tlsOf(c).authorized).toBe(true);
      expect(tlsOf(c).getPeerCertificate().subject.CN).toBe(name.toLowerCase());
      expect(await roundTrip(c, name)).toBe(name);
    }
    expect(l.info().metrics).toMatchObject({ handshakeFailures: 0, protocolCrashes: 0 });
  });

  it('cancels an unknown name with an unrecognized_name alert the client sees', async () => {
    const l = await start({ socketOpts: PAUSED }, sniEcho());
    const a = await attempt(l.getPort()!, { servername: 'c.test' });
    expect(a.secured).toBe(false);
    expect(a.error?.code).toMatch(/^ERR_SSL_.*UNRECOGNIZED_NAME$/);
    expect(a.error?.message).toMatch(/unrecognized name/);
    await l.waitForConnections('==', 0);
    expect(l.info().metrics).toMatchObject({ handshakeFailures: 0, protocolCrashes: 0 });
  });

  // Error codes are matched loosely: OpenSSL names some alerts differently from one version to the next.
  it('cancels with handshake_failure by default, and with any alert number', async () => {
    let alert: object | undefined;
    const l = await start({ socketOpts: PAUSED }, async (conn) => {
      await hello(conn);
      await conn.handshakeCancel(alert);
    });
    expect((await attempt(l.getPort()!)).error?.code).toMatch(/^ERR_SSL_.*ALERT_HANDSHAKE_FAILURE$/);
    alert = { alert: 49 };
    expect((await attempt(l.getPort()!)).error?.code).toMatch(/^ERR_SSL_.*ALERT_ACCESS_DENIED$/);
  });

  it('reads a ClientHello sent one byte per write', async () => {
    const seen = deferred<TlsHello>();
    const l = await start({ socketOpts: PAUSED }, sniEcho('context', (h) => seen.resolve(h)));
    const c = await tlsOverWire(l.getPort()!, { byteByByte: true }, { servername: 'b.test' });
    expect(tlsOf(c).getPeerCertificate().subject.CN).toBe('b.test');
    expect((await seen.promise).serverName).toBe('b.test');
    expect(await roundTrip(c, 'split')).toBe('split');
  });

  it.each(['TLSv1.3', 'TLSv1.2'] as const)('passes application data on intact after a %s handshake', async (version) => {
    const l = await start({ socketOpts: PAUSED }, sniEcho());
    const data = payload((1 << 20) + 7);
    const socket = tls.connect({ host: '127.0.0.1', port: l.getPort()!, ca: CA, servername: 'a.test', maxVersion: version });
    const c = new Reader(socket);
    // Written at once: the client's first records follow its Finished without waiting for an answer.
    socket.once('secureConnect', () => socket.write(data));
    expect(sha256(await c.read(data.length))).toBe(sha256(data));
    expect(socket.getProtocol()).toBe(version);
  });

  it('refuses a ClientHello larger than maxHelloLength', async () => {
    const seen = deferred<unknown>();
    const l = await start({ socketOpts: { ...PAUSED, maxHelloLength: 64 } }, async (conn) => {
      await conn.handshake().catch((err: unknown) => seen.resolve(err));
    });
    const a = await attempt(l.getPort()!, { servername: 'a.test' });
    expect(a.secured).toBe(false);
    expect(await seen.promise).toMatchObject({ reason: 'error', cause: { reason: 'too_large' } });
    expect(l.info().metrics.handshakeFailures).toBe(1);
  });

  it('fails plain HTTP with a HandshakeError that says so', async () => {
    const seen = deferred<unknown>();
    const l = await start({ socketOpts: PAUSED }, async (conn) => {
      await conn.handshake().catch((err: unknown) => seen.resolve(err));
    });
    const c = new Reader(await connect(l.getPort()!));
    c.socket.write('GET / HTTP/1.1\r\nHost: a.test\r\n\r\n');
    const err = await seen.promise;
    expect(err).toBeInstanceOf(HandshakeError);
    expect(err).toMatchObject({ reason: 'error' });
    expect((err as Error).message).toMatch(/HTTP/);
    await c.closed;
    expect(c.text()).toBe('');
    expect(l.info().metrics.handshakeFailures).toBe(1);
  });

  it('takes handshakeContinue once, and only after a pause', async () => {
    const results = deferred<unknown[]>();
    const l = await start({ socketOpts: PAUSED }, async (conn) => {
      const early = await conn.handshakeContinue().catch((e: unknown) => e);
      await hello(conn);
      const s = await conn.handshakeContinue({ secureContext: CONTEXTS.get('a.test')! });
      const again = await conn.handshakeContinue({ secureContext: CONTEXTS.get('a.test')! }).catch((e: unknown) => e);
      const cancel = await conn.handshakeCancel().catch((e: unknown) => e);
      results.resolve([early, again, cancel]);
      await echoOn(s);
    });
    const c = await tlsClient(l.getPort()!, { servername: 'a.test' });
    for (const err of await results.promise) expect(err).toBeInstanceOf(ListenerStateError);
    expect(await roundTrip(c, 'still fine')).toBe('still fine');
  });

  it('refuses handshakeContinue and handshakeCancel on a full-handshake listener', async () => {
    const results = deferred<unknown[]>();
    const l = await start({ socketOpts: LOCALHOST }, async (conn) => {
      const s = await secure(conn);
      results.resolve([await conn.handshakeContinue().catch((e: unknown) => e), await conn.handshakeCancel().catch((e: unknown) => e)]);
      await echoOn(s);
    });
    const c = await tlsClient(l.getPort()!);
    for (const err of await results.promise) expect(err).toBeInstanceOf(ListenerStateError);
    expect(await roundTrip(c, 'ok')).toBe('ok');
  });

  it('the transport refuses to continue a connection it did not pause', async () => {
    const seen = deferred<unknown>();
    const l = await start({ socketOpts: PAUSED }, async (conn) => {
      const so = l.getTransportOptions().socketOpts as TlsSocketOptions;
      seen.resolve(await tlsTransport.handshakeContinue(conn.rawSocket, undefined, 1000, so).catch((e: unknown) => e));
      conn.rawSocket.destroy();
    });
    await connect(l.getPort()!);
    const err = await seen.promise;
    expect(err).toBeInstanceOf(HandshakeError);
    expect((err as Error).message).toMatch(/no paused TLS handshake/);
  });

  it.each([
    ['connection options only', { ALPNProtocols: ['h2'] }],
    ['a key without its certificate', { key: KEYS.get('a.test')!.key }],
  ])('rejects handshakeContinue with %s: it needs a certificate', async (_what, opts: TlsHandshakeOptions) => {
    const seen = deferred<unknown>();
    const l = await start({ socketOpts: PAUSED }, async (conn) => {
      await hello(conn);
      seen.resolve(await conn.handshakeContinue(opts).catch((e: unknown) => e));
    });
    const a = attempt(l.getPort()!, { servername: 'a.test' });
    const err = await seen.promise;
    expect(err).toBeInstanceOf(HandshakeError);
    expect((err as Error).message).toMatch(/needs a certificate/);
    expect((err as Error).cause).toBeInstanceOf(BadArgumentError);
    expect((await a).secured).toBe(false);
    expect(l.info().metrics.handshakeFailures).toBe(1);
  });

  it('rejects handshakeContinue with an unknown option', async () => {
    const seen = deferred<unknown>();
    const l = await start({ socketOpts: PAUSED }, async (conn) => {
      await hello(conn);
      seen.resolve(await conn.handshakeContinue({ ...KEYS.get('a.test')!, alpn: ['h2'] } as TlsHandshakeOptions).catch((e: unknown) => e));
    });
    void attempt(l.getPort()!, { servername: 'a.test' });
    const err = await seen.promise;
    expect(err).toBeInstanceOf(HandshakeError);
    expect((err as Error).cause).toBeInstanceOf(BadArgumentError);
    expect((err as Error).message).toMatch(/Unknown TLS handshake option alpn/);
  });

  it('fails a continue whose client left while paused as closed, without waiting for the timeout', async () => {
    const paused = deferred();
    const release = deferred();
    const seen = deferred<unknown>();
    const l = await start({ socketOpts: PAUSED, handshakeTimeout: 60_000 }, async (conn) => {
      await hello(conn);
      paused.resolve();
      await release.promise;
      seen.resolve(await conn.handshakeContinue({ secureContext: CONTEXTS.get('a.test')! }).catch((e: unknown) => e));
    });
    const client = tls.connect({ host: '127.0.0.1', port: l.getPort()!, ca: CA, servername: 'a.test' });
    client.on('error', () => {});
    await paused.promise;
    client.destroy();
    await closed(client);
    release.resolve();
    const err = await seen.promise;
    expect(err).toBeInstanceOf(HandshakeError);
    expect((err as HandshakeError).reason).not.toBe('timeout');
    expect(l.info().metrics).toMatchObject({ handshakeFailures: 1, handshakeTimeouts: 0 });
  });

  it('applies the options given to handshake at the continue, under the ones given there', async () => {
    const l = await start({ socketOpts: PAUSED }, async (conn) => {
      const r = await conn.handshake({ ALPNProtocols: ['corral/1'], ...KEYS.get('a.test')! });
      if (r instanceof tls.TLSSocket) throw new Error('the handshake did not pause');
      const name = r.continue.serverName!;
      await echoOn(await conn.handshakeContinue(name === 'a.test' ? undefined : { secureContext: CONTEXTS.get(name)! }));
    });
    for (const name of ['a.test', 'b.test']) {
      const c = await tlsClient(l.getPort()!, { servername: name, ALPNProtocols: ['corral/1'] });
      expect(tlsOf(c).getPeerCertificate().subject.CN).toBe(name);
      expect(tlsOf(c).alpnProtocol).toBe('corral/1');
    }
  });

  it("lets a continue's ALPNCallback replace the listener's ALPNProtocols", async () => {
    const l = await start({ socketOpts: { ...PAUSED, ALPNProtocols: ['http/1.1'] } }, async (conn) => {
      const h = await hello(conn);
      const pick = h.alpnProtocols.includes('h2') ? () => 'h2' : undefined;
      await echoOn(await conn.handshakeContinue({ secureContext: CONTEXTS.get('a.test')!, ...(pick ? { ALPNCallback: pick } : {}) }));
    });
    const offered = ['http/1.1', 'h2'];
    expect(tlsOf(await tlsClient(l.getPort()!, { servername: 'a.test', ALPNProtocols: offered })).alpnProtocol).toBe('h2');
    expect(tlsOf(await tlsClient(l.getPort()!, { servername: 'a.test', ALPNProtocols: ['http/1.1'] })).alpnProtocol).toBe('http/1.1');
  });

  it('fails handshakeContinue with a malformed key as a bad argument', async () => {
    const seen = deferred<unknown>();
    const l = await start({ socketOpts: PAUSED }, async (conn) => {
      await hello(conn);
      seen.resolve(await conn.handshakeContinue({ key: 'not a key', cert: KEYS.get('a.test')!.cert }).catch((e: unknown) => e));
    });
    void attempt(l.getPort()!, { servername: 'a.test' });
    const err = await seen.promise;
    expect(err).toBeInstanceOf(HandshakeError);
    expect((err as Error).cause).toBeInstanceOf(BadArgumentError);
    expect((err as Error).message).toMatch(/cannot make a TLS context/);
  });

  it('fails a continue on a socket the protocol closed, at once', async () => {
    const seen = deferred<unknown>();
    const l = await start({ socketOpts: PAUSED, handshakeTimeout: 60_000 }, async (conn) => {
      await hello(conn);
      conn.rawSocket.destroy();
      seen.resolve(await conn.handshakeContinue({ secureContext: CONTEXTS.get('a.test')! }).catch((e: unknown) => e));
    });
    void attempt(l.getPort()!, { servername: 'a.test' });
    expect(await seen.promise).toMatchObject({ reason: 'closed' });
  });

  it('refuses an unknown alert, and closes the connection all the same', async () => {
    const seen = deferred<unknown>();
    const l = await start({ socketOpts: PAUSED }, async (conn) => {
      await hello(conn);
      seen.resolve(await conn.handshakeCancel({ alert: 'go_away' }).catch((e: unknown) => e));
    });
    const a = await attempt(l.getPort()!, { servername: 'a.test' });
    expect(a.secured).toBe(false);
    const err = await seen.promise;
    expect(err).toBeInstanceOf(BadArgumentError);
    expect((err as Error).message).toMatch(/Unknown TLS alert go_away/);
  });

  it('asks a client for a certificate per name when continued with ca and requestCert', async () => {
    const peers: unknown[] = [];
    const l = await start({ socketOpts: PAUSED }, async (conn) => {
      const h = await hello(conn);
      const mutual = h.serverName === 'b.test';
      const s = await conn.handshakeContinue({ ...KEYS.get(h.serverName!)!, ...(mutual ? { requestCert: true, ca: [CA] } : {}) });
      peers.push(s.getPeerCertificate().subject?.CN);
      await echoOn(s);
    });
    const a = await tlsClient(l.getPort()!, { servername: 'a.test', ...CLIENT });
    expect(await roundTrip(a, 'a')).toBe('a');
    const b = await tlsClient(l.getPort()!, { servername: 'b.test', ...CLIENT });
    expect(await roundTrip(b, 'b')).toBe('b');
    expect(peers).toEqual([undefined, 'Corral Test Client']);
    const refused = await attempt(l.getPort()!, { servername: 'b.test' });
    expect(refused.received).toBe('');
    await expect.poll(() => l.info().metrics.handshakeFailures).toBe(1);
  });
});

// ---------------------------------------------------------------------------------------------
// With the PROXY protocol
// ---------------------------------------------------------------------------------------------

describe('TLS behind the PROXY protocol', () => {
  const header = buildProxyHeader({
    version: 2, command: 'proxy', family: 'ipv4', protocol: 'stream',
    source: { address: '192.0.2.44', port: 50123 }, destination: { address: '198.51.100.2', port: 443 },
  });

  /** A client that sends the header then TLS: in the same first write, or as two writes on one socket. */
  async function proxiedClient(port: number, how: 'one write' | 'two writes', opts: tls.ConnectionOptions): Promise<Reader> {
    if (how === 'one write') return tlsOverWire(port, { prefix: header }, opts);
    const raw = await connect(port);
    raw.write(header);
    return new Reader(await tlsOverSocket(raw, opts));
  }

  it.each(['one write', 'two writes'] as const)("'required' with a paused handshake: header and ClientHello in %s", async (how) => {
    const seen = deferred<{ client: unknown; serverName: string | undefined }>();
    const l = await start({ proxyHeader: 'required', socketOpts: { handshake: 'hello' } }, sniEcho('context', (h, conn) => {
      seen.resolve({ client: conn.clientAddress, serverName: h.serverName });
    }));
    const c = await proxiedClient(l.getPort()!, how, { servername: 'b.test' });
    expect(tlsOf(c).getPeerCertificate().subject.CN).toBe('b.test');
    expect(await roundTrip(c, 'proxied TLS')).toBe('proxied TLS');
    expect(await seen.promise).toEqual({ client: { family: 'IPv4', address: '192.0.2.44', port: 50123 }, serverName: 'b.test' });
  });

  it("'required' with a full handshake", async () => {
    const l = await start({ proxyHeader: 'required', socketOpts: LOCALHOST }, async (conn) => {
      const s = await secure(conn);
      s.write(`${JSON.stringify(conn.clientAddress)}|`);
      await echoOn(s);
    });
    const c = await proxiedClient(l.getPort()!, 'one write', {});
    const prefix = '{"family":"IPv4","address":"192.0.2.44","port":50123}|';
    expect((await c.read(prefix.length)).toString()).toBe(prefix);
    expect(await roundTrip(c, 'echo')).toBe('echo');
  });

  it.each(['one write', 'two writes'] as const)('recvProxyHeader, then the full handshake (%s)', async (how) => {
    const seen = deferred<unknown>();
    const l = await start({ socketOpts: LOCALHOST }, async (conn) => {
      const h = await conn.recvProxyHeader();
      const s = await secure(conn);
      seen.resolve({ source: h?.command === 'proxy' ? h.source : undefined, client: conn.clientAddress });
      await echoOn(s);
    });
    const c = await proxiedClient(l.getPort()!, how, {});
    expect(await roundTrip(c, 'manual')).toBe('manual');
    expect(await seen.promise).toEqual({
      source: { address: '192.0.2.44', port: 50123 },
      client: { family: 'IPv4', address: '192.0.2.44', port: 50123 },
    });
  });
});

// ---------------------------------------------------------------------------------------------
// Real clients
// ---------------------------------------------------------------------------------------------

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run a program to its exit; `onStdout` sees the output so far and may end stdin. */
function run(file: string, args: string[], onStdout?: (stdout: string, endInput: () => void) => void): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Run = { code: null, stdout: '', stderr: '' };
    const endInput = (): void => {
      if (!child.stdin.writableEnded) child.stdin.end();
    };
    child.stdin.on('error', () => {});
    child.stdout.setEncoding('utf8').on('data', (text: string) => {
      out.stdout += text;
      onStdout?.(out.stdout, endInput);
    });
    child.stderr.setEncoding('utf8').on('data', (text: string) => {
      out.stderr += text;
    });
    child.once('error', reject);
    child.once('close', (code) => resolve({ ...out, code }));
    if (onStdout === undefined) endInput();
  });
}

function requireCurl(): string {
  const curl = findExecutable('curl');
  if (curl === undefined) {
    throw new Error('curl is not installed, and the TLS interop tests need it. Install it (Debian: apt-get install -y --no-install-recommends curl).');
  }
  return curl;
}

describe('real clients', () => {
  function sClient(port: number, servername: string): Promise<Run> {
    const openssl = requirePeer('openssl');
    return run(openssl, [
      's_client', '-connect', `127.0.0.1:${port}`, '-servername', servername, '-CAfile', fixture('ca.crt'), '-verify_return_error',
    ], (stdout, endInput) => {
      if (/Verify return code: /.test(stdout)) endInput();
    });
  }

  it('openssl s_client gets the certificate of each name, and an alert for an unknown one', async () => {
    const l = await start({ socketOpts: { handshake: 'hello' } }, sniEcho());
    for (const name of ['a.test', 'b.test']) {
      const r = await sClient(l.getPort()!, name);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`subject=\\s*CN\\s*=\\s*${name.replace('.', '\\.')}\\s*$`, 'm'));
      expect(r.stdout).toMatch(/Verify return code: 0 \(ok\)/);
    }
    const refused = await sClient(l.getPort()!, 'c.test');
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/unrecognized name/);
  });

  /** Paused: the certificate by SNI, http/1.1 by ALPN, then one HTTP answer. */
  function tinyHttp(record: (r: { offered: string[]; negotiated: string | false | null; requestLine: string | undefined }) => void) {
    return async (conn: TlsConn): Promise<void> => {
      const h = await hello(conn);
      const ctx = CONTEXTS.get(h.serverName ?? '');
      if (ctx === undefined) {
        await conn.handshakeCancel({ alert: 'unrecognized_name' });
        return;
      }
      const s = await conn.handshakeContinue({ secureContext: ctx, ALPNProtocols: ['http/1.1'] });
      let head = '';
      while (!head.includes('\r\n\r\n')) head += (await tlsTransport.recv(s, 0, 10_000)).toString('latin1');
      record({ offered: h.alpnProtocols, negotiated: s.alpnProtocol, requestLine: head.split('\r\n')[0] });
      const body = `hello from ${h.serverName}\n`;
      s.end(`HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
      await closed(s);
    };
  }

  it.each([
    { flags: [], offered: ['h2', 'http/1.1'] },
    { flags: ['--http1.1'], offered: ['http/1.1'] },
    { flags: ['--no-alpn'], offered: [] },
  ])('curl $flags gets an HTTP answer over the certificate SNI chose', async ({ flags, offered }) => {
    const curl = requireCurl();
    const seen: { offered: string[]; negotiated: string | false | null; requestLine: string | undefined }[] = [];
    const l = await start({ socketOpts: { handshake: 'hello' } }, tinyHttp((r) => seen.push(r)));
    const port = l.getPort()!;
    for (const name of ['a.test', 'b.test']) {
      const r = await run(curl, ['-sS', ...flags, '--cacert', fixture('ca.crt'), '--resolve', `${name}:${port}:127.0.0.1`, `https://${name}:${port}/x`]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toBe(`hello from ${name}\n`);
    }
    const negotiated = offered.length === 0 ? false : 'http/1.1';
    expect(seen).toEqual([
      { offered, negotiated, requestLine: 'GET /x HTTP/1.1' },
      { offered, negotiated, requestLine: 'GET /x HTTP/1.1' },
    ]);
  });

  it('curl fails on an unknown name', async () => {
    const curl = requireCurl();
    const l = await start({ socketOpts: { handshake: 'hello' } }, tinyHttp(() => {}));
    const port = l.getPort()!;
    const r = await run(curl, ['-sS', '--cacert', fixture('ca.crt'), '--resolve', `c.test:${port}:127.0.0.1`, `https://c.test:${port}/`]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/unrecognized name/);
  });
});

// ---------------------------------------------------------------------------------------------
// tlsTransport.connect
// ---------------------------------------------------------------------------------------------

describe('tlsTransport.connect', () => {
  /** A TCP server that accepts and never answers. */
  async function silentServer(): Promise<{ port: number; accepted: Promise<void>; close: () => void }> {
    const sockets: net.Socket[] = [];
    const accepted = deferred();
    const server = net.createServer((s) => {
      sockets.push(s);
      s.on('error', () => {});
      accepted.resolve();
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const close = (): void => {
      for (const s of sockets) s.destroy();
      server.close();
    };
    return { port: (server.address() as net.AddressInfo).port, accepted: accepted.promise, close };
  }

  /** A listener whose protocol says which server name the client sent, then echoes. */
  async function nameReporter(): Promise<TlsListener> {
    return start({ socketOpts: LOCALHOST }, async (conn) => {
      const s = await secure(conn);
      s.write(`${String(s.servername)}|`);
      await echoOn(s);
    });
  }

  it('verifies the server by default', async () => {
    const l = await start({ socketOpts: LOCALHOST }, echo);
    const err = await tlsTransport.connect('127.0.0.1', l.getPort()!).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SocketError);
    expect(err).toMatchObject({ reason: 'error' });
    expect((err as Error).message).toMatch(new RegExp(`connect to 127\\.0\\.0\\.1:${l.getPort()}: `));
    expect((err as Error).cause).toMatchObject({ code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' });
    await expect.poll(() => l.info().metrics.handshakeFailures).toBe(1);
  });

  it('sends SNI for a name, and verifies the certificate against it', async () => {
    const l = await nameReporter();
    const socket = await tlsTransport.connect('localhost', l.getPort()!, { ca: CA, family: 4 });
    expect(socket.authorized).toBe(true);
    expect((await tlsTransport.recv(socket, 'localhost|'.length, 5000)).toString()).toBe('localhost|');
    await tlsTransport.close(socket);
  });

  it('sends no SNI for an IP address', async () => {
    const l = await nameReporter();
    const socket = await tlsTransport.connect('127.0.0.1', l.getPort()!, { ca: CA });
    expect(socket.authorized).toBe(true);
    expect((await tlsTransport.recv(socket, 0, 5000)).toString()).toBe('false|');
    await tlsTransport.close(socket);
  });

  it('returns a passive socket: recv and send work on it', async () => {
    const l = await start({ socketOpts: LOCALHOST }, async (conn) => {
      const s = await secure(conn);
      s.write('greeting');
      await echoOn(s);
    });
    const socket = await tlsTransport.connect('127.0.0.1', l.getPort()!, { ca: CA });
    expect(socket.isPaused()).toBe(true);
    expect((await tlsTransport.recv(socket, 8, 5000)).toString()).toBe('greeting');
    await tlsTransport.send(socket, 'ping');
    expect((await tlsTransport.recv(socket, 4, 5000)).toString()).toBe('ping');
    const err = await tlsTransport.recv(socket, 1, 20).catch((e: unknown) => e);
    expect(err).toMatchObject({ reason: 'timeout' });
    await tlsTransport.close(socket);
  });

  it('times out a server that never answers', async () => {
    const silent = await silentServer();
    try {
      const err = await tlsTransport.connect('127.0.0.1', silent.port, { ca: CA, timeout: 50 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(SocketError);
      expect(err).toMatchObject({ reason: 'timeout' });
      expect(await tlsTransport.connect('127.0.0.1', silent.port, { timeout: 0 }).catch((e: unknown) => e)).toMatchObject({ reason: 'timeout' });
    } finally {
      silent.close();
    }
  });

  it('is cancelled by an AbortSignal, before or during the handshake', async () => {
    const silent = await silentServer();
    try {
      const ac = new AbortController();
      const why = new Error('changed my mind');
      const pending = tlsTransport.connect('127.0.0.1', silent.port, { ca: CA, signal: ac.signal }).catch((e: unknown) => e);
      await silent.accepted;
      ac.abort(why);
      const err = await pending;
      expect(err).toBeInstanceOf(SocketError);
      expect(err).toMatchObject({ reason: 'cancelled', cause: why });
      const early = await tlsTransport.connect('127.0.0.1', silent.port, { signal: ac.signal }).catch((e: unknown) => e);
      expect(early).toMatchObject({ reason: 'cancelled', cause: why });
    } finally {
      silent.close();
    }
  });

  it('checks its arguments', async () => {
    for (const [host, port, opts] of [
      ['', 443, {}],
      ['127.0.0.1', 0, {}],
      ['127.0.0.1', 70000, {}],
      ['127.0.0.1', 443, { timeout: -1 }],
      ['127.0.0.1', 443, { signal: 'no' }],
    ] as [string, number, Record<string, unknown>][]) {
      await expect(tlsTransport.connect(host, port, opts)).rejects.toBeInstanceOf(BadArgumentError);
    }
  });

  it('sendfile sends a file intact over TLS, both ways', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'corral-tls-'));
    try {
      const path = join(dir, 'data.bin');
      const data = payload(3 * 65536 + 1234);
      await writeFile(path, data);
      const part = { offset: 100, length: 70_000 };
      const l = await start({ socketOpts: LOCALHOST }, async (conn) => {
        const s = await secure(conn);
        const sent = await tlsTransport.sendfile(s, path);
        // Then the part the client sends back, hashed.
        const back = await tlsTransport.recv(s, part.length, 10_000);
        s.end(`${sent}|${sha256(back)}`);
      });
      const socket = await tlsTransport.connect('127.0.0.1', l.getPort()!, { ca: CA });
      expect(sha256(await tlsTransport.recv(socket, data.length, 10_000))).toBe(sha256(data));
      expect(await tlsTransport.sendfile(socket, path, part.offset, part.length)).toBe(part.length);
      const answer = `${data.length}|${sha256(data.subarray(part.offset, part.offset + part.length))}`;
      expect((await tlsTransport.recv(socket, answer.length, 5000)).toString()).toBe(answer);
      await tlsTransport.close(socket);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------------

describe('options', () => {
  it.each([
    ['no certificate', {}, 'socketOpts', /needs a certificate/],
    ['a malformed key', { key: 'not a key', cert: LOCALHOST.cert }, 'socketOpts', /cannot make a TLS context/],
    ['a key that does not match its certificate', { key: KEYS.get('a.test')!.key, cert: LOCALHOST.cert }, 'socketOpts', /cannot make a TLS context/],
    ['an unknown TLS option', { ...LOCALHOST, alpnProtocols: ['h2'] }, 'socketOpts.alpnProtocols', /unknown option/],
    ['minVersion TLSv9', { ...LOCALHOST, minVersion: 'TLSv9' }, 'socketOpts.minVersion', /TLSv1\.2/],
    ["handshake 'sometimes'", { ...LOCALHOST, handshake: 'sometimes' }, 'socketOpts.handshake', /'full' or 'hello'/],
    ['requestCert not a boolean', { ...LOCALHOST, requestCert: 'yes' }, 'socketOpts.requestCert', /boolean/],
    ['SNICallback not a function', { ...LOCALHOST, SNICallback: 'a.test' }, 'socketOpts.SNICallback', /function/],
    ['a secureContext not made by tls', { secureContext: {} }, 'socketOpts.secureContext', /createSecureContext/],
    ['maxHelloLength too small', { handshake: 'hello', maxHelloLength: 10 }, 'socketOpts.maxHelloLength', /at least 50/],
    ['ALPNProtocols with ALPNCallback', { ...LOCALHOST, ALPNProtocols: ['h2'], ALPNCallback: () => 'h2' }, 'socketOpts.ALPNCallback', /ALPNProtocols/],
  ])('refuses %s at start', async (_what, socketOpts, option, message) => {
    const name = ref('tls-badopt');
    const err = await startListener(name, tlsTransport, { socketOpts: { host: '127.0.0.1', ...socketOpts } as TlsSocketOptions }, echo, undefined)
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BadOptionError);
    expect((err as BadOptionError).option).toBe(option);
    expect((err as Error).message).toMatch(message);
    expect(() => getStatus(name)).toThrow(ListenerNotFoundError);
  });

  it('a paused listener needs no certificate; TCP options still apply', async () => {
    const l = await start({ socketOpts: { handshake: 'hello', backlog: 16, noDelay: false } }, sniEcho());
    const c = await tlsClient(l.getPort()!, { servername: 'a.test' });
    expect(await roundTrip(c, 'no cert at start')).toBe('no cert at start');
    expect(l.getTransportOptions().socketOpts).toMatchObject({ handshake: 'hello', backlog: 16, noDelay: false, minVersion: 'TLSv1.2' });
  });

  it('takes a new certificate given to setTransportOptions at the next resume', async () => {
    const l = await start({ socketOpts: LOCALHOST }, echo);
    const before = await tlsClient(l.getPort()!);
    expect(tlsOf(before).getPeerCertificate().subject.CN).toBe('localhost');
    const current = l.getTransportOptions();
    l.setTransportOptions({ ...current, socketOpts: { ...current.socketOpts, ...KEYS.get('a.test')!, port: l.getPort()! } });
    await l.suspend();
    await l.resume();
    const after = await tlsClient(l.getPort()!, { servername: 'a.test' });
    expect(tlsOf(after).getPeerCertificate().subject.CN).toBe('a.test');
  });
});
