/**
 * @corral/listener: named TCP/TLS listeners with connection limits, suspend/resume and graceful
 * shutdown, in the manner of Erlang's Ranch.
 * @packageDocumentation
 */

export {
  startListener, startEmbeddedListener, stopListener, suspendListener, resumeListener, restartAcceptors,
  getListener, getStatus, getAddr, getPort, getMaxConnections, setMaxConnections,
  getTransportOptions, setTransportOptions, getProtocolOptions, setProtocolOptions,
  procs, info, waitForConnections,
  type EmbeddedOptions,
} from './registry.js';
export { Listener, type ListenerInfo, type ListenerStatus, type CountOperator } from './listener.js';
export type { AcceptorWorkerInfo } from './acceptor.js';
export type { ModuleSpecifier } from './modules.js';
export {
  Connection, handshake, handshakeContinue, handshakeCancel, removeConnection, recvProxyHeader,
  type HandshakeResult,
} from './connection.js';
export { ShutdownRequest, type ListenerMetrics } from './supervisor.js';
export type {
  ListenerOptions, NumConnectionsAlarm, ShutdownOption, OverflowMode, AnyTransport, SocketOptionsOf,
  RestartIntensity,
} from './options.js';
export type { Logger } from './logger.js';
export type {
  Ref, SocketAddress, ListenSocket, AcceptHandler, HandshakeContinue, ActiveMode, SocketSettings,
  SocketStats, SendfileOptions, ShutdownHow, ConnectOptions, Transport, SocketOf,
  Protocol, ProtocolFunction, ProtocolModule, ConnectionOf, NetTransport,
} from './types.js';
export {
  CorralError, BadArgumentError, BadOptionError, BadTransportError, BadProtocolError,
  ListenerNotFoundError, ListenerExistsError, ListenerStateError, ListenError, HandshakeError,
  SocketError, NotSupportedError, RestartIntensityError, WorkerExitError, type SocketFailure, type PeerInfo,
  type WorkerExit,
} from './errors.js';
export { tcp, type TcpSocketOptions } from './tcp.js';
export {
  parseProxyHeader, buildProxyHeader, proxyHeaderToConnectionInfo, ProxyHeaderError,
  PROXY_V1_MAX_LENGTH, PROXY_V2_MAX_LENGTH, PROXY_V2_SIGNATURE,
  type ProxyHeader, type ProxyHeaderInput, type ProxyHeaderLocal, type ProxyHeaderUnknown,
  type ProxyHeaderInet, type ProxyHeaderUnix, type ProxyTlvs, type ProxyTlvsInput, type ProxySsl,
  type ProxySslInput, type ProxySslClient, type ProxyRawTlv, type ProxyRawTlvInput, type ProxyFamily,
  type ProxyTransport, type ProxyInetAddress, type ProxyUnixAddress, type ProxyConnectionInfo,
  type ProxyHeaderErrorReason, type ParseResult, type ParseProxyHeaderOptions, type BuildProxyHeaderOptions,
} from './proxy-header.js';
export { crc32c } from './crc32c.js';
export {
  readProxyHeader, UntrustedProxyError, type ProxyHeaderMode, type ProxyHeaderOptions,
} from './proxy-receive.js';
export {
  tlsTransport, tlsTransport as tls, tlsAlertRecord,
  type TlsSocketOptions, type TlsHandshakeOptions, type TlsContextOptions, type TlsConnectionOptions,
  type TlsHello, type TlsAlert,
} from './tls.js';
export {
  parseClientHello, ClientHelloError, tlsVersionName, cipherSuiteName, isGreaseValue,
  type ClientHello, type ClientHelloResult, type ClientHelloExtension, type ClientHelloErrorReason,
  type ParseClientHelloOptions,
} from './client-hello.js';
