/**
 * Reading a framed prefix (a PROXY header, a TLS ClientHello) from a paused socket, and giving
 * back what is not consumed, so the protocol or the TLS engine sees those bytes untouched.
 */

import type * as net from 'node:net';
import { SocketError } from './errors.js';

const MAX_TIMER_MS = 0x7fff_ffff;

/**
 * What a decoder says of the bytes buffered so far: `undefined` for "need more", or the value
 * and how many bytes it used. It throws when the bytes can never decode.
 */
export type PrefixDecoder<T> = (buffered: Buffer) => { value: T; consumed: number } | undefined;

/**
 * Read from a paused socket until `decode` has its value, within `timeoutMs`, segment by
 * segment. Bytes after `consumed` are pushed back into the socket; on a failure every byte read
 * is. Rejects with what `decode` threw, or {@link SocketError} `'timeout'` / `'closed'`.
 */
export function readPrefix<T>(socket: net.Socket, timeoutMs: number, what: string, decode: PrefixDecoder<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    let buffered: Buffer | undefined;
    let timer: NodeJS.Timeout | undefined;

    // Everything, the pushing back included, happens inside one 'readable' callback: a push back
    // from a later promise job could come after the stream has emitted 'end', and be refused.
    const finish = (err: unknown, value?: T, consumed = 0): void => {
      if (timer !== undefined) clearTimeout(timer);
      socket.off('readable', onReadable);
      socket.off('end', onEnd);
      socket.off('close', onEnd);
      if (buffered !== undefined && consumed < buffered.length && !socket.destroyed && !socket.readableEnded) {
        socket.unshift(consumed === 0 ? buffered : buffered.subarray(consumed));
      }
      // Dropping the 'readable' listener lets the stream flow on its own; keep it paused for its owner.
      process.nextTick(repause, socket);
      if (err === undefined) resolve(value as T);
      else reject(err);
    };
    const onReadable = (): void => {
      let chunk: Buffer | null;
      while ((chunk = socket.read() as Buffer | null) !== null) {
        buffered = buffered === undefined ? chunk : Buffer.concat([buffered, chunk]);
      }
      if (buffered === undefined) return;
      let result;
      try {
        result = decode(buffered);
      } catch (err) {
        finish(err);
        return;
      }
      if (result !== undefined) finish(undefined, result.value, result.consumed);
    };
    const onEnd = (): void => finish(new SocketError('closed', `the connection closed before a complete ${what}`));

    if (socket.destroyed || socket.readableEnded) {
      onEnd();
      return;
    }
    if (timeoutMs !== Infinity && timeoutMs <= MAX_TIMER_MS) {
      timer = setTimeout(() => finish(new SocketError('timeout', `no complete ${what} within ${timeoutMs} ms`)), timeoutMs);
    }
    socket.on('readable', onReadable);
    socket.once('end', onEnd);
    socket.once('close', onEnd);
  });
}

function repause(socket: net.Socket): void {
  if (socket.readableFlowing !== true) socket.pause();
}
