/**
 * permessage-deflate (RFC 7692): negotiation for both roles, and the per-connection codec the
 * session calls to compress what it sends and inflate what it receives.
 *
 * Negotiation is pure: {@link parseExtensionHeader} reads `Sec-WebSocket-Extensions` (RFC 7230
 * tokens and quoted strings, several offers, duplicate parameters detected),
 * {@link negotiateServer} picks the first offer the server can accept and declines the others
 * (§5: a malformed offer is declined, never a reason to fail the handshake),
 * {@link offerClient} builds the client's offer and {@link acceptClientResponse} checks the
 * server's answer, throwing {@link ExtensionNegotiationError} where §5 and §7.1 say the client
 * must fail the connection.
 *
 * The codec, {@link PerMessageDeflate}, keeps no zlib context between messages. Context takeover
 * is carried by plain byte windows instead:
 *
 * - Sending: the last `takeoverBytes` bytes of what we compressed before are the preset
 *   dictionary of the next message's compressor. The peer's inflater holds at least those bytes
 *   at the same distances, so back-references into them decode exactly as with one long-lived
 *   stream. Dropping that window is always allowed: a sender may stop referring to earlier
 *   messages at any time, only a receiver must keep what the peer may refer to.
 * - Receiving: when the peer may use context takeover, the last 2^window_bits bytes we inflated
 *   are the dictionary of the next message's inflater: exactly the LZ77 window the peer is
 *   allowed to refer to. When it may not (`*_no_context_takeover`), nothing is kept.
 *
 * Each message is compressed or inflated by a zlib context that lives only as long as the
 * message: inline (synchronous, one call) for small ones, in the thread pool for large ones and
 * for fragmented ones that outgrow the inline limit. One exception: while a connection sends
 * messages too large for inline work with context takeover, it keeps one compressor across them
 * (a fresh compressor and its dictionary cost 15-25% of compressing a 16-64 KiB message), and
 * drops it with the sending window after `releaseAfterIdle`. So an idle connection holds no zlib
 * state at all, only the windows above (0 to 8 KiB sending, 0 to 32 KiB receiving), and 10,000
 * idle compressed connections cost no zlib contexts. A long-lived zlib compressor would hold
 * 2^(windowBits+2) + 2^(memLevel+9) bytes (256 KiB by default) and an inflater 2^windowBits plus
 * about 7 KiB, each with a 16 KiB output buffer.
 *
 * Why inline work for small messages: a zlib job in the thread pool adds stream machinery and a
 * thread hop to zlib's own work, costing 2-3 times the CPU of the work itself for 1-4 KiB
 * messages (inflating 1 KiB: about 8 times). Large messages go to the pool, which keeps the
 * event loop free; at most `concurrency` zlib jobs run at once per process (shared by every
 * connection with the same setting). A preset dictionary costs a compressor little when it is
 * small (8 KiB) and an inflater only a copy, so carrying context takeover this way is cheaper
 * than a long-lived zlib stream driven through the pool, for the same compression ratio.
 *
 * Limits: the inflated size of a message is checked while inflating; a message that passes the
 * limit stops inflation at once and fails with 1009, having buffered at most the limit plus one
 * output chunk. Corrupt compressed data fails with 1007 (invalid payload data).
 */

import {
  constants as zconst, createDeflateRaw, createInflateRaw, deflateRaw, deflateRawSync, inflateRawSync,
  type DeflateRaw, type InflateRaw, type ZlibOptions,
} from 'node:zlib';
import { BadOptionError } from '@corral/listener';
import { ProtocolViolation, WebSocketError, WsErrorCode } from './errors.js';

// ---------------------------------------------------------------------------------------------
// Constants and errors
// ---------------------------------------------------------------------------------------------

/** The extension's registered name. */
export const PERMESSAGE_DEFLATE = 'permessage-deflate';

/** The `code` strings of the errors this module raises. */
export const DeflateErrorCode = {
  /** The compressed payload of a message is not valid DEFLATE data. (1007) */
  BadCompressedData: 'ERR_CORRAL_WS_BAD_COMPRESSED_DATA',
  /** The server's permessage-deflate answer is one the client must fail the connection for. */
  Negotiation: 'ERR_CORRAL_WS_EXTENSION_NEGOTIATION',
  /** The codec was closed while work was pending, or used after `close()`. */
  Closed: 'ERR_CORRAL_WS_DEFLATE_CLOSED',
} as const;

/**
 * The client must fail the connection because of the server's `Sec-WebSocket-Extensions` answer
 * (RFC 7692 §5, §7.1): a parameter that is unknown, repeated, malformed, not allowed in a
 * response, or outside what the client offered.
 */
export class ExtensionNegotiationError extends WebSocketError {
  constructor(message: string) {
    super(DeflateErrorCode.Negotiation, message);
  }
}

/**
 * Messages up to this many bytes are compressed inline; larger ones in the thread pool.
 * Below it zlib's own work is smaller than the cost of going through the pool.
 */
export const SYNC_DEFLATE_MAX = 8 * 1024;

/** Compressed messages up to this many bytes (all fragments together) are inflated inline. */
export const SYNC_INFLATE_MAX_INPUT = 8 * 1024;

/**
 * Inline inflation stops at this many output bytes; a message that inflates to more is inflated
 * again in the thread pool (up to the message size limit). Bounds the time one message can hold
 * the event loop, whatever the compression ratio.
 */
export const SYNC_INFLATE_MAX_OUTPUT = 64 * 1024;

/** Output chunk of the background inflater: fewer thread-pool round trips than zlib's 16 KiB. */
const STREAM_CHUNK = 64 * 1024;

/** Payloads up to this size get the 4-byte trailer appended by a copy (one zlib job, not two). */
const TRAILER_COPY_MAX = 256 * 1024;

/** What §7.2.1 strips from the end of a compressed message and §7.2.2 appends before inflating. */
const TRAILER = Buffer.from([0x00, 0x00, 0xff, 0xff]);

const MAX_TAKEOVER_BYTES = 32 * 1024;

function corrupt(cause: unknown): ProtocolViolation {
  const detail = cause instanceof Error ? `: ${cause.message}` : '';
  return new ProtocolViolation(DeflateErrorCode.BadCompressedData, 1007, `Invalid compressed data${detail}`);
}

function tooBig(maxSize: number): ProtocolViolation {
  return new ProtocolViolation(WsErrorCode.MessageTooBig, 1009, `Message inflates to more than ${maxSize} bytes`);
}

function closedError(): WebSocketError {
  return new WebSocketError(DeflateErrorCode.Closed, 'The permessage-deflate codec is closed');
}

// ---------------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------------

/**
 * permessage-deflate settings, the same for servers (`compress`, with `perMessageDeflate` as an
 * alias) and clients. "Server" and "client" name the direction a parameter governs, as in RFC
 * 7692, whichever role reads them.
 */
export interface DeflateOptions {
  /** zlib compression level 0-9 (default 1: most of level 9's gain for a fraction of its CPU). */
  level?: number;
  /** zlib memLevel 1-9 (default 8). */
  memLevel?: number;
  /** Messages shorter than this many bytes are sent uncompressed (default 1024). */
  threshold?: number;
  /**
   * The server compresses each message on its own. A server includes server_no_context_takeover
   * in its answer; a client asks for it (and fails the connection if the server does not agree),
   * which lets it keep no window between messages. Default false.
   */
  serverNoContextTakeover?: boolean;
  /**
   * The client compresses each message on its own. A server requires it in its answer, so it
   * keeps no window of the client's between messages (the way to make idle connections cost
   * nothing); a client offers it and honours it. Default false.
   */
  clientNoContextTakeover?: boolean;
  /**
   * Largest LZ77 window (as a power of two, 8-15) of the server's compressor (default 15). A
   * server never compresses with more; a client asks for at most this, and fails the connection
   * if the server does not agree.
   */
  serverMaxWindowBits?: number;
  /**
   * Largest LZ77 window (8-15) of the client's compressor (default 15; `true` means 15). A server
   * with less declines offers that do not let it set the client's window (an offer without
   * client_max_window_bits); a client offers it with this value (bare when 15).
   */
  clientMaxWindowBits?: number | true;
  /**
   * How many bytes of what was sent before the next compressed message may refer to, when
   * context takeover is allowed in our direction (0-32768, default 8192; 0 never uses it).
   * Measured on JSON messages of 1-4 KiB: 8 KiB gets the ratio of a full 32 KiB window within
   * about one point, at a fraction of the CPU a 32 KiB preset dictionary costs.
   */
  takeoverBytes?: number;
  /**
   * Drop the sending window after this many ms without a compressed message (default 30000;
   * Infinity keeps it). The receiving window is never dropped while the peer may use context
   * takeover: the peer's next message may refer to it.
   */
  releaseAfterIdle?: number;
  /**
   * Most zlib jobs running at once in the thread pool, per process, among connections with the
   * same setting (default 10). Inline jobs are not counted: they cannot overlap.
   */
  concurrency?: number;
}

/** {@link DeflateOptions} with every default applied. */
export interface ResolvedDeflateOptions {
  level: number;
  memLevel: number;
  threshold: number;
  serverNoContextTakeover: boolean;
  clientNoContextTakeover: boolean;
  serverMaxWindowBits: number;
  clientMaxWindowBits: number;
  takeoverBytes: number;
  releaseAfterIdle: number;
  concurrency: number;
}

export const DEFLATE_DEFAULTS: Readonly<ResolvedDeflateOptions> = Object.freeze({
  level: 1,
  memLevel: 8,
  threshold: 1024,
  serverNoContextTakeover: false,
  clientNoContextTakeover: false,
  serverMaxWindowBits: 15,
  clientMaxWindowBits: 15,
  takeoverBytes: 8 * 1024,
  releaseAfterIdle: 30_000,
  concurrency: 10,
});

function integerIn(name: string, value: unknown, min: number, max: number): number {
  if (!Number.isSafeInteger(value) || (value as number) < min || (value as number) > max) {
    throw new BadOptionError(name, `expected an integer from ${min} to ${max}, got ${String(value)}`);
  }
  return value as number;
}

/**
 * Validate `compress` / `perMessageDeflate`: `true` is every default, `false` or undefined is
 * off (returns undefined), an object overrides the defaults. Throws {@link BadOptionError}
 * naming the first bad option (under `name`). Accepts ws's `concurrencyLimit` for `concurrency`.
 */
export function normalizeDeflateOptions(value: unknown, name = 'compress'): ResolvedDeflateOptions | undefined {
  if (value === undefined || value === false) return undefined;
  if (value === true) return { ...DEFLATE_DEFAULTS };
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new BadOptionError(name, 'expected a boolean or an object of permessage-deflate options');
  }
  const out: ResolvedDeflateOptions = { ...DEFLATE_DEFAULTS };
  const o = value as Record<string, unknown>;
  let concurrencyGiven = false;
  for (const key of Object.keys(o)) {
    const v = o[key];
    if (v === undefined) continue;
    const path = `${name}.${key}`;
    switch (key) {
      case 'level': out.level = integerIn(path, v, 0, 9); break;
      case 'memLevel': out.memLevel = integerIn(path, v, 1, 9); break;
      case 'threshold': out.threshold = integerIn(path, v, 0, Number.MAX_SAFE_INTEGER); break;
      case 'serverNoContextTakeover':
      case 'clientNoContextTakeover':
        if (typeof v !== 'boolean') throw new BadOptionError(path, 'expected a boolean');
        out[key] = v;
        break;
      case 'serverMaxWindowBits': out.serverMaxWindowBits = integerIn(path, v, 8, 15); break;
      case 'clientMaxWindowBits': out.clientMaxWindowBits = v === true ? 15 : integerIn(path, v, 8, 15); break;
      case 'takeoverBytes': out.takeoverBytes = integerIn(path, v, 0, MAX_TAKEOVER_BYTES); break;
      case 'releaseAfterIdle':
        if (!(v === Infinity || (Number.isSafeInteger(v) && (v as number) > 0))) {
          throw new BadOptionError(path, 'expected a positive integer of milliseconds or Infinity');
        }
        out.releaseAfterIdle = v as number;
        break;
      case 'concurrency':
      case 'concurrencyLimit':
        if (concurrencyGiven) throw new BadOptionError(path, 'give concurrency or concurrencyLimit, not both');
        concurrencyGiven = true;
        out.concurrency = integerIn(path, v, 1, 1024);
        break;
      case 'zlibDeflateOptions':
      case 'zlibInflateOptions':
        throw new BadOptionError(path, 'not supported: use level and memLevel');
      default:
        throw new BadOptionError(path, 'unknown option');
    }
  }
  return out;
}

/** Where compression is configured: `compress` (cowboy's name) or `perMessageDeflate` (ws's). */
export interface CompressOptions {
  /** permessage-deflate: `true` for the defaults, or its settings. Default: off. */
  compress?: boolean | DeflateOptions;
  /** The same as `compress`, for those coming from `ws`; give one or the other. */
  perMessageDeflate?: boolean | DeflateOptions;
}

/** The compression settings of `opts`, or undefined when compression is off. Throws BadOptionError. */
export function resolveCompressOption(opts: CompressOptions, prefix = ''): ResolvedDeflateOptions | undefined {
  if (opts.compress !== undefined && opts.perMessageDeflate !== undefined) {
    throw new BadOptionError(`${prefix}perMessageDeflate`, 'an alias of compress: give one or the other');
  }
  return opts.perMessageDeflate !== undefined
    ? normalizeDeflateOptions(opts.perMessageDeflate, `${prefix}perMessageDeflate`)
    : normalizeDeflateOptions(opts.compress, `${prefix}compress`);
}

function resolveOptions(options: DeflateOptions | ResolvedDeflateOptions | true | undefined): ResolvedDeflateOptions {
  return normalizeDeflateOptions(options ?? true) ?? { ...DEFLATE_DEFAULTS };
}

// ---------------------------------------------------------------------------------------------
// Sec-WebSocket-Extensions
// ---------------------------------------------------------------------------------------------

/** One element of a `Sec-WebSocket-Extensions` list. */
export interface ExtensionElement {
  /** The extension token, lowercased. */
  name: string;
  /** Parameters by lowercased name: the value (unquoted), or `true` for a parameter without one. */
  params: Record<string, string | true>;
  /** Set when the element is malformed (bad syntax, a repeated parameter): it cannot be accepted. */
  error?: string;
}

/** RFC 7230 tchar, indexed by char code. */
const TCHAR = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") TCHAR[c.charCodeAt(0)] = 1;

function isTchar(code: number): boolean {
  return code < 128 && TCHAR[code] === 1;
}

function tokenEnd(s: string, i: number): number {
  while (i < s.length && isTchar(s.charCodeAt(i))) i++;
  return i;
}

function skipOws(s: string, i: number): number {
  while (i < s.length && (s[i] === ' ' || s[i] === '\t')) i++;
  return i;
}

function isToken(s: string): boolean {
  return s.length > 0 && tokenEnd(s, 0) === s.length;
}

/** Index of the comma ending the element that contains `i` (quoted strings skipped), or the end. */
function elementEnd(s: string, i: number): number {
  let quoted = false;
  for (; i < s.length; i++) {
    const c = s[i];
    if (quoted) {
      if (c === '\\') i++;
      else if (c === '"') quoted = false;
    } else if (c === '"') {
      quoted = true;
    } else if (c === ',') {
      return i;
    }
  }
  return s.length;
}

/** Parse one element starting at a non-blank, non-comma `i`; returns it and the index after it. */
function parseElement(s: string, start: number): [ExtensionElement, number] {
  const params: Record<string, string | true> = Object.create(null) as Record<string, string | true>;
  const el: ExtensionElement = { name: '', params };
  const malformed = (why: string, at: number): [ExtensionElement, number] => {
    el.error = why;
    return [el, elementEnd(s, at)];
  };
  let i = tokenEnd(s, start);
  if (i === start) return malformed(`expected an extension name at ${JSON.stringify(s.slice(start, start + 16))}`, start);
  el.name = s.slice(start, i).toLowerCase();
  for (;;) {
    i = skipOws(s, i);
    if (i >= s.length || s[i] === ',') return [el, i];
    if (s[i] !== ';') return malformed(`unexpected ${JSON.stringify(s[i])} after ${el.name}`, i);
    i = skipOws(s, i + 1);
    const nameStart = i;
    i = tokenEnd(s, i);
    if (i === nameStart) return malformed('expected a parameter name after ";"', i);
    const pname = s.slice(nameStart, i).toLowerCase();
    i = skipOws(s, i);
    let value: string | true = true;
    if (s[i] === '=') {
      i = skipOws(s, i + 1);
      if (s[i] === '"') {
        let v = '';
        let closed = false;
        for (i++; i < s.length; i++) {
          const c = s[i]!;
          if (c === '\\') {
            if (i + 1 >= s.length) break;
            v += s[++i];
          } else if (c === '"') {
            closed = true;
            i++;
            break;
          } else {
            v += c;
          }
        }
        if (!closed) return malformed(`unterminated quoted value of ${pname}`, s.length);
        // RFC 6455 §9.1: once unquoted, the value must be a token.
        if (!isToken(v)) return malformed(`value of ${pname} is not a token once unquoted`, i);
        value = v;
      } else {
        const valueStart = i;
        i = tokenEnd(s, i);
        if (i === valueStart) return malformed(`expected a value for ${pname}`, i);
        value = s.slice(valueStart, i);
      }
    }
    if (pname in params) return malformed(`parameter ${pname} given twice`, i);
    params[pname] = value;
  }
}

/**
 * Parse `Sec-WebSocket-Extensions` (one header value or several, which form one list) into its
 * elements, in order. Empty list elements are skipped; a malformed element is kept with `error`
 * set (and the parse resumes at the next comma), so a server can decline just that offer.
 */
export function parseExtensionHeader(value: string | readonly string[] | undefined): ExtensionElement[] {
  if (value === undefined) return [];
  const s = typeof value === 'string' ? value : value.join(',');
  const out: ExtensionElement[] = [];
  let i = 0;
  while (i < s.length) {
    const c = s[i];
    if (c === ' ' || c === '\t' || c === ',') {
      i++;
      continue;
    }
    const [el, next] = parseElement(s, i);
    out.push(el);
    i = next;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Negotiation
// ---------------------------------------------------------------------------------------------

/** The agreed parameters (RFC 7692 §7.1), absent ones filled in: 15 bits, context takeover allowed. */
export interface NegotiatedParams {
  serverNoContextTakeover: boolean;
  clientNoContextTakeover: boolean;
  /** 8-15. */
  serverMaxWindowBits: number;
  /** 8-15. */
  clientMaxWindowBits: number;
}

interface ReadParams {
  snct: boolean;
  cnct: boolean;
  smwb: number | undefined;
  /** `true`: present without a value (allowed in an offer only). */
  cmwb: number | true | undefined;
}

/** §7.1.2: a decimal integer from 8 to 15 without leading zeros. */
function windowBits(value: string | true): number | undefined {
  return typeof value === 'string' && /^(?:[89]|1[0-5])$/.test(value) ? Number(value) : undefined;
}

/** The element's parameters, or why they cannot be accepted in an offer / a response. */
function readParams(el: ExtensionElement, side: 'offer' | 'response'): ReadParams | string {
  if (el.error !== undefined) return el.error;
  const out: ReadParams = { snct: false, cnct: false, smwb: undefined, cmwb: undefined };
  for (const [name, value] of Object.entries(el.params)) {
    switch (name) {
      case 'server_no_context_takeover':
      case 'client_no_context_takeover':
        if (value !== true) return `${name} takes no value`;
        if (name === 'server_no_context_takeover') out.snct = true;
        else out.cnct = true;
        break;
      case 'server_max_window_bits': {
        const bits = windowBits(value);
        if (bits === undefined) return `server_max_window_bits must be 8 to 15, got ${value === true ? 'no value' : JSON.stringify(value)}`;
        out.smwb = bits;
        break;
      }
      case 'client_max_window_bits': {
        if (value === true && side === 'offer') {
          out.cmwb = true;
          break;
        }
        const bits = windowBits(value);
        if (bits === undefined) return `client_max_window_bits must be 8 to 15, got ${value === true ? 'no value' : JSON.stringify(value)}`;
        out.cmwb = bits;
        break;
      }
      default:
        return `unknown parameter ${name}`;
    }
  }
  return out;
}

function formatParams(p: NegotiatedParams, serverBits: boolean, clientBits: boolean, bareClientBits = false): string {
  let s = PERMESSAGE_DEFLATE;
  if (p.serverNoContextTakeover) s += '; server_no_context_takeover';
  if (p.clientNoContextTakeover) s += '; client_no_context_takeover';
  if (serverBits) s += `; server_max_window_bits=${p.serverMaxWindowBits}`;
  if (clientBits) s += `; client_max_window_bits=${p.clientMaxWindowBits}`;
  else if (bareClientBits) s += '; client_max_window_bits';
  return s;
}

/** The server's choice: the `Sec-WebSocket-Extensions` value to answer with, and what it agrees to. */
export interface ServerNegotiation {
  response: string;
  params: NegotiatedParams;
}

/**
 * Server side (RFC 7692 §5, §7.1): the first permessage-deflate offer in `offersHeader` that the
 * server can accept under `options`, or undefined when there is none (the connection then runs
 * uncompressed; the handshake never fails over compression).
 *
 * Declined: malformed offers (bad syntax, unknown or repeated parameters, a value where none is
 * allowed, window bits outside 8-15 or with leading zeros) and, when `clientMaxWindowBits` is
 * below 15, offers without client_max_window_bits (the server may not limit the client's window
 * then, §7.1.2.2). Accepted offers are answered with what both sides will hold to:
 * - server_no_context_takeover when offered or when `serverNoContextTakeover`;
 * - client_no_context_takeover when offered (binding the client to its hint lets the server keep
 *   no window) or when `clientNoContextTakeover`;
 * - server_max_window_bits = min(offered, `serverMaxWindowBits`) when offered or below 15;
 * - client_max_window_bits = min(offered, `clientMaxWindowBits`) when offered and below 15.
 * Window bits of 8 are honoured: zlib compresses with a 512-byte window whose longest distance
 * is 250, which a 256-byte window decodes.
 */
export function negotiateServer(
  offersHeader: string | readonly string[] | undefined,
  options?: DeflateOptions | ResolvedDeflateOptions | true,
): ServerNegotiation | undefined {
  const opts = resolveOptions(options);
  for (const el of parseExtensionHeader(offersHeader)) {
    if (el.name !== PERMESSAGE_DEFLATE) continue;
    const offer = readParams(el, 'offer');
    if (typeof offer === 'string') continue;
    if (offer.cmwb === undefined && opts.clientMaxWindowBits < 15) continue;
    const params: NegotiatedParams = {
      serverNoContextTakeover: offer.snct || opts.serverNoContextTakeover,
      clientNoContextTakeover: offer.cnct || opts.clientNoContextTakeover,
      serverMaxWindowBits: Math.min(offer.smwb ?? 15, opts.serverMaxWindowBits),
      clientMaxWindowBits: offer.cmwb === undefined ? 15 : Math.min(offer.cmwb === true ? 15 : offer.cmwb, opts.clientMaxWindowBits),
    };
    const serverBits = offer.smwb !== undefined || params.serverMaxWindowBits < 15;
    const clientBits = offer.cmwb !== undefined && params.clientMaxWindowBits < 15;
    return { response: formatParams(params, serverBits, clientBits), params };
  }
  return undefined;
}

/**
 * Client side: the permessage-deflate offer for `Sec-WebSocket-Extensions`. It always carries
 * client_max_window_bits (bare when `clientMaxWindowBits` is 15): the client can compress with
 * any window, so the server is free to choose one.
 */
export function offerClient(options?: DeflateOptions | ResolvedDeflateOptions | true): string {
  const opts = resolveOptions(options);
  const p: NegotiatedParams = {
    serverNoContextTakeover: opts.serverNoContextTakeover,
    clientNoContextTakeover: opts.clientNoContextTakeover,
    serverMaxWindowBits: opts.serverMaxWindowBits,
    clientMaxWindowBits: opts.clientMaxWindowBits,
  };
  return formatParams(p, opts.serverMaxWindowBits < 15, opts.clientMaxWindowBits < 15, opts.clientMaxWindowBits === 15);
}

/**
 * Client side: check the server's `Sec-WebSocket-Extensions` answer to {@link offerClient}`(options)`.
 * Returns the agreed parameters, or undefined when the server answered without the header (it
 * declined: the connection runs uncompressed).
 *
 * Throws {@link ExtensionNegotiationError} — the client must fail the connection — when the
 * answer has a malformed element, an extension other than permessage-deflate or more than one
 * permessage-deflate, an unknown or repeated parameter, a value where none is allowed or none
 * where one is required (client_max_window_bits needs one in a response), window bits outside
 * 8-15, server_max_window_bits above what was offered, client_max_window_bits above what was
 * offered, or when it drops server_no_context_takeover or server_max_window_bits that the client
 * asked for (§7.1.1.1, §7.1.2.1: a server accepts those only by repeating them).
 */
export function acceptClientResponse(
  responseHeader: string | readonly string[] | undefined,
  options?: DeflateOptions | ResolvedDeflateOptions | true,
): NegotiatedParams | undefined {
  const opts = resolveOptions(options);
  const elements = parseExtensionHeader(responseHeader);
  if (elements.length === 0) return undefined;
  const fail = (why: string): never => {
    throw new ExtensionNegotiationError(`Invalid permessage-deflate answer from the server: ${why}`);
  };
  for (const el of elements) {
    if (el.error !== undefined) fail(el.error);
    if (el.name !== PERMESSAGE_DEFLATE) fail(`extension ${el.name} was not offered`);
  }
  if (elements.length > 1) fail('permessage-deflate accepted more than once');
  const p = readParams(elements[0]!, 'response');
  if (typeof p === 'string') return fail(p);
  if (p.smwb !== undefined && p.smwb > opts.serverMaxWindowBits) {
    fail(`server_max_window_bits=${p.smwb} is more than the ${opts.serverMaxWindowBits} offered`);
  }
  if (opts.serverMaxWindowBits < 15 && p.smwb === undefined) fail('server_max_window_bits was asked for and not agreed to');
  if (opts.serverNoContextTakeover && !p.snct) fail('server_no_context_takeover was asked for and not agreed to');
  const cmwb = p.cmwb as number | undefined;
  if (cmwb !== undefined && cmwb > opts.clientMaxWindowBits) {
    fail(`client_max_window_bits=${cmwb} is more than the ${opts.clientMaxWindowBits} offered`);
  }
  return {
    serverNoContextTakeover: p.snct,
    clientNoContextTakeover: p.cnct,
    serverMaxWindowBits: p.smwb ?? 15,
    clientMaxWindowBits: cmwb ?? 15,
  };
}

// ---------------------------------------------------------------------------------------------
// Process-wide limit on zlib jobs
// ---------------------------------------------------------------------------------------------

type Job = (done: () => void) => void;

/**
 * A FIFO of zlib jobs running at most `limit` at once. A job is given `done` and must call it
 * once its zlib work has finished (further calls are ignored).
 */
export class ZlibLimiter {
  readonly limit: number;
  #running = 0;
  #peak = 0;
  #queue: (Job | undefined)[] = [];
  #head = 0;
  #pumping = false;

  constructor(limit: number) {
    this.limit = limit;
  }

  /** Jobs running now. */
  get running(): number {
    return this.#running;
  }

  /** Jobs waiting for a place. */
  get queued(): number {
    return this.#queue.length - this.#head;
  }

  /** Most jobs that ran at once since creation or the last {@link resetPeak}. */
  get peak(): number {
    return this.#peak;
  }

  resetPeak(): void {
    this.#peak = this.#running;
  }

  /** Run `job` now if a place is free, else once one is, in order. */
  schedule(job: Job): void {
    this.#queue.push(job);
    this.#pump();
  }

  #pump(): void {
    if (this.#pumping) return;
    this.#pumping = true;
    try {
      while (this.#running < this.limit && this.#head < this.#queue.length) {
        const job = this.#queue[this.#head]!;
        this.#queue[this.#head++] = undefined;
        if (this.#head === this.#queue.length) {
          this.#queue = [];
          this.#head = 0;
        }
        this.#start(job);
      }
    } finally {
      this.#pumping = false;
    }
  }

  #start(job: Job): void {
    this.#running++;
    if (this.#running > this.#peak) this.#peak = this.#running;
    let ended = false;
    const done = (): void => {
      if (ended) return;
      ended = true;
      this.#running--;
      this.#pump();
    };
    try {
      job(done);
    } catch (err) {
      done();
      throw err;
    }
  }
}

const limiters = new Map<number, ZlibLimiter>();

/** The process-wide limiter shared by connections configured with `concurrency` (default 10). */
export function zlibLimiter(concurrency: number = DEFLATE_DEFAULTS.concurrency): ZlibLimiter {
  let limiter = limiters.get(concurrency);
  if (limiter === undefined) {
    limiter = new ZlibLimiter(concurrency);
    limiters.set(concurrency, limiter);
  }
  return limiter;
}

// ---------------------------------------------------------------------------------------------
// Byte windows
// ---------------------------------------------------------------------------------------------

/** The smallest window buffer: what one small message needs. */
const MIN_HISTORY = 1024;

/**
 * The last `capacity` bytes of a byte stream. Its buffer is allocated on first use and grows
 * (doubling) with what it holds, so a connection that exchanged a few small messages keeps a
 * few KiB, not the whole window.
 */
class History {
  readonly capacity: number;
  #buf: Buffer | undefined;
  #len = 0;

  constructor(capacity: number) {
    this.capacity = capacity;
  }

  /** Bytes held (the buffer's size once allocated). */
  get retained(): number {
    return this.#buf === undefined ? 0 : this.#buf.length;
  }

  /** The bytes, oldest first; undefined when empty. A view: valid until the next change. */
  view(): Buffer | undefined {
    return this.#len === 0 ? undefined : this.#buf!.subarray(0, this.#len);
  }

  append(data: Buffer): void {
    const cap = this.capacity;
    const n = data.length;
    if (n === 0 || cap === 0) return;
    let buf = this.#buf;
    const want = Math.min(cap, this.#len + n);
    if (buf === undefined || buf.length < want) {
      let size = Math.max(MIN_HISTORY, buf?.length ?? 0);
      while (size < want) size *= 2;
      const grown = Buffer.allocUnsafeSlow(Math.min(size, cap));
      if (buf !== undefined && this.#len > 0 && n < cap) buf.copy(grown, 0, 0, this.#len);
      this.#buf = buf = grown;
    }
    if (n >= cap) {
      data.copy(buf, 0, n - cap, n);
      this.#len = cap;
      return;
    }
    const keep = Math.min(this.#len, cap - n);
    if (keep < this.#len) buf.copyWithin(0, this.#len - keep, this.#len);
    data.copy(buf, keep);
    this.#len = keep + n;
  }

  /** Free the buffer. */
  clear(): void {
    this.#buf = undefined;
    this.#len = 0;
  }

  /** A copy holding the same bytes followed by `more`. */
  extended(more: readonly Buffer[]): History {
    const h = new History(this.capacity);
    const own = this.view();
    if (own !== undefined) h.append(own);
    for (const b of more) h.append(b);
    return h;
  }
}

// ---------------------------------------------------------------------------------------------
// The codec
// ---------------------------------------------------------------------------------------------

/** zlib's own estimate of a compressor's memory: 2^(windowBits+2) + 2^(memLevel+9) bytes. */
function hotDeflaterBytes(options: ZlibOptions): number {
  return (1 << (options.windowBits! + 2)) + (1 << (options.memLevel! + 9));
}

/** A zlib compressor kept across messages, one message at a time, each ended by a sync flush. */
class HotDeflater {
  readonly #z: DeflateRaw;
  #chunks: Buffer[] = [];
  #size = 0;
  #callback: ((err: Error | undefined, out: Buffer | undefined) => void) | undefined;

  constructor(options: ZlibOptions) {
    const z = (this.#z = createDeflateRaw(options));
    z.on('data', (chunk: Buffer) => {
      this.#chunks.push(chunk);
      this.#size += chunk.length;
    });
    z.on('error', (err: Error) => {
      const cb = this.#callback;
      this.#callback = undefined;
      cb?.(err, undefined);
    });
  }

  compress(payload: Buffer, callback: (err: Error | undefined, out: Buffer | undefined) => void): void {
    this.#callback = callback;
    this.#z.write(payload);
    this.#z.flush(zconst.Z_SYNC_FLUSH, () => {
      const cb = this.#callback;
      if (cb === undefined) return;
      this.#callback = undefined;
      const out = concat(this.#chunks, this.#size);
      this.#chunks = [];
      this.#size = 0;
      cb(undefined, out);
    });
  }

  /** Free the compressor; a compression in flight is called back with an error (its job must end). */
  close(): void {
    const cb = this.#callback;
    this.#callback = undefined;
    this.#z.close();
    cb?.(closedError(), undefined);
  }
}

/** A compressed message being received. */
interface Inbound {
  maxSize: number;
  /** Fragments gathered for inline inflation at the last one. */
  pieces: Buffer[];
  piecesSize: number;
  /** Once the message is too large for inline work: the background inflater and its output. */
  stream: InflateRaw | undefined;
  chunks: Buffer[];
  size: number;
  /** Bytes written to the current stream (its `bytesWritten` says how many it consumed). */
  fed: number;
  /** Ends the zlib job in flight with an error (zlib does not call back after a data error). */
  abort: ((err: unknown) => void) | undefined;
}

type InflateSyncResult = { buffer: Buffer; engine: { bytesWritten: number } };

function concat(list: readonly Buffer[], total?: number): Buffer {
  return list.length === 1 ? list[0]! : Buffer.concat(list, total);
}

function isTrailer(out: Buffer): boolean {
  const n = out.length;
  return n >= 4 && out[n - 4] === 0x00 && out[n - 3] === 0x00 && out[n - 2] === 0xff && out[n - 1] === 0xff;
}

function checkParams(params: NegotiatedParams): void {
  for (const key of ['serverMaxWindowBits', 'clientMaxWindowBits'] as const) {
    const v = params[key];
    if (!Number.isInteger(v) || v < 8 || v > 15) throw new BadOptionError(`params.${key}`, `expected an integer from 8 to 15, got ${String(v)}`);
  }
  for (const key of ['serverNoContextTakeover', 'clientNoContextTakeover'] as const) {
    if (typeof params[key] !== 'boolean') throw new BadOptionError(`params.${key}`, 'expected a boolean');
  }
}

/**
 * One connection's permessage-deflate codec, for the role it plays (`'server'` compresses in
 * the server's direction and inflates the client's, `'client'` the reverse).
 *
 * Both directions run their calls in call order. A call returns its result directly when the work
 * was done inline and nothing earlier is pending, else a Promise; errors are thrown or rejected
 * the same way. Nothing is shared between the two directions.
 *
 * Memory between messages: the sending window (at most `takeoverBytes`, none when our direction
 * has no_context_takeover; dropped by {@link release} and after `releaseAfterIdle`) and the
 * receiving window (2^window_bits bytes of the peer's direction, none when the peer has
 * no_context_takeover). No zlib context outlives the message it serves.
 */
export class PerMessageDeflate {
  readonly role: 'server' | 'client';
  readonly params: Readonly<NegotiatedParams>;
  /** Messages shorter than this are sent uncompressed. */
  readonly threshold: number;

  readonly #opts: ResolvedDeflateOptions;
  readonly #limiter: ZlibLimiter;

  // Sending.
  readonly #deflateOptions: ZlibOptions;
  readonly #sent: History | undefined;
  #outChain: Promise<Buffer> | undefined;
  #lastOut = 0;
  #idleTimer: NodeJS.Timeout | undefined;
  /**
   * While messages too large for inline work keep coming (with context takeover): one zlib
   * compressor kept across them, so each is not charged a compressor's setup and a dictionary.
   * Closed with the sending window, after `releaseAfterIdle`.
   */
  #hot: HotDeflater | undefined;

  // Receiving.
  readonly #inflateBits: number;
  readonly #recv: History | undefined;
  #inChain: Promise<Buffer | null> | undefined;
  #msg: Inbound | undefined;
  #failure: ProtocolViolation | undefined;

  #closed = false;

  constructor(role: 'server' | 'client', params: NegotiatedParams, options?: DeflateOptions | ResolvedDeflateOptions | true) {
    if (role !== 'server' && role !== 'client') throw new BadOptionError('role', `must be 'server' or 'client', got ${String(role)}`);
    checkParams(params);
    const opts = resolveOptions(options);
    this.role = role;
    this.params = Object.freeze({ ...params });
    this.threshold = opts.threshold;
    this.#opts = opts;
    this.#limiter = zlibLimiter(opts.concurrency);

    const server = role === 'server';
    // Our direction: what was agreed, narrowed by our own settings.
    const ourNoTakeover = server
      ? params.serverNoContextTakeover || opts.serverNoContextTakeover
      : params.clientNoContextTakeover || opts.clientNoContextTakeover;
    const ourBits = server
      ? Math.min(params.serverMaxWindowBits, opts.serverMaxWindowBits)
      : Math.min(params.clientMaxWindowBits, opts.clientMaxWindowBits);
    this.#deflateOptions = {
      level: opts.level,
      memLevel: opts.memLevel,
      // zlib cannot compress raw DEFLATE with a 256-byte window; with 512 bytes its longest
      // distance is 512 - 262 = 250, which a peer with a 256-byte window decodes.
      windowBits: Math.max(9, ourBits),
      finishFlush: zconst.Z_SYNC_FLUSH,
    };
    const keep = Math.min(opts.takeoverBytes, 1 << ourBits);
    this.#sent = ourNoTakeover || keep === 0 ? undefined : new History(keep);

    // The peer's direction: what it may refer to is what we must keep.
    const peerNoTakeover = server ? params.clientNoContextTakeover : params.serverNoContextTakeover;
    this.#inflateBits = server ? params.clientMaxWindowBits : params.serverMaxWindowBits;
    this.#recv = peerNoTakeover ? undefined : new History(1 << this.#inflateBits);
  }

  /** True when a message of `length` bytes should be sent compressed. */
  shouldCompress(length: number): boolean {
    return length >= this.threshold;
  }

  /** Bytes held between messages (both windows): what an idle connection costs here. */
  get retainedBytes(): number {
    const hot = this.#hot === undefined ? 0 : hotDeflaterBytes(this.#deflateOptions);
    return (this.#sent?.retained ?? 0) + (this.#recv?.retained ?? 0) + hot;
  }

  /** True while a compression has not settled. */
  get compressing(): boolean {
    return this.#outChain !== undefined;
  }

  /** True while an inflation has not settled or a fragmented message is open. */
  get decompressing(): boolean {
    return this.#inChain !== undefined || this.#msg !== undefined;
  }

  // ---- sending ------------------------------------------------------------------------------

  /**
   * Compress one whole message: the payload to send with RSV1 set on its first frame (the
   * trailing 0x00 0x00 0xff 0xff removed, §7.2.1). Inline, returning a Buffer, for messages up
   * to {@link SYNC_DEFLATE_MAX} bytes when nothing is pending; otherwise a Promise. Results
   * come in call order. Throws (or rejects) only on misuse or after {@link close}.
   */
  compress(payload: Buffer): Buffer | Promise<Buffer> {
    if (this.#closed) throw closedError();
    const prev = this.#outChain;
    if (prev === undefined) {
      return this.#inline(payload) ? this.#deflateInline(payload) : this.#trackOut(this.#deflateAway(payload));
    }
    const run = (): Buffer | Promise<Buffer> => (this.#inline(payload) ? this.#deflateInline(payload) : this.#deflateAway(payload));
    return this.#trackOut(prev.then(run, run));
  }

  /** Small enough for inline work, and no compressor kept across messages to go through. */
  #inline(payload: Buffer): boolean {
    return payload.length <= SYNC_DEFLATE_MAX && this.#hot === undefined;
  }

  /**
   * In the thread pool, one zlib job among the process's: through the compressor kept across
   * messages when context takeover allows one (made from the window the first time), else a
   * compressor for this message alone.
   */
  #deflateAway(payload: Buffer): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      this.#limiter.schedule((done) => {
        const finish = (err: Error | null | undefined, out: Buffer | undefined): void => {
          done();
          if (this.#closed) reject(closedError());
          else if (err) {
            this.#dropHot();
            reject(err);
          } else {
            try {
              resolve(this.#finishOut(payload, out!));
            } catch (e) {
              reject(e);
            }
          }
        };
        if (this.#closed) {
          finish(undefined, undefined);
          return;
        }
        try {
          if (this.#sent === undefined) deflateRaw(payload, this.#zlibOptions(), finish);
          else (this.#hot ??= new HotDeflater(this.#zlibOptions())).compress(payload, finish);
        } catch (err) {
          finish(err as Error, undefined);
        }
      });
    });
  }

  #dropHot(): void {
    this.#hot?.close();
    this.#hot = undefined;
  }

  #trackOut(p: Promise<Buffer>): Promise<Buffer> {
    this.#outChain = p;
    const settle = (): void => {
      if (this.#outChain === p) this.#outChain = undefined;
    };
    p.then(settle, settle);
    return p;
  }

  #zlibOptions(): ZlibOptions {
    const dictionary = this.#sent?.view();
    return dictionary === undefined ? this.#deflateOptions : { ...this.#deflateOptions, dictionary };
  }

  #deflateInline(payload: Buffer): Buffer {
    if (this.#closed) throw closedError();
    return this.#finishOut(payload, deflateRawSync(payload, this.#zlibOptions()));
  }

  #finishOut(payload: Buffer, out: Buffer): Buffer {
    if (!isTrailer(out)) throw new WebSocketError(WsErrorCode.BadFrame, 'Compressed output does not end with an empty stored block');
    const sent = this.#sent;
    if (sent !== undefined) {
      sent.append(payload);
      this.#lastOut = Date.now();
      if (this.#idleTimer === undefined && this.#opts.releaseAfterIdle !== Infinity) {
        this.#idleTimer = setTimeout(this.#onIdle, this.#opts.releaseAfterIdle);
        this.#idleTimer.unref();
      }
    }
    return out.subarray(0, out.length - 4);
  }

  #onIdle = (): void => {
    this.#idleTimer = undefined;
    if (this.#closed) return;
    const limit = this.#opts.releaseAfterIdle;
    const idle = Date.now() - this.#lastOut;
    if (this.#outChain !== undefined || idle < limit) {
      this.#idleTimer = setTimeout(this.#onIdle, this.#outChain !== undefined ? limit : limit - idle);
      this.#idleTimer.unref();
      return;
    }
    this.release();
  };

  /**
   * Free what the connection may free between messages: the sending window (the next message
   * is compressed without reference to earlier ones, which is always allowed). The receiving
   * window is kept while the peer may use context takeover: its next message may refer to it.
   * Safe at any time; also done after `releaseAfterIdle` ms without a compressed message.
   */
  release(): void {
    this.#sent?.clear();
    // A compression in flight keeps its compressor until it is done (#onIdle comes back later).
    if (this.#outChain === undefined) this.#dropHot();
    if (this.#idleTimer !== undefined) {
      clearTimeout(this.#idleTimer);
      this.#idleTimer = undefined;
    }
  }

  // ---- receiving ----------------------------------------------------------------------------

  /**
   * Inflate a compressed message, one frame payload at a time (`fin` on its last frame). Gives
   * null for a frame that is not the last, and the whole inflated message for the last one.
   * Inline when the message's compressed frames add up to at most
   * {@link SYNC_INFLATE_MAX_INPUT} bytes and it inflates to at most
   * {@link SYNC_INFLATE_MAX_OUTPUT}, otherwise a Promise; calls are handled in order.
   *
   * Fails with a {@link ProtocolViolation}: 1009 as soon as the inflated size passes `maxSize`
   * (taken from the first frame; the inflater is stopped there), 1007 for invalid DEFLATE data.
   * After a failure every call fails the same way. UTF-8 of text is not checked here.
   */
  decompress(payload: Buffer, fin: boolean, maxSize: number): Buffer | null | Promise<Buffer | null> {
    if (this.#failure !== undefined) throw this.#failure;
    if (this.#closed) throw closedError();
    const prev = this.#inChain;
    if (prev === undefined) {
      const r = this.#inflateStep(payload, fin, maxSize);
      return r instanceof Promise ? this.#trackIn(r) : r;
    }
    const run = (): Buffer | null | Promise<Buffer | null> => {
      if (this.#failure !== undefined) throw this.#failure;
      if (this.#closed) throw closedError();
      return this.#inflateStep(payload, fin, maxSize);
    };
    return this.#trackIn(prev.then(run, run));
  }

  #trackIn(p: Promise<Buffer | null>): Promise<Buffer | null> {
    this.#inChain = p;
    const settle = (): void => {
      if (this.#inChain === p) this.#inChain = undefined;
    };
    p.then(settle, settle);
    return p;
  }

  #inflateStep(payload: Buffer, fin: boolean, maxSize: number): Buffer | null | Promise<Buffer | null> {
    let msg = this.#msg;
    if (msg === undefined) {
      if (!(maxSize >= 0)) throw new BadOptionError('maxSize', `must be a non-negative number, got ${maxSize}`);
      msg = this.#msg = { maxSize, pieces: [], piecesSize: 0, stream: undefined, chunks: [], size: 0, fed: 0, abort: undefined };
    }
    if (msg.stream === undefined) {
      if (msg.piecesSize + payload.length <= SYNC_INFLATE_MAX_INPUT) {
        if (payload.length > 0) {
          msg.pieces.push(payload);
          msg.piecesSize += payload.length;
        }
        if (!fin) return null;
        const input = Buffer.concat([...msg.pieces, TRAILER], msg.piecesSize + 4);
        const out = this.#inflateInline(input, msg.maxSize);
        if (out !== undefined) return this.#endMessage(out);
        // Inflates to more than inline work may produce: once more, in the background.
        msg.pieces = [];
        msg.piecesSize = 0;
        this.#openStream(msg, this.#recv?.view());
        return this.#feed(msg, [input], true, false);
      }
      const gathered = msg.pieces;
      msg.pieces = [];
      msg.piecesSize = 0;
      this.#openStream(msg, this.#recv?.view());
      return this.#feed(msg, gathered.length > 0 ? [concat(gathered), payload] : [payload], fin);
    }
    return this.#feed(msg, [payload], fin);
  }

  /**
   * Inflate a whole message (trailer included) in one go. Undefined when it inflates to more
   * than inline work may produce but the limit allows more.
   */
  #inflateInline(input: Buffer, maxSize: number): Buffer | undefined {
    const cap = Math.min(maxSize, SYNC_INFLATE_MAX_OUTPUT);
    const chunks: Buffer[] = [];
    let total = 0;
    let offset = 0;
    let dictionary = this.#recv?.view();
    for (;;) {
      let r: InflateSyncResult;
      try {
        r = inflateRawSync(offset === 0 ? input : input.subarray(offset), {
          windowBits: this.#inflateBits,
          finishFlush: zconst.Z_SYNC_FLUSH,
          maxOutputLength: Math.max(1, cap - total),
          info: true,
          dictionary,
        }) as unknown as InflateSyncResult;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') return this.#inlineTooBig(maxSize);
        throw this.#fail(corrupt(err));
      }
      const out = r.buffer;
      total += out.length;
      if (total > cap) return this.#inlineTooBig(maxSize);
      if (out.length > 0) chunks.push(out);
      const used = r.engine.bytesWritten;
      offset += used;
      if (offset >= input.length) break;
      if (used === 0) throw this.#fail(corrupt(undefined));
      // A block with BFINAL set ended the DEFLATE stream before the message did: what follows
      // is a new stream (§7.2.1) over the same window, which now includes this output.
      dictionary = this.#windowWith(chunks);
    }
    return chunks.length === 0 ? Buffer.alloc(0) : concat(chunks, total);
  }

  #inlineTooBig(maxSize: number): undefined {
    if (maxSize <= SYNC_INFLATE_MAX_OUTPUT) throw this.#fail(tooBig(maxSize));
    return undefined;
  }

  /** The receiving window followed by `chunks`, as a dictionary for a new DEFLATE stream. */
  #windowWith(chunks: readonly Buffer[]): Buffer | undefined {
    const base = this.#recv ?? new History(1 << this.#inflateBits);
    return base.extended(chunks).view();
  }

  #openStream(msg: Inbound, dictionary: Buffer | undefined): void {
    const stream = createInflateRaw({ windowBits: this.#inflateBits, chunkSize: STREAM_CHUNK, dictionary });
    msg.stream = stream;
    msg.fed = 0;
    stream.on('data', (chunk: Buffer) => {
      if (msg.stream !== stream || this.#msg !== msg) return;
      msg.size += chunk.length;
      if (msg.size > msg.maxSize) {
        // Stop here: no more output is produced or kept.
        this.#fail(tooBig(msg.maxSize));
        return;
      }
      msg.chunks.push(chunk);
    });
    stream.on('error', (err: Error) => {
      if (msg.stream !== stream || this.#msg !== msg) return;
      this.#fail(corrupt(err));
    });
  }

  /**
   * Write `parts` to the message's inflater, one zlib job each, the trailer after them when
   * `trailer` (at the last frame). Gives the inflated message when `fin`, else null.
   */
  async #feed(msg: Inbound, parts: Buffer[], fin: boolean, trailer = fin): Promise<Buffer | null> {
    if (trailer) {
      const last = parts[parts.length - 1]!;
      if (last.length <= TRAILER_COPY_MAX) parts[parts.length - 1] = Buffer.concat([last, TRAILER], last.length + 4);
      else parts.push(TRAILER);
    }
    for (const part of parts) {
      if (part.length > 0) await this.#write(msg, part);
    }
    if (!fin) return null;
    const out = msg.chunks.length === 0 ? Buffer.alloc(0) : concat(msg.chunks, msg.size);
    return this.#endMessage(out);
  }

  #write(msg: Inbound, part: Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#limiter.schedule((done) => {
        const stream = msg.stream;
        if (this.#msg !== msg || stream === undefined) {
          done();
          reject(this.#failure ?? closedError());
          return;
        }
        let settled = false;
        const finish = (): boolean => {
          if (settled) return false;
          settled = true;
          if (msg.abort === abort) msg.abort = undefined;
          done();
          return true;
        };
        const abort = (err: unknown): void => {
          if (finish()) reject(err);
        };
        msg.abort = abort;
        msg.fed += part.length;
        stream.write(part, () => {
          if (!finish()) return;
          if (this.#msg !== msg || msg.stream !== stream) {
            reject(this.#failure ?? closedError());
            return;
          }
          const left = msg.fed - stream.bytesWritten;
          if (left <= 0) {
            resolve();
            return;
          }
          // The DEFLATE stream ended (a block with BFINAL set) with input left: the rest of the
          // message is a new stream over the same window (§7.2.1). A stream that took nothing
          // at all would never progress.
          if (stream.bytesWritten === 0) {
            reject(this.#fail(corrupt(undefined)));
            return;
          }
          stream.destroy();
          this.#openStream(msg, this.#windowWith(msg.chunks));
          this.#write(msg, part.subarray(part.length - left)).then(resolve, reject);
        });
      });
    });
  }

  #endMessage(out: Buffer): Buffer {
    const msg = this.#msg;
    this.#msg = undefined;
    msg?.stream?.destroy();
    this.#recv?.append(out);
    return out;
  }

  /** Fail the receiving side for good; returns the violation to throw. */
  #fail(violation: ProtocolViolation): ProtocolViolation {
    this.#failure ??= violation;
    const msg = this.#msg;
    this.#msg = undefined;
    if (msg !== undefined) {
      msg.chunks = [];
      msg.stream?.destroy();
      msg.abort?.(this.#failure);
    }
    return this.#failure;
  }

  // ---- end ----------------------------------------------------------------------------------

  /**
   * Stop: free both windows and any inflater, and make pending and later calls fail with
   * `ERR_CORRAL_WS_DEFLATE_CLOSED` (pending Promises reject; callers must handle them).
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.release();
    this.#dropHot();
    this.#recv?.clear();
    const msg = this.#msg;
    this.#msg = undefined;
    msg?.stream?.destroy();
    msg?.abort?.(closedError());
  }
}
