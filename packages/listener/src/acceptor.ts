/**
 * The acceptors (Ranch's `ranch_acceptors_sup`): what opens a listener's listen socket and hands
 * every accepted socket to a connection supervisor. Here, in the listener's own process: the
 * kernel accept loop runs inside libuv, so the acceptor is the glue between the transport's listen
 * socket and the supervisor. A listener with `numAcceptors` > 1 uses the pool of worker processes
 * of acceptor-pool.ts instead, behind the same interface.
 */

import type { Connection } from './connection.js';
import { NotSupportedError } from './errors.js';
import type { ListenerConfig } from './options.js';
import { ConnectionSupervisor, type ListenerMetrics, type SupervisorHost } from './supervisor.js';
import type { ListenSocket, SocketAddress, Transport } from './types.js';

/** One acceptor worker process's figures, in `info().workers`. */
export interface AcceptorWorkerInfo {
  pid: number;
  /**
   * `'starting'` (loading the protocol), `'listening'` (accepting), `'idle'` (serving its
   * connections, not accepting: the listener is suspended) or `'stopping'` (draining its
   * connections before it exits: the listener stops or replaces it).
   */
  status: 'starting' | 'listening' | 'idle' | 'stopping';
  /** Its share of the listener's `maxConnections`: ceil(maxConnections / numAcceptors). */
  maxConnections: number;
  activeConnections: number;
  allConnections: number;
  waitingConnections: number;
  metrics: ListenerMetrics;
}

/** How a listener accepts: in its own process or in worker processes. */
export interface Acceptors {
  /** Open the listen socket(s) with these (normalised, and as given) socket options, and accept. */
  listen(socketOpts: object, rawSocketOpts: unknown): Promise<SocketAddress>;
  /** Stop accepting; live connections stay. */
  close(): Promise<void>;
  /** Stop accepting, end every connection per `shutdown`, and resolve once all are gone. */
  shutdown(): Promise<void>;
  /** `maxConnections` changed. */
  limitsChanged(): void;
  /** The listener options were replaced (limits, timeouts, alarms, logger...). */
  optionsChanged(): void;
  protocolOptionsChanged(): void;
  /** Replace the accepting processes one at a time, keeping the port open. */
  restart(): Promise<void>;
  readonly activeConnections: number;
  readonly allConnections: number;
  readonly waitingConnections: number;
  metrics(): ListenerMetrics;
  /** The processes accepting, while listening. */
  pids(): number[];
  connections(): Connection[];
  /** Per-worker figures, when there are worker processes. */
  workers(): AcceptorWorkerInfo[] | undefined;
}

/**
 * Open a listen socket through the transport and hand every accepted socket to `sup`; run
 * `postListenCallback` on it (a throw closes it again and fails).
 */
export async function openAcceptor(
  transport: Transport<unknown, unknown, unknown, object>,
  socketOpts: object,
  config: ListenerConfig,
  sup: ConnectionSupervisor,
): Promise<ListenSocket> {
  const socket = await transport.listen(socketOpts, {
    onConnection: (raw) => sup.accept(raw),
    onError: (err) => sup.acceptError(err),
  });
  if (config.postListenCallback !== undefined) {
    try {
      await config.postListenCallback(socket.server);
    } catch (err) {
      await socket.close();
      await transport.cleanup(socketOpts);
      throw err;
    }
  }
  return socket;
}

/** Accepting in this process (`numAcceptors` 1, the default). */
export class InProcessAcceptors implements Acceptors {
  #host: SupervisorHost;
  #sup: ConnectionSupervisor;
  #socket: ListenSocket | undefined;

  constructor(host: SupervisorHost, onCount: () => void) {
    this.#host = host;
    this.#sup = new ConnectionSupervisor(host, onCount);
  }

  async listen(socketOpts: object): Promise<SocketAddress> {
    const socket = await openAcceptor(this.#host.transport(), socketOpts, this.#host.config(), this.#sup);
    this.#socket = socket;
    return socket.address();
  }

  async close(): Promise<void> {
    const socket = this.#socket;
    this.#socket = undefined;
    await socket?.close();
  }

  async shutdown(): Promise<void> {
    await this.close();
    await this.#sup.shutdown();
  }

  limitsChanged(): void {
    this.#sup.admit();
  }

  optionsChanged(): void {
    this.#sup.alarmsChanged();
    this.#sup.admit();
  }

  protocolOptionsChanged(): void {
    // Read by the supervisor as each connection starts.
  }

  restart(): Promise<void> {
    return Promise.reject(new NotSupportedError(
      `Listener ${String(this.#host.ref)} accepts in this process (numAcceptors 1): it has no acceptor workers to restart`,
    ));
  }

  get activeConnections(): number {
    return this.#sup.activeConnections;
  }

  get allConnections(): number {
    return this.#sup.allConnections;
  }

  get waitingConnections(): number {
    return this.#sup.waitingConnections;
  }

  metrics(): ListenerMetrics {
    return { ...this.#sup.metrics };
  }

  pids(): number[] {
    return [process.pid];
  }

  connections(): Connection[] {
    return this.#sup.connections() as unknown as Connection[];
  }

  workers(): undefined {
    return undefined;
  }
}
