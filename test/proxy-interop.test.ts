/**
 * The PROXY protocol against the real load balancers: a Corral listener behind HAProxy (v1, v2,
 * v2 with TLS termination and TLVs, v2 with health checks) and behind nginx's stream proxy (v1).
 *
 * Every client connects from 127.0.0.2 through the proxy, which reaches Corral from 127.0.0.1: the
 * protocol must see the client's true address in `clientAddress` and the header, and the proxy's
 * in `peer`. Each connection then echoes 1 MiB of random bytes back through the proxy.
 *
 * The peers are started here as child processes (see test/peers/); a missing binary fails these
 * tests with the command that installs it (`node test/peers/ensure.mjs` does so as root).
 */

import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  buildProxyHeader, proxyHeaderToConnectionInfo, startListener, tcp,
  type Connection, type Listener, type ListenerOptions, type ProxyHeader, type SocketAddress, type TcpSocketOptions,
} from '@corral/listener';
import { selfSignedCert, type Cert } from './peers/cert.js';
import { startHaproxy, type HaproxyOptions } from './peers/haproxy.js';
import { startNginx } from './peers/nginx.js';

const PROXY_HOST = '127.0.0.1';
/** Clients bind this loopback address, so the proxy's address (127.0.0.1) and theirs differ. */
const CLIENT_HOST = '127.0.0.2';
const ECHO_BYTES = 1024 * 1024;
const ECHO_WRITES = 16;

type TcpConn = Connection<net.Socket, undefined, never>;

/** What the protocol saw of one connection. */
interface Report {
  clientAddress: SocketAddress | undefined;
  peer: SocketAddress | undefined;
  header: ProxyHeader | undefined;
}

function key(a: SocketAddress | undefined): string {
  if (a === undefined) return 'none';
  return a.family === 'local' ? `unix:${a.path}` : `${a.address}:${a.port}`;
}

/** The protocol's reports: client connections by client address, and LOCAL (health check) ones. */
class Seen {
  readonly clients = new Map<string, Report>();
  readonly healthChecks: Report[] = [];
  #clientWaiters = new Map<string, (r: Report) => void>();
  #checkWaiters: { n: number; resolve: () => void }[] = [];

  add(report: Report): void {
    if (report.header?.command === 'local') {
      this.healthChecks.push(report);
      this.#checkWaiters = this.#checkWaiters.filter((w) => {
        if (this.healthChecks.length < w.n) return true;
        w.resolve();
        return false;
      });
      return;
    }
    const k = key(report.clientAddress);
    this.clients.set(k, report);
    this.#clientWaiters.get(k)?.(report);
    this.#clientWaiters.delete(k);
  }

  /** Resolves with the report of the connection whose client is `address:port`. */
  client(address: string, port: number): Promise<Report> {
    const k = `${address}:${port}`;
    const known = this.clients.get(k);
    if (known !== undefined) return Promise.resolve(known);
    return new Promise((resolve) => this.#clientWaiters.set(k, resolve));
  }

  /** Resolves once `n` health checks came in. */
  healthChecksSeen(n: number): Promise<void> {
    if (this.healthChecks.length >= n) return Promise.resolve();
    return new Promise((resolve) => this.#checkWaiters.push({ n, resolve }));
  }
}

/** Reports what it sees, then echoes; a LOCAL connection (a health check) is reported and closed. */
async function reportingEcho(conn: TcpConn, _transport: unknown, seen: Seen): Promise<void> {
  const socket = await conn.handshake();
  socket.on('error', () => {});
  seen.add({ clientAddress: conn.clientAddress, peer: conn.peer, header: conn.proxyHeader });
  if (conn.proxyHeader?.command === 'local') {
    socket.end();
    return;
  }
  socket.pipe(socket);
  await new Promise((resolve) => socket.once('close', resolve));
}

/** Registers a teardown step; a fixture runs them in reverse order, also after a setup that failed half way. */
type Cleanup = (fn: () => Promise<unknown>) => void;

/**
 * Set up shared state once for a describe block (beforeAll) and tear it down after (afterAll).
 * A setup failure, such as a peer that is not installed, is rethrown by every test that asks for
 * the state, so each of them fails with the reason instead of being skipped.
 */
function fixture<T>(setup: (cleanup: Cleanup) => Promise<T>): () => T {
  const fns: (() => Promise<unknown>)[] = [];
  let state: { ok: true; value: T } | { ok: false; error: unknown } | undefined;
  beforeAll(async () => {
    try {
      state = { ok: true, value: await setup((fn) => fns.push(fn)) };
    } catch (error) {
      state = { ok: false, error };
    }
  });
  afterAll(async () => {
    const errors: unknown[] = [];
    for (const fn of fns.splice(0).reverse()) await fn().catch((err: unknown) => errors.push(err));
    if (errors.length > 0) throw new AggregateError(errors, 'cleanup failed');
  });
  return () => {
    if (state === undefined) throw new Error('the fixture was not set up');
    if (!state.ok) throw state.error;
    return state.value;
  };
}

let refs = 0;

async function startCorral(
  seen: Seen,
  proxyHeader: ListenerOptions<TcpSocketOptions>['proxyHeader'],
): Promise<Listener<typeof tcp, Seen>> {
  return startListener(
    `proxy-interop-${process.pid}-${++refs}`,
    tcp,
    { socketOpts: { host: PROXY_HOST, port: 0 }, proxyHeader, shutdown: 'brutal_kill' },
    reportingEcho,
    seen,
  );
}

/** Connect from {@link CLIENT_HOST}; resolves once connected (TLS: once the handshake is done). */
async function connectFromClientHost(port: number, tlsOpts?: tls.ConnectionOptions): Promise<net.Socket | tls.TLSSocket> {
  const endpoint = { host: PROXY_HOST, port, localAddress: CLIENT_HOST };
  // tls.connect hands localAddress to the underlying net.Socket connect, though its type omits it.
  const socket = tlsOpts === undefined ? net.connect(endpoint) : tls.connect({ ...tlsOpts, ...endpoint } as tls.ConnectionOptions);
  await new Promise<void>((resolve, reject) => {
    socket.once(tlsOpts === undefined ? 'connect' : 'secureConnect', () => {
      socket.off('error', reject);
      resolve();
    });
    socket.once('error', reject);
  });
  return socket;
}

/** Send {@link ECHO_BYTES} random bytes in {@link ECHO_WRITES} writes; every byte must come back, in order. */
async function echoMiB(socket: net.Socket): Promise<void> {
  const data = randomBytes(ECHO_BYTES);
  const chunks: Buffer[] = [];
  let received = 0;
  const back = new Promise<void>((resolve, reject) => {
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
      received += chunk.length;
      if (received >= ECHO_BYTES) {
        socket.off('data', onData);
        resolve();
      }
    };
    socket.on('data', onData);
    socket.once('close', () => reject(new Error(`the connection closed after ${received} of ${ECHO_BYTES} bytes came back`)));
    socket.once('error', reject);
  });
  const step = ECHO_BYTES / ECHO_WRITES;
  for (let i = 0; i < ECHO_WRITES; i++) {
    if (!socket.write(data.subarray(i * step, (i + 1) * step))) {
      await new Promise<void>((resolve, reject) => {
        socket.once('drain', resolve);
        back.catch(reject);
      });
    }
  }
  await back;
  const echoed = Buffer.concat(chunks);
  expect(echoed.length).toBe(ECHO_BYTES);
  // A mismatch reports its first offset rather than a megabyte of bytes.
  if (!echoed.equals(data)) expect.fail(`the echo differs from byte ${echoed.findIndex((byte, i) => byte !== data[i])} on`);
}

/** Close a client and wait until it is closed. */
async function closeClient(socket: net.Socket): Promise<void> {
  if (socket.closed) return;
  const done = new Promise((resolve) => socket.once('close', resolve));
  socket.end();
  await done;
}

/**
 * Through the proxy: connect from the client address, run the echo, and check what the protocol
 * saw: the true client in `clientAddress` and the header's source, the proxy in `peer`, the proxy's
 * frontend in the header's destination. Returns the report and the client socket, still open.
 */
async function throughProxy(
  seen: Seen,
  proxyPort: number,
  version: 1 | 2,
  tlsOpts?: tls.ConnectionOptions,
): Promise<{ report: Report; client: net.Socket | tls.TLSSocket }> {
  const client = await connectFromClientHost(proxyPort, tlsOpts);
  const clientPort = client.localPort!;
  expect(client.localAddress).toBe(CLIENT_HOST);
  const [report] = await Promise.all([seen.client(CLIENT_HOST, clientPort), echoMiB(client)]);
  expect(report.clientAddress).toEqual({ family: 'IPv4', address: CLIENT_HOST, port: clientPort });
  expect(report.peer).toMatchObject({ family: 'IPv4', address: PROXY_HOST });
  expect(report.header).toMatchObject({
    version,
    command: 'proxy',
    family: 'ipv4',
    protocol: 'stream',
    source: { address: CLIENT_HOST, port: clientPort },
    destination: { address: PROXY_HOST, port: proxyPort },
  });
  return { report, client };
}

/** A Corral listener behind a proxy, and the protocol's reports. */
interface Setup {
  seen: Seen;
  listener: Listener<typeof tcp, Seen>;
  proxyPort: number;
}

/** A fixture: a Corral listener with `proxyHeader`, behind the proxy that `startProxy` starts. */
function behindProxy(
  proxyHeader: ListenerOptions<TcpSocketOptions>['proxyHeader'],
  startProxy: (corralPort: number, cleanup: Cleanup) => Promise<{ port: number; stop(): Promise<void> }>,
): () => Setup {
  return fixture(async (cleanup) => {
    const seen = new Seen();
    const listener = await startCorral(seen, proxyHeader);
    cleanup(() => listener.stop());
    const proxy = await startProxy(listener.getPort()!, cleanup);
    cleanup(() => proxy.stop());
    return { seen, listener, proxyPort: proxy.port };
  });
}

const haproxyTo = (corralPort: number, opts: Omit<HaproxyOptions, 'backend'>) =>
  startHaproxy({ backend: { host: PROXY_HOST, port: corralPort }, ...opts });

describe.each([
  { name: 'HAProxy send-proxy (v1)', sendProxy: 'v1', version: 1 },
  { name: 'HAProxy send-proxy-v2', sendProxy: 'v2', version: 2 },
] as const)('behind $name', ({ sendProxy, version }) => {
  const env = behindProxy('required', (port) => haproxyTo(port, { sendProxy }));

  it('gives the protocol the true client address and echoes every byte', async () => {
    const { seen, proxyPort } = env();
    const { report, client } = await throughProxy(seen, proxyPort, version);
    expect(report.header?.tlvs).toEqual({ raw: [] });
    await closeClient(client);
  });

  it('serves several clients at once, each with its own address', async () => {
    const { seen, listener, proxyPort } = env();
    const results = await Promise.all([0, 1, 2].map(() => throughProxy(seen, proxyPort, version)));
    expect(new Set(results.map((r) => r.client.localPort)).size).toBe(3);
    await Promise.all(results.map((r) => closeClient(r.client)));
    expect(listener.info().metrics).toMatchObject({ proxyHeaderFailures: 0, proxyHeaderUntrusted: 0, protocolCrashes: 0 });
  });
});

describe('behind HAProxy send-proxy-v2 with TLS termination and TLVs', () => {
  // Every proxy-v2-options value HAProxy 2.6 knows.
  const PROXY_V2_OPTIONS = ['crc32c', 'unique-id', 'authority', 'ssl', 'cert-cn', 'ssl-cipher', 'cert-sig', 'cert-key'];
  const SNI = 'corral.test';
  let trustedClient: Cert;
  let strangerClient: Cert;

  const env = behindProxy('required', async (port, cleanup) => {
    const dir = await mkdtemp(join(tmpdir(), 'corral-interop-tls-'));
    cleanup(() => rm(dir, { recursive: true, force: true }));
    const [server, trusted, stranger] = await Promise.all([
      selfSignedCert(dir, 'server', 'localhost'),
      selfSignedCert(dir, 'client', 'corral-client'),
      selfSignedCert(dir, 'stranger', 'corral-stranger'),
    ]);
    trustedClient = trusted;
    strangerClient = stranger;
    return haproxyTo(port, {
      sendProxy: 'v2',
      proxyV2Options: PROXY_V2_OPTIONS,
      // Client certificates are asked for, not required; one that does not verify is let through.
      tls: {
        pem: server.pemFile,
        alpn: ['corral/1', 'http/1.1'],
        extraBind: ['verify', 'optional', 'ca-file', trusted.certFile, 'crt-ignore-err', 'all'],
      },
      uniqueIdFormat: 'corral-%ci-%cp',
    });
  });

  const tlsClient = (cert?: Cert): tls.ConnectionOptions => ({
    rejectUnauthorized: false,
    servername: SNI,
    ALPNProtocols: ['corral/1'],
    ...(cert === undefined ? {} : { cert: cert.cert, key: cert.key }),
  });

  it('carries the TLS facts, SNI, ALPN, unique id and a valid checksum', async () => {
    const { seen, proxyPort } = env();
    const { report, client } = await throughProxy(seen, proxyPort, 2, tlsClient());
    const tlsSocket = client as tls.TLSSocket;
    const tlvs = report.header!.tlvs;
    expect(tlvs.crc32c).toBe(true);
    expect(tlvs.authority).toBe(SNI);
    expect(tlvs.alpn?.toString('latin1')).toBe('corral/1');
    expect(tlvs.uniqueId?.toString('latin1')).toBe(`corral-${CLIENT_HOST}-${client.localPort}`);
    expect(tlvs.ssl).toMatchObject({
      client: { ssl: true, certConn: false, certSess: false },
      verified: true,
      verifyResult: 0,
      version: tlsSocket.getProtocol(),
      cipher: tlsSocket.getCipher().name,
      // cert-sig and cert-key describe the certificate HAProxy presented: RSA-2048, signed with SHA-256.
      sigAlg: 'RSA-SHA256',
      keyAlg: 'RSA2048',
      raw: [],
    });
    expect(tlvs.ssl?.version).toMatch(/^TLSv1\.[23]$/);
    expect(tlvs.ssl?.cn).toBeUndefined();
    expect(tlvs.raw).toEqual([]);
    expect(proxyHeaderToConnectionInfo(report.header!)).toMatchObject({
      remoteAddress: CLIENT_HOST,
      remotePort: client.localPort,
      localAddress: PROXY_HOST,
      localPort: proxyPort,
      secure: true,
      tlsVersion: tlsSocket.getProtocol(),
      tlsCipher: tlsSocket.getCipher().name,
      sni: SNI,
      alpn: 'corral/1',
    });
    await closeClient(client);
  });

  it("reports a verified client certificate's common name", async () => {
    const { seen, proxyPort } = env();
    const { report, client } = await throughProxy(seen, proxyPort, 2, tlsClient(trustedClient));
    expect(report.header!.tlvs.ssl).toMatchObject({
      client: { ssl: true, certConn: true, certSess: true },
      verified: true,
      verifyResult: 0,
      cn: 'corral-client',
    });
    expect(proxyHeaderToConnectionInfo(report.header!).clientCertificate).toEqual({ verified: true, cn: 'corral-client' });
    await closeClient(client);
  });

  it('reports a client certificate that did not verify', async () => {
    const { seen, proxyPort } = env();
    const { report, client } = await throughProxy(seen, proxyPort, 2, tlsClient(strangerClient));
    const ssl = report.header!.tlvs.ssl!;
    expect(ssl).toMatchObject({ client: { ssl: true, certConn: true, certSess: true }, verified: false, cn: 'corral-stranger' });
    expect(ssl.verifyResult).not.toBe(0);
    expect(proxyHeaderToConnectionInfo(report.header!).clientCertificate).toEqual({ verified: false, cn: 'corral-stranger' });
    await closeClient(client);
  });
});

describe('behind nginx stream proxy_protocol (v1)', () => {
  const env = behindProxy('required', (port) => startNginx({ backend: { host: PROXY_HOST, port } }));

  it('gives the protocol the true client address and echoes every byte', async () => {
    const { seen, listener, proxyPort } = env();
    const { report, client } = await throughProxy(seen, proxyPort, 1);
    expect(report.header?.tlvs).toEqual({ raw: [] });
    await closeClient(client);
    expect(listener.info().metrics).toMatchObject({ proxyHeaderFailures: 0, protocolCrashes: 0 });
  });
});

describe('trusted proxies, behind HAProxy send-proxy-v2', () => {
  const env = behindProxy({ mode: 'required', trustedProxies: [PROXY_HOST] }, (port) => haproxyTo(port, { sendProxy: 'v2' }));

  it('accepts the header from the trusted proxy', async () => {
    const { seen, listener, proxyPort } = env();
    const { client } = await throughProxy(seen, proxyPort, 2);
    await closeClient(client);
    expect(listener.info().metrics.proxyHeaderUntrusted).toBe(0);
  });

  it('refuses a forged header sent directly from an untrusted address, and counts it', async () => {
    const { seen, listener } = env();
    const forged = buildProxyHeader({
      version: 1, command: 'proxy', family: 'ipv4',
      source: { address: '203.0.113.9', port: 4242 }, destination: { address: PROXY_HOST, port: 443 },
    });
    const direct = await connectFromClientHost(listener.getPort()!);
    const clientPort = direct.localPort!;
    let received = 0;
    direct.on('data', (chunk: Buffer) => {
      received += chunk.length;
    });
    direct.on('error', () => {}); // the listener may reset the connection
    const closed = new Promise((resolve) => direct.once('close', resolve));
    direct.write(Buffer.concat([forged, Buffer.from('hello')]));
    await closed;
    expect(received).toBe(0);
    expect(listener.info().metrics).toMatchObject({ proxyHeaderUntrusted: 1 });
    // The protocol never saw it, under the forged address or the real one.
    expect(seen.clients.has('203.0.113.9:4242')).toBe(false);
    expect(seen.clients.has(`${CLIENT_HOST}:${clientPort}`)).toBe(false);
  });
});

describe('behind HAProxy send-proxy-v2 with health checks', () => {
  const env = behindProxy('required', (port) => haproxyTo(port, { sendProxy: 'v2', check: { interMs: 100 } }));

  it('receives the checks as LOCAL headers: accepted, and told apart from client connections', async () => {
    const { seen, listener, proxyPort } = env();
    await seen.healthChecksSeen(3);
    for (const check of seen.healthChecks.slice(0, 3)) {
      expect(check.header).toEqual({ version: 2, command: 'local', tlvs: { raw: [] } });
      // LOCAL: the connection's own endpoints stand, nothing is taken from the header.
      expect(check.clientAddress).toEqual(check.peer);
    }
    const { client } = await throughProxy(seen, proxyPort, 2);
    const clientKey = `${CLIENT_HOST}:${client.localPort}`;
    await closeClient(client);
    expect([...seen.clients.keys()]).toEqual([clientKey]);
    expect(listener.info().metrics).toMatchObject({ proxyHeaderFailures: 0, proxyHeaderUntrusted: 0, protocolCrashes: 0 });
  });
});
