/**
 * @corral/websocket: WebSockets for Corral listeners and any node:http server, in the manner of
 * cowboy_websocket and erlang_ws.
 * @packageDocumentation
 */

export { websocketProtocol, type WebSocketProtocolOptions } from './protocol.js';
export {
  handleUpgrade, checkUpgradeRequest, acceptKey, refuseUpgrade,
  type UpgradeOptions, type UpgradeContext, type UpgradeRefusal,
} from './upgrade.js';
export { Session, type SessionState, type SessionSocket, type SessionInit, type SessionLogger } from './session.js';
export type {
  WebSocketHandler, InFrame, OutFrame, HandlerResult, CallbackResult, UpgradeRequest, InitAccept,
  InitReject, TerminateReason, PartialRequest,
} from './handler.js';
export { SESSION_DEFAULTS, resolveSessionOptions, type SessionOptions, type SlowReaderPolicy } from './options.js';
export {
  connect, WebSocketClient, WebSocketConnectError, WebSocketClosedError,
  type ClientOptions, type ClientState, type ConnectFailure,
} from './client.js';
export type { UpgradeResponse } from './handler.js';
export {
  FrameParser, Opcode, encodeFrame, encodeMessage, frameHeader,
  type FrameParserOptions, type EncodeFrameOptions, type EncodeMessageOptions,
} from './frame.js';
export {
  CloseCode, parseClosePayload, encodeClosePayload, normalizeCloseCode, isValidWireCloseCode,
  type ClosePayload,
} from './close-codes.js';
export { Utf8Validator, isValidUtf8 } from './utf8.js';
export {
  PerMessageDeflate, ZlibLimiter, ExtensionNegotiationError, DeflateErrorCode, DEFLATE_DEFAULTS, PERMESSAGE_DEFLATE,
  negotiateServer, offerClient, acceptClientResponse, parseExtensionHeader, normalizeDeflateOptions, resolveCompressOption,
  type DeflateOptions, type ResolvedDeflateOptions, type NegotiatedParams, type ServerNegotiation, type ExtensionElement,
  type CompressOptions,
} from './deflate.js';
export { WebSocketError, ProtocolViolation, WsErrorCode } from './errors.js';
export { mask, unmask, randomMaskKey } from './mask.js';
