/**
 * A raw-socket WebSocket server for client tests. It reads the upgrade request by hand, answers
 * it however a test asks (a correct 101, a wrong accept, an unrequested subprotocol, silence),
 * then writes hand-built frames and reads back the client's frames raw, masking keys included.
 * It trusts nothing of the codec under test: frames are built with raw-client.ts's `frame()`.
 */

import { createHash } from 'node:crypto';
import { once } from 'node:events';
import * as net from 'node:net';
import { OP, type RawFrame } from './raw-client.js';

/** The upgrade request as received: lower-case header names, repeated ones joined with ", ". */
export interface RawRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  /** Header names as the client spelt them, in order. */
  rawNames: string[];
  key: string;
}

/** A frame from the client, with its masking key. */
export interface ClientFrame extends RawFrame {
  maskKey: Buffer | undefined;
}

/** The Sec-WebSocket-Accept for `key` (RFC 6455 §4.2.2), computed here, not by the code under test. */
export function acceptFor(key: string): string {
  return createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
}

/** A 101 answer to `req` with these extra header lines (`null` leaves out the accept header). */
export function switching(req: RawRequest, extra: Record<string, string> = {}, accept: string | null = acceptFor(req.key)): string {
  const lines = ['HTTP/1.1 101 Switching Protocols', 'Upgrade: websocket', 'Connection: Upgrade'];
  if (accept !== null) lines.push(`Sec-WebSocket-Accept: ${accept}`);
  for (const [name, value] of Object.entries(extra)) lines.push(`${name}: ${value}`);
  return `${lines.join('\r\n')}\r\n\r\n`;
}

const HEAD_END = Buffer.from('\r\n\r\n');

/** One accepted connection, seen from the server. */
export class RawPeer {
  readonly socket: net.Socket;
  /** Resolves with the upgrade request once its head has arrived. */
  readonly request: Promise<RawRequest>;
  /** The client sent its FIN. */
  ended = false;
  /** Resolves when the client's FIN arrives (never, if the connection is reset). */
  readonly fin: Promise<void>;
  isClosed = false;
  readonly closed: Promise<void>;
  /** Every byte received after the request head. */
  readonly received: Buffer[] = [];

  #buffer: Buffer = Buffer.alloc(0);
  #inFrames = false;
  #frames: ClientFrame[] = [];
  #waiters: { resolve: (f: ClientFrame) => void; reject: (e: Error) => void }[] = [];
  #resolveRequest!: (r: RawRequest) => void;
  #rejectRequest!: (e: Error) => void;

  constructor(socket: net.Socket) {
    this.socket = socket;
    socket.setNoDelay(true);
    socket.on('error', () => {});
    this.request = new Promise((resolve, reject) => {
      this.#resolveRequest = resolve;
      this.#rejectRequest = reject;
    });
    this.request.catch(() => {});
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    this.fin = new Promise((resolve) => {
      socket.on('end', () => {
        this.ended = true;
        resolve();
      });
    });
    this.closed = new Promise((resolve) => {
      socket.once('close', () => {
        this.isClosed = true;
        const err = new Error('the client connection closed');
        this.#rejectRequest(err);
        for (const w of this.#waiters.splice(0)) w.reject(err);
        resolve();
      });
    });
  }

  /** Write bytes; resolves once handed to the kernel. */
  write(bytes: Buffer | string): Promise<void> {
    return new Promise((resolve) => {
      if (!this.socket.writable) {
        resolve();
        return;
      }
      this.socket.write(bytes, () => resolve());
    });
  }

  /** Answer the request with a correct 101 (plus `extra` headers); resolves with the request. */
  async accept(extra: Record<string, string> = {}): Promise<RawRequest> {
    const req = await this.request;
    await this.write(switching(req, extra));
    return req;
  }

  /** The next frame from the client; rejects if the connection closes first. */
  next(): Promise<ClientFrame> {
    const f = this.#frames.shift();
    if (f !== undefined) return Promise.resolve(f);
    if (this.isClosed) return Promise.reject(new Error('the client connection closed, no frame'));
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  /** The next frame that is not a pong (a test's own data frames and close). */
  async nextNonPong(): Promise<ClientFrame> {
    for (;;) {
      const f = await this.next();
      if (f.opcode !== OP.PONG) return f;
    }
  }

  end(): void {
    this.socket.end();
  }

  destroy(): void {
    this.socket.destroy();
  }

  #onData(chunk: Buffer): void {
    this.#buffer = this.#buffer.length === 0 ? chunk : Buffer.concat([this.#buffer, chunk]);
    if (!this.#inFrames) {
      const end = this.#buffer.indexOf(HEAD_END);
      if (end < 0) return;
      const head = this.#buffer.subarray(0, end).toString('latin1');
      this.#buffer = this.#buffer.subarray(end + 4);
      this.#inFrames = true;
      const [line = '', ...lines] = head.split('\r\n');
      const [method = '', path = ''] = line.split(' ');
      const headers: Record<string, string> = {};
      const rawNames: string[] = [];
      for (const l of lines) {
        const colon = l.indexOf(':');
        const name = l.slice(0, colon).trim();
        const value = l.slice(colon + 1).trim();
        rawNames.push(name);
        const lower = name.toLowerCase();
        headers[lower] = headers[lower] === undefined ? value : `${headers[lower]}, ${value}`;
      }
      this.#resolveRequest({ method, path, headers, rawNames, key: headers['sec-websocket-key'] ?? '' });
    }
    if (this.#buffer.length > 0) this.received.push(this.#buffer);
    this.#parseFrames();
  }

  #parseFrames(): void {
    for (;;) {
      const b = this.#buffer;
      if (b.length < 2) return;
      const masked = (b[1]! & 0x80) !== 0;
      const len7 = b[1]! & 0x7f;
      const extra = len7 === 126 ? 2 : len7 === 127 ? 8 : 0;
      const headLen = 2 + extra + (masked ? 4 : 0);
      if (b.length < headLen) return;
      let length = len7;
      if (len7 === 126) length = b.readUInt16BE(2);
      else if (len7 === 127) length = Number(b.readBigUInt64BE(2));
      if (b.length < headLen + length) return;
      const maskKey = masked ? Buffer.from(b.subarray(2 + extra, headLen)) : undefined;
      const payload = Buffer.from(b.subarray(headLen, headLen + length));
      if (maskKey !== undefined) for (let i = 0; i < payload.length; i++) payload[i]! ^= maskKey[i & 3]!;
      this.#buffer = b.subarray(headLen + length);
      const f: ClientFrame = { fin: (b[0]! & 0x80) !== 0, rsv: (b[0]! >> 4) & 7, opcode: b[0]! & 0x0f, masked, payload, maskKey };
      if (f.opcode === OP.CLOSE) {
        if (payload.length >= 2) f.code = payload.readUInt16BE(0);
        f.reason = payload.subarray(2).toString('utf8');
      }
      const w = this.#waiters.shift();
      if (w !== undefined) w.resolve(f);
      else this.#frames.push(f);
    }
  }
}

/** A TCP server handing out each connection as a {@link RawPeer}. */
export class RawServer {
  readonly server: net.Server;
  readonly peers = new Set<RawPeer>();
  #pending: RawPeer[] = [];
  #waiters: ((p: RawPeer) => void)[] = [];

  private constructor(server: net.Server) {
    this.server = server;
    server.on('connection', (socket: net.Socket) => {
      const peer = new RawPeer(socket);
      this.peers.add(peer);
      void peer.closed.then(() => this.peers.delete(peer));
      const w = this.#waiters.shift();
      if (w !== undefined) w(peer);
      else this.#pending.push(peer);
    });
  }

  static async start(host = '127.0.0.1'): Promise<RawServer> {
    const server = net.createServer();
    server.listen(0, host);
    await once(server, 'listening');
    return new RawServer(server);
  }

  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  url(path = '/'): string {
    return `ws://127.0.0.1:${this.port}${path}`;
  }

  /** The next connection, in the order they arrived. */
  next(): Promise<RawPeer> {
    const p = this.#pending.shift();
    if (p !== undefined) return Promise.resolve(p);
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  async close(): Promise<void> {
    for (const p of this.peers) p.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
