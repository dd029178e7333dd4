/**
 * Receiving a PROXY protocol header from an accepted socket (Ranch's `recv_proxy_header`), and
 * the listener's policy for it: required or optional, from which sources, within what time.
 *
 * The header is read from the raw socket before any transport handshake (over TLS it precedes
 * the ClientHello). Bytes that follow it in the same segment are pushed back with `unshift`, so
 * the protocol, or a later TLS handshake, sees them untouched.
 */

import * as net from 'node:net';
import { BadOptionError, SocketError } from './errors.js';
import { readPrefix } from './peek.js';
import { ProxyHeaderError, parseProxyHeader, type ProxyHeader } from './proxy-header.js';

/** Whether a PROXY header must come first, or may. */
export type ProxyHeaderMode = 'required' | 'optional';

/** The listener's `proxyHeader` option in full. */
export interface ProxyHeaderOptions {
  /** `'required'`: no header closes the connection; `'optional'`: a connection without one is served as direct. */
  mode: ProxyHeaderMode;
  /** Milliseconds to receive the header (default: the listener's `handshakeTimeout`). */
  timeout?: number;
  /**
   * Addresses or CIDR ranges (`'10.0.0.0/8'`, `'::1'`) allowed to send a header: the load
   * balancers. Default: any source.
   */
  trustedProxies?: readonly string[];
  /**
   * What to do with a connection from outside `trustedProxies`: `'reject'` (default) closes it;
   * `'ignore'` reads no header and serves it as a direct connection, so any header it sends is
   * just bytes to the protocol, never a claimed address.
   */
  untrusted?: 'reject' | 'ignore';
  /** Longest v1 line accepted, CRLF included (default 107, the specification's maximum). */
  maxV1Length?: number;
}

/** Validated policy. */
export interface ProxyPolicy {
  mode: ProxyHeaderMode;
  timeout: number | undefined;
  trusted: net.BlockList | undefined;
  untrusted: 'reject' | 'ignore';
  maxV1Length: number;
  /** The option as given, for `getTransportOptions`. */
  source: ProxyHeaderMode | ProxyHeaderOptions;
}

/** A connection came from a source not allowed to send PROXY headers. */
export class UntrustedProxyError extends SocketError {
  constructor(address: string | undefined) {
    super('error', `PROXY header refused: ${address ?? 'the peer'} is not a trusted proxy`);
    this.name = 'UntrustedProxyError';
  }
}

const POLICY_KEYS = new Set(['mode', 'timeout', 'trustedProxies', 'untrusted', 'maxV1Length']);

function addRange(list: net.BlockList, entry: unknown, index: number): void {
  const path = `proxyHeader.trustedProxies[${index}]`;
  if (typeof entry !== 'string') throw new BadOptionError(path, 'expected an address or CIDR string');
  const slash = entry.indexOf('/');
  const address = slash === -1 ? entry : entry.slice(0, slash);
  const family = net.isIPv4(address) ? 'ipv4' : net.isIPv6(address) ? 'ipv6' : undefined;
  if (family === undefined) throw new BadOptionError(path, `${JSON.stringify(entry)} is not an IP address or CIDR range`);
  if (slash === -1) {
    list.addAddress(address, family);
    return;
  }
  const bits = entry.slice(slash + 1);
  const prefix = Number(bits);
  if (!/^\d{1,3}$/.test(bits) || prefix > (family === 'ipv4' ? 32 : 128)) {
    throw new BadOptionError(path, `${JSON.stringify(entry)} has a bad prefix length`);
  }
  list.addSubnet(address, prefix, family);
}

/** Validate the `proxyHeader` listener option. */
export function normalizeProxyPolicy(value: unknown): ProxyPolicy | undefined {
  if (value === undefined) return undefined;
  const o: Record<string, unknown> = typeof value === 'string' ? { mode: value } : (value as Record<string, unknown>);
  if (typeof o !== 'object' || o === null || Array.isArray(o)) {
    throw new BadOptionError('proxyHeader', "expected 'required', 'optional' or an options object");
  }
  for (const key of Object.keys(o)) {
    if (!POLICY_KEYS.has(key)) throw new BadOptionError(`proxyHeader.${key}`, 'unknown option');
  }
  if (o.mode !== 'required' && o.mode !== 'optional') {
    throw new BadOptionError(typeof value === 'string' ? 'proxyHeader' : 'proxyHeader.mode', `expected 'required' or 'optional', got ${String(o.mode)}`);
  }
  if (o.timeout !== undefined && o.timeout !== Infinity && !(Number.isSafeInteger(o.timeout) && (o.timeout as number) >= 0)) {
    throw new BadOptionError('proxyHeader.timeout', 'expected a non-negative integer of milliseconds or Infinity');
  }
  if (o.untrusted !== undefined && o.untrusted !== 'reject' && o.untrusted !== 'ignore') {
    throw new BadOptionError('proxyHeader.untrusted', `expected 'reject' or 'ignore', got ${String(o.untrusted)}`);
  }
  if (o.maxV1Length !== undefined && !(Number.isSafeInteger(o.maxV1Length) && (o.maxV1Length as number) >= 15)) {
    throw new BadOptionError('proxyHeader.maxV1Length', 'expected an integer of at least 15');
  }
  let trusted: net.BlockList | undefined;
  if (o.trustedProxies !== undefined) {
    if (!Array.isArray(o.trustedProxies)) throw new BadOptionError('proxyHeader.trustedProxies', 'expected an array of addresses or CIDR ranges');
    trusted = new net.BlockList();
    o.trustedProxies.forEach((entry, i) => addRange(trusted!, entry, i));
  }
  return {
    mode: o.mode,
    timeout: o.timeout as number | undefined,
    trusted,
    untrusted: (o.untrusted as 'reject' | 'ignore' | undefined) ?? 'reject',
    maxV1Length: (o.maxV1Length as number | undefined) ?? 107,
    source: value as ProxyHeaderMode | ProxyHeaderOptions,
  };
}

/** Whether `address` (as a socket reports it) is in `list`; IPv4-mapped IPv6 addresses match IPv4 ranges. */
export function isTrusted(list: net.BlockList, address: string | undefined): boolean {
  if (address === undefined) return false;
  if (address.startsWith('::ffff:') && net.isIPv4(address.slice(7))) {
    return list.check(address.slice(7), 'ipv4') || list.check(address, 'ipv6');
  }
  return list.check(address, net.isIPv6(address) ? 'ipv6' : 'ipv4');
}

/**
 * Read one PROXY header from a paused socket within `timeoutMs`, segment by segment, so a header
 * split over several is fine. Bytes after the header are given back to the socket.
 *
 * With `optional`, bytes that cannot begin a header are given back and `undefined` returned.
 * Rejects with {@link ProxyHeaderError} (malformed) or `SocketError` (`'timeout'`, `'closed'`).
 * On every path the bytes read and not consumed are back in the socket.
 */
export function readProxyHeader(
  socket: net.Socket,
  timeoutMs: number,
  opts: { optional?: boolean; maxV1Length?: number } = {},
): Promise<ProxyHeader | undefined> {
  const parseOpts = opts.maxV1Length === undefined ? undefined : { maxV1Length: opts.maxV1Length };
  return readPrefix<ProxyHeader | undefined>(socket, timeoutMs, 'PROXY header', (buffered) => {
    let result;
    try {
      result = parseProxyHeader(buffered, parseOpts);
    } catch (err) {
      if (opts.optional === true && err instanceof ProxyHeaderError && err.reason === 'bad_signature') {
        return { value: undefined, consumed: 0 };
      }
      throw err;
    }
    return result.status === 'done' ? { value: result.header, consumed: result.length } : undefined;
  });
}
