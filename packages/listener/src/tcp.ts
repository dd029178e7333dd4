/**
 * The TCP transport (Ranch's `ranch_tcp`): plain TCP or UNIX domain sockets through `node:net`.
 *
 * Listen sockets accept connections paused (`pauseOnConnect`), so nothing is read before the
 * protocol asks; client sockets from {@link tcp.connect} are paused too (Ranch forces
 * `{active, false}`). The handshake is a no-op.
 */

import { lstat, unlink } from 'node:fs/promises';
import * as net from 'node:net';
import { attemptConnect, checkConnectLimits } from './connect-attempt.js';
import { BadArgumentError, BadOptionError, HandshakeError, ListenError, NotSupportedError } from './errors.js';
import { recv } from './recv.js';
import { sendfile } from './sendfile.js';
import {
  close, getopts, getstat, initSocketState, peername, send, setopts, shutdown, sockname,
} from './socket-ops.js';
import type { AcceptHandler, ConnectOptions, ListenSocket, SocketAddress, Transport } from './types.js';

/**
 * `socketOpts` of the TCP transport. Either a TCP address (`port`, `host`) or a UNIX socket
 * (`path`), not both.
 */
export interface TcpSocketOptions {
  /** TCP port, 0..65535. Default 0: the system picks a free port. */
  port?: number;
  /** Address or host name to bind. Default: every interface (`::` where IPv6 is available, else `0.0.0.0`). */
  host?: string;
  /**
   * UNIX domain socket path (a named pipe on Windows). Excludes `port`, `host`, `ipv6Only` and
   * `reusePort`. A stale socket file left by a dead process is removed before listening; a live
   * one, or any other kind of file, makes `listen` fail with `eaddrinuse`.
   */
  path?: string;
  /** Bind an IPv6 address without accepting IPv4-mapped connections. Default false. */
  ipv6Only?: boolean;
  /** Length of the kernel's queue of pending connections (capped by the system). Default 1024, as Ranch. */
  backlog?: number;
  /** Disable Nagle's algorithm on accepted sockets. Default true, as Ranch. */
  noDelay?: boolean;
  /** Enable TCP keep-alive on accepted sockets. Default false. */
  keepAlive?: boolean;
  /** Milliseconds of idleness before the first keep-alive probe (whole seconds in the kernel; 0: system default). Default 0. */
  keepAliveInitialDelay?: number;
  /**
   * Let several listen sockets bind the same address and port (`SO_REUSEPORT`). Passed to Node
   * only when true. Node 22.12+/23.1+ support it on Linux and the BSDs; older Node versions
   * (such as 20) ignore it, so a second listen socket on the same port fails with `eaddrinuse`.
   */
  reusePort?: boolean;
  /** UNIX socket: make the socket file readable by all users. Default false. */
  readableAll?: boolean;
  /** UNIX socket: make the socket file writable by all users. Default false. */
  writableAll?: boolean;
}

const DEFAULT_BACKLOG = 1024;
const MAX_INT32 = 0x7fff_ffff;

/** How long the stale-socket probe may wait on a UNIX socket that neither accepts nor refuses. */
const PROBE_TIMEOUT_MS = 1000;

type Check = (value: unknown) => string | undefined;

const isBoolean: Check = (v) => (typeof v === 'boolean' ? undefined : 'must be a boolean');
const isNonEmptyString: Check = (v) => (typeof v === 'string' && v !== '' ? undefined : 'must be a non-empty string');
const intIn = (min: number, max: number): Check => (v) =>
  Number.isInteger(v) && (v as number) >= min && (v as number) <= max ? undefined : `must be an integer between ${min} and ${max}`;

const CHECKS: Readonly<Record<keyof TcpSocketOptions, Check>> = {
  port: intIn(0, 65535),
  host: isNonEmptyString,
  path: isNonEmptyString,
  ipv6Only: isBoolean,
  backlog: intIn(1, MAX_INT32),
  noDelay: isBoolean,
  keepAlive: isBoolean,
  keepAliveInitialDelay: intIn(0, MAX_INT32),
  reusePort: isBoolean,
  readableAll: isBoolean,
  writableAll: isBoolean,
};

/** The keys of {@link TcpSocketOptions}, for transports that extend them. */
export const TCP_OPTION_KEYS: ReadonlySet<string> = new Set(Object.keys(CHECKS));

/** Options that only make sense for one kind of socket. */
const TCP_ONLY = ['port', 'host', 'ipv6Only', 'reusePort'] as const;
const UNIX_ONLY = ['readableAll', 'writableAll'] as const;

/**
 * Check `socketOpts` and return a fresh object with the defaults filled in. `undefined` gives
 * all defaults. Throws `BadOptionError` (`socketOpts.<key>`) for an unknown key, a value of the
 * wrong type or out of range, `path` together with a TCP-only option, or a UNIX-only option
 * without `path`. Keys whose value is `undefined` count as absent.
 */
function normalizeOptions(socketOpts: unknown): TcpSocketOptions {
  if (socketOpts === undefined) socketOpts = {};
  if (typeof socketOpts !== 'object' || socketOpts === null || Array.isArray(socketOpts)) {
    throw new BadOptionError('socketOpts', 'must be an object');
  }
  const input = socketOpts as Record<string, unknown>;
  const given: Record<string, unknown> = {};
  for (const key of Object.keys(input)) {
    const value = input[key];
    if (!Object.hasOwn(CHECKS, key)) throw new BadOptionError(`socketOpts.${key}`, 'unknown option');
    if (value === undefined) continue;
    const problem = CHECKS[key as keyof TcpSocketOptions](value);
    if (problem !== undefined) throw new BadOptionError(`socketOpts.${key}`, `${problem}, got ${describe(value)}`);
    given[key] = value;
  }
  const o = given as TcpSocketOptions;
  const common = {
    backlog: o.backlog ?? DEFAULT_BACKLOG,
    noDelay: o.noDelay ?? true,
    keepAlive: o.keepAlive ?? false,
    keepAliveInitialDelay: o.keepAliveInitialDelay ?? 0,
  };
  if (o.path !== undefined) {
    for (const key of TCP_ONLY) {
      if (o[key] !== undefined) throw new BadOptionError(`socketOpts.${key}`, 'cannot be combined with path (a UNIX socket)');
    }
    return { path: o.path, ...common, readableAll: o.readableAll ?? false, writableAll: o.writableAll ?? false };
  }
  for (const key of UNIX_ONLY) {
    if (o[key] !== undefined) throw new BadOptionError(`socketOpts.${key}`, 'only applies to a UNIX socket (path)');
  }
  const out: TcpSocketOptions = { port: o.port ?? 0, ...common, ipv6Only: o.ipv6Only ?? false, reusePort: o.reusePort ?? false };
  if (o.host !== undefined) out.host = o.host;
  return out;
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'object' && value !== null) return Array.isArray(value) ? 'an array' : 'an object';
  return String(value);
}

/** `host:port` or the path, for error messages. */
function describeAddress(opts: TcpSocketOptions): string {
  if (opts.path !== undefined) return opts.path;
  const host = opts.host ?? '*';
  return `${host.includes(':') ? `[${host}]` : host}:${opts.port ?? 0}`;
}

function errnoError(code: string, message: string): NodeJS.ErrnoException {
  const err: NodeJS.ErrnoException = new Error(message);
  err.code = code;
  return err;
}

/**
 * What is at a UNIX socket path: nothing, a socket nobody accepts on (stale), a live socket,
 * another kind of file, or something we cannot inspect. Only `stale` may be deleted.
 */
type PathState = 'absent' | 'stale' | 'live' | 'other' | 'unknown';

async function probePath(path: string): Promise<PathState> {
  let isSocket: boolean;
  try {
    isSocket = (await lstat(path)).isSocket();
  } catch (err) {
    // Missing, or a path we cannot inspect (listen() will report why).
    return (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'absent' : 'unknown';
  }
  if (!isSocket) return 'other';
  return new Promise((resolve) => {
    const probe = net.connect({ path });
    const done = (result: 'stale' | 'live'): void => {
      clearTimeout(timer);
      probe.removeListener('connect', onConnect);
      probe.removeListener('error', onError);
      probe.on('error', ignore);
      probe.destroy();
      resolve(result);
    };
    const onConnect = (): void => done('live');
    const onError = (err: NodeJS.ErrnoException): void => {
      done(err.code === 'ECONNREFUSED' || err.code === 'ENOENT' ? 'stale' : 'live');
    };
    // A full backlog (EAGAIN) or no answer in time still means a live socket: keep it.
    const timer = setTimeout(done, PROBE_TIMEOUT_MS, 'live');
    timer.unref();
    probe.once('connect', onConnect);
    probe.once('error', onError);
  });
}

/** Remove `path` if it is a socket file nothing listens on. */
async function removeStale(path: string): Promise<PathState> {
  const state = await probePath(path);
  if (state === 'stale') await unlink(path).catch(ignore);
  return state;
}

function ignore(): void {}

function toSocketAddress(server: net.Server, opts: TcpSocketOptions): SocketAddress {
  const a = server.address();
  if (typeof a === 'string') return { family: 'local', path: a };
  // Only a closed server has no address; fall back to what was asked for.
  if (a === null) {
    if (opts.path !== undefined) return { family: 'local', path: opts.path };
    const address = opts.host ?? '0.0.0.0';
    return { family: net.isIPv6(address) ? 'IPv6' : 'IPv4', address, port: opts.port ?? 0 };
  }
  return { family: a.family === 'IPv6' ? 'IPv6' : 'IPv4', address: a.address, port: a.port };
}

async function listen(opts: TcpSocketOptions, handler: AcceptHandler): Promise<ListenSocket> {
  const where = describeAddress(opts);
  const path = opts.path;
  if (path !== undefined) {
    const state = await removeStale(path).catch(() => 'unknown' as const);
    if (state === 'live') {
      throw new ListenError(where, errnoError('EADDRINUSE', `${path} is in use by another listener`));
    }
    if (state === 'other') {
      // Never delete a file that is not a socket: it is someone's data.
      throw new ListenError(where, errnoError('EADDRINUSE', `${path} exists and is not a socket`));
    }
  }
  const listenOpts: net.ListenOptions =
    path !== undefined
      ? { path, backlog: opts.backlog ?? DEFAULT_BACKLOG, readableAll: opts.readableAll ?? false, writableAll: opts.writableAll ?? false }
      : { port: opts.port ?? 0, backlog: opts.backlog ?? DEFAULT_BACKLOG, ipv6Only: opts.ipv6Only ?? false };
  if (opts.host !== undefined) listenOpts.host = opts.host;
  // Only when asked for: the option does not exist before Node 22.12/23.1.
  if (opts.reusePort === true) (listenOpts as { reusePort?: boolean }).reusePort = true;
  const server = acceptingServer(opts, handler);
  await startListening(server, where, (s) => s.listen(listenOpts));
  return listenSocket(server, opts, handler);
}

/**
 * Accept on a socket bound by another process (the listener's parent) and passed over IPC:
 * the same server and the same accepted sockets as {@link listen}.
 */
export async function adopt(opts: TcpSocketOptions, handle: object, handler: AcceptHandler): Promise<ListenSocket> {
  const server = acceptingServer(opts, handler);
  // A TCP handle is taken as it is; a UNIX socket's through its file descriptor.
  await startListening(server, describeAddress(opts), (s) => s.listen(handle, opts.backlog ?? DEFAULT_BACKLOG));
  return listenSocket(server, opts, handler);
}

/** A server that accepts paused sockets, with the transport's socket options, and hands them to `handler`. */
function acceptingServer(opts: TcpSocketOptions, handler: AcceptHandler): net.Server {
  const path = opts.path;
  const noDelay = opts.noDelay ?? true;
  const keepAlive = opts.keepAlive ?? false;
  const keepAliveInitialDelay = opts.keepAliveInitialDelay ?? 0;
  // Node (16.15+/17.7+) applies these to every accepted TCP socket itself; UNIX sockets skip them.
  const server = net.createServer({ pauseOnConnect: true, noDelay, keepAlive, keepAliveInitialDelay });
  // Accepted sockets record their options only when getopts would not guess them from the defaults.
  const record = path !== undefined || !noDelay || keepAlive;
  const init = path !== undefined ? { localPath: path, peerPath: '' } : { noDelay, keepAlive, keepAliveInitialDelay };

  server.on('connection', (socket: net.Socket) => {
    if (record) initSocketState(socket, init);
    try {
      handler.onConnection(socket);
    } catch (err) {
      // A throwing handler must not take the process down from inside libuv's accept callback.
      socket.destroy();
      reportError(handler, err);
    }
  });
  return server;
}

function startListening(server: net.Server, where: string, start: (server: net.Server) => void): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onError = (err: Error): void => {
      server.removeListener('listening', onListening);
      reject(new ListenError(where, err));
    };
    const onListening = (): void => {
      server.removeListener('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    try {
      start(server);
    } catch (err) {
      // Options Node rejects synchronously report the same way as a failed bind.
      server.removeListener('error', onError);
      server.removeListener('listening', onListening);
      reject(new ListenError(where, err));
    }
  });
}

function listenSocket(server: net.Server, opts: TcpSocketOptions, handler: AcceptHandler): ListenSocket {
  // From now on errors (EMFILE on accept, ...) are reported, never thrown.
  server.on('error', (err: Error) => reportError(handler, err));

  const address = toSocketAddress(server, opts);
  let closed: Promise<void> | undefined;
  return {
    server,
    address: () => address,
    close(): Promise<void> {
      // server.close(cb) calls back only once every accepted connection has ended; the listen
      // handle itself (port or socket file) is released synchronously by close().
      closed ??= new Promise<void>((resolve) => {
        if (server.listening) server.close();
        setImmediate(resolve);
      });
      return closed;
    },
  };
}

function reportError(handler: AcceptHandler, err: unknown): void {
  try {
    handler.onError(err instanceof Error ? err : new Error(String(err)));
  } catch {
    // The handler's own failure has nowhere else to go.
  }
}

async function cleanup(opts: TcpSocketOptions): Promise<void> {
  if (opts.path === undefined) return;
  await removeStale(opts.path).catch(ignore);
}

function peerInfo(socket: net.Socket): { address: string | undefined; port: number | undefined } {
  return { address: socket.remoteAddress, port: socket.remotePort };
}

function handshake(raw: net.Socket): Promise<net.Socket> {
  if (raw.destroyed) return Promise.reject(new HandshakeError('closed', peerInfo(raw), 'the socket is already closed'));
  return Promise.resolve(raw);
}

function handshakeContinue(): Promise<net.Socket> {
  return Promise.reject(new NotSupportedError('tcp: handshakeContinue is not supported (TCP has no handshake to pause)'));
}

function handshakeCancel(): Promise<void> {
  return Promise.reject(new NotSupportedError('tcp: handshakeCancel is not supported (TCP has no handshake to pause)'));
}

function connect(host: string, port: number, opts: ConnectOptions = {}): Promise<net.Socket> {
  const { timeout = Infinity, signal, ...netOpts } = opts;
  const path = typeof netOpts['path'] === 'string' ? (netOpts['path'] as string) : undefined;
  if (path === undefined) {
    if (typeof host !== 'string' || host === '') return Promise.reject(new BadArgumentError('connect: host must be a non-empty string'));
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
      return Promise.reject(new BadArgumentError(`connect: port must be an integer between 1 and 65535, got ${String(port)}`));
    }
  }
  const bad = checkConnectLimits(timeout, signal);
  if (bad !== undefined) return Promise.reject(bad);
  const where = path ?? `${host.includes(':') ? `[${host}]` : host}:${port}`;
  const noDelay = typeof netOpts['noDelay'] === 'boolean' ? (netOpts['noDelay'] as boolean) : true;
  const connectOpts = (path !== undefined ? { ...netOpts, path } : { ...netOpts, host, port, noDelay }) as net.NetConnectOpts;
  return attemptConnect(where, timeout, signal, () => net.connect(connectOpts), 'connect', (socket) => {
    if (path !== undefined) initSocketState(socket, { localPath: '', peerPath: path });
    else if (!noDelay) initSocketState(socket, { noDelay });
  });
}

/**
 * The TCP transport (Ranch's `ranch_tcp`): name `'tcp'`, not secure. Sockets are `net.Socket`s;
 * `handshake` returns the accepted socket itself; `handshakeContinue`/`handshakeCancel` reject
 * with `NotSupportedError`, as Ranch raises `not_supported`.
 *
 * `connect(host, port, { timeout, signal, ...netOpts })` resolves with a paused socket with
 * noDelay on (unless `netOpts.noDelay` is false); `netOpts.path` connects to a UNIX socket
 * instead. It rejects with `SocketError` `'timeout'`, `'cancelled'` (the signal's reason as
 * cause) or `'error'` (the connect error as cause), and destroys the socket on failure.
 */
export const tcp: Transport<net.Socket, undefined, never, TcpSocketOptions> = {
  name: 'tcp',
  secure: false,
  normalizeOptions,
  listen,
  adopt,
  cleanup,
  handshake,
  handshakeContinue,
  handshakeCancel,
  connect,
  recv,
  send,
  sendfile,
  setopts,
  getopts,
  getstat,
  peername,
  sockname,
  shutdown,
  close,
};
