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
