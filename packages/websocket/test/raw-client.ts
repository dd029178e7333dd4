/**
 * A raw-socket WebSocket client for conformance tests. It writes the upgrade request by hand,
 * parses the response, then sends hand-built frames (any flags, opcodes, lengths, masked or
 * not) split at chosen byte boundaries and across separate TCP writes, and reads back raw
 * frames with a small incremental reader. It trusts nothing of the codec under test.
 */

import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import * as net from 'node:net';

/** Opcodes, spelled out here rather than imported from the code under test. */
export const OP = { CONT: 0, TEXT: 1, BINARY: 2, CLOSE: 8, PING: 9, PONG: 10 } as const;

/** RSV bits as a 3-bit number, RSV1 the highest (4), RSV3 the lowest (1). */
export const RSV1 = 4;
export const RSV2 = 2;
export const RSV3 = 1;

export interface FrameSpec {
  opcode: number;
  payload?: Buffer | string;
  /** Default true. */
  fin?: boolean;
  /** RSV1..RSV3 as a 3-bit number (RSV1 = 4). Default 0. */
  rsv?: number;
  /** `true` (default): a random key; a Buffer: that key; `false`: no MASK bit. */
  mask?: boolean | Buffer;
  /** Length announced in the header, when it should differ from the payload's. */
  length?: number | bigint;
  /** Length encoding to use (default: the shortest). */
  lengthBits?: 7 | 16 | 64;
}

function toBytes(data: Buffer | string | undefined): Buffer {
  if (data === undefined) return Buffer.alloc(0);
  return typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
}

/** Build one frame exactly as described, masking the payload when asked. */
export function frame(spec: FrameSpec): Buffer {
  const payload = toBytes(spec.payload);
  const fin = spec.fin ?? true;
  const rsv = spec.rsv ?? 0;
  const key = spec.mask === false ? undefined : Buffer.isBuffer(spec.mask) ? spec.mask : randomBytes(4);
  const length = BigInt(spec.length ?? payload.length);
  const bits = spec.lengthBits ?? (length < 126n ? 7 : length < 65536n ? 16 : 64);
  const head: number[] = [(fin ? 0x80 : 0) | ((rsv & 7) << 4) | (spec.opcode & 0x0f)];
  const m = key ? 0x80 : 0;
  if (bits === 7) head.push(m | Number(length));
  else if (bits === 16) head.push(m | 126, Number(length >> 8n) & 0xff, Number(length) & 0xff);
  else {
    head.push(m | 127);
    for (let shift = 56n; shift >= 0n; shift -= 8n) head.push(Number((length >> shift) & 0xffn));
  }
  const out = Buffer.alloc(head.length + (key ? 4 : 0) + payload.length);
  Buffer.from(head).copy(out);
  let at = head.length;
  if (key) {
    key.copy(out, at);
    at += 4;
    for (let i = 0; i < payload.length; i++) out[at + i] = payload[i]! ^ key[i & 3]!;
  } else {
    payload.copy(out, at);
  }
  return out;
}

/** A close frame payload: the code big-endian, then the reason (bytes taken as given). */
export function closePayload(code?: number, reason: string | Buffer = ''): Buffer {
  if (code === undefined) return Buffer.alloc(0);
  const r = toBytes(reason);
  const out = Buffer.alloc(2 + r.length);
  out.writeUInt16BE(code, 0);
  r.copy(out, 2);
  return out;
}

export const text = (payload: Buffer | string, more: Omit<FrameSpec, 'opcode' | 'payload'> = {}): Buffer => frame({ opcode: OP.TEXT, payload, ...more });
export const binary = (payload: Buffer | string, more: Omit<FrameSpec, 'opcode' | 'payload'> = {}): Buffer => frame({ opcode: OP.BINARY, payload, ...more });
export const cont = (payload: Buffer | string, more: Omit<FrameSpec, 'opcode' | 'payload'> = {}): Buffer => frame({ opcode: OP.CONT, payload, ...more });
export const ping = (payload: Buffer | string = '', more: Omit<FrameSpec, 'opcode' | 'payload'> = {}): Buffer => frame({ opcode: OP.PING, payload, ...more });
export const pong = (payload: Buffer | string = '', more: Omit<FrameSpec, 'opcode' | 'payload'> = {}): Buffer => frame({ opcode: OP.PONG, payload, ...more });
export const close = (code?: number, reason: string | Buffer = '', more: Omit<FrameSpec, 'opcode' | 'payload'> = {}): Buffer =>
  frame({ opcode: OP.CLOSE, payload: closePayload(code, reason), ...more });

/** A frame as received. */
export interface RawFrame {
  fin: boolean;
  /** RSV1..RSV3 as a 3-bit number (RSV1 = 4). */
  rsv: number;
  opcode: number;
  masked: boolean;
  payload: Buffer;
  /** For a close frame: its code (absent when the payload is empty) and reason. */
  code?: number;
  reason?: string;
}

/** A parsed HTTP response head (and body, when it has a Content-Length). */
export interface HttpResponse {
  status: number;
  statusLine: string;
  /** Lower-case names; repeated headers joined with ", ". */
  headers: Record<string, string>;
  body: Buffer;
}

/** What goes into an upgrade request; `null` leaves a header out. */
export interface RequestSpec {
  method?: string;
  path?: string;
  httpVersion?: string;
  host?: string | null;
  upgrade?: string | null;
  connection?: string | null;
  key?: string | null;
  version?: string | null;
  protocols?: string | null;
  origin?: string | null;
  /** Further header lines, written as given. */
  headers?: Record<string, string>;
}

/** A fresh 16-byte key in base64. */
export function newKey(): string {
  return randomBytes(16).toString('base64');
}

/** The Sec-WebSocket-Accept a server must answer `key` with (RFC 6455 §4.2.2), computed independently. */
export function expectedAccept(key: string): string {
  return createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
}

/** The text of an upgrade request. */
export function upgradeRequest(spec: RequestSpec = {}): string {
  const lines = [`${spec.method ?? 'GET'} ${spec.path ?? '/'} HTTP/${spec.httpVersion ?? '1.1'}`];
  const add = (name: string, value: string | null | undefined, fallback?: string): void => {
    const v = value === undefined ? fallback : value;
    if (v !== null && v !== undefined) lines.push(`${name}: ${v}`);
  };
  add('Host', spec.host, '127.0.0.1');
  add('Upgrade', spec.upgrade, 'websocket');
  add('Connection', spec.connection, 'Upgrade');
  add('Sec-WebSocket-Key', spec.key, newKey());
  add('Sec-WebSocket-Version', spec.version, '13');
  add('Sec-WebSocket-Protocol', spec.protocols);
  add('Origin', spec.origin);
  for (const [name, value] of Object.entries(spec.headers ?? {})) lines.push(`${name}: ${value}`);
  return `${lines.join('\r\n')}\r\n\r\n`;
}

const HEAD_END = Buffer.from('\r\n\r\n');

/**
 * One raw connection. Bytes read first go to the HTTP response parser; after a 101 they go to
 * the frame reader. `closed` resolves when the TCP connection is closed; `peerEnded` tells
 * whether the server sent its FIN (closed the connection from its side).
 */
export class RawClient {
  readonly socket: net.Socket;
  /** The response to the request (the 101, or a refusal). */
  response: HttpResponse | undefined;
  /** The server half-closed (FIN received). */
  peerEnded = false;
  isClosed = false;
  readonly closed: Promise<void>;

  #mode: 'http' | 'body' | 'ws' = 'http';
  #chunks: Buffer[] = [];
  #length = 0;
  #frames: RawFrame[] = [];
  #frameWaiters: { resolve: (f: RawFrame) => void; reject: (e: Error) => void }[] = [];
  #responseWaiters: { resolve: (r: HttpResponse) => void; reject: (e: Error) => void }[] = [];
  #bodyLength: number | undefined;
  #chunked = false;
  #error: Error | undefined;

  constructor(socket: net.Socket) {
    this.socket = socket;
    socket.setNoDelay(true);
    socket.on('data', this.#onData);
    socket.on('end', () => {
      this.peerEnded = true;
    });
    socket.on('error', (err) => {
      this.#error = err;
    });
    this.closed = new Promise((resolve) => {
      socket.once('close', () => {
        this.isClosed = true;
        if (this.#mode === 'body' && this.response) this.#finishResponse(this.#take(this.#length));
        const err = new Error(`connection closed${this.#error ? ` (${this.#error.message})` : ''}`);
        for (const w of this.#frameWaiters.splice(0)) w.reject(err);
        for (const w of this.#responseWaiters.splice(0)) w.reject(err);
        resolve();
      });
    });
  }

  /** Connect and send `request` (and `after`, in the same write); resolves once the response head is parsed. */
  static async open(port: number, request: string | Buffer, after?: Buffer): Promise<RawClient> {
    const socket = net.connect(port, '127.0.0.1');
    const c = new RawClient(socket);
    await once(socket, 'connect');
    const req = typeof request === 'string' ? Buffer.from(request, 'latin1') : request;
    socket.write(after ? Buffer.concat([req, after]) : req);
    await c.waitResponse();
    return c;
  }

  /** Connect without a handshake, reading frames from the first byte (for a session on a bare socket). */
  static async raw(port: number): Promise<RawClient> {
    const socket = net.connect(port, '127.0.0.1');
    const c = new RawClient(socket);
    c.#mode = 'ws';
    await once(socket, 'connect');
    return c;
  }

  /** Complete an upgrade and check the 101 (status, Upgrade, Connection, Accept). */
  static async connect(port: number, spec: RequestSpec = {}, after?: Buffer): Promise<RawClient> {
    const key = spec.key ?? newKey();
    const c = await RawClient.open(port, upgradeRequest({ ...spec, key }), after);
    const r = c.response!;
    if (r.status !== 101) throw new Error(`expected 101, got ${r.statusLine}: ${r.body.toString()}`);
    if (r.headers.upgrade?.toLowerCase() !== 'websocket') throw new Error(`bad Upgrade header: ${r.headers.upgrade}`);
    if (!/\bupgrade\b/i.test(r.headers.connection ?? '')) throw new Error(`bad Connection header: ${r.headers.connection}`);
    if (r.headers['sec-websocket-accept'] !== expectedAccept(key)) throw new Error(`bad Sec-WebSocket-Accept: ${r.headers['sec-websocket-accept']}`);
    return c;
  }

  /** The response, once its head (and its Content-Length body, if any) arrived. */
  waitResponse(): Promise<HttpResponse> {
    if (this.response && this.#mode !== 'body') return Promise.resolve(this.response);
    if (this.isClosed) return this.response ? Promise.resolve(this.response) : Promise.reject(new Error('connection closed before a response'));
    return new Promise((resolve, reject) => this.#responseWaiters.push({ resolve, reject }));
  }

  /** Send another request on this (plain HTTP, keep-alive) connection and wait for its response. */
  async request(bytes: string | Buffer): Promise<HttpResponse> {
    this.response = undefined;
    await this.write(typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes);
    return this.waitResponse();
  }

  // ---- writing --------------------------------------------------------------------------------

  /** Write `bytes` in one write; resolves when Node handed them to the kernel (errors ignored: the peer may be gone). */
  write(bytes: Buffer | string): Promise<void> {
    return new Promise((resolve) => {
      if (this.socket.destroyed || !this.socket.writable) {
        resolve();
        return;
      }
      this.socket.write(bytes, () => resolve());
    });
  }

  /**
   * Write `bytes` as separate TCP writes: pieces of `sizes` bytes (a number: all pieces that
   * size; an array: those sizes in turn, repeated), each handed to the kernel before the next.
   */
  async writeChunks(bytes: Buffer, sizes: number | readonly number[]): Promise<void> {
    const list = typeof sizes === 'number' ? [sizes] : sizes;
    let i = 0;
    for (let at = 0; at < bytes.length;) {
      const n = Math.max(1, list[i++ % list.length]!);
      await this.write(bytes.subarray(at, at + n));
      at += n;
    }
  }

  /** Write each buffer as its own TCP write. */
  async writeEach(parts: readonly Buffer[]): Promise<void> {
    for (const p of parts) await this.write(p);
  }

  /** Send a masked close frame. */
  sendClose(code?: number, reason: string | Buffer = ''): Promise<void> {
    return this.write(close(code, reason));
  }

  /** Close our side (FIN). */
  end(): void {
    this.socket.end();
  }

  destroy(): void {
    this.socket.destroy();
  }

  // ---- reading --------------------------------------------------------------------------------

  /** The next frame from the server; rejects if the connection closes first. */
  next(): Promise<RawFrame> {
    const f = this.#frames.shift();
    if (f) return Promise.resolve(f);
    if (this.isClosed) return Promise.reject(new Error(`connection closed, no frame${this.#error ? ` (${this.#error.message})` : ''}`));
    return new Promise((resolve, reject) => this.#frameWaiters.push({ resolve, reject }));
  }

  /** Frames received and not yet taken with `next()`. */
  get pending(): readonly RawFrame[] {
    return this.#frames;
  }

  /** The next data message (frames up to FIN reassembled); a control frame in the way is an error. */
  async message(): Promise<{ opcode: number; payload: Buffer; frames: number }> {
    const first = await this.next();
    if (first.opcode !== OP.TEXT && first.opcode !== OP.BINARY) throw new Error(`expected a data frame, got ${describeFrame(first)}`);
    const parts = [first.payload];
    let last = first;
    while (!last.fin) {
      last = await this.next();
      if (last.opcode !== OP.CONT) throw new Error(`expected a continuation, got ${describeFrame(last)}`);
      parts.push(last.payload);
    }
    return { opcode: first.opcode, payload: Buffer.concat(parts), frames: parts.length };
  }

  #onData = (chunk: Buffer): void => {
    this.#chunks.push(chunk);
    this.#length += chunk.length;
    if (this.#mode === 'http') this.#parseHead();
    if (this.#mode === 'body') this.#parseBody();
    if (this.#mode === 'ws') this.#parseFrames();
  };

  #take(n: number): Buffer {
    if (n === 0) return Buffer.alloc(0);
    const all = this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks, this.#length);
    const out = all.subarray(0, n);
    this.#chunks = n < all.length ? [all.subarray(n)] : [];
    this.#length -= n;
    return out;
  }

  /** The first `n` buffered bytes, without consuming them (n must be buffered). */
  #peek(n: number): Buffer {
    if (n === 0) return Buffer.alloc(0);
    if (this.#chunks[0]!.length >= n) return this.#chunks[0]!.subarray(0, n);
    const all = Buffer.concat(this.#chunks, this.#length);
    this.#chunks = [all];
    return all.subarray(0, n);
  }

  #parseHead(): void {
    const all = Buffer.concat(this.#chunks, this.#length);
    this.#chunks = [all];
    const end = all.indexOf(HEAD_END);
    if (end < 0) return;
    const head = this.#take(end + 4).subarray(0, end).toString('latin1');
    const [statusLine = '', ...lines] = head.split('\r\n');
    const headers: Record<string, string> = {};
    for (const line of lines) {
      const colon = line.indexOf(':');
      const name = line.slice(0, colon).trim().toLowerCase();
      const value = line.slice(colon + 1).trim();
      headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
    }
    const status = Number(statusLine.split(' ')[1]);
    this.response = { status, statusLine, headers, body: Buffer.alloc(0) };
    if (status === 101) {
      this.#mode = 'ws';
      this.#resolveResponse();
      return;
    }
    this.#mode = 'body';
    this.#bodyLength = headers['content-length'] !== undefined ? Number(headers['content-length']) : undefined;
    this.#chunked = /\bchunked\b/i.test(headers['transfer-encoding'] ?? '');
  }

  #parseBody(): void {
    if (this.#bodyLength !== undefined) {
      if (this.#length >= this.#bodyLength) this.#finishResponse(this.#take(this.#bodyLength));
      return;
    }
    if (this.#chunked) {
      const all = this.#peek(this.#length);
      const body: Buffer[] = [];
      for (let at = 0; ;) {
        const eol = all.indexOf('\r\n', at);
        if (eol < 0) return;
        const size = parseInt(all.subarray(at, eol).toString('latin1'), 16);
        if (all.length < eol + 2 + size + 2) return;
        if (size === 0) {
          this.#take(eol + 4);
          this.#finishResponse(Buffer.concat(body));
          return;
        }
        body.push(all.subarray(eol + 2, eol + 2 + size));
        at = eol + 2 + size + 2;
      }
    }
  }

  #finishResponse(body: Buffer): void {
    this.response!.body = body;
    this.#mode = 'http';
    this.#resolveResponse();
  }

  #resolveResponse(): void {
    for (const w of this.#responseWaiters.splice(0)) w.resolve(this.response!);
  }

  #parseFrames(): void {
    for (;;) {
      if (this.#length < 2) return;
      const h = this.#peek(2);
      const masked = (h[1]! & 0x80) !== 0;
      const len7 = h[1]! & 0x7f;
      const extra = len7 === 126 ? 2 : len7 === 127 ? 8 : 0;
      const headLen = 2 + extra + (masked ? 4 : 0);
      if (this.#length < headLen) return;
      const head = this.#peek(headLen);
      let length = len7;
      if (len7 === 126) length = head.readUInt16BE(2);
      else if (len7 === 127) length = Number(head.readBigUInt64BE(2));
      if (this.#length < headLen + length) return;
      const bytes = this.#take(headLen + length);
      const payload = Buffer.from(bytes.subarray(headLen));
      if (masked) {
        const key = bytes.subarray(2 + extra, 2 + extra + 4);
        for (let i = 0; i < payload.length; i++) payload[i]! ^= key[i & 3]!;
      }
      const f: RawFrame = {
        fin: (h[0]! & 0x80) !== 0,
        rsv: (h[0]! >> 4) & 7,
        opcode: h[0]! & 0x0f,
        masked,
        payload,
      };
      if (f.opcode === OP.CLOSE) {
        if (payload.length >= 2) f.code = payload.readUInt16BE(0);
        f.reason = payload.subarray(2).toString('utf8');
      }
      const w = this.#frameWaiters.shift();
      if (w) w.resolve(f);
      else this.#frames.push(f);
    }
  }
}

/** A short description of a frame, for failure messages. */
export function describeFrame(f: RawFrame): string {
  const name = ['cont', 'text', 'binary', '3', '4', '5', '6', '7', 'close', 'ping', 'pong'][f.opcode] ?? String(f.opcode);
  const extra = f.opcode === OP.CLOSE ? ` code=${f.code} reason=${JSON.stringify(f.reason)}` : ` ${f.payload.length} bytes`;
  return `${name}${f.fin ? '' : ' (no FIN)'}${f.rsv ? ` rsv=${f.rsv}` : ''}${f.masked ? ' masked' : ''}${extra}`;
}

/** Deterministic pseudo-random piece sizes in [1, max] (xorshift32), for reproducible splits. */
export function randomSizes(seed: number, count: number, max: number): number[] {
  let x = seed >>> 0 || 1;
  const out: number[] = [];
  for (let i = 0; i < count; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out.push(1 + (x % max));
  }
  return out;
}
