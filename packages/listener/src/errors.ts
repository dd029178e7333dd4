/**
 * Typed errors. Every error Corral throws or rejects with is a {@link CorralError}
 * with a stable `code`, so callers can branch without parsing messages.
 */

import type { Ref } from './types.js';

/** Base class of every error raised by Corral. */
export class CorralError extends Error {
  /** Stable machine-readable code, e.g. `ERR_CORRAL_BAD_OPTION`. */
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** An argument of the wrong type or out of range (Erlang's `badarg`). */
export class BadArgumentError extends CorralError {
  constructor(message: string) {
    super('ERR_CORRAL_BAD_ARGUMENT', message);
  }
}

/** A listener or transport option that is unknown or has an invalid value. */
export class BadOptionError extends CorralError {
  /** The option's path, e.g. `maxConnections` or `socketOpts.port`. */
  readonly option: string;

  constructor(option: string, message: string) {
    super('ERR_CORRAL_BAD_OPTION', `Invalid option ${option}: ${message}`);
    this.option = option;
  }
}

/**
 * The transport given to `startListener` does not implement the transport interface, or its
 * module cannot be loaded, or it cannot run in worker processes.
 */
export class BadTransportError extends CorralError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_CORRAL_BAD_TRANSPORT', message, options);
  }
}

/**
 * The protocol given to `startListener` is neither a function nor an object with `start`, or its
 * module cannot be loaded or exports neither.
 */
export class BadProtocolError extends CorralError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_CORRAL_BAD_PROTOCOL', message, options);
  }
}

function describeRef(ref: Ref): string {
  return typeof ref === 'symbol' ? ref.toString() : JSON.stringify(ref);
}

/** No listener is registered under this ref. */
export class ListenerNotFoundError extends CorralError {
  readonly ref: Ref;

  constructor(ref: Ref) {
    super('ERR_CORRAL_LISTENER_NOT_FOUND', `No listener named ${describeRef(ref)}`);
    this.ref = ref;
  }
}

/** A listener is already registered under this ref. */
export class ListenerExistsError extends CorralError {
  readonly ref: Ref;

  constructor(ref: Ref) {
    super('ERR_CORRAL_LISTENER_EXISTS', `A listener named ${describeRef(ref)} is already started`);
    this.ref = ref;
  }
}

/** The operation does not apply to the listener in its current state (e.g. it was stopped). */
export class ListenerStateError extends CorralError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_CORRAL_LISTENER_STATE', message, options);
  }
}

/**
 * Opening the listen socket failed. `reason` is the lower-case errno name
 * (`eaddrinuse`, `eacces`, ...) as Ranch reports it, or `error` when the cause is not a system error.
 */
export class ListenError extends CorralError {
  readonly reason: string;
  readonly address: string;

  constructor(address: string, cause: unknown) {
    const errno = (cause as NodeJS.ErrnoException | undefined)?.code;
    const reason = typeof errno === 'string' ? errno.toLowerCase() : 'error';
    const detail = cause instanceof Error ? cause.message : String(cause);
    super('ERR_CORRAL_LISTEN', `Cannot listen on ${address}: ${detail}`, { cause });
    this.reason = reason;
    this.address = address;
  }
}

/** Why a handshake (or a read with a deadline) failed. */
export type SocketFailure = 'timeout' | 'closed' | 'error' | 'cancelled';

/** Peer address as known when the error happened. */
export interface PeerInfo {
  address?: string | undefined;
  port?: number | undefined;
}

/**
 * The transport handshake failed: timed out, the peer closed, or the transport refused it.
 * Ranch's `{shutdown, {Reason, PeerInfo}}`: a normal way for a connection to end, not a crash.
 */
export class HandshakeError extends CorralError {
  readonly reason: SocketFailure;
  readonly peer: PeerInfo;

  constructor(reason: SocketFailure, peer: PeerInfo, detail?: string, cause?: unknown) {
    const who = peer.address === undefined ? 'unknown peer' : `${peer.address}:${peer.port ?? ''}`;
    super('ERR_CORRAL_HANDSHAKE', `Handshake with ${who} failed (${reason})${detail ? `: ${detail}` : ''}`, { cause });
    this.reason = reason;
    this.peer = peer;
  }
}

/** A passive read or other socket operation failed because the socket closed or a deadline passed. */
export class SocketError extends CorralError {
  readonly reason: SocketFailure;

  constructor(reason: SocketFailure, message: string, cause?: unknown) {
    super(reason === 'timeout' ? 'ERR_CORRAL_TIMEOUT' : 'ERR_CORRAL_SOCKET', message, { cause });
    this.reason = reason;
  }
}

/** The transport does not support this operation (e.g. `handshakeContinue` on TCP). */
export class NotSupportedError extends CorralError {
  constructor(message: string) {
    super('ERR_CORRAL_NOT_SUPPORTED', message);
  }
}

/** How a worker process ended. */
export interface WorkerExit {
  pid: number;
  /** Exit code, or null when a signal ended it. */
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** An acceptor worker process exited before it was ready: while starting, or while a rolling restart started it. */
export class WorkerExitError extends CorralError {
  readonly exit: WorkerExit;

  constructor(message: string, exit: WorkerExit) {
    super('ERR_CORRAL_WORKER_EXIT', message);
    this.exit = exit;
  }
}

/**
 * The acceptor worker processes of a listener crashed more often than its `restartIntensity`
 * allows (OTP's restart intensity): the listener stopped.
 */
export class RestartIntensityError extends CorralError {
  readonly ref: Ref;
  readonly maxRestarts: number;
  readonly periodMs: number;
  /** The exit that went over the limit. */
  readonly lastExit: WorkerExit;

  constructor(ref: Ref, maxRestarts: number, periodMs: number, lastExit: WorkerExit) {
    const how = lastExit.signal !== null ? `signal ${lastExit.signal}` : `code ${lastExit.code}`;
    super(
      'ERR_CORRAL_RESTART_INTENSITY',
      `Listener ${describeRef(ref)} stopped: its acceptor workers crashed more than ${maxRestarts} time(s) within ${periodMs} ms (the last, pid ${lastExit.pid}, exited with ${how})`,
    );
    this.ref = ref;
    this.maxRestarts = maxRestarts;
    this.periodMs = periodMs;
    this.lastExit = lastExit;
  }
}
