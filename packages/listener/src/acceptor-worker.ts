/**
 * An acceptor worker process, started by a listener with `numAcceptors` > 1. It imports the
 * protocol and the transport by name, listens on the socket the listener bound and sent it,
 * accepts straight from the kernel, and runs the protocols under its own connection supervisor
 * (Ranch's `ranch_conns_sup`) with its share of the limits. It reports its counters and its log
 * records to the listener, and does what the listener asks: listen, stop listening, apply new
 * options, stop. Its parent gone, it stops by itself.
 */

import { LEVEL_VALUES, logFieldsToWire, toWire, type FromWorker, type LogLevel, type ToWorker, type WorkerCounts, type WorkerOptions } from './ipc.js';
import type { Logger } from './logger.js';
import { importProtocol, loadTransport, type LoadedProtocol } from './modules.js';
import { DEFAULT_RESTART_INTENSITY, type ListenerConfig } from './options.js';
import { normalizeProxyPolicy } from './proxy-receive.js';
import { ConnectionSupervisor } from './supervisor.js';
import type { AnyTransport, ListenSocket, Transport } from './types.js';

/** Counters go to the listener at most this often (the first change after a quiet spell at once). */
const REPORT_INTERVAL_MS = 10;

const toParent = process.send?.bind(process);
if (toParent === undefined) {
  process.stderr.write('acceptor-worker: runs as a worker process of a listener (numAcceptors > 1)\n');
  process.exit(2);
}

function send(message: FromWorker, cb?: () => void): void {
  if (!process.connected) {
    cb?.();
    return;
  }
  try {
    toParent!(message, undefined, {}, () => cb?.());
  } catch {
    // A value that cannot be cloned (in a log record): nothing to report it to but the parent.
    cb?.();
  }
}

let logThreshold = Infinity;

function forward(level: LogLevel, obj: object, msg: string | undefined): void {
  if (LEVEL_VALUES[level] < logThreshold) return;
  send({ type: 'log', level, obj: logFieldsToWire(obj), msg });
}

/** Records go to the listener's logger, in the parent. */
const logger: Logger = {
  error: (obj, msg) => forward('error', obj, msg),
  warn: (obj, msg) => forward('warn', obj, msg),
  info: (obj, msg) => forward('info', obj, msg),
  debug: (obj, msg) => forward('debug', obj, msg),
};

function configOf(o: WorkerOptions): ListenerConfig {
  logThreshold = o.logThreshold;
  return {
    handshakeTimeout: o.handshakeTimeout,
    maxConnections: o.maxConnections,
    overflow: o.overflow,
    maxWaiting: o.maxWaiting,
    shutdown: o.shutdown,
    // Alarms run in the listener's process, on every worker's connections.
    alarms: {},
    logger,
    postListenCallback: undefined,
    proxyHeader: normalizeProxyPolicy(o.proxyHeader),
    numAcceptors: 1,
    numListenSockets: 1,
    restartIntensity: DEFAULT_RESTART_INTENSITY,
    workerExecArgv: undefined,
  };
}

interface State {
  ref: string;
  transport: Transport<unknown, unknown, unknown, object>;
  protocol: LoadedProtocol;
  protocolOpts: unknown;
  config: ListenerConfig;
  socketOpts: object;
  sockets: ListenSocket[];
  sup: ConnectionSupervisor;
}

let state: State | undefined;
let stopping: Promise<void> | undefined;

// ---------------------------------------------------------------------------------------------
// Counters

let reportTimer: NodeJS.Timeout | NodeJS.Immediate | undefined;
let lastReport = -Infinity;

function counts(): WorkerCounts {
  const sup = state!.sup;
  return {
    activeConnections: sup.activeConnections,
    allConnections: sup.allConnections,
    waitingConnections: sup.waitingConnections,
    metrics: { ...sup.metrics },
  };
}

function report(): void {
  reportTimer = undefined;
  lastReport = performance.now();
  send({ type: 'counts', counts: counts() });
}

/** Something counted changed: tell the listener soon, several changes at once. */
function scheduleReport(): void {
  if (reportTimer !== undefined || state === undefined) return;
  const wait = lastReport + REPORT_INTERVAL_MS - performance.now();
  reportTimer = wait <= 0 ? setImmediate(report) : setTimeout(report, wait);
}

function cancelReport(): void {
  if (reportTimer === undefined) return;
  clearTimeout(reportTimer as NodeJS.Timeout);
  clearImmediate(reportTimer as NodeJS.Immediate);
  reportTimer = undefined;
}

// ---------------------------------------------------------------------------------------------
// Requests

async function init(m: Extract<ToWorker, { type: 'init' }>): Promise<void> {
  const transport = await loadTransport(m.transport) as unknown as Transport<unknown, unknown, unknown, object>;
  const protocol = await importProtocol(m.protocol);
  const s: State = {
    ref: m.ref,
    transport,
    protocol,
    protocolOpts: m.protocolOpts,
    config: configOf(m.options),
    socketOpts: {},
    sockets: [],
    sup: undefined as unknown as ConnectionSupervisor,
  };
  s.sup = new ConnectionSupervisor({
    ref: m.ref,
    config: () => s.config,
    transport: () => s.transport,
    protocol: () => ({ start: s.protocol.start, opts: s.protocolOpts }),
    socketOpts: () => s.socketOpts,
  }, scheduleReport);
  state = s;
}

async function listen(socketOpts: unknown, handle: object | undefined): Promise<void> {
  const s = state!;
  if (handle === undefined) throw new Error('listen: no socket came with the request');
  const opts = s.transport.normalizeOptions(socketOpts);
  const adopt = (s.transport as AnyTransport).adopt as Transport<unknown, unknown, unknown, object>['adopt'];
  if (adopt === undefined) throw new Error(`transport ${s.transport.name} cannot listen on a socket from another process`);
  // Connections accepted from the first moment use these options.
  s.socketOpts = opts;
  const socket = await adopt.call(s.transport, opts, handle, {
    onConnection: (raw) => {
      s.sup.accept(raw);
      scheduleReport();
    },
    onError: (err) => s.sup.acceptError(err),
  });
  s.sockets.push(socket);
}

async function unlisten(): Promise<void> {
  const s = state;
  if (s === undefined) return;
  const sockets = s.sockets.splice(0);
  await Promise.all(sockets.map((socket) => socket.close()));
}

/** Stop accepting, end every connection per `shutdown`, report the last counters. */
function stop(): Promise<void> {
  stopping ??= (async () => {
    await unlisten();
    await state?.sup.shutdown();
    cancelReport();
  })();
  return stopping;
}

function exit(code: number): void {
  // The reply is on its way first; then nothing is left to do here.
  process.exit(code);
}

async function dispatch(m: ToWorker, handle: object | undefined): Promise<void> {
  if (!('id' in m)) {
    if (state === undefined) return;
    if (m.type === 'options') {
      state.config = configOf(m.options);
      // A higher limit starts connections waiting for a slot.
      state.sup.admit();
    } else {
      state.protocolOpts = m.opts;
    }
    return;
  }
  const reply = (value?: unknown, then?: () => void): void => send({ type: 'reply', id: m.id, ok: true, value }, then);
  try {
    switch (m.type) {
      case 'init':
        await init(m);
        reply();
        break;
      case 'listen':
        await listen(m.socketOpts, handle);
        reply();
        break;
      case 'unlisten':
        await unlisten();
        reply();
        break;
      case 'stop':
        await stop();
        reply(state === undefined ? undefined : counts(), () => exit(0));
        break;
    }
  } catch (err) {
    // A worker that cannot start has nothing to do: it reports why and goes.
    send({ type: 'reply', id: m.id, ok: false, error: toWire(err) }, m.type === 'init' ? () => exit(1) : undefined);
  }
}

// One message at a time, in the order sent.
let queue: Promise<void> = Promise.resolve();

process.on('message', (message: unknown, sendHandle: unknown) => {
  const m = message as ToWorker;
  if (typeof m !== 'object' || m === null || typeof m.type !== 'string') return;
  queue = queue.then(() => dispatch(m, (sendHandle ?? undefined) as object | undefined)).catch(() => {});
});

// The listener's process decides when its workers stop: a Ctrl-C sent to the whole process group
// reaches it too, and it stops them gracefully (or, if it dies, they stop when it is gone).
process.on('SIGINT', () => {});

process.on('disconnect', () => {
  void stop().finally(() => exit(0));
});
