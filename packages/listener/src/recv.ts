/**
 * Passive reads (`gen_tcp:recv/3`) on top of a paused Node stream, shared by the TCP and TLS
 * transports.
 *
 * The stream stays in paused mode throughout: data is taken with `readable.read(n)`, which
 * returns `null` without consuming anything until `n` bytes are buffered. So a read that
 * times out leaves every byte in place for the next `recv` or for a later switch to flowing mode.
 */

import type { Readable } from 'node:stream';
import { BadArgumentError, SocketError } from './errors.js';

/**
 * Largest `length` a single {@link recv} accepts: 1 GiB, the most a Node stream lets its
 * high-water mark grow to (reading more at once throws inside the stream).
 */
export const MAX_RECV_LENGTH = 0x4000_0000;

/** Longest delay a Node timer supports; a longer `timeoutMs` waits without a deadline. */
const MAX_TIMER_MS = 0x7fff_ffff;

/** One waiting `recv`. At most one per stream, so listeners can be shared module-level functions. */
interface PendingRecv {
  readonly length: number;
  readonly resolve: (data: Buffer) => void;
  readonly reject: (err: Error) => void;
  /** The stream was explicitly paused (`readableFlowing === false`) and must be again afterwards. */
  readonly repause: boolean;
  timer: NodeJS.Timeout | undefined;
}

const pending = new WeakMap<Readable, PendingRecv>();

/**
 * Read from a paused stream: exactly `length` bytes, or, when `length` is 0, whatever is buffered
 * (waiting for the next chunk if nothing is).
 *
 * Rejects with {@link SocketError}: `'timeout'` after `timeoutMs` (nothing is consumed, so the data
 * is there for the next read), `'closed'` when the stream ends or is destroyed before enough bytes
 * arrived (the partial bytes stay buffered: a later `recv(s, 0, ...)` still returns them), and
 * `'error'` when the stream errors, when another `recv` is already waiting on the same stream, or
 * when the stream is flowing (`recv` is for passive sockets, as in Ranch).
 *
 * `timeoutMs` is a non-negative number of milliseconds; `Infinity` (or anything above the largest
 * Node timer, about 24.8 days) means no deadline; `0` fails at once unless the data is already
 * buffered. A `length` above the stream's high-water mark raises that mark, up to
 * {@link MAX_RECV_LENGTH}. The stream must carry bytes (no `setEncoding`, no object mode).
 *
 * Afterwards the stream is as it was: still paused if it was paused, so it can be read again,
 * resumed, or given `'data'` listeners. Do not combine with `'data'` listeners on a paused stream:
 * every `read()` also emits `'data'`.
 */
export function recv(stream: Readable, length: number, timeoutMs: number): Promise<Buffer> {
  if (!Number.isSafeInteger(length) || length < 0 || length > MAX_RECV_LENGTH) {
    return Promise.reject(
      new BadArgumentError(`recv: length must be an integer between 0 and ${MAX_RECV_LENGTH}, got ${String(length)}`),
    );
  }
  if (typeof timeoutMs !== 'number' || !(timeoutMs >= 0)) {
    return Promise.reject(
      new BadArgumentError(`recv: timeoutMs must be a non-negative number or Infinity, got ${String(timeoutMs)}`),
    );
  }
  if (stream.readableObjectMode || stream.readableEncoding !== null) {
    return Promise.reject(new BadArgumentError('recv: the stream must deliver bytes (no encoding, no object mode)'));
  }
  if (pending.has(stream)) {
    return Promise.reject(new SocketError('error', 'recv: another recv is already waiting on this socket'));
  }
  if (stream.readableFlowing === true) {
    return Promise.reject(new SocketError('error', 'recv: the socket is in active mode; set it passive first'));
  }

  const data = take(stream, length);
  if (data !== null) {
    return data === false ? Promise.reject(closedError(stream)) : Promise.resolve(data);
  }
  if (stream.destroyed || stream.readableEnded) return Promise.reject(closedError(stream));
  if (timeoutMs === 0) return Promise.reject(timeoutError());

  return new Promise<Buffer>((resolve, reject) => {
    const p: PendingRecv = { length, resolve, reject, repause: stream.readableFlowing === false, timer: undefined };
    pending.set(stream, p);
    stream.on('readable', onReadable);
    stream.on('end', onEnd);
    stream.on('close', onEnd);
    stream.on('error', onError);
    if (timeoutMs <= MAX_TIMER_MS) p.timer = setTimeout(onTimeout, timeoutMs, stream);
  });
}

/**
 * Take `length` bytes (0: all buffered) if they are there. `null`: not yet, wait. `false`: the
 * stream hit its end with fewer bytes; they were put back.
 */
function take(stream: Readable, length: number): Buffer | null | false {
  if (length === 0) return stream.read() as Buffer | null;
  // read(n) raises the high-water mark to n if needed, asks the source for more, and returns
  // null without consuming anything until n bytes are buffered, except at end of stream where
  // it returns what is left: that remainder is pushed back so it is not lost.
  const data = stream.read(length) as Buffer | null;
  if (data === null || data.length === length) return data;
  stream.unshift(data);
  return false;
}

function finish(stream: Readable, p: PendingRecv): void {
  pending.delete(stream);
  if (p.timer !== undefined) clearTimeout(p.timer);
  stream.removeListener('readable', onReadable);
  stream.removeListener('end', onEnd);
  stream.removeListener('close', onEnd);
  stream.removeListener('error', onError);
  // Removing the last 'readable' listener makes the stream reset `readableFlowing` from false
  // to null on the next tick (so a later 'data' listener would start the flow on its own).
  // Pause again right after that, so an explicitly paused socket stays paused.
  if (p.repause) process.nextTick(repause, stream);
}

function repause(stream: Readable): void {
  if (stream.readableFlowing !== false && !stream.destroyed) stream.pause();
}

function onReadable(this: Readable): void {
  const p = pending.get(this);
  if (p === undefined) return;
  const data = take(this, p.length);
  if (data === null) return;
  finish(this, p);
  if (data === false) p.reject(closedError(this));
  else p.resolve(data);
}

function onEnd(this: Readable): void {
  const p = pending.get(this);
  if (p === undefined) return;
  finish(this, p);
  p.reject(closedError(this));
}

function onError(this: Readable, err: Error): void {
  const p = pending.get(this);
  if (p === undefined) return;
  finish(this, p);
  p.reject(new SocketError('error', `recv: ${err.message}`, err));
}

function onTimeout(stream: Readable): void {
  const p = pending.get(stream);
  if (p === undefined) return;
  finish(stream, p);
  p.reject(timeoutError());
}

function closedError(stream: Readable): SocketError {
  return new SocketError('closed', 'recv: the socket closed', stream.errored ?? undefined);
}

function timeoutError(): SocketError {
  return new SocketError('timeout', 'recv: timed out');
}
