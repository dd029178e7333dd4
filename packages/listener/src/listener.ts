/**
 * A listener: one listen socket, its acceptor and its connection supervisor (Ranch's
 * `ranch_listener_sup`), with the operations Ranch offers on a running listener.
 */

import { openAcceptor } from './acceptor.js';
import type { Connection } from './connection.js';
import { BadArgumentError, BadProtocolError, BadTransportError, ListenerStateError } from './errors.js';
import {
  normalizeListenerOptions, validateMaxConnections,
  type AnyTransport, type ListenerConfig, type ListenerOptions, type SocketOptionsOf,
} from './options.js';
import { ConnectionSupervisor, type ListenerMetrics } from './supervisor.js';
import type { ListenSocket, Protocol, Ref, SocketAddress, Transport } from './types.js';

/** Ranch's listener status. */
export type ListenerStatus = 'running' | 'suspended';

/** Comparison for {@link Listener.waitForConnections}. `'=<'` is accepted as Erlang spells it. */
export type CountOperator = '>' | '>=' | '==' | '<=' | '=<' | '<';

/** What `info()` reports for one listener. */
export interface ListenerInfo {
  ref: Ref;
  /** Owned by its caller rather than registered by name. */
  embedded: boolean;
  status: ListenerStatus;
  /** The process accepting the connections. */
  pid: number;
  /** Bound address; undefined while suspended. */
  address: SocketAddress | undefined;
  /** Bound TCP port; undefined while suspended or on a UNIX socket. */
  port: number | undefined;
  maxConnections: number;
  /** Connections counted towards `maxConnections`. */
  activeConnections: number;
  /** Every live connection, including removed ones (Ranch's `all_connections`). */
  allConnections: number;
  /** Accepted connections held paused while the listener is full. */
  waitingConnections: number;
  metrics: ListenerMetrics;
  transport: string;
  transportOptions: ListenerOptions<object>;
  protocol: string;
  protocolOptions: unknown;
}

interface Waiter {
  op: CountOperator;
  n: number;
  resolve: () => void;
}

const OPERATORS = new Set<CountOperator>(['>', '>=', '==', '<=', '=<', '<']);

/** @internal Whether `count op n` holds. */
export function compareCount(op: CountOperator, count: number, n: number): boolean {
  switch (op) {
    case '>': return count > n;
    case '>=': return count >= n;
    case '==': return count === n;
    case '<=': case '=<': return count <= n;
    case '<': return count < n;
  }
}

/** @internal Ranch's `badarg` checks of `wait_for_connections`. */
export function checkCountArgs(op: CountOperator, n: number): void {
  if (!OPERATORS.has(op)) throw new BadArgumentError(`Unknown operator ${String(op)}`);
  if (!Number.isSafeInteger(n) || n < 0) throw new BadArgumentError(`Expected a non-negative integer count, got ${String(n)}`);
  if (op === '<' && n === 0) throw new BadArgumentError("'<' 0 can never be true");
}

/** Check a transport object up front, so a wrong one fails at start rather than on the first connection. */
export function checkTransport(transport: unknown): asserts transport is AnyTransport {
  if (typeof transport !== 'object' || transport === null) throw new BadTransportError('The transport must be an object');
  const t = transport as Record<string, unknown>;
  if (typeof t.name !== 'string') throw new BadTransportError('The transport has no name');
  for (const fn of ['normalizeOptions', 'listen', 'cleanup', 'handshake', 'handshakeContinue', 'handshakeCancel', 'close']) {
    if (typeof t[fn] !== 'function') throw new BadTransportError(`Transport ${t.name} does not implement ${fn}()`);
  }
}

/** The protocol as the supervisor calls it. */
type StartFn = (conn: unknown, transport: unknown, opts: unknown) => unknown;

function protocolFunction(protocol: unknown): { start: StartFn; name: string } {
  if (typeof protocol === 'function') return { start: protocol as StartFn, name: protocol.name || 'anonymous' };
  if (typeof protocol === 'object' && protocol !== null && typeof (protocol as { start?: unknown }).start === 'function') {
    const p = protocol as { start: StartFn; name?: unknown };
    return { start: p.start.bind(p), name: typeof p.name === 'string' ? p.name : p.start.name || 'anonymous' };
  }
  throw new BadProtocolError('The protocol must be a function or an object with a start() function');
}

/** Arguments of {@link Listener.start}. */
export interface ListenerSpec<T extends AnyTransport, PO> {
  ref: Ref;
  embedded: boolean;
  transport: T;
  transportOpts: ListenerOptions<SocketOptionsOf<T>> | undefined;
  protocol: Protocol<T, PO>;
  protocolOpts: PO;
  onStopped?: () => void;
}

/**
 * A started listener. Every `ranch:*` operation on a ref is also a method here.
 */
export class Listener<T extends AnyTransport = AnyTransport, PO = unknown> {
  readonly ref: Ref;
  readonly embedded: boolean;

  #transport: T;
  #config: ListenerConfig;
  #socketOpts: object;
  // Socket options set while running take effect at the next resume, as in Ranch.
  #nextSocketOpts: object;
  #nextPostListen: ListenerConfig['postListenCallback'];
  #protocol: { start: StartFn; name: string };
  #protocolOpts: PO;
  #status: ListenerStatus | 'stopping' | 'stopped' = 'suspended';
  #socket: ListenSocket | undefined;
  #address: SocketAddress | undefined;
  #sup: ConnectionSupervisor;
  #waiters = new Set<Waiter>();
  // Lifecycle operations run one at a time, in call order.
  #queue: Promise<unknown> = Promise.resolve();
  #onStopped: (() => void) | undefined;
  #stopped: Promise<void> | undefined;

  private constructor(spec: ListenerSpec<T, PO>) {
    checkTransport(spec.transport);
    this.#protocol = protocolFunction(spec.protocol);
    const { config, socketOpts } = normalizeListenerOptions(spec.transport as Transport<unknown, never, unknown, object>, spec.transportOpts);
    this.ref = spec.ref;
    this.embedded = spec.embedded;
    this.#transport = spec.transport;
    this.#config = config;
    this.#socketOpts = socketOpts;
    this.#nextSocketOpts = socketOpts;
    this.#nextPostListen = config.postListenCallback;
    this.#protocolOpts = spec.protocolOpts;
    this.#onStopped = spec.onStopped;
    this.#sup = new ConnectionSupervisor({
      ref: this.ref,
      config: () => this.#config,
      transport: () => this.#transport as Transport<unknown, unknown, unknown, object>,
      protocol: () => ({ start: this.#protocol.start, opts: this.#protocolOpts }),
      socketOpts: () => this.#socketOpts,
    }, () => this.#countChanged());
  }

  /** @internal Validate, listen and return a running listener. Use `startListener`. */
  static async start<T extends AnyTransport, PO>(spec: ListenerSpec<T, PO>): Promise<Listener<T, PO>> {
    const listener = new Listener(spec);
    await listener.#listen();
    listener.#status = 'running';
    return listener;
  }

  async #listen(): Promise<void> {
    this.#socketOpts = this.#nextSocketOpts;
    this.#config = { ...this.#config, postListenCallback: this.#nextPostListen };
    const socket = await openAcceptor(this.#transport as Transport<unknown, unknown, unknown, object>, this.#socketOpts, this.#config, this.#sup);
    this.#socket = socket;
    this.#address = socket.address();
  }

  #serial<R>(op: () => Promise<R>): Promise<R> {
    const run = this.#queue.then(op, op);
    this.#queue = run.catch(() => {});
    return run;
  }

  // A stopping listener still answers questions (it is still registered); a stopped one does not.
  #assertAlive(): void {
    if (this.#status === 'stopped') {
      throw new ListenerStateError(`Listener ${String(this.ref)} is stopped`);
    }
  }

  /** `'running'` or `'suspended'` (Ranch's `get_status`). A listener that is stopping no longer accepts: `'suspended'`. */
  getStatus(): ListenerStatus {
    this.#assertAlive();
    return this.#status === 'running' && this.#stopped === undefined ? 'running' : 'suspended';
  }

  /** The bound address, or undefined while suspended (Ranch's `get_addr`). */
  getAddr(): SocketAddress | undefined {
    this.#assertAlive();
    return this.#address;
  }

  /** The bound port, or undefined while suspended or on a UNIX socket (Ranch's `get_port`). */
  getPort(): number | undefined {
    this.#assertAlive();
    const a = this.#address;
    return a !== undefined && a.family !== 'local' ? a.port : undefined;
  }

  /**
   * Close the listen socket, keeping live connections (Ranch's `suspend_listener`).
   * New connection attempts are refused until {@link resume}. Idempotent.
   */
  suspend(): Promise<void> {
    return this.#serial(async () => {
      this.#assertAlive();
      if (this.#status !== 'running') return;
      this.#status = 'suspended';
      const socket = this.#socket;
      this.#socket = undefined;
      this.#address = undefined;
      await socket?.close();
    });
  }

  /** Listen again with the current transport options (Ranch's `resume_listener`). Idempotent. */
  resume(): Promise<void> {
    return this.#serial(async () => {
      this.#assertAlive();
      if (this.#stopped !== undefined) throw new ListenerStateError(`Listener ${String(this.ref)} is stopping`);
      if (this.#status === 'running') return;
      await this.#listen();
      this.#status = 'running';
    });
  }

  /**
   * Stop accepting, ask every connection to finish (its `signal` aborts), destroy what is left
   * after `shutdown`, and resolve when every connection is gone (Ranch's `stop_listener`).
   * Calling it again returns the same promise.
   */
  stop(): Promise<void> {
    this.#stopped ??= this.#serial(async () => {
      this.#status = 'stopping';
      const socket = this.#socket;
      this.#socket = undefined;
      this.#address = undefined;
      await socket?.close();
      await this.#sup.shutdown();
      await this.#transport.cleanup(this.#socketOpts as never);
      this.#status = 'stopped';
      this.#countChanged();
      this.#onStopped?.();
    });
    return this.#stopped;
  }

  /** Whether `stop` has completed. */
  get stopped(): boolean {
    return this.#status === 'stopped';
  }

  getMaxConnections(): number {
    this.#assertAlive();
    return this.#config.maxConnections;
  }

  /**
   * Change the connection limit now (Ranch's `set_max_connections`). Raising it starts waiting
   * connections; lowering it closes nothing.
   */
  setMaxConnections(max: number): void {
    this.#assertAlive();
    this.#config = { ...this.#config, maxConnections: validateMaxConnections(max) };
    this.#sup.admit();
  }

  /** The listener options as last set, socket options included (Ranch's `get_transport_options`). */
  getTransportOptions(): ListenerOptions<SocketOptionsOf<T>> {
    this.#assertAlive();
    const c = this.#config;
    return {
      socketOpts: { ...this.#nextSocketOpts } as Partial<SocketOptionsOf<T>>,
      handshakeTimeout: c.handshakeTimeout,
      maxConnections: c.maxConnections,
      overflow: c.overflow,
      maxWaiting: c.maxWaiting,
      shutdown: c.shutdown,
      alarms: { ...c.alarms },
      logger: c.logger,
      ...(c.proxyHeader !== undefined ? { proxyHeader: c.proxyHeader.source } : {}),
      ...(this.#nextPostListen !== undefined ? { postListenCallback: this.#nextPostListen } : {}),
    };
  }

  /**
   * Replace the listener options (Ranch's `set_transport_options`). Limits, timeouts, alarms
   * and the logger apply at once; socket options and `postListenCallback` at the next resume.
   */
  setTransportOptions(opts: ListenerOptions<SocketOptionsOf<T>>): void {
    this.#assertAlive();
    const { config, socketOpts } = normalizeListenerOptions(this.#transport as Transport<unknown, never, unknown, object>, opts);
    this.#nextSocketOpts = socketOpts;
    this.#nextPostListen = config.postListenCallback;
    this.#config = { ...config, postListenCallback: this.#config.postListenCallback };
    this.#sup.alarmsChanged();
    this.#sup.admit();
  }

  getProtocolOptions(): PO {
    this.#assertAlive();
    return this.#protocolOpts;
  }

  /** Replace the protocol options; connections started from now on get them (Ranch's `set_protocol_options`). */
  setProtocolOptions(opts: PO): void {
    this.#assertAlive();
    this.#protocolOpts = opts;
  }

  /** Ranch's `procs`: the accepting processes' pids, or the live connections. */
  procs(kind: 'acceptors'): number[];
  procs(kind: 'connections'): Connection[];
  procs(kind: 'acceptors' | 'connections'): number[] | Connection[] {
    this.#assertAlive();
    if (kind === 'acceptors') return this.#status === 'running' ? [process.pid] : [];
    if (kind === 'connections') return this.#sup.connections() as unknown as Connection[];
    throw new BadArgumentError(`procs() takes 'acceptors' or 'connections', got ${String(kind)}`);
  }

  /** A snapshot of the listener's state and counters (Ranch's `info/1`). */
  info(): ListenerInfo {
    this.#assertAlive();
    const sup = this.#sup;
    return {
      ref: this.ref,
      embedded: this.embedded,
      status: this.getStatus(),
      pid: process.pid,
      address: this.#address,
      port: this.getPort(),
      maxConnections: this.#config.maxConnections,
      activeConnections: sup.activeConnections,
      allConnections: sup.allConnections,
      waitingConnections: sup.waitingConnections,
      metrics: { ...sup.metrics },
      transport: this.#transport.name,
      transportOptions: this.getTransportOptions() as ListenerOptions<object>,
      protocol: this.#protocol.name,
      protocolOptions: this.#protocolOpts,
    };
  }

  /**
   * Resolve once the number of live connections compares to `n` with `op`
   * (Ranch's `wait_for_connections`). A stopped listener counts 0. Rejects with the
   * signal's reason when `signal` aborts.
   */
  waitForConnections(op: CountOperator, n: number, opts: { signal?: AbortSignal } = {}): Promise<void> {
    checkCountArgs(op, n);
    const { signal } = opts;
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (compareCount(op, this.#count(), n)) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        this.#waiters.delete(waiter);
        reject(signal?.reason);
      };
      const waiter: Waiter = {
        op, n,
        resolve: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      this.#waiters.add(waiter);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  #count(): number {
    return this.#status === 'stopped' ? 0 : this.#sup.allConnections;
  }

  #countChanged(): void {
    if (this.#waiters.size === 0) return;
    const count = this.#count();
    for (const w of this.#waiters) {
      if (compareCount(w.op, count, w.n)) {
        this.#waiters.delete(w);
        w.resolve();
      }
    }
  }
}
