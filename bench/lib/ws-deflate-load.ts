/**
 * The load generator of the ws-deflate bench: compressed WebSocket clients in a child process of
 * their own, driven over IPC by bench/ws-deflate.ts with ws-load.ts's requests and replies
 * (`open`, `ping-pong`, `close`; see there), so ws-echo.ts's LoadProcess drives it.
 *
 *   node --import tsx bench/lib/ws-deflate-load.ts <offer>   (offer: see ws-deflate-messages.ts)
 *
 * The client is a WebSocket client on a bare socket that does as little as a client can while
 * speaking permessage-deflate:
 *
 * - The upgrade request offers `<offer>` in `Sec-WebSocket-Extensions`; the answer must be 101
 *   with the right `Sec-WebSocket-Accept` and must accept exactly the parameters the offer asks
 *   for (the same for both servers), else the connection fails.
 * - Messages are precompressed once per size (ws-deflate-messages.ts): each connection writes
 *   the pool's frames in order, cycling, and never compresses anything.
 * - Echoes are not inflated: their length depends on the server's compressor, so the client
 *   parses frame headers (2 to 10 bytes each) and skips payloads, counting a message at each final
 *   frame. The first frame of every echo must have RSV1 set: an echo sent uncompressed fails the
 *   run. In a checked round trip (`check`) the echo is also inflated (with the connection's
 *   earlier messages as the dictionary when the server keeps context takeover) and compared
 *   with the message.
 *
 * `ping-pong`'s `text` is ignored (messages are always text) and `size` picks the pool. Replies
 * add the bytes read and written over the request (`wireIn`, `wireOut`) and, for `open`, the
 * `Sec-WebSocket-Extensions` answer of the first connection (`extensions`).
 */

import type * as net from 'node:net';
import { inflateRawSync } from 'node:zlib';
import { opened, serveLoad, type LoadReply } from './load-child.js';
import { buildPool, OFFER, OFFERS, windowOf, type MessagePool, type OfferKind } from './ws-deflate-messages.js';
import { acceptFor, closeFrame, closeSocket, connectUpgrade, nonZeroMaskKey, UpgradeHead } from './ws-raw-client.js';

export interface DeflateLoadReply extends LoadReply {
  wireIn: number;
  wireOut: number;
  extensions?: string;
}

const KEY = 'x3JJHMbDL1EzLkh9GBhXDw==';
const ACCEPT = acceptFor(KEY);
const TRAILER = Buffer.from([0x00, 0x00, 0xff, 0xff]);

const offerKind = process.argv[2] as OfferKind;
if (!OFFERS.includes(offerKind)) {
  process.stderr.write(`usage: ws-deflate-load.ts ${OFFERS.join('|')}\n`);
  process.exit(2);
}
const offer = OFFER[offerKind];

const MASK_KEY = nonZeroMaskKey();
const CLOSE_FRAME = closeFrame(MASK_KEY);

const pools = new Map<number, MessagePool>();
function poolOf(size: number): MessagePool {
  let pool = pools.get(size);
  if (pool === undefined) {
    pool = buildPool(size, !offer.clientNoContextTakeover, MASK_KEY);
    pools.set(size, pool);
  }
  return pool;
}

/** `permessage-deflate; a; b=1` as a name and a parameter map, or a reason it is not what was asked for. */
function checkExtensions(value: string | undefined): string | undefined {
  if (value === undefined) return 'no Sec-WebSocket-Extensions in the answer: compression declined';
  const [name = '', ...rest] = value.split(';').map((p) => p.trim().toLowerCase());
  if (name !== 'permessage-deflate' || value.includes(',')) return `unexpected extensions ${JSON.stringify(value)}`;
  const params = new Map(rest.map((p) => {
    const [k = '', v] = p.split('=').map((x) => x.trim());
    return [k, v ?? true] as const;
  }));
  const want = (flag: string, on: boolean): string | undefined =>
    params.has(flag) === on ? undefined : `${flag} ${on ? 'missing from' : 'in'} the answer ${JSON.stringify(value)}`;
  for (const [k, v] of params) {
    if ((k === 'server_max_window_bits' || k === 'client_max_window_bits') && v !== '15') return `${k}=${String(v)} in the answer: the offer leaves both windows at 15 bits`;
  }
  return want('server_no_context_takeover', offer.serverNoContextTakeover) ?? want('client_no_context_takeover', offer.clientNoContextTakeover);
}

interface Run {
  pool: MessagePool;
  messages: number;
  window: number;
  check: boolean;
  done: (err?: Error) => void;
}

let wireIn = 0;
let wireOut = 0;

class Client {
  readonly socket: net.Socket;
  /** Set from the upgrade answer. */
  extensions: string | undefined;
  #upgraded = false;
  #closing = false;
  #head = new UpgradeHead();
  #opened: ((err?: Error) => void) | undefined;
  #run: Run | undefined;
  #error: Error | undefined;
  /** Messages sent and echoes received on this connection since it opened: the pool index. */
  #next = 0;
  #received = 0;
  #sent = 0;
  #target = 0;
  // Frame parser: header bytes gathered, payload bytes left to skip.
  #hdr = Buffer.alloc(10);
  #hdrLen = 0;
  #skip = 0;
  #fin = false;
  #inMessage = false;
  /** Payload of the echo being checked. */
  #checked: Buffer[] | undefined;

  constructor(port: number, opened: (err?: Error) => void) {
    this.#opened = opened;
    this.socket = connectUpgrade(port, KEY, `Sec-WebSocket-Extensions: ${offer.header}\r\n`, (n, buf) => {
      wireIn += n;
      if (this.#upgraded) this.#parse(buf, 0, n);
      else this.#onHead(buf, n);
    });
    this.socket.on('error', (err) => this.#fail(err));
    this.socket.on('close', () => this.#fail(new Error('the server closed the connection')));
  }

  #fail(err: Error): void {
    if (this.#closing) return;
    const opened = this.#opened;
    const run = this.#run;
    this.#opened = this.#run = undefined;
    if (opened === undefined && run === undefined) this.#error ??= err;
    opened?.(err);
    run?.done(err);
  }

  #onHead(buf: Buffer, n: number): void {
    const answer = this.#head.push(buf, n);
    if (answer === undefined) return;
    const head = answer.head;
    const rest = Buffer.from(answer.rest, 'latin1');
    const header = (name: string): string | undefined => new RegExp(`^${name}: *(.*?) *$`, 'im').exec(head)?.[1];
    let why: string | undefined;
    if (!head.startsWith('HTTP/1.1 101 ')) why = `upgrade refused: ${head.split('\r\n')[0]}`;
    else if (header('sec-websocket-accept') !== ACCEPT) why = 'bad Sec-WebSocket-Accept';
    else why = checkExtensions(header('sec-websocket-extensions'));
    this.extensions = header('sec-websocket-extensions');
    const opened = this.#opened;
    this.#opened = undefined;
    if (why !== undefined) {
      opened?.(new Error(why));
      return;
    }
    this.#upgraded = true;
    opened?.();
    if (rest.length > 0) this.#parse(rest, 0, rest.length);
  }

  run(r: Run): void {
    if (this.#error !== undefined || this.socket.destroyed) {
      r.done(this.#error ?? new Error('the connection is closed'));
      return;
    }
    this.#run = r;
    this.#target = this.#received + r.messages;
    const first = Math.min(r.window, r.messages);
    this.#sent = this.#received;
    for (let i = 0; i < first; i++) this.#send(r.pool);
  }

  #send(pool: MessagePool): void {
    const frame = pool.frames[this.#next++ % pool.frames.length]!;
    this.#sent++;
    wireOut += frame.length;
    this.socket.write(frame);
  }

  /** Walk the frames in `buf[i, n)`: headers gathered, payloads skipped (or kept to check). */
  #parse(buf: Buffer, i: number, n: number): void {
    while (i < n) {
      if (this.#skip > 0) {
        const take = Math.min(this.#skip, n - i);
        this.#checked?.push(Buffer.from(buf.subarray(i, i + take)));
        this.#skip -= take;
        i += take;
        if (this.#skip === 0) this.#endFrame();
        continue;
      }
      const hdr = this.#hdr;
      hdr[this.#hdrLen++] = buf[i++]!;
      if (this.#hdrLen < 2) continue;
      const len7 = hdr[1]! & 0x7f;
      const need = len7 < 126 ? 2 : len7 === 126 ? 4 : 10;
      if (this.#hdrLen < need) continue;
      this.#hdrLen = 0;
      if ((hdr[1]! & 0x80) !== 0) return this.#protocolError('a masked frame from the server');
      const opcode = hdr[0]! & 0x0f;
      if (opcode >= 8) return this.#protocolError(`an unexpected control frame (opcode ${opcode})`);
      if (!this.#inMessage) {
        if (opcode !== 1) return this.#protocolError(`echo opcode ${opcode}, not text`);
        if ((hdr[0]! & 0x40) === 0) return this.#protocolError('an echo sent uncompressed (RSV1 clear)');
        this.#inMessage = true;
        if (this.#run?.check === true) this.#checked = [];
      } else if (opcode !== 0) {
        return this.#protocolError('a new message inside a fragmented one');
      }
      this.#fin = (hdr[0]! & 0x80) !== 0;
      this.#skip = len7 < 126 ? len7 : len7 === 126 ? hdr.readUInt16BE(2) : Number(hdr.readBigUInt64BE(2));
      if (this.#skip === 0) this.#endFrame();
    }
  }

  #protocolError(why: string): void {
    this.#fail(new Error(`the server sent ${why}`));
    this.socket.destroy();
  }

  #endFrame(): void {
    if (!this.#fin) return;
    this.#inMessage = false;
    const index = this.#received++;
    const run = this.#run;
    if (run === undefined) {
      this.#fail(new Error('an echo outside a run'));
      return;
    }
    if (this.#checked !== undefined) {
      const why = this.#verify(run.pool, index, Buffer.concat(this.#checked));
      this.#checked = undefined;
      if (why !== undefined) {
        this.#run = undefined;
        run.done(new Error(why));
        return;
      }
    }
    if (this.#received === this.#target) {
      this.#run = undefined;
      run.done();
    } else if (this.#sent < this.#target) {
      this.#send(run.pool);
    }
  }

  /** Inflate echo `index` of this connection and compare it with the message sent. */
  #verify(pool: MessagePool, index: number, compressed: Buffer): string | undefined {
    const of = (k: number): Buffer => pool.payloads[k % pool.payloads.length]!;
    // With server context takeover the echo may refer to the connection's earlier echoes, which are its earlier messages.
    const earlier = offer.serverNoContextTakeover ? [] : Array.from({ length: Math.min(index, 64) }, (_, j) => of(index - Math.min(index, 64) + j));
    const dictionary = windowOf(earlier);
    let plain: Buffer;
    try {
      plain = inflateRawSync(Buffer.concat([compressed, TRAILER]), { finishFlush: 2, ...(dictionary === undefined ? {} : { dictionary }) });
    } catch (err) {
      return `echo ${index} does not inflate: ${(err as Error).message}`;
    }
    return plain.equals(of(index)) ? undefined : `echo ${index} inflates to ${plain.length} bytes that differ from the ${of(index).length}-byte message`;
  }

  close(): Promise<void> {
    this.#closing = true;
    return closeSocket(this.socket, CLOSE_FRAME);
  }
}

// ---------------------------------------------------------------------------------------------
// Requests

serveLoad<Client>('ws-deflate-load.ts', 'bench/ws-deflate.ts', {
  connect: (req) => opened<Client>((done) => new Client(req.port, done)),
  start(req) {
    const pool = poolOf(req.size);
    return (client, done) => client.run({ pool, messages: req.messages, window: req.window, check: req.check, done });
  },
  begin(req) {
    // Build the pool before the clock starts: requests are timed from the parent.
    if (req.type === 'ping-pong') poolOf(req.size);
    const in0 = wireIn;
    const out0 = wireOut;
    return (base, clients) => {
      const reply: DeflateLoadReply = { ...base, wireIn: wireIn - in0, wireOut: wireOut - out0 };
      if (req.type === 'open' && clients[0]?.extensions !== undefined) reply.extensions = clients[0].extensions;
      return reply;
    };
  },
});
