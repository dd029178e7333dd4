/**
 * What every transport's `connect` shares: a timeout and an AbortSignal, checked before the
 * attempt and enforced during it, and a failed attempt's socket destroyed. Transports differ
 * only in how they open the socket and which event says it is ready.
 */

import type * as net from 'node:net';
import { BadArgumentError, SocketError } from './errors.js';

/** Longest delay a Node timer takes; a longer timeout is no timeout. */
const MAX_TIMER_MS = 0x7fff_ffff;

/** Why `timeout` or `signal` cannot limit a connect, or undefined when both can. */
export function checkConnectLimits(timeout: unknown, signal: unknown): BadArgumentError | undefined {
  if (typeof timeout !== 'number' || !(timeout >= 0)) {
    return new BadArgumentError(`connect: timeout must be a non-negative number or Infinity, got ${String(timeout)}`);
  }
  if (signal !== undefined && !(signal instanceof AbortSignal)) return new BadArgumentError('connect: signal must be an AbortSignal');
  return undefined;
}

/**
 * Open a socket with `open` (paused at once, so not a byte is read until its owner asks) and
 * resolve with it when it emits `ready`, after `onReady` set it up. Rejects with a SocketError
 * ('timeout', 'cancelled' or 'error', naming `where`) and destroys the socket otherwise.
 */
export function attemptConnect<T extends net.Socket>(
  where: string,
  timeout: number,
  signal: AbortSignal | undefined,
  open: () => T,
  ready: 'connect' | 'secureConnect',
  onReady: (socket: T) => void,
): Promise<T> {
  if (signal?.aborted) return Promise.reject(cancelled(where, signal));
  // A deadline of 0 has passed before the attempt could start.
  if (timeout === 0) return Promise.reject(timedOut(where));
  return new Promise<T>((resolve, reject) => {
    const socket = open();
    socket.pause();
    let timer: NodeJS.Timeout | undefined;
    const settle = (): void => {
      if (timer !== undefined) clearTimeout(timer);
      socket.off(ready, onConnect);
      socket.off('error', onError);
      signal?.removeEventListener('abort', onAbort);
    };
    const fail = (err: Error): void => {
      settle();
      // Errors the destroyed socket may still emit have no one to go to.
      socket.on('error', ignore);
      socket.destroy();
      reject(err);
    };
    const onConnect = (): void => {
      settle();
      onReady(socket);
      resolve(socket);
    };
    const onError = (err: Error): void => fail(new SocketError('error', `connect to ${where}: ${err.message}`, err));
    const onAbort = (): void => fail(cancelled(where, signal!));
    socket.once(ready, onConnect);
    socket.once('error', onError);
    signal?.addEventListener('abort', onAbort, { once: true });
    if (timeout <= MAX_TIMER_MS) timer = setTimeout(() => fail(timedOut(where)), timeout);
  });
}

function cancelled(where: string, signal: AbortSignal): SocketError {
  return new SocketError('cancelled', `connect to ${where}: aborted`, signal.reason);
}

function timedOut(where: string): SocketError {
  return new SocketError('timeout', `connect to ${where}: timed out`);
}

function ignore(): void {}
