import * as fs from 'node:fs';
import { getEventListeners, once } from 'node:events';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  BadArgumentError, BadOptionError, HandshakeError, ListenError, NotSupportedError, SocketError,
} from '../src/errors.js';
import { CLOSE_FLUSH_TIMEOUT_MS, PASSIVE_EVENT } from '../src/socket-ops.js';
import { tcp, type TcpSocketOptions } from '../src/tcp.js';
import type { AcceptHandler, ConnectOptions, ListenSocket, SocketAddress } from '../src/types.js';

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'corral-tcp-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  vi.useRealTimers();
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

function track(s: net.Socket): net.Socket {
  s.on('error', () => {});
  cleanups.push(() => s.destroy());
  return s;
}

/** A listen socket whose accepted sockets can be awaited one by one, and whose errors are collected. */
async function listen(opts: TcpSocketOptions = { host: '127.0.0.1' }): Promise<{
  ls: ListenSocket;
  accepted: () => Promise<net.Socket>;
  errors: Error[];
  handler: AcceptHandler;
}> {
  const queue: net.Socket[] = [];
  const waiters: ((s: net.Socket) => void)[] = [];
  const errors: Error[] = [];
  const handler: AcceptHandler = {
    onConnection(s) {
      track(s);
      const w = waiters.shift();
      if (w) w(s);
      else queue.push(s);
    },
    onError(err) {
      errors.push(err);
    },
  };
  const ls = await tcp.listen(tcp.normalizeOptions(opts), handler);
  cleanups.push(() => ls.close());
  const accepted = (): Promise<net.Socket> => {
    const s = queue.shift();
    return s ? Promise.resolve(s) : new Promise((resolve) => waiters.push(resolve));
  };
  return { ls, accepted, errors, handler };
}

function portOf(a: SocketAddress): number {
  if (a.family === 'local') throw new Error('not a TCP address');
  return a.port;
}

/** A connected loopback pair through the transport's own listen and connect. */
async function pair(opts?: TcpSocketOptions): Promise<{ server: net.Socket; client: net.Socket; ls: ListenSocket }> {
  const { ls, accepted } = await listen(opts);
  const client = track(await tcp.connect('127.0.0.1', portOf(ls.address())));
  return { server: await accepted(), client, ls };
}

/** Everything the (paused) socket receives until the peer closes. */
async function readToEnd(s: net.Socket): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for (;;) {
    try {
      chunks.push(await tcp.recv(s, 0, Infinity));
    } catch (err) {
      if (err instanceof SocketError && err.reason === 'closed') return Buffer.concat(chunks);
      throw err;
    }
  }
}

function sockPath(name: string): string {
  return path.join(dir, name);
}

/** A UNIX socket file nothing listens on: bind, move the file away from libuv's unlink, close. */
async function staleSocket(p: string): Promise<void> {
  const tmp = `${p}.live`;
  const server = net.createServer();
  server.listen(tmp);
  await once(server, 'listening');
  fs.renameSync(tmp, p);
  server.close();
  await once(server, 'close');
}

describe('tcp transport', () => {
  it('is named tcp and not secure', () => {
    expect(tcp.name).toBe('tcp');
    expect(tcp.secure).toBe(false);
  });

  describe('normalizeOptions', () => {
    it('fills in the defaults', () => {
      expect(tcp.normalizeOptions(undefined)).toEqual({
        port: 0, backlog: 1024, noDelay: true, keepAlive: false, keepAliveInitialDelay: 0, ipv6Only: false, reusePort: false,
      });
      expect(tcp.normalizeOptions({ port: 8080, host: '::1', noDelay: false, backlog: 5 })).toMatchObject({
        port: 8080, host: '::1', noDelay: false, backlog: 5,
      });
      expect(tcp.normalizeOptions({ path: '/tmp/x.sock', readableAll: true })).toEqual({
        path: '/tmp/x.sock', backlog: 1024, noDelay: true, keepAlive: false, keepAliveInitialDelay: 0, readableAll: true, writableAll: false,
      });
    });

    it('returns a fresh object and treats undefined values as absent', () => {
      const input = { port: 1, host: undefined };
      const out = tcp.normalizeOptions(input);
      expect(out).not.toBe(input);
      expect('host' in out).toBe(false);
      out.port = 2;
      expect(tcp.normalizeOptions(input).port).toBe(1);
    });

    it.each<[string, unknown, string]>([
      ['not an object', null, 'socketOpts'],
      ['a number', 5, 'socketOpts'],
      ['an array', [], 'socketOpts'],
      ['an unknown key', { bogus: 1 }, 'socketOpts.bogus'],
      ['an unknown key set to undefined', { bogus: undefined }, 'socketOpts.bogus'],
      ['a negative port', { port: -1 }, 'socketOpts.port'],
      ['a port too large', { port: 65536 }, 'socketOpts.port'],
      ['a fractional port', { port: 80.5 }, 'socketOpts.port'],
      ['a string port', { port: '80' }, 'socketOpts.port'],
      ['an empty host', { host: '' }, 'socketOpts.host'],
      ['a numeric host', { host: 127 }, 'socketOpts.host'],
      ['an empty path', { path: '' }, 'socketOpts.path'],
      ['a non-boolean ipv6Only', { ipv6Only: 'yes' }, 'socketOpts.ipv6Only'],
      ['a zero backlog', { backlog: 0 }, 'socketOpts.backlog'],
      ['a fractional backlog', { backlog: 1.5 }, 'socketOpts.backlog'],
      ['a non-boolean noDelay', { noDelay: 1 }, 'socketOpts.noDelay'],
      ['a non-boolean keepAlive', { keepAlive: 'true' }, 'socketOpts.keepAlive'],
      ['a negative keepAliveInitialDelay', { keepAliveInitialDelay: -1 }, 'socketOpts.keepAliveInitialDelay'],
      ['a non-boolean reusePort', { reusePort: 1 }, 'socketOpts.reusePort'],
      ['a non-boolean readableAll', { path: '/tmp/a', readableAll: 'x' }, 'socketOpts.readableAll'],
      ['a non-boolean writableAll', { path: '/tmp/a', writableAll: 0 }, 'socketOpts.writableAll'],
      ['path with port', { path: '/tmp/a', port: 80 }, 'socketOpts.port'],
      ['path with host', { path: '/tmp/a', host: 'localhost' }, 'socketOpts.host'],
      ['path with ipv6Only', { path: '/tmp/a', ipv6Only: true }, 'socketOpts.ipv6Only'],
      ['readableAll without path', { readableAll: true }, 'socketOpts.readableAll'],
      ['writableAll without path', { port: 1, writableAll: true }, 'socketOpts.writableAll'],
    ])('rejects %s', (_what, input, option) => {
      const err = (() => {
        try {
          tcp.normalizeOptions(input);
        } catch (e) {
          return e;
        }
        return undefined;
      })();
      expect(err).toBeInstanceOf(BadOptionError);
      expect(err).toMatchObject({ option, code: 'ERR_CORRAL_BAD_OPTION' });
    });
  });

  describe('listen', () => {
    it('listens on a random port and reports its address', async () => {
      const { ls, accepted } = await listen({ host: '127.0.0.1', port: 0 });
      const a = ls.address();
      expect(a).toMatchObject({ family: 'IPv4', address: '127.0.0.1' });
      expect(portOf(a)).toBeGreaterThan(0);
      expect(ls.server.listening).toBe(true);
      const client = track(await tcp.connect('127.0.0.1', portOf(a)));
      const server = await accepted();
      // Accepted sockets arrive paused.
      expect(server.readableFlowing).toBe(false);
      expect(tcp.sockname(server)).toEqual(tcp.peername(client));
      expect(tcp.peername(server)).toEqual(tcp.sockname(client));
    });

    it('fails with eaddrinuse on a port in use', async () => {
      const { ls } = await listen();
      const port = portOf(ls.address());
      const err = await tcp.listen(tcp.normalizeOptions({ host: '127.0.0.1', port }), { onConnection: () => {}, onError: () => {} })
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ListenError);
      expect(err).toMatchObject({ reason: 'eaddrinuse', address: `127.0.0.1:${port}`, code: 'ERR_CORRAL_LISTEN' });
    });

    it('closes the listen socket without waiting for its connections', async () => {
      const { ls, client, server } = await pair();
      const port = portOf(ls.address());
      await ls.close();
      expect(ls.server.listening).toBe(false);
      // The port is free again while the accepted connection lives on.
      const again = await listen({ host: '127.0.0.1', port });
      expect(portOf(again.ls.address())).toBe(port);
      await tcp.send(client, 'still here');
      expect((await tcp.recv(server, 10, Infinity)).toString()).toBe('still here');
      await ls.close();
    });

    it('reports errors after listening to the handler instead of throwing', async () => {
      const { ls, errors } = await listen();
      const err = new Error('EMFILE-like');
      ls.server.emit('error', err);
      expect(errors).toEqual([err]);
    });

    it('survives a handler that throws on a connection', async () => {
      const errors: Error[] = [];
      let accepted: net.Socket | undefined;
      const ls = await tcp.listen(tcp.normalizeOptions({ host: '127.0.0.1' }), {
        onConnection(s) {
          accepted = s;
          throw new Error('handler bug');
        },
        onError: (e) => errors.push(e),
      });
      cleanups.push(() => ls.close());
      const client = track(await tcp.connect('127.0.0.1', portOf(ls.address())));
      await expect(tcp.recv(client, 1, Infinity)).rejects.toBeInstanceOf(SocketError);
      expect(errors.map((e) => e.message)).toEqual(['handler bug']);
      expect(accepted?.destroyed).toBe(true);
    });

    it('applies noDelay and keepAlive to accepted sockets', async () => {
      const { server } = await pair({ host: '127.0.0.1', noDelay: false, keepAlive: true, keepAliveInitialDelay: 3000 });
      expect(tcp.getopts(server, ['noDelay', 'keepAlive', 'keepAliveInitialDelay'])).toEqual({
        noDelay: false, keepAlive: true, keepAliveInitialDelay: 3000,
      });
    });
  });

  describe('UNIX sockets', () => {
    it('listens on a path, reports local addresses, and leaves no file after close and cleanup', async () => {
      const p = sockPath('echo.sock');
      const opts = tcp.normalizeOptions({ path: p });
      const { ls, accepted } = await listen(opts);
      expect(ls.address()).toEqual({ family: 'local', path: p });
      expect(fs.statSync(p).isSocket()).toBe(true);
      const client = track(await tcp.connect('', 0, { path: p }));
      const server = await accepted();
      expect(tcp.sockname(server)).toEqual({ family: 'local', path: p });
      expect(tcp.peername(server)).toEqual({ family: 'local', path: '' });
      expect(tcp.peername(client)).toEqual({ family: 'local', path: p });
      expect(tcp.sockname(client)).toEqual({ family: 'local', path: '' });
      await tcp.send(client, 'ping');
      expect((await tcp.recv(server, 4, Infinity)).toString()).toBe('ping');
      await ls.close();
      await tcp.cleanup(opts);
      expect(fs.existsSync(p)).toBe(false);
    });

    it('replaces a stale socket file', async () => {
      const p = sockPath('stale.sock');
      await staleSocket(p);
      expect(fs.statSync(p).isSocket()).toBe(true);
      const { ls } = await listen({ path: p });
      const client = track(await tcp.connect('', 0, { path: p }));
      expect(client.destroyed).toBe(false);
      await ls.close();
    });

    it('cleanup removes a stale socket file', async () => {
      const p = sockPath('stale2.sock');
      await staleSocket(p);
      await tcp.cleanup(tcp.normalizeOptions({ path: p }));
      expect(fs.existsSync(p)).toBe(false);
      // Nothing there: still fine.
      await tcp.cleanup(tcp.normalizeOptions({ path: p }));
    });

    it('does not steal a live socket', async () => {
      const p = sockPath('live.sock');
      const other = net.createServer((s) => {
        // The listener's probe connects and leaves at once.
        s.on('error', () => {});
        s.end('other');
      });
      other.listen(p);
      await once(other, 'listening');
      cleanups.push(() => new Promise((resolve) => other.close(resolve)));
      const opts = tcp.normalizeOptions({ path: p });
      const err = await tcp.listen(opts, { onConnection: () => {}, onError: () => {} }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ListenError);
      expect(err).toMatchObject({ reason: 'eaddrinuse', address: p });
      await tcp.cleanup(opts);
      const client = track(await tcp.connect('', 0, { path: p }));
      expect((await tcp.recv(client, 5, Infinity)).toString()).toBe('other');
    });

    it('does not delete a file that is not a socket', async () => {
      const p = sockPath('precious.txt');
      fs.writeFileSync(p, 'keep me');
      const opts = tcp.normalizeOptions({ path: p });
      await expect(tcp.listen(opts, { onConnection: () => {}, onError: () => {} })).rejects.toMatchObject({
        name: 'ListenError', reason: 'eaddrinuse',
      });
      await tcp.cleanup(opts);
      expect(fs.readFileSync(p, 'utf8')).toBe('keep me');
    });

    it('applies readableAll and writableAll', async () => {
      const p = sockPath('perm.sock');
      await listen({ path: p, readableAll: true, writableAll: true });
      expect(fs.statSync(p).mode & 0o066).toBe(0o066);
    });
  });

  describe('handshake', () => {
    it('returns the accepted socket itself', async () => {
      const { server } = await pair();
      expect(await tcp.handshake(server, undefined, 5000, {})).toBe(server);
    });

    it('fails with a closed HandshakeError on a destroyed socket', async () => {
      const { server } = await pair();
      server.destroy();
      const err = await tcp.handshake(server, undefined, 5000, {}).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(HandshakeError);
      expect(err).toMatchObject({ reason: 'closed' });
    });

    it('does not support paused handshakes', async () => {
      const { server } = await pair();
      await expect(tcp.handshakeContinue(server, undefined, 5000, {})).rejects.toBeInstanceOf(NotSupportedError);
      await expect(tcp.handshakeCancel(server)).rejects.toBeInstanceOf(NotSupportedError);
    });
  });

  describe('connect', () => {
    it('returns a paused socket with noDelay and no listeners left', async () => {
      const { ls, accepted } = await listen();
      const ac = new AbortController();
      const client = track(await tcp.connect('127.0.0.1', portOf(ls.address()), { timeout: 5000, signal: ac.signal }));
      expect(client.readableFlowing).toBe(false);
      expect(tcp.getopts(client, ['noDelay', 'active'])).toEqual({ noDelay: true, active: false });
      expect(client.listenerCount('connect')).toBe(0);
      expect(client.listenerCount('error')).toBe(1); // the test's own
      expect(getEventListeners(ac.signal, 'abort')).toHaveLength(0);
      ac.abort();
      const server = await accepted();
      await tcp.send(server, 'hi');
      expect((await tcp.recv(client, 2, Infinity)).toString()).toBe('hi');
    });

    it('rejects with a SocketError when the port is closed', async () => {
      const { ls } = await listen();
      const port = portOf(ls.address());
      await ls.close();
      const err = await tcp.connect('127.0.0.1', port).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(SocketError);
      expect(err).toMatchObject({ reason: 'error', cause: { code: 'ECONNREFUSED' } });
    });

    it('rejects with a timeout when the deadline is 0', async () => {
      const { ls } = await listen();
      await expect(tcp.connect('127.0.0.1', portOf(ls.address()), { timeout: 0 })).rejects.toMatchObject({
        name: 'SocketError', reason: 'timeout',
      });
    });

    it('is cancelled by an AbortSignal, before or during the attempt', async () => {
      const { ls } = await listen();
      const port = portOf(ls.address());
      const reason = new Error('stop');
      await expect(tcp.connect('127.0.0.1', port, { signal: AbortSignal.abort(reason) })).rejects.toMatchObject({
        reason: 'cancelled', cause: reason,
      });
      const ac = new AbortController();
      const attempt = tcp.connect('127.0.0.1', port, { signal: ac.signal });
      ac.abort(reason);
      await expect(attempt).rejects.toMatchObject({ reason: 'cancelled', cause: reason });
      expect(getEventListeners(ac.signal, 'abort')).toHaveLength(0);
    });

    it('checks its arguments', async () => {
      for (const [host, port, opts] of [
        ['', 80, {}],
        ['127.0.0.1', 0, {}],
        ['127.0.0.1', 70000, {}],
        ['127.0.0.1', 80, { timeout: -1 }],
        ['127.0.0.1', 80, { signal: 'no' }],
      ] as [string, number, ConnectOptions][]) {
        await expect(tcp.connect(host, port, opts)).rejects.toBeInstanceOf(BadArgumentError);
      }
    });
  });

  describe('send', () => {
    it('resolves once written and the peer receives the bytes', async () => {
      const { server, client } = await pair();
      await tcp.send(server, 'hello ');
      await tcp.send(server, new Uint8Array([119, 111, 114, 108, 100]));
      expect((await tcp.recv(client, 11, Infinity)).toString()).toBe('hello world');
    });

    it('rejects with closed on a closed socket', async () => {
      const { server } = await pair();
      server.end();
      await expect(tcp.send(server, 'x')).rejects.toMatchObject({ name: 'SocketError', reason: 'closed' });
      server.destroy();
      await expect(tcp.send(server, 'x')).rejects.toMatchObject({ reason: 'closed' });
    });
  });

  describe('setopts and getopts', () => {
    it('reports the defaults of an accepted socket', async () => {
      const { server } = await pair();
      expect(tcp.getopts(server, ['active', 'noDelay', 'keepAlive', 'keepAliveInitialDelay', 'timeout'])).toEqual({
        active: false, noDelay: true, keepAlive: false, keepAliveInitialDelay: 0, timeout: 0,
      });
    });

    it('sets and reports noDelay, keepAlive and timeout', async () => {
      const { server } = await pair();
      tcp.setopts(server, { noDelay: false, keepAlive: true, keepAliveInitialDelay: 2000, timeout: 60_000 });
      expect(tcp.getopts(server, ['noDelay', 'keepAlive', 'keepAliveInitialDelay', 'timeout'])).toEqual({
        noDelay: false, keepAlive: true, keepAliveInitialDelay: 2000, timeout: 60_000,
      });
      tcp.setopts(server, { timeout: 0, keepAlive: false });
      expect(tcp.getopts(server, ['keepAlive', 'timeout'])).toEqual({ keepAlive: false, timeout: 0 });
    });

    it('switches between active and passive', async () => {
      const { server, client } = await pair();
      const chunks: Buffer[] = [];
      server.on('data', (c: Buffer) => chunks.push(c));
      tcp.setopts(server, { active: true });
      expect(tcp.getopts(server, ['active'])).toEqual({ active: true });
      await tcp.send(client, 'flowing');
      while (Buffer.concat(chunks).length < 7) await once(server, 'data');
      tcp.setopts(server, { active: false });
      expect(tcp.getopts(server, ['active'])).toEqual({ active: false });
      expect(server.readableFlowing).toBe(false);
      server.removeAllListeners('data');
      await tcp.send(client, 'passive');
      expect((await tcp.recv(server, 7, Infinity)).toString()).toBe('passive');
      expect(Buffer.concat(chunks).toString()).toBe('flowing');
    });

    it("delivers one chunk with active 'once', then pauses and emits passive", async () => {
      const { server, client } = await pair();
      const events: string[] = [];
      server.on(PASSIVE_EVENT, () => events.push('passive'));
      tcp.setopts(server, { active: 'once' });
      expect(tcp.getopts(server, ['active'])).toEqual({ active: 'once' });
      server.on('data', (c: Buffer) => events.push(c.toString()));
      const passive = once(server, PASSIVE_EVENT);
      await tcp.send(client, 'first');
      await passive;
      expect(events).toEqual(['first', 'passive']);
      expect(tcp.getopts(server, ['active'])).toEqual({ active: false });
      expect(server.listenerCount('data')).toBe(1);
      server.removeAllListeners('data');
      await tcp.send(client, 'second');
      expect((await tcp.recv(server, 6, Infinity)).toString()).toBe('second');
    });

    it('counts N chunks, adds to a running budget, then emits passive', async () => {
      const { server, client } = await pair();
      const got: string[] = [];
      let passives = 0;
      server.on(PASSIVE_EVENT, () => passives++);
      server.on('data', (c: Buffer) => got.push(c.toString()));
      tcp.setopts(server, { active: 2 });
      tcp.setopts(server, { active: 1 });
      expect(tcp.getopts(server, ['active'])).toEqual({ active: 3 });
      for (const word of ['a', 'b']) {
        const arrived = once(server, 'data');
        await tcp.send(client, word);
        await arrived;
      }
      expect(tcp.getopts(server, ['active'])).toEqual({ active: 1 });
      const passive = once(server, PASSIVE_EVENT);
      await tcp.send(client, 'c');
      await passive;
      expect(got).toEqual(['a', 'b', 'c']);
      expect(passives).toBe(1);
      server.removeAllListeners('data');
      await tcp.send(client, 'rest');
      expect((await tcp.recv(server, 4, Infinity)).toString()).toBe('rest');
    });

    it('lets a data listener re-arm once', async () => {
      const { server, client } = await pair();
      const got: string[] = [];
      server.on('data', (c: Buffer) => {
        got.push(c.toString());
        if (got.length < 3) tcp.setopts(server, { active: 'once' });
      });
      tcp.setopts(server, { active: 'once' });
      for (const word of ['x', 'y']) {
        const arrived = once(server, 'data');
        await tcp.send(client, word);
        await arrived;
      }
      const passive = once(server, PASSIVE_EVENT);
      await tcp.send(client, 'z');
      await passive;
      expect(got).toEqual(['x', 'y', 'z']);
      expect(server.readableFlowing).toBe(false);
    });

    it('turns passive at once for active 0 or a budget brought to 0', async () => {
      const { server } = await pair();
      let passives = 0;
      server.on(PASSIVE_EVENT, () => passives++);
      tcp.setopts(server, { active: 0 });
      await once(server, PASSIVE_EVENT);
      tcp.setopts(server, { active: 5 });
      tcp.setopts(server, { active: -10 });
      expect(tcp.getopts(server, ['active'])).toEqual({ active: false });
      expect(server.readableFlowing).toBe(false);
      await once(server, PASSIVE_EVENT);
      expect(passives).toBe(2);
    });

    it('rejects unknown keys and bad values without applying anything', async () => {
      const { server } = await pair();
      for (const opts of [
        { bogus: true },
        { active: 'twice' },
        { active: 1.5 },
        { active: 40000 },
        { noDelay: 'yes' },
        { keepAlive: 1 },
        { keepAliveInitialDelay: -5 },
        { timeout: -1 },
        { timeout: 1.5 },
        { noDelay: false, timeout: -1 },
      ]) {
        expect(() => tcp.setopts(server, opts as never)).toThrow(BadArgumentError);
      }
      expect(tcp.getopts(server, ['noDelay'])).toEqual({ noDelay: true });
      expect(() => tcp.getopts(server, ['bogus' as never])).toThrow(BadArgumentError);
    });
  });

  describe('getstat', () => {
    it('counts bytes read and written', async () => {
      const { server, client } = await pair();
      expect(tcp.getstat(server)).toEqual({ bytesRead: 0, bytesWritten: 0, bytesBuffered: 0 });
      await tcp.send(server, '12345');
      await tcp.send(client, 'abc');
      await tcp.recv(server, 3, Infinity);
      expect(tcp.getstat(server)).toEqual({ bytesRead: 3, bytesWritten: 5, bytesBuffered: 0 });
    });
  });

  describe('shutdown', () => {
    it("'write' sends FIN while the socket can still read", async () => {
      const { ls, accepted } = await listen();
      // A client that keeps writing after the server's FIN.
      const client = track(await tcp.connect('127.0.0.1', portOf(ls.address()), { allowHalfOpen: true }));
      const server = await accepted();
      await tcp.send(server, 'bye');
      tcp.shutdown(server, 'write');
      expect((await readToEnd(client)).toString()).toBe('bye');
      await tcp.send(client, 'reply');
      expect((await tcp.recv(server, 5, Infinity)).toString()).toBe('reply');
    });

    it("'readWrite' flushes, then closes", async () => {
      const { server, client } = await pair();
      server.write('last words');
      const closed = once(server, 'close');
      tcp.shutdown(server, 'readWrite');
      expect((await readToEnd(client)).toString()).toBe('last words');
      await closed;
    });

    it("'read' is not supported", async () => {
      const { server } = await pair();
      expect(() => tcp.shutdown(server, 'read')).toThrow(NotSupportedError);
      expect(() => tcp.shutdown(server, 'sideways' as never)).toThrow(BadArgumentError);
    });
  });

  describe('close', () => {
    it('flushes queued data before closing', async () => {
      const { server, client } = await pair();
      const size = 16 * 1024 * 1024;
      const data = Buffer.alloc(size, 'z');
      server.write(data);
      expect(tcp.getstat(server).bytesBuffered).toBeGreaterThan(0);
      const closing = tcp.close(server);
      expect(tcp.close(server)).toBe(closing);
      const received = await readToEnd(client);
      await closing;
      expect(server.destroyed).toBe(true);
      expect(received.length).toBe(size);
      // Closed already: resolves at once.
      await tcp.close(server);
    });

    it('resolves at once for a destroyed socket', async () => {
      const { server } = await pair();
      server.destroy();
      await tcp.close(server);
    });

    it('destroys the socket when a peer that never reads keeps the data from flushing', async () => {
      const { server } = await pair();
      server.write(Buffer.alloc(64 * 1024 * 1024));
      vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
      const closing = tcp.close(server);
      expect(server.destroyed).toBe(false);
      vi.advanceTimersByTime(CLOSE_FLUSH_TIMEOUT_MS);
      vi.useRealTimers();
      await closing;
      expect(server.destroyed).toBe(true);
    });
  });
});
