/**
 * A pool of acceptor worker processes (`numAcceptors` > 1): real worker processes on real
 * sockets. Workers load the protocol fixtures under fixtures/protocols/, which report the
 * process serving each connection.
 */

import { readFileSync, readdirSync } from 'node:fs';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import {
  BadOptionError, BadProtocolError, BadTransportError, ListenError, ListenerNotFoundError, ListenerStateError,
  NotSupportedError, RestartIntensityError, getStatus, info, procs, restartAcceptors, startListener,
  tcp, tls as tlsTransport, type Listener, type ListenerOptions, type ModuleSpecifier, type SocketAddress,
} from '../src/index.js';
import { relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { defaultWorkerExecArgv } from '../src/exec-argv.js';
import { supportsReusePort } from '../src/listen-handle.js';
import { RestartLimiter } from '../src/restart-intensity.js';
import { connectRefused, deferred, ref } from './helpers.js';

const ECHO = new URL('./fixtures/protocols/echo.ts', import.meta.url);
const REQUEST_REPLY = new URL('./fixtures/protocols/request-reply.ts', import.meta.url);
const NO_START = new URL('./fixtures/protocols/no-start.ts', import.meta.url);
const BANNER = new URL('./fixtures/transports/banner.ts', import.meta.url);
const TLS_DIR = new URL('./fixtures/tls/', import.meta.url);

/** Starting worker processes takes a while on a busy machine: every test here gets a minute and a half. */
const SLOW = { timeout: 90_000 };

const started: Listener<never, unknown>[] = [];

async function start(opts: ListenerOptions, protocol: ModuleSpecifier = ECHO, protocolOpts: unknown = undefined, name = ref('pool'), transport: unknown = tcp): Promise<Listener> {
  const l = await startListener(name, transport as typeof tcp, { socketOpts: { host: '127.0.0.1' }, numAcceptors: 2, ...opts }, protocol, protocolOpts);
  started.push(l as unknown as Listener<never, unknown>);
  return l as unknown as Listener;
}

afterEach(async () => {
  await Promise.all(started.splice(0).map((l) => l.stop()));
});

/** This process's child processes (Linux). */
function children(): number[] {
  const tasks = readdirSync(`/proc/${process.pid}/task`);
  return tasks.flatMap((t) => readFileSync(`/proc/${process.pid}/task/${t}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number));
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

afterAll(() => {
  expect(children()).toEqual([]);
});

interface Greeting {
  pid: number;
  opts: unknown;
  client: SocketAddress | null;
}

/** A client of the echo fixture: reads lines. */
class LineClient {
  readonly socket: net.Socket | tls.TLSSocket;
  #buffer = '';
  #waiters: ((line: string) => void)[] = [];
  readonly closed: Promise<void>;

  constructor(socket: net.Socket | tls.TLSSocket) {
    this.socket = socket;
    socket.setEncoding('utf8');
    socket.on('error', () => {});
    socket.on('data', (chunk: string) => {
      this.#buffer += chunk;
      let end: number;
      while (this.#waiters.length > 0 && (end = this.#buffer.indexOf('\n')) !== -1) {
        const line = this.#buffer.slice(0, end);
        this.#buffer = this.#buffer.slice(end + 1);
        this.#waiters.shift()!(line);
      }
    });
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
  }

  line(): Promise<string> {
    return new Promise((resolve, reject) => {
      const end = this.#buffer.indexOf('\n');
      if (end !== -1) {
        const line = this.#buffer.slice(0, end);
        this.#buffer = this.#buffer.slice(end + 1);
        resolve(line);
        return;
      }
      if (this.socket.closed) {
        reject(new Error('closed'));
        return;
      }
      this.#waiters.push(resolve);
      void this.closed.then(() => reject(new Error('closed before a line')));
    });
  }

  async echo(text: string): Promise<string> {
    this.socket.write(`${text}\n`);
    return this.line();
  }
}

/** Connect to the echo fixture and read its greeting. */
async function greet(port: number, before?: (socket: net.Socket) => void): Promise<{ client: LineClient; greeting: Greeting }> {
  const socket = net.connect(port, '127.0.0.1');
  before?.(socket);
  const client = new LineClient(socket);
  const greeting = JSON.parse(await client.line()) as Greeting;
  return { client, greeting };
}

/** Open connections (kept open) until two distinct workers served them; bounded. */
async function spread(port: number, max = 100): Promise<Map<number, LineClient[]>> {
  const byPid = new Map<number, LineClient[]>();
  for (let i = 0; i < max && byPid.size < 2; i++) {
    const { client, greeting } = await greet(port);
    byPid.set(greeting.pid, [...(byPid.get(greeting.pid) ?? []), client]);
  }
  return byPid;
}

/** One request to the request-reply fixture: `<pid> <text>`. */
function request(port: number, text: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let reply = '';
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => { reply += d; });
    socket.on('error', reject);
    socket.on('close', () => {
      const m = /^(\d+) (.*)\n$/.exec(reply);
      if (m === null || m[2] !== text) reject(new Error(`request ${text}: got ${JSON.stringify(reply)}`));
      else resolve(Number(m[1]));
    });
    socket.write(`${text}\n`);
  });
}

describe('a pool of acceptor worker processes', SLOW, () => {
  it('spreads connections over worker processes, aggregates info(), and leaves no process on stop', async () => {
    const name = ref('spread');
    const l = await start({ maxConnections: 1000 }, ECHO, { room: 'lobby' }, name);
    const port = l.getPort()!;
    const pids = procs(name, 'acceptors');
    expect(pids).toHaveLength(2);
    expect(pids).not.toContain(process.pid);
    expect(children().sort()).toEqual([...pids].sort());

    const byPid = await spread(port);
    expect([...byPid.keys()].sort()).toEqual([...pids].sort());
    const clients = [...byPid.values()].flat();
    const first = clients[0]!;
    expect(await first.echo('hello')).toBe('hello');

    await l.waitForConnections('==', clients.length);
    const i = info(name);
    expect(i).toMatchObject({
      numAcceptors: 2, status: 'running', port, pid: process.pid, maxConnections: 1000,
      allConnections: clients.length, activeConnections: clients.length, waitingConnections: 0,
      protocol: 'echo', protocolOptions: { room: 'lobby' }, transport: 'tcp', restarts: 0,
    });
    expect(i.metrics).toMatchObject({ accepted: clients.length, started: clients.length, terminated: 0 });
    expect(i.transportOptions).toMatchObject({ numAcceptors: 2, numListenSockets: 1, restartIntensity: { maxRestarts: 5, periodMs: 10_000 } });
    const workers = i.workers!;
    expect(workers.map((w) => w.pid).sort()).toEqual([...pids].sort());
    for (const w of workers) {
      expect(w).toMatchObject({ status: 'listening', maxConnections: 500, allConnections: byPid.get(w.pid)!.length });
    }
    expect(workers.reduce((n, w) => n + w.metrics.accepted, 0)).toBe(clients.length);
    expect(() => procs(name, 'connections')).toThrow(NotSupportedError);

    await l.stop();
    await Promise.all(clients.map((c) => c.closed));
    for (const pid of pids) expect(alive(pid)).toBe(false);
    expect(children()).toEqual([]);
    expect(() => getStatus(name)).toThrow(ListenerNotFoundError);
    expect(await connectRefused(port)).toBe('ECONNREFUSED');
  });

  it('restarts a killed worker, logs it, and leaves the other workers\' connections alone', async () => {
    const logged: { msg: string | undefined; [k: string]: unknown }[] = [];
    const record = (o: object, msg?: string) => { logged.push({ ...o, msg }); };
    const logger = { error: record, warn: record, info: record, debug: record };
    const name = ref('kill');
    const l = await start({ logger }, ECHO, undefined, name);
    const port = l.getPort()!;
    const [a, b] = procs(name, 'acceptors') as [number, number];
    const byPid = await spread(port);
    const survivor = byPid.get(a)![0]!;
    const doomed = byPid.get(b)![0]!;

    process.kill(b, 'SIGKILL');
    await doomed.closed;
    expect(await survivor.echo('still here')).toBe('still here');
    // The exit is noticed, and a replacement listens in its place.
    await expect.poll(() => procs(name, 'acceptors').filter((p) => p !== b).length, { timeout: 60_000 }).toBe(2);
    const now = procs(name, 'acceptors');
    expect(now).toContain(a);
    expect(now).not.toContain(b);
    expect(alive(b)).toBe(false);
    expect(info(name).restarts).toBe(1);
    expect(logged).toContainEqual(expect.objectContaining({ msg: 'acceptor worker exited', worker: b, signal: 'SIGKILL', listener: name }));
    expect(logged).toContainEqual(expect.objectContaining({ msg: 'acceptor worker restarted', worker: now.find((p) => p !== a) }));

    // The listener kept serving; the new worker serves too.
    const seen = await spread(port);
    expect([...seen.keys()].sort()).toEqual([...now].sort());
    expect(await survivor.echo('and still')).toBe('and still');
    expect(getStatus(name)).toBe('running');
  });

  it('stops the listener with RestartIntensityError past its restart intensity', async () => {
    const name = ref('intensity');
    const l = await start({ restartIntensity: { maxRestarts: 1, periodMs: 600_000 }, shutdown: 'brutal_kill' }, ECHO, undefined, name);
    const port = l.getPort()!;
    const [a, b] = procs(name, 'acceptors') as [number, number];
    const { client } = await greet(port);

    process.kill(a, 'SIGKILL');
    await expect.poll(() => procs(name, 'acceptors').filter((p) => p !== a).length, { timeout: 60_000 }).toBe(2);
    const replacement = procs(name, 'acceptors').find((p) => p !== b)!;
    process.kill(replacement, 'SIGKILL');

    const reason = await l.terminated;
    expect(reason).toBeInstanceOf(RestartIntensityError);
    expect(reason).toMatchObject({ code: 'ERR_CORRAL_RESTART_INTENSITY', maxRestarts: 1, periodMs: 600_000, lastExit: { pid: replacement, signal: 'SIGKILL' } });
    expect(l.stopped).toBe(true);
    expect(() => getStatus(name)).toThrow(ListenerNotFoundError);
    let stateError: unknown;
    try {
      l.getPort();
    } catch (err) {
      stateError = err;
    }
    expect(stateError).toBeInstanceOf(ListenerStateError);
    expect((stateError as Error).cause).toBe(reason);
    await client.closed;
    for (const pid of [a, b, replacement]) expect(alive(pid)).toBe(false);
    expect(children()).toEqual([]);
    expect(await connectRefused(port)).toBe('ECONNREFUSED');
  });

  it('restartAcceptors replaces every worker under steady load and loses no accepted connection', async () => {
    const name = ref('rolling');
    const l = await start({ shutdown: 20_000 }, REQUEST_REPLY, undefined, name);
    const port = l.getPort()!;
    const before = procs(name, 'acceptors');

    const failures: unknown[] = [];
    const servedBy = new Set<number>();
    let done = 0;
    let stop = false;
    const milestones: { n: number; resolve: () => void }[] = [];
    const reached = (n: number): Promise<void> => new Promise((resolve) => {
      if (done >= n) resolve();
      else milestones.push({ n, resolve });
    });
    const loop = async (id: number): Promise<void> => {
      // Bounded: at most 3000 requests per loop.
      for (let i = 0; i < 3000 && !stop; i++) {
        try {
          servedBy.add(await request(port, `${id}-${i}`));
        } catch (err) {
          failures.push(err);
        }
        done++;
        for (const m of milestones.filter((x) => done >= x.n)) {
          milestones.splice(milestones.indexOf(m), 1);
          m.resolve();
        }
      }
    };
    const loops = [1, 2, 3].map(loop);

    await reached(30);
    await restartAcceptors(name);
    const after = procs(name, 'acceptors');
    await reached(done + 30);
    stop = true;
    await Promise.all(loops);

    expect(failures).toEqual([]);
    expect(after).toHaveLength(2);
    for (const pid of after) expect(before).not.toContain(pid);
    for (const pid of before) expect(alive(pid)).toBe(false);
    expect([...servedBy].some((p) => after.includes(p))).toBe(true);
    expect(l.getPort()).toBe(port);
    expect(info(name).restarts).toBe(0);
  });

  it('suspends, resumes, and applies limits and options in every worker', async () => {
    const name = ref('ops');
    const l = await start({ maxConnections: 0 }, ECHO, { v: 1 }, name);
    const port = l.getPort()!;
    expect(info(name).workers!.map((w) => w.maxConnections)).toEqual([0, 0]);

    // With a limit of 0 every connection waits, in whichever worker accepted it.
    const sockets = [1, 2, 3, 4].map(() => net.connect(port, '127.0.0.1'));
    const clients = sockets.map((s) => new LineClient(s));
    await expect.poll(() => info(name).waitingConnections, { timeout: 30_000 }).toBe(4);
    l.setMaxConnections(3);
    expect(l.getMaxConnections()).toBe(3);
    // ceil(3 / 2) per worker: the limit is per worker, as Ranch's is per connection supervisor.
    expect(info(name).workers!.map((w) => w.maxConnections)).toEqual([2, 2]);
    l.setMaxConnections(Infinity);
    await l.waitForConnections('==', 4);
    const greetings = await Promise.all(clients.map(async (c) => JSON.parse(await c.line()) as Greeting));
    for (const g of greetings) expect(g.opts).toEqual({ v: 1 });

    l.setProtocolOptions({ v: 2 });
    // The options reach each worker over its IPC channel, moments later.
    await expect.poll(async () => {
      const { client, greeting } = await greet(port);
      client.socket.destroy();
      return greeting.opts;
    }, { timeout: 30_000 }).toEqual({ v: 2 });

    await l.suspend();
    expect(l.getStatus()).toBe('suspended');
    expect(procs(name, 'acceptors')).toEqual([]);
    expect(l.getPort()).toBeUndefined();
    expect(await connectRefused(port)).toBe('ECONNREFUSED');
    expect(info(name).workers!.map((w) => w.status)).toEqual(['idle', 'idle']);
    expect(await clients[0]!.echo('while suspended')).toBe('while suspended');

    l.setTransportOptions({ ...l.getTransportOptions(), socketOpts: { host: '127.0.0.1', port }, handshakeTimeout: 1000 });
    expect(() => l.setTransportOptions({ ...l.getTransportOptions(), numAcceptors: 1 })).toThrow(BadOptionError);
    await l.resume();
    expect(l.getPort()).toBe(port);
    expect(procs(name, 'acceptors')).toHaveLength(2);
    const { client, greeting } = await greet(port);
    expect(procs(name, 'acceptors')).toContain(greeting.pid);
    expect(await client.echo('resumed')).toBe('resumed');
    expect(() => l.setProtocolOptions({ fn: () => 1 })).toThrow(BadOptionError);
    expect(l.getProtocolOptions()).toEqual({ v: 2 });

    const drained = l.waitForConnections('==', 0);
    for (const c of [...clients, client]) c.socket.end();
    await drained;
  });

  it('runs alarms in this process on the sum of the workers\' connections', async () => {
    const fired = deferred<[unknown, string, number]>();
    const name = ref('alarm');
    const l = await start({
      alarms: { busy: { type: 'numConnections', threshold: 3, cooldown: 0, callback: (r, n, conns) => fired.resolve([r, n, conns.length]) } },
    }, ECHO, undefined, name);
    const port = l.getPort()!;
    await greet(port);
    await greet(port);
    await l.waitForConnections('==', 2);
    await greet(port);
    // The connections live in the workers: the callback gets none of them, the count is in info().
    expect(await fired.promise).toEqual([name, 'busy', 0]);
    expect(l.info().activeConnections).toBeGreaterThanOrEqual(3);
  });

  it('runs TLS handshakes in the workers and sends their log records to the listener\'s logger', async () => {
    const logged: { msg: string | undefined; [k: string]: unknown }[] = [];
    const record = (o: object, msg?: string) => { logged.push({ ...o, msg }); };
    const logger = { error: record, warn: record, info: record, debug: record };
    const name = ref('tls');
    const l = await start({
      logger,
      socketOpts: { host: '127.0.0.1', key: readFileSync(new URL('localhost.key', TLS_DIR)), cert: readFileSync(new URL('localhost.crt', TLS_DIR)) },
    }, ECHO, undefined, name, tlsTransport);
    const port = l.getPort()!;
    const socket = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca: readFileSync(new URL('ca.crt', TLS_DIR)) });
    const client = new LineClient(socket);
    const greeting = JSON.parse(await client.line()) as Greeting;
    expect(procs(name, 'acceptors')).toContain(greeting.pid);
    expect((socket as tls.TLSSocket).authorized).toBe(true);
    expect(await client.echo('secret')).toBe('secret');

    // Plain text on the TLS port: the worker's handshake fails, and says so through the listener's logger.
    const plain = net.connect(port, '127.0.0.1');
    plain.on('error', () => {});
    plain.end('GET / HTTP/1.0\r\n\r\n');
    await expect.poll(() => logged.find((r) => r.msg === 'handshake failed'), { timeout: 30_000 }).toBeDefined();
    const entry = logged.find((r) => r.msg === 'handshake failed')!;
    expect(procs(name, 'acceptors')).toContain(entry.worker);
    expect(entry).toMatchObject({ listener: name, reason: 'error' });
    expect(entry.err).toBeInstanceOf(Error);
    await expect.poll(() => l.info().metrics.handshakeFailures, { timeout: 30_000 }).toBe(1);
  });

  it('reads PROXY headers in the workers', async () => {
    const l = await start({ proxyHeader: { mode: 'required', trustedProxies: ['127.0.0.1'] } });
    const { greeting } = await greet(l.getPort()!, (s) => s.write('PROXY TCP4 203.0.113.7 127.0.0.1 5555 80\r\n'));
    expect(greeting.client).toEqual({ family: 'IPv4', address: '203.0.113.7', port: 5555 });
  });

  it('runs a transport named by module specifier in the workers', async () => {
    const name = ref('banner');
    const l = await start({}, ECHO, undefined, name, BANNER.href);
    expect(l.info().transport).toBe('banner');
    const socket = net.connect(l.getPort()!, '127.0.0.1');
    const client = new LineClient(socket);
    const banner = await client.line();
    const greeting = JSON.parse(await client.line()) as Greeting;
    expect(banner).toBe(`banner ${greeting.pid}`);
    expect(procs(name, 'acceptors')).toContain(greeting.pid);
  });

  it.runIf(supportsReusePort())('gives each worker its own listen socket with numListenSockets (SO_REUSEPORT)', async () => {
    const name = ref('reuseport');
    const l = await start({ numAcceptors: 2, numListenSockets: 2 }, ECHO, undefined, name);
    const byPid = await spread(l.getPort()!, 200);
    expect([...byPid.keys()].sort()).toEqual(procs(name, 'acceptors').sort());
  });

  it.skipIf(supportsReusePort())('refuses numListenSockets > 1 where SO_REUSEPORT is missing', async () => {
    const err = await startListener(ref(), tcp, { numAcceptors: 2, numListenSockets: 2 }, ECHO, undefined).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BadOptionError);
    expect((err as BadOptionError).option).toBe('numListenSockets');
  });
});

describe('what cannot run in worker processes fails at start, leaving no process behind', SLOW, () => {
  const key = readFileSync(new URL('localhost.key', TLS_DIR));
  const cert = readFileSync(new URL('localhost.crt', TLS_DIR));

  it.each([
    ['a protocol function', {}, () => {}, undefined, tcp, BadProtocolError, undefined],
    ['a transport object', {}, ECHO, undefined, { ...tcp, name: 'copy' }, BadTransportError, undefined],
    ['a transport without adopt()', {}, ECHO, undefined, new URL('./fixtures/transports/no-adopt.ts', import.meta.url), BadTransportError, undefined],
    ['a missing protocol module', {}, new URL('./fixtures/protocols/missing.ts', import.meta.url), undefined, tcp, BadProtocolError, undefined],
    ['protocol options with a function', {}, ECHO, { ok: 1, fn: () => {} }, tcp, BadOptionError, 'protocolOpts.fn'],
    ['an SNICallback', { socketOpts: { key, cert, SNICallback: () => {} } }, ECHO, undefined, tlsTransport, BadOptionError, 'socketOpts.SNICallback'],
    ['a secureContext', { socketOpts: { secureContext: tls.createSecureContext({ key, cert }) } }, ECHO, undefined, tlsTransport, BadOptionError, 'socketOpts.secureContext'],
    ['numListenSockets over numAcceptors', { numListenSockets: 3 }, ECHO, undefined, tcp, BadOptionError, 'numListenSockets'],
    ['numAcceptors 0', { numAcceptors: 0 }, ECHO, undefined, tcp, BadOptionError, 'numAcceptors'],
    ['a bad restartIntensity', { restartIntensity: { maxRestarts: -1 } }, ECHO, undefined, tcp, BadOptionError, 'restartIntensity.maxRestarts'],
    ['a bad workerExecArgv', { workerExecArgv: '--import tsx' }, ECHO, undefined, tcp, BadOptionError, 'workerExecArgv'],
  ])('refuses %s', async (_what, opts, protocol, protocolOpts, transport, errorClass, option) => {
    const name = ref('refused');
    const err = await startListener(name, transport as typeof tcp, { numAcceptors: 2, ...opts } as ListenerOptions, protocol as ModuleSpecifier, protocolOpts)
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(errorClass);
    if (option !== undefined) expect((err as BadOptionError).option).toBe(option);
    expect(() => getStatus(name)).toThrow(ListenerNotFoundError);
    expect(children()).toEqual([]);
  });

  it('refuses a module without a protocol, as its workers find, and stops them', async () => {
    const name = ref('no-start');
    const err = await startListener(name, tcp, { socketOpts: { host: '127.0.0.1' }, numAcceptors: 2 }, NO_START, undefined).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BadProtocolError);
    expect((err as Error).message).toMatch(/exports neither a start\(\) function nor a default protocol/);
    expect(() => getStatus(name)).toThrow(ListenerNotFoundError);
    expect(children()).toEqual([]);
  });

  it('reports a port in use before starting any worker', async () => {
    const l = await start({ numAcceptors: 1 });
    const err = await startListener(ref(), tcp, { socketOpts: { host: '127.0.0.1', port: l.getPort()! }, numAcceptors: 2 }, ECHO, undefined)
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ListenError);
    expect((err as ListenError).reason).toBe('eaddrinuse');
    expect(children()).toEqual([]);
  });
});

describe('protocol modules in this process', () => {
  it('numAcceptors 1 imports the module here and accepts here', async () => {
    const name = ref('local-module');
    const l = await start({ numAcceptors: 1 }, ECHO.href, { here: true }, name);
    const { client, greeting } = await greet(l.getPort()!);
    expect(greeting).toMatchObject({ pid: process.pid, opts: { here: true } });
    expect(await client.echo('local')).toBe('local');
    expect(procs(name, 'acceptors')).toEqual([process.pid]);
    const i = info(name);
    expect(i).toMatchObject({ numAcceptors: 1, protocol: 'echo' });
    expect(i.workers).toBeUndefined();
    expect(children()).toEqual([]);
    await expect(restartAcceptors(name)).rejects.toBeInstanceOf(NotSupportedError);
    expect(() => l.setTransportOptions({ numAcceptors: 2 })).toThrow(BadOptionError);
  });

  it('refuses a module without a protocol', async () => {
    await expect(startListener(ref(), tcp, {}, NO_START, undefined)).rejects.toBeInstanceOf(BadProtocolError);
  });

  it('resolves a relative path against the current directory', async () => {
    const relativePath = `./${relative(process.cwd(), fileURLToPath(ECHO))}`;
    const l = await start({ numAcceptors: 1 }, relativePath);
    const { greeting } = await greet(l.getPort()!);
    expect(greeting.pid).toBe(process.pid);
    expect(l.info().protocol).toBe('echo');
  });
});

describe('worker process flags', () => {
  it('inherits this process\'s flags without inspector, watch and eval ones', () => {
    const argv = ['--inspect=9229', '--max-old-space-size=512', '--inspect-port', '9230', '--watch', '-e', 'code', '--conditions', 'development'];
    expect(defaultWorkerExecArgv(['file:///app/protocol.js'], argv)).toEqual(['--max-old-space-size=512', '--conditions', 'development']);
  });

  it('adds tsx for TypeScript modules, unless it is loaded already', () => {
    const added = defaultWorkerExecArgv(['file:///app/protocol.ts'], []);
    expect(added[0]).toBe('--import');
    expect(added[1]).toMatch(/^file:.*[\\/]tsx[\\/].*loader\.mjs$/);
    const loaded = ['--import', 'file:///x/node_modules/tsx/dist/loader.mjs'];
    expect(defaultWorkerExecArgv(['file:///app/protocol.ts'], loaded)).toEqual(loaded);
  });
});

describe('restart intensity', () => {
  it('allows maxRestarts within the period, not one more; old restarts fall out of it', () => {
    const limiter = new RestartLimiter(() => ({ maxRestarts: 2, periodMs: 1000 }));
    expect(limiter.allow(0)).toBe(true);
    expect(limiter.allow(500)).toBe(true);
    expect(limiter.allow(900)).toBe(false);
    // At 1600 the restarts of 0 and 500 are out of the window; 900 and 1600 are in it.
    expect(limiter.allow(1600)).toBe(true);
    expect(limiter.allow(1700)).toBe(false);
    expect(new RestartLimiter(() => ({ maxRestarts: 0, periodMs: 1000 })).allow(0)).toBe(false);
  });
});
