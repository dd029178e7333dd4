import * as net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import {
  BadArgumentError, BadOptionError, BadProtocolError, BadTransportError, ListenError, ListenerExistsError,
  ListenerNotFoundError, ListenerStateError, getAddr, getListener, getMaxConnections, getPort,
  getProtocolOptions, getStatus, getTransportOptions, info, procs, removeConnection, resumeListener,
  setMaxConnections, setProtocolOptions, setTransportOptions, startEmbeddedListener, startListener,
  stopListener, suspendListener, tcp, waitForConnections, type Connection, type Listener,
} from '../src/index.js';
import { client, closed, connectRefused, deferred, ref, roundTrip } from './helpers.js';

type TcpConn = Connection<net.Socket, undefined, never>;

const started: Listener<typeof tcp, unknown>[] = [];

async function start<PO>(
  opts: Parameters<typeof startListener<typeof tcp, PO>>[2],
  protocol: Parameters<typeof startListener<typeof tcp, PO>>[3],
  protocolOpts?: PO,
  name = ref(),
): Promise<Listener<typeof tcp, PO>> {
  const l = await startListener(name, tcp, { socketOpts: { host: '127.0.0.1' }, ...opts }, protocol, protocolOpts as PO);
  started.push(l as Listener<typeof tcp, unknown>);
  return l;
}

afterEach(async () => {
  await Promise.all(started.splice(0).map((l) => l.stop()));
});

/** Echo, ending the connection when the listener asks it to. */
async function echo(conn: TcpConn): Promise<void> {
  const socket = await conn.handshake();
  conn.signal.addEventListener('abort', () => socket.end());
  socket.pipe(socket);
  await closed(socket);
}

/** Connect and wait for the server to close the connection, whether or not the connect completed. */
function closedByServer(port: number): Promise<void> {
  const socket = net.connect(port, '127.0.0.1');
  socket.on('error', () => {});
  socket.resume();
  return closed(socket);
}

/** A protocol that reports each started connection and holds it until released. */
function gate() {
  const startedConns: TcpConn[] = [];
  const releases = new Map<TcpConn, () => void>();
  let onStart: ((c: TcpConn) => void) | undefined;
  const protocol = async (conn: TcpConn): Promise<void> => {
    const socket = await conn.handshake();
    const done = deferred();
    releases.set(conn, done.resolve);
    conn.signal.addEventListener('abort', () => done.resolve());
    startedConns.push(conn);
    socket.resume();
    onStart?.(conn);
    await Promise.race([done.promise, closed(socket)]);
  };
  return {
    protocol,
    started: startedConns,
    release: (c: TcpConn) => releases.get(c)?.(),
    nextStart: () => new Promise<TcpConn>((resolve) => { onStart = resolve; }),
  };
}

describe('start, introspection and stop', () => {
  it('serves connections and reports its address, port, status and info', async () => {
    const name = ref('echo');
    const l = await start({}, echo, { greeting: 'hi' }, name);
    const port = getPort(name)!;
    expect(port).toBeGreaterThan(0);
    expect(l.getPort()).toBe(port);
    expect(getAddr(name)).toEqual({ family: 'IPv4', address: '127.0.0.1', port });
    expect(getStatus(name)).toBe('running');
    expect(getListener(name)).toBe(l);
    const c = await client(port);
    expect(await roundTrip(c, 'hello')).toBe('hello');
    await l.waitForConnections('==', 1);
    const i = info(name);
    expect(i).toMatchObject({
      ref: name, embedded: false, status: 'running', port, pid: process.pid,
      maxConnections: 1024, activeConnections: 1, allConnections: 1, waitingConnections: 0,
      transport: 'tcp', protocol: 'echo', protocolOptions: { greeting: 'hi' },
    });
    expect(i.metrics).toMatchObject({ accepted: 1, started: 1, terminated: 0, protocolCrashes: 0 });
    expect(info().get(name)?.port).toBe(port);
    expect(procs(name, 'acceptors')).toEqual([process.pid]);
    expect(procs(name, 'connections')).toHaveLength(1);
    c.socket.end();
    await l.waitForConnections('==', 0);
    expect(info(name).metrics.terminated).toBe(1);
    await stopListener(name);
    expect(() => getPort(name)).toThrow(ListenerNotFoundError);
    expect(info().has(name)).toBe(false);
  });

  it('stop closes live connections and frees the ref for a new start', async () => {
    const name = ref('restart');
    for (let i = 0; i < 3; i++) {
      const l = await startListener(name, tcp, { socketOpts: { host: '127.0.0.1' } }, echo, undefined);
      const c = await client(l.getPort()!);
      expect(await roundTrip(c, `round ${i}`)).toBe(`round ${i}`);
      await stopListener(name);
      await c.closed;
      expect(l.stopped).toBe(true);
      expect(() => l.getPort()).toThrow(ListenerStateError);
    }
  });

  it('accepts a protocol object with start(), and symbols as refs', async () => {
    const name = Symbol('sym');
    const l = await startListener(name, tcp, { socketOpts: { host: '127.0.0.1' } }, { start: echo }, undefined);
    started.push(l as Listener<typeof tcp, unknown>);
    expect(info(name).protocol).toBe('echo');
    const c = await client(l.getPort()!);
    expect(await roundTrip(c, 'sym')).toBe('sym');
  });

  it('listens on a UNIX domain socket and removes the file on stop', async () => {
    const { mkdtemp } = await import('node:fs/promises');
    const { existsSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const dir = await mkdtemp(`${tmpdir()}/corral-`);
    const path = `${dir}/l.sock`;
    const l = await startListener(ref('unix'), tcp, { socketOpts: { path } }, echo, undefined);
    expect(l.getPort()).toBeUndefined();
    expect(l.getAddr()).toEqual({ family: 'local', path });
    const c = await client(path);
    expect(await roundTrip(c, 'over unix')).toBe('over unix');
    await l.stop();
    expect(existsSync(path)).toBe(false);
  });
});

describe('bad input to the API', () => {
  it('rejects a duplicate ref and leaves the first listener serving', async () => {
    const name = ref('dup');
    const l = await start({}, echo, undefined, name);
    await expect(startListener(name, tcp, {}, echo, undefined)).rejects.toBeInstanceOf(ListenerExistsError);
    const c = await client(l.getPort()!);
    expect(await roundTrip(c, 'still here')).toBe('still here');
  });

  it('rejects a port in use with a ListenError naming eaddrinuse and registers nothing', async () => {
    const l = await start({}, echo);
    const name = ref('inuse');
    const err = await startListener(name, tcp, { socketOpts: { host: '127.0.0.1', port: l.getPort()! } }, echo, undefined)
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ListenError);
    expect((err as ListenError).reason).toBe('eaddrinuse');
    expect(() => getStatus(name)).toThrow(ListenerNotFoundError);
    const c = await client(l.getPort()!);
    expect(await roundTrip(c, 'unharmed')).toBe('unharmed');
  });

  it('names the unknown ref on every operation', async () => {
    const name = ref('missing');
    for (const op of [
      () => getStatus(name), () => getPort(name), () => getAddr(name), () => info(name),
      () => procs(name, 'connections'), () => getMaxConnections(name), () => setMaxConnections(name, 1),
      () => getTransportOptions(name), () => setTransportOptions(name, {}), () => getProtocolOptions(name),
      () => setProtocolOptions(name, {}),
    ]) {
      expect(op).toThrow(ListenerNotFoundError);
    }
    await expect(stopListener(name)).rejects.toBeInstanceOf(ListenerNotFoundError);
    await expect(suspendListener(name)).rejects.toBeInstanceOf(ListenerNotFoundError);
    await expect(resumeListener(name)).rejects.toBeInstanceOf(ListenerNotFoundError);
    expect(() => getStatus(42 as unknown as string)).toThrow(BadArgumentError);
  });

  it.each([
    [{ maxConnections: -1 }, 'maxConnections'],
    [{ maxConnections: 1.5 }, 'maxConnections'],
    [{ handshakeTimeout: 'soon' }, 'handshakeTimeout'],
    [{ shutdown: 'later' }, 'shutdown'],
    [{ overflow: 'drop' }, 'overflow'],
    [{ maxWaiting: -5 }, 'maxWaiting'],
    [{ logger: console.log }, 'logger'],
    [{ postListenCallback: 3 }, 'postListenCallback'],
    [{ alarms: { a: { type: 'other', threshold: 1, callback: () => {} } } }, 'alarms.a.type'],
    [{ alarms: { a: { type: 'numConnections', threshold: -1, callback: () => {} } } }, 'alarms.a.threshold'],
    [{ alarms: { a: { type: 'numConnections', threshold: 1, callback: 1 } } }, 'alarms.a.callback'],
    [{ alarms: { a: { type: 'numConnections', threshold: 1, cooldown: -1, callback: () => {} } } }, 'alarms.a.cooldown'],
    [{ numAcceptorz: 3 }, 'numAcceptorz'],
    [{ socketOpts: { port: 70000 } }, 'socketOpts.port'],
    [{ socketOpts: { prot: 80 } }, 'socketOpts.prot'],
  ])('rejects invalid option %j naming %s', async (opts, option) => {
    const name = ref('badopt');
    const err = await startListener(name, tcp, opts as never, echo, undefined).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BadOptionError);
    expect((err as BadOptionError).option).toBe(option);
    expect(() => getStatus(name)).toThrow(ListenerNotFoundError);
  });

  it('rejects a bad transport and a bad protocol', async () => {
    await expect(startListener(ref(), {} as never, {}, echo, undefined)).rejects.toBeInstanceOf(BadTransportError);
    await expect(startListener(ref(), { ...tcp, listen: undefined } as never, {}, echo, undefined))
      .rejects.toThrow(/does not implement listen/);
    await expect(startListener(ref(), tcp, {}, 'echo' as never, undefined)).rejects.toBeInstanceOf(BadProtocolError);
  });

  it('rejects bad setMaxConnections values and keeps the old limit', async () => {
    const l = await start({ maxConnections: 5 }, echo);
    expect(() => l.setMaxConnections(-2)).toThrow(BadOptionError);
    expect(() => l.setTransportOptions({ shutdown: 'never' as never })).toThrow(BadOptionError);
    expect(l.getMaxConnections()).toBe(5);
    expect(l.getTransportOptions().shutdown).toBe(5000);
  });

  it('fails the start when postListenCallback throws, and calls it with the server otherwise', async () => {
    const name = ref('plc');
    await expect(startListener(name, tcp, { postListenCallback: () => { throw new Error('nope'); } }, echo, undefined))
      .rejects.toThrow('nope');
    expect(() => getStatus(name)).toThrow(ListenerNotFoundError);
    const servers: net.Server[] = [];
    const l = await start({ postListenCallback: (s) => { servers.push(s); } }, echo);
    expect(servers).toHaveLength(1);
    expect(servers[0]!.listening).toBe(true);
    await l.suspend();
    await l.resume();
    expect(servers).toHaveLength(2);
  });
});

describe('maxConnections and the waiting queue', () => {
  it('holds connections over the limit unstarted and starts them in arrival order', async () => {
    const g = gate();
    const l = await start({ maxConnections: 2 }, g.protocol);
    const port = l.getPort()!;
    const first = g.nextStart();
    await client(port);
    const a = await first;
    const second = g.nextStart();
    await client(port);
    const b = await second;
    const c3 = await client(port);
    const c4 = await client(port);
    c3.socket.write('third');
    await expect.poll(() => l.info().waitingConnections).toBe(2);
    expect(l.info()).toMatchObject({ activeConnections: 2, allConnections: 2, waitingConnections: 2 });
    expect(g.started).toHaveLength(2);

    const third = g.nextStart();
    g.release(a);
    const c = await third;
    // Arrival order: the connection of c3 starts first, and its bytes were kept.
    expect(c.rawSocket.remotePort).toBe(c3.socket.localPort);
    expect(l.info().waitingConnections).toBe(1);
    const fourth = g.nextStart();
    g.release(b);
    expect((await fourth).rawSocket.remotePort).toBe(c4.socket.localPort);
    expect(l.info()).toMatchObject({ activeConnections: 2, waitingConnections: 0 });
  });

  it('keeps the first bytes of a waiting connection for its protocol', async () => {
    const l = await start({ maxConnections: 1 }, echo);
    const port = l.getPort()!;
    const c1 = await client(port);
    await l.waitForConnections('==', 1);
    const c2 = await client(port);
    c2.socket.write('queued bytes');
    await expect.poll(() => l.info().waitingConnections).toBe(1);
    c1.socket.end();
    expect((await c2.read(12)).toString()).toBe('queued bytes');
  });

  it("closes connections over the limit at once with overflow 'reject'", async () => {
    const g = gate();
    const l = await start({ maxConnections: 1, overflow: 'reject' }, g.protocol);
    const s = g.nextStart();
    await client(l.getPort()!);
    await s;
    await closedByServer(l.getPort()!);
    expect(l.info().metrics.rejected).toBe(1);
    expect(l.info().waitingConnections).toBe(0);
    expect(g.started).toHaveLength(1);
  });

  it('resets connections beyond maxWaiting', async () => {
    const g = gate();
    const l = await start({ maxConnections: 1, maxWaiting: 1 }, g.protocol);
    const s = g.nextStart();
    await client(l.getPort()!);
    await s;
    await client(l.getPort()!);
    await expect.poll(() => l.info().waitingConnections).toBe(1);
    await closedByServer(l.getPort()!);
    expect(l.info()).toMatchObject({ waitingConnections: 1, metrics: { rejected: 1 } });
  });

  it('a waiting client that gives up frees its place in the queue', async () => {
    const g = gate();
    const l = await start({ maxConnections: 1, maxWaiting: 1 }, g.protocol);
    const s = g.nextStart();
    await client(l.getPort()!);
    await s;
    const quitter = await client(l.getPort()!);
    await expect.poll(() => l.info().waitingConnections).toBe(1);
    quitter.socket.destroy();
    await expect.poll(() => l.info().waitingConnections).toBe(0);
    const patient = await client(l.getPort()!);
    patient.socket.write('still wanted');
    await expect.poll(() => l.info().waitingConnections).toBe(1);
    expect(l.info().metrics.rejected).toBe(0);
    const next = g.nextStart();
    g.release(g.started[0]!);
    expect((await next).rawSocket.remotePort).toBe(patient.socket.localPort);
  });

  it('raising the limit admits waiting connections; lowering it closes none', async () => {
    const g = gate();
    const l = await start({ maxConnections: 1 }, g.protocol);
    const port = l.getPort()!;
    const clients = [];
    for (let i = 0; i < 4; i++) clients.push(await client(port));
    await expect.poll(() => l.info().waitingConnections).toBe(3);
    l.setMaxConnections(Infinity);
    await expect.poll(() => g.started.length).toBe(4);
    expect(l.getMaxConnections()).toBe(Infinity);
    l.setMaxConnections(1);
    expect(l.info()).toMatchObject({ activeConnections: 4, maxConnections: 1 });
    for (const c of clients) expect(c.ended).toBe(false);
    // Over the limit now: a new one waits until the count drops below 1.
    await client(port);
    await expect.poll(() => l.info().waitingConnections).toBe(1);
    for (const c of g.started.slice(0, 3)) g.release(c);
    await expect.poll(() => l.info().activeConnections).toBe(1);
    expect(l.info().waitingConnections).toBe(1);
    g.release(g.started[3]!);
    await expect.poll(() => g.started.length).toBe(5);
  });

  it('removeConnection frees a slot without closing the socket, once', async () => {
    let removeTwice = false;
    const l = await start({ maxConnections: 1 }, async (conn: TcpConn) => {
      const socket = await conn.handshake();
      removeConnection(conn);
      conn.removeConnection();
      removeTwice = conn.removed;
      conn.signal.addEventListener('abort', () => socket.end());
      socket.pipe(socket);
      await closed(socket);
    });
    const port = l.getPort()!;
    const a = await client(port);
    const b = await client(port);
    const c = await client(port);
    expect(await roundTrip(a, 'a')).toBe('a');
    expect(await roundTrip(b, 'b')).toBe('b');
    expect(await roundTrip(c, 'c')).toBe('c');
    expect(removeTwice).toBe(true);
    expect(l.info()).toMatchObject({ activeConnections: 0, allConnections: 3, waitingConnections: 0 });
    await l.stop();
    await Promise.all([a.closed, b.closed, c.closed]);
  });
});

describe('handshake and crashes', () => {
  it('times out a transport handshake that stalls and counts it', async () => {
    const stalling = { ...tcp, name: 'stalling', handshake: () => new Promise<never>(() => {}) };
    const failures: unknown[] = [];
    const l = await startListener(ref('stall'), stalling, { socketOpts: { host: '127.0.0.1' }, handshakeTimeout: 50 },
      async (conn) => {
        try {
          await conn.handshake();
        } catch (err) {
          failures.push(err);
          throw err;
        }
      }, undefined);
    started.push(l as never);
    const c = await client(l.getPort()!);
    await c.closed;
    await l.waitForConnections('==', 0);
    expect(failures).toHaveLength(1);
    expect(failures[0]).toMatchObject({ code: 'ERR_CORRAL_HANDSHAKE', reason: 'timeout', peer: { address: '127.0.0.1' } });
    expect(l.info().metrics).toMatchObject({ handshakeTimeouts: 1, handshakeFailures: 0, protocolCrashes: 0 });
  });

  it('counts a failing transport handshake, not as a crash', async () => {
    const failing = { ...tcp, name: 'failing', handshake: () => Promise.reject(new Error('bad hello')) };
    const l = await startListener(ref('fail'), failing, { socketOpts: { host: '127.0.0.1' } },
      async (conn) => { await conn.handshake(); }, undefined);
    started.push(l as never);
    const c = await client(l.getPort()!);
    await c.closed;
    await expect.poll(() => l.info().metrics.terminated).toBe(1);
    expect(l.info().metrics).toMatchObject({ handshakeFailures: 1, protocolCrashes: 0 });
  });

  it('a crashing protocol is logged, counted and closed; other connections go on', async () => {
    const logged: object[] = [];
    const logger = { error: (o: object) => logged.push(o), warn() {}, info() {}, debug() {} };
    const l = await start({ logger }, async (conn: TcpConn) => {
      const socket = await conn.handshake();
      conn.signal.addEventListener('abort', () => socket.end());
      socket.setEncoding('utf8');
      for await (const chunk of socket) {
        if (chunk === 'crash') throw new Error('boom');
        if (chunk === 'sync') socket.emit('crash-now');
        socket.write(chunk);
      }
    });
    const port = l.getPort()!;
    const healthy = await client(port);
    const doomed = await client(port);
    expect(await roundTrip(healthy, 'one')).toBe('one');
    const doomedPort = doomed.socket.localPort;
    doomed.socket.write('crash');
    await doomed.closed;
    expect(await roundTrip(healthy, 'two')).toBe('two');
    expect(l.info().metrics.protocolCrashes).toBe(1);
    expect(logged).toHaveLength(1);
    expect(logged[0]).toMatchObject({ peer: `127.0.0.1:${doomedPort}`, err: { message: 'boom' } });
  });

  it('a protocol that throws synchronously is a crash too', async () => {
    const l = await start({}, () => { throw new Error('sync boom'); });
    const c = await client(l.getPort()!);
    await c.closed;
    await expect.poll(() => l.info().metrics.protocolCrashes).toBe(1);
    expect(l.info().allConnections).toBe(0);
  });

  it('a callback-style protocol lives as long as its socket', async () => {
    const l = await start({}, (conn: TcpConn) => {
      void conn.handshake().then((socket) => socket.pipe(socket));
    });
    const c = await client(l.getPort()!);
    expect(await roundTrip(c, 'callbacks')).toBe('callbacks');
    expect(l.info().allConnections).toBe(1);
    c.socket.end();
    await l.waitForConnections('==', 0);
  });

  it('flushes what a protocol wrote before it returned', async () => {
    const big = Buffer.alloc(4 * 1024 * 1024, 'x');
    const l = await start({}, async (conn: TcpConn) => {
      const socket = await conn.handshake();
      socket.write(big);
    });
    const c = await client(l.getPort()!);
    c.socket.pause();
    await l.waitForConnections('==', 0);
    c.socket.resume();
    expect((await c.read(big.length)).length).toBe(big.length);
    await c.closed;
  });

  it('never reports a reset TCP peer as a UNIX socket', async () => {
    const peers = deferred<unknown>();
    const l = await start({}, async (conn: TcpConn) => {
      peers.resolve(conn.peer);
      await conn.handshake().catch(() => {});
    });
    const socket = net.connect({ host: '127.0.0.1', port: l.getPort()! }, () => socket.resetAndDestroy());
    socket.on('error', () => {});
    const peer = (await peers.promise) as { family: string } | undefined;
    if (peer !== undefined) expect(peer.family).toBe('IPv4');
  });

  it('rejects a second handshake and a continue without a paused handshake', async () => {
    const errors: unknown[] = [];
    const l = await start({}, async (conn: TcpConn) => {
      await conn.handshake();
      await conn.handshake().catch((e: unknown) => errors.push(e));
      await conn.handshakeContinue().catch((e: unknown) => errors.push(e));
      await conn.handshakeCancel().catch((e: unknown) => errors.push(e));
    });
    const c = await client(l.getPort()!);
    await c.closed;
    expect(errors).toHaveLength(3);
    for (const e of errors) expect(e).toBeInstanceOf(ListenerStateError);
  });
});

describe('suspend and resume', () => {
  it('refuses new connections while suspended and keeps live ones', async () => {
    const name = ref('suspend');
    const l = await start({}, echo, undefined, name);
    const port = l.getPort()!;
    const live = await client(port);
    expect(await roundTrip(live, 'before')).toBe('before');
    await suspendListener(name);
    await suspendListener(name);
    expect(getStatus(name)).toBe('suspended');
    expect(getPort(name)).toBeUndefined();
    expect(getAddr(name)).toBeUndefined();
    expect(procs(name, 'acceptors')).toEqual([]);
    expect(await connectRefused(port)).toBe('ECONNREFUSED');
    expect(await roundTrip(live, 'during')).toBe('during');
    // Socket options set while suspended apply at resume.
    setTransportOptions(name, { socketOpts: { host: '127.0.0.1', port } });
    await resumeListener(name);
    await resumeListener(name);
    expect(getStatus(name)).toBe('running');
    expect(getPort(name)).toBe(port);
    const fresh = await client(port);
    expect(await roundTrip(fresh, 'after')).toBe('after');
    expect(await roundTrip(live, 'still')).toBe('still');
  });

  it('applies new socket options at the next resume, not before', async () => {
    const l = await start({}, echo);
    const oldPort = l.getPort()!;
    const probe = await start({}, echo);
    const newPort = probe.getPort()!;
    await probe.stop();
    l.setTransportOptions({ socketOpts: { host: '127.0.0.1', port: newPort }, maxConnections: 7 });
    expect(l.getMaxConnections()).toBe(7);
    expect(l.getPort()).toBe(oldPort);
    expect(l.getTransportOptions().socketOpts).toMatchObject({ port: newPort });
    await l.suspend();
    await l.resume();
    expect(l.getPort()).toBe(newPort);
  });

  it('drains: suspend, wait for zero connections, stop', async () => {
    const name = ref('drain');
    const l = await start({}, echo, undefined, name);
    const c = await client(l.getPort()!);
    await l.waitForConnections('==', 1);
    await suspendListener(name);
    const drained = waitForConnections(name, '==', 0);
    c.socket.end();
    await drained;
    await stopListener(name);
  });
});

describe('shutdown modes', () => {
  /** A protocol that ignores the shutdown request. */
  async function stubborn(conn: TcpConn): Promise<void> {
    const socket = await conn.handshake();
    socket.resume();
    await new Promise(() => {});
  }

  it("'brutal_kill' destroys connections at once", async () => {
    const l = await start({ shutdown: 'brutal_kill' }, stubborn);
    const c = await client(l.getPort()!);
    await l.waitForConnections('==', 1);
    await l.stop();
    await c.closed;
    expect(l.stopped).toBe(true);
  });

  it('a timeout gives protocols that long, then destroys them', async () => {
    const l = await start({ shutdown: 30 }, stubborn);
    const c = await client(l.getPort()!);
    await l.waitForConnections('==', 1);
    await l.stop();
    await c.closed;
  });

  it('Infinity waits for protocols that finish on the shutdown signal', async () => {
    const l = await start({ shutdown: Infinity }, async (conn: TcpConn) => {
      const socket = await conn.handshake();
      socket.resume();
      await new Promise((resolve) => conn.signal.addEventListener('abort', resolve));
      socket.end('goodbye');
    });
    const c = await client(l.getPort()!);
    await l.waitForConnections('==', 1);
    await l.stop();
    await c.closed;
    expect(c.text()).toBe('goodbye');
    expect(() => l.info()).toThrow(ListenerStateError);
  });

  it('onShutdown tells a callback-style protocol, with its argument, once; a late one is told at once', async () => {
    const told: [string, unknown][] = [];
    let conns: TcpConn[] = [];
    const record = (socket: net.Socket, reason: unknown): void => {
      told.push(['socket', reason]);
      socket.end('bye');
    };
    const l = await start({ shutdown: Infinity }, (conn: TcpConn) => {
      conns.push(conn);
      void conn.handshake().then((socket) => {
        socket.resume();
        // Replaced by the second registration; undefined would remove it.
        conn.onShutdown(() => told.push(['replaced', undefined]), undefined);
        conn.onShutdown(record, socket);
      });
    });
    const a = await client(l.getPort()!);
    const b = await client(l.getPort()!);
    await l.waitForConnections('==', 2);
    await l.stop();
    await Promise.all([a.closed, b.closed]);
    expect([a.text(), b.text()]).toEqual(['bye', 'bye']);
    expect(told.map(([what, reason]) => `${what} ${(reason as Error).name}`)).toEqual(['socket ShutdownRequest', 'socket ShutdownRequest']);
    expect(conns.every((c) => c.signal.aborted)).toBe(true);
    // Registered after the listener asked: called at once.
    const late: unknown[] = [];
    conns[0]!.onShutdown((arg: string, reason) => late.push(arg, (reason as Error).name), 'late');
    expect(late).toEqual(['late', 'ShutdownRequest']);
    conns = [];
  });

  it('a protocol that rejects with the abort reason has not crashed', async () => {
    const logged: object[] = [];
    const logger = { error: (o: object) => logged.push(o), warn() {}, info() {}, debug() {} };
    const l = await start({ logger }, async (conn: TcpConn) => {
      await conn.handshake();
      await new Promise((_, reject) => conn.signal.addEventListener('abort', () => reject(conn.signal.reason)));
    });
    await client(l.getPort()!);
    await l.waitForConnections('==', 1);
    const metrics = l.info().metrics;
    await l.stop();
    expect(metrics.protocolCrashes).toBe(0);
    expect(logged).toEqual([]);
  });

  it('answers info() while stopping, as not accepting, and refuses to resume', async () => {
    const name = ref('stopping');
    const l = await start({ shutdown: Infinity }, async (conn: TcpConn) => {
      const socket = await conn.handshake();
      socket.resume();
      await new Promise((resolve) => conn.signal.addEventListener('abort', resolve));
      await new Promise((resolve) => setImmediate(resolve));
      socket.end();
    }, undefined, name);
    await client(l.getPort()!);
    await l.waitForConnections('==', 1);
    const stopping = l.stop();
    expect(info(name)).toMatchObject({ status: 'suspended', allConnections: 1 });
    expect(info().get(name)?.status).toBe('suspended');
    expect(getStatus(name)).toBe('suspended');
    await expect(l.resume()).rejects.toBeInstanceOf(ListenerStateError);
    await stopping;
    expect(() => info(name)).toThrow(ListenerNotFoundError);
  });

  it('stop resets waiting connections and is idempotent', async () => {
    const g = gate();
    const l = await start({ maxConnections: 1, shutdown: 'brutal_kill' }, g.protocol);
    const a = await client(l.getPort()!);
    const b = await client(l.getPort()!);
    await expect.poll(() => l.info().waitingConnections).toBe(1);
    await Promise.all([l.stop(), l.stop()]);
    await Promise.all([a.closed, b.closed]);
    expect(g.started).toHaveLength(1);
  });
});

describe('options at runtime', () => {
  it('new protocol options reach new connections only', async () => {
    const seen: unknown[] = [];
    const name = ref('proto-opts');
    const l = await start({}, async (conn: TcpConn, _t, opts: { v: number }) => {
      seen.push(opts.v);
      await echo(conn);
    }, { v: 1 }, name);
    const a = await client(l.getPort()!);
    await roundTrip(a, 'x');
    setProtocolOptions(name, { v: 2 });
    expect(getProtocolOptions(name)).toEqual({ v: 2 });
    const b = await client(l.getPort()!);
    await roundTrip(b, 'y');
    expect(seen).toEqual([1, 2]);
  });

  it('a new handshakeTimeout applies to the next handshakes', async () => {
    const stalling = { ...tcp, name: 'stalling', handshake: () => new Promise<never>(() => {}) };
    const l = await startListener(ref('hs'), stalling, { socketOpts: { host: '127.0.0.1' }, handshakeTimeout: Infinity, shutdown: 'brutal_kill' },
      async (conn) => { await conn.handshake(); }, undefined);
    started.push(l as never);
    const stuck = await client(l.getPort()!);
    await l.waitForConnections('==', 1);
    l.setTransportOptions({ ...l.getTransportOptions(), handshakeTimeout: 20 });
    const c = await client(l.getPort()!);
    await c.closed;
    expect(stuck.ended).toBe(false);
    expect(l.info().metrics.handshakeTimeouts).toBe(1);
  });
});

describe('alarms', () => {
  it('fires on every new connection over the threshold with cooldown 0', async () => {
    const calls: [unknown, string, number][] = [];
    const name = ref('alarm0');
    const l = await start({
      alarms: { busy: { type: 'numConnections', threshold: 2, cooldown: 0, callback: (r, n, conns) => calls.push([r, n, conns.length]) } },
    }, echo, undefined, name);
    for (let i = 0; i < 4; i++) {
      const c = await client(l.getPort()!);
      await roundTrip(c, 'x');
    }
    expect(calls).toEqual([[name, 'busy', 2], [name, 'busy', 3], [name, 'busy', 4]]);
  });

  it('waits out the cooldown, then fires again while still over the threshold', async () => {
    const fired = [deferred<number>(), deferred<number>()];
    let n = 0;
    const l = await start({
      alarms: { busy: { type: 'numConnections', threshold: 1, cooldown: 20, callback: (_r, _n, conns) => fired[n++]?.resolve(conns.length) } },
    }, echo);
    const a = await client(l.getPort()!);
    await roundTrip(a, 'x');
    expect(await fired[0]!.promise).toBe(1);
    const b = await client(l.getPort()!);
    await roundTrip(b, 'y');
    // The second call comes from the cooldown timer re-checking, with both connections active.
    expect(await fired[1]!.promise).toBe(2);
  });

  it('logs a throwing alarm callback and keeps serving', async () => {
    const logged: object[] = [];
    const logger = { error: (o: object) => logged.push(o), warn() {}, info() {}, debug() {} };
    const l = await start({
      logger,
      alarms: { bad: { type: 'numConnections', threshold: 0, cooldown: 0, callback: () => { throw new Error('alarm bug'); } } },
    }, echo);
    const c = await client(l.getPort()!);
    expect(await roundTrip(c, 'fine')).toBe('fine');
    expect(logged).toMatchObject([{ alarm: 'bad', err: { message: 'alarm bug' } }]);
  });
});

describe('waitForConnections', () => {
  it('supports every operator and rejects bad arguments', async () => {
    const name = ref('wfc');
    const l = await start({}, echo, undefined, name);
    await waitForConnections(name, '==', 0);
    await waitForConnections(name, '<', 1);
    await waitForConnections(name, '<=', 0);
    await waitForConnections(name, '=<', 0);
    const more = waitForConnections(name, '>', 1);
    const atLeast = waitForConnections(name, '>=', 2);
    const a = await client(l.getPort()!);
    const b = await client(l.getPort()!);
    await Promise.all([more, atLeast]);
    const fewer = l.waitForConnections('<', 2);
    a.socket.end();
    await fewer;
    b.socket.end();
    await l.waitForConnections('==', 0);
    expect(() => l.waitForConnections('!=' as never, 1)).toThrow(BadArgumentError);
    expect(() => l.waitForConnections('==', -1)).toThrow(BadArgumentError);
    expect(() => l.waitForConnections('==', 1.5)).toThrow(BadArgumentError);
    expect(() => l.waitForConnections('<', 0)).toThrow(BadArgumentError);
  });

  it('is cancelled by its signal, and an unknown listener counts 0', async () => {
    const l = await start({}, echo);
    const ac = new AbortController();
    const waiting = l.waitForConnections('>', 5, { signal: ac.signal });
    ac.abort(new Error('gave up'));
    await expect(waiting).rejects.toThrow('gave up');
    await waitForConnections(ref('nobody'), '==', 0);
    await expect(waitForConnections(ref('nobody'), '>', 0)).rejects.toBeInstanceOf(ListenerNotFoundError);
  });

  it('resolves waiters counting down to zero when the listener stops', async () => {
    const l = await start({ shutdown: 'brutal_kill' }, echo);
    await client(l.getPort()!);
    await l.waitForConnections('==', 1);
    const zero = l.waitForConnections('==', 0);
    await l.stop();
    await zero;
  });
});

describe('embedded listeners', () => {
  it('are not registered and stop when their signal aborts', async () => {
    const ac = new AbortController();
    const l = await startEmbeddedListener(tcp, { socketOpts: { host: '127.0.0.1' } }, echo, undefined, { signal: ac.signal, ref: 'emb' });
    expect(l.embedded).toBe(true);
    expect(info().has('emb')).toBe(false);
    expect(() => getStatus('emb')).toThrow(ListenerNotFoundError);
    const c = await client(l.getPort()!);
    expect(await roundTrip(c, 'embedded')).toBe('embedded');
    expect(l.info()).toMatchObject({ ref: 'emb', embedded: true, activeConnections: 1 });
    ac.abort();
    await c.closed;
    await l.stop();
    expect(l.stopped).toBe(true);
  });

  it('refuses to start on an aborted signal', async () => {
    const ac = new AbortController();
    ac.abort(new Error('already'));
    await expect(startEmbeddedListener(tcp, {}, echo, undefined, { signal: ac.signal })).rejects.toThrow('already');
  });
});
