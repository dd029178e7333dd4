/**
 * Socket operations shared by the stream transports (`ranch_tcp` and `ranch_ssl` style):
 * send, socket options, counters, addresses, shutdown and close. They work on any `net.Socket`,
 * and so on `tls.TLSSocket`, which extends it.
 *
 * What Node does not keep for us (the active mode, the noDelay/keepAlive flags as last set, the
 * path of a UNIX socket) lives in a `WeakMap` keyed by socket, created only for sockets that
 * differ from the defaults.
 */

import type * as net from 'node:net';
import type { Writable } from 'node:stream';
import { BadArgumentError, NotSupportedError, SocketError } from './errors.js';
import type { ActiveMode, ShutdownHow, SocketAddress, SocketSettings, SocketStats } from './types.js';

/** Event a socket emits when an `active: 'once'` or `active: N` budget is used up (Ranch's `tcp_passive`). */
export const PASSIVE_EVENT = 'passive';

/**
 * How long {@link close} (and `shutdown(s, 'readWrite')`) waits for queued data to reach the
 * kernel before destroying the socket anyway. A peer that never reads would otherwise keep the
 * socket, and its memory, forever.
 */
export const CLOSE_FLUSH_TIMEOUT_MS = 5000;

/** Bounds of `active: N`, as in Erlang's inet. */
const ACTIVE_N_MIN = -32768;
const ACTIVE_N_MAX = 32767;
const MAX_TIMER_MS = 0x7fff_ffff;

/** The options a socket starts with, as set by `listen`/`connect` (recorded only when not the defaults). */
export interface InitialSocketState {
  noDelay?: boolean;
  keepAlive?: boolean;
  keepAliveInitialDelay?: number;
  /** UNIX socket: the local path (the listen path on the accepting side, `''` on a client). */
  localPath?: string;
  /** UNIX socket: the peer's path (`''` for an unnamed client, the server path on the client side). */
  peerPath?: string;
}

interface SocketState {
  noDelay: boolean;
  keepAlive: boolean;
  keepAliveInitialDelay: number;
  /** The mode as last set; for `'once'`/N, what is left of the budget is in `count`. */
  active: ActiveMode;
  /** Data events left before the socket turns passive; meaningful while `counting`. */
  count: number;
  /** The counting 'data' listener is installed (at most one per socket). */
  counting: boolean;
  localPath: string | undefined;
  peerPath: string | undefined;
}

const states = new WeakMap<net.Socket, SocketState>();

function newState(): SocketState {
  return {
    noDelay: true,
    keepAlive: false,
    keepAliveInitialDelay: 0,
    active: false,
    count: 0,
    counting: false,
    localPath: undefined,
    peerPath: undefined,
  };
}

function stateOf(socket: net.Socket): SocketState {
  let st = states.get(socket);
  if (st === undefined) {
    st = newState();
    states.set(socket, st);
  }
  return st;
}

/**
 * Record how a socket was set up, so `getopts`, `peername` and `sockname` report it. Transports
 * call it for accepted and connected sockets whose options differ from the defaults
 * (noDelay true, keepAlive false) or that are UNIX sockets.
 */
export function initSocketState(socket: net.Socket, init: InitialSocketState): void {
  const st = stateOf(socket);
  if (init.noDelay !== undefined) st.noDelay = init.noDelay;
  if (init.keepAlive !== undefined) st.keepAlive = init.keepAlive;
  if (init.keepAliveInitialDelay !== undefined) st.keepAliveInitialDelay = init.keepAliveInitialDelay;
  if (init.localPath !== undefined) st.localPath = init.localPath;
  if (init.peerPath !== undefined) st.peerPath = init.peerPath;
}

/**
 * Carry the recorded options and UNIX paths of `from` over to `to`, for a transport that wraps a
 * socket in another (a TLS socket over an accepted TCP socket). The active mode is not carried:
 * the new socket starts passive.
 */
export function inheritSocketState(from: net.Socket, to: net.Socket): void {
  const src = states.get(from);
  if (src === undefined) return;
  initSocketState(to, src);
}

/**
 * Write `data` and resolve once the write callback fires (the bytes were handed to the kernel,
 * or to the layer below for a TLS socket). Rejects with `SocketError('closed')` if the socket is
 * already destroyed or ended, or is destroyed before the write completes, and with
 * `SocketError('error')` for any other write error.
 */
export function send(socket: Writable, data: Uint8Array | string): Promise<void> {
  if (socket.destroyed || socket.writableEnded) {
    return Promise.reject(new SocketError('closed', 'send: the socket is closed'));
  }
  return new Promise<void>((resolve, reject) => {
    socket.write(data, (err) => {
      if (err == null) resolve();
      else reject(writeError(err));
    });
  });
}

/** Write failures that mean the connection is gone. */
const CLOSED_CODES = new Set([
  'ERR_STREAM_DESTROYED',
  'ERR_STREAM_WRITE_AFTER_END',
  'ERR_SOCKET_CLOSED',
  'EPIPE',
  'ECONNRESET',
  'ENOTCONN',
  'ECANCELED',
]);

/** Map a write error to a {@link SocketError}: `'closed'` when the connection is gone, else `'error'`. */
export function writeError(err: Error): SocketError {
  const code = (err as NodeJS.ErrnoException).code;
  const reason = code !== undefined && CLOSED_CODES.has(code) ? 'closed' : 'error';
  return new SocketError(reason, `send: ${err.message}`, err);
}

const SETTING_KEYS: ReadonlySet<string> = new Set(['active', 'noDelay', 'keepAlive', 'keepAliveInitialDelay', 'timeout']);

/**
 * Change socket settings (`inet:setopts/2`). All values are checked before any is applied;
 * an unknown key or a bad value throws `BadArgumentError`.
 *
 * `active`:
 * - `true`: flowing; data goes to `'data'` listeners (and is lost without one).
 * - `false`: paused; read with `recv`.
 * - `'once'`: deliver one `'data'` chunk, then pause and emit `'passive'` (Erlang sends no
 *   `tcp_passive` for `once`; here both budgets end the same way).
 * - an integer N in -32768..32767: added to the remaining budget when one is running (from 0
 *   otherwise), as in Erlang. While the budget is positive the socket flows; each `'data'` chunk
 *   uses one; when it reaches 0, from data or from a setopts (so `active: 0` on a passive socket
 *   too), the socket pauses and emits `'passive'` on the next tick.
 *
 * `noDelay`, `keepAlive`: booleans. `keepAliveInitialDelay`: ms before the first probe (the kernel
 * counts whole seconds; 0 keeps the system default), applied when keep-alive is on.
 * `timeout`: idle ms after which the socket emits `'timeout'` (0 disables).
 */
export function setopts(socket: net.Socket, opts: SocketSettings): void {
  if (typeof opts !== 'object' || opts === null) throw new BadArgumentError('setopts: options must be an object');
  for (const key of Object.keys(opts)) {
    if (!SETTING_KEYS.has(key)) throw new BadArgumentError(`setopts: unknown option ${JSON.stringify(key)}`);
  }
  const { active, noDelay, keepAlive, keepAliveInitialDelay, timeout } = opts;
  if (
    active !== undefined &&
    typeof active !== 'boolean' &&
    active !== 'once' &&
    !(Number.isInteger(active) && active >= ACTIVE_N_MIN && active <= ACTIVE_N_MAX)
  ) {
    throw new BadArgumentError(
      `setopts: active must be true, false, 'once' or an integer in ${ACTIVE_N_MIN}..${ACTIVE_N_MAX}, got ${String(active)}`,
    );
  }
  if (noDelay !== undefined && typeof noDelay !== 'boolean') throw new BadArgumentError('setopts: noDelay must be a boolean');
  if (keepAlive !== undefined && typeof keepAlive !== 'boolean') throw new BadArgumentError('setopts: keepAlive must be a boolean');
  if (keepAliveInitialDelay !== undefined && !isMs(keepAliveInitialDelay)) {
    throw new BadArgumentError(`setopts: keepAliveInitialDelay must be an integer between 0 and ${MAX_TIMER_MS} (ms)`);
  }
  if (timeout !== undefined && !isMs(timeout)) {
    throw new BadArgumentError(`setopts: timeout must be an integer between 0 and ${MAX_TIMER_MS} (ms)`);
  }

  const st = stateOf(socket);
  if (noDelay !== undefined) {
    st.noDelay = noDelay;
    socket.setNoDelay(noDelay);
  }
  if (keepAlive !== undefined || keepAliveInitialDelay !== undefined) {
    if (keepAlive !== undefined) st.keepAlive = keepAlive;
    if (keepAliveInitialDelay !== undefined) st.keepAliveInitialDelay = keepAliveInitialDelay;
    socket.setKeepAlive(st.keepAlive, st.keepAliveInitialDelay);
  }
  if (timeout !== undefined) socket.setTimeout(timeout);
  if (active !== undefined) setActive(socket, st, active);
}

function isMs(v: unknown): v is number {
  return Number.isInteger(v) && (v as number) >= 0 && (v as number) <= MAX_TIMER_MS;
}

function setActive(socket: net.Socket, st: SocketState, mode: ActiveMode): void {
  if (mode === true || mode === false) {
    stopCounting(socket, st);
    st.active = mode;
    if (mode) socket.resume();
    else socket.pause();
    return;
  }
  const count = mode === 'once' ? 1 : Math.max(0, (st.counting ? st.count : 0) + mode);
  if (count === 0) {
    toPassive(socket, st);
    return;
  }
  st.count = count;
  st.active = mode === 'once' ? 'once' : count;
  if (!st.counting) {
    st.counting = true;
    // Ahead of the owner's listeners: the budget is spent when a chunk is delivered, so a
    // listener that re-arms with setopts while handling that chunk adds to the right count.
    socket.prependListener('data', onCountedData);
  }
  socket.resume();
}

function stopCounting(socket: net.Socket, st: SocketState): void {
  if (!st.counting) return;
  st.counting = false;
  st.count = 0;
  socket.removeListener('data', onCountedData);
}

function toPassive(socket: net.Socket, st: SocketState): void {
  // The listener goes too: passive reads call read(), which emits 'data', and must not count.
  stopCounting(socket, st);
  st.active = false;
  socket.pause();
  process.nextTick(emitPassive, socket);
}

function onCountedData(this: net.Socket): void {
  const st = states.get(this);
  if (st === undefined || !st.counting) return;
  st.count -= 1;
  if (st.count > 0) {
    if (typeof st.active === 'number') st.active = st.count;
    return;
  }
  // Pausing inside the 'data' event stops the flow after this chunk; the chunk itself still
  // reaches every listener, and 'passive' follows on the next tick, after all of them ran.
  toPassive(this, st);
}

function emitPassive(socket: net.Socket): void {
  socket.emit(PASSIVE_EVENT);
}

/**
 * Current settings (`inet:getopts/2`) for the requested keys. `active` is `'once'` or the
 * remaining budget while one runs, otherwise whether the socket is flowing. `noDelay`,
 * `keepAlive` and `keepAliveInitialDelay` are the values last set (by listen/connect or setopts;
 * defaults true, false, 0); `timeout` is the socket's idle timeout (0: none).
 */
export function getopts<K extends keyof SocketSettings>(socket: net.Socket, keys: readonly K[]): Pick<SocketSettings, K> {
  if (!Array.isArray(keys)) throw new BadArgumentError('getopts: keys must be an array');
  const st = states.get(socket);
  const out: SocketSettings = {};
  for (const key of keys) {
    switch (key) {
      case 'active':
        out.active = st?.counting ? st.active : socket.readableFlowing === true;
        break;
      case 'noDelay':
        out.noDelay = st?.noDelay ?? true;
        break;
      case 'keepAlive':
        out.keepAlive = st?.keepAlive ?? false;
        break;
      case 'keepAliveInitialDelay':
        out.keepAliveInitialDelay = st?.keepAliveInitialDelay ?? 0;
        break;
      case 'timeout':
        out.timeout = socket.timeout ?? 0;
        break;
      default:
        throw new BadArgumentError(`getopts: unknown option ${JSON.stringify(key)}`);
    }
  }
  return out as Pick<SocketSettings, K>;
}

/**
 * Byte counters (`inet:getstat/1`). `bytesWritten` is Node's count of bytes accepted by `write`,
 * so it includes `bytesBuffered` (the bytes still queued in the socket, `writableLength`).
 */
export function getstat(socket: net.Socket): SocketStats {
  return {
    bytesRead: socket.bytesRead,
    bytesWritten: socket.bytesWritten ?? 0,
    bytesBuffered: socket.writableLength,
  };
}

/**
 * The peer's address, or `undefined` when the socket is not connected (any more). UNIX sockets
 * report `{ family: 'local', path }`, where the path of an unnamed client is `''`.
 */
export function peername(socket: net.Socket): SocketAddress | undefined {
  const path = states.get(socket)?.peerPath;
  if (path !== undefined) return { family: 'local', path };
  const address = socket.remoteAddress;
  const port = socket.remotePort;
  if (address === undefined || port === undefined) return undefined;
  return { family: socket.remoteFamily === 'IPv6' ? 'IPv6' : 'IPv4', address, port };
}

/**
 * The local address of the socket, or `undefined` when it is not bound (any more). UNIX sockets
 * report `{ family: 'local', path }`: the listen path on the accepting side, `''` on a client.
 */
export function sockname(socket: net.Socket): SocketAddress | undefined {
  const path = states.get(socket)?.localPath;
  if (path !== undefined) return { family: 'local', path };
  const address = socket.localAddress;
  const port = socket.localPort;
  if (address === undefined || port === undefined) return undefined;
  return { family: socket.localFamily === 'IPv6' ? 'IPv6' : 'IPv4', address, port };
}

/**
 * Close one direction (`gen_tcp:shutdown/2`). `'write'` sends FIN once queued data is written;
 * `'readWrite'` does the same, then destroys the socket (as {@link close}, without waiting).
 * `'read'` throws `NotSupportedError`: libuv has no `SHUT_RD`; pause the socket instead.
 * Does nothing on a socket that is already destroyed.
 */
export function shutdown(socket: net.Socket, how: ShutdownHow): void {
  switch (how) {
    case 'read':
      throw new NotSupportedError("shutdown: 'read' is not supported (no half-close of the read side in Node); pause the socket instead");
    case 'write':
      if (!socket.destroyed) socket.end();
      return;
    case 'readWrite':
      startClose(socket);
      return;
    default:
      throw new BadArgumentError(`shutdown: how must be 'read', 'write' or 'readWrite', got ${String(how)}`);
  }
}

const closing = new WeakMap<net.Socket, Promise<void>>();
const flushTimers = new WeakMap<net.Socket, NodeJS.Timeout>();
const RESOLVED: Promise<void> = Promise.resolve();

/**
 * Close the socket (`gen_tcp:close/1`): send queued data and FIN, destroy the socket once that
 * is done (`'finish'`), and resolve on `'close'`. If the data cannot be flushed within
 * {@link CLOSE_FLUSH_TIMEOUT_MS} (a peer that does not read), the socket is destroyed anyway.
 * Never rejects; idempotent (every call returns the same promise); a destroyed socket resolves at
 * once. Write errors while flushing (EPIPE, ECONNRESET) end in `'close'`, not in an uncaught
 * `'error'`.
 */
export function close(socket: net.Socket): Promise<void> {
  let p = closing.get(socket);
  if (p !== undefined) return p;
  if (socket.destroyed) return RESOLVED;
  p = new Promise<void>((resolve) => {
    socket.once('close', () => resolve());
  });
  closing.set(socket, p);
  startClose(socket);
  return p;
}

function startClose(socket: net.Socket): void {
  if (socket.destroyed || flushTimers.has(socket)) return;
  socket.on('error', ignoreError);
  if (socket.writableFinished) {
    socket.destroy();
    return;
  }
  socket.once('finish', destroyThis);
  socket.once('close', clearFlushTimer);
  const timer = setTimeout(destroySocket, CLOSE_FLUSH_TIMEOUT_MS, socket);
  timer.unref();
  flushTimers.set(socket, timer);
  socket.end();
}

function ignoreError(): void {}

function destroyThis(this: net.Socket): void {
  this.destroy();
}

function destroySocket(socket: net.Socket): void {
  socket.destroy();
}

function clearFlushTimer(this: net.Socket): void {
  const timer = flushTimers.get(this);
  if (timer !== undefined) clearTimeout(timer);
}
