/**
 * The shapes every part of the listener agrees on: refs, addresses, the transport interface
 * (Ranch's `ranch_transport`) and the protocol interface (Ranch's `ranch_protocol`).
 */

import type * as net from 'node:net';
import type { FileHandle } from 'node:fs/promises';
import type { Connection } from './connection.js';

/** A listener's name in the per-process registry (Ranch's `ranch:ref()`). */
export type Ref = string | symbol;

/** Where a listener or socket is bound: an IP address and port, or a UNIX socket path. */
export type SocketAddress =
  | { readonly family: 'IPv4' | 'IPv6'; readonly address: string; readonly port: number }
  | { readonly family: 'local'; readonly path: string };

/** A listen socket opened by a transport. Closing it stops new connections; accepted ones live on. */
export interface ListenSocket {
  /** The address the socket is bound to. */
  address(): SocketAddress;
  /** Stop accepting. Resolves once the socket is closed (not when its connections end). */
  close(): Promise<void>;
  /** The underlying server, handed to `postListenCallback`. */
  readonly server: net.Server;
}

/** Callbacks a transport's listen socket reports to. */
export interface AcceptHandler {
  /** A connection was accepted. The socket is paused: nothing is read until the protocol asks. */
  onConnection(raw: net.Socket): void;
  /** The listen socket reported an error after it started listening (e.g. EMFILE on accept). */
  onError(err: Error): void;
}

/** Result of a handshake paused by the transport (Ranch's `{continue, Info}`). */
export interface HandshakeContinue<Info> {
  readonly continue: Info;
}

/** Ranch's `{active, ...}`: how a socket delivers data to its owner. */
export type ActiveMode = boolean | 'once' | number;

/** Per-socket options settable after the handshake (`setopts`/`getopts`). */
export interface SocketSettings {
  /** `true`: flowing; `false`: paused (use `recv`); `'once'`/N: deliver N chunks, then pause and emit `'passive'`. */
  active?: ActiveMode;
  noDelay?: boolean;
  keepAlive?: boolean;
  /** Milliseconds before the first keepalive probe. */
  keepAliveInitialDelay?: number;
  /** Idle timeout in ms that emits `'timeout'` on the socket (0 disables). */
  timeout?: number;
}

/** Byte counters of one socket (`getstat`). */
export interface SocketStats {
  bytesRead: number;
  bytesWritten: number;
  /** Bytes queued in user space, not yet handed to the kernel. */
  bytesBuffered: number;
}

/** Options of {@link Transport.sendfile}. */
export interface SendfileOptions {
  /** Bytes read and written per step. 0 means the default (65536). */
  chunkSize?: number;
}

/** Which direction `shutdown` closes. */
export type ShutdownHow = 'read' | 'write' | 'readWrite';

/** Options for {@link Transport.connect}. */
export interface ConnectOptions {
  /** Milliseconds to wait for the connection (and the transport handshake). Default Infinity. */
  timeout?: number;
  /** Abort the connect attempt. */
  signal?: AbortSignal;
  /** Transport-specific options (local address, TLS options, ...). */
  [key: string]: unknown;
}

/**
 * A transport: how bytes get to and from a peer (Ranch's `ranch_transport`).
 * `S` is the socket the protocol works with after the handshake; `HO` the options
 * `handshake`/`handshakeContinue` take; `Info` what a paused handshake reports;
 * `SO` the transport's `socketOpts`.
 *
 * Accepted connections arrive as paused `net.Socket`s; `handshake` turns one into an `S`
 * (the same socket for TCP, a TLS socket for TLS).
 */
export interface Transport<S = net.Socket, HO = unknown, Info = never, SO extends object = object> {
  /** Short name, e.g. `tcp` or `tls`. */
  readonly name: string;
  /** Whether the transport encrypts. */
  readonly secure: boolean;

  /** Check and normalise `socketOpts`; throw `BadOptionError` on an unknown key or bad value. */
  normalizeOptions(socketOpts: unknown): SO;
  /** Open a listen socket. Rejects with `ListenError`. */
  listen(socketOpts: SO, handler: AcceptHandler): Promise<ListenSocket>;
  /**
   * Listen on a socket another process bound and passed over IPC: the listener's parent, when
   * the listener runs its acceptors in worker processes (`numAcceptors` > 1). `handle` is opaque
   * (Node's handle of a bound TCP or UNIX socket); accept on it exactly as `listen` would.
   * Optional: a transport without it serves in one process only.
   */
  adopt?(socketOpts: SO, handle: object, handler: AcceptHandler): Promise<ListenSocket>;
  /** Remove what a listen socket leaves behind (a stale UNIX socket file). Called before listen and after stop. */
  cleanup(socketOpts: SO): Promise<void>;

  /** Turn an accepted socket into the protocol's socket, within `timeoutMs`. Rejects with `HandshakeError`. */
  handshake(raw: net.Socket, opts: HO | undefined, timeoutMs: number, socketOpts: SO): Promise<S | HandshakeContinue<Info>>;
  /** Resume a paused handshake. */
  handshakeContinue(raw: net.Socket, opts: HO | undefined, timeoutMs: number, socketOpts: SO): Promise<S>;
  /** Abort a paused handshake and close the socket; `opts` are transport-specific (TLS: the alert to send). */
  handshakeCancel(raw: net.Socket, opts?: object): Promise<void>;

  /** Open a client connection. The socket is returned paused (passive), as Ranch's `connect`. */
  connect(host: string, port: number, opts?: ConnectOptions): Promise<S>;

  /** Passive read: exactly `length` bytes, or whatever is available when `length` is 0. Rejects with `SocketError`. */
  recv(socket: S, length: number, timeoutMs: number): Promise<Buffer>;
  /** Write and resolve once the data is handed to the kernel. */
  send(socket: S, data: Uint8Array | string): Promise<void>;
  /** Send `bytes` of a file from `offset` (0 bytes: to the end). Resolves with the count sent. Never moves an fd's position. */
  sendfile(socket: S, file: string | number | FileHandle, offset?: number, bytes?: number, opts?: SendfileOptions): Promise<number>;
  setopts(socket: S, opts: SocketSettings): void;
  getopts<K extends keyof SocketSettings>(socket: S, keys: readonly K[]): Pick<SocketSettings, K>;
  getstat(socket: S): SocketStats;
  peername(socket: S): SocketAddress | undefined;
  sockname(socket: S): SocketAddress | undefined;
  /** Close one direction; `'write'` sends FIN after queued data. */
  shutdown(socket: S, how: ShutdownHow): void;
  /** Flush queued data, then close. Resolves once closed. */
  close(socket: S): Promise<void>;
}

/** Any transport, for generic constraints. */
// Method parameters are bivariant, so every concrete transport is assignable to this.
export type AnyTransport = Transport<unknown, never, unknown, object>;

/** The socket type of a transport. */
export type SocketOf<T> = T extends Transport<infer S, infer _HO, infer _I, infer _SO> ? S : never;

/** The connection handle a protocol on transport `T` receives. */
export type ConnectionOf<T> = T extends Transport<infer S, infer HO, infer I, infer _SO> ? Connection<S, HO, I> : never;

/** The TCP-shaped transport, the default of the protocol types. */
export type NetTransport = Transport<net.Socket, undefined, never, object>;

/**
 * A protocol: the code that owns one connection (Ranch's `ranch_protocol`).
 *
 * Called once per admitted connection. It calls `await conn.handshake()` to get its socket.
 * The connection lives as long as the returned promise; if the protocol returns without a promise,
 * it lives until its socket closes. A rejection is a crash: logged, counted, the socket destroyed.
 */
export type ProtocolFunction<T = NetTransport, PO = unknown> = (
  conn: ConnectionOf<T>,
  transport: T,
  opts: PO,
) => unknown;

/** A protocol given as a module-like object with a `start` function. */
export interface ProtocolModule<T = NetTransport, PO = unknown> {
  start: ProtocolFunction<T, PO>;
}

export type Protocol<T = NetTransport, PO = unknown> = ProtocolFunction<T, PO> | ProtocolModule<T, PO>;
