/** Session options: limits and timeouts, validated, with safe defaults. */

import { BadOptionError } from '@corral/listener';

/** What to do with a peer that does not read what we send. */
export type SlowReaderPolicy = 'pause' | 'close';

export interface SessionOptions {
  /** Largest frame accepted, in bytes (default 16 MiB). Larger: close 1009. */
  maxFrameSize?: number;
  /** Largest message accepted, after reassembly, in bytes (default 64 MiB). Larger: close 1009. */
  maxMessageSize?: number;
  /** Outgoing messages larger than this are sent as several frames (default 16 MiB). */
  outgoingFrameSize?: number;
  /** Close after this many ms without a byte from the peer (default 60000; Infinity disables). */
  idleTimeout?: number;
  /** Wait this long for the peer's close frame after ours (default 5000). */
  closeTimeout?: number;
  /** Send a ping every this many ms (default Infinity: no keepalive pings). */
  pingInterval?: number;
  /** After a keepalive ping, close if no pong comes within this many ms (default 10000). */
  pongTimeout?: number;
  /** Bytes queued for the peer above which it counts as a slow reader (default 4 MiB). */
  highWaterMark?: number;
  /**
   * A slow reader: `'pause'` (default) stops reading from it and holds `info` messages until it
   * drains; `'close'` closes it with 1008.
   */
  slowReader?: SlowReaderPolicy;
  /** `info` messages held for a paused or busy session before it is closed with 1013 (default 1024). */
  maxQueuedMessages?: number;
  /** Validate UTF-8 of text messages and close reasons (default true; RFC 6455 requires it). */
  validateUtf8?: boolean;
}

export type ResolvedSessionOptions = Required<SessionOptions>;

export const SESSION_DEFAULTS: ResolvedSessionOptions = {
  maxFrameSize: 16 * 1024 * 1024,
  maxMessageSize: 64 * 1024 * 1024,
  outgoingFrameSize: 16 * 1024 * 1024,
  idleTimeout: 60_000,
  closeTimeout: 5_000,
  pingInterval: Infinity,
  pongTimeout: 10_000,
  highWaterMark: 4 * 1024 * 1024,
  slowReader: 'pause',
  maxQueuedMessages: 1024,
  validateUtf8: true,
};

const POSITIVE = ['maxFrameSize', 'maxMessageSize', 'outgoingFrameSize', 'highWaterMark', 'maxQueuedMessages'] as const;
const DURATIONS = ['idleTimeout', 'closeTimeout', 'pingInterval', 'pongTimeout'] as const;

/** Validate `opts` over `base`; throws BadOptionError naming the first bad option. */
export function resolveSessionOptions(opts: unknown, base: ResolvedSessionOptions = SESSION_DEFAULTS, prefix = ''): ResolvedSessionOptions {
  if (opts === undefined) return base;
  if (typeof opts !== 'object' || opts === null || Array.isArray(opts)) throw new BadOptionError(prefix || 'options', 'expected an object');
  const o = opts as Record<string, unknown>;
  const out: ResolvedSessionOptions = { ...base };
  for (const key of Object.keys(o)) {
    const value = o[key];
    if (value === undefined) continue;
    const name = `${prefix}${key}`;
    if ((POSITIVE as readonly string[]).includes(key)) {
      if (!(Number.isSafeInteger(value) && (value as number) > 0)) throw new BadOptionError(name, 'expected a positive integer');
    } else if ((DURATIONS as readonly string[]).includes(key)) {
      if (!(value === Infinity || (Number.isSafeInteger(value) && (value as number) > 0))) {
        throw new BadOptionError(name, 'expected a positive integer of milliseconds or Infinity');
      }
    } else if (key === 'slowReader') {
      if (value !== 'pause' && value !== 'close') throw new BadOptionError(name, "expected 'pause' or 'close'");
    } else if (key === 'validateUtf8') {
      if (typeof value !== 'boolean') throw new BadOptionError(name, 'expected a boolean');
    } else {
      throw new BadOptionError(name, 'unknown option');
    }
    (out as unknown as Record<string, unknown>)[key] = value;
  }
  if (out.maxFrameSize > out.maxMessageSize) out.maxFrameSize = out.maxMessageSize;
  return out;
}
