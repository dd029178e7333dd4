/**
 * The TLS transport (Ranch's `ranch_ssl`) on `node:tls`.
 *
 * The listen socket is a plain TCP one: accepting never runs TLS. The TLS handshake runs in
 * `handshake`, per connection, under the listener's `handshakeTimeout`, so a PROXY header can
 * come first and a client that stalls or speaks plain text costs one connection, nothing more.
 *
 * With `handshake: 'hello'` (Ranch's `{handshake, hello}`), `handshake` stops after the
 * ClientHello and returns `{ continue: hello }`: the protocol picks a certificate (by SNI),
 * ALPN or client-certificate demands, then calls `handshakeContinue(opts)` (on top of any options
 * given to `handshake`) or `handshakeCancel({ alert })`. The hello's bytes are given back to the
 * TLS engine untouched.
 */

import * as net from 'node:net';
import * as tls from 'node:tls';
import { parseClientHello, type ClientHello } from './client-hello.js';
import { attemptConnect, checkConnectLimits } from './connect-attempt.js';
import { BadArgumentError, BadOptionError, HandshakeError } from './errors.js';
import { readPrefix } from './peek.js';
import { recv } from './recv.js';
import { sendfile } from './sendfile.js';
import {
  close, getopts, getstat, inheritSocketState, peername, send, setopts, shutdown, sockname,
} from './socket-ops.js';
import { TCP_OPTION_KEYS, adopt as adoptTcp, tcp, type TcpSocketOptions } from './tcp.js';
import type { ConnectOptions, Transport } from './types.js';

/** Options that build the secure context (certificates, ciphers, versions, session tickets). */
export type TlsContextOptions = Pick<tls.SecureContextOptions,
  | 'key' | 'cert' | 'pfx' | 'passphrase' | 'ca' | 'crl' | 'ciphers' | 'ecdhCurve' | 'dhparam'
  | 'honorCipherOrder' | 'minVersion' | 'maxVersion' | 'sigalgs' | 'secureOptions'
  | 'sessionIdContext' | 'sessionTimeout' | 'ticketKeys'>;

/** Options applied per connection, on top of the secure context. */
export interface TlsConnectionOptions {
  /**
   * A context made once with `tls.createSecureContext` (the fastest way to switch certificates).
   * It replaces the context options (`key`, `cert`, `ca`, ...) given with it, as in `node:tls`.
   */
  secureContext?: tls.SecureContext;
  /** Ask the client for a certificate (mutual TLS). Default false. */
  requestCert?: boolean;
  /** With `requestCert`, refuse a client without a certificate the `ca` trusts. Default true. */
  rejectUnauthorized?: boolean;
  /** Application protocols the server supports, in preference order. */
  ALPNProtocols?: string[] | Uint8Array;
  /** Picks the application protocol from the client's list (exclusive with `ALPNProtocols`). */
  ALPNCallback?: (arg: { servername: string; protocols: string[] }) => string | undefined;
  /** Node's own SNI hook, passed through: `(servername, cb)` with `cb(err, secureContext)`. */
  SNICallback?: (servername: string, cb: (err: Error | null, ctx?: tls.SecureContext) => void) => void;
  /** TLS-PSK: the key for an identity (TLS 1.2). */
  pskCallback?: (socket: tls.TLSSocket, identity: string) => NodeJS.ArrayBufferView | null;
  pskIdentityHint?: string;
  /** Log the handshake to stderr (debugging). */
  enableTrace?: boolean;
}

/** Options of `handshake` and `handshakeContinue`: any TLS option, applied to this connection. */
export type TlsHandshakeOptions = TlsContextOptions & TlsConnectionOptions;

/** `socketOpts` of the TLS transport: the TCP ones, the TLS ones, and how to handshake. */
export interface TlsSocketOptions extends TcpSocketOptions, TlsHandshakeOptions {
  /** `'full'` (default): `handshake` returns the TLS socket. `'hello'`: it pauses after the ClientHello. */
  handshake?: 'full' | 'hello';
  /** Largest ClientHello accepted, in bytes of TLS records (default 65536). */
  maxHelloLength?: number;
}

/** The ClientHello a paused handshake reports. */
export type TlsHello = ClientHello;

/** TLS alerts a cancelled handshake can send (RFC 8446 §6), or any alert number. */
export type TlsAlert = 'handshake_failure' | 'unrecognized_name' | 'access_denied' | 'protocol_version'
  | 'internal_error' | 'no_application_protocol' | 'certificate_required' | number;

const ALERTS: Record<Exclude<TlsAlert, number>, number> = {
  handshake_failure: 40,
  access_denied: 49,
  protocol_version: 70,
  internal_error: 80,
  unrecognized_name: 112,
  certificate_required: 116,
  no_application_protocol: 120,
};

const CONTEXT_KEYS = new Set<string>([
  'key', 'cert', 'pfx', 'passphrase', 'ca', 'crl', 'ciphers', 'ecdhCurve', 'dhparam', 'honorCipherOrder',
  'minVersion', 'maxVersion', 'sigalgs', 'secureOptions', 'sessionIdContext', 'sessionTimeout', 'ticketKeys',
]);
const CONNECTION_KEYS = new Set<string>([
  'secureContext', 'requestCert', 'rejectUnauthorized', 'ALPNProtocols', 'ALPNCallback', 'SNICallback',
  'pskCallback', 'pskIdentityHint', 'enableTrace',
]);
const FUNCTION_KEYS = new Set(['ALPNCallback', 'SNICallback', 'pskCallback']);
const BOOLEAN_KEYS = new Set(['requestCert', 'rejectUnauthorized', 'enableTrace', 'honorCipherOrder']);
const VERSIONS = new Set(['TLSv1', 'TLSv1.1', 'TLSv1.2', 'TLSv1.3']);
const DEFAULT_MIN_VERSION = 'TLSv1.2';
const DEFAULT_MAX_HELLO = 65_536;

/** The TLS transport's normalised options. */
type NormalizedTls = TlsSocketOptions;

function checkTlsValue(key: string, value: unknown, path: string): void {
  if (FUNCTION_KEYS.has(key) && typeof value !== 'function') throw new BadOptionError(path, 'must be a function');
  if (BOOLEAN_KEYS.has(key) && typeof value !== 'boolean') throw new BadOptionError(path, 'must be a boolean');
  if ((key === 'minVersion' || key === 'maxVersion') && !VERSIONS.has(value as string)) {
    throw new BadOptionError(path, `must be one of ${[...VERSIONS].join(', ')}, got ${String(value)}`);
  }
  if (key === 'secureContext' && !(value instanceof Object && 'context' in value)) {
    throw new BadOptionError(path, 'must be made by tls.createSecureContext()');
  }
  if (key === 'ALPNProtocols' && !Array.isArray(value) && !ArrayBuffer.isView(value)) {
    throw new BadOptionError(path, 'must be an array of protocol names or a Uint8Array');
  }
}

/** Node's tls.Server refuses both; a TLSSocket made by hand would take them and ignore one. */
function checkAlpn(o: TlsConnectionOptions, path: string): void {
  if (o.ALPNProtocols !== undefined && o.ALPNCallback !== undefined) {
    throw new BadOptionError(`${path}ALPNCallback`, 'cannot be given with ALPNProtocols: choose one');
  }
}

function contextOptions(o: Record<string, unknown>): TlsContextOptions | undefined {
  let out: Record<string, unknown> | undefined;
  for (const key of CONTEXT_KEYS) {
    if (o[key] !== undefined) (out ??= {})[key] = o[key];
  }
  return out as TlsContextOptions | undefined;
}

// Contexts made here from options without a certificate: a handshake on one can only fail.
const certless = new WeakSet<tls.SecureContext>();

// tls.Server sets one by default; without it OpenSSL fails (not just skips) the resumption of a
// TLS 1.2 session whenever the server asks for client certificates.
const DEFAULT_SESSION_ID_CONTEXT = 'corral';

function createContext(opts: TlsContextOptions, fail: (detail: string) => Error): tls.SecureContext {
  let ctx: tls.SecureContext;
  try {
    ctx = tls.createSecureContext({ minVersion: DEFAULT_MIN_VERSION, sessionIdContext: DEFAULT_SESSION_ID_CONTEXT, ...opts });
  } catch (err) {
    throw fail(`cannot make a TLS context: ${(err as Error).message}`);
  }
  if (!((opts.key !== undefined && opts.cert !== undefined) || opts.pfx !== undefined)) certless.add(ctx);
  return ctx;
}

/** Whether a handshake with these options on this context can show the client a certificate. */
function hasCertificate(o: NormalizedTls, context: tls.SecureContext): boolean {
  return !certless.has(context) || o.SNICallback !== undefined || o.pskCallback !== undefined;
}

// The context made from a listener's own options. Kept off the options object: getTransportOptions
// hands that object out, and a new key and cert given back to setTransportOptions must make a new
// context, not find the old one among the options.
const listenerContexts = new WeakMap<object, tls.SecureContext>();

function listenerContext(so: NormalizedTls): tls.SecureContext {
  let ctx = so.secureContext ?? listenerContexts.get(so);
  if (ctx === undefined) {
    ctx = createContext(contextOptions(so as Record<string, unknown>) ?? {}, (d) => new BadOptionError('socketOpts', d));
    listenerContexts.set(so, ctx);
  }
  return ctx;
}

function normalizeOptions(socketOpts: unknown): NormalizedTls {
  if (socketOpts === undefined) socketOpts = {};
  if (typeof socketOpts !== 'object' || socketOpts === null || Array.isArray(socketOpts)) {
    throw new BadOptionError('socketOpts', 'must be an object');
  }
  const input = socketOpts as Record<string, unknown>;
  const tcpPart: Record<string, unknown> = {};
  const tlsPart: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(input)) {
    if (TCP_OPTION_KEYS.has(key)) tcpPart[key] = value;
    else if (CONTEXT_KEYS.has(key) || CONNECTION_KEYS.has(key)) {
      if (value !== undefined) checkTlsValue(key, value, `socketOpts.${key}`);
      tlsPart[key] = value;
    } else if (key !== 'handshake' && key !== 'maxHelloLength') {
      throw new BadOptionError(`socketOpts.${key}`, 'unknown option');
    }
  }
  const handshake = input.handshake ?? 'full';
  if (handshake !== 'full' && handshake !== 'hello') {
    throw new BadOptionError('socketOpts.handshake', `must be 'full' or 'hello', got ${String(handshake)}`);
  }
  const maxHelloLength = input.maxHelloLength ?? DEFAULT_MAX_HELLO;
  if (!Number.isSafeInteger(maxHelloLength) || (maxHelloLength as number) < 50) {
    throw new BadOptionError('socketOpts.maxHelloLength', 'must be an integer of at least 50');
  }
  const out: NormalizedTls = {
    ...tcp.normalizeOptions(tcpPart),
    ...(tlsPart as TlsHandshakeOptions),
    minVersion: (tlsPart.minVersion as tls.SecureVersion | undefined) ?? DEFAULT_MIN_VERSION,
    handshake,
    maxHelloLength: maxHelloLength as number,
  };
  checkAlpn(out, 'socketOpts.');
  // Made once here, so a bad key fails the start and every connection shares one context.
  const context = listenerContext(out);
  if (handshake === 'full' && !hasCertificate(out, context)) {
    throw new BadOptionError('socketOpts', 'a TLS listener needs a certificate: key and cert, pfx, secureContext, SNICallback or pskCallback (or handshake: \'hello\' to choose one per connection)');
  }
  return out;
}

/** Checked handshake options. */
function checkHandshakeOptions(opts: unknown): TlsHandshakeOptions | undefined {
  if (opts === undefined) return undefined;
  if (typeof opts !== 'object' || opts === null) throw new BadArgumentError('TLS handshake options must be an object');
  for (const [key, value] of Object.entries(opts)) {
    if (!CONTEXT_KEYS.has(key) && !CONNECTION_KEYS.has(key)) throw new BadArgumentError(`Unknown TLS handshake option ${key}`);
    if (value !== undefined) checkTlsValue(key, value, key);
  }
  checkAlpn(opts as TlsHandshakeOptions, '');
  return opts as TlsHandshakeOptions;
}

/** `top` over `base`; an ALPN choice in `top` replaces the one in `base`, whichever form each has. */
function overlay<T extends TlsConnectionOptions>(base: T, top: TlsHandshakeOptions): T {
  const out: T = { ...base, ...top };
  if (top.ALPNCallback !== undefined) delete out.ALPNProtocols;
  if (top.ALPNProtocols !== undefined) delete out.ALPNCallback;
  return out;
}

// Contexts made for handshake options, by listener options then options object: pass the same
// object per tenant and its context is made once, and the session tickets it issued stay valid.
const optionContexts = new WeakMap<object, WeakMap<object, tls.SecureContext>>();

function optionContext(so: NormalizedTls, opts: TlsHandshakeOptions, ctxOpts: TlsContextOptions): tls.SecureContext {
  let byOpts = optionContexts.get(so);
  if (byOpts === undefined) optionContexts.set(so, byOpts = new WeakMap());
  let ctx = byOpts.get(opts);
  if (ctx === undefined) {
    ctx = createContext({ ...contextOptions(so as Record<string, unknown>), ...ctxOpts }, (d) => new BadArgumentError(`TLS handshake options: ${d}`));
    byOpts.set(opts, ctx);
  }
  return ctx;
}

/** One handshake: the listener's options with `opts` on top, and the context they use. */
interface HandshakeSetup {
  o: NormalizedTls;
  context: tls.SecureContext;
}

function connectionOptions(so: NormalizedTls, opts: TlsHandshakeOptions | undefined, what: string): HandshakeSetup {
  const checked = checkHandshakeOptions(opts);
  let setup: HandshakeSetup = { o: so, context: listenerContext(so) };
  if (checked !== undefined) {
    const ctxOpts = contextOptions(checked as Record<string, unknown>);
    const context = checked.secureContext
      ?? (ctxOpts !== undefined ? optionContext(so, checked, ctxOpts) : setup.context);
    setup = { o: overlay(so, checked), context };
  }
  if (!hasCertificate(setup.o, setup.context)) {
    throw new BadArgumentError(`${what} needs a certificate: key and cert, pfx, secureContext or SNICallback, in its options or the listener's`);
  }
  return setup;
}

function peerOf(raw: net.Socket): { address: string | undefined; port: number | undefined } {
  return { address: raw.remoteAddress, port: raw.remotePort };
}

function onSocketError(): void {
  // The TLS socket's errors reach its owner as a close; an unheard 'error' must not crash the process.
}

interface VerifyingHandle {
  verifyError?: () => (Error & { code?: string }) | null;
}

/** Why the client certificate failed verification, or undefined when it passed. */
function verifyError(socket: tls.TLSSocket): (Error & { code?: string }) | undefined {
  // A tls.Server checks this after the handshake; a TLSSocket made by hand must do so itself.
  const handle = (socket as unknown as { ssl?: VerifyingHandle; _handle?: VerifyingHandle }).ssl
    ?? (socket as unknown as { _handle?: VerifyingHandle })._handle;
  return handle?.verifyError?.() ?? undefined;
}

function startTls(raw: net.Socket, { o, context }: HandshakeSetup): Promise<tls.TLSSocket> {
  const requestCert = o.requestCert === true;
  const rejectUnauthorized = o.rejectUnauthorized !== false;
  const socket = new tls.TLSSocket(raw, {
    isServer: true,
    secureContext: context,
    requestCert,
    rejectUnauthorized: requestCert && rejectUnauthorized,
    ...(o.ALPNProtocols !== undefined ? { ALPNProtocols: o.ALPNProtocols } : {}),
    ...(o.ALPNCallback !== undefined ? { ALPNCallback: o.ALPNCallback } : {}),
    ...(o.SNICallback !== undefined ? { SNICallback: o.SNICallback } : {}),
    ...(o.pskCallback !== undefined ? { pskCallback: o.pskCallback } : {}),
    ...(o.pskIdentityHint !== undefined ? { pskIdentityHint: o.pskIdentityHint } : {}),
    ...(o.enableTrace === true ? { enableTrace: true } : {}),
  } as tls.TLSSocketOptions);
  socket.on('error', onSocketError);
  inheritSocketState(raw, socket);
  return new Promise((resolve, reject) => {
    const settle = (): void => {
      socket.off('secure', onSecure);
      socket.off('error', onError);
      socket.off('close', onClose);
    };
    const onSecure = (): void => {
      settle();
      if (requestCert) {
        const err = verifyError(socket);
        const s = socket as unknown as { authorized: boolean; authorizationError?: Error | string };
        if (err) {
          s.authorizationError = err.code ?? err.message;
          if (rejectUnauthorized) {
            socket.destroy();
            reject(new HandshakeError('error', peerOf(raw), `client certificate refused (${err.code ?? err.message})`, err));
            return;
          }
        } else {
          s.authorized = true;
        }
      }
      // Passive, as the TCP transport hands its sockets over: the owner asks for data.
      socket.pause();
      resolve(socket);
    };
    const onError = (err: Error & { code?: string }): void => {
      settle();
      socket.destroy();
      const detail = err.code === 'ERR_SSL_HTTP_REQUEST' ? 'plain HTTP request on a TLS port' : err.message.trim();
      reject(new HandshakeError('error', peerOf(raw), detail, err));
    };
    const onClose = (): void => {
      settle();
      reject(new HandshakeError('closed', peerOf(raw), 'the peer closed during the TLS handshake'));
    };
    socket.once('secure', onSecure);
    socket.once('error', onError);
    socket.once('close', onClose);
  });
}

// Connections paused after their ClientHello, waiting for handshakeContinue or handshakeCancel,
// with the options given to handshake: they apply at the continue, under the ones given there.
const paused = new WeakMap<net.Socket, TlsHandshakeOptions | undefined>();

async function handshake(raw: net.Socket, opts: TlsHandshakeOptions | undefined, timeoutMs: number, so: NormalizedTls): Promise<tls.TLSSocket | { continue: TlsHello }> {
  if (raw.destroyed) throw new HandshakeError('closed', peerOf(raw), 'the socket is already closed');
  if (so.handshake === 'hello') {
    const first = checkHandshakeOptions(opts);
    const maxLength = so.maxHelloLength ?? DEFAULT_MAX_HELLO;
    // Only looked at: every byte goes back to the socket for the TLS engine.
    const hello = await readPrefix(raw, timeoutMs, 'TLS ClientHello', (buffered) => {
      const r = parseClientHello(buffered, { maxLength });
      return r.status === 'done' ? { value: r.hello, consumed: 0 } : undefined;
    });
    paused.set(raw, first);
    return { continue: hello };
  }
  return startTls(raw, connectionOptions(so, opts, 'The TLS handshake'));
}

async function handshakeContinue(raw: net.Socket, opts: TlsHandshakeOptions | undefined, _timeoutMs: number, so: NormalizedTls): Promise<tls.TLSSocket> {
  if (!paused.has(raw)) throw new HandshakeError('error', peerOf(raw), 'no paused TLS handshake on this connection');
  const first = paused.get(raw);
  paused.delete(raw);
  if (raw.destroyed) throw new HandshakeError('closed', peerOf(raw), 'the socket closed while the handshake was paused');
  // Merged only when both are given, so a protocol passing one object per tenant keeps its cached context.
  const checked = checkHandshakeOptions(opts);
  const all = first === undefined ? checked : checked === undefined ? first : overlay(first, checked);
  return startTls(raw, connectionOptions(so, all, 'handshakeContinue'));
}

/** A TLS alert record (fatal), as sent before any ServerHello: plaintext. */
export function tlsAlertRecord(alert: TlsAlert): Buffer {
  const code = typeof alert === 'number' ? alert : ALERTS[alert];
  if (!Number.isInteger(code) || code < 0 || code > 255) throw new BadArgumentError(`Unknown TLS alert ${String(alert)}`);
  return Buffer.of(0x15, 0x03, 0x03, 0x00, 0x02, 0x02, code);
}

async function handshakeCancel(raw: net.Socket, opts?: object): Promise<void> {
  paused.delete(raw);
  const alert = (opts as { alert?: TlsAlert } | undefined)?.alert ?? 'handshake_failure';
  let record: Buffer;
  try {
    record = tlsAlertRecord(alert);
  } catch (err) {
    // The handshake is over either way: a bad alert must not leave the connection open.
    raw.destroy();
    throw err;
  }
  if (raw.destroyed) return;
  // Data the client sent after its hello is never read: a close would answer it with a reset
  // and could drop the alert, so the alert goes out with a FIN and the socket closes after it.
  raw.end(record);
  await close(raw);
}

function connect(host: string, port: number, opts: ConnectOptions = {}): Promise<tls.TLSSocket> {
  const { timeout = Infinity, signal, ...tlsOpts } = opts;
  if (typeof host !== 'string' || host === '') return Promise.reject(new BadArgumentError('connect: host must be a non-empty string'));
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    return Promise.reject(new BadArgumentError(`connect: port must be an integer between 1 and 65535, got ${String(port)}`));
  }
  const bad = checkConnectLimits(timeout, signal);
  if (bad !== undefined) return Promise.reject(bad);
  const where = `${host.includes(':') ? `[${host}]` : host}:${port}`;
  // Verify the server and send SNI by default, as a client should.
  const options: tls.ConnectionOptions = {
    host, port, minVersion: DEFAULT_MIN_VERSION, rejectUnauthorized: true,
    ...(net.isIP(host) === 0 ? { servername: host } : {}),
    ...(tlsOpts as tls.ConnectionOptions),
  };
  return attemptConnect(where, timeout, signal, () => tls.connect(options), 'secureConnect', (socket) => socket.setNoDelay(true));
}

/**
 * The TLS transport: name `'tls'`, secure. Sockets are `tls.TLSSocket`s, handed over paused.
 * `socketOpts` take the TCP options and the TLS ones (`key`, `cert`, `pfx`, `ca`, `ciphers`,
 * `minVersion` (default TLSv1.2), `requestCert`/`rejectUnauthorized` for mutual TLS,
 * `ALPNProtocols`, `SNICallback`, `ticketKeys`, ...), and `handshake: 'hello'` to pause after the
 * ClientHello. `connect` verifies the server and sends SNI unless told otherwise.
 */
export const tlsTransport: Transport<tls.TLSSocket, TlsHandshakeOptions, TlsHello, TlsSocketOptions> = {
  name: 'tls',
  secure: true,
  normalizeOptions,
  listen: (opts, handler) => tcp.listen(opts, handler),
  adopt: (opts, handle, handler) => adoptTcp(opts, handle, handler),
  cleanup: (opts) => tcp.cleanup(opts),
  handshake: handshake as Transport<tls.TLSSocket, TlsHandshakeOptions, TlsHello, TlsSocketOptions>['handshake'],
  handshakeContinue: handshakeContinue as Transport<tls.TLSSocket, TlsHandshakeOptions, TlsHello, TlsSocketOptions>['handshakeContinue'],
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
