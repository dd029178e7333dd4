/**
 * WebSocket as a listener protocol, the way cowboy_websocket plugs into Ranch: each connection
 * is handed to Node's own HTTP/1.1 parser (an `http.Server` that never listens), whose 'upgrade'
 * event leads to {@link handleUpgrade}; other requests go to an optional plain HTTP handler.
 */

import * as http from 'node:http';
import type * as net from 'node:net';
import { BadOptionError, type Connection, type ProtocolFunction, type Transport } from '@corral/listener';
import type { WebSocketHandler } from './handler.js';
import type { Session, SessionSocket } from './session.js';
import { handleUpgrade, resolveUpgradeOptions, type UpgradeOptions } from './upgrade.js';

/** Options of {@link websocketProtocol}. */
export interface WebSocketProtocolOptions<O = unknown> extends UpgradeOptions<O> {
  /**
   * Serves requests that are not upgrades (a health check, a page), as any `node:http` request
   * listener. Default: answer 426 Upgrade Required.
   */
  http?: http.RequestListener;
  /** Largest request head accepted, in bytes (default 16384); larger gets 431. */
  maxHeaderSize?: number;
  /** Milliseconds a connection may take to send its first complete request (default 10000). */
  requestTimeout?: number;
  /** Milliseconds an idle plain-HTTP keep-alive connection is kept (default 5000). */
  keepAliveTimeout?: number;
}

interface PendingConnection {
  conn: Connection<net.Socket, unknown, unknown>;
  secure: boolean;
  timer: NodeJS.Timeout | undefined;
}

function answer426(_req: http.IncomingMessage, res: http.ServerResponse): void {
  // `close` as well: a Connection header set here replaces Node's own, and `Upgrade` alone would
  // keep the connection open even when the client asked to close it.
  res.writeHead(426, { Upgrade: 'websocket', Connection: 'Upgrade, close', 'Sec-WebSocket-Version': '13', 'Content-Type': 'text/plain' });
  res.end('This service speaks WebSocket\n');
}

function positive(name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (!(Number.isSafeInteger(value) && (value as number) > 0)) throw new BadOptionError(name, 'expected a positive integer');
  return value as number;
}

/**
 * A listener protocol that speaks WebSocket with `handler`:
 * `startListener(ref, tcp, opts, websocketProtocol(handler, { handlerOpts }), undefined)`.
 * Options are checked here, so a mistake fails before the listener starts.
 */
export function websocketProtocol<S, O>(
  handler: WebSocketHandler<S, O>,
  opts: WebSocketProtocolOptions<O> = {},
): ProtocolFunction<Transport<net.Socket, unknown, unknown, object>, unknown> {
  if (typeof handler !== 'object' || handler === null || typeof handler.websocketHandle !== 'function') {
    throw new BadOptionError('handler', 'a WebSocket handler needs a websocketHandle function');
  }
  const resolved = resolveUpgradeOptions(opts as UpgradeOptions<unknown>);
  const requestTimeout = positive('requestTimeout', opts.requestTimeout, 10_000);
  const keepAliveTimeout = positive('keepAliveTimeout', opts.keepAliveTimeout, 5_000);
  const maxHeaderSize = positive('maxHeaderSize', opts.maxHeaderSize, 16_384);

  // Until the upgrade, what a connection needs is here; after it, only the session.
  const pending = new WeakMap<net.Socket, PendingConnection>();
  const server = http.createServer({ maxHeaderSize }, opts.http ?? answer426);
  server.keepAliveTimeout = keepAliveTimeout;
  // The first request arrived in full: the request deadline no longer applies.
  const settle = (socket: net.Socket): PendingConnection | undefined => {
    const p = pending.get(socket);
    if (p?.timer !== undefined) {
      clearTimeout(p.timer);
      p.timer = undefined;
    }
    return p;
  };
  // One function each for every connection, not closures per connection.
  function onClose(this: net.Socket): void {
    settle(this);
  }
  server.on('request', (req: http.IncomingMessage) => {
    settle(req.socket);
  });
  server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    const p = settle(socket);
    pending.delete(socket);
    socket.off('close', onClose);
    const conn = p?.conn;
    // A shutdown while `init` runs refuses the upgrade with 503.
    const upgrading = { shuttingDown: false };
    conn?.onShutdown(markShuttingDown, upgrading);
    handleUpgrade(req, socket as SessionSocket, head, handler, opts, {
      peer: conn?.clientAddress,
      secure: p?.secure ?? false,
      shuttingDown: () => upgrading.shuttingDown,
      resolved,
    }).then((session) => {
      // The session closes itself with 1001 on shutdown (at once if it began meanwhile).
      if (session !== undefined) conn?.onShutdown(shutdownSession, session);
      else conn?.onShutdown(destroySocket, socket);
    }, (err: unknown) => {
      opts.logger?.error({ err }, 'websocket upgrade failed');
      socket.destroy();
    });
  });
  // Malformed HTTP (or a head over maxHeaderSize): answer as Node would, then close.
  server.on('clientError', (err: NodeJS.ErrnoException, socket: net.Socket) => {
    if (socket.writable) {
      const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400;
      socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    } else {
      socket.destroy();
    }
  });

  // A callback-style protocol: the listener keeps the connection as long as its socket lives.
  return function websocket(conn: Connection<net.Socket, unknown, unknown>, transport: Transport<net.Socket, unknown, unknown, object>): void {
    conn.handshake().then((handshaken) => {
      const socket = handshaken as net.Socket;
      pending.set(socket, { conn, secure: transport.secure, timer: setTimeout(destroySocket, requestTimeout, socket) });
      socket.on('close', onClose);
      conn.onShutdown(destroySocket, socket);
      server.emit('connection', socket);
      socket.resume();
    }, () => {
      // The handshake failed (and was counted by the listener): nothing more to do than close.
      conn.rawSocket.destroy();
    });
  };
}

function destroySocket(socket: net.Socket): void {
  socket.destroy();
}

function markShuttingDown(state: { shuttingDown: boolean }): void {
  state.shuttingDown = true;
}

function shutdownSession(session: Session): void {
  session.shutdown();
}
