/**
 * Errors raised by the WebSocket codec and sessions. Every one is a {@link CorralError} with a
 * stable `code`; the ones a peer can provoke are {@link ProtocolViolation}s, which also carry the
 * close code (RFC 6455 §7.4.1) to fail the connection with.
 */

import { CorralError } from '@corral/listener';

/** The `code` strings of {@link WebSocketError}s raised by the codec. */
export const WsErrorCode = {
  /** RSV1 set without a negotiated extension, on a control frame or a continuation; or RSV2/RSV3 set. (1002) */
  ReservedBits: 'ERR_CORRAL_WS_RESERVED_BITS',
  /** Opcode 3-7 or 11-15. (1002) */
  UnknownOpcode: 'ERR_CORRAL_WS_UNKNOWN_OPCODE',
  /** A control frame with FIN clear or a payload over 125 bytes, or a close frame with a 1-byte payload. (1002) */
  BadControlFrame: 'ERR_CORRAL_WS_BAD_CONTROL_FRAME',
  /** A masked frame where unmasked ones are required, or the reverse. (1002) */
  BadMask: 'ERR_CORRAL_WS_BAD_MASK',
  /** A 64-bit payload length with its most significant bit set. (1002) */
  BadLength: 'ERR_CORRAL_WS_BAD_LENGTH',
  /** A continuation frame outside a fragmented message, or a new data frame inside one. (1002) */
  BadFragmentation: 'ERR_CORRAL_WS_BAD_FRAGMENTATION',
  /** A close frame whose payload is not a valid status code followed by a UTF-8 reason. (1002 or 1007) */
  BadClosePayload: 'ERR_CORRAL_WS_BAD_CLOSE_PAYLOAD',
  /** Text (a message or a close reason) that is not valid UTF-8. (1007) */
  InvalidUtf8: 'ERR_CORRAL_WS_INVALID_UTF8',
  /** A frame announcing a payload larger than the configured maximum. (1009) */
  FrameTooBig: 'ERR_CORRAL_WS_FRAME_TOO_BIG',
  /** A message whose frames add up to more than the configured maximum. (1009) */
  MessageTooBig: 'ERR_CORRAL_WS_MESSAGE_TOO_BIG',
  /** The peer broke a local policy (e.g. too many fragments). (1008) */
  PolicyViolation: 'ERR_CORRAL_WS_POLICY_VIOLATION',
  /** A close code that may not be sent (outside 1000-1003, 1007-1011, 3000-4999). Local misuse. */
  BadCloseCode: 'ERR_CORRAL_WS_BAD_CLOSE_CODE',
  /** A close reason longer than 123 bytes once encoded as UTF-8. Local misuse. */
  CloseReasonTooLong: 'ERR_CORRAL_WS_CLOSE_REASON_TOO_LONG',
  /** A frame that cannot be encoded (bad opcode, control payload over 125 bytes, ...). Local misuse. */
  BadFrame: 'ERR_CORRAL_WS_BAD_FRAME',
} as const;

export type WsErrorCode = (typeof WsErrorCode)[keyof typeof WsErrorCode];

/** Base class of every WebSocket error. */
export class WebSocketError extends CorralError {
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/**
 * The peer broke RFC 6455 (or a local limit): the connection must be failed with `closeCode`
 * (1002 protocol error, 1007 invalid payload data, 1008 policy violation, 1009 message too big).
 */
export class ProtocolViolation extends WebSocketError {
  /** The close code to send when failing the connection. */
  readonly closeCode: number;

  constructor(code: string, closeCode: number, message: string) {
    super(code, message);
    this.closeCode = closeCode;
  }
}
