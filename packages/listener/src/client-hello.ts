/**
 * The TLS ClientHello as a pure parser: given the first bytes of a connection, say whether they
 * hold a complete ClientHello yet and, once they do, what the client offered (server name, ALPN
 * protocols, versions, cipher suites, groups, ...). No I/O happens here: the TLS transport peeks,
 * this module decides, and the bytes go to the TLS engine untouched afterwards.
 *
 * Parsing is strict on structure (record framing, every vector length, extension framing, the
 * rules RFC 8446 sets for ClientHello extensions) and liberal on content the specifications leave
 * open or that TLS engines ignore: the record's minor version, unknown extensions, GREASE values
 * and algorithm identifiers are all kept as sent.
 */

import { BadArgumentError, CorralError } from './errors.js';

// ---------------------------------------------------------------------------------------------
// Model
// ---------------------------------------------------------------------------------------------

/** One extension of a ClientHello. */
export interface ClientHelloExtension {
  /** The 16-bit extension type (IANA "TLS ExtensionType Values"), e.g. 0 for server_name. */
  readonly type: number;
  /** The extension_data, without type and length. A view, like every buffer of a {@link ClientHello}. */
  readonly data: Buffer;
}

/**
 * A parsed ClientHello.
 *
 * Every `Buffer` in it (`random`, `sessionId`, `sessionTicket`, extension data) is a view, never a
 * copy: of the parsed bytes when the hello came in a single record, of a private reassembly
 * buffer when it was fragmented. A transport hands the parsed bytes to the TLS engine unchanged,
 * so the views stay valid; copy what you keep if the input buffer may be reused or modified.
 *
 * Lists are in wire order and keep every value as sent, GREASE values (RFC 8701) included. The
 * list-valued extensions this parser decodes must not be empty on the wire, except `key_share`,
 * so an empty list means the extension is absent; `keyShareGroups` is also empty when the client
 * sent `key_share` without shares to await a HelloRetryRequest (look in `extensions` to tell).
 */
export interface ClientHello {
  /** legacy_version: 0x0303 for TLS 1.2 and 1.3 clients, which announce 1.3 in `supportedVersions`. */
  legacyVersion: number;
  /** The 32-byte client random. */
  random: Buffer;
  /** legacy_session_id, 0 to 32 bytes. */
  sessionId: Buffer;
  /** Offered cipher suites (see {@link cipherSuiteName}); never empty. */
  cipherSuites: number[];
  /** legacy_compression_methods; never empty. */
  compressionMethods: number[];
  /** Every extension, in wire order; empty when the hello has no extensions block. */
  extensions: ClientHelloExtension[];
  /**
   * server_name (0): the host name the client asks for, as sent. Letters, digits, `-` and `_`
   * in non-empty labels separated by dots, at most 255 bytes; a trailing dot is kept. DNS names
   * compare case-insensitively, so lower-case it before using it as a lookup key.
   */
  serverName?: string;
  /** application_layer_protocol_negotiation (16): protocol ids, each byte as one latin1 character. */
  alpnProtocols: string[];
  /** supported_versions (43), e.g. 0x0304 for TLS 1.3 (see {@link tlsVersionName}). */
  supportedVersions: number[];
  /** signature_algorithms (13): SignatureScheme values. */
  signatureAlgorithms: number[];
  /** signature_algorithms_cert (50): SignatureScheme values for certificate signatures. */
  signatureAlgorithmsCert: number[];
  /** supported_groups (10): NamedGroup values, e.g. 0x001d for x25519. */
  supportedGroups: number[];
  /** key_share (51): the group of each offered key share. */
  keyShareGroups: number[];
  /** ec_point_formats (11). */
  ecPointFormats: number[];
  /** psk_key_exchange_modes (45): 0 psk_ke, 1 psk_dhe_ke. */
  pskKeyExchangeModes: number[];
  /** pre_shared_key (41) is present (it is then the last extension). */
  hasPreSharedKey: boolean;
  /** early_data (42) is present: the client may send 0-RTT data after the hello. */
  hasEarlyData: boolean;
  /** status_request (5) is present: the client asks for a stapled OCSP response. */
  statusRequest: boolean;
  /** session_ticket (35): absent when not sent, empty when the client asks for a new ticket. */
  sessionTicket?: Buffer;
}

/** Options of {@link parseClientHello}. */
export interface ParseClientHelloOptions {
  /**
   * Most bytes of TLS records (headers included) accepted for one ClientHello; default
   * {@link CLIENT_HELLO_DEFAULT_MAX_LENGTH}, at least {@link CLIENT_HELLO_MIN_LENGTH}. Larger
   * hellos fail with `too_large` as soon as a record or handshake length announces them.
   */
  maxLength?: number;
}

/** Outcome of {@link parseClientHello}. */
export type ClientHelloResult =
  | {
      readonly status: 'done';
      readonly hello: ClientHello;
      /** Bytes of the records that carried the hello; whatever follows is not part of it. */
      readonly length: number;
    }
  | { readonly status: 'more' };

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/**
 * Why bytes were rejected as a ClientHello.
 *
 * - `not_tls`: the first byte cannot start a TLS record (plain text, an HTTP request, ...).
 * - `not_client_hello`: TLS, but not a ClientHello: another record type or handshake message.
 * - `bad_record`: record framing is wrong (version, empty or non-handshake record inside the
 *   hello, or data after the hello in its last record).
 * - `record_overflow`: a record longer than 2^14 bytes.
 * - `too_large`: the hello would exceed the `maxLength` option.
 * - `bad_length`: a length outside its allowed range, or bytes left over after the hello's fields.
 * - `truncated`: a field runs past the end of the handshake message (incomplete input is never an
 *   error: it gives `{ status: 'more' }`).
 * - `bad_version`: legacy_version is not 3.x.
 * - `bad_extension`: an extension overruns the extensions block or has a malformed body, or
 *   pre_shared_key is not the last extension.
 * - `duplicate_extension`: two extensions of the same type.
 * - `bad_server_name`: the server_name extension does not hold exactly one acceptable host name.
 */
export type ClientHelloErrorReason =
  | 'not_tls'
  | 'not_client_hello'
  | 'bad_record'
  | 'record_overflow'
  | 'too_large'
  | 'bad_length'
  | 'truncated'
  | 'bad_version'
  | 'bad_extension'
  | 'duplicate_extension'
  | 'bad_server_name';

/** Bytes that are not (the start of) a valid ClientHello. */
export class ClientHelloError extends CorralError {
  /** What is wrong, as a stable discriminant. */
  readonly reason: ClientHelloErrorReason;
  /** Offset of the offending byte in the parsed input (record headers included). */
  readonly offset: number;

  constructor(reason: ClientHelloErrorReason, message: string, offset: number) {
    super('ERR_CORRAL_CLIENT_HELLO', `ClientHello: ${message} (at byte ${offset})`);
    this.reason = reason;
    this.offset = offset;
  }
}

function fail(reason: ClientHelloErrorReason, message: string, offset: number): never {
  throw new ClientHelloError(reason, message, offset);
}

// ---------------------------------------------------------------------------------------------
// Constants
// ---------------------------------------------------------------------------------------------

/** Largest record payload RFC 8446 section 5.1 allows: 2^14 bytes. */
export const TLS_MAX_FRAGMENT_LENGTH = 16384;

/** Default of the `maxLength` option: room for a hello of several full records. */
export const CLIENT_HELLO_DEFAULT_MAX_LENGTH = 65536;

/** Bytes of the smallest possible ClientHello, in one record: a lower `maxLength` rejects everything. */
export const CLIENT_HELLO_MIN_LENGTH = 50;

const RECORD_HEADER = 5;
const HANDSHAKE_HEADER = 4;
/** version 2, random 32, session id length 1, one cipher suite 2+2, one compression method 1+1. */
const MIN_BODY = CLIENT_HELLO_MIN_LENGTH - RECORD_HEADER - HANDSHAKE_HEADER;

const CT_HANDSHAKE = 22;
const HT_CLIENT_HELLO = 1;

const EXT_SERVER_NAME = 0;
const EXT_STATUS_REQUEST = 5;
const EXT_SUPPORTED_GROUPS = 10;
const EXT_EC_POINT_FORMATS = 11;
const EXT_SIGNATURE_ALGORITHMS = 13;
const EXT_ALPN = 16;
const EXT_SESSION_TICKET = 35;
const EXT_PRE_SHARED_KEY = 41;
const EXT_EARLY_DATA = 42;
const EXT_SUPPORTED_VERSIONS = 43;
const EXT_PSK_KEY_EXCHANGE_MODES = 45;
const EXT_SIGNATURE_ALGORITHMS_CERT = 50;
const EXT_KEY_SHARE = 51;

const EXTENSION_NAMES = new Map<number, string>([
  [EXT_SERVER_NAME, 'server_name'],
  [EXT_STATUS_REQUEST, 'status_request'],
  [EXT_SUPPORTED_GROUPS, 'supported_groups'],
  [EXT_EC_POINT_FORMATS, 'ec_point_formats'],
  [EXT_SIGNATURE_ALGORITHMS, 'signature_algorithms'],
  [EXT_ALPN, 'application_layer_protocol_negotiation'],
  [EXT_SESSION_TICKET, 'session_ticket'],
  [EXT_PRE_SHARED_KEY, 'pre_shared_key'],
  [EXT_EARLY_DATA, 'early_data'],
  [EXT_SUPPORTED_VERSIONS, 'supported_versions'],
  [EXT_PSK_KEY_EXCHANGE_MODES, 'psk_key_exchange_modes'],
  [EXT_SIGNATURE_ALGORITHMS_CERT, 'signature_algorithms_cert'],
  [EXT_KEY_SHARE, 'key_share'],
]);

const CONTENT_TYPE_NAMES: Readonly<Record<number, string>> = {
  20: 'change_cipher_spec',
  21: 'alert',
  23: 'application_data',
  24: 'heartbeat',
};

const HANDSHAKE_TYPE_NAMES: Readonly<Record<number, string>> = {
  0: 'hello_request',
  2: 'server_hello',
  4: 'new_session_ticket',
  8: 'encrypted_extensions',
  11: 'certificate',
  12: 'server_key_exchange',
  13: 'certificate_request',
  14: 'server_hello_done',
  15: 'certificate_verify',
  16: 'client_key_exchange',
  20: 'finished',
};

const VERSION_NAMES: Readonly<Record<number, string>> = {
  0x0300: 'SSLv3',
  0x0301: 'TLSv1',
  0x0302: 'TLSv1.1',
  0x0303: 'TLSv1.2',
  0x0304: 'TLSv1.3',
};

const CIPHER_SUITE_NAMES: Readonly<Record<number, string>> = {
  0x002f: 'TLS_RSA_WITH_AES_128_CBC_SHA',
  0x0035: 'TLS_RSA_WITH_AES_256_CBC_SHA',
  0x009c: 'TLS_RSA_WITH_AES_128_GCM_SHA256',
  0x009d: 'TLS_RSA_WITH_AES_256_GCM_SHA384',
  0x00ff: 'TLS_EMPTY_RENEGOTIATION_INFO_SCSV',
  0x1301: 'TLS_AES_128_GCM_SHA256',
  0x1302: 'TLS_AES_256_GCM_SHA384',
  0x1303: 'TLS_CHACHA20_POLY1305_SHA256',
  0x1304: 'TLS_AES_128_CCM_SHA256',
  0x1305: 'TLS_AES_128_CCM_8_SHA256',
  0x5600: 'TLS_FALLBACK_SCSV',
  0xc009: 'TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA',
  0xc00a: 'TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA',
  0xc013: 'TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA',
  0xc014: 'TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA',
  0xc02b: 'TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256',
  0xc02c: 'TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384',
  0xc02f: 'TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256',
  0xc030: 'TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384',
  0xcca8: 'TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256',
  0xcca9: 'TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256',
};

/** Openings of plain-text protocols that end up on TLS ports by mistake, for a useful error. */
const TEXT_HINTS: ReadonlyArray<readonly [Uint8Array, string]> = [
  ...['GET ', 'HEAD ', 'POST ', 'PUT ', 'DELETE ', 'CONNECT ', 'OPTIONS ', 'TRACE ', 'PATCH ', 'PRI * HTTP/2'].map(
    (m) => [Buffer.from(m, 'latin1'), `looks like plain HTTP (a request starting "${m.trim()}")`] as const,
  ),
  [Buffer.from('PROXY ', 'latin1'), 'looks like a PROXY protocol v1 header, which must be read before the ClientHello'],
  [Buffer.from('\r\n\r\n\0\r\nQUIT\n', 'latin1'), 'looks like a PROXY protocol v2 header, which must be read before the ClientHello'],
];

const MORE: { readonly status: 'more' } = Object.freeze({ status: 'more' });

function hex(n: number, width = 2): string {
  return `0x${n.toString(16).padStart(width, '0')}`;
}

function extName(type: number): string {
  const name = EXTENSION_NAMES.get(type);
  return name === undefined ? `extension ${hex(type, 4)}` : `${name} extension`;
}

// ---------------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------------

/**
 * The name Node and OpenSSL give a protocol version (as `tlsSocket.getProtocol()` reports it).
 *
 * @param version - a 16-bit ProtocolVersion, e.g. from {@link ClientHello.supportedVersions}.
 * @returns `SSLv3`, `TLSv1`, `TLSv1.1`, `TLSv1.2` or `TLSv1.3`; `undefined` for anything else
 *   (GREASE, drafts, DTLS).
 */
export function tlsVersionName(version: number): string | undefined {
  return VERSION_NAMES[version];
}

/**
 * The IANA name of a common cipher suite, for logs.
 *
 * @param suite - a 16-bit cipher suite value, e.g. from {@link ClientHello.cipherSuites}.
 * @returns e.g. `TLS_AES_128_GCM_SHA256`; `undefined` for suites outside a small built-in table.
 */
export function cipherSuiteName(suite: number): string | undefined {
  return CIPHER_SUITE_NAMES[suite];
}

/**
 * Whether a 16-bit value is a GREASE value (RFC 8701: 0x0a0a, 0x1a1a, ... 0xfafa), which clients
 * sprinkle into their lists so that servers keep ignoring what they do not know.
 *
 * @param value - a cipher suite, extension type, group, version or signature scheme.
 */
export function isGreaseValue(value: number): boolean {
  return (value & 0x0f0f) === 0x0a0a && value >> 8 === (value & 0xff);
}

// ---------------------------------------------------------------------------------------------
// Records
// ---------------------------------------------------------------------------------------------

/**
 * Parse a TLS ClientHello from the start of `bytes`, the raw bytes of a connection.
 *
 * Meant to be called again with everything buffered so far each time more data arrives: returns
 * `{ status: 'more' }` while `bytes` is a valid prefix, and throws {@link ClientHelloError} as soon
 * as the bytes seen cannot begin a ClientHello. Plain text is recognised from the first byte; a
 * record header with a bad version, length or content type as soon as its bytes arrive; the
 * handshake type and length as soon as theirs do. The hello body is parsed once complete.
 *
 * The hello may be fragmented over several handshake records, split anywhere; it must end with a
 * record (RFC 8446 section 5.1), so `length` counts whole records and nothing after them is read.
 * `bytes` is never modified.
 *
 * @param bytes - data received so far, starting at the first byte of the connection.
 * @param opts - parsing limits.
 * @returns the hello and the length of the records carrying it, or a request for more bytes.
 * @throws {ClientHelloError} the bytes are not (the start of) a valid ClientHello.
 * @throws {BadArgumentError} `bytes` is not a Uint8Array, or `opts.maxLength` is not an integer
 *   of at least {@link CLIENT_HELLO_MIN_LENGTH}.
 */
export function parseClientHello(bytes: Uint8Array, opts?: ParseClientHelloOptions): ClientHelloResult {
  if (!(bytes instanceof Uint8Array)) throw new BadArgumentError('bytes must be a Uint8Array');
  const maxLength = opts?.maxLength ?? CLIENT_HELLO_DEFAULT_MAX_LENGTH;
  if (!(Number.isSafeInteger(maxLength) && maxLength >= CLIENT_HELLO_MIN_LENGTH)) {
    throw new BadArgumentError(`maxLength must be an integer of at least ${CLIENT_HELLO_MIN_LENGTH}, got ${String(maxLength)}`);
  }
  const len = bytes.length;
  if (len === 0) return MORE;
  if (bytes[0] !== CT_HANDSHAKE) rejectFirstByte(bytes);

  // Where each record's payload sits in the input and in the handshake message, to reassemble
  // fragments and to report body errors at their input offset.
  const segInput: number[] = [];
  const segMsg: number[] = [];
  let pos = 0; // current record header
  let msgSoFar = 0; // handshake bytes carried by the records before the current one
  let head = 0; // handshake header bytes seen (type, then 24-bit length)
  let bodyLen = 0;
  let lenAt = 0; // input offset of the handshake length, for errors about it
  let total = -1; // handshake message length, header included, once known

  for (;;) {
    if (pos >= len) return MORE;
    if (pos > 0 && bytes[pos] !== CT_HANDSHAKE) {
      const t = bytes[pos]!;
      fail('bad_record', `record of content type ${t}${ctName(t)} inside the ClientHello (RFC 8446 forbids interleaving)`, pos);
    }
    if (pos + 1 < len && bytes[pos + 1] !== 3) {
      fail('bad_record', `record version ${hex(bytes[pos + 1]!)}.. is not TLS (expected 0x03..)`, pos + 1);
    }
    if (pos + RECORD_HEADER > len) return MORE;
    const rlen = (bytes[pos + 3]! << 8) | bytes[pos + 4]!;
    if (rlen > TLS_MAX_FRAGMENT_LENGTH) {
      fail('record_overflow', `record length ${rlen} exceeds the ${TLS_MAX_FRAGMENT_LENGTH}-byte limit`, pos + 3);
    }
    if (rlen === 0) fail('bad_record', 'empty handshake record (RFC 8446 forbids zero-length handshake fragments)', pos + 3);
    const start = pos + RECORD_HEADER;
    const end = start + rlen;
    if (end > maxLength) fail('too_large', `the ClientHello's records run past the ${maxLength}-byte limit`, pos + 3);
    segInput.push(start);
    segMsg.push(msgSoFar);

    const avail = end < len ? end : len;
    for (let i = start; head < HANDSHAKE_HEADER && i < avail; i++, head++) {
      const b = bytes[i]!;
      if (head === 0) {
        if (b !== HT_CLIENT_HELLO) {
          const name = HANDSHAKE_TYPE_NAMES[b];
          fail('not_client_hello', `handshake message type ${b}${name ? ` (${name})` : ''}, not a ClientHello (1)`, i);
        }
      } else {
        if (head === 1) lenAt = i;
        bodyLen = (bodyLen << 8) | b;
      }
    }
    if (total === -1 && head === HANDSHAKE_HEADER) {
      if (bodyLen < MIN_BODY) fail('bad_length', `ClientHello length ${bodyLen} is below the ${MIN_BODY}-byte minimum`, lenAt);
      total = HANDSHAKE_HEADER + bodyLen;
    }
    if (total !== -1) {
      const carried = msgSoFar + rlen;
      // The fewest bytes the rest can take is in full records; fail now rather than buffer it.
      const rest = total - carried;
      if (rest > 0 && end + rest + RECORD_HEADER * Math.ceil(rest / TLS_MAX_FRAGMENT_LENGTH) > maxLength) {
        fail('too_large', `a ClientHello of ${total} bytes cannot fit in ${maxLength} bytes of records`, lenAt);
      }
      if (rest < 0) {
        fail('bad_record', `record length ${rlen} runs ${-rest} bytes past the end of the ClientHello`, pos + 3);
      }
      if (end > len) return MORE;
      if (rest === 0) return { status: 'done', hello: parseBody(bytes, segInput, segMsg, total), length: end };
    } else if (end > len) {
      return MORE;
    }
    msgSoFar += rlen;
    pos = end;
  }
}

function ctName(t: number): string {
  const name = CONTENT_TYPE_NAMES[t];
  return name === undefined ? '' : ` (${name})`;
}

/** Explain a first byte that is not a handshake record's, as precisely as the bytes allow. */
function rejectFirstByte(bytes: Uint8Array): never {
  const first = bytes[0]!;
  const ct = CONTENT_TYPE_NAMES[first];
  if (ct !== undefined) {
    fail('not_client_hello', `a TLS ${ct} record (content type ${first}) where a handshake record was expected`, 0);
  }
  for (const [sig, hint] of TEXT_HINTS) {
    const n = Math.min(bytes.length, sig.length);
    let i = 0;
    while (i < n && bytes[i] === sig[i]) i++;
    if (i === n) fail('not_tls', `${hint}, not TLS`, 0);
  }
  if (first === 0x80) fail('not_tls', 'looks like an SSL 2.0-compatible ClientHello, which is not supported', 0);
  if ((first >= 0x20 && first < 0x7f) || first === 0x09 || first === 0x0a || first === 0x0d) {
    fail('not_tls', `looks like plain text (first byte ${hex(first)}), not TLS`, 0);
  }
  return fail('not_tls', `first byte ${hex(first)} is not a TLS handshake record (content type 22)`, 0);
}

// ---------------------------------------------------------------------------------------------
// The ClientHello body
// ---------------------------------------------------------------------------------------------

type Fail = (reason: ClientHelloErrorReason, message: string, at: number) => never;

/** Parse the complete handshake message; `total` includes its 4-byte header. */
function parseBody(bytes: Uint8Array, segInput: number[], segMsg: number[], total: number): ClientHello {
  let m: Buffer;
  if (segInput.length === 1) {
    // One record: read it in place.
    m = Buffer.from(bytes.buffer, bytes.byteOffset + segInput[0]!, total);
  } else {
    // A private buffer rather than a pool slice, so the views handed out share memory with nothing else.
    m = Buffer.allocUnsafeSlow(total);
    for (let k = 0; k < segInput.length; k++) {
      const from = segMsg[k]!;
      const to = k + 1 < segMsg.length ? segMsg[k + 1]! : total;
      m.set(bytes.subarray(segInput[k]!, segInput[k]! + (to - from)), from);
    }
  }
  // Message offsets become input offsets only when something is wrong.
  const bad: Fail = (reason, message, at) => {
    let k = segMsg.length - 1;
    while (k > 0 && segMsg[k]! > at) k--;
    return fail(reason, message, segInput[k]! + (at - segMsg[k]!));
  };
  return readHello(m, bad);
}

function u16(m: Uint8Array, i: number): number {
  return (m[i]! << 8) | m[i + 1]!;
}

function readHello(m: Buffer, bad: Fail): ClientHello {
  const end = m.length;
  let p = HANDSHAKE_HEADER;
  // The fixed fields fit: the message is at least MIN_BODY long.
  const legacyVersion = u16(m, p);
  if (m[p] !== 3) bad('bad_version', `legacy_version ${hex(legacyVersion, 4)} is not TLS (expected 0x03..)`, p);
  p += 2;
  const random = m.subarray(p, p + 32);
  p += 32;

  const sidLen = m[p]!;
  if (sidLen > 32) bad('bad_length', `legacy_session_id of ${sidLen} bytes (at most 32)`, p);
  if (p + 1 + sidLen > end) bad('truncated', `legacy_session_id of ${sidLen} bytes runs past the message`, p);
  const sessionId = m.subarray(p + 1, p + 1 + sidLen);
  p += 1 + sidLen;

  // Running out of message is the handshake length's fault: point at it.
  if (end - p < 2) bad('truncated', 'the message ends before cipher_suites', 1);
  const csLen = u16(m, p);
  if (csLen < 2 || (csLen & 1) !== 0) bad('bad_length', `cipher_suites length ${csLen} (must be even and at least 2)`, p);
  if (p + 2 + csLen > end) bad('truncated', `cipher_suites of ${csLen} bytes run past the message`, p);
  const cipherSuites = readU16s(m, p + 2, p + 2 + csLen);
  p += 2 + csLen;

  if (end - p < 1) bad('truncated', 'the message ends before legacy_compression_methods', 1);
  const cmLen = m[p]!;
  if (cmLen === 0) bad('bad_length', 'empty legacy_compression_methods (at least 1 byte)', p);
  if (p + 1 + cmLen > end) bad('truncated', `legacy_compression_methods of ${cmLen} bytes run past the message`, p);
  const compressionMethods = readU8s(m, p + 1, p + 1 + cmLen);
  p += 1 + cmLen;

  const hello: ClientHello = {
    legacyVersion,
    random,
    sessionId,
    cipherSuites,
    compressionMethods,
    extensions: [],
    // Every field is set up front so that all hellos share one object shape.
    serverName: undefined,
    alpnProtocols: [],
    supportedVersions: [],
    signatureAlgorithms: [],
    signatureAlgorithmsCert: [],
    supportedGroups: [],
    keyShareGroups: [],
    ecPointFormats: [],
    pskKeyExchangeModes: [],
    hasPreSharedKey: false,
    hasEarlyData: false,
    statusRequest: false,
    sessionTicket: undefined,
  };
  // Pre-TLS 1.0 clients may end the hello here, without an extensions block.
  if (p === end) return hello;
  if (end - p < 2) bad('bad_length', '1 byte after legacy_compression_methods, too few for an extensions length', p);
  const extLen = u16(m, p);
  const extEnd = p + 2 + extLen;
  if (extEnd > end) bad('truncated', `extensions block of ${extLen} bytes runs ${extEnd - end} bytes past the message`, p);
  if (extEnd < end) bad('bad_length', `${end - extEnd} bytes after the extensions block`, extEnd);
  readExtensions(m, p + 2, extEnd, hello, bad);
  return hello;
}

// Plain loops: Array.from over a subarray costs more than the rest of a typical parse.
function readU8s(m: Uint8Array, start: number, end: number): number[] {
  const out = new Array<number>(end - start);
  for (let i = start; i < end; i++) out[i - start] = m[i]!;
  return out;
}

function readU16s(m: Uint8Array, start: number, end: number): number[] {
  const out = new Array<number>((end - start) >> 1);
  for (let i = start, k = 0; i < end; i += 2, k++) out[k] = (m[i]! << 8) | m[i + 1]!;
  return out;
}

function readExtensions(m: Buffer, start: number, end: number, hello: ClientHello, bad: Fail): void {
  const seen = new Set<number>();
  for (let p = start; p < end; ) {
    if (end - p < 4) bad('bad_extension', `${end - p} bytes left in the extensions block, too few for an extension header`, p);
    const type = u16(m, p);
    const ds = p + 4;
    const de = ds + u16(m, p + 2);
    if (de > end) bad('bad_extension', `${extName(type)} of ${de - ds} bytes runs ${de - end} bytes past the extensions block`, p);
    // RFC 8446 section 4.2: no two extensions of the same type.
    if (seen.has(type)) bad('duplicate_extension', `second ${extName(type)}`, p);
    seen.add(type);
    hello.extensions.push({ type, data: m.subarray(ds, de) });
    switch (type) {
      case EXT_SERVER_NAME:
        hello.serverName = readServerName(m, ds, de, bad);
        break;
      case EXT_STATUS_REQUEST:
        hello.statusRequest = true;
        break;
      case EXT_SUPPORTED_GROUPS:
        hello.supportedGroups = readU16List(m, ds, de, type, bad);
        break;
      case EXT_EC_POINT_FORMATS:
        hello.ecPointFormats = readU8List(m, ds, de, type, bad);
        break;
      case EXT_SIGNATURE_ALGORITHMS:
        hello.signatureAlgorithms = readU16List(m, ds, de, type, bad);
        break;
      case EXT_SIGNATURE_ALGORITHMS_CERT:
        hello.signatureAlgorithmsCert = readU16List(m, ds, de, type, bad);
        break;
      case EXT_ALPN:
        hello.alpnProtocols = readAlpn(m, ds, de, bad);
        break;
      case EXT_SESSION_TICKET:
        hello.sessionTicket = m.subarray(ds, de);
        break;
      case EXT_PRE_SHARED_KEY:
        // Its binders cover everything before them (RFC 8446 section 4.2.11).
        if (de !== end) bad('bad_extension', 'pre_shared_key is not the last extension', p);
        hello.hasPreSharedKey = true;
        break;
      case EXT_EARLY_DATA:
        if (de !== ds) bad('bad_extension', `early_data extension carries ${de - ds} bytes (must be empty in a ClientHello)`, p);
        hello.hasEarlyData = true;
        break;
      case EXT_SUPPORTED_VERSIONS: {
        // The client form: a 1-byte length, then 2-byte versions.
        const n = checkVector(m, ds, de, 1, type, bad);
        if (n < 2 || (n & 1) !== 0) bad('bad_extension', `supported_versions list of ${n} bytes (must be even and at least 2)`, ds);
        hello.supportedVersions = readU16s(m, ds + 1, de);
        break;
      }
      case EXT_PSK_KEY_EXCHANGE_MODES:
        hello.pskKeyExchangeModes = readU8List(m, ds, de, type, bad);
        break;
      case EXT_KEY_SHARE:
        hello.keyShareGroups = readKeyShare(m, ds, de, bad);
        break;
      default:
        break;
    }
    p = de;
  }
}

/** Check that a vector with a `width`-byte length fills the extension exactly; returns its length. */
function checkVector(m: Uint8Array, ds: number, de: number, width: 1 | 2, type: number, bad: Fail): number {
  if (de - ds < width) bad('bad_extension', `${extName(type)} of ${de - ds} bytes is too short for its list length`, ds);
  const n = width === 1 ? m[ds]! : u16(m, ds);
  if (ds + width + n !== de) {
    bad('bad_extension', `${extName(type)} list length ${n} does not match the ${de - ds - width} bytes that follow it`, ds);
  }
  return n;
}

function readU16List(m: Uint8Array, ds: number, de: number, type: number, bad: Fail): number[] {
  const n = checkVector(m, ds, de, 2, type, bad);
  if (n < 2 || (n & 1) !== 0) bad('bad_extension', `${extName(type)} list of ${n} bytes (must be even and at least 2)`, ds);
  return readU16s(m, ds + 2, de);
}

function readU8List(m: Uint8Array, ds: number, de: number, type: number, bad: Fail): number[] {
  const n = checkVector(m, ds, de, 1, type, bad);
  if (n === 0) bad('bad_extension', `empty ${extName(type)} list`, ds);
  return readU8s(m, ds + 1, de);
}

function readAlpn(m: Buffer, ds: number, de: number, bad: Fail): string[] {
  const n = checkVector(m, ds, de, 2, EXT_ALPN, bad);
  if (n === 0) bad('bad_extension', 'empty ALPN protocol list', ds);
  const out: string[] = [];
  for (let p = ds + 2; p < de; ) {
    const plen = m[p]!;
    if (plen === 0) bad('bad_extension', 'empty ALPN protocol name', p);
    const pe = p + 1 + plen;
    if (pe > de) bad('bad_extension', `ALPN protocol name of ${plen} bytes runs ${pe - de} bytes past the list`, p);
    // latin1 maps protocol-id bytes one to one, as Node does for `alpnProtocol`.
    out.push(m.toString('latin1', p + 1, pe));
    p = pe;
  }
  return out;
}

function readKeyShare(m: Uint8Array, ds: number, de: number, bad: Fail): number[] {
  checkVector(m, ds, de, 2, EXT_KEY_SHARE, bad);
  const groups: number[] = [];
  for (let p = ds + 2; p < de; ) {
    if (de - p < 4) bad('bad_extension', `${de - p} bytes left in key_share, too few for an entry header`, p);
    const klen = u16(m, p + 2);
    if (klen === 0) bad('bad_extension', `empty key_exchange for group ${hex(u16(m, p), 4)}`, p);
    const pe = p + 4 + klen;
    if (pe > de) bad('bad_extension', `key share of ${klen} bytes runs ${pe - de} bytes past the list`, p);
    groups.push(u16(m, p));
    p = pe;
  }
  return groups;
}

/**
 * RFC 6066 allows one name per type and defines only host_name; like OpenSSL, accept exactly one
 * host_name entry, since a list of unknown name types could not be framed anyway.
 */
function readServerName(m: Buffer, ds: number, de: number, bad: Fail): string {
  const n = checkVector(m, ds, de, 2, EXT_SERVER_NAME, bad);
  if (n === 0) bad('bad_extension', 'empty server_name list', ds);
  const p = ds + 2;
  if (de - p < 3) bad('bad_extension', `server_name entry of ${de - p} bytes is too short for its header`, p);
  const nameType = m[p]!;
  if (nameType !== 0) bad('bad_server_name', `server name type ${nameType} (only host_name, 0, is defined)`, p);
  const hs = p + 3;
  const he = hs + u16(m, p + 1);
  if (he > de) bad('bad_extension', `host name of ${he - hs} bytes runs ${he - de} bytes past the server_name list`, p);
  if (he < de) bad('bad_server_name', 'more than one server name', he);
  checkHostName(m, hs, he, bad);
  return m.toString('latin1', hs, he);
}

const DOT = 0x2e;

/**
 * A host name made of non-empty labels of letters, digits, `-` and `_` separated by dots, a
 * trailing dot allowed. Looser than DNS (no label length rule, `_` allowed) because clients send
 * such names and a mismatch only means no certificate matches; strict enough to be safe to log
 * and to use as a key.
 */
function checkHostName(m: Uint8Array, start: number, end: number, bad: Fail): void {
  const n = end - start;
  if (n === 0) bad('bad_server_name', 'empty host name', start);
  if (n > 255) bad('bad_server_name', `host name of ${n} bytes (at most 255)`, start);
  let prev = DOT; // so a leading dot counts as an empty label
  for (let i = start; i < end; i++) {
    const c = m[i]!;
    if (c === DOT) {
      if (prev === DOT) bad('bad_server_name', 'empty label in the host name', i);
    } else if (
      !((c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x5f)
    ) {
      bad('bad_server_name', c === 0 ? 'NUL byte in the host name' : `byte ${hex(c)} is not allowed in a host name`, i);
    }
    prev = c;
  }
}
