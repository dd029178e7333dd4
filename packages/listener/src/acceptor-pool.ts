/**
 * A pool of acceptor worker processes (`numAcceptors` > 1): Ranch's many acceptors spread over
 * the machine's cores, as Node can have them, one event loop per process.
 *
 * The listener's process binds the listen socket(s) and never accepts on them; it sends them to
 * N worker processes (acceptor-worker.ts), each of which listens on its copy and accepts
 * straight from the kernel, runs the protocols and supervises its own connections with a share
 * of the limits. This process supervises the workers the way an OTP supervisor does: a worker
 * that exits unasked is logged and restarted, up to the restart intensity, past which the
 * listener stops. It keeps the workers' counters (they report them), runs the alarms on their
 * sum, writes their log records, and relays every change of options.
 */

import { fork, type ChildProcess } from 'node:child_process';
import * as net from 'node:net';
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AcceptorWorkerInfo, Acceptors } from './acceptor.js';
import { AlarmMonitor } from './alarms.js';
import { findUncloneable } from './cloneable.js';
import type { Connection } from './connection.js';
import {
  BadOptionError, BadProtocolError, BadTransportError, CorralError, NotSupportedError, RestartIntensityError,
  WorkerExitError, type WorkerExit,
} from './errors.js';
import { defaultWorkerExecArgv } from './exec-argv.js';
import {
  LEVEL_VALUES, Requests, logFieldsFromWire, type FromWorker, type LogLevel, type ToWorker, type WorkerCounts,
  type WorkerOptions,
} from './ipc.js';
import { bindSockets, supportsReusePort, type BindOptions, type BoundSocket } from './listen-handle.js';
import type { Logger } from './logger.js';
import type { TransportRef } from './modules.js';
import type { ListenerConfig } from './options.js';
import { RestartLimiter } from './restart-intensity.js';
import type { ListenerMetrics } from './supervisor.js';
import type { AnyTransport, Ref, SocketAddress } from './types.js';

/** The worker's entry point, next to this module (TypeScript when run from source). */
const WORKER_ENTRY = new URL(`./acceptor-worker${extname(fileURLToPath(import.meta.url))}`, import.meta.url);

/** A worker gets this long to import the protocol and the transport. */
const INIT_TIMEOUT_MS = 30_000;
/** And this long to start or stop listening. */
const LISTEN_TIMEOUT_MS = 10_000;
/** Beyond `shutdown`, how long a stopping worker may take to exit before it is killed. */
const STOP_GRACE_MS = 5_000;

/** What the pool needs of its listener. */
export interface PoolHost {
  readonly ref: Ref;
  readonly transportRef: TransportRef;
  readonly protocolHref: string;
  config(): ListenerConfig;
  transport(): AnyTransport;
  protocolOpts(): unknown;
  onCount(): void;
  /** The workers crashed too often: stop the listener. */
  onFatal(err: Error): void;
}

const NO_COUNTS: WorkerCounts = {
  activeConnections: 0, allConnections: 0, waitingConnections: 0,
  metrics: {
    accepted: 0, rejected: 0, started: 0, terminated: 0, handshakeFailures: 0, handshakeTimeouts: 0,
    protocolCrashes: 0, acceptErrors: 0, proxyHeaderFailures: 0, proxyHeaderUntrusted: 0,
  },
};

interface Worker {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly requests: Requests;
  status: AcceptorWorkerInfo['status'];
  counts: WorkerCounts;
  /** Told to stop, or killed by the pool: its exit is not a crash. */
  expected: boolean;
  /** A listen request was sent and no unlisten since. */
  listening: boolean;
  exit: WorkerExit | undefined;
  readonly exited: Promise<WorkerExit>;
  stopping: Promise<void> | undefined;
}

const TLS_HINT: Record<string, string> = {
  secureContext: 'give the key and certificate (key, cert, pfx, ca: Buffers or strings) instead',
  SNICallback: "choose the certificate in the protocol (handshake: 'hello' and handshakeContinue), or set the callback in a transport module that wraps tls",
  ALPNCallback: 'give ALPNProtocols instead, or set the callback in a transport module that wraps tls',
  pskCallback: 'set the callback in a transport module that wraps tls',
};

/**
 * Check, before any process starts, that a listener can run in worker processes: the transport
 * and the protocol are named so that a worker can import them, and what is sent clones.
 * Throws `BadTransportError`, `BadProtocolError` or `BadOptionError`.
 */
export function checkWorkerPlan(plan: {
  transport: AnyTransport;
  transportRef: TransportRef | undefined;
  protocolHref: string | undefined;
  protocolOpts: unknown;
  rawSocketOpts: unknown;
  config: ListenerConfig;
  socketOpts: object;
}): asserts plan is typeof plan & { transportRef: TransportRef; protocolHref: string } {
  const { transport, config } = plan;
  if (plan.transportRef === undefined) {
    throw new BadTransportError(`Transport ${transport.name} is an object of this process: with numAcceptors > 1, name it by module specifier (tcp and tls need not be)`);
  }
  if (typeof transport.adopt !== 'function') {
    throw new BadTransportError(`Transport ${transport.name} cannot accept in worker processes: it does not implement adopt()`);
  }
  if (plan.protocolHref === undefined) {
    throw new BadProtocolError('With numAcceptors > 1 the protocol runs in worker processes: name it by module specifier (a file URL or path of a module exporting start)');
  }
  checkProtocolOptions(plan.protocolOpts);
  checkWorkerOptions(config, plan.rawSocketOpts, plan.socketOpts);
}

/** Protocol options go to every worker: they must clone. */
export function checkProtocolOptions(opts: unknown): void {
  checkCloneable(opts, 'protocolOpts', 'protocol options must be structured-cloneable');
}

/** The options of a listener with worker processes: what they need clones, and the socket count fits. */
export function checkWorkerOptions(config: ListenerConfig, rawSocketOpts: unknown, socketOpts: object): void {
  checkCloneable(rawSocketOpts, 'socketOpts', 'socket options must be structured-cloneable');
  checkCloneable(config.proxyHeader?.source, 'proxyHeader', 'it must be structured-cloneable');
  if (config.numListenSockets > 1) {
    if ((socketOpts as BindOptions).path !== undefined) {
      throw new BadOptionError('numListenSockets', 'a UNIX socket cannot be bound more than once (SO_REUSEPORT): use 1');
    }
    if (!supportsReusePort()) {
      throw new BadOptionError('numListenSockets', `more than one listen socket needs SO_REUSEPORT: Node 22.12+ or 23.1+ on Linux or a BSD (this is Node ${process.version} on ${process.platform})`);
    }
  }
}

function checkCloneable(value: unknown, path: string, rule: string): void {
  const found = findUncloneable(value, path);
  if (found === undefined) return;
  const key = found.path.split('.')[1] ?? '';
  const hint = path === 'socketOpts' && TLS_HINT[key] !== undefined ? `; ${TLS_HINT[key]}` : '';
  throw new BadOptionError(found.path, `${found.what} cannot be sent to acceptor worker processes: ${rule}${hint}`);
}

/** The lowest pino level value the logger writes (Infinity: none), so workers send only what it wants. */
function logThreshold(logger: Logger): number {
  const l = logger as { levelVal?: unknown; isLevelEnabled?: (level: string) => boolean };
  if (typeof l.levelVal === 'number') return l.levelVal;
  if (typeof l.isLevelEnabled === 'function') {
    for (const level of ['debug', 'info', 'warn', 'error'] as const) if (l.isLevelEnabled(level)) return LEVEL_VALUES[level];
    return Infinity;
  }
  return 0;
}

/** `max` split over `n` workers, rounded up (Ranch's limits are per connection supervisor too). */
function share(max: number, n: number): number {
  return max === Infinity ? Infinity : Math.ceil(max / n);
}

function addMetrics(into: ListenerMetrics, m: ListenerMetrics): void {
  for (const key of Object.keys(into) as (keyof ListenerMetrics)[]) into[key] += m[key];
}

/** A `net.Server` standing for a socket bound here, for `postListenCallback`: it tells its address, accepts nothing. */
function socketView(socket: BoundSocket): net.Server {
  const server = new net.Server();
  const a = socket.address;
  const address: net.AddressInfo | string = a.family === 'local' ? a.path : { address: a.address, family: a.family, port: a.port };
  Object.defineProperty(server, 'address', { value: () => address });
  return server;
}

function describeExit(exit: WorkerExit): string {
  return exit.signal !== null ? `signal ${exit.signal}` : `code ${exit.code}`;
}

export class AcceptorPool implements Acceptors {
  #host: PoolHost;
  /** The accepting positions; worker i accepts from socket i mod numListenSockets. */
  #slots: (Worker | undefined)[] = [];
  /** Every worker process alive: in a slot, starting, or draining before it exits. */
  #live = new Set<Worker>();
  /** Slots whose crashed worker is being replaced. */
  #refilling = new Map<number, Promise<void>>();
  #sockets: BoundSocket[] | undefined;
  #rawSocketOpts: unknown;
  #closing = false;
  #gaveUp = false;
  #retired: ListenerMetrics = { ...NO_COUNTS.metrics };
  #restarts = 0;
  #lastExit: WorkerExit | undefined;
  #limiter: RestartLimiter;
  #alarms: AlarmMonitor;
  #execArgv: readonly string[] | undefined;

  constructor(host: PoolHost) {
    this.#host = host;
    this.#limiter = new RestartLimiter(() => host.config().restartIntensity);
    this.#alarms = new AlarmMonitor({
      ref: host.ref,
      config: () => host.config(),
      activeConnections: () => this.activeConnections,
      // The connections live in the workers.
      activeList: () => [],
    });
  }

  // -------------------------------------------------------------------------------------------
  // The Acceptors interface

  async listen(socketOpts: object, rawSocketOpts: unknown): Promise<SocketAddress> {
    const config = this.#host.config();
    await this.#settleRefills();
    await this.#host.transport().cleanup(socketOpts);
    const bind = { ...(socketOpts as BindOptions) };
    if (bind.reusePort === true && !supportsReusePort()) delete bind.reusePort;
    const sockets = await bindSockets(bind, config.numListenSockets);
    this.#rawSocketOpts = rawSocketOpts;
    try {
      const resized = this.#slots.length !== 0 && this.#slots.length !== config.numAcceptors;
      await this.#resize(config.numAcceptors);
      // Each worker's share of the limits changed with their number.
      if (resized) this.#broadcastOptions();
      this.#sockets = sockets;
      await Promise.all(this.#slots.map((w, i) => (w === undefined ? undefined : this.#listenWorker(w, i))));
      if (config.postListenCallback !== undefined) {
        for (const socket of sockets) await config.postListenCallback(socketView(socket));
      }
    } catch (err) {
      if (this.#sockets === sockets) await this.close();
      else for (const s of sockets) s.close();
      throw err;
    }
    return sockets[0]!.address;
  }

  async close(): Promise<void> {
    const sockets = this.#sockets;
    this.#sockets = undefined;
    if (sockets === undefined) return;
    // Workers that are stopping stop listening first thing.
    await Promise.all([...this.#live].filter((w) => w.listening && w.stopping === undefined).map((w) => this.#unlisten(w)));
    for (const s of sockets) s.close();
  }

  async shutdown(): Promise<void> {
    this.#closing = true;
    this.#alarms.close();
    const sockets = this.#sockets;
    this.#sockets = undefined;
    // This process's copies go first: the port closes as soon as the workers stop listening.
    for (const s of sockets ?? []) s.close();
    while (this.#live.size > 0 || this.#refilling.size > 0) {
      await Promise.all([...[...this.#live].map((w) => this.#retire(w)), ...this.#refilling.values()]);
    }
  }

  limitsChanged(): void {
    this.#broadcastOptions();
  }

  optionsChanged(): void {
    this.#broadcastOptions();
    this.#alarms.changed();
  }

  protocolOptionsChanged(): void {
    const opts = this.#host.protocolOpts();
    for (const w of this.#live) this.#notify(w, { type: 'protocolOpts', opts });
  }

  /** Rolling restart: a new worker per slot, listening before the old one drains and exits. */
  async restart(): Promise<void> {
    await this.#settleRefills();
    for (let i = 0; i < this.#slots.length; i++) {
      if (this.#closing || this.#gaveUp) return;
      const fresh = await this.#spawn();
      if (this.#closing || this.#gaveUp) {
        await this.#retire(fresh);
        return;
      }
      if (this.#sockets !== undefined) {
        try {
          await this.#listenWorker(fresh, i);
        } catch (err) {
          await this.#retire(fresh);
          throw err;
        }
      }
      const old = this.#slots[i];
      this.#slots[i] = fresh;
      if (old !== undefined) await this.#retire(old);
    }
  }

  get activeConnections(): number {
    return this.#sum((c) => c.activeConnections);
  }

  get allConnections(): number {
    return this.#sum((c) => c.allConnections);
  }

  get waitingConnections(): number {
    return this.#sum((c) => c.waitingConnections);
  }

  metrics(): ListenerMetrics {
    const total = { ...this.#retired };
    for (const w of this.#live) addMetrics(total, w.counts.metrics);
    return total;
  }

  pids(): number[] {
    return this.#slots.flatMap((w) => (w !== undefined && w.status === 'listening' ? [w.pid] : []));
  }

  connections(): Connection[] {
    throw new NotSupportedError(
      `The connections of listener ${String(this.#host.ref)} live in its acceptor worker processes: see info().workers for their counts`,
    );
  }

  workers(): AcceptorWorkerInfo[] {
    const max = share(this.#host.config().maxConnections, this.#size());
    const inSlots = this.#slots.filter((w): w is Worker => w !== undefined);
    const others = [...this.#live].filter((w) => !inSlots.includes(w));
    return [...inSlots, ...others].map((w) => ({
      pid: w.pid,
      status: w.status,
      maxConnections: max,
      activeConnections: w.counts.activeConnections,
      allConnections: w.counts.allConnections,
      waitingConnections: w.counts.waitingConnections,
      metrics: { ...w.counts.metrics },
    }));
  }

  /** Workers restarted after a crash so far. */
  get restarts(): number {
    return this.#restarts;
  }

  // -------------------------------------------------------------------------------------------
  // Workers

  #size(): number {
    return this.#slots.length > 0 ? this.#slots.length : this.#host.config().numAcceptors;
  }

  #sum(f: (c: WorkerCounts) => number): number {
    let n = 0;
    for (const w of this.#live) n += f(w.counts);
    return n;
  }

  #workerOptions(): WorkerOptions {
    const c = this.#host.config();
    const n = this.#size();
    return {
      handshakeTimeout: c.handshakeTimeout,
      maxConnections: share(c.maxConnections, n),
      overflow: c.overflow,
      maxWaiting: share(c.maxWaiting, n),
      shutdown: c.shutdown,
      proxyHeader: c.proxyHeader?.source,
      logThreshold: logThreshold(c.logger),
    };
  }

  #broadcastOptions(): void {
    const options = this.#workerOptions();
    for (const w of this.#live) this.#notify(w, { type: 'options', options });
  }

  #notify(w: Worker, message: ToWorker): void {
    if (!w.child.connected) return;
    try {
      w.child.send(message, undefined, {}, () => {});
    } catch {
      // Gone: its exit is handled.
    }
  }

  #workerExecArgv(): string[] {
    const given = this.#host.config().workerExecArgv;
    if (given !== undefined) return [...given];
    const ref = this.#host.transportRef;
    this.#execArgv ??= defaultWorkerExecArgv([WORKER_ENTRY.href, this.#host.protocolHref, ...('module' in ref ? [ref.module] : [])]);
    return [...this.#execArgv];
  }

  /** Start a worker and wait until it has loaded the protocol and the transport. */
  async #spawn(): Promise<Worker> {
    const host = this.#host;
    const child = fork(fileURLToPath(WORKER_ENTRY), [], {
      execArgv: this.#workerExecArgv(),
      serialization: 'advanced',
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    let onExit!: (exit: WorkerExit) => void;
    const exited = new Promise<WorkerExit>((resolve) => {
      onExit = resolve;
    });
    const w: Worker = {
      child,
      pid: child.pid ?? -1,
      requests: new Requests((message, handle, cb) => {
        try {
          if (!child.connected) throw new Error('the IPC channel is closed');
          child.send(message, handle as net.Server | undefined, {}, (err) => cb(err ?? null));
        } catch (err) {
          cb(err as Error);
        }
      }),
      status: 'starting',
      counts: NO_COUNTS,
      expected: false,
      listening: false,
      exit: undefined,
      exited,
      stopping: undefined,
    };
    this.#live.add(w);
    child.on('message', (m: FromWorker) => this.#onMessage(w, m));
    const ended = (code: number | null, signal: NodeJS.Signals | null): void => {
      if (w.exit !== undefined) return;
      w.exit = { pid: w.pid, code, signal };
      this.#onExit(w, w.exit);
      onExit(w.exit);
    };
    // 'close' rather than 'exit': by then every message the worker sent has been received.
    child.once('close', ended);
    child.on('error', () => {
      // A process that could not start never closes.
      if (child.pid === undefined) ended(null, null);
    });
    try {
      await w.requests.request({
        type: 'init',
        ref: String(host.ref),
        transport: host.transportRef,
        protocol: host.protocolHref,
        protocolOpts: host.protocolOpts(),
        options: this.#workerOptions(),
      }, INIT_TIMEOUT_MS);
    } catch (err) {
      w.expected = true;
      child.kill('SIGKILL');
      const exit = await exited;
      if (err instanceof CorralError && !(err instanceof WorkerExitError) && err.code !== 'ERR_CORRAL_TIMEOUT') throw err;
      throw new WorkerExitError(
        `An acceptor worker of listener ${String(host.ref)} failed to start (pid ${w.pid}, ${describeExit(exit)}): ${(err as Error).message}`,
        exit,
      );
    }
    if (w.status === 'starting') w.status = 'idle';
    return w;
  }

  /** Fill or empty slots to have `n` workers; extra ones drain in the background. */
  async #resize(n: number): Promise<void> {
    for (const w of this.#slots.splice(n)) if (w !== undefined) void this.#retire(w);
    while (this.#slots.length < n) this.#slots.push(undefined);
    const empty = this.#slots.flatMap((w, i) => (w === undefined ? [i] : []));
    const results = await Promise.allSettled(empty.map(() => this.#spawn()));
    let failure: unknown;
    results.forEach((r, k) => {
      if (r.status === 'fulfilled') this.#slots[empty[k]!] = r.value;
      else failure ??= r.reason;
    });
    if (failure !== undefined) throw failure;
  }

  async #listenWorker(w: Worker, slot: number): Promise<void> {
    const sockets = this.#sockets;
    if (sockets === undefined) return;
    w.listening = true;
    await w.requests.request({ type: 'listen', socketOpts: this.#rawSocketOpts }, LISTEN_TIMEOUT_MS, sockets[slot % sockets.length]!.handle);
    if (w.status === 'idle' && w.listening) w.status = 'listening';
  }

  async #unlisten(w: Worker): Promise<void> {
    w.listening = false;
    try {
      await w.requests.request({ type: 'unlisten' }, LISTEN_TIMEOUT_MS);
    } catch {
      // Gone, or hung: either way it accepts no more once it exits.
    }
    if (w.status === 'listening') w.status = 'idle';
  }

  /** Stop a worker: it stops listening, drains its connections within `shutdown`, and exits. */
  #retire(w: Worker): Promise<void> {
    w.stopping ??= (async () => {
      w.expected = true;
      w.status = 'stopping';
      w.listening = false;
      const slot = this.#slots.indexOf(w);
      if (slot !== -1) this.#slots[slot] = undefined;
      const shutdown = this.#host.config().shutdown;
      const limit = shutdown === 'brutal_kill' ? STOP_GRACE_MS : shutdown === Infinity ? Infinity : shutdown + STOP_GRACE_MS;
      const timer = limit === Infinity ? undefined : setTimeout(() => w.child.kill('SIGKILL'), limit);
      w.requests.request<WorkerCounts | undefined>({ type: 'stop' }, Infinity).then(
        (counts) => {
          if (counts !== undefined) w.counts = counts;
        },
        () => {},
      );
      await w.exited;
      if (timer !== undefined) clearTimeout(timer);
    })();
    return w.stopping;
  }

  #onMessage(w: Worker, m: FromWorker): void {
    if (typeof m !== 'object' || m === null) return;
    switch (m.type) {
      case 'reply':
        w.requests.reply(m);
        break;
      case 'counts': {
        const before = this.activeConnections;
        w.counts = m.counts;
        this.#host.onCount();
        if (this.activeConnections > before) this.#alarms.check();
        break;
      }
      case 'log':
        this.#log(m.level, { ...logFieldsFromWire(m.obj), worker: w.pid }, m.msg);
        break;
    }
  }

  #log(level: LogLevel, obj: object, msg: string | undefined): void {
    try {
      this.#host.config().logger[level](obj, msg);
    } catch {
      // A logger that throws has nowhere else to report to.
    }
  }

  #onExit(w: Worker, exit: WorkerExit): void {
    this.#live.delete(w);
    w.requests.close(new WorkerExitError(`Acceptor worker ${w.pid} exited (${describeExit(exit)})`, exit));
    addMetrics(this.#retired, w.counts.metrics);
    w.counts = { ...NO_COUNTS, metrics: w.counts.metrics };
    const slot = this.#slots.indexOf(w);
    if (slot !== -1) this.#slots[slot] = undefined;
    this.#host.onCount();
    if (w.expected || this.#closing || this.#gaveUp) return;
    this.#lastExit = exit;
    this.#log('error', { listener: String(this.#host.ref), worker: w.pid, code: exit.code, signal: exit.signal }, 'acceptor worker exited');
    // A worker still starting has no slot: whoever started it hears of the failure.
    if (slot !== -1) this.#restartSlot(slot);
  }

  /** A slot lost its worker: start another, within the restart intensity. */
  #restartSlot(slot: number): void {
    if (this.#refilling.has(slot)) return;
    const run = (async () => {
      for (;;) {
        if (this.#closing || this.#gaveUp) return;
        if (!this.#limiter.allow()) {
          this.#gaveUp = true;
          const { maxRestarts, periodMs } = this.#host.config().restartIntensity;
          this.#host.onFatal(new RestartIntensityError(this.#host.ref, maxRestarts, periodMs, this.#lastExit ?? { pid: -1, code: null, signal: null }));
          return;
        }
        this.#restarts++;
        let w: Worker;
        try {
          w = await this.#spawn();
        } catch (err) {
          if (err instanceof WorkerExitError) this.#lastExit = err.exit;
          this.#log('error', { listener: String(this.#host.ref), err }, 'acceptor worker failed to restart');
          continue;
        }
        if (this.#closing || this.#gaveUp || this.#slots[slot] !== undefined) {
          await this.#retire(w);
          return;
        }
        this.#slots[slot] = w;
        this.#log('info', { listener: String(this.#host.ref), worker: w.pid }, 'acceptor worker restarted');
        try {
          await this.#listenWorker(w, slot);
        } catch (err) {
          // It failed to listen: it is no use. Its exit counts as a crash and restarts the slot.
          this.#log('error', { listener: String(this.#host.ref), worker: w.pid, err }, 'acceptor worker failed to listen');
          w.child.kill('SIGKILL');
        }
        return;
      }
    })().finally(() => this.#refilling.delete(slot));
    this.#refilling.set(slot, run);
  }

  async #settleRefills(): Promise<void> {
    while (this.#refilling.size > 0) await Promise.all(this.#refilling.values());
  }
}
