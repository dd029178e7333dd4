/**
 * The WebSocket client (erlang_ws's `ws:connect`, hackney_ws's state machine) on the same
 * codec and session as the server: one implementation of the protocol, two roles.
 *
 * Messages reach a handler (active) or wait to be taken with `recv()` / `for await` (passive);
 * `setActive` switches at runtime without losing or reordering anything. In passive mode a
 * consumer that stops reading stops the session reading: backpressure reaches the TCP socket.
 */

import { randomBytes } from 'node:crypto';
import * as http from 'node:http';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { CorralError, SocketError } from '@corral/listener';
import { acceptKey, headerTokens } from './upgrade.js';
import type { CallbackResult, InFrame, InitAccept, InitReject, OutFrame, TerminateReason, UpgradeResponse, WebSocketHandler } from './handler.js';
import { resolveSessionOptions, type SessionOptions } from './options.js';
import { Session, type SessionLogger, type SessionSocket } from './session.js';

/** hackney_ws's states: idle, upgrading, connected, closing, closed. */
export type ClientState = 'idle' | 'upgrading' | 'connected' | 'closing' | 'closed';

/** Why `connect` failed. */
export type ConnectFailure = 'dns' | 'refused' | 'timeout' | 'aborted' | 'tls' | 'network' | 'status' | 'accept' | 'upgrade' | 'subprotocol' | 'extension';

/** `connect` failed: `reason` says where; a non-101 answer keeps its `status` and `headers`. */
export class WebSocketConnectError extends CorralError {
  readonly reason: ConnectFailure;
  readonly status: number | undefined;
  readonly headers: http.IncomingHttpHeaders | undefined;

  constructor(reason: ConnectFailure, message: string, extra: { cause?: unknown; status?: number; headers?: http.IncomingHttpHeaders } = {}) {
    super('ERR_CORRAL_WS_CONNECT', message, extra.cause === undefined ? undefined : { cause: extra.cause });
    this.reason = reason;
    this.status = extra.status;
    this.headers = extra.headers;
  }
}

/** A passive read gave up: the timeout passed, or the connection closed first. */
export class WebSocketClosedError extends CorralError {
  readonly reason: TerminateReason;

  constructor(reason: TerminateReason) {
    super('ERR_CORRAL_WS_CLOSED', `The WebSocket connection is closed (${reason.type})`);
    this.reason = reason;
  }
}

/** Options of {@link connect} (erlang_ws's option table, in camelCase). */
export interface ClientOptions<S = unknown, O = unknown> {
  /** Active mode: messages go to this handler (the server's handler interface; `init` sees the 101). */
  handler?: WebSocketHandler<S, O, UpgradeResponse>;
  handlerOpts?: O;
  /** Offered in Sec-WebSocket-Protocol. */
  subprotocols?: readonly string[];
  /** Offered in Sec-WebSocket-Extensions (none is understood yet: a server accepting one fails the connect). */
  extensions?: readonly string[];
  origin?: string;
  /** Extra request headers (CR, LF and NUL are refused). */
  extraHeaders?: Record<string, string>;
  /** Milliseconds for the connection and the upgrade (default 15000). */
  timeout?: number;
  signal?: AbortSignal;
  /** TLS options for wss:// (the peer is verified against the system CAs and SNI sent by default; these win). */
  tls?: tls.ConnectionOptions;
  /** Run over this already-connected socket instead of opening one. */
  socket?: SessionSocket;
  /** Largest frame and message accepted (defaults as the server's). */
  maxFrameSize?: number;
  maxMessageSize?: number;
  /** Other session options (timeouts, keepalive pings, backpressure). */
  session?: SessionOptions;
  /** Messages held in passive mode before reading stops (default 16). */
  passiveQueue?: number;
  /** Initial delivery mode: `true` with a handler (default when one is given), `false` (passive), or `'once'`. */
  active?: boolean | 'once';
  logger?: SessionLogger;
}

const MAX_RESPONSE_HEAD = 64 * 1024;

function failureOf(err: NodeJS.ErrnoException): ConnectFailure {
  switch (err.code) {
    case 'ENOTFOUND': case 'EAI_AGAIN': case 'EAI_NONAME': return 'dns';
    case 'ECONNREFUSED': return 'refused';
    case 'ETIMEDOUT': return 'timeout';
    default:
      return typeof err.code === 'string' && (err.code.startsWith('ERR_TLS') || err.code.startsWith('ERR_SSL') || err.code.includes('CERT') || err.code === 'DEPTH_ZERO_SELF_SIGNED_CERT' || err.code === 'SELF_SIGNED_CERT_IN_CHAIN')
        ? 'tls' : 'network';
  }
}

function checkHeaderValue(name: string, value: string): void {
  if (/[\r\n\0]/.test(name) || /[\r\n\0]/.test(value)) throw new TypeError(`Header ${name} contains CR, LF or NUL`);
}

interface PendingRecv {
  resolve: (frame: InFrame) => void;
  reject: (err: unknown) => void;
  timer: NodeJS.Timeout | undefined;
}

/**
 * A connected WebSocket client. In passive mode it is an async iterable of messages.
 */
export class WebSocketClient<S = unknown> implements AsyncIterable<InFrame> {
  #session!: Session<S>;
  #handler: WebSocketHandler<S, unknown, UpgradeResponse> | undefined;
  #active: boolean | 'once';
  #queue: InFrame[] = [];
  #waiters: PendingRecv[] = [];
  #limit: number;
  #resumeReading: (() => void) | undefined;
  #endReason: TerminateReason | undefined;
  #socket: SessionSocket;
  /** The 101 response. */
  readonly response: UpgradeResponse;

  /** @internal Made by {@link connect}. */
  constructor(socket: SessionSocket, response: UpgradeResponse, handler: WebSocketHandler<S, unknown, UpgradeResponse> | undefined, active: boolean | 'once', limit: number) {
    this.#socket = socket;
    this.response = response;
    this.#handler = handler;
    this.#active = handler === undefined ? false : active;
    this.#limit = limit;
  }

  /** @internal */
  attach(session: Session<S>): void {
    this.#session = session;
    void session.closed.then((reason) => {
      this.#endReason = reason;
      for (const w of this.#waiters.splice(0)) {
        if (w.timer !== undefined) clearTimeout(w.timer);
        w.reject(new WebSocketClosedError(reason));
      }
      this.#resumeReading?.();
    });
  }

  /** The subprotocol the server chose. */
  get protocol(): string | undefined {
    return this.response.subprotocol;
  }

  /** hackney_ws's state. */
  get state(): ClientState {
    const s = this.#session.state;
    return s === 'open' ? 'connected' : s;
  }

  /** Bytes written and not yet handed to the kernel. */
  get bufferedAmount(): number {
    return this.#session.bufferedAmount;
  }

  /** Resolves with the reason once the connection is closed. */
  get closed(): Promise<TerminateReason> {
    return this.#session.closed;
  }

  send(frames: OutFrame | readonly OutFrame[]): void {
    this.#session.send(frames);
  }

  /** Begin the close handshake; an invalid code is sent as 1002. Resolves once closed. */
  close(code = 1000, reason = ''): Promise<TerminateReason> {
    this.#session.close(code, reason);
    return this.#session.closed;
  }

  /** Send a message to the handler's `websocketInfo`. */
  info(message: unknown): void {
    this.#session.info(message);
  }

  peername(): { address?: string; port?: number; family?: string } {
    const s = this.#socket as Partial<net.Socket>;
    return { address: s.remoteAddress, port: s.remotePort, family: s.remoteFamily };
  }

  sockname(): { address?: string; port?: number; family?: string } {
    const s = this.#socket as Partial<net.Socket>;
    return { address: s.localAddress, port: s.localPort, family: s.localFamily };
  }

  /**
   * Switch delivery: `true` sends messages to the handler, `false` keeps them for `recv()`,
   * `'once'` sends the next one to the handler then goes passive. Messages already waiting go
   * first, in order.
   */
  setActive(active: boolean | 'once'): void {
    if (active !== false && this.#handler === undefined) throw new TypeError('setActive(true) needs a handler');
    this.#active = active;
    while (this.#active !== false && this.#queue.length > 0) {
      const frame = this.#queue.shift()!;
      if (this.#active === 'once') this.#active = false;
      this.#session.info({ [DELIVER]: frame });
    }
    this.#maybeResume();
  }

  /** Passive mode: the next message, within `timeoutMs` (default: no limit). */
  recv(timeoutMs = Infinity): Promise<InFrame> {
    const next = this.#queue.shift();
    if (next !== undefined) {
      this.#maybeResume();
      return Promise.resolve(next);
    }
    if (this.#endReason !== undefined) return Promise.reject(new WebSocketClosedError(this.#endReason));
    return new Promise((resolve, reject) => {
      const w: PendingRecv = { resolve, reject, timer: undefined };
      if (timeoutMs !== Infinity) {
        w.timer = setTimeout(() => {
          this.#waiters.splice(this.#waiters.indexOf(w), 1);
          reject(new SocketError('timeout', `no message within ${timeoutMs} ms`));
        }, timeoutMs);
      }
      this.#waiters.push(w);
    });
  }

  async *[Symbol.asyncIterator](): AsyncIterator<InFrame> {
    for (;;) {
      try {
        yield await this.recv();
      } catch (err) {
        if (err instanceof WebSocketClosedError) return;
        throw err;
      }
    }
  }

  /** @internal The session's handler: routes each event by the current mode. */
  handlerFor(): WebSocketHandler<S, never> {
    const h = this.#handler;
    return {
      websocketInit: h?.websocketInit ? (state, session) => h.websocketInit!(state, session) : undefined,
      websocketHandle: (frame, state, session) => {
        if (this.#active !== false && h !== undefined) {
          if (this.#active === 'once') this.#active = false;
          return h.websocketHandle(frame, state, session);
        }
        return this.#keep(frame);
      },
      websocketInfo: (message, state, session) => {
        if (typeof message === 'object' && message !== null && DELIVER in message) {
          return h?.websocketHandle((message as { [DELIVER]: InFrame })[DELIVER], state, session);
        }
        return h?.websocketInfo?.(message, state, session);
      },
      terminate: h?.terminate ? (reason, req, state) => h.terminate!(reason, req, state) : undefined,
    } as WebSocketHandler<S, never>;
  }

  // Passive: hand the frame to a waiting recv, or keep it; when too many wait, hold the session.
  #keep(frame: InFrame): CallbackResult<S> | Promise<CallbackResult<S>> {
    const w = this.#waiters.shift();
    if (w !== undefined) {
      if (w.timer !== undefined) clearTimeout(w.timer);
      w.resolve(frame);
      return undefined;
    }
    this.#queue.push(frame);
    if (this.#queue.length < this.#limit) return undefined;
    return new Promise<undefined>((resolve) => {
      this.#resumeReading = () => {
        this.#resumeReading = undefined;
        resolve(undefined);
      };
    });
  }

  #maybeResume(): void {
    if (this.#resumeReading !== undefined && (this.#queue.length < this.#limit || this.#active !== false)) this.#resumeReading();
  }
}

const DELIVER = Symbol('deliver');

function isReject<S>(r: InitAccept<S> | InitReject): r is InitReject {
  return typeof r === 'object' && r !== null && 'reject' in r;
}

/** Open the TCP or TLS connection for `url`. */
function openSocket(url: URL, opts: ClientOptions<unknown, unknown>): SessionSocket {
  const secure = url.protocol === 'wss:';
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  const port = Number(url.port || (secure ? 443 : 80));
  if (!secure) return net.connect({ host, port, noDelay: true });
  return tls.connect({
    host, port, ALPNProtocols: ['http/1.1'],
    ...(net.isIP(host) === 0 ? { servername: host } : {}),
    ...opts.tls,
  });
}

/**
 * Connect to a `ws://` or `wss://` URL and upgrade. Resolves once the 101 is validated and the
 * handler's `init` ran; rejects with {@link WebSocketConnectError} naming what failed.
 */
export async function connect<S = unknown, O = unknown>(url: string | URL, opts: ClientOptions<S, O> = {}): Promise<WebSocketClient<S>> {
  const target = typeof url === 'string' ? new URL(url) : url;
  if (target.protocol !== 'ws:' && target.protocol !== 'wss:') throw new TypeError(`Not a WebSocket URL: ${target.href}`);
  const timeout = opts.timeout ?? 15_000;
  const key = randomBytes(16).toString('base64');
  const offered = [...(opts.subprotocols ?? [])];
  const headers: Record<string, string> = {
    Connection: 'Upgrade',
    Upgrade: 'websocket',
    'Sec-WebSocket-Key': key,
    'Sec-WebSocket-Version': '13',
  };
  if (offered.length > 0) headers['Sec-WebSocket-Protocol'] = offered.join(', ');
  if (opts.extensions !== undefined && opts.extensions.length > 0) headers['Sec-WebSocket-Extensions'] = opts.extensions.join(', ');
  if (opts.origin !== undefined) headers.Origin = opts.origin;
  for (const [name, value] of Object.entries(opts.extraHeaders ?? {})) {
    checkHeaderValue(name, value);
    headers[name] = value;
  }
  const sessionOpts = resolveSessionOptions({
    ...opts.session,
    ...(opts.maxFrameSize !== undefined ? { maxFrameSize: opts.maxFrameSize } : {}),
    ...(opts.maxMessageSize !== undefined ? { maxMessageSize: opts.maxMessageSize } : {}),
  });

  const { socket, response, head } = await new Promise<{ socket: SessionSocket; response: http.IncomingMessage; head: Buffer }>((resolve, reject) => {
    let done = false;
    let timer: NodeJS.Timeout | undefined;
    const fail = (err: WebSocketConnectError): void => {
      if (done) return;
      done = true;
      if (timer !== undefined) clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      req.destroy();
      reject(err);
    };
    const onAbort = (): void => fail(new WebSocketConnectError('aborted', `connect to ${target.href} aborted`, { cause: opts.signal?.reason }));
    if (opts.signal?.aborted) {
      reject(new WebSocketConnectError('aborted', `connect to ${target.href} aborted`, { cause: opts.signal.reason }));
      return;
    }
    const req = http.request({
      method: 'GET',
      path: `${target.pathname || '/'}${target.search}`,
      headers: { Host: target.host, ...headers },
      maxHeaderSize: MAX_RESPONSE_HEAD,
      createConnection: () => (opts.socket ?? openSocket(target, opts as ClientOptions<unknown, unknown>)) as net.Socket,
    });
    req.on('upgrade', (res: http.IncomingMessage, sock: net.Socket, upgradeHead: Buffer) => {
      if (done) return;
      done = true;
      if (timer !== undefined) clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      resolve({ socket: sock as SessionSocket, response: res, head: upgradeHead });
    });
    req.on('response', (res: http.IncomingMessage) => {
      res.resume();
      fail(new WebSocketConnectError('status', `${target.href} answered ${res.statusCode} ${res.statusMessage ?? ''} instead of 101`, {
        status: res.statusCode, headers: res.headers,
      }));
    });
    req.on('error', (err: NodeJS.ErrnoException) => {
      fail(new WebSocketConnectError(failureOf(err), `connect to ${target.href} failed: ${err.message}`, { cause: err }));
    });
    if (timeout !== Infinity) {
      timer = setTimeout(() => fail(new WebSocketConnectError('timeout', `no WebSocket upgrade from ${target.href} within ${timeout} ms`)), timeout);
    }
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    req.end();
  });

  const refuse = (reason: ConnectFailure, message: string): never => {
    socket.destroy();
    throw new WebSocketConnectError(reason, message, { status: response.statusCode, headers: response.headers });
  };
  const h = response.headers;
  if (!headerTokens(h.upgrade).some((t) => t.toLowerCase() === 'websocket')) refuse('upgrade', 'The 101 response lacks Upgrade: websocket');
  if (!headerTokens(h.connection).some((t) => t.toLowerCase() === 'upgrade')) refuse('upgrade', 'The 101 response lacks Connection: upgrade');
  if (h['sec-websocket-accept'] !== acceptKey(key)) refuse('accept', 'Sec-WebSocket-Accept does not match the key sent');
  const protocolHeader = h['sec-websocket-protocol'];
  let subprotocol: string | undefined;
  if (protocolHeader !== undefined) {
    if (!offered.includes(protocolHeader)) refuse('subprotocol', `The server chose subprotocol ${JSON.stringify(protocolHeader)}, which was not offered`);
    subprotocol = protocolHeader;
  }
  const extensions = headerTokens(h['sec-websocket-extensions']);
  if (extensions.length > 0) refuse('extension', `The server accepted extensions that are not supported here: ${extensions.join(', ')}`);

  const upgrade: UpgradeResponse = { url: target.href, status: 101, headers: h, subprotocol, extensions };
  let state: S = opts.handlerOpts as unknown as S;
  let options = sessionOpts;
  if (opts.handler?.init !== undefined) {
    let init: InitAccept<S> | InitReject;
    try {
      init = await opts.handler.init(upgrade, opts.handlerOpts as O);
    } catch (err) {
      socket.destroy();
      throw err;
    }
    if (isReject(init)) {
      socket.destroy();
      throw new WebSocketConnectError('upgrade', 'The handler refused the connection in init');
    }
    state = init.state;
    if (init.options !== undefined) options = resolveSessionOptions(init.options, options);
  }

  const client = new WebSocketClient<S>(
    socket, upgrade, opts.handler as WebSocketHandler<S, unknown, UpgradeResponse> | undefined,
    opts.active ?? (opts.handler !== undefined ? true : false), opts.passiveQueue ?? 16,
  );
  const session = new Session<S>({
    socket,
    role: 'client',
    handler: client.handlerFor(),
    state,
    options,
    req: { url: target.href },
    head,
    ...(opts.signal !== undefined ? { signal: opts.signal } : {}),
    ...(opts.logger !== undefined ? { logger: opts.logger } : {}),
    ...(subprotocol !== undefined ? { protocol: subprotocol } : {}),
  });
  client.attach(session);
  return client;
}
