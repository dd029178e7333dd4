/**
 * The messages of the ws-deflate bench and how its client sends them: JSON-like text that
 * compresses the way application messages do, the permessage-deflate offers it can make, and the
 * precompressed client frames. Pure: imported by the load generator (ws-deflate-load.ts) and by
 * bench/ws-deflate.ts, which reports the sizes.
 *
 * Every message is a JSON array of records (an order event: ids, a timestamp, a user, items,
 * a status and tags) drawn from a seeded generator, padded to exactly the size asked for; message
 * `i` of a size is the same in every run and every process. Keys repeat within and across
 * messages, values mostly do not, so level 1 compresses a message to about a third and a window of
 * earlier messages helps a little more, as with real traffic. Messages are all different, so no
 * server can echo one by referring to an identical earlier one.
 */

import { deflateRawSync } from 'node:zlib';
import { maskedFrame } from './ws-frame.js';

/** What the client offers in `Sec-WebSocket-Extensions`, and so what both servers agree to. */
export type OfferKind = 'default' | 'client-nct' | 'no-takeover';

export const OFFERS: readonly OfferKind[] = ['default', 'client-nct', 'no-takeover'];

export interface Offer {
  header: string;
  /** What the server must answer: context takeover in each direction (window bits stay at 15). */
  serverNoContextTakeover: boolean;
  clientNoContextTakeover: boolean;
  describe: string;
}

export const OFFER: Record<OfferKind, Offer> = {
  // What Chrome and Firefox send.
  'default': {
    header: 'permessage-deflate; client_max_window_bits',
    serverNoContextTakeover: false,
    clientNoContextTakeover: false,
    describe: 'a browser\'s offer (permessage-deflate; client_max_window_bits): context takeover both ways, 15-bit windows',
  },
  'client-nct': {
    header: 'permessage-deflate; client_no_context_takeover; client_max_window_bits',
    serverNoContextTakeover: false,
    clientNoContextTakeover: true,
    describe: 'client_no_context_takeover offered: the server keeps context takeover, the client compresses each message alone',
  },
  'no-takeover': {
    header: 'permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits',
    serverNoContextTakeover: true,
    clientNoContextTakeover: true,
    describe: 'no context takeover either way: every message compressed alone',
  },
};

/** The client's LZ77 window (client_max_window_bits 15), as a dictionary length. */
const WINDOW = 32 * 1024;
/** Distinct messages of one size, cycled: their total is far beyond any window, so no message is ever seen twice within reach. */
const POOL_BYTES = 256 * 1024;
const MIN_POOL = 4;

const WORDS = ['order.created', 'order.updated', 'order.shipped', 'payment.settled', 'cart.changed', 'refund.requested'];
const NAMES = ['Alice Martin', 'Bob Nguyen', 'Chiara Rossi', 'Dmitri Ivanov', 'Emeka Obi', 'Fatima Zahra', 'Grace Lee', 'Hiro Tanaka'];
const COUNTRIES = ['FR', 'US', 'IT', 'DE', 'NG', 'MA', 'KR', 'JP', 'BR', 'IN'];
const STATUSES = ['pending', 'paid', 'shipped', 'delivered', 'cancelled'];
const TAGS = ['priority', 'gift', 'fragile', 'bulk', 'repeat', 'promo', 'express'];
const NOTE = ['please', 'leave', 'the', 'parcel', 'at', 'door', 'call', 'before', 'delivery', 'gift', 'wrap', 'no', 'invoice', 'back', 'office', 'weekend', 'fragile', 'handle', 'with', 'care'];
const ALNUM = 'abcdefghijklmnopqrstuvwxyz0123456789';

/** mulberry32: a small seeded generator, the same everywhere. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function record(r: () => number): string {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const hex = (n: number): string => Array.from({ length: n }, () => ALNUM[Math.floor(r() * 16)]).join('');
  const items = Array.from({ length: 1 + Math.floor(r() * 3) }, () =>
    `{"sku":"SKU-${10000 + Math.floor(r() * 90000)}","qty":${1 + Math.floor(r() * 9)},"price":${(r() * 200).toFixed(2)}}`);
  const tags = Array.from({ length: Math.floor(r() * 3) }, () => `"${pick(TAGS)}"`);
  const ts = new Date(Date.UTC(2026, 10, 22) + Math.floor(r() * 86_400_000)).toISOString();
  return `{"id":${Math.floor(r() * 1e9)},"type":"${pick(WORDS)}","ts":"${ts}","user":{"id":"u_${hex(8)}","name":"${pick(NAMES)}",`
    + `"country":"${pick(COUNTRIES)}"},"items":[${items.join(',')}],"status":"${pick(STATUSES)}","tags":[${tags.join(',')}]}`;
}

/** Message `index` of `size` bytes: a JSON array of records, exactly `size` bytes of ASCII. */
export function jsonMessage(size: number, index: number): Buffer {
  const r = rng(Math.imul(size, 2654435761) ^ Math.imul(index + 1, 40503));
  // Free text from a small vocabulary, as a note field would hold.
  const pad = (n: number): string => {
    let t = '';
    while (t.length < n) t += `${NOTE[Math.floor(r() * NOTE.length)]} `;
    return t.slice(0, n);
  };
  const padOpen = '{"note":"';
  const padClose = '"}';
  // `[`, records and commas, a last `{"pad":"..."}` filling the rest, `]`.
  let s = '[';
  for (;;) {
    const rec = record(r);
    if (s.length + rec.length + 1 + padOpen.length + padClose.length + 1 > size) break;
    s += `${rec},`;
  }
  const fill = size - s.length - padOpen.length - padClose.length - 1;
  s = fill >= 0 ? `${s}${padOpen}${pad(fill)}${padClose}]` : pad(size);
  return Buffer.from(s, 'latin1');
}

/** How many distinct messages of `size` bytes the client cycles through. */
export function poolSize(size: number): number {
  return Math.max(MIN_POOL, Math.ceil(POOL_BYTES / size));
}

/** The last `WINDOW` bytes of the payloads, as one dictionary (undefined when there are none). */
export function windowOf(payloads: readonly Buffer[]): Buffer | undefined {
  const parts: Buffer[] = [];
  let total = 0;
  for (let i = payloads.length - 1; i >= 0 && total < WINDOW; i--) {
    parts.unshift(payloads[i]!);
    total += payloads[i]!.length;
  }
  if (total === 0) return undefined;
  const all = Buffer.concat(parts);
  return all.subarray(Math.max(0, all.length - WINDOW));
}

/** The pool of one size: payloads, and the client frames that carry them compressed. */
export interface MessagePool {
  size: number;
  payloads: Buffer[];
  frames: Buffer[];
  /** The compressed payloads' total, for the ratio. */
  compressedBytes: number;
}

/**
 * Compress the pool's messages once, as a client would (zlib's default level 6, 15-bit window),
 * each into a masked frame ready to write again and again. A connection sends them in order,
 * from the first, cycling. With client context takeover (`takeover`), message `k` is compressed
 * with the payloads of messages 0 to k-1 as its dictionary: the server's inflater holds them at
 * the same distances, since it has inflated exactly those messages in that order (message 0 has
 * no dictionary, so it is valid again at the start of each cycle). Without, each message is
 * compressed alone, which is valid in any order.
 */
export function buildPool(size: number, takeover: boolean, maskKey: Buffer): MessagePool {
  const payloads = Array.from({ length: poolSize(size) }, (_, i) => jsonMessage(size, i));
  let compressedBytes = 0;
  const frames = payloads.map((p, k) => {
    const dictionary = takeover && k > 0 ? windowOf(payloads.slice(0, k)) : undefined;
    const out = syncFlushed(p, dictionary);
    compressedBytes += out.length;
    // FIN, RSV1 (compressed), text.
    return maskedFrame(0x80 | 0x40 | 0x1, out, maskKey);
  });
  return { size, payloads, frames, compressedBytes };
}

/**
 * The payload compressed as browsers and both servers do (§7.2.1): ended by a sync flush, not a
 * final block, and the flush's 0x00 0x00 0xff 0xff tail removed.
 */
function syncFlushed(payload: Buffer, dictionary: Buffer | undefined): Buffer {
  const out = deflateRawSync(payload, { finishFlush: 2 /* Z_SYNC_FLUSH */, ...(dictionary === undefined ? {} : { dictionary }) });
  if (out.length < 4 || out.readUInt32BE(out.length - 4) !== 0x0000ffff) throw new Error('a sync-flushed DEFLATE stream ends with 00 00 ff ff');
  return out.subarray(0, out.length - 4);
}
