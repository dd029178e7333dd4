/**
 * The per-connection handle a protocol receives: Ranch's connection process context.
 * It hands out the socket through `handshake`, and carries the shutdown signal.
 */

import type * as net from 'node:net';
import { HandshakeError, ListenerStateError, SocketError } from './errors.js';
import type { HandshakeContinue, Ref, SocketAddress, Transport } from './types.js';

/** What a transport's handshake resolves to: the socket, or a paused handshake when the transport can pause. */
export type HandshakeResult<S, Info> = [Info] extends [never] ? S : S | HandshakeContinue<Info>;

/** What the connection asks of the supervisor that owns it. */
export interface ConnectionOwner {
  readonly ref: Ref;
  handshakeTimeout(): number;
  onHandshakeFailure(conn: { readonly id: number; readonly peer: SocketAddress | undefined }, err: HandshakeError): void;
  onRemove(conn: object): void;
}

type State = 'new' | 'handshaking' | 'paused' | 'ready' | 'failed';

let nextId = 1;

function peerOf(raw: net.Socket): SocketAddress | undefined {
  const address = raw.remoteAddress;
  if (address !== undefined) {
    return { family: raw.remoteFamily === 'IPv6' ? 'IPv6' : 'IPv4', address, port: raw.remotePort ?? 0 };
  }
  // A UNIX domain socket's peer is usually unnamed.
  return raw.destroyed ? undefined : { family: 'local', path: '' };
}

function toHandshakeError(err: unknown, peer: SocketAddress | undefined): HandshakeError {
  if (err instanceof HandshakeError) return err;
  const p = peer && peer.family !== 'local' ? { address: peer.address, port: peer.port } : {};
  if (err instanceof SocketError) return new HandshakeError(err.reason, p, err.message, err);
  return new HandshakeError('error', p, err instanceof Error ? err.message : String(err), err);
}

/**
 * One accepted connection, as seen by its protocol.
 *
 * `S` is the transport's socket type, `HO` its handshake options, `Info` what a paused handshake reports.
 */
export class Connection<S = net.Socket, HO = unknown, Info = never> {
  /** Unique within the process. */
  readonly id: number;
  /** The listener's ref. */
  readonly ref: Ref;
  /** The transport this connection came in on. */
  readonly transport: Transport<S, HO, Info, object>;
  /** The accepted socket, before any transport handshake. Protocols normally use the socket `handshake` returns. */
  readonly rawSocket: net.Socket;
  /** The peer as seen on the socket (the proxy's address when behind a load balancer). */
  readonly peer: SocketAddress | undefined;
  /**
   * Aborted when the listener asks this connection to end (the listener is stopping).
   * The protocol has the listener's `shutdown` time to finish before its socket is destroyed.
   */
  readonly signal: AbortSignal;

  #owner: ConnectionOwner;
  #socketOpts: object;
  #abort = new AbortController();
  #state: State = 'new';
  #socket: S | undefined;
  #removed = false;

  /** @internal Created by the listener only. */
  constructor(owner: ConnectionOwner, transport: Transport<S, HO, Info, object>, raw: net.Socket, socketOpts: object) {
    this.id = nextId++;
    this.ref = owner.ref;
    this.transport = transport;
    this.rawSocket = raw;
    this.peer = peerOf(raw);
    this.signal = this.#abort.signal;
    this.#owner = owner;
    this.#socketOpts = socketOpts;
  }

  /** The protocol's socket once the handshake completed. */
  get socket(): S | undefined {
    return this.#socket;
  }

  /** Whether `removeConnection` was called: the connection no longer counts towards `maxConnections`. */
  get removed(): boolean {
    return this.#removed;
  }

  /**
   * Run the transport handshake under the listener's `handshakeTimeout` and return the socket
   * (Ranch's `ranch:handshake/1,2`). With a transport that pauses after the hello, it may return
   * `{ continue: info }`: call {@link handshakeContinue} or {@link handshakeCancel} next.
   *
   * Rejects with {@link HandshakeError} (the socket is then closed); let it propagate to end
   * the connection quietly: it is counted, not treated as a crash.
   */
  async handshake(opts?: HO): Promise<HandshakeResult<S, Info>> {
    if (this.#state !== 'new') throw new ListenerStateError(`handshake already called on connection ${this.id}`);
    this.#state = 'handshaking';
    const result = await this.#run(this.transport.handshake(this.rawSocket, opts, this.#timeout(), this.#socketOpts));
    if (typeof result === 'object' && result !== null && Object.hasOwn(result, 'continue')) {
      this.#state = 'paused';
    } else {
      this.#state = 'ready';
      this.#socket = result as S;
    }
    return result as HandshakeResult<S, Info>;
  }

  /** Resume a paused handshake with new options (Ranch's `handshake_continue`). */
  async handshakeContinue(opts?: HO): Promise<S> {
    if (this.#state !== 'paused') throw new ListenerStateError(`connection ${this.id} has no paused handshake`);
    this.#state = 'handshaking';
    const socket = await this.#run(this.transport.handshakeContinue(this.rawSocket, opts, this.#timeout(), this.#socketOpts));
    this.#state = 'ready';
    this.#socket = socket;
    return socket;
  }

  /** Abort a paused handshake and close the connection (Ranch's `handshake_cancel`). */
  async handshakeCancel(): Promise<void> {
    if (this.#state !== 'paused') throw new ListenerStateError(`connection ${this.id} has no paused handshake`);
    this.#state = 'failed';
    await this.transport.handshakeCancel(this.rawSocket);
  }

  /**
   * Stop counting this connection towards `maxConnections`, without closing it (Ranch's
   * `remove_connection`). It is still shut down when the listener stops. Idempotent.
   */
  removeConnection(): void {
    if (this.#removed) return;
    this.#removed = true;
    this.#owner.onRemove(this);
  }

  /** @internal Ask the protocol to finish: abort {@link signal}. */
  requestShutdown(reason: unknown): void {
    this.#abort.abort(reason);
  }

  #timeout(): number {
    return this.#owner.handshakeTimeout();
  }

  // The listener enforces the deadline itself, so a user transport that ignores it cannot hold a slot forever.
  async #run<R>(step: Promise<R>): Promise<R> {
    const timeout = this.#timeout();
    let timer: NodeJS.Timeout | undefined;
    try {
      if (timeout === Infinity) return await step;
      const deadline = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          reject(new HandshakeError('timeout', this.#peerInfo(), `no handshake within ${timeout} ms`));
        }, timeout);
      });
      return await Promise.race([step, deadline]);
    } catch (err) {
      this.#state = 'failed';
      step.catch(() => {});
      const failure = toHandshakeError(err, this.peer);
      this.rawSocket.destroy();
      this.#owner.onHandshakeFailure(this, failure);
      throw failure;
    } finally {
      if (timer !== undefined) clearTimeout(timer);
    }
  }

  #peerInfo(): { address?: string; port?: number } {
    const p = this.peer;
    return p && p.family !== 'local' ? { address: p.address, port: p.port } : {};
  }
}

/** Run the handshake of `conn` (Ranch's `ranch:handshake`). Same as `conn.handshake(opts)`. */
export function handshake<S, HO, Info>(conn: Connection<S, HO, Info>, opts?: HO): Promise<HandshakeResult<S, Info>> {
  return conn.handshake(opts);
}

/** Resume a paused handshake (Ranch's `ranch:handshake_continue`). */
export function handshakeContinue<S, HO, Info>(conn: Connection<S, HO, Info>, opts?: HO): Promise<S> {
  return conn.handshakeContinue(opts);
}

/** Cancel a paused handshake (Ranch's `ranch:handshake_cancel`). */
export function handshakeCancel<S, HO, Info>(conn: Connection<S, HO, Info>): Promise<void> {
  return conn.handshakeCancel();
}

/** Stop counting `conn` towards `maxConnections` (Ranch's `ranch:remove_connection`). Idempotent. */
export function removeConnection<S, HO, Info>(conn: Connection<S, HO, Info>): void {
  conn.removeConnection();
}
