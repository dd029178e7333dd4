/**
 * The connection supervisor (Ranch's `ranch_conns_sup`): admits accepted sockets up to
 * `maxConnections`, holds the rest paused in a bounded queue, starts protocols, counts and
 * tracks connections, raises alarms and shuts everything down on stop.
 */

import type * as net from 'node:net';
import { AlarmMonitor } from './alarms.js';
import { Connection, type ConnectionOwner } from './connection.js';
import { HandshakeError } from './errors.js';
import type { ListenerConfig } from './options.js';
import { UntrustedProxyError, type ProxyPolicy } from './proxy-receive.js';
import type { Ref, SocketAddress, Transport } from './types.js';

/** Counters reported by `info()`. They only grow. */
export interface ListenerMetrics {
  /** Sockets accepted from the listen socket. */
  accepted: number;
  /** Sockets closed at once because the listener was full (`overflow: 'reject'` or the waiting queue was full). */
  rejected: number;
  /** Protocols started. */
  started: number;
  /** Protocols that ended, for any reason. */
  terminated: number;
  /** Handshakes that failed other than by timeout. */
  handshakeFailures: number;
  /** Handshakes that timed out. */
  handshakeTimeouts: number;
  /** Protocols that threw or rejected. */
  protocolCrashes: number;
  /** Errors reported by the listen socket. */
  acceptErrors: number;
  /** PROXY headers that were malformed, incomplete or late. */
  proxyHeaderFailures: number;
  /** Connections refused because their source is not a trusted proxy. */
  proxyHeaderUntrusted: number;
}

/** Why the listener asks a connection to end; the reason of `conn.signal`. */
export class ShutdownRequest extends Error {
  constructor() {
    super('The listener is shutting down');
    this.name = 'ShutdownRequest';
  }
}

type Conn = Connection<unknown, unknown, unknown>;
type ConnView = { readonly id: number; readonly peer: SocketAddress | undefined; readonly clientAddress: SocketAddress | undefined };

interface Tracked {
  conn: Conn;
  sup: ConnectionSupervisor;
  /** Counted towards maxConnections. */
  counted: boolean;
  /** Destroyed by shutdown; gone once its socket closes. */
  killed: boolean;
}

function describePeer(peer: SocketAddress | undefined): string | undefined {
  if (peer === undefined) return undefined;
  return peer.family === 'local' ? peer.path || 'local' : `${peer.address}:${peer.port}`;
}

/** Log fields naming the client, and the proxy it came through when a PROXY header said so. */
function peerFields(conn: { peer: SocketAddress | undefined; clientAddress: SocketAddress | undefined }): object {
  const peer = describePeer(conn.clientAddress);
  const via = conn.clientAddress === conn.peer ? undefined : describePeer(conn.peer);
  return via === undefined ? { peer } : { peer, via };
}

export interface SupervisorHost {
  readonly ref: Ref;
  config(): ListenerConfig;
  transport(): Transport<unknown, unknown, unknown, object>;
  protocol(): { start: (conn: unknown, transport: unknown, opts: unknown) => unknown; opts: unknown };
  socketOpts(): object;
}

export class ConnectionSupervisor implements ConnectionOwner {
  readonly ref: Ref;
  readonly metrics: ListenerMetrics = {
    accepted: 0, rejected: 0, started: 0, terminated: 0,
    handshakeFailures: 0, handshakeTimeouts: 0, protocolCrashes: 0, acceptErrors: 0,
    proxyHeaderFailures: 0, proxyHeaderUntrusted: 0,
  };

  #host: SupervisorHost;
  #conns = new Map<Conn, Tracked>();
  #active = 0;
  // FIFO of paused sockets waiting for a slot; `#head` avoids O(n) shifts.
  #waiting: (net.Socket | undefined)[] = [];
  #head = 0;
  #waitingCount = 0;
  // Sockets of protocols that ended, still flushing their last bytes.
  #lingering = new Set<net.Socket>();
  #alarms: AlarmMonitor;
  #closed = false;
  #drained: (() => void) | undefined;
  #onCount: () => void;

  constructor(host: SupervisorHost, onCount: () => void) {
    this.ref = host.ref;
    this.#host = host;
    this.#onCount = onCount;
    this.#alarms = new AlarmMonitor({
      ref: host.ref,
      config: () => host.config(),
      activeConnections: () => this.#active,
      activeList: () => {
        const active: Conn[] = [];
        for (const t of this.#conns.values()) if (t.counted) active.push(t.conn);
        return active as unknown as Connection[];
      },
    });
  }

  get activeConnections(): number {
    return this.#active;
  }

  /** Connections alive, counted or removed (Ranch's `all_connections`). */
  get allConnections(): number {
    return this.#conns.size;
  }

  get waitingConnections(): number {
    return this.#waitingCount;
  }

  connections(): Conn[] {
    return [...this.#conns.keys()];
  }

  handshakeTimeout(): number {
    return this.#host.config().handshakeTimeout;
  }

  /** A socket was accepted. */
  accept(raw: net.Socket): void {
    this.metrics.accepted++;
    // An error on a socket nobody listens to would crash the process; this listener stays for its whole life.
    raw.on('error', onSocketError);
    if (this.#closed) {
      raw.destroy();
      return;
    }
    const cfg = this.#host.config();
    if (this.#active < cfg.maxConnections) {
      this.#start(raw);
    } else if (cfg.overflow === 'reject' || this.#waitingCount >= cfg.maxWaiting) {
      this.metrics.rejected++;
      raw.resetAndDestroy();
    } else {
      this.#waiting.push(raw);
      this.#waitingCount++;
      raw.once('close', this.#onWaitingClose);
      // A paused socket never learns that its peer left. Let it read up to its high-water mark
      // (the bytes stay buffered for the protocol) so a client that gives up frees its place.
      raw.read(0);
    }
  }

  acceptError(err: Error): void {
    this.metrics.acceptErrors++;
    this.#host.config().logger.warn({ listener: String(this.ref), err }, 'listen socket error');
  }

  /** The limit changed or a slot freed: start waiting connections while there is room. */
  admit(): void {
    if (this.#closed) return;
    const max = this.#host.config().maxConnections;
    while (this.#waitingCount > 0 && this.#active < max) {
      const raw = this.#waiting[this.#head];
      this.#waiting[this.#head++] = undefined;
      if (this.#head > 64 && this.#head * 2 > this.#waiting.length) {
        this.#waiting = this.#waiting.slice(this.#head);
        this.#head = 0;
      }
      if (raw === undefined) continue;
      this.#waitingCount--;
      raw.off('close', this.#onWaitingClose);
      this.#start(raw);
    }
  }

  #onWaitingClose = (): void => {
    // Rare (a paused socket sees few events): a linear scan is fine.
    for (let i = this.#head; i < this.#waiting.length; i++) {
      const raw = this.#waiting[i];
      if (raw !== undefined && raw.destroyed) {
        this.#waiting[i] = undefined;
        this.#waitingCount--;
      }
    }
  };

  #start(raw: net.Socket): void {
    const host = this.#host;
    const { start, opts } = host.protocol();
    const conn = new Connection(this, host.transport(), raw, host.socketOpts()) as Conn;
    const tracked: Tracked = { conn, sup: this, counted: true, killed: false };
    this.#conns.set(conn, tracked);
    this.#active++;
    this.metrics.started++;
    this.#alarms.check();
    this.#onCount();
    let result: unknown;
    try {
      result = start(conn, host.transport(), opts);
    } catch (err) {
      this.#exit(tracked, err, true);
      return;
    }
    if (typeof (result as PromiseLike<unknown> | undefined)?.then === 'function') {
      (result as PromiseLike<unknown>).then(
        () => this.#exit(tracked, undefined, false),
        (err: unknown) => this.#exit(tracked, err, true),
      );
    } else if (raw.closed) {
      this.#exit(tracked, undefined, false);
    } else {
      // A callback-style protocol: it lives as long as its socket. One listener for all of them.
      (raw as TrackedSocket)[kTracked] = tracked;
      raw.on('close', ConnectionSupervisor.#rawClosed);
    }
  }

  static #rawClosed(this: TrackedSocket): void {
    const tracked = this[kTracked]!;
    tracked.sup.#exit(tracked, undefined, false);
  }

  #exit(tracked: Tracked, err: unknown, failed: boolean): void {
    const { conn } = tracked;
    // Killed on shutdown: it is gone once its socket closes, whatever the protocol does now.
    if (tracked.killed || this.#conns.get(conn) !== tracked) return;
    const raw = conn.rawSocket;
    if (failed && !(err instanceof HandshakeError) && !isShutdownExit(conn, err)) {
      this.metrics.protocolCrashes++;
      this.#host.config().logger.error(
        { listener: String(this.ref), connection: conn.id, ...peerFields(conn), err },
        'protocol crashed',
      );
      destroy(conn);
    } else if (!raw.destroyed) {
      this.#linger(conn);
    }
    this.#forget(tracked);
  }

  // A protocol that returns has finished with its socket: flush what it wrote, then close (gen_tcp:close).
  #linger(conn: Conn): void {
    const socket = conn.socket;
    const raw = conn.rawSocket;
    if (socket === undefined || socket === raw && raw.writableLength === 0) {
      raw.destroy();
      return;
    }
    this.#lingering.add(raw);
    raw.once('close', () => {
      this.#lingering.delete(raw);
      this.#checkDrained();
    });
    conn.transport.close(socket).catch(() => raw.destroy());
  }

  #forget(tracked: Tracked): void {
    this.#conns.delete(tracked.conn);
    this.metrics.terminated++;
    if (tracked.counted) {
      tracked.counted = false;
      this.#active--;
      this.admit();
    }
    this.#onCount();
    this.#checkDrained();
  }

  onRemove(conn: object): void {
    const tracked = this.#conns.get(conn as Conn);
    if (tracked === undefined || !tracked.counted) return;
    tracked.counted = false;
    this.#active--;
    this.admit();
    this.#onCount();
  }

  proxyPolicy(): ProxyPolicy | undefined {
    return this.#host.config().proxyHeader;
  }

  onProxyHeaderFailure(conn: ConnView, err: Error): void {
    if (err instanceof UntrustedProxyError) this.metrics.proxyHeaderUntrusted++;
    else this.metrics.proxyHeaderFailures++;
    this.#host.config().logger.warn(
      { listener: String(this.ref), connection: conn.id, ...peerFields(conn), err },
      'PROXY header refused',
    );
  }

  onHandshakeFailure(conn: ConnView, err: HandshakeError): void {
    if (err.reason === 'timeout') this.metrics.handshakeTimeouts++;
    else this.metrics.handshakeFailures++;
    this.#host.config().logger.info(
      { listener: String(this.ref), connection: conn.id, ...peerFields(conn), reason: err.reason, err },
      'handshake failed',
    );
  }

  /** Re-evaluate alarms (Ranch also does so when transport options are set). */
  alarmsChanged(): void {
    this.#alarms.changed();
  }

  /**
   * Stop: reset waiting sockets, ask every protocol to finish, destroy what is left after
   * `shutdown` ms, and resolve once every connection is gone.
   */
  async shutdown(): Promise<void> {
    this.#closed = true;
    this.#alarms.close();
    for (let i = this.#head; i < this.#waiting.length; i++) this.#waiting[i]?.destroy();
    this.#waiting = [];
    this.#head = 0;
    this.#waitingCount = 0;

    const mode = this.#host.config().shutdown;
    const reason = new ShutdownRequest();
    for (const { conn } of this.#conns.values()) conn.requestShutdown(reason);
    let timer: NodeJS.Timeout | undefined;
    if (mode === 'brutal_kill' || mode === 0) {
      this.#killAll();
    } else if (mode !== Infinity) {
      timer = setTimeout(() => this.#killAll(), mode);
    }
    try {
      await this.#allGone();
    } finally {
      if (timer !== undefined) clearTimeout(timer);
    }
  }

  #killAll(): void {
    for (const tracked of [...this.#conns.values()]) {
      if (tracked.killed) continue;
      tracked.killed = true;
      const raw = tracked.conn.rawSocket;
      destroy(tracked.conn);
      if (raw.closed) this.#forget(tracked);
      else raw.once('close', () => this.#forget(tracked));
    }
    for (const raw of this.#lingering) raw.destroy();
  }

  #allGone(): Promise<void> {
    if (this.#isDrained()) return Promise.resolve();
    return new Promise((resolve) => {
      this.#drained = resolve;
    });
  }

  #isDrained(): boolean {
    return this.#conns.size === 0 && this.#lingering.size === 0;
  }

  #checkDrained(): void {
    if (this.#drained !== undefined && this.#isDrained()) {
      const done = this.#drained;
      this.#drained = undefined;
      done();
    }
  }
}

const kTracked = Symbol('corral.tracked');
type TrackedSocket = net.Socket & { [kTracked]?: Tracked };

// A protocol that gives up because it was asked to stop has not crashed.
function isShutdownExit(conn: Conn, err: unknown): boolean {
  return conn.signal.aborted && (err === conn.signal.reason || (err instanceof Error && err.name === 'AbortError'));
}

function destroy(conn: Conn): void {
  const socket = conn.socket as { destroy?: () => void } | undefined;
  if (socket !== undefined && socket !== conn.rawSocket && typeof socket.destroy === 'function') socket.destroy();
  conn.rawSocket.destroy();
}

function onSocketError(this: net.Socket): void {
  // Errors surface to the protocol as a closed socket; the socket is destroyed by the stream machinery.
}
