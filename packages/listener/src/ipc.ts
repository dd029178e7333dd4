/**
 * What a listener and its acceptor worker processes say to each other over the IPC channel
 * (`advanced` serialization: structured clones), and requests that expect an answer: each
 * carries an id, the answer names it, and a request not answered in time fails.
 */

import {
  BadArgumentError, BadOptionError, BadProtocolError, BadTransportError, CorralError, ListenError,
  NotSupportedError,
} from './errors.js';
import type { OverflowMode, ShutdownOption } from './options.js';
import type { ProxyHeaderMode, ProxyHeaderOptions } from './proxy-receive.js';
import type { ListenerMetrics } from './supervisor.js';
import type { TransportRef } from './modules.js';

/** The listener options a worker applies: its share of the limits, and what can cross. */
export interface WorkerOptions {
  handshakeTimeout: number;
  maxConnections: number;
  overflow: OverflowMode;
  maxWaiting: number;
  shutdown: ShutdownOption;
  proxyHeader: ProxyHeaderMode | ProxyHeaderOptions | undefined;
  /** The lowest pino level value worth sending to the listener's logger (Infinity: none). */
  logThreshold: number;
}

/** A worker's counters, as it reports them. */
export interface WorkerCounts {
  activeConnections: number;
  allConnections: number;
  waitingConnections: number;
  metrics: ListenerMetrics;
}

/** Parent to worker. Requests carry an `id`; notifications do not. */
export type ToWorker =
  | {
    type: 'init'; id: number; ref: string; transport: TransportRef; protocol: string;
    protocolOpts: unknown; options: WorkerOptions;
  }
  /** Sent with the bound socket as the message's handle. */
  | { type: 'listen'; id: number; socketOpts: unknown }
  | { type: 'unlisten'; id: number }
  | { type: 'stop'; id: number }
  | { type: 'options'; options: WorkerOptions }
  | { type: 'protocolOpts'; opts: unknown };

/** Worker to parent. */
export type FromWorker =
  | { type: 'reply'; id: number; ok: true; value?: unknown }
  | { type: 'reply'; id: number; ok: false; error: WireError }
  | { type: 'counts'; counts: WorkerCounts }
  | { type: 'log'; level: LogLevel; obj: Record<string, unknown>; msg: string | undefined };

export type LogLevel = 'error' | 'warn' | 'info' | 'debug';

/** pino's level values. */
export const LEVEL_VALUES: Readonly<Record<LogLevel, number>> = { error: 50, warn: 40, info: 30, debug: 20 };

/** An error as it crosses: enough to rebuild the same class on the other side. */
export interface WireError {
  readonly __error: true;
  name: string;
  message: string;
  stack: string | undefined;
  code: unknown;
  fields: Record<string, unknown>;
}

const FIELDS = ['option', 'reason', 'address', 'errno', 'syscall', 'peer', 'ref'];

export function toWire(err: unknown): WireError {
  if (!(err instanceof Error)) {
    return { __error: true, name: 'Error', message: String(err), stack: undefined, code: undefined, fields: {} };
  }
  const fields: Record<string, unknown> = {};
  for (const key of FIELDS) {
    const v = (err as unknown as Record<string, unknown>)[key];
    if (v !== undefined && (typeof v !== 'object' || v === null || Object.getPrototypeOf(v) === Object.prototype)) fields[key] = typeof v === 'symbol' ? String(v) : v;
  }
  return { __error: true, name: err.name, message: err.message, stack: err.stack, code: (err as { code?: unknown }).code, fields };
}

export function isWireError(value: unknown): value is WireError {
  return typeof value === 'object' && value !== null && (value as { __error?: unknown }).__error === true;
}

/** The error again, of its own Corral class where it has one. */
export function fromWire(w: WireError): Error {
  let err: Error;
  const f = w.fields;
  switch (w.name) {
    case 'BadProtocolError': err = new BadProtocolError(w.message); break;
    case 'BadTransportError': err = new BadTransportError(w.message); break;
    case 'BadOptionError': err = new BadOptionError(String(f.option), ''); break;
    case 'BadArgumentError': err = new BadArgumentError(w.message); break;
    case 'NotSupportedError': err = new NotSupportedError(w.message); break;
    case 'ListenError': {
      const cause = Object.assign(new Error(w.message), { code: typeof f.reason === 'string' ? f.reason.toUpperCase() : undefined });
      err = new ListenError(String(f.address), cause);
      break;
    }
    default:
      err = typeof w.code === 'string' && w.code.startsWith('ERR_CORRAL_') ? new CorralError(w.code, w.message) : new Error(w.message);
      if (!(err instanceof CorralError) && w.code !== undefined) (err as { code?: unknown }).code = w.code;
      err.name = w.name;
      for (const [k, v] of Object.entries(f)) (err as unknown as Record<string, unknown>)[k] ??= v;
  }
  err.message = w.message;
  if (w.stack !== undefined) err.stack = w.stack;
  return err;
}

/** A log record's fields as they cross: errors in wire form. */
export function logFieldsToWire(obj: object): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(obj)) out[k] = v instanceof Error ? toWire(v) : v;
  return out;
}

export function logFieldsFromWire(obj: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(obj)) out[k] = isWireError(v) ? fromWire(v) : v;
  return out;
}

interface Pending {
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout | undefined;
  what: string;
}

/** Requests sent on one IPC channel, waiting for their replies. */
export class Requests {
  #send: (message: ToWorker, handle: object | undefined, cb: (err: Error | null) => void) => void;
  #pending = new Map<number, Pending>();
  #nextId = 1;
  #closed: Error | undefined;

  constructor(send: (message: ToWorker, handle: object | undefined, cb: (err: Error | null) => void) => void) {
    this.#send = send;
  }

  /**
   * Send a request (the id is filled in) and resolve with the reply's value; reject with the
   * error the other side replied, or when `timeoutMs` passes, or when the channel closes.
   */
  request<T = unknown>(message: DistributiveOmit<Extract<ToWorker, { id: number }>, 'id'>, timeoutMs: number, handle?: object): Promise<T> {
    if (this.#closed !== undefined) return Promise.reject(this.#closed);
    const id = this.#nextId++;
    return new Promise<T>((resolve, reject) => {
      const pending: Pending = { resolve: resolve as (v: unknown) => void, reject, timer: undefined, what: message.type };
      if (timeoutMs !== Infinity) {
        pending.timer = setTimeout(() => {
          this.#pending.delete(id);
          reject(new CorralError('ERR_CORRAL_TIMEOUT', `No answer to ${message.type} within ${timeoutMs} ms`));
        }, timeoutMs);
      }
      this.#pending.set(id, pending);
      this.#send({ ...message, id } as ToWorker, handle, (err) => {
        if (err !== null) this.#settle(id, (p) => p.reject(err));
      });
    });
  }

  /** A reply arrived. */
  reply(message: Extract<FromWorker, { type: 'reply' }>): void {
    this.#settle(message.id, (p) => (message.ok ? p.resolve(message.value) : p.reject(fromWire(message.error))));
  }

  /** The channel is gone: every pending request fails with `err`, and so does every later one. */
  close(err: Error): void {
    this.#closed ??= err;
    for (const id of [...this.#pending.keys()]) this.#settle(id, (p) => p.reject(err));
  }

  #settle(id: number, fn: (p: Pending) => void): void {
    const p = this.#pending.get(id);
    if (p === undefined) return;
    this.#pending.delete(id);
    if (p.timer !== undefined) clearTimeout(p.timer);
    fn(p);
  }
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
