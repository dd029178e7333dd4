/**
 * The per-connection state machine (erlang_ws's `ws_session`): it feeds socket bytes to the
 * frame parser, reassembles messages, answers pings, runs the close handshake and the timers,
 * calls the handler one callback at a time, and writes replies in batches, one write per read.
 *
 * One class for both roles: a server session expects masked frames and sends unmasked ones,
 * a client session the reverse.
 */

import type { Duplex } from 'node:stream';
import { CloseCode, encodeClosePayload, normalizeCloseCode, parseClosePayload } from './close-codes.js';
import type { PerMessageDeflate } from './deflate.js';
import { ProtocolViolation, WsErrorCode } from './errors.js';
import { COALESCE_MAX, FrameParser, Opcode, encodeFrame, unmaskedFrame } from './frame.js';
import type {
  CallbackResult, InFrame, OutFrame, PartialRequest, TerminateReason, WebSocketHandler,
} from './handler.js';
import type { ResolvedSessionOptions } from './options.js';
import { isValidUtf8 } from './utf8.js';

/** A session's life: open, closing (our close frame is sent, waiting for the peer's), closed. */
export type SessionState = 'open' | 'closing' | 'closed';

/** The socket a session runs on: a TCP or TLS socket, or any duplex byte stream. */
export type SessionSocket = Duplex & {
  cork(): void;
  uncork(): void;
  setNoDelay?(noDelay?: boolean): unknown;
};

/** Where session errors that have nowhere else to go are reported. */
export interface SessionLogger {
  error(obj: object, msg?: string): void;
}

export interface SessionInit<S> {
  socket: SessionSocket;
  role: 'server' | 'client';
  handler: WebSocketHandler<S, never>;
  state: S;
  options: ResolvedSessionOptions;
  /** Kept for `terminate` (cowboy's filtered Req). */
  req: PartialRequest;
  /** Bytes that arrived with the upgrade, before the session took the socket. */
  head?: Buffer;
  /** Aborted when the listener shuts down: the session closes with 1001. */
  signal?: AbortSignal;
  logger?: SessionLogger;
  /** The negotiated subprotocol, if any. */
  protocol?: string;
  /** The permessage-deflate codec, when the handshake agreed on it. The session closes it. */
  deflate?: PerMessageDeflate;
  /** The agreed `Sec-WebSocket-Extensions` value, for {@link Session.extensions}. */
  extensions?: string;
}

/**
 * A frame waiting behind a compression still running: frames go out in the order they were
 * sent, whatever the time each takes to compress. `data` is undefined until the compression
 * of a message is done.
 */
interface PendingWrite {
  opcode: number;
  data: Buffer | undefined;
  /** A whole message to frame (split by outgoingFrameSize, RSV1 on the first frame when compressed). */
  message: boolean;
  compressed: boolean;
  fin: boolean;
  /** Bytes counted in bufferedAmount while it waits. */
  size: number;
}

type QueuedEvent = { kind: 'frame'; frame: InFrame } | { kind: 'info'; message: unknown } | { kind: 'init' } | { kind: 'close'; payload: Buffer };

const EMPTY = Buffer.alloc(0);
// Shared until a session needs its own (frozen: a push to them would be a bug).
const NO_FRAGMENTS: Buffer[] = Object.freeze([]) as unknown as Buffer[];
const NO_EVENTS: QueuedEvent[] = Object.freeze([]) as unknown as QueuedEvent[];

function toBuffer(data: Uint8Array | string | undefined): Buffer {
  if (data === undefined) return EMPTY;
  if (typeof data === 'string') return Buffer.from(data);
  return Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof (value as PromiseLike<unknown> | undefined)?.then === 'function';
}

/**
 * The last text message received (by any session) and its bytes, valid UTF-8: a handler that
 * echoes or forwards it (a chat room's fan-out) sends the bytes that came, not a fresh encoding.
 * Strings compare by content, so a match is always the same text.
 */
let lastText: string | undefined;
let lastTextBytes: Buffer | undefined;

function encodeText(text: string): Buffer {
  return text === lastText ? lastTextBytes! : Buffer.from(text);
}

/** Frames batched up to this many bytes are joined into one buffer: a copy costs less than a writev. */
const JOIN_MAX = 16 * 1024;

/**
 * One WebSocket connection. Handlers receive it as their last argument; other code can hold it
 * to `send`, `close` or deliver `info` messages (fan-out).
 */
export class Session<S = unknown> {
  /** The negotiated subprotocol, or undefined. */
  readonly protocol: string | undefined;
  /** The agreed `Sec-WebSocket-Extensions` value ('' when none: messages go uncompressed). */
  readonly extensions: string;

  #socket: SessionSocket;
  #role: 'server' | 'client';
  #handler: WebSocketHandler<S, never>;
  #handlerState: S;
  #opts: ResolvedSessionOptions;
  #req: PartialRequest;
  #logger: SessionLogger | undefined;
  #parser: FrameParser;
  #state: SessionState = 'open';

  // Reassembly of a fragmented message.
  #msgOpcode = 0;
  #fragments: Buffer[] = NO_FRAGMENTS;
  #msgSize = 0;
  /** The message being received has RSV1: its payload goes through the inflater. */
  #msgCompressed = false;

  // permessage-deflate.
  #deflate: PerMessageDeflate | undefined;
  /** An inflation runs in the background: parser and socket wait for it. */
  #inflating = false;
  /** Frames waiting behind a background compression, in send order; undefined when none. */
  #pending: PendingWrite[] | undefined;
  #pendingBytes = 0;
  /** The close handshake is over but frames still wait to be compressed: end after them. */
  #endAfterPending = false;

  // One callback at a time: events wait here while one runs.
  #busy = false;
  /** The async callback running, settled (result applied) or not: `terminate` waits for it. */
  #inFlight: Promise<void> | undefined;
  #queue: QueuedEvent[] = NO_EVENTS;
  #queuedInfos = 0;
  #readPaused = false;
  #slow = false;

  /** The batch of frames to write at the end of the read or of the tick (undefined: none). */
  #out: Buffer | undefined;
  #outMore: Buffer[] | undefined;
  #outBytes = 0;
  #closeReason: TerminateReason | undefined;
  #terminated = false;
  // `closed`, made when first asked for: most sessions are never awaited.
  #closed: Promise<TerminateReason> | undefined;
  #resolveClosed: ((reason: TerminateReason) => void) | undefined;
  #endReason: TerminateReason | undefined;

  #lastInbound = Date.now();
  #idleTimer: NodeJS.Timeout | undefined;
  #closeTimer: NodeJS.Timeout | undefined;
  #pingTimer: NodeJS.Timeout | undefined;
  #pongTimer: NodeJS.Timeout | undefined;
  #signal: AbortSignal | undefined;
  #abortListener: (() => void) | undefined;
  /** Inside #onData: writes are flushed at its end. */
  #reading = false;

  constructor(init: SessionInit<S>) {
    this.#socket = init.socket;
    this.#role = init.role;
    this.#handler = init.handler;
    this.#handlerState = init.state;
    this.#opts = init.options;
    this.#req = init.req;
    this.#logger = init.logger;
    this.protocol = init.protocol;
    this.extensions = init.extensions ?? '';
    this.#deflate = init.deflate;
    this.#signal = init.signal;
    this.#parser = new FrameParser({
      role: init.role,
      maxFrameSize: this.#opts.maxFrameSize,
      maxMessageSize: this.#opts.maxMessageSize,
      // The parser validates text incrementally, failing fast on the first bad sequence.
      validateUtf8: this.#opts.validateUtf8,
      allowRsv1: init.deflate !== undefined,
      onFrame: Session.#parserFrame,
      onError: Session.#parserError,
      context: this,
    });

    const socket = this.#socket as OwnedSocket;
    // One set of listeners for every session: each finds its session on the socket.
    socket[kSession] = this;
    socket.on('data', Session.#socketData);
    socket.on('close', Session.#socketClose);
    socket.on('error', Session.#socketError);
    socket.on('drain', Session.#socketDrain);
    socket.on('end', Session.#socketEnd);
    socket.setNoDelay?.(true);

    if (this.#opts.idleTimeout !== Infinity) this.#idleTimer = setTimeout(Session.#idleTick, this.#opts.idleTimeout, this);
    if (this.#opts.pingInterval !== Infinity) this.#pingTimer = setInterval(Session.#pingTick, this.#opts.pingInterval, this);

    // websocketInit runs before any frame is handled, including bytes that came with the upgrade.
    this.#dispatch({ kind: 'init' });
    if (init.head !== undefined && init.head.length > 0) this.#onData(init.head);
    // A shutdown that began before the session existed (during an async init) still applies.
    if (this.#signal?.aborted) this.#onShutdown();
    else if (this.#signal !== undefined) {
      this.#abortListener = () => this.#onShutdown();
      this.#signal.addEventListener('abort', this.#abortListener, { once: true });
    }
    socket.resume();
  }

  /** Resolves once the connection is closed and `terminate` has run. */
  get closed(): Promise<TerminateReason> {
    if (this.#closed === undefined) {
      this.#closed = this.#endReason !== undefined
        ? Promise.resolve(this.#endReason)
        : new Promise((resolve) => {
          this.#resolveClosed = resolve;
        });
    }
    return this.#closed;
  }

  /** `'open'`, `'closing'` or `'closed'`. */
  get state(): SessionState {
    return this.#state;
  }

  /** Bytes sent and not yet handed to the kernel, messages waiting to be compressed included. */
  get bufferedAmount(): number {
    return this.#socket.writableLength + this.#outBytes + this.#pendingBytes;
  }

  /** The handler's current state. */
  get handlerState(): S {
    return this.#handlerState;
  }

  /** Send one frame or several, in order. Ignored once the session is closing. */
  send(frames: OutFrame | readonly OutFrame[]): void {
    if (this.#state !== 'open') return;
    if (Array.isArray(frames)) {
      for (const f of frames as readonly OutFrame[]) {
        this.#sendOne(f);
        if (this.#state !== 'open') return;
      }
    } else {
      this.#sendOne(frames as OutFrame);
    }
    // Pausing costs nothing, so it starts at once; closing waits for the flush (see #flush).
    if (this.#opts.slowReader === 'pause') this.#checkBackpressure();
  }

  /**
   * Begin the close handshake (erlang_ws's `ws:close`): send a close frame, wait up to
   * `closeTimeout` for the peer's, then close. An invalid code is sent as 1002.
   */
  close(code: number = CloseCode.Normal, reason = ''): void {
    this.#beginClose(normalizeCloseCode(code), reason, { type: 'stop' });
  }

  /** Deliver `message` to the handler's `websocketInfo`, in order with frames (the Erlang message analogue). */
  info(message: unknown): void {
    if (this.#state !== 'open') return;
    if (!this.#busy && !this.#slow && this.#queue.length === 0) {
      this.#run({ kind: 'info', message });
      if (this.#queue.length > 0) this.#drainQueue();
      return;
    }
    if (this.#queuedInfos >= this.#opts.maxQueuedMessages) {
      this.#fail(CloseCode.TryAgainLater, 'too many queued messages', { type: 'error', error: 'slow' });
      return;
    }
    this.#queuedInfos++;
    this.#enqueue({ kind: 'info', message });
  }

  /**
   * Close as when the server shuts down: close 1001 ("server shutting down"), and `terminate`
   * is told `shutdown`. What the listener protocol does for each session when its listener stops.
   */
  shutdown(): void {
    this.#onShutdown();
  }

  /** Close the socket at once, without a close handshake. */
  terminate(): void {
    this.#closeReason ??= { type: 'stop' };
    this.#socket.destroy();
  }

  // ---- inbound ----------------------------------------------------------------------------

  #onData(chunk: Buffer): void {
    this.#lastInbound = Date.now();
    const outer = this.#reading;
    this.#reading = true;
    this.#parser.push(chunk);
    this.#reading = outer;
    // The replies to everything this chunk held go out in one write.
    if (!outer && this.#out !== undefined) this.#flush();
  };

  #onFrame(fin: boolean, rsv1: boolean, opcode: number, payload: Buffer): void {
    if (this.#state === 'closed') return;
    if (opcode >= Opcode.Close) {
      this.#onControl(opcode, payload);
      return;
    }
    // After our close frame, data is no longer delivered (RFC 6455 §5.5.1).
    if (this.#state === 'closing') return;
    if (opcode !== Opcode.Continuation) {
      this.#msgOpcode = opcode;
      this.#msgSize = 0;
      this.#msgCompressed = rsv1;
    }
    if (this.#msgCompressed) {
      this.#inflate(fin, payload);
      return;
    }
    // The parser enforces maxMessageSize from each frame's header.
    this.#msgSize += payload.length;
    const text = this.#msgOpcode === Opcode.Text;
    if (fin && this.#fragments.length === 0) {
      // The common case: a whole message in one frame, delivered without a copy.
      this.#deliver(text ? { type: 'text', data: this.#decode(payload) } : { type: 'binary', data: payload });
      return;
    }
    if (this.#fragments === NO_FRAGMENTS) this.#fragments = [];
    this.#fragments.push(payload);
    if (!fin) return;
    const whole = this.#fragments.length === 1 ? this.#fragments[0]! : Buffer.concat(this.#fragments, this.#msgSize);
    this.#fragments = NO_FRAGMENTS;
    this.#deliver(text ? { type: 'text', data: this.#decode(whole) } : { type: 'binary', data: whole });
  };

  #inflate(fin: boolean, payload: Buffer): void {
    let out: Buffer | null | Promise<Buffer | null>;
    try {
      // maxMessageSize applies to the inflated size, checked while inflating.
      out = this.#deflate!.decompress(payload, fin, this.#opts.maxMessageSize);
    } catch (err) {
      this.#onInflateError(err);
      return;
    }
    if (out === null) return;
    if (!(out instanceof Promise)) {
      this.#deliverInflated(out);
      return;
    }
    // In the background: nothing more is parsed (control frames included, to keep their order)
    // nor read until it is done, so a fast sender cannot queue unbounded input meanwhile.
    this.#inflating = true;
    this.#parser.pause();
    this.#pauseInput();
    out.then((r) => this.#onInflated(r), (e: unknown) => this.#onInflateError(e));
  }

  #onInflated(out: Buffer | null): void {
    this.#inflating = false;
    if (this.#state === 'closed') return;
    if (out !== null) this.#deliverInflated(out);
    // Frames parsed while inflating are delivered now; one of them may start another inflation.
    this.#parser.resume();
    this.#resumeInput();
  };

  #onInflateError(err: unknown): void {
    this.#inflating = false;
    if (this.#state === 'closed') return;
    if (err instanceof ProtocolViolation) this.#onProtocolError(err);
    else this.#crash(err);
  };

  /** A text message's string; remembered with its bytes when they are known to be its UTF-8. */
  #decode(bytes: Buffer): string {
    const text = bytes.toString('utf8');
    if (this.#opts.validateUtf8) {
      lastText = text;
      lastTextBytes = bytes;
    }
    return text;
  }

  #deliverInflated(data: Buffer): void {
    if (this.#msgOpcode !== Opcode.Text) {
      this.#deliver({ type: 'binary', data });
      return;
    }
    if (this.#opts.validateUtf8 && !isValidUtf8(data)) {
      this.#onProtocolError(new ProtocolViolation(WsErrorCode.InvalidUtf8, CloseCode.InvalidPayload, 'Text message is not valid UTF-8'));
      return;
    }
    this.#deliver({ type: 'text', data: this.#decode(data) });
  }

  #onControl(opcode: number, payload: Buffer): void {
    if (opcode === Opcode.Close) {
      // Messages that arrived before the close are handled before it.
      if (this.#state === 'open' && (this.#busy || this.#queue.length > 0)) this.#enqueue({ kind: 'close', payload });
      else this.#onCloseFrame(payload);
      return;
    }
    if (this.#state !== 'open') return;
    if (opcode === Opcode.Ping) {
      // Answered before the handler hears of it, with the same payload.
      this.#write(Opcode.Pong, payload);
      this.#deliver({ type: 'ping', data: payload });
    } else {
      if (this.#pongTimer !== undefined) {
        clearTimeout(this.#pongTimer);
        this.#pongTimer = undefined;
      }
      this.#deliver({ type: 'pong', data: payload });
    }
  }

  #onCloseFrame(payload: Buffer): void {
    let code: number | undefined;
    let reason: string;
    try {
      ({ code, reason } = parseClosePayload(payload));
    } catch (err) {
      const v = err as ProtocolViolation;
      this.#fail(v.closeCode ?? CloseCode.ProtocolError, v.message, {
        type: 'error', error: v.closeCode === CloseCode.InvalidPayload ? 'badencoding' : 'badframe', cause: err,
      });
      return;
    }
    if (this.#state === 'open') {
      // Echo the peer's close once (its code only), then close the TCP connection.
      this.#closeReason = code === undefined ? { type: 'remote', reason } : { type: 'remote', code, reason };
      this.#state = 'closing';
      this.#write(Opcode.Close, code === undefined ? EMPTY : encodeClosePayload(code, ''));
    }
    this.#finish();
  }

  #onProtocolError(err: ProtocolViolation): void {
    const error = err.closeCode === CloseCode.MessageTooBig ? 'toobig' : err.closeCode === CloseCode.InvalidPayload ? 'badencoding' : 'badframe';
    this.#fail(err.closeCode, err.message, { type: 'error', error, cause: err });
  };

  #onEnd(): void {
    // The peer half-closed: nothing more will come. Without a close frame that is an abrupt end.
    if (this.#state === 'open') this.#closeReason ??= { type: 'error', error: 'closed' };
    if (this.#out !== undefined) this.#flush();
    this.#socket.end();
  };

  #onSocketError(err: Error): void {
    this.#closeReason ??= this.#state === 'open' ? { type: 'error', error: 'socket', cause: err } : undefined;
  };

  #onSocketClose(): void {
    this.#state = 'closed';
    this.#clearTimers();
    this.#socket.off('data', Session.#socketData);
    if (this.#abortListener !== undefined) this.#signal?.removeEventListener('abort', this.#abortListener);
    if (this.#deflate !== undefined) {
      // Pending compressions and inflations are rejected, and their results dropped.
      this.#deflate.close();
      this.#pending = undefined;
      this.#pendingBytes = 0;
    }
    void this.#terminate(this.#closeReason ?? { type: 'error', error: 'closed' });
  };

  // ---- handler dispatch ---------------------------------------------------------------------

  #deliver(frame: InFrame): void {
    this.#dispatch({ kind: 'frame', frame });
  }

  #enqueue(event: QueuedEvent): void {
    if (this.#queue === NO_EVENTS) this.#queue = [];
    this.#queue.push(event);
  }

  #dispatch(event: QueuedEvent): void {
    if (this.#busy || this.#queue.length > 0) {
      this.#enqueue(event);
      return;
    }
    this.#run(event);
    // What the callback itself queued (a `session.info` from inside it) runs after it, in order.
    if (this.#queue.length > 0) this.#drainQueue();
  }

  #run(event: QueuedEvent): void {
    let result: CallbackResult<S> | PromiseLike<CallbackResult<S>>;
    // Busy while a synchronous callback runs too: a `session.info` it calls must wait its turn,
    // not run inside it (its reply would go out first and its state be overwritten).
    this.#busy = true;
    try {
      result = this.#call(event);
    } catch (err) {
      this.#busy = false;
      this.#crash(err);
      return;
    }
    if (isThenable(result)) {
      // An async callback: hold everything else, input included, until it settles.
      this.#pauseInput();
      this.#inFlight = Promise.resolve(result).then((r) => this.#onAsyncResult(r), (e: unknown) => this.#onAsyncCrash(e));
      return;
    }
    this.#busy = false;
    this.#apply(result);
  }

  #call(event: QueuedEvent): CallbackResult<S> | PromiseLike<CallbackResult<S>> {
    const h = this.#handler;
    switch (event.kind) {
      case 'frame':
        return h.websocketHandle(event.frame, this.#handlerState, this);
      case 'info':
        return h.websocketInfo?.(event.message, this.#handlerState, this);
      case 'init':
        return h.websocketInit?.(this.#handlerState, this);
    }
  }

  #onAsyncResult(result: CallbackResult<S>): void {
    this.#busy = false;
    this.#apply(result);
    this.#drainQueue();
  };

  #onAsyncCrash(err: unknown): void {
    this.#busy = false;
    this.#crash(err);
  };

  #drainQueue(): void {
    while (!this.#busy && this.#queue.length > 0 && this.#state === 'open') {
      if (this.#slow && this.#queue[0]!.kind === 'info') break;
      const event = this.#queue.shift()!;
      if (event.kind === 'info') this.#queuedInfos--;
      if (event.kind === 'close') this.#onCloseFrame(event.payload);
      else this.#run(event);
    }
    if (!this.#busy && !this.#slow) this.#resumeInput();
  }

  #apply(result: CallbackResult<S>): void {
    if (result === undefined || result === null) return;
    if (typeof result !== 'object') {
      this.#crash(new TypeError(`A handler returned ${typeof result}; expected nothing or { state, reply, stop }`));
      return;
    }
    if ('state' in result) this.#handlerState = result.state as S;
    try {
      if (result.reply !== undefined) this.send(result.reply);
    } catch (err) {
      // A reply that cannot be sent (a control payload over 125 bytes, an unknown frame type) is
      // the handler's fault: it must not escape into the socket's 'data' event or a promise chain.
      this.#crash(err);
      return;
    }
    const stop = result.stop;
    if (stop !== undefined && stop !== false) {
      const { code = CloseCode.Normal, reason = '' } = stop === true ? {} : stop;
      this.#beginClose(normalizeCloseCode(code), reason, { type: 'stop' });
    }
  }

  #crash(err: unknown): void {
    this.#logger?.error({ err }, 'websocket handler crashed');
    this.#fail(CloseCode.InternalError, 'internal error', { type: 'crash', error: err });
  }

  #pauseInput(): void {
    if (this.#readPaused) return;
    this.#readPaused = true;
    this.#socket.pause();
  }

  #resumeInput(): void {
    if (!this.#readPaused || this.#state === 'closed' || this.#busy || this.#slow || this.#inflating) return;
    this.#readPaused = false;
    this.#socket.resume();
  }

  // ---- outbound -----------------------------------------------------------------------------

  #sendOne(frame: OutFrame): void {
    if (typeof frame === 'string') {
      this.#sendMessage(Opcode.Text, encodeText(frame));
    } else if (frame instanceof Uint8Array) {
      this.#sendMessage(Opcode.Binary, toBuffer(frame));
    } else {
      switch (frame.type) {
        case 'text': this.#sendMessage(Opcode.Text, typeof frame.data === 'string' ? encodeText(frame.data) : toBuffer(frame.data)); break;
        case 'binary': this.#sendMessage(Opcode.Binary, toBuffer(frame.data)); break;
        case 'ping': this.#sendControl(Opcode.Ping, toBuffer(frame.data)); break;
        case 'pong': this.#sendControl(Opcode.Pong, toBuffer(frame.data)); break;
        case 'close': this.#beginClose(normalizeCloseCode(frame.code ?? CloseCode.Normal), frame.reason ?? '', { type: 'stop' }); break;
        default: throw new TypeError(`Unknown frame type ${String((frame as { type: unknown }).type)}`);
      }
    }
  }

  #sendControl(opcode: number, payload: Buffer): void {
    if (payload.length > 125) throw new RangeError('A control frame payload is at most 125 bytes');
    this.#write(opcode, payload);
  }

  #sendMessage(opcode: number, payload: Buffer): void {
    const deflate = this.#deflate;
    if (deflate === undefined || !deflate.shouldCompress(payload.length)) {
      this.#writeMessage(opcode, payload, false);
      return;
    }
    const out = deflate.compress(payload);
    if (!(out instanceof Promise)) {
      this.#writeMessage(opcode, out, true);
      return;
    }
    const entry: PendingWrite = { opcode, data: undefined, message: true, compressed: true, fin: true, size: payload.length };
    (this.#pending ??= []).push(entry);
    this.#pendingBytes += entry.size;
    out.then(
      (data) => {
        entry.data = data;
        this.#writePending();
      },
      (err: unknown) => {
        if (this.#state === 'closed') return;
        // Only a broken zlib gets here: the message cannot be sent, the connection goes on no further.
        this.#crash(err);
      },
    );
  }

  /** Write what waited behind compressions, up to the first one still running. */
  #writePending(): void {
    const pending = this.#pending;
    if (pending === undefined) return;
    let i = 0;
    for (; i < pending.length && pending[i]!.data !== undefined; i++) {
      const e = pending[i]!;
      this.#pendingBytes -= e.size;
      if (e.message) this.#writeMessage(e.opcode, e.data!, e.compressed, true);
      else this.#writeFrame(e.opcode, e.data!, e.fin, false, true);
    }
    pending.splice(0, i);
    if (pending.length > 0) return;
    this.#pending = undefined;
    if (this.#endAfterPending) {
      this.#endAfterPending = false;
      this.#writeOut();
      if (this.#socket.writable) this.#socket.end();
    } else if (this.#state === 'open' && this.#opts.slowReader === 'pause') {
      this.#checkBackpressure();
    }
  }

  #writeMessage(opcode: number, payload: Buffer, compressed: boolean, now = false): void {
    const size = this.#opts.outgoingFrameSize;
    if (payload.length <= size) {
      this.#writeFrame(opcode, payload, true, compressed, now);
      return;
    }
    for (let offset = 0; offset < payload.length; offset += size) {
      const end = Math.min(offset + size, payload.length);
      this.#writeFrame(offset === 0 ? opcode : Opcode.Continuation, payload.subarray(offset, end), end === payload.length, compressed && offset === 0, now);
    }
  }

  #write(opcode: number, payload: Buffer): void {
    this.#writeFrame(opcode, payload, true, false, false);
  }

  /** `now`: write even though frames are pending (they are the pending ones, in order). */
  #writeFrame(opcode: number, payload: Buffer, fin: boolean, rsv1: boolean, now: boolean): void {
    if (this.#pending !== undefined && !now) {
      // Behind a compression still running: wait for it, to keep the order.
      this.#pending.push({ opcode, data: payload, message: false, compressed: rsv1, fin, size: payload.length });
      this.#pendingBytes += payload.length;
      return;
    }
    if (!this.#socket.writable) return;
    // Frames made in one tick (or one read) go out together, in one write when they are small.
    // Inside a read the flush comes at its end (#onData); elsewhere at the end of this tick.
    if (this.#out === undefined && !this.#reading) process.nextTick(Session.#tickFlush, this);
    if (this.#role === 'server' && payload.length <= COALESCE_MAX) {
      // The common case, without encodeFrame's checks (the session only makes valid frames).
      this.#queueOut(unmaskedFrame(opcode, fin, rsv1, payload));
      return;
    }
    const parts = encodeFrame(opcode, payload, { fin, rsv1, mask: this.#role === 'client' });
    for (let i = 0; i < parts.length; i++) this.#queueOut(parts[i]!);
  }

  #queueOut(buf: Buffer): void {
    this.#outBytes += buf.length;
    if (this.#out === undefined) this.#out = buf;
    else (this.#outMore ??= []).push(buf);
  }

  /** Write the batch: one buffer as it is, small ones joined into one, large ones in one writev. */
  #writeOut(): void {
    const socket = this.#socket;
    const first = this.#out;
    const more = this.#outMore;
    const bytes = this.#outBytes;
    this.#out = undefined;
    this.#outBytes = 0;
    if (first === undefined || !socket.writable) {
      if (more !== undefined) more.length = 0;
      return;
    }
    if (more === undefined || more.length === 0) {
      socket.write(first);
    } else if (bytes <= JOIN_MAX) {
      const joined = Buffer.allocUnsafe(bytes);
      let at = first.copy(joined, 0);
      for (let i = 0; i < more.length; i++) at += more[i]!.copy(joined, at);
      more.length = 0;
      socket.write(joined);
    } else {
      socket.cork();
      socket.write(first);
      for (let i = 0; i < more.length; i++) socket.write(more[i]);
      more.length = 0;
      socket.uncork();
    }
  }

  #flush(): void {
    this.#writeOut();
    // Only now does writableLength say what the kernel would not take: a reader slow enough
    // to be closed, not one that was just sent a large reply.
    if (this.#state === 'open' && this.#opts.slowReader === 'close') this.#checkBackpressure();
  };

  #checkBackpressure(): void {
    if (this.#slow || this.#socket.writableLength + this.#outBytes <= this.#opts.highWaterMark) return;
    if (this.#opts.slowReader === 'close') {
      this.#fail(CloseCode.PolicyViolation, 'peer too slow', { type: 'error', error: 'slow' });
      return;
    }
    this.#slow = true;
    this.#pauseInput();
  }

  #onDrain(): void {
    if (!this.#slow) return;
    this.#slow = false;
    this.#drainQueue();
  };

  // ---- closing ------------------------------------------------------------------------------

  #beginClose(code: number, reason: string, why: TerminateReason): void {
    if (this.#state !== 'open') return;
    this.#state = 'closing';
    this.#closeReason ??= why;
    this.#fragments = NO_FRAGMENTS;
    let payload: Buffer;
    try {
      payload = encodeClosePayload(code, reason);
    } catch {
      payload = encodeClosePayload(code, '');
    }
    this.#write(Opcode.Close, payload);
    this.#closeTimer = setTimeout(Session.#closeTick, this.#opts.closeTimeout, this);
    this.#closeTimer.unref?.();
  }

  /** A protocol error or a crash: send the close frame and do not wait long for the echo. */
  #fail(code: number, reason: string, why: TerminateReason): void {
    if (this.#state === 'closed') return;
    this.#closeReason ??= why;
    this.#beginClose(code, reason, why);
    this.#parser.stop();
    // No more input is interpreted; close our side once the close frame is flushed.
    this.#finish();
  }

  /** Both close frames exchanged (or no point waiting): end our side, the socket closes after. */
  #finish(): void {
    // Keep reading (what comes is no longer interpreted) so the peer's close echo and FIN are
    // seen and the connection ends now, not at closeTimeout.
    this.#readPaused = false;
    this.#socket.resume();
    const socket = this.#socket;
    this.#writeOut();
    // Frames still being compressed (the close frame among them) go out before our FIN.
    if (this.#pending !== undefined) this.#endAfterPending = true;
    else if (socket.writable) socket.end();
    if (this.#closeTimer === undefined) {
      this.#closeTimer = setTimeout(Session.#closeTick, this.#opts.closeTimeout, this);
      this.#closeTimer.unref?.();
    }
  }

  #onCloseTimeout(): void {
    this.#socket.destroy();
  };

  #onShutdown(): void {
    if (this.#state !== 'open') return;
    this.#closeReason = { type: 'shutdown' };
    this.#beginClose(CloseCode.GoingAway, 'server shutting down', { type: 'shutdown' });
  };

  #onIdleCheck(): void {
    const idle = Date.now() - this.#lastInbound;
    const limit = this.#opts.idleTimeout;
    if (idle < limit) {
      this.#idleTimer = setTimeout(Session.#idleTick, limit - idle, this);
      return;
    }
    this.#idleTimer = undefined;
    if (this.#state === 'open') this.#beginClose(CloseCode.GoingAway, 'idle timeout', { type: 'timeout' });
    else this.#socket.destroy();
  };

  #onPingTick(): void {
    if (this.#state !== 'open' || this.#pongTimer !== undefined) return;
    this.#write(Opcode.Ping, EMPTY);
    this.#pongTimer = setTimeout(Session.#pongTick, this.#opts.pongTimeout, this);
  };

  #onPongTimeout(): void {
    this.#pongTimer = undefined;
    if (this.#state === 'open') this.#beginClose(CloseCode.GoingAway, 'no pong', { type: 'timeout' });
  };

  #clearTimers(): void {
    if (this.#idleTimer !== undefined) clearTimeout(this.#idleTimer);
    if (this.#closeTimer !== undefined) clearTimeout(this.#closeTimer);
    if (this.#pingTimer !== undefined) clearInterval(this.#pingTimer);
    if (this.#pongTimer !== undefined) clearTimeout(this.#pongTimer);
    this.#idleTimer = this.#closeTimer = this.#pingTimer = this.#pongTimer = undefined;
  }

  async #terminate(reason: TerminateReason): Promise<void> {
    if (this.#terminated) return;
    this.#terminated = true;
    this.#queue = NO_EVENTS;
    // One callback at a time, terminate included: let a running one finish and set its state.
    if (this.#busy) await this.#inFlight;
    try {
      await this.#handler.terminate?.(reason, this.#req, this.#handlerState);
    } catch (err) {
      this.#logger?.error({ err }, 'websocket terminate callback failed');
    }
    this.#endReason = reason;
    this.#resolveClosed?.(reason);
  }

  // ---- shared callbacks ---------------------------------------------------------------------
  // Functions made once for all sessions, not per session: an idle connection then costs its
  // fields alone. Socket listeners find their session on the socket, timers get it as argument.

  static #socketData(this: OwnedSocket, chunk: Buffer): void {
    this[kSession]!.#onData(chunk);
  }

  static #socketClose(this: OwnedSocket): void {
    this[kSession]!.#onSocketClose();
  }

  static #socketError(this: OwnedSocket, err: Error): void {
    this[kSession]!.#onSocketError(err);
  }

  static #socketDrain(this: OwnedSocket): void {
    this[kSession]!.#onDrain();
  }

  static #socketEnd(this: OwnedSocket): void {
    this[kSession]!.#onEnd();
  }

  static #parserFrame(this: Session, fin: boolean, rsv1: boolean, opcode: number, payload: Buffer): void {
    this.#onFrame(fin, rsv1, opcode, payload);
  }

  static #parserError(this: Session, err: ProtocolViolation): void {
    this.#onProtocolError(err);
  }

  static #tickFlush(session: Session): void {
    if (session.#out !== undefined) session.#flush();
  }

  static #idleTick(session: Session): void {
    session.#onIdleCheck();
  }

  static #pingTick(session: Session): void {
    session.#onPingTick();
  }

  static #pongTick(session: Session): void {
    session.#onPongTimeout();
  }

  static #closeTick(session: Session): void {
    session.#onCloseTimeout();
  }
}

const kSession = Symbol('corral.websocket.session');

/** A socket run by a session, which its shared listeners find on it. */
type OwnedSocket = SessionSocket & { [kSession]?: Session<any> };
