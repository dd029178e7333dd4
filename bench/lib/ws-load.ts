/**
 * The load generator of the ws-echo bench: WebSocket clients in a child process of their own,
 * driven over IPC by bench/ws-echo.ts, which may run several of them side by side.
 *
 *   node --import tsx bench/lib/ws-load.ts   (forked by ws-echo.ts; exits when its parent goes away)
 *
 * Two clients:
 *
 * - `raw` (the default): a WebSocket client on a bare socket, doing as little as a client can. The
 *   upgrade request is written as one string and the answer checked (status 101 and
 *   `Sec-WebSocket-Accept`). A message is a frame built once, masked under a fixed non-zero key
 *   (a zero key would let a server skip unmasking), and written as the same buffer every time.
 *   Echoes are not parsed: the server's unmasked echo of a known frame has a known length, so the
 *   client counts bytes, read into one buffer shared by every connection (`onread`), with no
 *   allocation per read. A checked round trip (`check`) compares the echo byte for byte with the
 *   frame expected.
 * - `ws`: the `ws` package's client (`perMessageDeflate: false`), which parses every echo and masks
 *   every message under a fresh key, as a real client does. It costs more CPU per message, which
 *   ws-echo.ts reports.
 *
 * Requests (all answered with a {@link LoadReply} carrying the same `id`):
 *
 * - `open`: open `count` WebSocket connections to 127.0.0.1:`port`, at most `concurrency` upgrades
 *   in flight; they are added to the ones already open.
 * - `ping-pong`: on every open connection, `messages` round trips of a `size`-byte text or binary
 *   message, `window` messages in flight per connection (the next one is written as an echo is
 *   complete).
 * - `close`: send a close frame (1000) on every connection, end it, wait for the sockets to close
 *   (destroying what is left after 5 s).
 *
 * The process sends `{ type: 'ready' }` once it listens for requests. Every reply carries this
 * process's CPU time over the request.
 */

import { createHash, randomBytes } from 'node:crypto';
import * as net from 'node:net';
import { WebSocket } from 'ws';

export type ClientKind = 'raw' | 'ws';

export type LoadRequest =
  | { type: 'open'; id: number; port: number; count: number; concurrency: number; client: ClientKind }
  | { type: 'ping-pong'; id: number; text: boolean; size: number; messages: number; window: number; check: boolean }
  | { type: 'close'; id: number };

export interface LoadReply {
  type: 'done';
  id: number;
  /** Set when the request failed. */
  error?: string;
  /** This process's CPU time over the request. */
  cpu: NodeJS.CpuUsage;
  /** Connections open after the request. */
  open: number;
}

const HOST = '127.0.0.1';
const CLOSE_TIMEOUT_MS = 5_000;
const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';
const ACCEPT = createHash('sha1').update(`${KEY}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');

/** The mask key of every frame this process sends; never all zero. */
const MASK_KEY = ((): Buffer => {
  for (;;) {
    const key = randomBytes(4);
    if (key[0]! !== 0 && key[1]! !== 0 && key[2]! !== 0 && key[3]! !== 0) return key;
  }
})();

/** Every raw connection reads into this one buffer: each read is handled before the next. */
const READ_BUFFER = Buffer.allocUnsafe(256 * 1024);

function headerOf(opcode: number, length: number, masked: boolean): Buffer {
  const m = masked ? 0x80 : 0;
  if (length < 126) return Buffer.from([0x80 | opcode, m | length]);
  if (length < 65536) return Buffer.from([0x80 | opcode, m | 126, length >> 8, length & 0xff]);
  const h = Buffer.alloc(10);
  h[0] = 0x80 | opcode;
  h[1] = m | 127;
  h.writeBigUInt64BE(BigInt(length), 2);
  return h;
}

/** A masked client frame (header, key, masked payload) and the unmasked echo expected back. */
export function buildFrames(opcode: number, payload: Buffer): { frame: Buffer; echo: Buffer } {
  const masked = Buffer.from(payload);
  for (let i = 0; i < masked.length; i++) masked[i]! ^= MASK_KEY[i & 3]!;
  const frame = Buffer.concat([headerOf(opcode, payload.length, true), MASK_KEY, masked]);
  const echo = Buffer.concat([headerOf(opcode, payload.length, false), payload]);
  return { frame, echo };
}

/** The payload of every message: printable ASCII, so that text messages are valid UTF-8. */
function payloadOf(size: number): Buffer {
  const p = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) p[i] = 0x21 + (i % 94);
  return p;
}

interface RunSpec {
  text: boolean;
  payload: Buffer;
  frame: Buffer;
  echo: Buffer;
  messages: number;
  window: number;
  check: boolean;
}

interface Client {
  /** Run `spec` and call `done` once (with an error if it failed). */
  run(spec: RunSpec, done: (err?: Error) => void): void;
  close(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// The raw client

class RawClient implements Client {
  readonly socket: net.Socket;
  #phase: 'upgrade' | 'open' | 'closing' = 'upgrade';
  #head = '';
  #opened: ((err?: Error) => void) | undefined;
  // The run in progress.
  #done: ((err?: Error) => void) | undefined;
  #frame: Buffer = Buffer.alloc(0);
  #echoLength = 0;
  #got = 0;
  #sent = 0;
  #received = 0;
  #total = 0;
  #check: { expected: Buffer; chunks: Buffer[] } | undefined;
  /** What went wrong while nobody was waiting: reported by the next run. */
  #error: Error | undefined;

  constructor(port: number, opened: (err?: Error) => void) {
    this.#opened = opened;
    this.socket = net.connect({
      port,
      host: HOST,
      noDelay: true,
      onread: {
        buffer: READ_BUFFER,
        callback: (n: number, buf: Uint8Array): boolean => {
          this.#onRead(n, buf as Buffer);
          return true;
        },
      },
    });
    this.socket.once('connect', () => {
      this.socket.write(`GET / HTTP/1.1\r\nHost: ${HOST}:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n`
        + `Sec-WebSocket-Key: ${KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n`, 'latin1');
    });
    this.socket.on('error', (err) => this.#fail(err));
    this.socket.on('close', () => this.#fail(new Error('the server closed the connection')));
  }

  #fail(err: Error): void {
    if (this.#phase === 'closing') return;
    const opened = this.#opened;
    const done = this.#done;
    this.#opened = this.#done = undefined;
    if (opened === undefined && done === undefined) this.#error ??= err;
    opened?.(err);
    done?.(err);
  }

  #onRead(n: number, buf: Buffer): void {
    if (this.#phase === 'open') {
      this.#onData(n, buf);
      return;
    }
    if (this.#phase !== 'upgrade') return;
    this.#head += buf.toString('latin1', 0, n);
    const end = this.#head.indexOf('\r\n\r\n');
    if (end === -1) return;
    const head = this.#head.slice(0, end);
    const rest = this.#head.length - (end + 4);
    this.#head = '';
    const opened = this.#opened;
    this.#opened = undefined;
    if (!head.startsWith('HTTP/1.1 101 ')) {
      opened?.(new Error(`upgrade refused: ${head.split('\r\n')[0]}`));
      return;
    }
    if (!new RegExp(`^sec-websocket-accept: *${ACCEPT.replace(/[+/=]/g, '\\$&')} *$`, 'im').test(head)) {
      opened?.(new Error('bad Sec-WebSocket-Accept'));
      return;
    }
    if (rest > 0) {
      opened?.(new Error('data before the first message'));
      return;
    }
    this.#phase = 'open';
    opened?.();
  }

  run(spec: RunSpec, done: (err?: Error) => void): void {
    if (this.#error !== undefined || this.socket.destroyed) {
      done(this.#error ?? new Error('the connection is closed'));
      return;
    }
    this.#done = done;
    this.#frame = spec.frame;
    this.#echoLength = spec.echo.length;
    this.#got = 0;
    this.#received = 0;
    this.#total = spec.messages;
    this.#check = spec.check ? { expected: Buffer.concat(Array.from({ length: spec.messages }, () => spec.echo)), chunks: [] } : undefined;
    const first = Math.min(spec.window, spec.messages);
    this.#sent = first;
    for (let i = 0; i < first; i++) this.socket.write(this.#frame);
  }

  #onData(n: number, buf: Buffer): void {
    const check = this.#check;
    if (check !== undefined) check.chunks.push(Buffer.from(buf.subarray(0, n)));
    const e = this.#echoLength;
    let got = this.#got + n;
    while (got >= e && this.#received < this.#total) {
      got -= e;
      this.#received++;
      if (this.#sent < this.#total) {
        this.#sent++;
        this.socket.write(this.#frame);
      }
    }
    this.#got = got;
    if (this.#received < this.#total) return;
    const done = this.#done;
    this.#done = undefined;
    if (done === undefined) {
      this.#fail(new Error(`${n} bytes received outside a run`));
      return;
    }
    if (got !== 0) done(new Error(`${got} bytes more than the echoes`));
    else if (check !== undefined && !Buffer.concat(check.chunks).equals(check.expected)) done(new Error('the echo differs from the frame expected'));
    else done();
  }

  close(): Promise<void> {
    this.#phase = 'closing';
    const socket = this.socket;
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
      socket.write(CLOSE_FRAME);
      socket.end();
    });
  }
}

/** A masked close frame with code 1000. */
const CLOSE_FRAME = buildFrames(0x8, Buffer.from([0x03, 0xe8])).frame;

// ---------------------------------------------------------------------------------------------
// The ws client

class WsClient implements Client {
  readonly ws: WebSocket;
  #closing = false;
  #error: Error | undefined;
  #done: ((err?: Error) => void) | undefined;
  #opened: ((err?: Error) => void) | undefined;

  constructor(port: number, opened: (err?: Error) => void) {
    this.#opened = opened;
    this.ws = new WebSocket(`ws://${HOST}:${port}/`, { perMessageDeflate: false });
    this.ws.once('open', () => {
      const cb = this.#opened;
      this.#opened = undefined;
      cb?.();
    });
    this.ws.on('error', (err) => this.#fail(err));
    this.ws.on('close', () => this.#fail(new Error('the server closed the connection')));
  }

  #fail(err: Error): void {
    if (this.#closing) return;
    const opened = this.#opened;
    const done = this.#done;
    this.#opened = this.#done = undefined;
    if (opened === undefined && done === undefined) this.#error ??= err;
    opened?.(err);
    done?.(err);
  }

  run(spec: RunSpec, done: (err?: Error) => void): void {
    if (this.#error !== undefined || this.ws.readyState !== WebSocket.OPEN) {
      done(this.#error ?? new Error('the connection is closed'));
      return;
    }
    this.#done = done;
    const ws = this.ws;
    const binary = !spec.text;
    let sent = Math.min(spec.window, spec.messages);
    let received = 0;
    ws.removeAllListeners('message');
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (spec.check && (isBinary !== binary || !data.equals(spec.payload))) {
        this.#finish(new Error('the echo differs from the message'));
        return;
      }
      received++;
      if (sent < spec.messages) {
        sent++;
        ws.send(spec.payload, { binary });
      } else if (received === spec.messages) {
        ws.removeAllListeners('message');
        this.#finish();
      }
    });
    for (let i = 0; i < sent; i++) ws.send(spec.payload, { binary });
  }

  #finish(err?: Error): void {
    const done = this.#done;
    this.#done = undefined;
    done?.(err);
  }

  close(): Promise<void> {
    this.#closing = true;
    const ws = this.ws;
    return new Promise((resolve) => {
      if (ws.readyState === WebSocket.CLOSED) {
        resolve();
        return;
      }
      const timer = setTimeout(() => ws.terminate(), CLOSE_TIMEOUT_MS);
      ws.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      ws.close(1000);
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Requests

let clients: Client[] = [];

function openOne(port: number, kind: ClientKind): Promise<Client> {
  return new Promise((resolve, reject) => {
    const client: Client = kind === 'raw'
      ? new RawClient(port, (err) => (err === undefined ? resolve(client) : reject(err)))
      : new WsClient(port, (err) => (err === undefined ? resolve(client) : reject(err)));
  });
}

async function open(port: number, count: number, concurrency: number, kind: ClientKind): Promise<void> {
  let next = 0;
  let failure: Error | undefined;
  const worker = async (): Promise<void> => {
    while (next < count && failure === undefined) {
      next++;
      try {
        clients.push(await openOne(port, kind));
      } catch (err) {
        failure ??= err as Error;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  if (failure !== undefined) throw failure;
}

function pingPong(req: Extract<LoadRequest, { type: 'ping-pong' }>): Promise<void> {
  const payload = payloadOf(req.size);
  const { frame, echo } = buildFrames(req.text ? 0x1 : 0x2, payload);
  const spec: RunSpec = { text: req.text, payload, frame, echo, messages: req.messages, window: req.window, check: req.check };
  return new Promise((resolve, reject) => {
    let left = clients.length;
    if (left === 0) {
      resolve();
      return;
    }
    let failed = false;
    for (const c of clients) {
      c.run(spec, (err) => {
        if (failed) return;
        if (err !== undefined) {
          failed = true;
          reject(err);
        } else if (--left === 0) {
          resolve();
        }
      });
    }
  });
}

async function closeAll(): Promise<void> {
  const all = clients;
  clients = [];
  await Promise.all(all.map((c) => c.close()));
}

async function handle(req: LoadRequest): Promise<void> {
  const cpu0 = process.cpuUsage();
  let error: string | undefined;
  try {
    switch (req.type) {
      case 'open':
        await open(req.port, req.count, req.concurrency, req.client);
        break;
      case 'ping-pong':
        await pingPong(req);
        break;
      case 'close':
        await closeAll();
        break;
    }
  } catch (err) {
    error = err instanceof Error ? err.message : String(err);
  }
  const reply: LoadReply = { type: 'done', id: req.id, cpu: process.cpuUsage(cpu0), open: clients.length };
  if (error !== undefined) reply.error = error;
  process.send?.(reply);
}

if (process.send === undefined) {
  process.stderr.write('ws-load.ts runs as a child process of bench/ws-echo.ts\n');
  process.exit(2);
}
process.on('message', (m: LoadRequest) => void handle(m));
process.on('disconnect', () => process.exit(0));
process.send({ type: 'ready' });
