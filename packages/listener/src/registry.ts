/**
 * The per-process registry of named listeners (Ranch's `ranch_server`) and the `ranch` module
 * API on refs. Each function is a thin lookup in front of the matching {@link Listener} method.
 */

import type { Connection } from './connection.js';
import { BadArgumentError, ListenerExistsError, ListenerNotFoundError } from './errors.js';
import { Listener, checkCountArgs, compareCount, type CountOperator, type ListenerInfo, type ListenerStatus } from './listener.js';
import type { ModuleSpecifier } from './modules.js';
import type { AnyTransport, ListenerOptions, SocketOptionsOf } from './options.js';
import type { Protocol, Ref, SocketAddress } from './types.js';

const listeners = new Map<Ref, Listener>();
// Refs whose start is under way, so a concurrent duplicate start fails fast.
const starting = new Set<Ref>();

function checkRef(ref: unknown): asserts ref is Ref {
  if (typeof ref !== 'string' && typeof ref !== 'symbol') {
    throw new BadArgumentError(`A listener ref must be a string or a symbol, got ${typeof ref}`);
  }
}

function lookup(ref: Ref): Listener {
  checkRef(ref);
  const listener = listeners.get(ref);
  if (listener === undefined) throw new ListenerNotFoundError(ref);
  return listener;
}


/**
 * Start a listener named `ref` (Ranch's `start_listener`): validate every option, listen,
 * and register it. Rejects with `BadOptionError`, `BadTransportError`, `BadProtocolError`,
 * `ListenerExistsError` or `ListenError` (reason `eaddrinuse`, `eacces`, ...); nothing is
 * registered then, no worker process is left, and other listeners are untouched.
 *
 * The transport and the protocol are objects, or module specifiers naming modules that export
 * them (required for the protocol, and for a transport other than `tcp` and `tls`, with
 * `numAcceptors` > 1: worker processes import them).
 */
export async function startListener<T extends AnyTransport, PO>(
  ref: Ref,
  transport: T | ModuleSpecifier,
  transportOpts: ListenerOptions<SocketOptionsOf<T>> | undefined,
  protocol: Protocol<T, PO> | ModuleSpecifier,
  protocolOpts: PO,
): Promise<Listener<T, PO>> {
  checkRef(ref);
  if (listeners.has(ref) || starting.has(ref)) throw new ListenerExistsError(ref);
  starting.add(ref);
  try {
    const listener = await Listener.start<T, PO>({
      ref, embedded: false, transport, transportOpts, protocol, protocolOpts,
      onStopped: () => {
        if (listeners.get(ref) === (listener as unknown as Listener)) listeners.delete(ref);
      },
    });
    listeners.set(ref, listener as unknown as Listener);
    return listener;
  } finally {
    starting.delete(ref);
  }
}

/** Options of {@link startEmbeddedListener}. */
export interface EmbeddedOptions {
  /** Stops the listener when aborted. */
  signal?: AbortSignal;
  /** A name for logs and `info()`; never registered. */
  ref?: Ref;
}

/**
 * Start a listener owned by the caller rather than registered by name (Ranch's embedded mode).
 * Use the returned object's methods; `stopListener(ref)` does not see it. Aborting `signal`
 * stops it.
 */
export async function startEmbeddedListener<T extends AnyTransport, PO>(
  transport: T | ModuleSpecifier,
  transportOpts: ListenerOptions<SocketOptionsOf<T>> | undefined,
  protocol: Protocol<T, PO> | ModuleSpecifier,
  protocolOpts: PO,
  opts: EmbeddedOptions = {},
): Promise<Listener<T, PO>> {
  const { signal } = opts;
  if (signal?.aborted) throw signal.reason;
  const listener = await Listener.start<T, PO>({
    ref: opts.ref ?? Symbol('embedded'), embedded: true, transport, transportOpts,
    protocol, protocolOpts,
    onStopped: () => signal?.removeEventListener('abort', stop),
  });
  function stop(): void {
    void listener.stop();
  }
  if (signal?.aborted) stop();
  else signal?.addEventListener('abort', stop, { once: true });
  return listener;
}

/** The registered listener named `ref`. Throws `ListenerNotFoundError`. */
export function getListener(ref: Ref): Listener {
  return lookup(ref);
}

/** Stop and unregister a listener (Ranch's `stop_listener`). Rejects with `ListenerNotFoundError`. */
export async function stopListener(ref: Ref): Promise<void> {
  await lookup(ref).stop();
}

export async function suspendListener(ref: Ref): Promise<void> {
  await lookup(ref).suspend();
}

export async function resumeListener(ref: Ref): Promise<void> {
  await lookup(ref).resume();
}

/**
 * Replace a listener's acceptor worker processes one at a time, the port open throughout and
 * every accepted connection drained within `shutdown`: deploy new protocol code without
 * dropping the listener. See {@link Listener.restartAcceptors}.
 */
export async function restartAcceptors(ref: Ref): Promise<void> {
  await lookup(ref).restartAcceptors();
}

export function getStatus(ref: Ref): ListenerStatus {
  return lookup(ref).getStatus();
}

export function getAddr(ref: Ref): SocketAddress | undefined {
  return lookup(ref).getAddr();
}

export function getPort(ref: Ref): number | undefined {
  return lookup(ref).getPort();
}

export function getMaxConnections(ref: Ref): number {
  return lookup(ref).getMaxConnections();
}

export function setMaxConnections(ref: Ref, max: number): void {
  lookup(ref).setMaxConnections(max);
}

export function getTransportOptions(ref: Ref): ListenerOptions {
  return lookup(ref).getTransportOptions() as ListenerOptions;
}

export function setTransportOptions(ref: Ref, opts: ListenerOptions): void {
  lookup(ref).setTransportOptions(opts as never);
}

export function getProtocolOptions(ref: Ref): unknown {
  return lookup(ref).getProtocolOptions();
}

export function setProtocolOptions(ref: Ref, opts: unknown): void {
  lookup(ref).setProtocolOptions(opts);
}

/** Ranch's `procs`: acceptor pids, or live connections. */
export function procs(ref: Ref, kind: 'acceptors'): number[];
export function procs(ref: Ref, kind: 'connections'): Connection[];
export function procs(ref: Ref, kind: 'acceptors' | 'connections'): number[] | Connection[] {
  const l = lookup(ref);
  return kind === 'acceptors' ? l.procs('acceptors') : l.procs(kind);
}

/** Every registered listener's info, or one listener's (Ranch's `info/0,1`). */
export function info(): Map<Ref, ListenerInfo>;
export function info(ref: Ref): ListenerInfo;
export function info(ref?: Ref): Map<Ref, ListenerInfo> | ListenerInfo {
  if (ref !== undefined) return lookup(ref).info();
  const all = new Map<Ref, ListenerInfo>();
  for (const [r, l] of listeners) all.set(r, l.info());
  return all;
}

/**
 * Resolve once the listener's live connections compare to `n` with `op` (Ranch's
 * `wait_for_connections`). An unknown ref counts 0, as in Ranch; when 0 does not satisfy the
 * comparison it rejects with `ListenerNotFoundError`.
 */
export async function waitForConnections(
  ref: Ref, op: CountOperator, n: number, opts: { signal?: AbortSignal } = {},
): Promise<void> {
  checkRef(ref);
  const listener = listeners.get(ref);
  if (listener !== undefined) return listener.waitForConnections(op, n, opts);
  checkCountArgs(op, n);
  if (!compareCount(op, 0, n)) throw new ListenerNotFoundError(ref);
}
