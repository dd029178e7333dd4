/**
 * The handler interface: the user's module, as cowboy_websocket defines it, in TypeScript.
 * Every callback may return (or resolve to) nothing (carry on), or a {@link HandlerResult}.
 * Callbacks run one at a time per connection, in order, even when they are async.
 */

import type { IncomingHttpHeaders } from 'node:http';
import type { SocketAddress } from '@corral/listener';
import type { Session } from './session.js';
import type { SessionOptions } from './options.js';

/** A frame received from the peer, as the handler sees it. */
export type InFrame =
  | { readonly type: 'text'; readonly data: string }
  | { readonly type: 'binary'; readonly data: Buffer }
  | { readonly type: 'ping'; readonly data: Buffer }
  | { readonly type: 'pong'; readonly data: Buffer };

/**
 * A frame to send. A string is a text message, a Buffer or Uint8Array a binary one.
 * A close frame with an invalid code is sent as 1002 (protocol error).
 */
export type OutFrame =
  | string
  | Uint8Array
  | { type: 'text'; data: string | Uint8Array }
  | { type: 'binary'; data: Uint8Array | string }
  | { type: 'ping'; data?: Uint8Array | string }
  | { type: 'pong'; data?: Uint8Array | string }
  | { type: 'close'; code?: number; reason?: string };

/** What a callback returns: a new state, frames to send, and whether to stop. All optional. */
export interface HandlerResult<S> {
  /** The new state (default: unchanged). */
  state?: S;
  /** Frames to send, in order. */
  reply?: OutFrame | readonly OutFrame[];
  /** Close the connection after the replies: `true` closes with 1000, or give the code and reason. */
  stop?: boolean | { code?: number; reason?: string };
}

/** What a callback may return: nothing means "carry on with the same state". */
export type CallbackResult<S> = HandlerResult<S> | undefined | void;

/** The HTTP request that asked for the upgrade, as `init` sees it. */
export interface UpgradeRequest {
  method: string;
  /** The request target, e.g. `/chat?room=1`. */
  url: string;
  /** `1.1` for HTTP/1.1, `2` for an HTTP/2 extended CONNECT. */
  httpVersion: string;
  /** Header names in lower case. */
  headers: IncomingHttpHeaders;
  /** The client (from a PROXY header when the listener received one). */
  peer: SocketAddress | undefined;
  /** Subprotocols the client offered, in its order. */
  subprotocols: string[];
  /** Whether the connection is encrypted. */
  secure: boolean;
}

/** What `init` returns to accept the upgrade. */
export interface InitAccept<S> {
  state: S;
  /** The subprotocol to answer with (it must be one the client offered). */
  subprotocol?: string;
  /** Extra response headers of the 101. */
  headers?: Record<string, string | string[]>;
  /** Per-connection session options (idle timeout, limits...), over the ones of the protocol. */
  options?: SessionOptions;
  /**
   * `false` declines permessage-deflate on this connection though the server allows it
   * (cowboy's per-connection `compress`). The request's offer is in
   * `req.headers['sec-websocket-extensions']`.
   */
  compress?: boolean;
}

/** What `init` returns to refuse the upgrade with an HTTP response. */
export interface InitReject {
  reject: number | { status: number; headers?: Record<string, string | string[]>; body?: string | Uint8Array };
}

/** Why a connection ended, as `terminate` is told (cowboy's reasons). */
export type TerminateReason =
  /** This side began the close: a handler `stop`, a close frame sent, or `session.close()`. */
  | { type: 'stop' }
  /** Nothing came from the peer within `idleTimeout`, or it did not answer a keepalive ping. */
  | { type: 'timeout' }
  /** The listener is shutting down (the connection was closed with 1001). */
  | { type: 'shutdown' }
  /** The peer closed, with the code and reason of its close frame (code absent when it gave none). */
  | { type: 'remote'; code?: number; reason: string }
  /**
   * A protocol error: `badframe` (1002), `badencoding` (1007), `toobig` (1009), `slow` (the peer
   * did not read: 1008/1013), `closed` (the socket closed without a close frame), or a socket error.
   */
  | { type: 'error'; error: 'badframe' | 'badencoding' | 'toobig' | 'slow' | 'closed' | 'socket'; cause?: unknown }
  /** A callback threw or rejected (the connection was closed with 1011). */
  | { type: 'crash'; error: unknown };

/** The part of the request kept for `terminate` (cowboy's `req_filter`). */
export type PartialRequest = Record<string, unknown>;

/** The server's 101 answer, as a client handler's `init` sees it. */
export interface UpgradeResponse {
  /** The URL connected to. */
  url: string;
  /** Always 101. */
  status: number;
  /** Header names in lower case. */
  headers: IncomingHttpHeaders;
  /** The subprotocol the server chose, or undefined. */
  subprotocol: string | undefined;
  /** Extensions the server accepted (none unless offered and understood). */
  extensions: string[];
}

/**
 * A WebSocket handler (cowboy_websocket's callbacks). `S` is its state, `O` its options, `R`
 * what `init` is given: the upgrade request on a server, the 101 response on a client.
 */
export interface WebSocketHandler<S = unknown, O = unknown, R = UpgradeRequest> {
  /**
   * Decide on the upgrade: accept with a state (and optionally a subprotocol, headers and
   * options), or refuse with an HTTP status. Default: accept with `opts` as the state.
   * On a client it sees the 101 response; refusing closes the connection with 1000.
   */
  init?(req: R, opts: O): InitAccept<S> | InitReject | Promise<InitAccept<S> | InitReject>;
  /** Called once the connection is a WebSocket, before any frame is handled. */
  websocketInit?(state: S, session: Session<S>): CallbackResult<S> | Promise<CallbackResult<S>>;
  /** Called for every message and control frame received (pings are answered before this is called). */
  websocketHandle(frame: InFrame, state: S, session: Session<S>): CallbackResult<S> | Promise<CallbackResult<S>>;
  /** Called for every message given to `session.info(message)`: the Erlang message analogue. */
  websocketInfo?(message: unknown, state: S, session: Session<S>): CallbackResult<S> | Promise<CallbackResult<S>>;
  /** Called exactly once when the connection ends. */
  terminate?(reason: TerminateReason, req: PartialRequest, state: S): void | Promise<void>;
}
