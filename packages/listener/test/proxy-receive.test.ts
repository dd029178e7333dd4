import type * as net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import {
  BadOptionError, HandshakeError, ListenerStateError, ProxyHeaderError, SocketError, UntrustedProxyError,
  buildProxyHeader, recvProxyHeader, startListener, tcp,
  type Connection, type Listener, type ListenerOptions, type ProxyHeader, type TcpSocketOptions,
} from '../src/index.js';
import { client, closed, connect, deferred, ref } from './helpers.js';

type TcpConn = Connection<net.Socket, undefined, never>;

const listeners: Listener<typeof tcp, unknown>[] = [];
afterEach(async () => {
  await Promise.all(listeners.splice(0).map((l) => l.stop()));
});

async function start(opts: ListenerOptions<TcpSocketOptions>, protocol: (conn: TcpConn) => Promise<void>): Promise<Listener<typeof tcp, unknown>> {
  const l = await startListener(ref('proxy'), tcp, { socketOpts: { host: '127.0.0.1' }, shutdown: 'brutal_kill', ...opts }, protocol, undefined);
  listeners.push(l as Listener<typeof tcp, unknown>);
  return l as Listener<typeof tcp, unknown>;
}

/** Read a socket to its end. */
async function readAll(socket: net.Socket): Promise<string> {
  socket.setEncoding('latin1');
  let text = '';
  for await (const chunk of socket) text += chunk as string;
  return text;
}

const v1 = Buffer.from('PROXY TCP4 192.0.2.10 198.51.100.1 40000 443\r\n');
const v2 = buildProxyHeader({
  version: 2, command: 'proxy', family: 'ipv6', protocol: 'stream',
  source: { address: '2001:db8::7', port: 51000 }, destination: { address: '2001:db8::1', port: 8443 },
  tlvs: { authority: 'example.com', raw: [] },
}, { checksum: true });

/** A protocol that receives the header by hand, then reports the header and every byte that follows. */
function reporter() {
  const seen = deferred<{ header: ProxyHeader | undefined; rest: string; client: unknown }>();
  const protocol = async (conn: TcpConn): Promise<void> => {
    const header = await recvProxyHeader(conn, 2000);
    const socket = await conn.handshake();
    seen.resolve({ header, rest: await readAll(socket), client: conn.clientAddress });
  };
  return { protocol, seen: seen.promise };
}

describe('recvProxyHeader', () => {
  it('reads a v1 header and leaves the bytes after it, sent in the same packet, to the protocol', async () => {
    const r = reporter();
    const l = await start({}, r.protocol);
    const c = await connect(l.getPort()!);
    c.end(Buffer.concat([v1, Buffer.from('GET / HTTP/1.1\r\n\r\n')]));
    const { header, rest, client: real } = await r.seen;
    expect(header).toMatchObject({ version: 1, command: 'proxy', family: 'ipv4', source: { address: '192.0.2.10', port: 40000 } });
    expect(rest).toBe('GET / HTTP/1.1\r\n\r\n');
    expect(real).toEqual({ family: 'IPv4', address: '192.0.2.10', port: 40000 });
  });

  it('reads a checksummed v2 header split into single bytes, then the payload intact', async () => {
    const r = reporter();
    const l = await start({}, r.protocol);
    const c = await connect(l.getPort()!);
    const payload = Buffer.from(Array.from({ length: 3000 }, (_, i) => i % 256));
    for (const byte of v2) {
      await new Promise<void>((resolve) => c.write(Buffer.of(byte), () => resolve()));
    }
    c.end(payload);
    const { header, rest } = await r.seen;
    expect(header).toMatchObject({ version: 2, family: 'ipv6', source: { address: '2001:db8::7', port: 51000 }, tlvs: { authority: 'example.com', crc32c: true } });
    expect(Buffer.from(rest, 'latin1').equals(payload)).toBe(true);
  });

  it('reads a v2 LOCAL header: the socket peer stays the client', async () => {
    const r = reporter();
    const l = await start({}, r.protocol);
    const c = await connect(l.getPort()!);
    c.end(Buffer.concat([buildProxyHeader({ version: 2, command: 'local', tlvs: { raw: [] } }), Buffer.from('health')]));
    const { header, rest, client: real } = await r.seen;
    expect(header).toMatchObject({ command: 'local' });
    expect(rest).toBe('health');
    expect(real).toEqual({ family: 'IPv4', address: '127.0.0.1', port: c.localPort });
  });

  it('returns errors without closing the socket: the protocol decides', async () => {
    const l = await start({}, async (conn) => {
      const err = await recvProxyHeader(conn, 2000).catch((e: unknown) => e);
      const socket = await conn.handshake();
      socket.end(err instanceof ProxyHeaderError ? `bad header: ${err.reason}` : 'no error?');
    });
    const c = await client(l.getPort()!);
    c.socket.write('GET / HTTP/1.1\r\n\r\n');
    await c.closed;
    expect(c.text()).toBe('bad header: bad_signature');
    expect(l.info().metrics).toMatchObject({ proxyHeaderFailures: 1, protocolCrashes: 0 });
  });

  it('times out on a header that never completes, keeping the bytes read', async () => {
    const l = await start({}, async (conn) => {
      const err = await recvProxyHeader(conn, 30).catch((e: unknown) => e);
      const socket = await conn.handshake();
      const kept = socket.read() as Buffer | null;
      socket.end(`${(err as SocketError).reason}:${kept?.toString()}`);
    });
    const c = await client(l.getPort()!);
    c.socket.write('PROXY TCP4 1.2.3.4');
    await c.closed;
    expect(c.text()).toBe('timeout:PROXY TCP4 1.2.3.4');
  });

  it('must come before the handshake', async () => {
    const result = deferred<unknown>();
    const l = await start({}, async (conn) => {
      await conn.handshake();
      result.resolve(await conn.recvProxyHeader(100).catch((e: unknown) => e));
    });
    await client(l.getPort()!);
    expect(await result.promise).toBeInstanceOf(ListenerStateError);
  });
});

describe("the listener's proxyHeader option", () => {
  async function echoWithClient(conn: TcpConn): Promise<void> {
    const socket = await conn.handshake();
    const a = conn.clientAddress;
    socket.write(`${a?.family === 'local' ? a.path : `${a?.address}:${a?.port}`}|`);
    socket.pipe(socket);
    await closed(socket);
  }

  it("'required' reads the header in handshake and serves the real client address", async () => {
    const l = await start({ proxyHeader: 'required' }, echoWithClient);
    const c = await connect(l.getPort()!);
    c.end(Buffer.concat([v1, Buffer.from('payload')]));
    expect(await readAll(c)).toBe('192.0.2.10:40000|payload');
  });

  it("'required' closes a connection without a header, counts it and logs the peer", async () => {
    const warned: object[] = [];
    const logger = { error() {}, warn: (o: object) => warned.push(o), info() {}, debug() {} };
    const l = await start({ proxyHeader: 'required', logger }, echoWithClient);
    const c = await client(l.getPort()!);
    const port = c.socket.localPort;
    c.socket.write('hello there\r\n');
    await c.closed;
    expect(c.text()).toBe('');
    await expect.poll(() => l.info().metrics.terminated).toBe(1);
    expect(l.info().metrics).toMatchObject({ proxyHeaderFailures: 1, protocolCrashes: 0, handshakeFailures: 0 });
    expect(warned[0]).toMatchObject({ peer: `127.0.0.1:${port}` });
  });

  it("'required' gives the handshake error to a protocol that looks", async () => {
    const seen = deferred<unknown>();
    const l = await start({ proxyHeader: { mode: 'required', timeout: 20 } }, async (conn) => {
      await conn.handshake().catch((e: unknown) => seen.resolve(e));
    });
    await client(l.getPort()!);
    const err = await seen.promise;
    expect(err).toBeInstanceOf(HandshakeError);
    expect(err).toMatchObject({ reason: 'timeout' });
    expect((err as HandshakeError).cause).toBeInstanceOf(SocketError);
  });

  it("'optional' serves direct clients untouched and proxied ones with their real address", async () => {
    const l = await start({ proxyHeader: 'optional' }, echoWithClient);
    const direct = await connect(l.getPort()!);
    const port = direct.localPort;
    direct.end('POST /x');
    expect(await readAll(direct)).toBe(`127.0.0.1:${port}|POST /x`);
    const proxied = await connect(l.getPort()!);
    proxied.end(Buffer.concat([v2, Buffer.from('after v2')]));
    expect(await readAll(proxied)).toBe('2001:db8::7:51000|after v2');
  });

  it('accepts headers from trusted proxies only', async () => {
    const trusted = await start({ proxyHeader: { mode: 'required', trustedProxies: ['127.0.0.0/8', '::1'] } }, echoWithClient);
    const a = await connect(trusted.getPort()!);
    a.end(Buffer.concat([v1, Buffer.from('ok')]));
    expect(await readAll(a)).toBe('192.0.2.10:40000|ok');

    const strict = await start({ proxyHeader: { mode: 'required', trustedProxies: ['10.0.0.0/8'] } }, echoWithClient);
    const b = await client(strict.getPort()!);
    b.socket.write(Buffer.concat([v1, Buffer.from('spoofed')]));
    await b.closed;
    expect(b.text()).toBe('');
    await expect.poll(() => strict.info().metrics.proxyHeaderUntrusted).toBe(1);
  });

  it("untrusted: 'ignore' serves the connection as direct: a header it sends is just bytes", async () => {
    const l = await start({ proxyHeader: { mode: 'required', trustedProxies: ['10.1.2.3'], untrusted: 'ignore' } }, echoWithClient);
    const c = await connect(l.getPort()!);
    const port = c.localPort;
    c.end(Buffer.concat([v1, Buffer.from('x')]));
    expect(await readAll(c)).toBe(`127.0.0.1:${port}|${v1.toString('latin1')}x`);
    expect(l.info().metrics.proxyHeaderUntrusted).toBe(0);
  });

  it('is reported by getTransportOptions and survives setTransportOptions', async () => {
    const opt = { mode: 'optional' as const, trustedProxies: ['127.0.0.1'] };
    const l = await start({ proxyHeader: opt }, echoWithClient);
    expect(l.getTransportOptions().proxyHeader).toEqual(opt);
    l.setTransportOptions(l.getTransportOptions());
    expect(l.info().transportOptions.proxyHeader).toEqual(opt);
  });

  it.each([
    ['sometimes', 'proxyHeader'],
    [{ mode: 'required', trustedProxies: ['bogus'] }, 'proxyHeader.trustedProxies[0]'],
    [{ mode: 'required', trustedProxies: ['10.0.0.0/40'] }, 'proxyHeader.trustedProxies[0]'],
    [{ mode: 'required', trustedProxies: '10.0.0.0/8' }, 'proxyHeader.trustedProxies'],
    [{ mode: 'required', untrusted: 'drop' }, 'proxyHeader.untrusted'],
    [{ mode: 'required', timeout: -1 }, 'proxyHeader.timeout'],
    [{ mode: 'required', maxV1Length: 3 }, 'proxyHeader.maxV1Length'],
    [{ mode: 'required', trust: [] }, 'proxyHeader.trust'],
    [{}, 'proxyHeader.mode'],
  ])('rejects proxyHeader %j naming %s', async (value, option) => {
    const err = await startListener(ref(), tcp, { proxyHeader: value as never }, async () => {}, undefined).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BadOptionError);
    expect((err as BadOptionError).option).toBe(option);
  });

  it('UntrustedProxyError is a SocketError', () => {
    expect(new UntrustedProxyError('10.0.0.1')).toBeInstanceOf(SocketError);
  });
});
