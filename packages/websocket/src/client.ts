/**
 * The WebSocket client (erlang_ws's `ws:connect`, hackney_ws's state machine) on the same
 * codec and session as the server: one implementation of the protocol, two roles.
 *
 * Messages reach a handler (active) or wait to be taken with `recv()` / `for await` (passive);
 * `setActive` switches at runtime without losing or reordering anything. In passive mode a
 * consumer that stops reading stops the socket reading: backpressure reaches the TCP socket.
 */

import { randomBytes } from 'node:crypto';
import * as http from 'node:http';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { BadOptionError, CorralError, SocketError } from '@corral/listener';
import { CloseCode, encodeClosePayload } from './close-codes.js';
import { Opcode, encodeFrame } from './frame.js';
import type { CallbackResult, HandlerResult, InFrame, InitAccept, InitReject, OutFrame, TerminateReason, UpgradeResponse, WebSocketHandler } from './handler.js';
import {
  acceptClientResponse, offerClient, PerMessageDeflate, PERMESSAGE_DEFLATE, resolveCompressOption,
  type CompressOptions, type NegotiatedParams,
} from './deflate.js';
import { resolveSessionOptions, type SessionOptions } from './options.js';
import { Session, type SessionLogger, type SessionSocket } from './session.js';
import { acceptKey, headerTokens } from './upgrade.js';

/**
 * hackney_ws's states: `idle` (connect called), `upgrading` (the request is on its way),
 * `connected`, `closing` (a close frame has been sent), `closed`.
 */
export type ClientState = 'idle' | 'upgrading' | 'connected' | 'closing' | 'closed';

/**
 * Why `connect` failed: `dns` (the host name does not resolve), `refused` (nothing listens),
 * `timeout` (no upgrade within `timeout`), `aborted` (the signal), `tls` (the TLS handshake or
 * the server's certificate), `network` (another socket error), `status` (an answer other than
 * 101), `accept` (a wrong Sec-WebSocket-Accept), `upgrade` (a 101 without the upgrade headers,
 * or the handler's `init` refused it), `subprotocol` / `extension` (one that was not offered or
 * is not supported).
 */
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

/** A passive read found the connection closed (and every message received before taken). */
export class WebSocketClosedError extends CorralError {
  readonly reason: TerminateReason;

  constructor(reason: TerminateReason) {
    super('ERR_CORRAL_WS_CLOSED', `The WebSocket connection is closed (${reason.type})`);
    this.reason = reason;
  }
}

/** Options of {@link connect} (erlang_ws's option table, in camelCase). */
export interface ClientOptions<S = unknown, O = unknown> extends CompressOptions {
  /** Active mode: messages go to this handler (the server's handler interface; `init` sees the 101). */
  handler?: WebSocketHandler<S, O, UpgradeResponse>;
  /** Given to the handler's `init` (and the handler's state when it has no `init`). */
  handlerOpts?: O;
  /** Offered in Sec-WebSocket-Protocol, in order of preference. */
  subprotocols?: readonly string[];
  /**
   * Other offers for Sec-WebSocket-Extensions, after permessage-deflate's (see `compress`). None
   * of them is understood: a server accepting one fails the connect.
   */
  extensions?: readonly string[];
  /** The Origin header. */
  origin?: string;
  /**
   * Extra request headers, sent as given (CR, LF and NUL are refused). A name the options
   * already set (Host, Origin) is replaced; the handshake's own headers cannot be.
   */
  extraHeaders?: Record<string, string>;
  /** Milliseconds for the connection, the TLS handshake and the upgrade (default 15000). */
  timeout?: number;
  /** Aborts the connect (reason `aborted`); once connected, closes the connection with 1001. */
  signal?: AbortSignal;
  /** TLS options for wss:// (the peer is verified against the system CAs and SNI sent by default; these win). */
  tls?: tls.ConnectionOptions;
  /** Run over this already-connected socket (TCP, TLS or any duplex stream) instead of opening one. */
  socket?: SessionSocket;
  /** Largest frame accepted (default 16 MiB); larger: the connection fails with 1009. */
  maxFrameSize?: number;
  /** Largest message accepted (default 64 MiB); larger: the connection fails with 1009. */
  maxMessageSize?: number;
  /** Other session options (timeouts, keepalive pings, backpressure). */
  session?: SessionOptions;
  /** Messages held in passive mode before the socket stops reading (default 16). */
  passiveQueue?: number;
  /** Initial delivery mode: `true` with a handler (default when one is given), `false` (passive), or `'once'`. */
  active?: boolean | 'once';
  /** Told of every state the client enters, in order, from `idle` to `closed`. */
  onState?: (state: ClientState) => void;
  logger?: SessionLogger;
}

/** An address as `peername()` and `sockname()` give it (fields absent for a socket without one). */
export interface ClientAddress {
  address?: string;
  port?: number;
  family?: string;
}

const MAX_RESPONSE_HEAD = 64 * 1024;
/** An HTTP token (RFC 9110 §5.6.2), as a subprotocol name must be. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const STATE_ORDER: Record<ClientState, number> = { idle: 0, upgrading: 1, connected: 2, closing: 3, closed: 4 };
/** Headers the handshake sets itself; the options set the others. */
const RESERVED_HEADERS = new Set(['upgrade', 'connection', 'sec-websocket-key', 'sec-websocket-version', 'sec-websocket-protocol', 'sec-websocket-extensions']);

/** OpenSSL's certificate verification failures, as Node names them. */
const CERT_ERRORS = new Set([
  'UNABLE_TO_GET_ISSUER_CERT', 'UNABLE_TO_GET_CRL', 'UNABLE_TO_DECRYPT_CERT_SIGNATURE', 'UNABLE_TO_DECRYPT_CRL_SIGNATURE',
  'UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY', 'CERT_SIGNATURE_FAILURE', 'CRL_SIGNATURE_FAILURE', 'CERT_NOT_YET_VALID', 'CERT_HAS_EXPIRED',
  'CRL_NOT_YET_VALID', 'CRL_HAS_EXPIRED', 'ERROR_IN_CERT_NOT_BEFORE_FIELD', 'ERROR_IN_CERT_NOT_AFTER_FIELD',
  'ERROR_IN_CRL_LAST_UPDATE_FIELD', 'ERROR_IN_CRL_NEXT_UPDATE_FIELD', 'OUT_OF_MEM', 'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'CERT_CHAIN_TOO_LONG',
  'CERT_REVOKED', 'INVALID_CA', 'PATH_LENGTH_EXCEEDED', 'INVALID_PURPOSE', 'CERT_UNTRUSTED', 'CERT_REJECTED', 'HOSTNAME_MISMATCH',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

function failureOf(err: NodeJS.ErrnoException, inTlsHandshake: boolean): ConnectFailure {
  const code = typeof err.code === 'string' ? err.code : '';
  switch (code) {
    case 'ENOTFOUND': case 'EAI_AGAIN': case 'EAI_NONAME': case 'EAI_NODATA': case 'EAI_FAIL': return 'dns';
    case 'ECONNREFUSED': return 'refused';
    case 'ETIMEDOUT': return 'timeout';
  }
  if (inTlsHandshake || CERT_ERRORS.has(code) || code.startsWith('ERR_TLS') || code.startsWith('ERR_SSL')) return 'tls';
  return 'network';
}

function checkHeader(name: string, value: unknown): void {
  if (typeof value !== 'string') throw new TypeError(`Header ${name}: expected a string value`);
  if (/[\r\n\0]/.test(name) || /[\r\n\0]/.test(value)) throw new TypeError(`Header ${JSON.stringify(name)} contains CR, LF or NUL`);
  if (RESERVED_HEADERS.has(name.toLowerCase())) {
    throw new TypeError(`Header ${name} is set by the handshake (use the subprotocols and extensions options)`);
  }
}

function checkOptions(opts: ClientOptions<unknown, unknown>): void {
  const { timeout, passiveQueue, active, signal, handler } = opts;
  if (timeout !== undefined && !(timeout === Infinity || (Number.isSafeInteger(timeout) && timeout > 0))) {
    throw new BadOptionError('timeout', 'expected a positive integer of milliseconds or Infinity');
  }
  if (passiveQueue !== undefined && !(Number.isSafeInteger(passiveQueue) && passiveQueue > 0)) {
    throw new BadOptionError('passiveQueue', 'expected a positive integer');
  }
  if (active !== undefined && active !== true && active !== false && active !== 'once') {
    throw new BadOptionError('active', "expected true, false or 'once'");
  }
  if (active !== undefined && active !== false && handler === undefined) throw new BadOptionError('active', 'active delivery needs a handler');
  if (handler !== undefined && (typeof handler !== 'object' || handler === null || typeof handler.websocketHandle !== 'function')) {
    throw new BadOptionError('handler', 'a WebSocket handler needs a websocketHandle function');
  }
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw new BadOptionError('signal', 'expected an AbortSignal');
  const { subprotocols, extensions } = opts;
  if (subprotocols !== undefined && (!Array.isArray(subprotocols) || subprotocols.some((p) => typeof p !== 'string' || !TOKEN.test(p)))) {
    throw new BadOptionError('subprotocols', 'expected a list of HTTP tokens');
  }
  if (extensions !== undefined && (!Array.isArray(extensions) || extensions.some((e) => typeof e !== 'string' || e.trim() === '' || /[\r\n\0,]/.test(e)))) {
    throw new BadOptionError('extensions', 'expected a list of extension offers (name and parameters, no commas)');
  }
  if (resolveCompressOption(opts) !== undefined && extensions?.some((e) => e.split(';')[0]!.trim().toLowerCase() === PERMESSAGE_DEFLATE)) {
    throw new BadOptionError('extensions', 'permessage-deflate is offered by the compress option, not here');
  }
}

interface PendingRecv {
  resolve: (frame: InFrame) => void;
  reject: (err: unknown) => void;
  timer: NodeJS.Timeout | undefined;
}

/** The message that makes the session hand the client's oldest held message to the handler. */
const PUMP = Symbol('pump');

/**
 * A connected WebSocket client. In passive mode it is an async iterable of messages.
 *
 * Every message goes through one queue, in arrival order: in active mode the handler is given
 * the oldest one each time (held messages first), in passive mode `recv()` takes it. A message
 * is never handed out twice and never skipped.
 */
export class WebSocketClient<S = unknown> implements AsyncIterable<InFrame> {
  #session!: Session<S>;
  #handler: WebSocketHandler<S, unknown, UpgradeResponse> | undefined;
  #active: boolean | 'once';
  #queue: InFrame[] = [];
  #waiters: PendingRecv[] = [];
  #limit: number;
  /** The socket is paused because the passive queue is full. */
  #paused = false;
  /** A pump message is on its way through the session. */
  #pumping = false;
  #endReason: TerminateReason | undefined;
  #socket: SessionSocket;
  #reported: ClientState;
  #onState: ((state: ClientState) => void) | undefined;
  /** The 101 response. */
  readonly response: UpgradeResponse;

  /** @internal Made by {@link connect}. */
  constructor(
    socket: SessionSocket, response: UpgradeResponse, handler: WebSocketHandler<S, unknown, UpgradeResponse> | undefined,
    active: boolean | 'once', limit: number, onState: ((state: ClientState) => void) | undefined,
  ) {
    this.#socket = socket;
    this.response = response;
    this.#handler = handler;
    this.#active = handler === undefined ? false : active;
    this.#limit = limit;
    this.#onState = onState;
    this.#reported = 'upgrading';
  }

  /** @internal */
  attach(session: Session<S>): void {
    this.#session = session;
    this.#report('connected');
    const socket = this.#socket;
    // The session's state moves without telling anyone: look whenever the socket's does.
    socket.once('end', () => this.#look());
    socket.once('finish', () => {
      this.#look();
      // Our side is closed: what still comes is read (and ignored by the session) so that the
      // peer's FIN is seen at once, not after the close timeout.
      this.#paused = false;
      if (!socket.destroyed) socket.resume();
    });
    void session.closed.then((reason) => {
      this.#endReason = reason;
      this.#report('closed');
      for (const w of this.#waiters.splice(0)) {
        if (w.timer !== undefined) clearTimeout(w.timer);
        w.reject(new WebSocketClosedError(reason));
      }
    });
  }

  /** The subprotocol the server chose. */
  get protocol(): string | undefined {
    return this.response.subprotocol;
  }

  /** hackney_ws's state: `connected`, `closing` or `closed` once `connect` has resolved. */
  get state(): ClientState {
    if (this.#endReason !== undefined) return 'closed';
    const s = this.#session.state;
    return s === 'open' ? 'connected' : s;
  }

  /** The current delivery mode. */
  get active(): boolean | 'once' {
    return this.#active;
  }

  /** Bytes written and not yet handed to the kernel. */
  get bufferedAmount(): number {
    return this.#session.bufferedAmount;
  }

  /** Messages received and waiting for `recv()` (or for the handler, after a switch to active). */
  get queued(): number {
    return this.#queue.length;
  }

  /** Resolves with the reason once the connection is closed. */
  get closed(): Promise<TerminateReason> {
    return this.#session.closed;
  }

  /** The session under the client (the handler's callbacks get it too). */
  get session(): Session<S> {
    return this.#session;
  }

  /** Send one frame or several, in order. Ignored once the connection is closing. */
  send(frames: OutFrame | readonly OutFrame[]): void {
    this.#session.send(frames);
    this.#look();
  }

  /** Begin the close handshake; an invalid code is sent as 1002. Resolves once closed. */
  close(code: number = CloseCode.Normal, reason = ''): Promise<TerminateReason> {
    this.#session.close(code, reason);
    this.#look();
    // Nothing more will be delivered: read on, so the peer's close frame is seen.
    this.#resume(true);
    return this.#session.closed;
  }

  /** Close the socket at once, without a close handshake. */
  terminate(): void {
    this.#session.terminate();
  }

  /** Send a message to the handler's `websocketInfo`. */
  info(message: unknown): void {
    this.#session.info(message);
  }

  /** The server's address. */
  peername(): ClientAddress {
    const s = this.#socket as Partial<net.Socket>;
    return { address: s.remoteAddress, port: s.remotePort, family: s.remoteFamily };
  }

  /** This end's address. */
  sockname(): ClientAddress {
    const s = this.#socket as Partial<net.Socket>;
    return { address: s.localAddress, port: s.localPort, family: s.localFamily };
  }

  /**
   * Switch delivery: `true` sends messages to the handler, `false` keeps them for `recv()`,
   * `'once'` sends the next one to the handler then goes passive. Messages already waiting go
   * first, in order.
   */
  setActive(active: boolean | 'once'): void {
    if (active !== true && active !== false && active !== 'once') throw new TypeError("setActive takes true, false or 'once'");
    if (active !== false && this.#handler === undefined) throw new TypeError('Active delivery needs a handler: pass one to connect');
    this.#active = active;
    // Resume first: an async handler run by the pump pauses the socket for itself.
    this.#resume(false);
    this.#pump();
  }

  /**
   * Passive mode: the next message, within `timeoutMs` (default: no limit). Rejects with a
   * `SocketError` (reason `timeout`) when none came in time (a later one is not lost: the next
   * `recv` gets it), and with {@link WebSocketClosedError} once the connection is closed and
   * every message received before has been taken.
   */
  recv(timeoutMs = Infinity): Promise<InFrame> {
    if (this.#active === true) return Promise.reject(new TypeError('recv() is for passive mode: call setActive(false) first'));
    if (!(timeoutMs === Infinity || timeoutMs >= 0)) return Promise.reject(new RangeError(`recv: bad timeout ${String(timeoutMs)}`));
    const next = this.#queue.shift();
    if (next !== undefined) {
      this.#resume(false);
      return Promise.resolve(next);
    }
    if (this.#endReason !== undefined) return Promise.reject(new WebSocketClosedError(this.#endReason));
    return new Promise((resolve, reject) => {
      const w: PendingRecv = { resolve, reject, timer: undefined };
      if (timeoutMs !== Infinity) {
        w.timer = setTimeout(() => {
          const at = this.#waiters.indexOf(w);
          if (at !== -1) this.#waiters.splice(at, 1);
          reject(new SocketError('timeout', `recv: no message within ${timeoutMs} ms`));
        }, timeoutMs);
      }
      this.#waiters.push(w);
    });
  }

  /** The messages, until the connection closes. Leaving the loop early leaves the connection open. */
  async *[Symbol.asyncIterator](): AsyncIterator<InFrame> {
    for (;;) {
      let frame: InFrame;
      try {
        frame = await this.recv();
      } catch (err) {
        if (err instanceof WebSocketClosedError) return;
        throw err;
      }
      yield frame;
    }
  }

  /** @internal The session's handler: routes each event by the current mode. */
  handlerFor(): WebSocketHandler<S, never> {
    const h = this.#handler;
    return {
      websocketInit: h?.websocketInit ? (state, session) => this.#watch(h.websocketInit!(state, session)) : undefined,
      websocketHandle: (frame, state, session) => {
        if (this.#active === false || h === undefined) {
          this.#keep(frame);
          return undefined;
        }
        // Held messages go first: this one waits behind them.
        let next = frame;
        if (this.#queue.length > 0) {
          this.#queue.push(frame);
          next = this.#queue.shift()!;
          this.#pump();
        }
        if (this.#active === 'once') this.#active = false;
        return this.#watch(h.websocketHandle(next, state, session));
      },
      websocketInfo: (message, state, session) => {
        if (message === PUMP) {
          this.#pumping = false;
          if (this.#active === false || h === undefined || this.#queue.length === 0) return undefined;
          const next = this.#queue.shift()!;
          if (this.#active === 'once') this.#active = false;
          this.#pump();
          this.#resume(false);
          return this.#watch(h.websocketHandle(next, state, session));
        }
        return this.#watch(h?.websocketInfo?.(message, state, session));
      },
      terminate: h?.terminate ? (reason, req, state) => h.terminate!(reason, req, state) : undefined,
    } as WebSocketHandler<S, never>;
  }

  /** Post a pump when messages are held and the handler should have them. */
  #pump(): void {
    if (this.#session === undefined || this.#pumping || this.#active === false || this.#queue.length === 0 || this.#session.state !== 'open') return;
    this.#pumping = true;
    this.#session.info(PUMP);
  }

  /**
   * A handler's result goes back to the session as it is; a stop (or a close frame) in it is
   * reported as `closing` once the session has applied it, right after the callback.
   */
  #watch<R extends CallbackResult<S> | Promise<CallbackResult<S>>>(result: R): R {
    if (result === null || typeof result !== 'object') return result;
    if (typeof (result as Promise<unknown>).then === 'function') {
      (result as Promise<CallbackResult<S>>).then((r) => this.#watch(r), () => queueMicrotask(() => this.#look()));
    } else if (closes(result as HandlerResult<S>)) {
      queueMicrotask(() => this.#look());
    }
    return result;
  }

  // Passive: hand the frame to a waiting recv, or keep it; when the queue is full, stop reading.
  #keep(frame: InFrame): void {
    const w = this.#waiters.shift();
    if (w !== undefined) {
      if (w.timer !== undefined) clearTimeout(w.timer);
      w.resolve(frame);
      return;
    }
    this.#queue.push(frame);
    if (this.#queue.length >= this.#limit && !this.#paused) {
      this.#paused = true;
      this.#socket.pause();
    }
  }

  #resume(always: boolean): void {
    if (!this.#paused) return;
    if (!always && this.#active === false && this.#queue.length >= this.#limit) return;
    this.#paused = false;
    if (!this.#socket.destroyed) this.#socket.resume();
  }

  #look(): void {
    if (this.#session === undefined) return;
    const s = this.#session.state;
    if (s === 'closing' || s === 'closed') this.#report('closing');
  }

  #report(state: ClientState): void {
    if (STATE_ORDER[state] <= STATE_ORDER[this.#reported]) return;
    this.#reported = state;
    try {
      this.#onState?.(state);
    } catch {
      // A throwing observer must not break the connection.
    }
  }
}

/** Whether a handler result closes the connection (a stop, or a close frame among the replies). */
function closes(result: HandlerResult<unknown>): boolean {
  if (result.stop !== undefined && result.stop !== false) return true;
  const reply = result.reply;
  if (reply === undefined) return false;
  const list: readonly OutFrame[] = Array.isArray(reply) ? reply : [reply as OutFrame];
  return list.some((f) => typeof f === 'object' && !(f instanceof Uint8Array) && f.type === 'close');
}

function isReject<S>(r: InitAccept<S> | InitReject): r is InitReject {
  return typeof r === 'object' && r !== null && 'reject' in r;
}

interface Opened {
  socket: net.Socket;
  /** The TCP connection is up, the TLS handshake not yet done (errors then are TLS failures). */
  inTlsHandshake(): boolean;
}

/** Open the TCP or TLS connection for `url`. */
function openSocket(url: URL, opts: ClientOptions<unknown, unknown>): Opened {
  const secure = url.protocol === 'wss:';
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  const port = Number(url.port || (secure ? 443 : 80));
  if (!secure) return { socket: net.connect({ host, port, noDelay: true }), inTlsHandshake: () => false };
  const socket = tls.connect({
    host, port, ALPNProtocols: ['http/1.1'], rejectUnauthorized: true,
    ...(net.isIP(host) === 0 ? { servername: host } : {}),
    ...opts.tls,
  });
  let tcpUp = false;
  let tlsUp = false;
  socket.once('connect', () => {
    tcpUp = true;
  });
  socket.once('secureConnect', () => {
    tlsUp = true;
  });
  return { socket, inTlsHandshake: () => tcpUp && !tlsUp };
}

/** A masked close frame, written by hand when the handler's `init` refuses the 101. */
function refuseWithClose(socket: SessionSocket): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  for (const part of encodeFrame(Opcode.Close, encodeClosePayload(CloseCode.Normal, ''), { mask: true })) socket.write(part);
  socket.end();
  // The server closes after its echo; a silent one is not waited for long.
  const timer = setTimeout(() => socket.destroy(), 5_000);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
  socket.resume();
}

/**
 * Connect to a `ws://` or `wss://` URL and upgrade. Resolves once the 101 is validated and the
 * handler's `init` ran; rejects with {@link WebSocketConnectError} naming what failed.
 */
export async function connect<S = unknown, O = unknown>(url: string | URL, opts: ClientOptions<S, O> = {}): Promise<WebSocketClient<S>> {
  const target = typeof url === 'string' ? new URL(url) : url;
  if (target.protocol !== 'ws:' && target.protocol !== 'wss:') throw new TypeError(`Not a WebSocket URL: ${target.href}`);
  if (target.hash !== '') throw new TypeError(`A WebSocket URL has no fragment: ${target.href}`);
  checkOptions(opts as ClientOptions<unknown, unknown>);
  const timeout = opts.timeout ?? 15_000;
  const key = randomBytes(16).toString('base64');
  const offered = [...(opts.subprotocols ?? [])];
  const compress = resolveCompressOption(opts);
  const requestedExtensions = (opts.extensions ?? []).map((e) => e.split(';')[0]!.trim().toLowerCase());
  const extensionOffers = [...(compress !== undefined ? [offerClient(compress)] : []), ...(opts.extensions ?? [])];
  if (compress !== undefined) requestedExtensions.push(PERMESSAGE_DEFLATE);
  const headers: Record<string, string> = { Host: target.host };
  if (opts.origin !== undefined) headers.Origin = opts.origin;
  for (const [name, value] of Object.entries(opts.extraHeaders ?? {})) {
    checkHeader(name, value);
    for (const existing of Object.keys(headers)) if (existing.toLowerCase() === name.toLowerCase()) delete headers[existing];
    headers[name] = value;
  }
  Object.assign(headers, {
    Connection: 'Upgrade',
    Upgrade: 'websocket',
    'Sec-WebSocket-Key': key,
    'Sec-WebSocket-Version': '13',
  });
  if (offered.length > 0) headers['Sec-WebSocket-Protocol'] = offered.join(', ');
  if (extensionOffers.length > 0) headers['Sec-WebSocket-Extensions'] = extensionOffers.join(', ');
  const sessionOpts = resolveSessionOptions(
    { maxFrameSize: opts.maxFrameSize, maxMessageSize: opts.maxMessageSize },
    resolveSessionOptions(opts.session, undefined, 'session.'),
  );

  const report = (state: ClientState): void => {
    try {
      opts.onState?.(state);
    } catch {
      // A throwing observer must not break the connect.
    }
  };
  report('idle');

  let socket: SessionSocket;
  let response: http.IncomingMessage;
  let head: Buffer;
  try {
    ({ socket, response, head } = await new Promise<{ socket: SessionSocket; response: http.IncomingMessage; head: Buffer }>((resolve, reject) => {
      if (opts.signal?.aborted) {
        reject(new WebSocketConnectError('aborted', `connect to ${target.href} aborted`, { cause: opts.signal.reason }));
        return;
      }
      let done = false;
      let timer: NodeJS.Timeout | undefined;
      let opened: Opened | undefined;
      const settle = (): void => {
        done = true;
        if (timer !== undefined) clearTimeout(timer);
        opts.signal?.removeEventListener('abort', onAbort);
      };
      const fail = (err: WebSocketConnectError): void => {
        if (done) return;
        settle();
        req.destroy();
        reject(err);
      };
      const onAbort = (): void => fail(new WebSocketConnectError('aborted', `connect to ${target.href} aborted`, { cause: opts.signal?.reason }));
      const req = http.request({
        method: 'GET',
        path: `${target.pathname || '/'}${target.search}`,
        headers,
        maxHeaderSize: MAX_RESPONSE_HEAD,
        createConnection: () => {
          if (opts.socket !== undefined) return opts.socket as net.Socket;
          opened = openSocket(target, opts as ClientOptions<unknown, unknown>);
          return opened.socket;
        },
      });
      // A socket handed over paused (as the transports' connect gives them) must flow for the response.
      req.once('socket', (sock: net.Socket) => {
        if (sock.isPaused()) sock.resume();
        if (!done) report('upgrading');
      });
      req.on('upgrade', (res: http.IncomingMessage, sock: net.Socket, upgradeHead: Buffer) => {
        if (done) {
          sock.destroy();
          return;
        }
        settle();
        // Until the session takes it, an error has somewhere to go (and is seen after `init`).
        sock.on('error', () => {});
        resolve({ socket: sock as SessionSocket, response: res, head: upgradeHead });
      });
      req.on('response', (res: http.IncomingMessage) => {
        res.resume();
        fail(new WebSocketConnectError('status', `${target.href} answered ${res.statusCode} ${res.statusMessage ?? ''} instead of 101`.trimEnd(), {
          status: res.statusCode, headers: res.headers,
        }));
      });
      req.on('error', (err: NodeJS.ErrnoException) => {
        const reason = failureOf(err, opened?.inTlsHandshake() ?? false);
        const what = reason === 'tls' ? 'TLS handshake with' : reason === 'dns' ? 'name lookup for' : 'connect to';
        fail(new WebSocketConnectError(reason, `${what} ${target.href} failed: ${err.message}`, { cause: err }));
      });
      if (timeout !== Infinity) {
        timer = setTimeout(() => fail(new WebSocketConnectError('timeout', `no WebSocket upgrade from ${target.href} within ${timeout} ms`)), timeout);
      }
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      req.end();
    }));
  } catch (err) {
    report('closed');
    throw err;
  }

  const refuse = (reason: ConnectFailure, message: string): never => {
    socket.destroy();
    report('closed');
    throw new WebSocketConnectError(reason, message, { status: response.statusCode, headers: response.headers });
  };
  const h = response.headers;
  if (response.statusCode !== 101) refuse('status', `${target.href} answered ${response.statusCode} to the upgrade`);
  if (!headerTokens(h.upgrade).some((t) => t.toLowerCase() === 'websocket')) refuse('upgrade', 'The 101 response lacks Upgrade: websocket');
  if (!headerTokens(h.connection).some((t) => t.toLowerCase() === 'upgrade')) refuse('upgrade', 'The 101 response lacks Connection: upgrade');
  if (h['sec-websocket-accept'] !== acceptKey(key)) refuse('accept', `Sec-WebSocket-Accept ${JSON.stringify(h['sec-websocket-accept'] ?? '')} does not match the key sent`);
  const protocolHeader = h['sec-websocket-protocol'];
  let subprotocol: string | undefined;
  if (protocolHeader !== undefined) {
    if (!offered.includes(protocolHeader)) {
      refuse('subprotocol', offered.length === 0
        ? `The server chose subprotocol ${JSON.stringify(protocolHeader)}, but none was offered`
        : `The server chose subprotocol ${JSON.stringify(protocolHeader)}, which was not offered (${offered.join(', ')})`);
    }
    subprotocol = protocolHeader;
  }
  const extensions = headerTokens(h['sec-websocket-extensions']);
  let deflate: NegotiatedParams | undefined;
  if (extensions.length > 0) {
    const names = extensions.map((e) => e.split(';')[0]!.trim());
    const unrequested = names.filter((n) => !requestedExtensions.includes(n.toLowerCase()));
    if (unrequested.length > 0) refuse('extension', `The server answered with extensions that were not offered: ${unrequested.join(', ')}`);
    const unsupported = names.filter((n) => n.toLowerCase() !== PERMESSAGE_DEFLATE);
    if (unsupported.length > 0) refuse('extension', `The server accepted extensions that are not supported here: ${unsupported.join(', ')}`);
    try {
      deflate = acceptClientResponse(h['sec-websocket-extensions'], compress);
    } catch (err) {
      refuse('extension', (err as Error).message);
    }
  }

  const upgrade: UpgradeResponse = { url: target.href, status: 101, headers: h, subprotocol, extensions };
  let state: S = opts.handlerOpts as unknown as S;
  let options = sessionOpts;
  if (opts.handler?.init !== undefined) {
    let init: InitAccept<S> | InitReject;
    try {
      init = await opts.handler.init(upgrade, opts.handlerOpts as O);
    } catch (err) {
      socket.destroy();
      report('closed');
      throw err;
    }
    if (isReject(init)) {
      refuseWithClose(socket);
      report('closed');
      throw new WebSocketConnectError('upgrade', 'The handler refused the connection in init', { status: 101, headers: h });
    }
    state = init.state;
    if (init.options !== undefined) options = resolveSessionOptions(init.options, options, 'options.');
  }
  if (socket.destroyed) refuse('network', `The connection to ${target.href} closed during the handler's init`);
  if (opts.signal?.aborted) {
    refuseWithClose(socket);
    report('closed');
    throw new WebSocketConnectError('aborted', `connect to ${target.href} aborted`, { cause: opts.signal.reason });
  }

  const client = new WebSocketClient<S>(
    socket, upgrade, opts.handler as WebSocketHandler<S, unknown, UpgradeResponse> | undefined,
    opts.active ?? (opts.handler !== undefined ? true : false), opts.passiveQueue ?? 16, opts.onState,
  );
  const session = new Session<S>({
    socket,
    role: 'client',
    handler: client.handlerFor(),
    state,
    options,
    req: { url: target.href },
    head,
    ...(opts.logger !== undefined ? { logger: opts.logger } : {}),
    ...(subprotocol !== undefined ? { protocol: subprotocol } : {}),
    ...(deflate !== undefined
      ? { deflate: new PerMessageDeflate('client', deflate, compress), extensions: extensions.join(', ') }
      : {}),
  });
  client.attach(session);
  const signal = opts.signal;
  if (signal !== undefined) {
    const onAbort = (): void => {
      void client.close(CloseCode.GoingAway, '');
    };
    signal.addEventListener('abort', onAbort, { once: true });
    void session.closed.then(() => signal.removeEventListener('abort', onAbort));
  }
  return client;
}
