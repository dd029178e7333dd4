/**
 * Listener options (Ranch's transport options minus the socket ones): validation and defaults.
 */

import type * as net from 'node:net';
import { BadOptionError } from './errors.js';
import { isLogger, silentLogger, type Logger } from './logger.js';
import type { Connection } from './connection.js';
import { normalizeProxyPolicy, type ProxyHeaderMode, type ProxyHeaderOptions, type ProxyPolicy } from './proxy-receive.js';
import type { AnyTransport, Ref, Transport } from './types.js';

export type { AnyTransport };


/** The normalised `socketOpts` type of a transport. */
export type SocketOptionsOf<T> = T extends Transport<infer _S, infer _HO, infer _I, infer SO> ? SO : never;

/** How long `stop` lets protocols finish: milliseconds, `Infinity`, or `'brutal_kill'` (destroy at once). */
export type ShutdownOption = number | 'brutal_kill';

/** What happens to a connection accepted while `maxConnections` are active. */
export type OverflowMode = 'queue' | 'reject';

/** Ranch's `num_connections` alarm. */
export interface NumConnectionsAlarm {
  type: 'numConnections';
  /** Fires while the number of active connections is at least this. */
  threshold: number;
  /** Milliseconds before the alarm may fire again (default 5000; 0 fires on every new connection). */
  cooldown?: number;
  /** Called with the listener's ref, the alarm's name and the active connections. Errors are logged. */
  callback: (ref: Ref, name: string, connections: Connection[]) => void;
}

/** Options of a listener (Ranch's `transport_opts()`). All are optional. */
export interface ListenerOptions<SO extends object = object> {
  /** Transport socket options (port, host, path, backlog, TLS material...). Applied at listen and resume. */
  socketOpts?: Partial<SO>;
  /** Milliseconds the transport handshake may take (default 5000; Infinity allowed). */
  handshakeTimeout?: number;
  /** Connections served at once (default 1024; Infinity allowed). */
  maxConnections?: number;
  /** Over `maxConnections`: `'queue'` (default) holds new connections paused; `'reject'` closes them. */
  overflow?: OverflowMode;
  /** Connections held paused while at the limit, beyond which they are reset (default: the listen backlog, or 1024). */
  maxWaiting?: number;
  /** On stop, how long protocols get to finish before their sockets are destroyed (default 5000). */
  shutdown?: ShutdownOption;
  /** Named alarms. */
  alarms?: Record<string, NumConnectionsAlarm>;
  /** A pino logger (default: silent). */
  logger?: Logger;
  /**
   * Expect a PROXY protocol header (v1 or v2) before anything else, as sent by HAProxy, nginx,
   * AWS NLB... `handshake` reads it first; the connection's `proxyHeader` and `clientAddress`
   * then tell the real client. A string is shorthand for `{ mode }`.
   */
  proxyHeader?: ProxyHeaderMode | ProxyHeaderOptions;
  /**
   * Called with each listen socket after it listens (at start and at every resume). A throw fails
   * the start/resume. With `numAcceptors` > 1 it runs in this process, once per listen socket, after
   * the workers listen on it: the `net.Server` it gets stands for the socket (`address()`), and
   * accepts nothing itself.
   */
  postListenCallback?: (server: net.Server) => void | Promise<void>;
  /**
   * Acceptor processes (Ranch's `num_acceptors`). 1 (the default): this process accepts and runs
   * the protocols. N > 1: N worker processes, supervised by this one, all accept from the same
   * listen socket and run the protocols; the protocol (and a transport other than `tcp`/`tls`) must
   * then be given by module specifier, and the protocol options must be structured-cloneable.
   */
  numAcceptors?: number;
  /**
   * Listen sockets shared among the workers (Ranch's `num_listen_sockets`, default 1): more than one
   * binds a `SO_REUSEPORT` group on one port (Node 22.12+/23.1+, Linux and the BSDs), and worker i
   * accepts from socket i mod `numListenSockets`. At most `numAcceptors`.
   */
  numListenSockets?: number;
  /**
   * OTP's restart intensity for the worker processes: more than `maxRestarts` restarts within
   * `periodMs` stops the listener. Default `{ maxRestarts: 5, periodMs: 10000 }`.
   */
  restartIntensity?: RestartIntensity;
  /**
   * Node flags of the worker processes. Default: this process's `execArgv` without inspector,
   * watch and eval flags, plus `--import tsx` when a module they load is TypeScript and tsx can
   * be found.
   */
  workerExecArgv?: readonly string[];
}

/** How many crashes of worker processes a listener tolerates (OTP's `intensity` and `period`). */
export interface RestartIntensity {
  /** Restarts allowed within `periodMs`; one more stops the listener. 0 stops it at the first crash. */
  maxRestarts: number;
  /** The sliding window, in milliseconds. */
  periodMs: number;
}

/** Validated options, defaults filled in. */
export interface ListenerConfig {
  handshakeTimeout: number;
  maxConnections: number;
  overflow: OverflowMode;
  maxWaiting: number;
  shutdown: ShutdownOption;
  alarms: Record<string, Required<NumConnectionsAlarm>>;
  logger: Logger;
  postListenCallback: ((server: net.Server) => void | Promise<void>) | undefined;
  proxyHeader: ProxyPolicy | undefined;
  numAcceptors: number;
  numListenSockets: number;
  restartIntensity: RestartIntensity;
  /** As given; undefined: the default, worked out when the workers start. */
  workerExecArgv: readonly string[] | undefined;
}

export const DEFAULT_HANDSHAKE_TIMEOUT = 5000;
export const DEFAULT_MAX_CONNECTIONS = 1024;
export const DEFAULT_SHUTDOWN = 5000;
export const DEFAULT_ALARM_COOLDOWN = 5000;
export const DEFAULT_RESTART_INTENSITY: Readonly<RestartIntensity> = Object.freeze({ maxRestarts: 5, periodMs: 10_000 });
const DEFAULT_BACKLOG = 1024;
/** More worker processes than this is a mistake, not a configuration. */
const MAX_ACCEPTORS = 1024;

const KNOWN = new Set([
  'socketOpts', 'handshakeTimeout', 'maxConnections', 'overflow', 'maxWaiting',
  'shutdown', 'alarms', 'logger', 'postListenCallback', 'proxyHeader',
  'numAcceptors', 'numListenSockets', 'restartIntensity', 'workerExecArgv',
]);

/** A non-negative integer number of milliseconds or items, or Infinity. */
export function isLimit(value: unknown): value is number {
  return value === Infinity || (Number.isSafeInteger(value) && (value as number) >= 0);
}

function limit(name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (!isLimit(value)) throw new BadOptionError(name, `expected a non-negative integer or Infinity, got ${String(value)}`);
  return value;
}

export function validateMaxConnections(value: unknown): number {
  return limit('maxConnections', value, DEFAULT_MAX_CONNECTIONS);
}

function validateShutdown(value: unknown): ShutdownOption {
  if (value === undefined) return DEFAULT_SHUTDOWN;
  if (value === 'brutal_kill') return value;
  if (!isLimit(value)) throw new BadOptionError('shutdown', `expected milliseconds, Infinity or 'brutal_kill', got ${String(value)}`);
  return value;
}

function validateAlarms(value: unknown): Record<string, Required<NumConnectionsAlarm>> {
  if (value === undefined) return {};
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new BadOptionError('alarms', 'expected an object of named alarms');
  }
  const out: Record<string, Required<NumConnectionsAlarm>> = {};
  for (const [name, raw] of Object.entries(value)) {
    const path = `alarms.${name}`;
    if (typeof raw !== 'object' || raw === null) throw new BadOptionError(path, 'expected an alarm object');
    const a = raw as Record<string, unknown>;
    for (const key of Object.keys(a)) {
      if (key !== 'type' && key !== 'threshold' && key !== 'cooldown' && key !== 'callback') {
        throw new BadOptionError(`${path}.${key}`, 'unknown alarm option');
      }
    }
    if (a.type !== 'numConnections') throw new BadOptionError(`${path}.type`, `expected 'numConnections', got ${String(a.type)}`);
    if (!Number.isSafeInteger(a.threshold) || (a.threshold as number) < 0) {
      throw new BadOptionError(`${path}.threshold`, 'expected a non-negative integer');
    }
    if (typeof a.callback !== 'function') throw new BadOptionError(`${path}.callback`, 'expected a function');
    const cooldown = a.cooldown ?? DEFAULT_ALARM_COOLDOWN;
    if (!Number.isSafeInteger(cooldown) || (cooldown as number) < 0) {
      throw new BadOptionError(`${path}.cooldown`, 'expected a non-negative integer of milliseconds');
    }
    out[name] = {
      type: 'numConnections',
      threshold: a.threshold as number,
      cooldown: cooldown as number,
      callback: a.callback as NumConnectionsAlarm['callback'],
    };
  }
  return out;
}

function count(name: string, value: unknown, fallback: number, max: number): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || (value as number) < 1 || (value as number) > max) {
    throw new BadOptionError(name, `expected an integer from 1 to ${max}, got ${String(value)}`);
  }
  return value as number;
}

function validateRestartIntensity(value: unknown): RestartIntensity {
  if (value === undefined) return { ...DEFAULT_RESTART_INTENSITY };
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new BadOptionError('restartIntensity', 'expected { maxRestarts, periodMs }');
  }
  const o = value as Record<string, unknown>;
  for (const key of Object.keys(o)) {
    if (key !== 'maxRestarts' && key !== 'periodMs') throw new BadOptionError(`restartIntensity.${key}`, 'unknown option');
  }
  const maxRestarts = o.maxRestarts ?? DEFAULT_RESTART_INTENSITY.maxRestarts;
  const periodMs = o.periodMs ?? DEFAULT_RESTART_INTENSITY.periodMs;
  if (!Number.isSafeInteger(maxRestarts) || (maxRestarts as number) < 0) {
    throw new BadOptionError('restartIntensity.maxRestarts', `expected a non-negative integer, got ${String(maxRestarts)}`);
  }
  if (!Number.isSafeInteger(periodMs) || (periodMs as number) < 1) {
    throw new BadOptionError('restartIntensity.periodMs', `expected a positive integer of milliseconds, got ${String(periodMs)}`);
  }
  return { maxRestarts: maxRestarts as number, periodMs: periodMs as number };
}

function validateExecArgv(value: unknown): readonly string[] | undefined {
  if (value === undefined) return undefined;
  if (!Array.isArray(value) || !value.every((a) => typeof a === 'string')) {
    throw new BadOptionError('workerExecArgv', 'expected an array of strings');
  }
  return Object.freeze([...value as string[]]);
}

/**
 * Validate listener options and the transport's socket options.
 * Throws {@link BadOptionError} naming the first bad option.
 */
export function normalizeListenerOptions<SO extends object>(
  transport: Transport<unknown, never, unknown, SO>,
  input: unknown,
): { config: ListenerConfig; socketOpts: SO } {
  if (input === undefined || input === null) input = {};
  if (typeof input !== 'object' || Array.isArray(input)) {
    throw new BadOptionError('transportOpts', 'expected an object of listener options');
  }
  const o = input as Record<string, unknown>;
  for (const key of Object.keys(o)) {
    if (!KNOWN.has(key)) throw new BadOptionError(key, 'unknown listener option');
  }
  const socketOpts = transport.normalizeOptions(o.socketOpts);
  if (o.overflow !== undefined && o.overflow !== 'queue' && o.overflow !== 'reject') {
    throw new BadOptionError('overflow', `expected 'queue' or 'reject', got ${String(o.overflow)}`);
  }
  if (o.logger !== undefined && !isLogger(o.logger)) {
    throw new BadOptionError('logger', 'expected a pino-compatible logger (error, warn, info, debug methods)');
  }
  if (o.postListenCallback !== undefined && typeof o.postListenCallback !== 'function') {
    throw new BadOptionError('postListenCallback', 'expected a function');
  }
  const backlog = (socketOpts as { backlog?: unknown }).backlog;
  const numAcceptors = count('numAcceptors', o.numAcceptors, 1, MAX_ACCEPTORS);
  const numListenSockets = count('numListenSockets', o.numListenSockets, 1, MAX_ACCEPTORS);
  if (numListenSockets > numAcceptors) {
    throw new BadOptionError('numListenSockets', `cannot exceed numAcceptors (${numAcceptors}): each listen socket needs a worker accepting from it`);
  }
  const config: ListenerConfig = {
    handshakeTimeout: limit('handshakeTimeout', o.handshakeTimeout, DEFAULT_HANDSHAKE_TIMEOUT),
    maxConnections: validateMaxConnections(o.maxConnections),
    overflow: (o.overflow as OverflowMode | undefined) ?? 'queue',
    maxWaiting: limit('maxWaiting', o.maxWaiting, typeof backlog === 'number' ? backlog : DEFAULT_BACKLOG),
    shutdown: validateShutdown(o.shutdown),
    alarms: validateAlarms(o.alarms),
    logger: (o.logger as Logger | undefined) ?? silentLogger,
    postListenCallback: o.postListenCallback as ListenerConfig['postListenCallback'],
    proxyHeader: normalizeProxyPolicy(o.proxyHeader),
    numAcceptors,
    numListenSockets,
    restartIntensity: validateRestartIntensity(o.restartIntensity),
    workerExecArgv: validateExecArgv(o.workerExecArgv),
  };
  return { config, socketOpts };
}
