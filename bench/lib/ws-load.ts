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
 * Requests and replies are load-child.ts's: `ping-pong` sends text or binary messages, and
 * `close` sends a close frame (1000) on every connection, ends it and waits for the sockets to
 * close (destroying what is left after 5 s).
 */

import * as net from 'node:net';
import { WebSocket } from 'ws';
import { opened, serveLoad, type OpenRequest, type PingPongRequest } from './load-child.js';
import { frameHeader, maskedFrame } from './ws-frame.js';
import { acceptFor, CLOSE_TIMEOUT_MS, closeFrame, closeSocket, connectUpgrade, HOST, nonZeroMaskKey, UpgradeHead } from './ws-raw-client.js';

const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';
const ACCEPT = acceptFor(KEY);

/** The mask key of every frame this process sends. */
const MASK_KEY = nonZeroMaskKey();
/** A masked close frame with code 1000. */
const CLOSE_FRAME = closeFrame(MASK_KEY);

/** A masked client frame and the unmasked echo expected back. */
export function buildFrames(opcode: number, payload: Buffer): { frame: Buffer; echo: Buffer } {
  const frame = maskedFrame(0x80 | opcode, payload, MASK_KEY);
  const echo = Buffer.concat([frameHeader(0x80 | opcode, payload.length, false), payload]);
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
  #head = new UpgradeHead();
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
    this.socket = connectUpgrade(port, KEY, '', (n, buf) => this.#onRead(n, buf));
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
    const answer = this.#head.push(buf, n);
    if (answer === undefined) return;
    const { head, rest } = answer;
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
    if (rest.length > 0) {
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
    return closeSocket(this.socket, CLOSE_FRAME);
  }
}

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

serveLoad<Client>('ws-load.ts', 'bench/ws-echo.ts', {
  connect: (req: OpenRequest) => opened<Client>((done) => (req.client === 'raw' ? new RawClient(req.port, done) : new WsClient(req.port, done))),
  start(req: PingPongRequest) {
    const payload = payloadOf(req.size);
    const { frame, echo } = buildFrames(req.text ? 0x1 : 0x2, payload);
    const spec: RunSpec = { text: req.text, payload, frame, echo, messages: req.messages, window: req.window, check: req.check };
    return (client, done) => client.run(spec, done);
  },
});
