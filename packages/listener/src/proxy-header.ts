/**
 * The PROXY protocol (versions 1 and 2) as a pure codec: parse a header from the bytes buffered so
 * far, build one from a readable model, and turn a parsed header into the "real peer" view.
 * No I/O happens here; the listener reads, this module decides.
 *
 * Parsing is strict on structure (signatures, field syntax, lengths, TLV framing, checksums) and
 * liberal on content the specification leaves open (unknown TLV types and SSL sub-types are kept
 * raw, unknown SSL client flag bits are ignored).
 */

import { isUtf8 } from 'node:buffer';
import { crc32c } from './crc32c.js';
import { BadArgumentError, CorralError } from './errors.js';

// ---------------------------------------------------------------------------------------------
// Model
// ---------------------------------------------------------------------------------------------

/** Address family carried by a header; absent for v1 `UNKNOWN` and v2 `UNSPEC`. */
export type ProxyFamily = 'ipv4' | 'ipv6' | 'unix';

/** Transport protocol carried by a header; v1 headers are always `stream`. */
export type ProxyTransport = 'stream' | 'dgram';

/** An IP endpoint. IPv4 in dotted-quad form, IPv6 in the compressed lower-case form Node prints. */
export interface ProxyInetAddress {
  address: string;
  port: number;
}

/**
 * A UNIX socket endpoint. `''` is an unnamed socket; a path starting with `'\0'` is a Linux
 * abstract-namespace socket, spelled as Node spells it for `net.connect({ path })`.
 */
export interface ProxyUnixAddress {
  path: string;
}

/** A TLV (or SSL sub-TLV) this codec has no meaning for, kept verbatim in wire order. */
export interface ProxyRawTlv {
  type: number;
  value: Buffer;
}

/** The PP2_TYPE_SSL client bit field. */
export interface ProxySslClient {
  /** PP2_CLIENT_SSL: the client connected over SSL/TLS. */
  ssl: boolean;
  /** PP2_CLIENT_CERT_CONN: the client presented a certificate on this connection. */
  certConn: boolean;
  /** PP2_CLIENT_CERT_SESS: the client presented a certificate at least once in this TLS session. */
  certSess: boolean;
}

/** The PP2_TYPE_SSL TLV: what the proxy knows about the client's TLS session. */
export interface ProxySsl {
  client: ProxySslClient;
  /** The verify field is 0: the client certificate (if any) was verified. */
  verified: boolean;
  /** The raw 32-bit verify field (0 when verified; typically the TLS library's verify result). */
  verifyResult: number;
  /** PP2_SUBTYPE_SSL_VERSION, e.g. `TLSv1.3`. */
  version?: string;
  /** PP2_SUBTYPE_SSL_CN: the client certificate's Common Name. */
  cn?: string;
  /** PP2_SUBTYPE_SSL_CIPHER, e.g. `ECDHE-RSA-AES128-GCM-SHA256`. */
  cipher?: string;
  /** PP2_SUBTYPE_SSL_SIG_ALG: algorithm that signed the certificate the proxy's frontend presented, e.g. `SHA256`. */
  sigAlg?: string;
  /** PP2_SUBTYPE_SSL_KEY_ALG: key algorithm of the certificate the proxy's frontend presented, e.g. `RSA2048`. */
  keyAlg?: string;
  /** PP2_SUBTYPE_SSL_GROUP: key-exchange group, e.g. `X25519`. */
  group?: string;
  /** PP2_SUBTYPE_SSL_SIG_SCHEME: signature scheme of the handshake, e.g. `rsa_pss_rsae_sha256`. */
  sigScheme?: string;
  /** Sub-TLVs of any other type, in wire order. */
  raw: ProxyRawTlv[];
}

/** The TLVs of a v2 header. v1 headers, LOCAL and UNSPEC headers have only `{ raw: [] }`. */
export interface ProxyTlvs {
  /** PP2_TYPE_ALPN: the negotiated application protocol, as sent (e.g. `h2`). */
  alpn?: Buffer;
  /** PP2_TYPE_AUTHORITY: the host name the client asked for (typically its TLS SNI). */
  authority?: string;
  /** PP2_TYPE_UNIQUE_ID: an opaque connection id of at most 128 bytes. */
  uniqueId?: Buffer;
  /** PP2_TYPE_SSL. */
  ssl?: ProxySsl;
  /** PP2_TYPE_NETNS: the network namespace name. */
  netns?: string;
  /** `true` when a PP2_TYPE_CRC32C TLV was present and matched; absent otherwise. */
  crc32c?: true;
  /** TLVs of any other type, in wire order. PP2_TYPE_NOOP TLVs are dropped. */
  raw: ProxyRawTlv[];
}

interface ProxyHeaderCommon {
  version: 1 | 2;
  tlvs: ProxyTlvs;
}

/** v2 LOCAL: the proxy's own connection (e.g. a health check); use the socket's real endpoints. */
export interface ProxyHeaderLocal extends ProxyHeaderCommon {
  command: 'local';
  family?: undefined;
  protocol?: undefined;
  source?: undefined;
  destination?: undefined;
}

/** v1 `UNKNOWN` or v2 PROXY with UNSPEC family: proxied, but the original endpoints are not known. */
export interface ProxyHeaderUnknown extends ProxyHeaderCommon {
  command: 'proxy';
  family?: undefined;
  protocol?: undefined;
  source?: undefined;
  destination?: undefined;
}

/** A proxied IPv4 or IPv6 connection. */
export interface ProxyHeaderInet extends ProxyHeaderCommon {
  command: 'proxy';
  family: 'ipv4' | 'ipv6';
  protocol: ProxyTransport;
  source: ProxyInetAddress;
  destination: ProxyInetAddress;
}

/** A proxied UNIX socket connection (v2 only). */
export interface ProxyHeaderUnix extends ProxyHeaderCommon {
  command: 'proxy';
  family: 'unix';
  protocol: ProxyTransport;
  source: ProxyUnixAddress;
  destination: ProxyUnixAddress;
}

/** A parsed PROXY protocol header; discriminate on `command`, then `family`. */
export type ProxyHeader = ProxyHeaderLocal | ProxyHeaderUnknown | ProxyHeaderInet | ProxyHeaderUnix;

/** A TLV to emit verbatim. */
export interface ProxyRawTlvInput {
  readonly type: number;
  readonly value: Uint8Array;
}

/** The PP2_TYPE_SSL TLV to emit. A parsed {@link ProxySsl} is accepted as is. */
export interface ProxySslInput {
  /** Client flags; missing ones are `false`. */
  readonly client?: Readonly<Partial<ProxySslClient>>;
  readonly verified: boolean;
  /** The verify field; defaults to 0 when `verified`, 1 otherwise. Must agree with `verified`. */
  readonly verifyResult?: number;
  readonly version?: string;
  readonly cn?: string;
  readonly cipher?: string;
  readonly sigAlg?: string;
  readonly keyAlg?: string;
  readonly group?: string;
  readonly sigScheme?: string;
  /** Extra sub-TLVs, emitted after the known ones; their types must not be 0x21-0x27. */
  readonly raw?: readonly ProxyRawTlvInput[];
}

/** TLVs to emit. A parsed {@link ProxyTlvs} is accepted as is. */
export interface ProxyTlvsInput {
  /** A string is taken byte for byte (latin1), as ALPN protocol ids are octet strings. */
  readonly alpn?: Uint8Array | string;
  readonly authority?: string;
  /** At most 128 bytes. */
  readonly uniqueId?: Uint8Array;
  readonly ssl?: ProxySslInput;
  readonly netns?: string;
  /** Default for the `checksum` build option, so a parsed header rebuilds with its checksum. */
  readonly crc32c?: boolean;
  /** Extra TLVs, emitted after the known ones; their types must not be ones this codec defines. */
  readonly raw?: readonly ProxyRawTlvInput[];
}

interface ProxyHeaderInputCommon {
  /** Header version to build when the `version` option is not given; the default is 2. */
  readonly version?: 1 | 2;
  readonly tlvs?: ProxyTlvsInput;
}

/**
 * What {@link buildProxyHeader} accepts. Every {@link ProxyHeader} is a valid input, so parsed
 * headers can be re-emitted. `protocol` defaults to `stream`.
 */
export type ProxyHeaderInput =
  | (ProxyHeaderInputCommon & { readonly command: 'local'; readonly family?: undefined })
  | (ProxyHeaderInputCommon & { readonly command: 'proxy'; readonly family?: undefined })
  | (ProxyHeaderInputCommon & {
      readonly command: 'proxy';
      readonly family: 'ipv4' | 'ipv6';
      readonly protocol?: ProxyTransport;
      readonly source: Readonly<ProxyInetAddress>;
      readonly destination: Readonly<ProxyInetAddress>;
    })
  | (ProxyHeaderInputCommon & {
      readonly command: 'proxy';
      readonly family: 'unix';
      readonly protocol?: ProxyTransport;
      readonly source: Readonly<ProxyUnixAddress>;
      readonly destination: Readonly<ProxyUnixAddress>;
    });

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/** Why a PROXY header was rejected (or could not be built). */
export type ProxyHeaderErrorReason =
  | 'bad_signature'
  | 'bad_version'
  | 'bad_command'
  | 'bad_family'
  | 'bad_protocol'
  | 'line_too_long'
  | 'bad_line'
  | 'bad_address'
  | 'bad_port'
  | 'bad_length'
  | 'tlv_overrun'
  | 'bad_tlv'
  | 'crc_mismatch'
  | 'bad_unix_address'
  | 'unsupported';

/** A malformed PROXY protocol header, or a header model that cannot be encoded. */
export class ProxyHeaderError extends CorralError {
  /** What is wrong, as a stable discriminant. */
  readonly reason: ProxyHeaderErrorReason;
  /** Offset of the offending byte from the start of the parsed bytes; absent when building. */
  readonly offset: number | undefined;

  constructor(reason: ProxyHeaderErrorReason, message: string, offset?: number) {
    super(
      'ERR_CORRAL_PROXY_HEADER',
      offset === undefined ? `PROXY header: ${message}` : `PROXY header: ${message} (at byte ${offset})`,
    );
    this.reason = reason;
    this.offset = offset;
  }
}

function fail(reason: ProxyHeaderErrorReason, message: string, offset?: number): never {
  throw new ProxyHeaderError(reason, message, offset);
}

// ---------------------------------------------------------------------------------------------
// Constants
// ---------------------------------------------------------------------------------------------

/** Longest v1 header line the specification allows, CRLF included. */
export const PROXY_V1_MAX_LENGTH = 107;

/** Longest possible v2 header: the 16-byte fixed part plus a 16-bit payload length. */
export const PROXY_V2_MAX_LENGTH = 16 + 0xffff;

/** The 12-byte v2 signature, `\r\n\r\n\0\r\nQUIT\n`. */
export const PROXY_V2_SIGNATURE: Readonly<Uint8Array> = Uint8Array.of(
  0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
);

const V1_PREFIX = Uint8Array.of(0x50, 0x52, 0x4f, 0x58, 0x59, 0x20); // "PROXY "
const V2_SIG = PROXY_V2_SIGNATURE;
const V2_HEADER = 16;
/** The shortest v1 line, "PROXY UNKNOWN\r\n": a smaller limit would reject every header. */
const V1_MIN_LINE = 15;

const CR = 0x0d;
const LF = 0x0a;

const PP2_TYPE_ALPN = 0x01;
const PP2_TYPE_AUTHORITY = 0x02;
const PP2_TYPE_CRC32C = 0x03;
const PP2_TYPE_NOOP = 0x04;
const PP2_TYPE_UNIQUE_ID = 0x05;
const PP2_TYPE_SSL = 0x20;
const PP2_TYPE_NETNS = 0x30;
const UNIQUE_ID_MAX = 128;

const PP2_CLIENT_SSL = 0x01;
const PP2_CLIENT_CERT_CONN = 0x02;
const PP2_CLIENT_CERT_SESS = 0x04;

/** Known SSL sub-TLV types and the {@link ProxySsl} field each fills, in emission order. */
const SSL_SUBTYPES = [
  [0x21, 'version'],
  [0x22, 'cn'],
  [0x23, 'cipher'],
  [0x24, 'sigAlg'],
  [0x25, 'keyAlg'],
  [0x26, 'group'],
  [0x27, 'sigScheme'],
] as const;
type SslTextField = (typeof SSL_SUBTYPES)[number][1];
const SSL_FIELD_BY_TYPE = new Map<number, SslTextField>(SSL_SUBTYPES);

/** Address block size per v2 family nibble (UNSPEC, INET, INET6, UNIX). */
const ADDR_LEN = [0, 12, 36, 216] as const;
const UNIX_PATH_LEN = 108;
const FAMILY_BY_NIBBLE = [undefined, 'ipv4', 'ipv6', 'unix'] as const;
const PROTOCOL_BY_NIBBLE = [undefined, 'stream', 'dgram'] as const;

const ZERO4 = new Uint8Array(4);
const MORE: { readonly status: 'more' } = Object.freeze({ status: 'more' });

function hex(n: number, width = 2): string {
  return `0x${n.toString(16).padStart(width, '0')}`;
}

/** Quote untrusted text for an error message, bounded so a huge field cannot bloat it. */
function show(s: string): string {
  return JSON.stringify(s.length > 64 ? `${s.slice(0, 64)}...` : s);
}

// ---------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------

/** Options of {@link parseProxyHeader}. */
export interface ParseProxyHeaderOptions {
  /**
   * Longest accepted v1 line, CRLF included; default {@link PROXY_V1_MAX_LENGTH} (107), at least 15.
   * A longer line without CRLF is rejected with `line_too_long`.
   */
  maxV1Length?: number;
}

/** Outcome of {@link parseProxyHeader}. */
export type ParseResult =
  | {
      readonly status: 'done';
      readonly header: ProxyHeader;
      /** Bytes the header occupies; whatever follows belongs to the proxied stream. */
      readonly length: number;
    }
  | { readonly status: 'more' };

/**
 * Parse a PROXY protocol header (v1 or v2) from the start of `bytes`.
 *
 * Meant to be called again with everything buffered so far each time more data arrives: returns
 * `{ status: 'more' }` while `bytes` is a valid prefix of a header, and throws
 * {@link ProxyHeaderError} as soon as the bytes seen cannot begin a valid header (the v1 line is
 * checked field by field as it grows; a v2 header's fixed part byte by byte, its payload once the
 * declared length has arrived). Nothing past the header is read, and `bytes` is never modified;
 * TLV values are copied out.
 *
 * v2 LOCAL headers and PROXY headers with the UNSPEC family have their payload skipped unread, as
 * the specification tells receivers to discard it.
 *
 * @param bytes - data received so far, starting at the first byte of the connection.
 * @param opts - parsing limits.
 * @returns the header and its length, or a request for more bytes.
 * @throws {ProxyHeaderError} the bytes are not (the start of) a valid header.
 * @throws {BadArgumentError} `opts.maxV1Length` is not an integer of at least 15.
 */
export function parseProxyHeader(bytes: Uint8Array, opts?: ParseProxyHeaderOptions): ParseResult {
  const maxV1 = opts?.maxV1Length ?? PROXY_V1_MAX_LENGTH;
  if (maxV1 !== PROXY_V1_MAX_LENGTH && !(Number.isSafeInteger(maxV1) && maxV1 >= V1_MIN_LINE)) {
    throw new BadArgumentError(`maxV1Length must be an integer of at least ${V1_MIN_LINE}, got ${String(maxV1)}`);
  }
  const len = bytes.length;
  if (len === 0) return MORE;
  const first = bytes[0]!;
  if (first === V1_PREFIX[0]) {
    matchSignature(bytes, V1_PREFIX, 'v1 prefix "PROXY "');
    return len < V1_PREFIX.length ? MORE : parseV1(bytes, maxV1);
  }
  if (first === V2_SIG[0]) {
    matchSignature(bytes, V2_SIG, 'v2 signature');
    return len < V2_SIG.length ? MORE : parseV2(bytes);
  }
  return fail('bad_signature', `byte ${hex(first)} starts neither a v1 ("PROXY ") nor a v2 signature`, 0);
}

function matchSignature(bytes: Uint8Array, sig: Uint8Array, what: string): void {
  const n = Math.min(bytes.length, sig.length);
  for (let i = 1; i < n; i++) {
    if (bytes[i] !== sig[i]) {
      fail('bad_signature', `byte ${hex(bytes[i]!)} does not match the ${what} (expected ${hex(sig[i]!)})`, i);
    }
  }
}

// --- v1 -------------------------------------------------------------------------------------

function parseV1(bytes: Uint8Array, maxV1: number): ParseResult {
  const len = bytes.length;
  const scanEnd = Math.min(len, maxV1);
  let lf = -1;
  for (let i = V1_PREFIX.length; i < scanEnd; i++) {
    if (bytes[i] === LF) {
      lf = i;
      break;
    }
  }
  if (lf === -1) {
    // Report what is wrong with the line itself before its length.
    // A trailing CR may be the terminator's first half: judge the line as complete, then wait for LF.
    const lastIsCr = bytes[scanEnd - 1] === CR;
    parseV1Line(bytes, lastIsCr ? scanEnd - 1 : scanEnd, lastIsCr);
    if (len >= maxV1) fail('line_too_long', `no CRLF within the first ${maxV1} bytes of the v1 line`, maxV1 - 1);
    return MORE;
  }
  if (bytes[lf - 1] !== CR) fail('bad_line', 'line feed without a preceding carriage return', lf);
  const header = parseV1Line(bytes, lf - 1, true)!;
  return { status: 'done', header, length: lf + 1 };
}

const V1_FIELDS = ['source address', 'destination address', 'source port', 'destination port'] as const;

/**
 * Check the v1 line between "PROXY " and `end` (the CR when `complete`, else the end of the data
 * so far). Returns the header when complete; a partial line only has to be a possible prefix.
 */
function parseV1Line(bytes: Uint8Array, end: number, complete: boolean): ProxyHeader | undefined {
  const base = V1_PREFIX.length;
  const s = Buffer.from(bytes.buffer, bytes.byteOffset + base, end - base).toString('latin1');
  const cr = s.indexOf('\r');
  if (cr !== -1) fail('bad_line', 'carriage return not followed by a line feed', base + cr);

  const sp = s.indexOf(' ');
  const proto = sp === -1 ? s : s.slice(0, sp);
  if (proto === 'UNKNOWN') {
    // The specification has receivers ignore whatever follows UNKNOWN up to the CRLF.
    return complete ? { version: 1, command: 'proxy', tlvs: { raw: [] } } : undefined;
  }
  if (proto !== 'TCP4' && proto !== 'TCP6') {
    if (sp === -1 && !complete && ('TCP4'.startsWith(proto) || 'TCP6'.startsWith(proto) || 'UNKNOWN'.startsWith(proto))) {
      return undefined;
    }
    fail('bad_protocol', `v1 protocol ${show(proto)} is not TCP4, TCP6 or UNKNOWN`, base);
  }
  if (sp === -1) {
    if (complete) fail('bad_line', `missing addresses after ${proto}`, base + s.length);
    return undefined;
  }

  const v6 = proto === 'TCP6';
  const addrs: string[] = [];
  const ports: number[] = [];
  let pos = sp + 1;
  for (let f = 0; f < 4; f++) {
    const next = s.indexOf(' ', pos);
    const last = next === -1;
    const field = s.slice(pos, last ? s.length : next);
    const at = base + pos;
    if (last && !complete) {
      if (!v1FieldPrefixOk(field, f, v6)) rejectV1Field(field, f, v6, at);
      return undefined;
    }
    if (field.length === 0) fail('bad_line', `empty ${V1_FIELDS[f]} (fields are separated by single spaces)`, at);
    if (f < 2) {
      const raw = v6 ? parseIPv6(field) : parseIPv4(field);
      if (raw === undefined) rejectV1Field(field, f, v6, at);
      addrs.push(v6 ? formatIPv6(raw, 0) : field);
    } else {
      const port = parsePort(field);
      if (port === undefined) rejectV1Field(field, f, v6, at);
      ports.push(port);
    }
    if (last && f < 3) fail('bad_line', `missing ${V1_FIELDS[f + 1]}`, base + s.length);
    if (!last && f === 3) fail('bad_line', 'unexpected data after the destination port', base + next);
    pos = next + 1;
  }
  return {
    version: 1,
    command: 'proxy',
    family: v6 ? 'ipv6' : 'ipv4',
    protocol: 'stream',
    source: { address: addrs[0]!, port: ports[0]! },
    destination: { address: addrs[1]!, port: ports[1]! },
    tlvs: { raw: [] },
  };
}

function rejectV1Field(field: string, f: number, v6: boolean, at: number): never {
  if (f < 2) fail('bad_address', `${V1_FIELDS[f]} ${show(field)} is not a valid ${v6 ? 'IPv6' : 'IPv4'} address`, at);
  return fail('bad_port', `${V1_FIELDS[f]} ${show(field)} is not a port number 0-65535 without leading zeros`, at);
}

/** Could `field` still grow into a valid v1 field? Cheap, exact for IPv4 and ports. */
function v1FieldPrefixOk(field: string, f: number, v6: boolean): boolean {
  if (f >= 2) return field === '' || isDecimalPrefix(field, 5, 65535);
  if (!v6) return isIPv4Prefix(field);
  if (field.length > 45) return false;
  for (let i = 0; i < field.length; i++) {
    const c = field.charCodeAt(i);
    if (hexValue(c) < 0 && c !== 0x3a && c !== 0x2e) return false;
  }
  return true;
}

// --- v2 -------------------------------------------------------------------------------------

function parseV2(b: Uint8Array): ParseResult {
  const len = b.length;
  if (len < 13) return MORE;
  const verCmd = b[12]!;
  if (verCmd >> 4 !== 2) fail('bad_version', `version ${verCmd >> 4} in the version/command byte ${hex(verCmd)} (expected 2)`, 12);
  const command = verCmd & 0x0f;
  if (command > 1) fail('bad_command', `command ${command} in the version/command byte ${hex(verCmd)} (expected 0 LOCAL or 1 PROXY)`, 12);
  if (len < 14) return MORE;

  let fam = 0;
  let proto = 0;
  // LOCAL headers' family byte is to be ignored, so it is only checked for PROXY.
  if (command === 1) {
    const fp = b[13]!;
    fam = fp >> 4;
    proto = fp & 0x0f;
    if (fam > 3) fail('bad_family', `address family ${fam} in byte ${hex(fp)} (expected 0-3)`, 13);
    if (proto > 2) fail('bad_protocol', `transport protocol ${proto} in byte ${hex(fp)} (expected 0-2)`, 13);
    // The specification has receivers reject UNSPEC mixed with a defined family or protocol.
    if ((fam === 0) !== (proto === 0)) {
      fail('bad_protocol', `family/protocol byte ${hex(fp)} mixes UNSPEC with a defined value`, 13);
    }
  }
  if (len < V2_HEADER) return MORE;

  const payload = (b[14]! << 8) | b[15]!;
  const addrLen = ADDR_LEN[fam as 0 | 1 | 2 | 3];
  if (payload < addrLen) {
    fail('bad_length', `declared length ${payload} is shorter than the ${addrLen}-byte ${FAMILY_BY_NIBBLE[fam]} address block`, 14);
  }
  const total = V2_HEADER + payload;
  if (len < total) return MORE;

  if (command === 0) return { status: 'done', header: { version: 2, command: 'local', tlvs: { raw: [] } }, length: total };
  if (fam === 0) return { status: 'done', header: { version: 2, command: 'proxy', tlvs: { raw: [] } }, length: total };

  // Frame the TLVs first: the checksum's position must be known before anything is trusted.
  const tlvStart = V2_HEADER + addrLen;
  let crcAt = -1;
  for (let p = tlvStart; p < total; ) {
    if (total - p < 3) fail('tlv_overrun', `${total - p} bytes left in the declared length, too few for a TLV header`, p);
    const type = b[p]!;
    const vlen = (b[p + 1]! << 8) | b[p + 2]!;
    const end = p + 3 + vlen;
    if (end > total) fail('tlv_overrun', `TLV ${hex(type)} of ${vlen} bytes runs ${end - total} bytes past the declared length`, p);
    if (type === PP2_TYPE_CRC32C) {
      if (vlen !== 4) fail('bad_tlv', `CRC32C TLV has length ${vlen} (expected 4)`, p);
      if (crcAt !== -1) fail('bad_tlv', 'second CRC32C TLV', p);
      crcAt = p + 3;
    }
    p = end;
  }
  if (crcAt !== -1) {
    const stored = readU32(b, crcAt);
    let c = crc32c(b.subarray(0, crcAt));
    c = crc32c(ZERO4, c);
    c = crc32c(b.subarray(crcAt + 4, total), c);
    if (c !== stored) fail('crc_mismatch', `CRC32C ${hex(stored, 8)} does not match the computed ${hex(c, 8)}`, crcAt);
  }

  const family = FAMILY_BY_NIBBLE[fam as 1 | 2 | 3];
  const protocol = PROTOCOL_BY_NIBBLE[proto as 1 | 2];
  const tlvs = parseTlvs(b, tlvStart, total);
  if (crcAt !== -1) tlvs.crc32c = true;
  let header: ProxyHeader;
  if (family === 'unix') {
    const source = { path: readUnixPath(b, V2_HEADER, 'source') };
    const destination = { path: readUnixPath(b, V2_HEADER + UNIX_PATH_LEN, 'destination') };
    header = { version: 2, command: 'proxy', family, protocol, source, destination, tlvs };
  } else {
    const n = family === 'ipv4' ? 4 : 16;
    const fmt = family === 'ipv4' ? formatIPv4 : formatIPv6;
    const ports = V2_HEADER + 2 * n;
    header = {
      version: 2,
      command: 'proxy',
      family,
      protocol,
      source: { address: fmt(b, V2_HEADER), port: (b[ports]! << 8) | b[ports + 1]! },
      destination: { address: fmt(b, V2_HEADER + n), port: (b[ports + 2]! << 8) | b[ports + 3]! },
      tlvs,
    };
  }
  return { status: 'done', header, length: total };
}

function readU32(b: Uint8Array, i: number): number {
  return ((b[i]! << 24) | (b[i + 1]! << 16) | (b[i + 2]! << 8) | b[i + 3]!) >>> 0;
}

/** Decode TLVs already framed by {@link parseV2}: every header and value fits in `[start, end)`. */
function parseTlvs(b: Uint8Array, start: number, end: number): ProxyTlvs {
  const tlvs: ProxyTlvs = { raw: [] };
  // Repeated known TLVs overwrite: the last one wins, as in other implementations.
  for (let p = start; p < end; ) {
    const type = b[p]!;
    const vs = p + 3;
    const ve = vs + ((b[p + 1]! << 8) | b[p + 2]!);
    switch (type) {
      case PP2_TYPE_ALPN:
        tlvs.alpn = Buffer.from(b.subarray(vs, ve));
        break;
      case PP2_TYPE_AUTHORITY:
        tlvs.authority = readText(b, vs, ve, 'AUTHORITY TLV', p);
        break;
      case PP2_TYPE_CRC32C:
      case PP2_TYPE_NOOP:
        break;
      case PP2_TYPE_UNIQUE_ID:
        if (ve - vs > UNIQUE_ID_MAX) fail('bad_tlv', `UNIQUE_ID TLV is ${ve - vs} bytes (at most ${UNIQUE_ID_MAX})`, p);
        tlvs.uniqueId = Buffer.from(b.subarray(vs, ve));
        break;
      case PP2_TYPE_SSL:
        tlvs.ssl = parseSsl(b, vs, ve, p);
        break;
      case PP2_TYPE_NETNS:
        tlvs.netns = readText(b, vs, ve, 'NETNS TLV', p);
        break;
      default:
        tlvs.raw.push({ type, value: Buffer.from(b.subarray(vs, ve)) });
    }
    p = ve;
  }
  return tlvs;
}

function parseSsl(b: Uint8Array, vs: number, ve: number, at: number): ProxySsl {
  if (ve - vs < 5) fail('bad_tlv', `SSL TLV is ${ve - vs} bytes, too short for its client and verify fields`, at);
  const client = b[vs]!;
  const verifyResult = readU32(b, vs + 1);
  // Unknown client bits are ignored: they are reserved for future flags, not structure.
  const ssl: ProxySsl = {
    client: {
      ssl: (client & PP2_CLIENT_SSL) !== 0,
      certConn: (client & PP2_CLIENT_CERT_CONN) !== 0,
      certSess: (client & PP2_CLIENT_CERT_SESS) !== 0,
    },
    verified: verifyResult === 0,
    verifyResult,
    raw: [],
  };
  for (let p = vs + 5; p < ve; ) {
    if (ve - p < 3) fail('tlv_overrun', `${ve - p} bytes left in the SSL TLV, too few for a sub-TLV header`, p);
    const type = b[p]!;
    const svs = p + 3;
    const sve = svs + ((b[p + 1]! << 8) | b[p + 2]!);
    if (sve > ve) fail('tlv_overrun', `SSL sub-TLV ${hex(type)} runs ${sve - ve} bytes past the SSL TLV`, p);
    const field = SSL_FIELD_BY_TYPE.get(type);
    if (field === undefined) ssl.raw.push({ type, value: Buffer.from(b.subarray(svs, sve)) });
    else ssl[field] = readText(b, svs, sve, `SSL sub-TLV ${hex(type)}`, p);
    p = sve;
  }
  return ssl;
}

function readText(b: Uint8Array, start: number, end: number, what: string, at: number): string {
  const view = b.subarray(start, end);
  if (!isUtf8(view)) fail('bad_tlv', `${what} is not valid UTF-8`, at);
  return Buffer.from(view.buffer, view.byteOffset, view.length).toString('utf8');
}

/**
 * Decode a 108-byte sun_path field. A path runs to the first NUL (or fills all 108 bytes, as
 * Linux allows); bytes after that NUL are ignored. An all-zero field is an unnamed socket (`''`);
 * a leading NUL followed by a name is an abstract socket, whose trailing NUL padding is dropped.
 */
function readUnixPath(b: Uint8Array, off: number, which: string): string {
  const limit = off + UNIX_PATH_LEN;
  let start = off;
  let end: number;
  let prefix = '';
  if (b[off] === 0) {
    end = limit;
    while (end > off + 1 && b[end - 1] === 0) end--;
    if (end === off + 1) return '';
    start = off + 1;
    prefix = '\0';
  } else {
    end = off;
    while (end < limit && b[end] !== 0) end++;
  }
  const view = b.subarray(start, end);
  if (!isUtf8(view)) fail('bad_unix_address', `${which} UNIX path is not valid UTF-8`, off);
  return prefix + Buffer.from(view.buffer, view.byteOffset, view.length).toString('utf8');
}

// ---------------------------------------------------------------------------------------------
// Address text
// ---------------------------------------------------------------------------------------------

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  return -1;
}

/** Digits only, at most `maxDigits`, no leading zero (except "0" itself), value at most `max`. */
function isDecimalPrefix(s: string, maxDigits: number, max: number): boolean {
  if (s.length === 0 || s.length > maxDigits) return false;
  if (s.length > 1 && s.charCodeAt(0) === 0x30) return false;
  let v = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return false;
    v = v * 10 + (c - 0x30);
  }
  return v <= max;
}

function parsePort(s: string): number | undefined {
  return isDecimalPrefix(s, 5, 65535) ? Number(s) : undefined;
}

/** Strict dotted quad: four decimal octets 0-255, no leading zeros, nothing else. */
function parseIPv4(s: string): Uint8Array | undefined {
  if (s.length < 7 || s.length > 15) return undefined;
  const parts = s.split('.');
  if (parts.length !== 4) return undefined;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i]!;
    if (!isDecimalPrefix(p, 3, 255)) return undefined;
    out[i] = Number(p);
  }
  return out;
}

function isIPv4Prefix(s: string): boolean {
  if (s.length > 15) return false;
  const parts = s.split('.');
  if (parts.length > 4) return false;
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i]!;
    // Only the part still being typed may be empty.
    if (!(isDecimalPrefix(p, 3, 255) || (p === '' && i === parts.length - 1))) return false;
  }
  return true;
}

/**
 * Strict IPv6 text (RFC 4291 section 2.2): eight groups of 1-4 hex digits, at most one `::`
 * standing for one or more zero groups, optionally ending in a strict dotted quad. No zone id.
 */
function parseIPv6(s: string): Uint8Array | undefined {
  const n = s.length;
  if (n < 2 || n > 45) return undefined;
  const words: number[] = [];
  let gap = -1;
  let i = 0;
  if (s.charCodeAt(0) === 0x3a) {
    if (s.charCodeAt(1) !== 0x3a) return undefined;
    gap = 0;
    i = 2;
  }
  while (i < n) {
    const start = i;
    let v = 0;
    while (i < n && i - start < 5) {
      const d = hexValue(s.charCodeAt(i));
      if (d < 0) break;
      v = v * 16 + d;
      i++;
    }
    if (i < n && s.charCodeAt(i) === 0x2e) {
      const v4 = parseIPv4(s.slice(start));
      if (v4 === undefined) return undefined;
      words.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
      break;
    }
    const digits = i - start;
    if (digits === 0 || digits > 4) return undefined;
    words.push(v);
    if (i === n) break;
    if (s.charCodeAt(i) !== 0x3a || words.length >= 8) return undefined;
    i++;
    if (s.charCodeAt(i) === 0x3a) {
      if (gap !== -1) return undefined;
      gap = words.length;
      i++;
    } else if (i === n) {
      return undefined; // a single trailing colon
    }
  }
  if (gap === -1 ? words.length !== 8 : words.length > 7) return undefined;
  const out = new Uint8Array(16);
  const tail = gap === -1 ? 0 : words.length - gap;
  for (let w = 0; w < words.length; w++) {
    const slot = gap !== -1 && w >= gap ? 8 - tail + (w - gap) : w;
    out[slot * 2] = words[w]! >> 8;
    out[slot * 2 + 1] = words[w]! & 0xff;
  }
  return out;
}

function formatIPv4(b: Uint8Array, o: number): string {
  return `${b[o]}.${b[o + 1]}.${b[o + 2]}.${b[o + 3]}`;
}

/**
 * Format 16 bytes as Node formats peer addresses (`socket.remoteAddress`, `net.SocketAddress`):
 * lower-case hex without leading zeros, the first longest run of two or more zero groups as `::`,
 * and `::a.b.c.d` / `::ffff:a.b.c.d` for IPv4-compatible and IPv4-mapped addresses.
 */
function formatIPv6(b: Uint8Array, o: number): string {
  const w = new Array<number>(8);
  for (let i = 0; i < 8; i++) w[i] = (b[o + 2 * i]! << 8) | b[o + 2 * i + 1]!;
  let best = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (w[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && w[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (bestLen < 2) best = -1;
  let out = '';
  for (let i = 0; i < 8; i++) {
    if (best !== -1 && i >= best && i < best + bestLen) {
      if (i === best) out += ':';
      continue;
    }
    if (i !== 0) out += ':';
    if (i === 6 && best === 0 && (bestLen === 6 || (bestLen === 5 && w[5] === 0xffff))) {
      out += formatIPv4(b, o + 12);
      return out;
    }
    out += w[i]!.toString(16);
  }
  if (best !== -1 && best + bestLen === 8) out += ':';
  return out;
}

// ---------------------------------------------------------------------------------------------
// Building
// ---------------------------------------------------------------------------------------------

/** Options of {@link buildProxyHeader}. */
export interface BuildProxyHeaderOptions {
  /** Header version; defaults to the input's `version`, else 2. */
  version?: 1 | 2;
  /** Append a PP2_TYPE_CRC32C TLV (v2 only); defaults to the input's `tlvs.crc32c`, else false. */
  checksum?: boolean;
  /** Total size in bytes (at least 3) of a PP2_TYPE_NOOP TLV to add before the checksum (v2 only). */
  padding?: number;
}

/**
 * Encode a PROXY protocol header.
 *
 * v1 can express IPv4/IPv6 stream connections and `UNKNOWN`, without TLVs. v2 expresses
 * everything: LOCAL, PROXY with UNSPEC, IPv4/IPv6/UNIX over stream or datagram, and TLVs, emitted
 * in the order ALPN, AUTHORITY, UNIQUE_ID, SSL (sub-TLVs version, CN, cipher, signature and key
 * algorithm, group, signature scheme, then raw ones), NETNS, raw TLVs as given, NOOP padding, and
 * the CRC32C last, computed over the whole header. IPv6 addresses are re-emitted in canonical form.
 *
 * LOCAL and UNSPEC headers cannot carry TLVs, since receivers discard their payload; padding and
 * checksum are still honoured for them.
 *
 * @param header - what to encode; a parsed {@link ProxyHeader} is accepted.
 * @param opts - version and framing options.
 * @returns a new buffer holding exactly the header.
 * @throws {ProxyHeaderError} the input is invalid (`bad_address`, `bad_port`, `bad_tlv`,
 *   `bad_unix_address`, `bad_length`, ...) or not expressible in the version (`unsupported`).
 * @throws {BadArgumentError} an option has an invalid value.
 */
export function buildProxyHeader(header: ProxyHeaderInput, opts: BuildProxyHeaderOptions = {}): Buffer {
  const version = opts.version ?? header.version ?? 2;
  if (version !== 1 && version !== 2) throw new BadArgumentError(`version must be 1 or 2, got ${String(version)}`);
  const checksum = opts.checksum ?? header.tlvs?.crc32c ?? false;
  const padding = opts.padding;
  if (padding !== undefined && !(Number.isInteger(padding) && padding >= 3 && padding <= 3 + 0xffff)) {
    throw new BadArgumentError(`padding must be an integer from 3 to ${3 + 0xffff}, got ${String(padding)}`);
  }
  const command: unknown = header.command;
  if (command !== 'local' && command !== 'proxy') {
    fail('bad_command', `command must be 'local' or 'proxy', got ${show(String(command))}`);
  }
  const family: unknown = header.family;
  if (family !== undefined && family !== 'ipv4' && family !== 'ipv6' && family !== 'unix') {
    fail('bad_family', `family must be 'ipv4', 'ipv6', 'unix' or undefined, got ${show(String(family))}`);
  }
  return version === 1 ? buildV1(header, checksum, padding) : buildV2(header, checksum, padding);
}

function hasTlvs(t: ProxyTlvsInput | undefined): boolean {
  return (
    t !== undefined &&
    (t.alpn !== undefined ||
      t.authority !== undefined ||
      t.uniqueId !== undefined ||
      t.ssl !== undefined ||
      t.netns !== undefined ||
      (t.raw !== undefined && t.raw.length > 0))
  );
}

function buildV1(header: ProxyHeaderInput, checksum: boolean, padding: number | undefined): Buffer {
  if (header.command === 'local') fail('unsupported', 'v1 has no LOCAL command');
  if (checksum || padding !== undefined || hasTlvs(header.tlvs)) fail('unsupported', 'v1 cannot carry TLVs, padding or a checksum');
  if (header.family === undefined) return Buffer.from('PROXY UNKNOWN\r\n', 'latin1');
  if (header.family === 'unix') fail('unsupported', 'v1 cannot express UNIX sockets');
  const protocol = header.protocol ?? 'stream';
  if (protocol !== 'stream') fail('unsupported', `v1 cannot express ${show(String(protocol))} connections`);
  const v6 = header.family === 'ipv6';
  const src = encodeInet(header.source, v6, 'source');
  const dst = encodeInet(header.destination, v6, 'destination');
  const text = (a: Uint8Array): string => (v6 ? formatIPv6(a, 0) : formatIPv4(a, 0));
  const line =
    `PROXY ${v6 ? 'TCP6' : 'TCP4'} ${text(src.address)} ${text(dst.address)} ${src.port} ${dst.port}\r\n`;
  return Buffer.from(line, 'latin1');
}

function encodeInet(ep: Readonly<ProxyInetAddress> | undefined, v6: boolean, which: string): { address: Uint8Array; port: number } {
  const address: unknown = ep?.address;
  const raw = typeof address === 'string' ? (v6 ? parseIPv6(address) : parseIPv4(address)) : undefined;
  if (raw === undefined) {
    fail('bad_address', `${which} address ${show(String(address))} is not a valid ${v6 ? 'IPv6' : 'IPv4'} address`);
  }
  const port: unknown = ep?.port;
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 0xffff) {
    fail('bad_port', `${which} port ${show(String(port))} is not an integer 0-65535`);
  }
  return { address: raw, port };
}

function encodeUnixPath(ep: Readonly<ProxyUnixAddress> | undefined, which: string): Buffer {
  const path: unknown = ep?.path;
  if (typeof path !== 'string') fail('bad_unix_address', `${which} path must be a string`);
  const bytes = Buffer.from(path, 'utf8');
  if (bytes.toString('utf8') !== path) fail('bad_unix_address', `${which} path is not well-formed Unicode`);
  if (bytes.length > UNIX_PATH_LEN) fail('bad_unix_address', `${which} path is ${bytes.length} bytes (at most ${UNIX_PATH_LEN})`);
  // Only encodings that decode back to the same string are accepted (see readUnixPath).
  if (bytes[0] === 0) {
    if (bytes.length === 1 || bytes[bytes.length - 1] === 0) {
      fail('bad_unix_address', `${which} abstract socket name must be non-empty and not end with NUL`);
    }
  } else if (bytes.includes(0)) {
    fail('bad_unix_address', `${which} path contains a NUL byte`);
  }
  return bytes;
}

function buildV2(header: ProxyHeaderInput, checksum: boolean, padding: number | undefined): Buffer {
  const parts: Uint8Array[] = [];
  let verCmd = 0x21;
  let famProto = 0x00;
  if (header.command === 'local' || header.family === undefined) {
    if (header.command === 'local') verCmd = 0x20;
    if (hasTlvs(header.tlvs)) {
      fail('unsupported', `${header.command === 'local' ? 'LOCAL' : 'UNSPEC'} headers cannot carry TLVs (receivers discard them)`);
    }
  } else {
    const protocol: unknown = header.protocol ?? 'stream';
    if (protocol !== 'stream' && protocol !== 'dgram') fail('bad_protocol', `protocol must be 'stream' or 'dgram', got ${show(String(protocol))}`);
    const protoNibble = protocol === 'stream' ? 1 : 2;
    if (header.family === 'unix') {
      famProto = 0x30 | protoNibble;
      const block = Buffer.alloc(2 * UNIX_PATH_LEN);
      block.set(encodeUnixPath(header.source, 'source'), 0);
      block.set(encodeUnixPath(header.destination, 'destination'), UNIX_PATH_LEN);
      parts.push(block);
    } else {
      const v6 = header.family === 'ipv6';
      famProto = (v6 ? 0x20 : 0x10) | protoNibble;
      const src = encodeInet(header.source, v6, 'source');
      const dst = encodeInet(header.destination, v6, 'destination');
      const n = src.address.length;
      const block = Buffer.alloc(2 * n + 4);
      block.set(src.address, 0);
      block.set(dst.address, n);
      block.writeUInt16BE(src.port, 2 * n);
      block.writeUInt16BE(dst.port, 2 * n + 2);
      parts.push(block);
    }
    if (header.tlvs !== undefined) encodeTlvs(header.tlvs, parts);
  }
  if (padding !== undefined) parts.push(tlv(PP2_TYPE_NOOP, new Uint8Array(padding - 3), 'padding'));

  let payload = checksum ? 7 : 0;
  for (const p of parts) payload += p.length;
  if (payload > 0xffff) fail('bad_length', `payload of ${payload} bytes exceeds the 65535-byte limit`);
  const out = Buffer.alloc(V2_HEADER + payload);
  out.set(V2_SIG, 0);
  out[12] = verCmd;
  out[13] = famProto;
  out.writeUInt16BE(payload, 14);
  let p = V2_HEADER;
  for (const part of parts) {
    out.set(part, p);
    p += part.length;
  }
  if (checksum) {
    out[p] = PP2_TYPE_CRC32C;
    out.writeUInt16BE(4, p + 1);
    // The value bytes are still zero, which is what the checksum is defined over.
    out.writeUInt32BE(crc32c(out), p + 3);
  }
  return out;
}

function tlv(type: number, value: Uint8Array, what: string): Buffer {
  if (value.length > 0xffff) fail('bad_tlv', `${what} value is ${value.length} bytes (at most 65535)`);
  const out = Buffer.allocUnsafe(3 + value.length);
  out[0] = type;
  out.writeUInt16BE(value.length, 1);
  out.set(value, 3);
  return out;
}

function encodeText(s: unknown, what: string): Buffer {
  if (typeof s !== 'string') fail('bad_tlv', `${what} must be a string`);
  const bytes = Buffer.from(s, 'utf8');
  if (bytes.toString('utf8') !== s) fail('bad_tlv', `${what} is not well-formed Unicode`);
  return bytes;
}

function encodeBytes(v: unknown, what: string): Uint8Array {
  if (!(v instanceof Uint8Array)) fail('bad_tlv', `${what} must be a Uint8Array`);
  return v;
}

const KNOWN_TLV_TYPES = new Set([
  PP2_TYPE_ALPN, PP2_TYPE_AUTHORITY, PP2_TYPE_CRC32C, PP2_TYPE_NOOP, PP2_TYPE_UNIQUE_ID, PP2_TYPE_SSL, PP2_TYPE_NETNS,
]);

/** Raw TLVs must not use a type the parser would interpret, or they would not read back as raw. */
function encodeRaw(list: readonly ProxyRawTlvInput[], reserved: (t: number) => boolean, what: string, parts: Uint8Array[]): void {
  for (const r of list) {
    const type: unknown = r?.type;
    if (typeof type !== 'number' || !Number.isInteger(type) || type < 0 || type > 0xff) {
      fail('bad_tlv', `${what} type ${show(String(type))} is not an integer 0-255`);
    }
    if (reserved(type)) fail('bad_tlv', `${what} type ${hex(type)} has a defined meaning; use its field instead`);
    parts.push(tlv(type, encodeBytes(r.value, `${what} ${hex(type)}`), `${what} ${hex(type)}`));
  }
}

function encodeTlvs(t: ProxyTlvsInput, parts: Uint8Array[]): void {
  if (t.alpn !== undefined) {
    let alpn: Uint8Array;
    if (typeof t.alpn === 'string') {
      const bytes = Buffer.from(t.alpn, 'latin1');
      if (bytes.toString('latin1') !== t.alpn) fail('bad_tlv', 'ALPN string has characters above U+00FF');
      alpn = bytes;
    } else {
      alpn = encodeBytes(t.alpn, 'ALPN');
    }
    parts.push(tlv(PP2_TYPE_ALPN, alpn, 'ALPN'));
  }
  if (t.authority !== undefined) parts.push(tlv(PP2_TYPE_AUTHORITY, encodeText(t.authority, 'AUTHORITY'), 'AUTHORITY'));
  if (t.uniqueId !== undefined) {
    const id = encodeBytes(t.uniqueId, 'UNIQUE_ID');
    if (id.length > UNIQUE_ID_MAX) fail('bad_tlv', `UNIQUE_ID is ${id.length} bytes (at most ${UNIQUE_ID_MAX})`);
    parts.push(tlv(PP2_TYPE_UNIQUE_ID, id, 'UNIQUE_ID'));
  }
  if (t.ssl !== undefined) parts.push(tlv(PP2_TYPE_SSL, encodeSsl(t.ssl), 'SSL'));
  if (t.netns !== undefined) parts.push(tlv(PP2_TYPE_NETNS, encodeText(t.netns, 'NETNS'), 'NETNS'));
  if (t.raw !== undefined) encodeRaw(t.raw, (type) => KNOWN_TLV_TYPES.has(type), 'raw TLV', parts);
}

function encodeSsl(ssl: ProxySslInput): Buffer {
  if (typeof ssl.verified !== 'boolean') fail('bad_tlv', 'SSL verified must be a boolean');
  const verify = ssl.verifyResult ?? (ssl.verified ? 0 : 1);
  if (!Number.isInteger(verify) || verify < 0 || verify > 0xffffffff) fail('bad_tlv', `SSL verifyResult ${show(String(verify))} is not a 32-bit unsigned integer`);
  if ((verify === 0) !== ssl.verified) fail('bad_tlv', `SSL verifyResult ${verify} contradicts verified: ${ssl.verified}`);
  const c = ssl.client;
  const head = Buffer.alloc(5);
  head[0] =
    (c?.ssl ? PP2_CLIENT_SSL : 0) | (c?.certConn ? PP2_CLIENT_CERT_CONN : 0) | (c?.certSess ? PP2_CLIENT_CERT_SESS : 0);
  head.writeUInt32BE(verify, 1);
  const parts: Uint8Array[] = [head];
  for (const [type, field] of SSL_SUBTYPES) {
    const v = ssl[field];
    if (v !== undefined) parts.push(tlv(type, encodeText(v, `SSL ${field}`), `SSL ${field}`));
  }
  if (ssl.raw !== undefined) encodeRaw(ssl.raw, (type) => SSL_FIELD_BY_TYPE.has(type), 'raw SSL sub-TLV', parts);
  return Buffer.concat(parts);
}

// ---------------------------------------------------------------------------------------------
// Connection info
// ---------------------------------------------------------------------------------------------

/**
 * The real peer behind a proxy, as protocols and logs should report it instead of the socket's
 * own endpoints. Fields are absent when the header does not say.
 */
export interface ProxyConnectionInfo {
  /** The client's address (the header's source). */
  remoteAddress?: string;
  remotePort?: number;
  /** `IPv4` or `IPv6`, as Node's `socket.remoteFamily`. */
  remoteFamily?: 'IPv4' | 'IPv6';
  /** The address the client connected to (the header's destination). */
  localAddress?: string;
  localPort?: number;
  localFamily?: 'IPv4' | 'IPv6';
  /** UNIX socket paths, for the `unix` family. */
  remotePath?: string;
  localPath?: string;
  /** Transport of the original connection. */
  transport?: ProxyTransport;
  /** The client connected over TLS (PP2_CLIENT_SSL). */
  secure?: boolean;
  /** TLS version as OpenSSL names it (e.g. `TLSv1.3`, like `tlsSocket.getProtocol()`). */
  tlsVersion?: string;
  /** OpenSSL cipher name (like `tlsSocket.getCipher().name`). */
  tlsCipher?: string;
  /** The server name the client asked for (the AUTHORITY TLV). */
  sni?: string;
  /** The negotiated application protocol (like `tlsSocket.alpnProtocol`). */
  alpn?: string;
  /** Present when the client sent a certificate on this connection or its TLS session. */
  clientCertificate?: { verified: boolean; cn?: string };
  /** The proxy's unique connection id. */
  uniqueId?: Buffer;
  /** Network namespace of the original connection. */
  netns?: string;
}

/**
 * Project a parsed header onto the real peer's connection info (Ranch's `to_connection_info`).
 * LOCAL and UNKNOWN/UNSPEC headers give `{}`: the socket's own endpoints are the real ones.
 *
 * @param header - a header from {@link parseProxyHeader}.
 * @returns the original connection's endpoints and TLS facts.
 */
export function proxyHeaderToConnectionInfo(header: ProxyHeader): ProxyConnectionInfo {
  const info: ProxyConnectionInfo = {};
  if (header.command !== 'proxy' || header.family === undefined) return info;
  if (header.family === 'unix') {
    info.remotePath = header.source.path;
    info.localPath = header.destination.path;
  } else {
    const fam = header.family === 'ipv4' ? 'IPv4' : 'IPv6';
    info.remoteAddress = header.source.address;
    info.remotePort = header.source.port;
    info.remoteFamily = fam;
    info.localAddress = header.destination.address;
    info.localPort = header.destination.port;
    info.localFamily = fam;
  }
  info.transport = header.protocol;
  const t = header.tlvs;
  if (t.authority !== undefined) info.sni = t.authority;
  // latin1 maps protocol-id bytes one to one, as Node does for `alpnProtocol`.
  if (t.alpn !== undefined) info.alpn = t.alpn.toString('latin1');
  if (t.uniqueId !== undefined) info.uniqueId = t.uniqueId;
  if (t.netns !== undefined) info.netns = t.netns;
  const ssl = t.ssl;
  if (ssl !== undefined) {
    info.secure = ssl.client.ssl;
    if (ssl.version !== undefined) info.tlsVersion = ssl.version;
    if (ssl.cipher !== undefined) info.tlsCipher = ssl.cipher;
    if (ssl.client.certConn || ssl.client.certSess) {
      info.clientCertificate = ssl.cn === undefined ? { verified: ssl.verified } : { verified: ssl.verified, cn: ssl.cn };
    }
  }
  return info;
}
