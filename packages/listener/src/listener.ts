/**
 * A listener: one listen socket, its acceptors and its connection supervision (Ranch's
 * `ranch_listener_sup`), with the operations Ranch offers on a running listener. The acceptors
 * run in this process (`numAcceptors` 1) or in a pool of worker processes this one supervises.
 */

import { InProcessAcceptors, type AcceptorWorkerInfo, type Acceptors } from './acceptor.js';
import { AcceptorPool, checkProtocolOptions, checkWorkerOptions, checkWorkerPlan } from './acceptor-pool.js';
import type { Connection } from './connection.js';
import { BadArgumentError, BadOptionError, BadProtocolError, BadTransportError, ListenerStateError } from './errors.js';
import {
  builtinTransportName, checkModuleExists, checkTransport, importProtocol, importTransport, isModuleSpecifier,
  moduleName, protocolFunction, specifierHref, type LoadedProtocol, type ModuleSpecifier, type TransportRef,
} from './modules.js';
import {
  normalizeListenerOptions, validateMaxConnections,
  type AnyTransport, type ListenerConfig, type ListenerOptions, type SocketOptionsOf,
} from './options.js';
import type { ListenerMetrics } from './supervisor.js';
import type { Protocol, Ref, SocketAddress, Transport } from './types.js';

export { checkTransport } from './modules.js';

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
  /** Accepting processes: 1 is this one; more are worker processes, each listed in `workers`. */
  numAcceptors: number;
  /**
   * With worker processes (`numAcceptors` > 1): each one's figures, those draining before they
   * exit included. The listener's counts and metrics are their sums (metrics include the workers
   * gone before).
   */
  workers?: AcceptorWorkerInfo[];
  /** With worker processes: how many crashed workers were restarted. */
  restarts?: number;
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

/** Arguments of {@link Listener.start}. */
export interface ListenerSpec<T extends AnyTransport, PO> {
  ref: Ref;
  embedded: boolean;
  /** A transport object, or a module specifier naming a module that exports one. */
  transport: T | ModuleSpecifier;
  transportOpts: ListenerOptions<SocketOptionsOf<T>> | undefined;
  /** A protocol function or object, or a module specifier naming a module that exports one. */
  protocol: Protocol<T, PO> | ModuleSpecifier;
  protocolOpts: PO;
  onStopped?: () => void;
}

/** What the socket options will be at the next listen (start or resume), as in Ranch. */
interface NextListen {
  socketOpts: object;
  /** As given, for worker processes (which normalise them again). */
  rawSocketOpts: unknown;
  postListenCallback: ListenerConfig['postListenCallback'];
  numAcceptors: number;
  numListenSockets: number;
}

/** How the listener's protocol is known: a function here, or a module the workers import. */
interface ProtocolSource {
  name: string;
  /** Set when the protocol runs in this process. */
  local: LoadedProtocol | undefined;
  /** Set when it was named by module specifier. */
  href: string | undefined;
}

async function resolveTransport(transport: unknown): Promise<{ transport: AnyTransport; ref: TransportRef | undefined }> {
  if (isModuleSpecifier(transport)) {
    const href = specifierHref(transport, (m) => new BadTransportError(m));
    checkModuleExists(href, (m) => new BadTransportError(`Cannot import the transport module ${m}`));
    return { transport: await importTransport(href), ref: { module: href } };
  }
  checkTransport(transport);
  const builtin = builtinTransportName(transport);
  return { transport, ref: builtin === undefined ? undefined : { builtin } };
}

function protocolSource(protocol: unknown): ProtocolSource {
  if (isModuleSpecifier(protocol)) {
    const href = specifierHref(protocol, (m) => new BadProtocolError(m));
    checkModuleExists(href, (m) => new BadProtocolError(`Cannot import the protocol module ${m}`));
    return { name: moduleName(href), local: undefined, href };
  }
  const local = protocolFunction(protocol);
  return { name: local.name, local, href: undefined };
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
  #next: NextListen;
  #protocol: ProtocolSource;
  #protocolOpts: PO;
  #status: ListenerStatus | 'stopping' | 'stopped' = 'suspended';
  #address: SocketAddress | undefined;
  #acceptors: Acceptors;
  #pool: AcceptorPool | undefined;
  #waiters = new Set<Waiter>();
  // Lifecycle operations run one at a time, in call order.
  #queue: Promise<unknown> = Promise.resolve();
  #onStopped: (() => void) | undefined;
  #stopped: Promise<void> | undefined;
  #failure: Error | undefined;
  #terminated: Promise<Error | undefined>;
  #terminate!: (reason: Error | undefined) => void;

  private constructor(
    spec: ListenerSpec<T, PO>,
    transport: { transport: AnyTransport; ref: TransportRef | undefined },
    protocol: ProtocolSource,
    normalized: { config: ListenerConfig; socketOpts: object },
  ) {
    const { config, socketOpts } = normalized;
    this.ref = spec.ref;
    this.embedded = spec.embedded;
    this.#transport = transport.transport as T;
    this.#config = config;
    this.#socketOpts = socketOpts;
    this.#next = {
      socketOpts,
      rawSocketOpts: spec.transportOpts?.socketOpts,
      postListenCallback: config.postListenCallback,
      numAcceptors: config.numAcceptors,
      numListenSockets: config.numListenSockets,
    };
    this.#protocol = protocol;
    this.#protocolOpts = spec.protocolOpts;
    this.#onStopped = spec.onStopped;
    this.#terminated = new Promise((resolve) => {
      this.#terminate = resolve;
    });
    if (config.numAcceptors === 1) {
      const local = protocol.local!;
      this.#acceptors = new InProcessAcceptors({
        ref: this.ref,
        config: () => this.#config,
        transport: () => this.#transport as Transport<unknown, unknown, unknown, object>,
        protocol: () => ({ start: local.start, opts: this.#protocolOpts }),
        socketOpts: () => this.#socketOpts,
      }, () => this.#countChanged());
    } else {
      this.#pool = new AcceptorPool({
        ref: this.ref,
        transportRef: transport.ref!,
        protocolHref: protocol.href!,
        config: () => this.#config,
        transport: () => this.#transport,
        protocolOpts: () => this.#protocolOpts,
        onCount: () => this.#countChanged(),
        onFatal: (err) => this.#fail(err),
      });
      this.#acceptors = this.#pool;
    }
  }

  /** @internal Validate, listen and return a running listener. Use `startListener`. */
  static async start<T extends AnyTransport, PO>(spec: ListenerSpec<T, PO>): Promise<Listener<T, PO>> {
    const transport = await resolveTransport(spec.transport);
    const protocol = protocolSource(spec.protocol);
    const normalized = normalizeListenerOptions(transport.transport as Transport<unknown, never, unknown, object>, spec.transportOpts);
    if (normalized.config.numAcceptors === 1) {
      protocol.local ??= await importProtocol(protocol.href!);
    } else {
      checkWorkerPlan({
        transport: transport.transport,
        transportRef: transport.ref,
        protocolHref: protocol.href,
        protocolOpts: spec.protocolOpts,
        rawSocketOpts: spec.transportOpts?.socketOpts,
        config: normalized.config,
        socketOpts: normalized.socketOpts,
      });
    }
    const listener = new Listener(spec, transport, protocol, normalized);
    try {
      await listener.#listen();
    } catch (err) {
      await listener.#acceptors.shutdown().catch(() => {});
      throw err;
    }
    listener.#status = 'running';
    return listener;
  }

  async #listen(): Promise<void> {
    const next = this.#next;
    this.#socketOpts = next.socketOpts;
    this.#config = {
      ...this.#config,
      postListenCallback: next.postListenCallback,
      numAcceptors: next.numAcceptors,
      numListenSockets: next.numListenSockets,
    };
    this.#address = await this.#acceptors.listen(next.socketOpts, next.rawSocketOpts);
  }

  #serial<R>(op: () => Promise<R>): Promise<R> {
    const run = this.#queue.then(op, op);
    this.#queue = run.catch(() => {});
    return run;
  }

  // A stopping listener still answers questions (it is still registered); a stopped one does not.
  #assertAlive(): void {
    if (this.#status === 'stopped') {
      throw new ListenerStateError(
        `Listener ${String(this.ref)} is stopped${this.#failure === undefined ? '' : `: ${this.#failure.message}`}`,
        { cause: this.#failure },
      );
    }
  }

  /** The workers crashed too often: log it and stop. */
  #fail(err: Error): void {
    if (this.#failure !== undefined || this.#stopped !== undefined) return;
    this.#failure = err;
    try {
      this.#config.logger.error({ listener: String(this.ref), err }, 'acceptor workers crashed too often: stopping the listener');
    } catch {
      // The listener stops all the same.
    }
    void this.stop();
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
   * New connection attempts are refused until {@link resume}. Idempotent. With worker processes,
   * they stop accepting and keep serving their connections.
   */
  suspend(): Promise<void> {
    return this.#serial(async () => {
      this.#assertAlive();
      if (this.#status !== 'running') return;
      this.#status = 'suspended';
      this.#address = undefined;
      await this.#acceptors.close();
    });
  }

  /**
   * Listen again with the current transport options (Ranch's `resume_listener`), `numAcceptors`
   * included. Idempotent.
   */
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
   * after `shutdown`, and resolve when every connection is gone (Ranch's `stop_listener`); worker
   * processes have exited by then. Calling it again returns the same promise.
   */
  stop(): Promise<void> {
    this.#stopped ??= this.#serial(async () => {
      this.#status = 'stopping';
      this.#address = undefined;
      try {
        await this.#acceptors.shutdown();
        await this.#transport.cleanup(this.#socketOpts as never);
      } finally {
        this.#status = 'stopped';
        this.#countChanged();
        this.#onStopped?.();
        this.#terminate(this.#failure);
      }
    });
    return this.#stopped;
  }

  /** Whether `stop` has completed. */
  get stopped(): boolean {
    return this.#status === 'stopped';
  }

  /**
   * Resolves once the listener has stopped: with undefined after {@link stop}, or with the error
   * that stopped it otherwise (`RestartIntensityError`: its worker processes crashed more often
   * than `restartIntensity` allows). Never rejects.
   */
  get terminated(): Promise<Error | undefined> {
    return this.#terminated;
  }

  /**
   * Replace the acceptor worker processes one at a time: each new worker listens before the old
   * one stops accepting and drains its connections within `shutdown`, so the port stays open and
   * no accepted connection is dropped. The new workers load the protocol module afresh: the way
   * to deploy new code. Rejects with the error of a worker that fails to start (the old one then
   * stays), and with `NotSupportedError` on a listener that accepts in this process.
   */
  restartAcceptors(): Promise<void> {
    return this.#serial(async () => {
      this.#assertAlive();
      if (this.#stopped !== undefined) throw new ListenerStateError(`Listener ${String(this.ref)} is stopping`);
      await this.#acceptors.restart();
    });
  }

  getMaxConnections(): number {
    this.#assertAlive();
    return this.#config.maxConnections;
  }

  /**
   * Change the connection limit now (Ranch's `set_max_connections`). Raising it starts waiting
   * connections; lowering it closes nothing. With worker processes each gets
   * ceil(max / numAcceptors).
   */
  setMaxConnections(max: number): void {
    this.#assertAlive();
    this.#config = { ...this.#config, maxConnections: validateMaxConnections(max) };
    this.#acceptors.limitsChanged();
  }

  /** The listener options as last set, socket options included (Ranch's `get_transport_options`). */
  getTransportOptions(): ListenerOptions<SocketOptionsOf<T>> {
    this.#assertAlive();
    const c = this.#config;
    const next = this.#next;
    return {
      socketOpts: { ...next.socketOpts } as Partial<SocketOptionsOf<T>>,
      handshakeTimeout: c.handshakeTimeout,
      maxConnections: c.maxConnections,
      overflow: c.overflow,
      maxWaiting: c.maxWaiting,
      shutdown: c.shutdown,
      alarms: { ...c.alarms },
      logger: c.logger,
      ...(c.proxyHeader !== undefined ? { proxyHeader: c.proxyHeader.source } : {}),
      ...(next.postListenCallback !== undefined ? { postListenCallback: next.postListenCallback } : {}),
      numAcceptors: next.numAcceptors,
      numListenSockets: next.numListenSockets,
      restartIntensity: { ...c.restartIntensity },
      ...(c.workerExecArgv !== undefined ? { workerExecArgv: [...c.workerExecArgv] } : {}),
    };
  }

  /**
   * Replace the listener options (Ranch's `set_transport_options`). Limits, timeouts, alarms
   * and the logger apply at once; socket options, `postListenCallback`, `numAcceptors` and
   * `numListenSockets` at the next resume. A listener started in this process stays in it
   * (`numAcceptors` 1), and one with worker processes keeps more than one.
   */
  setTransportOptions(opts: ListenerOptions<SocketOptionsOf<T>>): void {
    this.#assertAlive();
    const { config, socketOpts } = normalizeListenerOptions(this.#transport as Transport<unknown, never, unknown, object>, opts);
    const rawSocketOpts = (opts as ListenerOptions | undefined)?.socketOpts;
    if (this.#pool === undefined) {
      if (config.numAcceptors !== 1) {
        throw new BadOptionError('numAcceptors', 'this listener accepts in its own process (1): stop it and start it again to run worker processes');
      }
    } else {
      if (config.numAcceptors === 1) {
        throw new BadOptionError('numAcceptors', 'this listener runs worker processes: give their number (more than 1; setTransportOptions replaces every option, and the default is 1), or stop it and start it again to accept in this process');
      }
      checkWorkerOptions(config, rawSocketOpts, socketOpts);
    }
    this.#next = {
      socketOpts,
      rawSocketOpts,
      postListenCallback: config.postListenCallback,
      numAcceptors: config.numAcceptors,
      numListenSockets: config.numListenSockets,
    };
    const current = this.#config;
    this.#config = {
      ...config,
      postListenCallback: current.postListenCallback,
      numAcceptors: current.numAcceptors,
      numListenSockets: current.numListenSockets,
    };
    this.#acceptors.optionsChanged();
  }

  getProtocolOptions(): PO {
    this.#assertAlive();
    return this.#protocolOpts;
  }

  /**
   * Replace the protocol options; connections started from now on get them (Ranch's
   * `set_protocol_options`). With worker processes they must be structured-cloneable
   * (`BadOptionError` otherwise).
   */
  setProtocolOptions(opts: PO): void {
    this.#assertAlive();
    if (this.#pool !== undefined) checkProtocolOptions(opts);
    this.#protocolOpts = opts;
    this.#acceptors.protocolOptionsChanged();
  }

  /**
   * Ranch's `procs`: the accepting processes' pids (this process, or the worker processes),
   * empty while suspended; or the live connections (with worker processes they are in those
   * processes: `NotSupportedError`).
   */
  procs(kind: 'acceptors'): number[];
  procs(kind: 'connections'): Connection[];
  procs(kind: 'acceptors' | 'connections'): number[] | Connection[] {
    this.#assertAlive();
    if (kind === 'acceptors') return this.#status === 'running' ? this.#acceptors.pids() : [];
    if (kind === 'connections') return this.#acceptors.connections();
    throw new BadArgumentError(`procs() takes 'acceptors' or 'connections', got ${String(kind)}`);
  }

  /** A snapshot of the listener's state and counters (Ranch's `info/1`). */
  info(): ListenerInfo {
    this.#assertAlive();
    const a = this.#acceptors;
    const workers = a.workers();
    return {
      ref: this.ref,
      embedded: this.embedded,
      status: this.getStatus(),
      pid: process.pid,
      address: this.#address,
      port: this.getPort(),
      maxConnections: this.#config.maxConnections,
      activeConnections: a.activeConnections,
      allConnections: a.allConnections,
      waitingConnections: a.waitingConnections,
      metrics: a.metrics(),
      transport: this.#transport.name,
      transportOptions: this.getTransportOptions() as ListenerOptions<object>,
      protocol: this.#protocol.name,
      protocolOptions: this.#protocolOpts,
      numAcceptors: this.#config.numAcceptors,
      ...(workers !== undefined ? { workers, restarts: this.#pool!.restarts } : {}),
    };
  }

  /**
   * Resolve once the number of live connections compares to `n` with `op`
   * (Ranch's `wait_for_connections`). A stopped listener counts 0. Rejects with the
   * signal's reason when `signal` aborts. With worker processes the count is the sum of the
   * counts they report, each within a few milliseconds of a change.
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
    return this.#status === 'stopped' ? 0 : this.#acceptors.allConnections;
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
