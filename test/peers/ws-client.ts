/**
 * Shared by the WebSocket interop tests: the `ws` package as a client peer (a connection whose
 * messages are read in order with `next()`), bounded waits, and a record of why each server-side
 * connection ended.
 */

import type * as http from 'node:http';
import type { Socket } from 'node:net';
import WebSocket from 'ws';
import type { TerminateReason } from '@corral/websocket';

/** Bound on any single wait for the peer: a message, an event, a close. */
export const WAIT_MS = 10_000;

/** `promise`, or a rejection naming `what` after `ms`. */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

export interface Message {
  data: Buffer;
  isBinary: boolean;
}

export interface WsClient {
  ws: WebSocket;
  /** The 101 response. */
  response: http.IncomingMessage;
  /** The connection's socket: its byte counts tell what crossed the wire. */
  socket: Socket;
  /** The next message, in order. */
  next(): Promise<Message>;
  /** Send, then read the next message. */
  echo(data: string | Buffer, binary?: boolean): Promise<Message>;
  /** The next event of `name` ('ping', 'pong'), with its payload. */
  nextEvent(name: 'ping' | 'pong'): Promise<Buffer>;
  /** Resolves with the close code and reason the client saw. */
  closed(): Promise<{ code: number; reason: string }>;
}

/** Open a `ws` client; resolves once it is open. */
export async function wsConnect(url: string, protocols: string[] = [], opts: WebSocket.ClientOptions = {}): Promise<WsClient> {
  const ws = new WebSocket(url, protocols, { handshakeTimeout: WAIT_MS, ...opts });
  const queue: Message[] = [];
  const waiting: { resolve: (m: Message) => void; reject: (e: Error) => void }[] = [];
  let closedWith: Error | undefined;
  ws.on('message', (data: Buffer, isBinary: boolean) => {
    const message = { data, isBinary };
    const w = waiting.shift();
    if (w !== undefined) w.resolve(message);
    else queue.push(message);
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) => {
    ws.once('close', (code: number, reason: Buffer) => {
      closedWith = new Error(`the connection closed (${code} ${reason.toString()}) while a message was awaited`);
      for (const w of waiting.splice(0)) w.reject(closedWith);
      resolve({ code, reason: reason.toString('utf8') });
    });
  });
  let response: http.IncomingMessage | undefined;
  ws.once('upgrade', (res: http.IncomingMessage) => {
    response = res;
  });
  await within(
    new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    }),
    WAIT_MS,
    `open of ${url}`,
  ).catch((err: unknown) => {
    ws.terminate();
    throw err;
  });
  ws.on('error', () => {}); // reported through 'close'
  const client: WsClient = {
    ws,
    response: response!,
    socket: response!.socket as Socket,
    next() {
      const m = queue.shift();
      if (m !== undefined) return Promise.resolve(m);
      if (closedWith !== undefined) return Promise.reject(closedWith);
      return within(new Promise((resolve, reject) => waiting.push({ resolve, reject })), WAIT_MS, 'message');
    },
    echo(data, binary = typeof data !== 'string') {
      ws.send(data, { binary });
      return client.next();
    },
    nextEvent(name) {
      return within(new Promise((resolve) => ws.once(name, (data: Buffer) => resolve(data))), WAIT_MS, `${name} event`);
    },
    closed: () => within(closed, WAIT_MS, 'close event'),
  };
  return client;
}

/** Why each connection ended, as the handler's `terminate` was told, by request target. */
export class Terminations {
  readonly #reasons = new Map<string, TerminateReason>();
  readonly #waiters = new Map<string, ((reason: TerminateReason) => void)[]>();

  record(url: string, reason: TerminateReason): void {
    this.#reasons.set(url, reason);
    for (const resolve of this.#waiters.get(url) ?? []) resolve(reason);
    this.#waiters.delete(url);
  }

  /** Resolves once the connection to `url` has ended. */
  of(url: string): Promise<TerminateReason> {
    const known = this.#reasons.get(url);
    if (known !== undefined) return Promise.resolve(known);
    const ended = new Promise<TerminateReason>((resolve) => {
      this.#waiters.set(url, [...(this.#waiters.get(url) ?? []), resolve]);
    });
    return within(ended, WAIT_MS, `terminate call for ${url}`);
  }
}
