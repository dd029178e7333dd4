/**
 * What the load generators' WebSocket clients on a bare socket share (ws-load.ts's raw client,
 * ws-deflate-load.ts's): the upgrade written as one string and its answer gathered, reads into
 * one buffer per process, a fixed non-zero mask key, and the close.
 */

import { createHash, randomBytes } from 'node:crypto';
import * as net from 'node:net';

export const HOST = '127.0.0.1';
export const CLOSE_TIMEOUT_MS = 5_000;

/** Every raw connection of a process reads into this one buffer: each read is handled before the next. */
const READ_BUFFER = Buffer.allocUnsafe(256 * 1024);

/** The `Sec-WebSocket-Accept` a server must answer to `key`. */
export function acceptFor(key: string): string {
  return createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
}

/** A random mask key with no zero byte, so that no server can skip unmasking. */
export function nonZeroMaskKey(): Buffer {
  for (;;) {
    const key = randomBytes(4);
    if (key[0]! !== 0 && key[1]! !== 0 && key[2]! !== 0 && key[3]! !== 0) return key;
  }
}

/** A masked close frame with code 1000. */
export function closeFrame(maskKey: Buffer): Buffer {
  return Buffer.from([0x88, 0x82, ...maskKey, 0x03 ^ maskKey[0]!, 0xe8 ^ maskKey[1]!]);
}

/**
 * Connect to 127.0.0.1:`port` and, once connected, write the upgrade request with `key` (and
 * `extraHeaders`, each ending in CRLF). Every read goes to `onRead`: `n` bytes at the start of the
 * shared buffer, valid only until it returns.
 */
export function connectUpgrade(port: number, key: string, extraHeaders: string, onRead: (n: number, buf: Buffer) => void): net.Socket {
  const socket = net.connect({
    port,
    host: HOST,
    noDelay: true,
    onread: {
      buffer: READ_BUFFER,
      callback: (n: number, buf: Uint8Array): boolean => {
        onRead(n, buf as Buffer);
        return true;
      },
    },
  });
  socket.once('connect', () => {
    socket.write(`GET / HTTP/1.1\r\nHost: ${HOST}:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n`
      + `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n${extraHeaders}\r\n`, 'latin1');
  });
  return socket;
}

/** Gathers the upgrade answer's head across reads. */
export class UpgradeHead {
  #text = '';

  /** The head (without its blank line) and the bytes after it, as latin1, once complete. */
  push(buf: Buffer, n: number): { head: string; rest: string } | undefined {
    this.#text += buf.toString('latin1', 0, n);
    const end = this.#text.indexOf('\r\n\r\n');
    if (end === -1) return undefined;
    const head = this.#text.slice(0, end);
    const rest = this.#text.slice(end + 4);
    this.#text = '';
    return { head, rest };
  }
}

/** Send `frame` (a close frame), end, and wait for the socket to close, destroying it after 5 s. */
export function closeSocket(socket: net.Socket, frame: Buffer): Promise<void> {
  return new Promise((resolve) => {
    if (socket.closed) {
      resolve();
      return;
    }
    const timer = setTimeout(() => socket.destroy(), CLOSE_TIMEOUT_MS);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
    socket.write(frame);
    socket.end();
  });
}
