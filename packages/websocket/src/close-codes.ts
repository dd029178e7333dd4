/**
 * Close codes (RFC 6455 §7.4) and close frame payloads (§5.5.1).
 *
 * The codes accepted on the wire, and the ones a session may send, are 1000-1003, 1007-1011 and
 * 3000-4999, as in erlang_ws and cowboy. The IANA registry's 1012 (Service Restart), 1013 (Try
 * Again Later) and 1014 (Bad Gateway) are outside that set: a peer sending them fails the
 * connection with 1002, and {@link normalizeCloseCode} turns a user's `close(1013)` into 1002.
 * The encoder itself accepts them ({@link isEncodableCloseCode}), for a session that chooses to
 * send one on its own account. 1004, 1005, 1006 and 1015 are reserved and never appear on the wire.
 */

import { ProtocolViolation, WebSocketError, WsErrorCode } from './errors.js';
import { isValidUtf8 } from './utf8.js';

/** Close codes by name. */
export const CloseCode = {
  Normal: 1000,
  GoingAway: 1001,
  ProtocolError: 1002,
  Unsupported: 1003,
  /** Reserved: the close frame had no status code. Never sent. */
  NoStatus: 1005,
  /** Reserved: the connection closed without a close frame. Never sent. */
  Abnormal: 1006,
  InvalidPayload: 1007,
  PolicyViolation: 1008,
  MessageTooBig: 1009,
  MandatoryExtension: 1010,
  InternalError: 1011,
  /** Registered by IANA, but outside the set accepted here: sending it sends 1002. */
  TryAgainLater: 1013,
} as const;

export type CloseCode = (typeof CloseCode)[keyof typeof CloseCode];

/** Largest close reason in bytes: a control frame payload is at most 125 bytes, 2 of them the code. */
export const MAX_CLOSE_REASON_BYTES = 123;

/** True if a peer may send `code` in a close frame: 1000-1003, 1007-1011, 3000-4999. */
export function isValidWireCloseCode(code: number): boolean {
  return (
    Number.isInteger(code) &&
    ((code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1011) || (code >= 3000 && code <= 4999))
  );
}

/** True if a session may send `code`: the same set as {@link isValidWireCloseCode}. */
export function isValidSendCloseCode(code: number): boolean {
  return isValidWireCloseCode(code);
}

/**
 * True if `code` can appear in a close frame at all: 1000-1003, 1007-1014 (the registered codes
 * less the reserved 1004-1006) and 3000-4999. What {@link encodeClosePayload} accepts.
 */
export function isEncodableCloseCode(code: number): boolean {
  return (
    Number.isInteger(code) &&
    ((code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999))
  );
}

/** `code` if it may be sent, otherwise 1002 (protocol error). */
export function normalizeCloseCode(code: number): number {
  return isValidWireCloseCode(code) ? code : CloseCode.ProtocolError;
}

/** The parts of a received close frame. `code` is undefined for an empty payload (1005 semantics). */
export interface ClosePayload {
  code: number | undefined;
  reason: string;
}

/**
 * Decode a received close frame payload. Throws a {@link ProtocolViolation}: 1002 for a 1-byte
 * payload, a code outside {@link isValidWireCloseCode} or a payload over 125 bytes; 1007 for a
 * reason that is not valid UTF-8.
 */
export function parseClosePayload(payload: Uint8Array): ClosePayload {
  const len = payload.length;
  if (len === 0) return { code: undefined, reason: '' };
  if (len === 1) {
    throw new ProtocolViolation(WsErrorCode.BadClosePayload, 1002, 'Close frame payload of 1 byte: a status code takes 2');
  }
  if (len > 125) {
    throw new ProtocolViolation(WsErrorCode.BadControlFrame, 1002, `Close frame payload of ${len} bytes (at most 125)`);
  }
  const code = (payload[0]! << 8) | payload[1]!;
  if (!isValidWireCloseCode(code)) {
    throw new ProtocolViolation(WsErrorCode.BadClosePayload, 1002, `Invalid close code ${code}`);
  }
  if (len === 2) return { code, reason: '' };
  const reason = payload.subarray(2);
  if (!isValidUtf8(reason)) {
    throw new ProtocolViolation(WsErrorCode.InvalidUtf8, 1007, 'Close reason is not valid UTF-8');
  }
  return { code, reason: Buffer.from(reason.buffer, reason.byteOffset, reason.length).toString('utf8') };
}

/**
 * Encode a close frame payload: the code (big-endian) followed by the reason in UTF-8. With no
 * code the payload is empty, and the reason must be too.
 *
 * Throws a {@link WebSocketError} rather than sending something other than asked: `BadCloseCode`
 * for a code outside {@link isEncodableCloseCode} (reserved or unassigned; a user's code goes
 * through {@link normalizeCloseCode} first), `CloseReasonTooLong` for a reason over 123 bytes
 * (use {@link truncateCloseReason} first).
 */
export function encodeClosePayload(code?: number, reason = ''): Buffer {
  if (code === undefined) {
    if (reason !== '') throw new WebSocketError(WsErrorCode.BadCloseCode, 'A close reason needs a close code');
    return Buffer.alloc(0);
  }
  if (!isEncodableCloseCode(code)) throw new WebSocketError(WsErrorCode.BadCloseCode, `Close code ${code} may not be sent`);
  const bytes = Buffer.byteLength(reason, 'utf8');
  if (bytes > MAX_CLOSE_REASON_BYTES) {
    throw new WebSocketError(
      WsErrorCode.CloseReasonTooLong,
      `Close reason of ${bytes} bytes (at most ${MAX_CLOSE_REASON_BYTES} in UTF-8)`,
    );
  }
  const out = Buffer.allocUnsafe(2 + bytes);
  out[0] = code >>> 8;
  out[1] = code & 0xff;
  if (bytes > 0) out.write(reason, 2, 'utf8');
  return out;
}

/** `reason` cut to at most `maxBytes` (default 123) bytes of UTF-8, on a code point boundary. */
export function truncateCloseReason(reason: string, maxBytes = MAX_CLOSE_REASON_BYTES): string {
  if (reason.length * 3 <= maxBytes || Buffer.byteLength(reason, 'utf8') <= maxBytes) return reason;
  const bytes = Buffer.from(reason, 'utf8');
  let end = maxBytes;
  // Back up to the lead byte of the sequence that would be cut.
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  return bytes.toString('utf8', 0, end);
}
