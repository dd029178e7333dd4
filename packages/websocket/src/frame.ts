/**
 * The RFC 6455 frame codec (§5): an incremental parser fed whatever chunks the transport reads,
 * and frame builders. No sockets, timers or events: the session drives both.
 *
 * Parser design, for the hot path:
 *
 * - Headers are read straight from the chunk (no slicing, no per-frame objects); only a header
 *   split across chunks is copied, into a fixed 14-byte scratch buffer.
 * - A payload wholly inside one chunk is handed out as a view of that chunk (zero copy). A payload
 *   split across chunks is copied once into a buffer of exactly its size, allocated when its first
 *   piece arrives.
 * - Masked payloads are unmasked in place: the parser owns the chunks given to `push()`.
 * - Every per-frame and per-message fact lives in a field; nothing is allocated per frame but the
 *   payload (a view or the assembled buffer).
 * - Limits are enforced from the header: a frame announcing more than `maxFrameSize` bytes fails
 *   before one byte of its payload is buffered.
 * - With `validateUtf8` (the default), text messages are validated as their bytes arrive, across
 *   frames and within frames split over chunks, so invalid UTF-8 fails in the chunk that holds it.
 */

import { kMaxLength } from 'node:buffer';
import { BadOptionError } from '@corral/listener';
import { ProtocolViolation, WebSocketError, WsErrorCode } from './errors.js';
import { mask, maskPool, unmask } from './mask.js';
import { Utf8Validator } from './utf8.js';

/** Frame opcodes (RFC 6455 §5.2). */
export const Opcode = {
  Continuation: 0,
  Text: 1,
  Binary: 2,
  Close: 8,
  Ping: 9,
  Pong: 10,
} as const;

export type Opcode = (typeof Opcode)[keyof typeof Opcode];

/** True for Close, Ping and Pong (and the reserved opcodes 11-15). */
export function isControlOpcode(opcode: number): boolean {
  return (opcode & 0x08) !== 0;
}

/** Default largest frame payload the parser accepts: 16 MiB (as erlang_ws and hackney_ws). */
export const DEFAULT_MAX_FRAME_SIZE = 16 * 1024 * 1024;

/** Largest payload of a control frame (§5.5). */
export const MAX_CONTROL_PAYLOAD = 125;

const EMPTY = Buffer.alloc(0);

/** Receives one complete frame: its flags, opcode (0 for a continuation) and unmasked payload. */
export type FrameHandler = (fin: boolean, rsv1: boolean, opcode: number, payload: Buffer) => void;

export interface FrameParserOptions {
  /** `'server'` requires every frame masked, `'client'` requires every frame unmasked (§5.1). */
  role: 'server' | 'client';
  /** Largest frame payload in bytes (default 16 MiB); larger frames fail with 1009 from their header. */
  maxFrameSize?: number;
  /**
   * Largest sum of the payloads of one uncompressed data message (default: no limit); a frame
   * that would pass it fails with 1009 from its header. Messages with RSV1 set are not counted
   * here: their size is the inflated size, which the session checks.
   */
  maxMessageSize?: number;
  /** RSV1 is legal on the first frame of a data message (permessage-deflate negotiated). Default false. */
  allowRsv1?: boolean;
  /**
   * Validate uncompressed text messages as UTF-8, failing with 1007 as soon as a chunk makes
   * them invalid (default true). Messages with RSV1 set are left to the session, which has to
   * validate them after inflating.
   */
  validateUtf8?: boolean;
  /** Called once per complete frame, in order. May call `pause()`. */
  onFrame: FrameHandler;
  /** Called once, on the first violation; the parser then ignores all input. */
  onError: (err: ProtocolViolation) => void;
  /**
   * `this` for `onFrame` and `onError`: with it, one pair of functions serves every parser,
   * instead of a pair of closures per connection.
   */
  context?: unknown;
}

/** The mask key of the payload being unmasked, rotated to its phase (unmasking is synchronous). */
const unmaskKey = Buffer.alloc(4);

/** Parser states. */
const HEADER = 0;
const PAYLOAD = 1;

/**
 * Incremental frame parser. Feed it chunks with `push()`; it calls `onFrame` for every complete
 * frame and `onError` once on the first protocol violation.
 *
 * The session can stop it between two frames with `pause()` (typically from inside `onFrame`)
 * and restart it with `resume()`: the unparsed rest of the current chunk and any chunk pushed in
 * the meantime are kept by reference, not copied. `stop()` ends parsing for good without an error.
 *
 * Checks (close code in brackets):
 * - RSV2/RSV3 set; RSV1 set unless `allowRsv1`, and then only on the first frame of a data
 *   message [1002]
 * - opcodes 3-7 and 11-15 [1002]
 * - control frames with FIN clear or more than 125 bytes; close frames of exactly 1 byte [1002].
 *   The close code and reason are checked by `parseClosePayload()`, which the session calls.
 * - the MASK bit against the role [1002]
 * - a 64-bit length with its top bit set [1002]; lengths need not use the shortest encoding
 * - continuation without an open message; Text/Binary while one is open [1002]
 * - frame payload over `maxFrameSize` (or over what a Buffer can hold), message over
 *   `maxMessageSize` [1009]
 * - invalid UTF-8 in uncompressed text, with `validateUtf8` [1007]
 */
export class FrameParser {
  private readonly onFrame: FrameHandler;
  private readonly onError: (err: ProtocolViolation) => void;
  private readonly context: unknown;
  private readonly expectMask: boolean;
  private readonly maxFrameSize: number;
  private readonly maxMessageSize: number;
  private readonly allowRsv1: boolean;
  private readonly validateUtf8: boolean;

  /** The chunk being parsed and the offset of its first unparsed byte. */
  private chunk: Buffer = EMPTY;
  private pos = 0;
  /** Chunks pushed while paused or while parsing (from inside `onFrame`); made when first needed. */
  private queue: Buffer[] | undefined;
  private queueHead = 0;

  private state = HEADER;
  /** A header split across chunks is gathered here (made the first time one is). */
  private header: Buffer | undefined;
  private headerHave = 0;
  private headerNeed = 2;

  // The frame being parsed.
  private fin = false;
  private rsv1 = false;
  private opcode = 0;
  private masked = false;
  private payloadLength = 0;
  /** The mask key, big-endian: a number costs an idle parser nothing, a Buffer two objects. */
  private maskKey = 0;
  /** True when the mask key is absent or all zero: XOR would be a no-op. */
  private noMask = true;
  /** A payload split across chunks, and how much of it has arrived. */
  private payload: Buffer = EMPTY;
  private filled = 0;

  // The data message being received.
  /** Opcode (1 or 2) of the data message whose final frame has not been received yet; 0 when none. */
  private messageOpcode = 0;
  private messageCompressed = false;
  private messageSize = 0;
  /** The open message is uncompressed text and `validateUtf8` is on. */
  private checkText = false;
  private utf8: Utf8Validator | undefined;

  private paused = false;
  private parsing = false;
  private failed = false;

  constructor(options: FrameParserOptions) {
    this.onFrame = options.onFrame;
    this.onError = options.onError;
    this.context = options.context;
    this.expectMask = options.role === 'server';
    this.maxFrameSize = options.maxFrameSize ?? DEFAULT_MAX_FRAME_SIZE;
    this.maxMessageSize = options.maxMessageSize ?? Infinity;
    this.allowRsv1 = options.allowRsv1 ?? false;
    this.validateUtf8 = options.validateUtf8 ?? true;
    if (options.role !== 'server' && options.role !== 'client') {
      throw new BadOptionError('role', `must be 'server' or 'client', got ${String(options.role)}`);
    }
    if (!(this.maxFrameSize >= 0)) throw new BadOptionError('maxFrameSize', `must be a non-negative number, got ${this.maxFrameSize}`);
    if (!(this.maxMessageSize >= 0)) throw new BadOptionError('maxMessageSize', `must be a non-negative number, got ${this.maxMessageSize}`);
  }

  /** True while paused. */
  get isPaused(): boolean {
    return this.paused;
  }

  /** True once a violation was reported or `stop()` was called; all input is then ignored. */
  get errored(): boolean {
    return this.failed;
  }

  /** True while a fragmented data message is open (its final frame not yet received). */
  get inMessage(): boolean {
    return this.messageOpcode !== 0;
  }

  /**
   * Parse `chunk`. The parser takes ownership of it: masked payloads are unmasked in place and
   * payloads are handed out as views of it, so the caller must not reuse the bytes.
   */
  push(chunk: Buffer): void {
    if (this.failed) return;
    if (this.parsing || this.paused || this.pos < this.chunk.length) {
      (this.queue ??= []).push(chunk);
      if (this.parsing || this.paused) return;
    } else {
      this.chunk = chunk;
      this.pos = 0;
    }
    this.run();
  }

  /**
   * Stop for good: ignore all further input and drop the buffered bytes, without reporting an
   * error (for a session that is closing or failing on its own account).
   */
  stop(): void {
    this.failed = true;
    this.chunk = EMPTY;
    this.pos = 0;
    this.payload = EMPTY;
    this.queue = undefined;
    this.queueHead = 0;
  }

  /** Stop delivering frames after the current one, until `resume()`. */
  pause(): void {
    this.paused = true;
  }

  /** Deliver the frames held back since `pause()`, then carry on. */
  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    if (!this.parsing && !this.failed) this.run();
  }

  private run(): void {
    this.parsing = true;
    try {
      for (;;) {
        this.parseChunk();
        if (this.failed || this.paused) return;
        const queue = this.queue;
        if (queue === undefined || this.queueHead === queue.length) {
          if (queue !== undefined) queue.length = 0;
          this.queueHead = 0;
          this.chunk = EMPTY;
          this.pos = 0;
          return;
        }
        this.chunk = queue[this.queueHead]!;
        queue[this.queueHead++] = EMPTY;
        this.pos = 0;
      }
    } finally {
      this.parsing = false;
    }
  }

  /** Parse `this.chunk` from `this.pos` until it is used up, the parser is paused, or it failed. */
  private parseChunk(): void {
    const buf = this.chunk;
    const len = buf.length;
    let pos = this.pos;
    while (pos < len) {
      if (this.state === HEADER) {
        const avail = len - pos;
        if (this.headerHave === 0 && avail >= 2) {
          // Common case: the first two bytes are here; often the whole header is.
          const b1 = buf[pos + 1]!;
          if (!this.readInfo(buf[pos]!, b1)) return;
          const need = headerSize(b1);
          if (avail < need) {
            const header = (this.header ??= Buffer.allocUnsafe(14));
            for (let i = 0; i < avail; i++) header[i] = buf[pos + i]!;
            this.headerHave = avail;
            this.headerNeed = need;
            pos = len;
            break;
          }
          if (!this.readRest(buf, pos + 2)) return;
          pos += need;
        } else {
          // A header split across chunks.
          const header = (this.header ??= Buffer.allocUnsafe(14));
          if (this.headerHave < 2) {
            header[this.headerHave++] = buf[pos++]!;
            if (this.headerHave < 2) continue;
            if (!this.readInfo(header[0]!, header[1]!)) return;
            this.headerNeed = headerSize(header[1]!);
          }
          const take = Math.min(this.headerNeed - this.headerHave, len - pos);
          for (let i = 0; i < take; i++) header[this.headerHave + i] = buf[pos + i]!;
          this.headerHave += take;
          pos += take;
          if (this.headerHave < this.headerNeed) continue;
          this.headerHave = 0;
          if (!this.readRest(header, 2)) return;
        }
        this.state = PAYLOAD;
        this.filled = 0;
        if (this.payloadLength === 0) {
          if (!this.deliver(EMPTY, pos, false)) return;
          continue;
        }
      }

      // PAYLOAD
      const length = this.payloadLength;
      let filled = this.filled;
      const avail = len - pos;
      if (filled === 0 && avail >= length) {
        // The whole payload is in this chunk: hand out a view of it.
        const payload = buf.subarray(pos, pos + length);
        pos += length;
        if (!this.noMask) unmask(payload, keyAt(this.maskKey, 0));
        if (!this.deliver(payload, pos, true)) return;
        continue;
      }
      const n = avail < length - filled ? avail : length - filled;
      if (n > 0) {
        // Allocated when the first piece arrives, not on the header alone.
        if (filled === 0) this.payload = Buffer.allocUnsafe(length);
        buf.copy(this.payload, filled, pos, pos + n);
        pos += n;
        if (!this.noMask || (this.checkText && this.opcode < 8)) {
          const piece = this.payload.subarray(filled, filled + n);
          if (!this.noMask) unmask(piece, keyAt(this.maskKey, filled));
          // Validate as the bytes arrive: invalid text fails in the chunk that holds it.
          if (this.checkText && this.opcode < 8 && !this.utf8!.push(piece)) {
            this.fail(WsErrorCode.InvalidUtf8, 1007, 'Text message is not valid UTF-8');
            return;
          }
        }
        filled += n;
        this.filled = filled;
      }
      if (filled < length) break;
      const payload = this.payload;
      this.payload = EMPTY;
      if (!this.deliver(payload, pos, false)) return;
    }
    this.pos = pos;
  }

  /**
   * Check the first two header bytes and record the frame's flags. Everything that can be
   * decided from them is decided here, before the rest of the header arrives.
   */
  private readInfo(b0: number, b1: number): boolean {
    const fin = (b0 & 0x80) !== 0;
    const rsv1 = (b0 & 0x40) !== 0;
    const opcode = b0 & 0x0f;
    const len7 = b1 & 0x7f;
    const masked = (b1 & 0x80) !== 0;
    if ((b0 & 0x30) !== 0) return this.fail(WsErrorCode.ReservedBits, 1002, 'RSV2 and RSV3 must be clear');
    if (opcode >= 8) {
      if (opcode > 10) return this.fail(WsErrorCode.UnknownOpcode, 1002, `Unknown opcode ${opcode}`);
      if (!fin) return this.fail(WsErrorCode.BadControlFrame, 1002, `Fragmented control frame (opcode ${opcode})`);
      if (len7 > MAX_CONTROL_PAYLOAD) {
        return this.fail(WsErrorCode.BadControlFrame, 1002, `Control frame (opcode ${opcode}) payload over 125 bytes`);
      }
      if (opcode === 8 && len7 === 1) {
        return this.fail(WsErrorCode.BadControlFrame, 1002, 'Close frame payload of 1 byte: a status code takes 2');
      }
      if (rsv1) return this.fail(WsErrorCode.ReservedBits, 1002, `RSV1 set on a control frame (opcode ${opcode})`);
    } else if (opcode === 0) {
      if (this.messageOpcode === 0) {
        return this.fail(WsErrorCode.BadFragmentation, 1002, 'Continuation frame without a message to continue');
      }
      if (rsv1) return this.fail(WsErrorCode.ReservedBits, 1002, 'RSV1 set on a continuation frame');
    } else if (opcode <= 2) {
      if (this.messageOpcode !== 0) {
        return this.fail(
          WsErrorCode.BadFragmentation,
          1002,
          `${opcode === 1 ? 'Text' : 'Binary'} frame inside an unfinished fragmented message`,
        );
      }
      if (rsv1 && !this.allowRsv1) return this.fail(WsErrorCode.ReservedBits, 1002, 'RSV1 set but no extension uses it');
    } else {
      return this.fail(WsErrorCode.UnknownOpcode, 1002, `Unknown opcode ${opcode}`);
    }
    if (masked !== this.expectMask) {
      return this.fail(
        WsErrorCode.BadMask,
        1002,
        masked ? 'Masked frame received by a client' : 'Unmasked frame received by a server',
      );
    }
    this.fin = fin;
    this.rsv1 = rsv1;
    this.opcode = opcode;
    this.masked = masked;
    return true;
  }

  /** Read the extended length and the mask key from `src` at `p`, then check the frame's size. */
  private readRest(src: Buffer, p: number): boolean {
    let length = src[p - 1]! & 0x7f;
    if (length === 126) {
      length = (src[p]! << 8) | src[p + 1]!;
      p += 2;
    } else if (length === 127) {
      const hi = ((src[p]! << 24) | (src[p + 1]! << 16) | (src[p + 2]! << 8) | src[p + 3]!) >>> 0;
      const lo = ((src[p + 4]! << 24) | (src[p + 5]! << 16) | (src[p + 6]! << 8) | src[p + 7]!) >>> 0;
      if (hi >= 0x80000000) return this.fail(WsErrorCode.BadLength, 1002, '64-bit payload length with the most significant bit set');
      length = hi * 0x100000000 + lo;
      p += 8;
    }
    if (this.masked) {
      const key = ((src[p]! << 24) | (src[p + 1]! << 16) | (src[p + 2]! << 8) | src[p + 3]!) >>> 0;
      this.maskKey = key;
      this.noMask = key === 0;
    } else {
      this.noMask = true;
    }
    if (length > this.maxFrameSize || length > kMaxLength) {
      const max = Math.min(this.maxFrameSize, kMaxLength);
      return this.fail(WsErrorCode.FrameTooBig, 1009, `Frame payload of ${length} bytes (at most ${max})`);
    }
    this.payloadLength = length;
    const opcode = this.opcode;
    if (opcode < 8) {
      if (opcode !== 0) {
        this.messageOpcode = opcode;
        this.messageCompressed = this.rsv1;
        this.messageSize = length;
        this.checkText = opcode === 1 && this.validateUtf8 && !this.rsv1;
        if (this.checkText) this.utf8 ??= new Utf8Validator();
      } else {
        this.messageSize += length;
      }
      if (this.messageSize > this.maxMessageSize && !this.messageCompressed) {
        return this.fail(
          WsErrorCode.MessageTooBig,
          1009,
          `Message of more than ${this.maxMessageSize} bytes (${this.messageSize} so far)`,
        );
      }
    }
    return true;
  }

  /**
   * Finish the current frame: check text, close the message on FIN, and hand the frame out.
   * `validate` is false when the payload was already validated piece by piece (or is empty).
   * Returns false if parsing must stop here (violation or pause).
   */
  private deliver(payload: Buffer, pos: number, validate: boolean): boolean {
    const opcode = this.opcode;
    const fin = this.fin;
    if (opcode < 8) {
      if (this.checkText) {
        if (validate && !this.utf8!.push(payload)) return this.fail(WsErrorCode.InvalidUtf8, 1007, 'Text message is not valid UTF-8');
        if (fin && !this.utf8!.end()) return this.fail(WsErrorCode.InvalidUtf8, 1007, 'Text message ends inside a UTF-8 sequence');
      }
      if (fin) this.messageOpcode = 0;
    }
    this.state = HEADER;
    this.pos = pos;
    this.onFrame.call(this.context, fin, this.rsv1, opcode, payload);
    return !(this.paused || this.failed);
  }

  private fail(code: string, closeCode: number, message: string): false {
    this.stop();
    this.onError.call(this.context, new ProtocolViolation(code, closeCode, message));
    return false;
  }
}

/** `key` (big-endian) as 4 bytes, rotated to the phase of byte `offset` of the payload. */
function keyAt(key: number, offset: number): Buffer {
  const k = unmaskKey;
  const shift = (offset & 3) << 3;
  const rotated = shift === 0 ? key : ((key << shift) | (key >>> (32 - shift))) >>> 0;
  k[0] = rotated >>> 24;
  k[1] = (rotated >>> 16) & 0xff;
  k[2] = (rotated >>> 8) & 0xff;
  k[3] = rotated & 0xff;
  return k;
}

/** Header size implied by the second header byte: 2 + extended length + mask key. */
function headerSize(b1: number): number {
  const len7 = b1 & 0x7f;
  return 2 + (len7 < 126 ? 0 : len7 === 126 ? 2 : 8) + (b1 & 0x80 ? 4 : 0);
}

// ---------------------------------------------------------------------------------------------
// Building
// ---------------------------------------------------------------------------------------------

/** Unmasked payloads up to this size are copied behind their header into one buffer (one write). */
export const COALESCE_MAX = 1024;

/** Payloads up to this size are copied by a loop: below it `Buffer#copy`'s fixed cost dominates. */
const LOOP_COPY_MAX = 32;

/** Largest payload length a frame can announce in JavaScript numbers: 2^53 - 1. */
const MAX_LENGTH = Number.MAX_SAFE_INTEGER;

/** Scratch for the mask key of the frame being built (the builder is synchronous). */
const keyScratch = Buffer.alloc(4);

/** Header size for a payload of `length` bytes, with or without a mask key. */
export function headerLength(length: number, masked: boolean): number {
  return (length < 126 ? 2 : length < 65536 ? 4 : 10) + (masked ? 4 : 0);
}

/** Throws unless the opcode and flags make a frame that may be sent with `length` payload bytes. */
function checkFrame(opcode: number, fin: boolean, rsv1: boolean, length: number): void {
  if (opcode === 1 || opcode === 2) return;
  if (opcode === 0) {
    if (rsv1) throw new WebSocketError(WsErrorCode.BadFrame, 'RSV1 cannot be set on a continuation frame');
    return;
  }
  if (opcode !== 8 && opcode !== 9 && opcode !== 10) throw new WebSocketError(WsErrorCode.BadFrame, `Invalid opcode ${opcode}`);
  if (!fin) throw new WebSocketError(WsErrorCode.BadFrame, 'Control frames cannot be fragmented');
  if (rsv1) throw new WebSocketError(WsErrorCode.BadFrame, 'RSV1 cannot be set on a control frame');
  if (length > MAX_CONTROL_PAYLOAD) {
    throw new WebSocketError(WsErrorCode.BadFrame, `Control frame payload of ${length} bytes (at most 125)`);
  }
}

/** Write a header (without the mask key) at `target[at]`; returns the offset where the mask key or payload goes. */
function writeHeader(target: Buffer, at: number, opcode: number, fin: boolean, rsv1: boolean, length: number, masked: boolean): number {
  target[at] = (fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | opcode;
  const m = masked ? 0x80 : 0;
  if (length < 126) {
    target[at + 1] = m | length;
    return at + 2;
  }
  if (length < 65536) {
    target[at + 1] = m | 126;
    target[at + 2] = length >>> 8;
    target[at + 3] = length & 0xff;
    return at + 4;
  }
  target[at + 1] = m | 127;
  const hi = Math.floor(length / 0x100000000);
  const lo = length >>> 0;
  target[at + 2] = hi >>> 24;
  target[at + 3] = (hi >>> 16) & 0xff;
  target[at + 4] = (hi >>> 8) & 0xff;
  target[at + 5] = hi & 0xff;
  target[at + 6] = lo >>> 24;
  target[at + 7] = (lo >>> 16) & 0xff;
  target[at + 8] = (lo >>> 8) & 0xff;
  target[at + 9] = lo & 0xff;
  return at + 10;
}

/**
 * A frame header (2 to 14 bytes) for a payload of `payloadLength` bytes, using the shortest
 * length encoding, with `maskKey` (4 bytes) appended and the MASK bit set when given.
 * Throws a {@link WebSocketError} (`BadFrame`) for an invalid opcode/flag/length combination.
 */
export function frameHeader(opcode: number, fin: boolean, rsv1: boolean, payloadLength: number, maskKey?: Buffer): Buffer {
  if (!Number.isInteger(payloadLength) || payloadLength < 0 || payloadLength > MAX_LENGTH) {
    throw new WebSocketError(WsErrorCode.BadFrame, `Invalid payload length ${payloadLength}`);
  }
  checkFrame(opcode, fin, rsv1, payloadLength);
  const masked = maskKey !== undefined;
  if (masked && maskKey.length !== 4) throw new WebSocketError(WsErrorCode.BadFrame, `Mask key of ${maskKey.length} bytes (must be 4)`);
  const out = Buffer.allocUnsafe(headerLength(payloadLength, masked));
  const at = writeHeader(out, 0, opcode, fin, rsv1, payloadLength, masked);
  if (masked) {
    out[at] = maskKey[0]!;
    out[at + 1] = maskKey[1]!;
    out[at + 2] = maskKey[2]!;
    out[at + 3] = maskKey[3]!;
  }
  return out;
}

export interface EncodeFrameOptions {
  /** Final frame of its message (default true). */
  fin?: boolean;
  /** Set RSV1 (a compressed message's first frame; default false). */
  rsv1?: boolean;
  /** Mask the payload with a fresh random key, as clients must (default false). */
  mask?: boolean;
}

/** One masked frame in one buffer: header, fresh key from the pool, masked copy of `payload`. */
function maskedFrame(opcode: number, fin: boolean, rsv1: boolean, payload: Buffer): Buffer {
  const length = payload.length;
  const hlen = headerLength(length, true);
  const frame = Buffer.allocUnsafe(hlen + length);
  const at = writeHeader(frame, 0, opcode, fin, rsv1, length, true);
  maskPool.writeKey(keyScratch, 0);
  frame[at] = keyScratch[0]!;
  frame[at + 1] = keyScratch[1]!;
  frame[at + 2] = keyScratch[2]!;
  frame[at + 3] = keyScratch[3]!;
  if (length > 0) mask(payload, keyScratch, frame, hlen, length);
  return frame;
}

/**
 * One unmasked frame of at most {@link COALESCE_MAX} payload bytes, header and payload in one
 * buffer, without {@link encodeFrame}'s checks: for callers that only make valid frames.
 * @internal
 */
export function unmaskedFrame(opcode: number, fin: boolean, rsv1: boolean, payload: Buffer): Buffer {
  const length = payload.length;
  const hlen = length < 126 ? 2 : 4;
  const frame = Buffer.allocUnsafe(hlen + length);
  writeHeader(frame, 0, opcode, fin, rsv1, length, false);
  if (length <= LOOP_COPY_MAX) {
    for (let i = 0; i < length; i++) frame[hlen + i] = payload[i]!;
  } else {
    payload.copy(frame, hlen);
  }
  return frame;
}

/** The header of an unmasked frame whose payload is written separately. */
function bareHeader(opcode: number, fin: boolean, rsv1: boolean, length: number): Buffer {
  const header = Buffer.allocUnsafe(length < 65536 ? 4 : 10);
  writeHeader(header, 0, opcode, fin, rsv1, length, false);
  return header;
}

/**
 * Encode one frame. Unmasked: `[header, payload]` with the payload not copied, or one buffer
 * holding both for payloads up to {@link COALESCE_MAX} bytes. Masked: one buffer holding the
 * header and a masked copy of the payload, under a fresh key from the CSPRNG pool.
 * Throws a {@link WebSocketError} (`BadFrame`) for an invalid opcode/flag/length combination.
 */
export function encodeFrame(opcode: number, payload: Buffer, options?: EncodeFrameOptions): Buffer[] {
  let fin = true;
  let rsv1 = false;
  let doMask = false;
  if (options !== undefined) {
    fin = options.fin ?? true;
    rsv1 = options.rsv1 ?? false;
    doMask = options.mask ?? false;
  }
  const length = payload.length;
  checkFrame(opcode, fin, rsv1, length);
  if (doMask) return [maskedFrame(opcode, fin, rsv1, payload)];
  if (length <= COALESCE_MAX) return [unmaskedFrame(opcode, fin, rsv1, payload)];
  return [bareHeader(opcode, fin, rsv1, length), payload];
}

export interface EncodeMessageOptions {
  /** Largest payload per frame (default: no split). */
  maxFrameSize?: number;
  /** Mask every frame (default false). */
  mask?: boolean;
  /** Set RSV1 on the first frame (default false). */
  rsv1?: boolean;
}

/**
 * Encode a whole message, split into frames of at most `maxFrameSize` payload bytes: the first
 * with `opcode` (and RSV1 if asked), the others continuations, the last with FIN. The buffers
 * are in wire order, ready for one `writev`; unmasked payloads are not copied (beyond the small
 * frames coalesced as in {@link encodeFrame}). Control messages are never split.
 */
export function encodeMessage(opcode: number, payload: Buffer, options?: EncodeMessageOptions): Buffer[] {
  const maxFrameSize = options?.maxFrameSize ?? Infinity;
  const doMask = options?.mask ?? false;
  const rsv1 = options?.rsv1 ?? false;
  if (!(maxFrameSize >= 1)) throw new BadOptionError('maxFrameSize', `must be at least 1, got ${maxFrameSize}`);
  if (opcode === 0) throw new WebSocketError(WsErrorCode.BadFrame, 'A message cannot start with a continuation frame');
  const length = payload.length;
  checkFrame(opcode, true, rsv1, length);
  if (length <= maxFrameSize) return encodeFrame(opcode, payload, { fin: true, rsv1, mask: doMask });
  const out: Buffer[] = [];
  let start = 0;
  let op = opcode;
  let first = rsv1;
  while (start < length) {
    const end = length - start > maxFrameSize ? start + maxFrameSize : length;
    const part = payload.subarray(start, end);
    const fin = end === length;
    if (doMask) out.push(maskedFrame(op, fin, first, part));
    else if (part.length <= COALESCE_MAX) out.push(unmaskedFrame(op, fin, first, part));
    else out.push(bareHeader(op, fin, first, part.length), part);
    start = end;
    op = Opcode.Continuation;
    first = false;
  }
  return out;
}
