/**
 * The HTTP/1.1 upgrade (RFC 6455 §4.2): validating the client's request, answering 101, and
 * handing the socket to a session. {@link handleUpgrade} serves any `node:http` server's
 * 'upgrade' event; the listener protocol in protocol.ts feeds its sockets to an `http.Server`
 * and ends up here too.
 */

import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { STATUS_CODES } from 'node:http';
import type { SocketAddress } from '@corral/listener';
import { negotiateServer, PerMessageDeflate, resolveCompressOption, type CompressOptions, type ResolvedDeflateOptions } from './deflate.js';
import type { InitAccept, InitReject, PartialRequest, UpgradeRequest, WebSocketHandler } from './handler.js';
import { resolveSessionOptions, type ResolvedSessionOptions, type SessionOptions } from './options.js';
import { Session, type SessionLogger, type SessionSocket } from './session.js';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const KEY_PATTERN = /^[A-Za-z0-9+/]{22}==$/;

/** The `Sec-WebSocket-Accept` value for a client's `Sec-WebSocket-Key`. */
export function acceptKey(key: string): string {
  return createHash('sha1').update(key + GUID).digest('base64');
}

/** Split a comma-separated header into its trimmed, non-empty tokens. */
export function headerTokens(value: string | string[] | undefined): string[] {
  if (value === undefined) return [];
  const joined = Array.isArray(value) ? value.join(',') : value;
  const out: string[] = [];
  for (const part of joined.split(',')) {
    const t = part.trim();
    if (t !== '') out.push(t);
  }
  return out;
}

function hasToken(value: string | string[] | undefined, token: string): boolean {
  return headerTokens(value).some((t) => t.toLowerCase() === token);
}

/** Why an upgrade request is refused: the HTTP status and the headers to answer with. */
export interface UpgradeRefusal {
  status: number;
  message: string;
  headers?: Record<string, string>;
}

/**
 * Check a request against RFC 6455 §4.2.1: GET, HTTP/1.1 or later, `Upgrade: websocket`,
 * `Connection: upgrade`, a 16-byte base64 `Sec-WebSocket-Key`, version 13. Returns the
 * refusal, or undefined when the request is a valid upgrade.
 */
export function checkUpgradeRequest(req: Pick<IncomingMessage, 'method' | 'httpVersion' | 'headers'>): UpgradeRefusal | undefined {
  const h = req.headers;
  if (req.method !== 'GET') return { status: 405, message: 'A WebSocket upgrade must be a GET', headers: { Allow: 'GET' } };
  const [major = 0, minor = 0] = req.httpVersion.split('.').map(Number);
  if (major < 1 || (major === 1 && minor < 1)) return { status: 400, message: 'A WebSocket upgrade needs HTTP/1.1' };
  if (!hasToken(h.upgrade, 'websocket')) {
    return { status: 426, message: 'Upgrade: websocket required', headers: { Upgrade: 'websocket', Connection: 'Upgrade' } };
  }
  if (!hasToken(h.connection, 'upgrade')) return { status: 400, message: 'Connection: upgrade required' };
  const key = h['sec-websocket-key'];
  if (typeof key !== 'string' || !KEY_PATTERN.test(key.trim())) {
    return { status: 400, message: 'Sec-WebSocket-Key must be 16 bytes in base64' };
  }
  const version = h['sec-websocket-version'];
  if (version !== '13') {
    return { status: 426, message: 'Unsupported WebSocket version', headers: { 'Sec-WebSocket-Version': '13' } };
  }
  return undefined;
}

/** Options of {@link handleUpgrade} and the listener protocol. */
export interface UpgradeOptions<O = unknown> extends CompressOptions {
  /** Given to the handler's `init` (and its state when it has no `init`). */
  handlerOpts?: O;
  /** Subprotocols the server speaks, in preference order: the first one the client offered is chosen. */
  subprotocols?: readonly string[];
  /**
   * Allowed `Origin` values (exact match, case-insensitive), or a function deciding. Requests
   * with another origin get 403. Default: any origin (browsers are not the only clients).
   */
  origins?: readonly string[] | ((origin: string | undefined, req: UpgradeRequest) => boolean);
  /** What of the request `terminate` gets (cowboy's `req_filter`). Default: method, url, peer, subprotocol. */
  reqFilter?: (req: UpgradeRequest) => PartialRequest;
  /** Session limits and timeouts. */
  session?: SessionOptions;
  /** Milliseconds `init` may take before the upgrade is refused with 503 (default 10000). */
  initTimeout?: number;
  /** Where crashes of handler callbacks are logged (any pino logger). */
  logger?: SessionLogger;
  /** Aborted when the server shuts down: sessions close with 1001. */
  signal?: AbortSignal;
}

/** Per-call context the listener protocol adds. */
export interface UpgradeContext {
  peer?: SocketAddress | undefined;
  secure?: boolean;
  signal?: AbortSignal;
  /** True once the server began shutting down (checked after `init`: the upgrade is refused). */
  shuttingDown?: () => boolean;
  /** `opts.session` and the compression settings, already resolved by the caller (once, not per upgrade). */
  resolved?: ResolvedUpgradeOptions;
}

/** What {@link handleUpgrade} makes of its options before any request is read. */
export interface ResolvedUpgradeOptions {
  session: ResolvedSessionOptions;
  compress: ResolvedDeflateOptions | undefined;
}

/** Validate `opts` (throws BadOptionError naming the first bad one). */
export function resolveUpgradeOptions(opts: UpgradeOptions<unknown>): ResolvedUpgradeOptions {
  return { session: resolveSessionOptions(opts.session, undefined, 'session.'), compress: resolveCompressOption(opts) };
}

function defaultFilter(req: UpgradeRequest): PartialRequest {
  return { method: req.method, url: req.url, peer: req.peer };
}

function writeResponse(socket: SessionSocket, status: number, headers: Record<string, string | string[]>, body: string | Uint8Array = ''): void {
  const bytes = typeof body === 'string' ? Buffer.from(body) : Buffer.from(body);
  let head = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Unknown'}\r\n`;
  const all: Record<string, string | string[]> = { Connection: 'close', 'Content-Type': 'text/plain; charset=utf-8', ...headers, 'Content-Length': String(bytes.length) };
  for (const [name, value] of Object.entries(all)) {
    for (const v of Array.isArray(value) ? value : [value]) {
      if (/[\r\n]/.test(name) || /[\r\n]/.test(v)) throw new TypeError(`Header ${name} contains a line break`);
      head += `${name}: ${v}\r\n`;
    }
  }
  socket.end(Buffer.concat([Buffer.from(`${head}\r\n`, 'latin1'), bytes]));
}

/** Refuse an upgrade with an HTTP response and close. */
export function refuseUpgrade(socket: SessionSocket, refusal: UpgradeRefusal): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  writeResponse(socket, refusal.status, refusal.headers ?? {}, `${refusal.message}\n`);
}

function isReject<S>(r: InitAccept<S> | InitReject): r is InitReject {
  return typeof r === 'object' && r !== null && 'reject' in r;
}

function originAllowed(opts: UpgradeOptions<unknown>, req: UpgradeRequest): boolean {
  const allowed = opts.origins;
  if (allowed === undefined) return true;
  const origin = typeof req.headers.origin === 'string' ? req.headers.origin : undefined;
  if (typeof allowed === 'function') return allowed(origin, req);
  return origin !== undefined && allowed.some((o) => o.toLowerCase() === origin.toLowerCase());
}

/**
 * Take over a socket from a `node:http`/`node:https` server's 'upgrade' event and run a
 * WebSocket session on it with `handler` (the same handler a Corral listener uses). Invalid
 * requests are answered with 400/403/426 and closed. Resolves with the session, or undefined
 * when the upgrade was refused.
 */
export async function handleUpgrade<S, O>(
  req: IncomingMessage,
  socket: SessionSocket,
  head: Buffer,
  handler: WebSocketHandler<S, O>,
  opts: UpgradeOptions<O> = {},
  ctx: UpgradeContext = {},
): Promise<Session<S> | undefined> {
  // Errors before the session owns the socket must not crash the process.
  socket.on('error', ignoreError);
  const refusal = checkUpgradeRequest(req);
  if (refusal !== undefined) {
    refuseUpgrade(socket, refusal);
    return undefined;
  }
  const offered = headerTokens(req.headers['sec-websocket-protocol']);
  const request: UpgradeRequest = {
    method: req.method ?? 'GET',
    url: req.url ?? '/',
    httpVersion: req.httpVersion,
    headers: req.headers,
    peer: ctx.peer ?? peerOfSocket(socket),
    subprotocols: offered,
    secure: ctx.secure ?? Boolean((socket as { encrypted?: boolean }).encrypted),
  };
  if (!originAllowed(opts as UpgradeOptions<unknown>, request)) {
    refuseUpgrade(socket, { status: 403, message: 'Origin not allowed' });
    return undefined;
  }

  let base: ResolvedSessionOptions;
  let compress: ResolvedDeflateOptions | undefined;
  let accepted: InitAccept<S>;
  try {
    ({ session: base, compress } = ctx.resolved ?? resolveUpgradeOptions(opts as UpgradeOptions<unknown>));
    const init = handler.init
      ? await withTimeout(Promise.resolve(handler.init(request, opts.handlerOpts as O)), opts.initTimeout ?? 10_000)
      : { state: opts.handlerOpts as unknown as S };
    if (isReject(init)) {
      const r = typeof init.reject === 'number' ? { status: init.reject } : init.reject;
      if (socket.writable) writeResponse(socket, r.status, r.headers ?? {}, r.body ?? `${STATUS_CODES[r.status] ?? ''}\n`);
      else socket.destroy();
      return undefined;
    }
    accepted = init;
  } catch (err) {
    opts.logger?.error({ err }, 'websocket init failed');
    refuseUpgrade(socket, { status: err instanceof InitTimeout ? 503 : 500, message: err instanceof InitTimeout ? 'Service unavailable' : 'Internal server error' });
    return undefined;
  }
  if (socket.destroyed) return undefined;
  // The server began shutting down while init ran: refuse rather than open a session to close it.
  if ((ctx.signal ?? opts.signal)?.aborted || ctx.shuttingDown?.() === true) {
    refuseUpgrade(socket, { status: 503, message: 'Service unavailable' });
    return undefined;
  }

  let protocol = accepted.subprotocol;
  if (protocol !== undefined && !offered.includes(protocol)) {
    opts.logger?.error({ subprotocol: protocol }, 'websocket init chose a subprotocol the client did not offer');
    refuseUpgrade(socket, { status: 500, message: 'Internal server error' });
    return undefined;
  }
  protocol ??= opts.subprotocols?.find((p) => offered.includes(p));

  let sessionOpts: ResolvedSessionOptions;
  try {
    sessionOpts = resolveSessionOptions(accepted.options, base, 'options.');
  } catch (err) {
    opts.logger?.error({ err }, 'websocket init returned bad options');
    refuseUpgrade(socket, { status: 500, message: 'Internal server error' });
    return undefined;
  }

  let response = 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n'
    + `Sec-WebSocket-Accept: ${acceptKey((req.headers['sec-websocket-key'] as string).trim())}\r\n`;
  if (protocol !== undefined) response += `Sec-WebSocket-Protocol: ${protocol}\r\n`;
  // An offer that cannot be accepted is declined: the connection runs uncompressed (RFC 7692 §5).
  const deflate = compress !== undefined && accepted.compress !== false
    ? negotiateServer(req.headers['sec-websocket-extensions'], compress)
    : undefined;
  if (deflate !== undefined) response += `Sec-WebSocket-Extensions: ${deflate.response}\r\n`;
  for (const [name, value] of Object.entries(accepted.headers ?? {})) {
    for (const v of Array.isArray(value) ? value : [value]) {
      if (/[\r\n:]/.test(name) || /[\r\n]/.test(v)) {
        refuseUpgrade(socket, { status: 500, message: 'Internal server error' });
        return undefined;
      }
      response += `${name}: ${v}\r\n`;
    }
  }
  socket.write(`${response}\r\n`, 'latin1');
  socket.off('error', ignoreError);

  const session = new Session<S>({
    socket,
    role: 'server',
    handler: handler as WebSocketHandler<S, never>,
    state: accepted.state,
    options: sessionOpts,
    req: (opts.reqFilter ?? defaultFilter)(request),
    head,
    ...(ctx.signal ?? opts.signal ? { signal: (ctx.signal ?? opts.signal)! } : {}),
    ...(opts.logger !== undefined ? { logger: opts.logger } : {}),
    ...(protocol !== undefined ? { protocol } : {}),
    ...(deflate !== undefined ? { deflate: new PerMessageDeflate('server', deflate.params, compress), extensions: deflate.response } : {}),
  });
  return session;
}

function ignoreError(): void {}

function peerOfSocket(socket: SessionSocket): SocketAddress | undefined {
  const s = socket as { remoteAddress?: string; remotePort?: number; remoteFamily?: string };
  if (s.remoteAddress === undefined) return undefined;
  return { family: s.remoteFamily === 'IPv6' ? 'IPv6' : 'IPv4', address: s.remoteAddress, port: s.remotePort ?? 0 };
}

class InitTimeout extends Error {}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  if (ms === Infinity) return p;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new InitTimeout('init timed out')), ms);
    p.then((v) => { clearTimeout(timer); resolve(v); }, (e: unknown) => { clearTimeout(timer); reject(e); });
  });
}
