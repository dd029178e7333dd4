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
  /** Called with each listen socket after it listens (at start and at every resume). A throw fails the start/resume. */
  postListenCallback?: (server: net.Server) => void | Promise<void>;
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
}

export const DEFAULT_HANDSHAKE_TIMEOUT = 5000;
export const DEFAULT_MAX_CONNECTIONS = 1024;
export const DEFAULT_SHUTDOWN = 5000;
export const DEFAULT_ALARM_COOLDOWN = 5000;
const DEFAULT_BACKLOG = 1024;

const KNOWN = new Set([
  'socketOpts', 'handshakeTimeout', 'maxConnections', 'overflow', 'maxWaiting',
  'shutdown', 'alarms', 'logger', 'postListenCallback', 'proxyHeader',
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
  };
  return { config, socketOpts };
}
