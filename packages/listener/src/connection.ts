/**
 * The per-connection handle a protocol receives: Ranch's connection process context.
 * It hands out the socket through `handshake`, and carries the shutdown signal.
 */

import type * as net from 'node:net';
import { HandshakeError, ListenerStateError, SocketError } from './errors.js';
import type { ProxyHeader } from './proxy-header.js';
import { UntrustedProxyError, isTrusted, readProxyHeader, type ProxyPolicy } from './proxy-receive.js';
import { peername } from './socket-ops.js';
import type { HandshakeContinue, Ref, SocketAddress, Transport } from './types.js';

/** What a transport's handshake resolves to: the socket, or a paused handshake when the transport can pause. */
export type HandshakeResult<S, Info> = [Info] extends [never] ? S : S | HandshakeContinue<Info>;

/** What logs need to know of a connection. */
export interface ConnectionView {
  readonly id: number;
  readonly peer: SocketAddress | undefined;
  readonly clientAddress: SocketAddress | undefined;
}

/** What the connection asks of the supervisor that owns it. */
export interface ConnectionOwner {
  readonly ref: Ref;
  handshakeTimeout(): number;
  onHandshakeFailure(conn: ConnectionView, err: HandshakeError): void;
  onRemove(conn: object): void;
  /** The listener's PROXY header policy, if it has one. */
  proxyPolicy(): ProxyPolicy | undefined;
  onProxyHeaderFailure(conn: ConnectionView, err: Error): void;
}

type State = 'new' | 'handshaking' | 'paused' | 'ready' | 'failed';

let nextId = 1;

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
  #owner: ConnectionOwner;
  #socketOpts: object;
  // Made on first use: most connections never look at their signal.
  #abort: AbortController | undefined;
  #shutdownFn: ((arg: never, reason: unknown) => void) | undefined;
  #shutdownArg: unknown;
  #state: State = 'new';
  #socket: S | undefined;
  #removed = false;
  #proxyRead: Promise<ProxyHeader | undefined> | undefined;
  #proxyHeader: ProxyHeader | undefined;

  /** @internal Created by the listener only. */
  constructor(owner: ConnectionOwner, transport: Transport<S, HO, Info, object>, raw: net.Socket, socketOpts: object) {
    this.id = nextId++;
    this.ref = owner.ref;
    this.transport = transport;
    this.rawSocket = raw;
    // Read now: once the socket is reset or destroyed, its peer can no longer be asked.
    this.peer = peername(raw);
    this.#owner = owner;
    this.#socketOpts = socketOpts;
  }

  /**
   * Aborted when the listener asks this connection to end (the listener is stopping).
   * The protocol has the listener's `shutdown` time to finish before its socket is destroyed.
   */
  get signal(): AbortSignal {
    return (this.#abort ??= new AbortController()).signal;
  }

  /**
   * Have `fn(arg, reason)` called when the listener asks this connection to end: what
   * {@link signal} tells, without an AbortController and its listeners per connection. A
   * protocol holding many idle connections passes one function shared by all of them, and the
   * connection's own state as `arg`. One handler at a time: a later call replaces it, and
   * `fn` undefined removes it. Called at once when the end was already asked for.
   */
  onShutdown<A>(fn: ((arg: A, reason: unknown) => void) | undefined, arg?: A): void {
    this.#shutdownFn = fn as ((arg: never, reason: unknown) => void) | undefined;
    this.#shutdownArg = fn === undefined ? undefined : arg;
    const signal = this.#abort?.signal;
    if (fn !== undefined && signal?.aborted === true) fn(arg as A, signal.reason);
  }

  /** The protocol's socket once the handshake completed. */
  get socket(): S | undefined {
    return this.#socket;
  }

  /** The PROXY header received on this connection, if any. */
  get proxyHeader(): ProxyHeader | undefined {
    return this.#proxyHeader;
  }

  /**
   * The client's address: the source of the PROXY header when one was received, else the
   * socket's peer. Use it wherever the real client matters (logs, rate limits, access rules).
   */
  get clientAddress(): SocketAddress | undefined {
    const h = this.#proxyHeader;
    if (h !== undefined && h.command === 'proxy' && h.family !== undefined) {
      if (h.family === 'unix') return { family: 'local', path: h.source.path };
      return { family: h.family === 'ipv4' ? 'IPv4' : 'IPv6', address: h.source.address, port: h.source.port };
    }
    return this.peer;
  }

  /**
   * Receive the PROXY protocol header that a load balancer sends first (Ranch's
   * `recv_proxy_header`). Call it before {@link handshake}; bytes after the header stay in the
   * socket for the protocol (or the TLS handshake). With the listener's `proxyHeader` option,
   * `handshake` does this itself and this returns the same result.
   *
   * Resolves with the header, or `undefined` when the listener's policy serves this connection as
   * direct (`optional` mode without a header, or an untrusted source with `untrusted: 'ignore'`).
   * Rejects with `ProxyHeaderError` (malformed), `SocketError` (`'timeout'`, `'closed'`) or
   * `UntrustedProxyError`; the socket is left open for the protocol to decide.
   */
  recvProxyHeader(timeoutMs?: number): Promise<ProxyHeader | undefined> {
    if (this.#proxyRead !== undefined) return this.#proxyRead;
    if (this.#state !== 'new') {
      return Promise.reject(new ListenerStateError('recvProxyHeader must be called before handshake'));
    }
    this.#proxyRead = this.#readProxy(timeoutMs);
    return this.#proxyRead;
  }

  async #readProxy(timeoutMs: number | undefined): Promise<ProxyHeader | undefined> {
    const policy = this.#owner.proxyPolicy();
    try {
      if (policy?.trusted !== undefined && !isTrusted(policy.trusted, this.rawSocket.remoteAddress)) {
        if (policy.untrusted === 'ignore') return undefined;
        throw new UntrustedProxyError(this.rawSocket.remoteAddress);
      }
      const timeout = timeoutMs ?? policy?.timeout ?? this.#owner.handshakeTimeout();
      this.#proxyHeader = await readProxyHeader(this.rawSocket, timeout, {
        optional: policy?.mode === 'optional',
        maxV1Length: policy?.maxV1Length,
      });
      return this.#proxyHeader;
    } catch (err) {
      this.#owner.onProxyHeaderFailure(this, err as Error);
      throw err;
    }
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
    let timeout = this.#timeout();
    if (this.#owner.proxyPolicy() !== undefined) {
      // The PROXY header counts against the same deadline as the transport handshake.
      const started = Date.now();
      await this.#autoProxy(timeout);
      if (timeout !== Infinity) timeout = Math.max(0, timeout - (Date.now() - started));
    }
    const result = await this.#run(this.transport.handshake(this.rawSocket, opts, timeout, this.#socketOpts), timeout);
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
    const timeout = this.#timeout();
    const socket = await this.#run(this.transport.handshakeContinue(this.rawSocket, opts, timeout, this.#socketOpts), timeout);
    this.#state = 'ready';
    this.#socket = socket;
    return socket;
  }

  /**
   * Abort a paused handshake and close the connection (Ranch's `handshake_cancel`). `opts` go to
   * the transport: TLS takes `{ alert }`, the TLS alert sent to the client.
   */
  async handshakeCancel(opts?: object): Promise<void> {
    if (this.#state !== 'paused') throw new ListenerStateError(`connection ${this.id} has no paused handshake`);
    this.#state = 'failed';
    await this.transport.handshakeCancel(this.rawSocket, opts);
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
    const controller = (this.#abort ??= new AbortController());
    if (controller.signal.aborted) return;
    controller.abort(reason);
    const fn = this.#shutdownFn;
    if (fn !== undefined) (fn as (arg: unknown, reason: unknown) => void)(this.#shutdownArg, reason);
  }

  // The listener's proxyHeader option: a connection without a valid header ends here, quietly.
  async #autoProxy(timeout: number): Promise<void> {
    try {
      await (this.#proxyRead ??= this.#readProxy(this.#owner.proxyPolicy()?.timeout ?? timeout));
    } catch (err) {
      this.#state = 'failed';
      this.rawSocket.destroy();
      const reason = err instanceof SocketError && err.reason !== 'error' ? err.reason : 'error';
      throw new HandshakeError(reason, this.#peerInfo(), `PROXY header: ${(err as Error).message}`, err);
    }
  }

  #timeout(): number {
    return this.#owner.handshakeTimeout();
  }

  // The listener enforces the deadline itself, so a user transport that ignores it cannot hold a slot forever.
  async #run<R>(step: Promise<R>, timeout: number): Promise<R> {
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
export function handshakeCancel<S, HO, Info>(conn: Connection<S, HO, Info>, opts?: object): Promise<void> {
  return conn.handshakeCancel(opts);
}

/** Stop counting `conn` towards `maxConnections` (Ranch's `ranch:remove_connection`). Idempotent. */
export function removeConnection<S, HO, Info>(conn: Connection<S, HO, Info>): void {
  conn.removeConnection();
}

/** Receive the PROXY header of `conn` (Ranch's `ranch:recv_proxy_header`). Same as `conn.recvProxyHeader(timeoutMs)`. */
export function recvProxyHeader<S, HO, Info>(conn: Connection<S, HO, Info>, timeoutMs?: number): Promise<ProxyHeader | undefined> {
  return conn.recvProxyHeader(timeoutMs);
}
