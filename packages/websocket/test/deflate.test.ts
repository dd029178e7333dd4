import { randomBytes } from 'node:crypto';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import {
  constants as zconst, createDeflateRaw, createInflateRaw, deflateRawSync, type DeflateRaw, type InflateRaw,
} from 'node:zlib';
import { BadOptionError } from '@corral/listener';
import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  DEFLATE_DEFAULTS, DeflateErrorCode, ExtensionNegotiationError, type NegotiatedParams, PerMessageDeflate,
  SYNC_DEFLATE_MAX, SYNC_INFLATE_MAX_INPUT, SYNC_INFLATE_MAX_OUTPUT, ZlibLimiter, acceptClientResponse,
  negotiateServer, normalizeDeflateOptions, offerClient, parseExtensionHeader, zlibLimiter,
} from '../src/deflate.js';
import { ProtocolViolation, WsErrorCode } from '../src/errors.js';

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

const TRAILER = Buffer.from([0x00, 0x00, 0xff, 0xff]);

// Memory is measured after a full collection, so garbage left by earlier work does not count.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const DEFAULT_PARAMS: NegotiatedParams = {
  serverNoContextTakeover: false, clientNoContextTakeover: false, serverMaxWindowBits: 15, clientMaxWindowBits: 15,
};

/** A receiver the classic way: one raw inflater for the whole connection (RFC 7692 §7.2.2). */
class ClassicInflater {
  readonly #stream: InflateRaw;
  #out: Buffer[] = [];
  /** A small `chunkSize` makes zlib resolve every distance through its window: a strict check of window bits. */
  constructor(windowBits: number, chunkSize?: number) {
    this.#stream = createInflateRaw({ windowBits, chunkSize });
    this.#stream.on('data', (c: Buffer) => this.#out.push(c));
  }

  inflate(payload: Buffer): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      this.#stream.once('error', reject);
      this.#stream.write(Buffer.concat([payload, TRAILER]));
      this.#stream.flush(zconst.Z_SYNC_FLUSH, () => {
        this.#stream.off('error', reject);
        const out = Buffer.concat(this.#out);
        this.#out = [];
        resolve(out);
      });
    });
  }

  close(): void {
    this.#stream.close();
  }
}

/** A sender the classic way: one raw deflater for the whole connection, sync-flushed per message. */
class ClassicDeflater {
  readonly #stream: DeflateRaw;
  #out: Buffer[] = [];
  constructor(windowBits: number) {
    this.#stream = createDeflateRaw({ windowBits: Math.max(9, windowBits), level: 6 });
    this.#stream.on('data', (c: Buffer) => this.#out.push(c));
  }

  deflate(payload: Buffer): Promise<Buffer> {
    return new Promise((resolve) => {
      this.#stream.write(payload);
      this.#stream.flush(zconst.Z_SYNC_FLUSH, () => {
        const out = Buffer.concat(this.#out);
        this.#out = [];
        expect(out.subarray(-4)).toEqual(TRAILER);
        resolve(out.subarray(0, out.length - 4));
      });
    });
  }

  close(): void {
    this.#stream.close();
  }
}

/** Feed a compressed message to `codec` cut at `cuts`, returning the inflated message. */
async function inflateFrames(codec: PerMessageDeflate, data: Buffer, cuts: readonly number[], maxSize = 64 << 20): Promise<Buffer> {
  const points = [...new Set(cuts.map((c) => c % (data.length + 1)))].filter((c) => c > 0 && c < data.length).sort((a, b) => a - b);
  const frames: Buffer[] = [];
  let start = 0;
  for (const p of points) {
    frames.push(data.subarray(start, p));
    start = p;
  }
  frames.push(data.subarray(start));
  let out: Buffer | null = null;
  for (let i = 0; i < frames.length; i++) {
    const fin = i === frames.length - 1;
    out = await codec.decompress(frames[i]!, fin, maxSize);
    if (!fin) expect(out).toBeNull();
  }
  return out!;
}

/** A message that compresses like JSON traffic, or random bytes. */
function message(size: number, seed: number, random: boolean): Buffer {
  if (random) return randomBytes(size);
  const words = ['"id"', '"name"', '"status"', '"active"', '"price"', '{', '}', ':', ',', '[', ']', String(seed), 'true', 'null'];
  const parts: string[] = [];
  let n = 0;
  let x = seed >>> 0;
  while (n < size) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    const w = words[x % words.length]!;
    parts.push(w);
    n += w.length;
  }
  return Buffer.from(parts.join('')).subarray(0, size);
}

/**
 * A DEFLATE stream of `mib` MiB of zeros in about `mib` KiB: a first block, then the same
 * self-contained block (1 MiB of zeros at distance 1) repeated. Without the trailing sync-flush
 * marker, as a permessage-deflate payload.
 */
function makeBomb(mib: number): Buffer {
  const zeros = Buffer.alloc(1 << 20);
  const first = deflateRawSync(zeros, { level: 9, finishFlush: zconst.Z_SYNC_FLUSH });
  const next = deflateRawSync(zeros, { level: 9, finishFlush: zconst.Z_SYNC_FLUSH, dictionary: zeros.subarray(0, 32 * 1024) });
  const parts = [first];
  for (let i = 1; i < mib; i++) parts.push(next);
  const all = Buffer.concat(parts);
  return all.subarray(0, all.length - 4);
}

/** Buffer equality without a byte-by-byte deep comparison (slow on large buffers). */
function same(actual: Buffer | null | undefined, expected: Buffer): void {
  expect(Buffer.isBuffer(actual)).toBe(true);
  const a = actual!;
  if (a.equals(expected)) return;
  let i = 0;
  while (i < a.length && i < expected.length && a[i] === expected[i]) i++;
  expect.fail(`buffers differ: ${a.length} bytes, expected ${expected.length}; first difference at ${i}`);
}

async function violation(p: unknown): Promise<ProtocolViolation> {
  try {
    await (typeof p === 'function' ? (p as () => unknown)() : p);
  } catch (err) {
    expect(err).toBeInstanceOf(ProtocolViolation);
    return err as ProtocolViolation;
  }
  throw new Error('expected a ProtocolViolation');
}

afterEach(() => {
  vi.useRealTimers();
});

// ---------------------------------------------------------------------------------------------
// Limits first: the memory checks want a process that has not yet inflated anything large.
// ---------------------------------------------------------------------------------------------

describe('decompression bombs', () => {
  it('a 256 MiB bomb in one frame stops at maxSize with 1009, in bounded memory', async () => {
    const bomb = makeBomb(256);
    expect(bomb.length).toBeLessThan(300 * 1024);
    gc();
    const rssBefore = process.resourceUsage().maxRSS; // KiB, the peak so far
    const abBefore = process.memoryUsage().arrayBuffers;
    const codec = new PerMessageDeflate('server', DEFAULT_PARAMS);
    const err = await violation(codec.decompress(bomb, true, 1 << 20));
    expect(err.closeCode).toBe(1009);
    expect(err.code).toBe(WsErrorCode.MessageTooBig);
    const abGrowth = process.memoryUsage().arrayBuffers - abBefore;
    const peakGrowth = (process.resourceUsage().maxRSS - rssBefore) * 1024;
    // Bounded by the limit (1 MiB) plus an output chunk, not by the bomb's 256 MiB.
    expect(abGrowth).toBeLessThan(16 << 20);
    expect(peakGrowth).toBeLessThan(48 << 20);
    // The side stays failed; the zlib job's place was given back.
    expect(() => codec.decompress(Buffer.from([0]), true, 1 << 20)).toThrow(err);
    expect(zlibLimiter().running).toBe(0);
  });

  it('a bomb spread over many frames stops at the frame that passes the limit', async () => {
    const bomb = makeBomb(64);
    const codec = new PerMessageDeflate('client', DEFAULT_PARAMS);
    const frame = 4096;
    let at = -1;
    let err: ProtocolViolation | undefined;
    for (let i = 0; i * frame < bomb.length; i++) {
      const piece = bomb.subarray(i * frame, (i + 1) * frame);
      try {
        await codec.decompress(piece, (i + 1) * frame >= bomb.length, 2 << 20);
      } catch (e) {
        err = e as ProtocolViolation;
        at = i;
        break;
      }
    }
    expect(err?.closeCode).toBe(1009);
    // 2 MiB of zeros take about 2 KiB here: the failure comes within the first frames.
    expect(at).toBeLessThan(4);
  });

  it('small bombs: inline up to the inline cap, then in the background up to maxSize', async () => {
    const bomb = makeBomb(7); // about 7 KiB for 7 MiB
    expect(bomb.length).toBeLessThanOrEqual(SYNC_INFLATE_MAX_INPUT);
    // maxSize within the inline cap: fails inline, synchronously.
    const a = new PerMessageDeflate('server', DEFAULT_PARAMS);
    let thrown: unknown;
    try {
      a.decompress(bomb, true, 32 * 1024);
    } catch (e) {
      thrown = e;
    }
    expect((thrown as ProtocolViolation).closeCode).toBe(1009);
    // Over the inline cap but under maxSize: done again in the background, in full.
    const b = new PerMessageDeflate('server', DEFAULT_PARAMS);
    const r = b.decompress(bomb, true, 16 << 20);
    expect(r).toBeInstanceOf(Promise);
    const out = (await r)!;
    expect(out.length).toBe(7 << 20);
    expect(out.every((x) => x === 0)).toBe(true);
    // Over maxSize: 1009 from the background inflater.
    const c = new PerMessageDeflate('server', DEFAULT_PARAMS);
    expect((await violation(c.decompress(bomb, true, 1 << 20))).closeCode).toBe(1009);
  });

  it('maxSize is inclusive, inline and in the background', async () => {
    for (const size of [1000, SYNC_INFLATE_MAX_OUTPUT + 1000]) {
      const data = message(size, 7, false);
      const compressed = await new PerMessageDeflate('server', DEFAULT_PARAMS).compress(data);
      same(await new PerMessageDeflate('client', DEFAULT_PARAMS).decompress(compressed, true, size), data);
      const err = await violation(() => new PerMessageDeflate('client', DEFAULT_PARAMS).decompress(compressed, true, size - 1));
      expect(err.closeCode).toBe(1009);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------------

describe('normalizeDeflateOptions', () => {
  it('true is every default; false and undefined are off', () => {
    expect(normalizeDeflateOptions(true)).toEqual(DEFLATE_DEFAULTS);
    expect(normalizeDeflateOptions(false)).toBeUndefined();
    expect(normalizeDeflateOptions(undefined)).toBeUndefined();
    expect(DEFLATE_DEFAULTS).toMatchObject({ level: 1, memLevel: 8, threshold: 1024, concurrency: 10, takeoverBytes: 8192 });
  });

  it('overrides, aliases and ws spellings', () => {
    expect(normalizeDeflateOptions({ level: 9, threshold: 0, serverMaxWindowBits: 10, clientMaxWindowBits: true }))
      .toMatchObject({ level: 9, threshold: 0, serverMaxWindowBits: 10, clientMaxWindowBits: 15 });
    expect(normalizeDeflateOptions({ concurrencyLimit: 4 })!.concurrency).toBe(4);
    expect(normalizeDeflateOptions({ releaseAfterIdle: Infinity })!.releaseAfterIdle).toBe(Infinity);
  });

  it.each([
    [{ level: 10 }, 'compress.level'],
    [{ level: 1.5 }, 'compress.level'],
    [{ memLevel: 0 }, 'compress.memLevel'],
    [{ threshold: -1 }, 'compress.threshold'],
    [{ serverNoContextTakeover: 'yes' }, 'compress.serverNoContextTakeover'],
    [{ serverMaxWindowBits: 7 }, 'compress.serverMaxWindowBits'],
    [{ clientMaxWindowBits: 16 }, 'compress.clientMaxWindowBits'],
    [{ clientMaxWindowBits: false }, 'compress.clientMaxWindowBits'],
    [{ takeoverBytes: 40000 }, 'compress.takeoverBytes'],
    [{ releaseAfterIdle: 0 }, 'compress.releaseAfterIdle'],
    [{ concurrency: 0 }, 'compress.concurrency'],
    [{ concurrency: 2, concurrencyLimit: 2 }, 'compress.concurrencyLimit'],
    [{ zlibDeflateOptions: { level: 3 } }, 'compress.zlibDeflateOptions'],
    [{ bogus: 1 }, 'compress.bogus'],
  ])('%j is refused naming %s', (value, option) => {
    expect(() => normalizeDeflateOptions(value)).toThrow(BadOptionError);
    try {
      normalizeDeflateOptions(value);
    } catch (err) {
      expect((err as BadOptionError).option).toBe(option);
    }
  });

  it('names the option it was given as', () => {
    expect(() => normalizeDeflateOptions('on', 'perMessageDeflate')).toThrow(/perMessageDeflate/);
    expect(() => normalizeDeflateOptions({ level: -1 }, 'perMessageDeflate')).toThrow(/perMessageDeflate\.level/);
  });
});

// ---------------------------------------------------------------------------------------------
// Header parsing
// ---------------------------------------------------------------------------------------------

describe('parseExtensionHeader', () => {
  it('reads names, parameters, several offers and several header lines', () => {
    const els = parseExtensionHeader([
      'permessage-deflate; client_max_window_bits; server_max_window_bits=10',
      'x-webkit-deflate-frame, Permessage-Deflate ;Server_No_Context_Takeover',
    ]);
    expect(els.map((e) => e.name)).toEqual(['permessage-deflate', 'x-webkit-deflate-frame', 'permessage-deflate']);
    expect({ ...els[0]!.params }).toEqual({ client_max_window_bits: true, server_max_window_bits: '10' });
    expect({ ...els[2]!.params }).toEqual({ server_no_context_takeover: true });
    expect(els.every((e) => e.error === undefined)).toBe(true);
  });

  it('allows blanks around separators, empty list elements and quoted values', () => {
    const [el] = parseExtensionHeader(' , permessage-deflate ;\tclient_max_window_bits = "10" ; server_max_window_bits="1\\5" ,, ');
    expect(el!.error).toBeUndefined();
    expect({ ...el!.params }).toEqual({ client_max_window_bits: '10', server_max_window_bits: '15' });
    expect(parseExtensionHeader('')).toEqual([]);
    expect(parseExtensionHeader(undefined)).toEqual([]);
  });

  it('flags repeated parameters, whatever their case', () => {
    const [el] = parseExtensionHeader('permessage-deflate; server_max_window_bits=10; SERVER_MAX_WINDOW_BITS=10');
    expect(el!.error).toMatch(/twice/);
  });

  it.each([
    ['permessage-deflate; =10', /parameter name/],
    ['permessage-deflate; a=', /value/],
    ['permessage-deflate; a="b c"', /not a token/],
    ['permessage-deflate; a="unterminated', /unterminated/],
    ['permessage-deflate a', /unexpected/],
    ['"quoted-name"', /extension name/],
    ['permessage-deflate; a=b=c', /unexpected/],
  ])('flags %j as malformed', (header, why) => {
    const [el] = parseExtensionHeader(header);
    expect(el!.error).toMatch(why);
  });

  it('resumes after a malformed element at the next comma outside quotes', () => {
    const els = parseExtensionHeader('permessage-deflate; a="x, y" z, permessage-deflate; client_max_window_bits');
    expect(els).toHaveLength(2);
    expect(els[0]!.error).toBeDefined();
    expect(els[1]!.error).toBeUndefined();
    expect({ ...els[1]!.params }).toEqual({ client_max_window_bits: true });
  });

  it('keeps parameter names off the prototype chain', () => {
    const [el] = parseExtensionHeader('permessage-deflate; __proto__=1; constructor');
    expect(el!.error).toBeUndefined();
    expect(Object.keys(el!.params)).toEqual(['__proto__', 'constructor']);
    expect(negotiateServer('permessage-deflate; __proto__=1')).toBeUndefined();
  });
});

// ---------------------------------------------------------------------------------------------
// Negotiation
// ---------------------------------------------------------------------------------------------

describe('negotiateServer', () => {
  it('accepts a plain offer with the defaults', () => {
    expect(negotiateServer('permessage-deflate')).toEqual({ response: 'permessage-deflate', params: DEFAULT_PARAMS });
  });

  it('answers nothing without an offer it knows', () => {
    expect(negotiateServer(undefined)).toBeUndefined();
    expect(negotiateServer('x-webkit-deflate-frame, foo; bar')).toBeUndefined();
  });

  it.each([
    ['permessage-deflate; server_no_context_takeover', 'permessage-deflate; server_no_context_takeover', { serverNoContextTakeover: true }],
    ['permessage-deflate; client_no_context_takeover', 'permessage-deflate; client_no_context_takeover', { clientNoContextTakeover: true }],
    ['permessage-deflate; server_max_window_bits=10', 'permessage-deflate; server_max_window_bits=10', { serverMaxWindowBits: 10 }],
    ['permessage-deflate; server_max_window_bits=8', 'permessage-deflate; server_max_window_bits=8', { serverMaxWindowBits: 8 }],
    ['permessage-deflate; server_max_window_bits=15', 'permessage-deflate; server_max_window_bits=15', {}],
    ['permessage-deflate; server_max_window_bits="12"', 'permessage-deflate; server_max_window_bits=12', { serverMaxWindowBits: 12 }],
    ['permessage-deflate; client_max_window_bits', 'permessage-deflate', {}],
    ['permessage-deflate; client_max_window_bits=9', 'permessage-deflate; client_max_window_bits=9', { clientMaxWindowBits: 9 }],
    ['permessage-deflate; client_max_window_bits=15', 'permessage-deflate', {}],
  ])('default server, offer %j', (offer, response, params) => {
    expect(negotiateServer(offer)).toEqual({ response, params: { ...DEFAULT_PARAMS, ...params } });
  });

  it.each([
    // [server options, offer, response]
    [{ serverNoContextTakeover: true }, 'permessage-deflate', 'permessage-deflate; server_no_context_takeover'],
    [{ clientNoContextTakeover: true }, 'permessage-deflate', 'permessage-deflate; client_no_context_takeover'],
    [{ serverMaxWindowBits: 12 }, 'permessage-deflate', 'permessage-deflate; server_max_window_bits=12'],
    [{ serverMaxWindowBits: 12 }, 'permessage-deflate; server_max_window_bits=10', 'permessage-deflate; server_max_window_bits=10'],
    [{ serverMaxWindowBits: 12 }, 'permessage-deflate; server_max_window_bits=14', 'permessage-deflate; server_max_window_bits=12'],
    [{ clientMaxWindowBits: 10 }, 'permessage-deflate; client_max_window_bits', 'permessage-deflate; client_max_window_bits=10'],
    [{ clientMaxWindowBits: 10 }, 'permessage-deflate; client_max_window_bits=12', 'permessage-deflate; client_max_window_bits=10'],
    [{ clientMaxWindowBits: 10 }, 'permessage-deflate; client_max_window_bits=9', 'permessage-deflate; client_max_window_bits=9'],
    [{ clientMaxWindowBits: 10 }, 'permessage-deflate', undefined],
    [{ clientMaxWindowBits: 10 }, 'permessage-deflate, permessage-deflate; client_max_window_bits', 'permessage-deflate; client_max_window_bits=10'],
  ])('server %j, offer %j', (options, offer, response) => {
    expect(negotiateServer(offer, options)?.response).toBe(response);
  });

  it.each([
    'permessage-deflate; unknown_param',
    'permessage-deflate; server_no_context_takeover; server_no_context_takeover',
    'permessage-deflate; client_max_window_bits; client_max_window_bits=10',
    'permessage-deflate; server_no_context_takeover=true',
    'permessage-deflate; client_no_context_takeover=1',
    'permessage-deflate; server_max_window_bits',
    'permessage-deflate; server_max_window_bits=7',
    'permessage-deflate; server_max_window_bits=16',
    'permessage-deflate; server_max_window_bits=010',
    'permessage-deflate; server_max_window_bits=ten',
    'permessage-deflate; client_max_window_bits=16',
    'permessage-deflate; client_max_window_bits=0x0f',
    'permessage-deflate; client_max_window_bits="1 0"',
    'permessage-deflate; server_max_window_bits=10 10',
  ])('declines the malformed offer %j (and takes the next one)', (offer) => {
    expect(negotiateServer(offer)).toBeUndefined();
    const next = negotiateServer(`${offer}, permessage-deflate; client_no_context_takeover`);
    expect(next?.response).toBe('permessage-deflate; client_no_context_takeover');
  });

  it('declines an offer whose quoted value never ends (it runs to the end of the header)', () => {
    expect(negotiateServer('permessage-deflate; a="x, permessage-deflate')).toBeUndefined();
  });

  it('follows RFC 7692 §7.1 for every offer under several policies', () => {
    const policies = [
      {}, { serverNoContextTakeover: true, clientNoContextTakeover: true },
      { serverMaxWindowBits: 9, clientMaxWindowBits: 11 }, { serverMaxWindowBits: 13, clientMaxWindowBits: 8 },
    ];
    const bitsChoices: (number | undefined)[] = [undefined, 8, 9, 10, 11, 12, 13, 14, 15];
    let checked = 0;
    for (const policy of policies) {
      const opts = normalizeDeflateOptions(policy)!;
      for (const snct of [false, true]) for (const cnct of [false, true]) for (const smwb of bitsChoices) {
        for (const cmwb of [...bitsChoices, true as const]) {
          let offer = 'permessage-deflate';
          if (snct) offer += '; server_no_context_takeover';
          if (cnct) offer += '; client_no_context_takeover';
          if (smwb !== undefined) offer += `; server_max_window_bits=${smwb}`;
          if (cmwb === true) offer += '; client_max_window_bits';
          else if (cmwb !== undefined) offer += `; client_max_window_bits=${cmwb}`;
          const got = negotiateServer(offer, policy);
          checked++;
          if (cmwb === undefined && opts.clientMaxWindowBits < 15) {
            expect(got).toBeUndefined();
            continue;
          }
          const p = got!.params;
          // Context takeover: what was asked for, and what the server itself wants.
          expect(p.serverNoContextTakeover).toBe(snct || opts.serverNoContextTakeover);
          expect(p.clientNoContextTakeover).toBe(cnct || opts.clientNoContextTakeover);
          // Windows: never above what the offer allows nor what the server allows.
          expect(p.serverMaxWindowBits).toBe(Math.min(smwb ?? 15, opts.serverMaxWindowBits));
          const clientCap = cmwb === undefined || cmwb === true ? 15 : cmwb;
          expect(p.clientMaxWindowBits).toBe(cmwb === undefined ? 15 : Math.min(clientCap, opts.clientMaxWindowBits));
          // The answer states the agreement and is a valid response for a client to parse.
          const [answer] = parseExtensionHeader(got!.response);
          expect(answer!.error).toBeUndefined();
          if (smwb !== undefined) expect(answer!.params.server_max_window_bits).toBe(String(p.serverMaxWindowBits));
          // §7.1.2.2: no client_max_window_bits in the answer unless offered.
          if (cmwb === undefined) expect(answer!.params.client_max_window_bits).toBeUndefined();
        }
      }
    }
    expect(checked).toBe(4 * 2 * 2 * 9 * 10);
  });
});

describe('offerClient / acceptClientResponse', () => {
  it('offers client_max_window_bits, bare or with a value, and what the options ask of the server', () => {
    expect(offerClient()).toBe('permessage-deflate; client_max_window_bits');
    expect(offerClient({ clientMaxWindowBits: 10 })).toBe('permessage-deflate; client_max_window_bits=10');
    expect(offerClient({ serverNoContextTakeover: true, clientNoContextTakeover: true, serverMaxWindowBits: 9 }))
      .toBe('permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9; client_max_window_bits');
  });

  it('no answer: the server declined, the connection runs uncompressed', () => {
    expect(acceptClientResponse(undefined)).toBeUndefined();
    expect(acceptClientResponse('')).toBeUndefined();
  });

  it.each([
    ['permessage-deflate', {}, {}],
    ['permessage-deflate; server_no_context_takeover', {}, { serverNoContextTakeover: true }],
    ['permessage-deflate; client_no_context_takeover', {}, { clientNoContextTakeover: true }],
    ['permessage-deflate; server_max_window_bits=8', {}, { serverMaxWindowBits: 8 }],
    ['permessage-deflate; client_max_window_bits=8', {}, { clientMaxWindowBits: 8 }],
    ['PERMESSAGE-DEFLATE; Client_Max_Window_Bits="12"', {}, { clientMaxWindowBits: 12 }],
    ['permessage-deflate; server_max_window_bits=10', { serverMaxWindowBits: 10 }, { serverMaxWindowBits: 10 }],
    ['permessage-deflate; server_max_window_bits=9', { serverMaxWindowBits: 10 }, { serverMaxWindowBits: 9 }],
    ['permessage-deflate; client_max_window_bits=9', { clientMaxWindowBits: 10 }, { clientMaxWindowBits: 9 }],
    ['permessage-deflate; server_no_context_takeover', { serverNoContextTakeover: true }, { serverNoContextTakeover: true }],
  ])('accepts %j for %j', (answer, options, params) => {
    expect(acceptClientResponse(answer, options)).toEqual({ ...DEFAULT_PARAMS, ...params });
  });

  it.each([
    ['permessage-deflate; foo', {}, /unknown parameter foo/],
    ['permessage-deflate; server_no_context_takeover; server_no_context_takeover', {}, /twice/],
    ['permessage-deflate; server_no_context_takeover=1', {}, /takes no value/],
    ['permessage-deflate; client_no_context_takeover="x"', {}, /takes no value/],
    ['permessage-deflate; server_max_window_bits', {}, /server_max_window_bits must be/],
    ['permessage-deflate; server_max_window_bits=16', {}, /server_max_window_bits must be/],
    ['permessage-deflate; client_max_window_bits', {}, /client_max_window_bits must be 8 to 15, got no value/],
    ['permessage-deflate; client_max_window_bits=07', {}, /client_max_window_bits must be/],
    ['permessage-deflate; client_max_window_bits=11', { clientMaxWindowBits: 10 }, /more than the 10 offered/],
    ['permessage-deflate; server_max_window_bits=11', { serverMaxWindowBits: 10 }, /more than the 10 offered/],
    ['permessage-deflate', { serverMaxWindowBits: 10 }, /server_max_window_bits was asked for/],
    ['permessage-deflate', { serverNoContextTakeover: true }, /server_no_context_takeover was asked for/],
    ['x-webkit-deflate-frame', {}, /not offered/],
    ['permessage-deflate, x-foo', {}, /not offered/],
    ['permessage-deflate, permessage-deflate', {}, /more than once/],
    ['permessage-deflate; a="b', {}, /unterminated/],
    ['permessage-deflate;', {}, /parameter name/],
  ])('fails the connection on %j (options %j)', (answer, options, why) => {
    expect(() => acceptClientResponse(answer, options)).toThrow(ExtensionNegotiationError);
    expect(() => acceptClientResponse(answer, options)).toThrow(why);
    try {
      acceptClientResponse(answer, options);
    } catch (err) {
      expect((err as ExtensionNegotiationError).code).toBe(DeflateErrorCode.Negotiation);
    }
  });

  it('a client offer and a server answer always agree (both sides compute the same parameters)', () => {
    const side = fc.record({
      serverNoContextTakeover: fc.boolean(),
      clientNoContextTakeover: fc.boolean(),
      serverMaxWindowBits: fc.integer({ min: 8, max: 15 }),
      clientMaxWindowBits: fc.integer({ min: 8, max: 15 }),
    });
    fc.assert(fc.property(side, side, (client, server) => {
      const got = negotiateServer(offerClient(client), server);
      // The client always offers client_max_window_bits, so every server policy can accept.
      expect(got).toBeDefined();
      expect(acceptClientResponse(got!.response, client)).toEqual(got!.params);
      expect(got!.params).toEqual({
        serverNoContextTakeover: client.serverNoContextTakeover || server.serverNoContextTakeover,
        clientNoContextTakeover: client.clientNoContextTakeover || server.clientNoContextTakeover,
        serverMaxWindowBits: Math.min(client.serverMaxWindowBits, server.serverMaxWindowBits),
        clientMaxWindowBits: Math.min(client.clientMaxWindowBits, server.clientMaxWindowBits),
      });
    }), { numRuns: 500 });
  });
});

// ---------------------------------------------------------------------------------------------
// RFC 7692 §7.2.3 examples
// ---------------------------------------------------------------------------------------------

describe('RFC 7692 §7.2.3 examples', () => {
  const hello = Buffer.from('Hello');

  it('§7.2.3.1: "Hello" compresses to f2 48 cd c9 c9 07 00 (RSV1 goes on the frame)', () => {
    const codec = new PerMessageDeflate('server', DEFAULT_PARAMS);
    expect(codec.compress(hello)).toEqual(hex('f2 48 cd c9 c9 07 00'));
    const client = new PerMessageDeflate('client', DEFAULT_PARAMS);
    expect(client.decompress(hex('f2 48 cd c9 c9 07 00'), true, 100)).toEqual(hello);
  });

  it('§7.2.3.1: the same message in two fragments', async () => {
    const codec = new PerMessageDeflate('server', DEFAULT_PARAMS);
    expect(codec.decompress(hex('f2 48 cd'), false, 100)).toBeNull();
    expect(codec.decompress(hex('c9 c9 07 00'), true, 100)).toEqual(hello);
  });

  it('§7.2.3.2: with context takeover the second "Hello" is f2 00 11 00 00', () => {
    const server = new PerMessageDeflate('server', DEFAULT_PARAMS);
    expect(server.compress(hello)).toEqual(hex('f2 48 cd c9 c9 07 00'));
    expect(server.compress(hello)).toEqual(hex('f2 00 11 00 00'));
    const client = new PerMessageDeflate('client', DEFAULT_PARAMS);
    expect(client.decompress(hex('f2 48 cd c9 c9 07 00'), true, 100)).toEqual(hello);
    expect(client.decompress(hex('f2 00 11 00 00'), true, 100)).toEqual(hello);
  });

  it('§7.2.3.2: without context takeover every "Hello" is compressed alone, and no window is kept', async () => {
    const params = { ...DEFAULT_PARAMS, serverNoContextTakeover: true };
    const server = new PerMessageDeflate('server', params);
    expect(server.compress(hello)).toEqual(hex('f2 48 cd c9 c9 07 00'));
    expect(server.compress(hello)).toEqual(hex('f2 48 cd c9 c9 07 00'));
    expect(server.retainedBytes).toBe(0);
    // The client keeps no window of the server's: a reference into one is invalid data (1007).
    const client = new PerMessageDeflate('client', params);
    expect(client.decompress(hex('f2 48 cd c9 c9 07 00'), true, 100)).toEqual(hello);
    expect(client.retainedBytes).toBe(0);
    const err = await violation(() => client.decompress(hex('f2 00 11 00 00'), true, 100));
    expect(err.closeCode).toBe(1007);
    expect(err.code).toBe(DeflateErrorCode.BadCompressedData);
  });

  it('§7.2.3.3: a DEFLATE block with no compression', () => {
    const codec = new PerMessageDeflate('client', DEFAULT_PARAMS);
    expect(codec.decompress(hex('00 05 00 fa ff 48 65 6c 6c 6f 00'), true, 100)).toEqual(hello);
  });

  it('§7.2.3.4: a DEFLATE block with BFINAL set, with and without the padding byte', () => {
    const codec = new PerMessageDeflate('client', DEFAULT_PARAMS);
    expect(codec.decompress(hex('f3 48 cd c9 c9 07 00 00'), true, 100)).toEqual(hello);
    expect(codec.decompress(hex('f3 48 cd c9 c9 07 00'), true, 100)).toEqual(hello);
    // The window carries on after a message that ended its DEFLATE stream.
    expect(codec.decompress(hex('f2 00 11 00 00'), true, 100)).toEqual(hello);
  });

  it('§7.2.3.5: two DEFLATE blocks in one message', () => {
    const codec = new PerMessageDeflate('client', DEFAULT_PARAMS);
    expect(codec.decompress(hex('f2 48 05 00 00 00 ff ff ca c9 c9 07 00'), true, 100)).toEqual(hello);
  });

  it('§7.2.1: after a BFINAL block a new DEFLATE stream follows in the same message, over the same window', async () => {
    // "Hello" with BFINAL, then "Hello" again compressed against "Hello" (a back-reference).
    const second = deflateRawSync(hello, { finishFlush: zconst.Z_SYNC_FLUSH, dictionary: hello });
    const payload = Buffer.concat([hex('f3 48 cd c9 c9 07 00'), second.subarray(0, second.length - 4)]);
    expect(new PerMessageDeflate('client', DEFAULT_PARAMS).decompress(payload, true, 100)).toEqual(Buffer.from('HelloHello'));
    // The same through the background inflater: a large message, in fragments.
    const big = message(100_000, 3, false);
    const tail = deflateRawSync(big, { finishFlush: zconst.Z_SYNC_FLUSH, dictionary: big.subarray(-32768) });
    const first = deflateRawSync(big, { finishFlush: zconst.Z_FINISH });
    const both = Buffer.concat([first, tail.subarray(0, tail.length - 4)]);
    // The first stream ends on a frame boundary, then inside a frame.
    for (const cuts of [[1000, 20_000, first.length], [1000, first.length - 100]]) {
      const out = await inflateFrames(new PerMessageDeflate('client', DEFAULT_PARAMS), both, cuts);
      same(out, Buffer.concat([big, big]));
    }
  });

  it('an empty message compresses to one byte and back', () => {
    const codec = new PerMessageDeflate('server', DEFAULT_PARAMS);
    const out = codec.compress(Buffer.alloc(0)) as Buffer;
    expect(out).toEqual(hex('00'));
    expect(new PerMessageDeflate('client', DEFAULT_PARAMS).decompress(out, true, 0)).toEqual(Buffer.alloc(0));
  });
});

// ---------------------------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------------------------

const paramsArb = fc.record({
  serverNoContextTakeover: fc.boolean(),
  clientNoContextTakeover: fc.boolean(),
  serverMaxWindowBits: fc.integer({ min: 8, max: 15 }),
  clientMaxWindowBits: fc.integer({ min: 8, max: 15 }),
});

const messageArb = fc.record({
  size: fc.oneof(
    fc.integer({ min: 0, max: 2000 }),
    fc.integer({ min: 2000, max: 20_000 }),
    fc.constantFrom(SYNC_DEFLATE_MAX, SYNC_DEFLATE_MAX + 1, SYNC_INFLATE_MAX_INPUT + 1, 70_000, 200_000),
  ),
  random: fc.boolean(),
  seed: fc.nat(),
  cuts: fc.array(fc.nat(), { maxLength: 6 }),
  release: fc.boolean(),
});

describe('round trips', () => {
  it('any message sequence, any parameters, any fragmentation: sender to receiver, both roles', async () => {
    await fc.assert(fc.asyncProperty(
      paramsArb, fc.constantFrom<'server' | 'client'>('server', 'client'), fc.array(messageArb, { minLength: 1, maxLength: 8 }),
      fc.record({ level: fc.integer({ min: 0, max: 9 }), memLevel: fc.integer({ min: 1, max: 9 }), takeoverBytes: fc.constantFrom(0, 100, 8192, 32768) }),
      async (params, senderRole, messages, options) => {
        const sender = new PerMessageDeflate(senderRole, params, options);
        const receiver = new PerMessageDeflate(senderRole === 'server' ? 'client' : 'server', params, options);
        // A receiver that holds one inflater for the connection, with exactly the agreed window.
        const classic = new ClassicInflater(senderRole === 'server' ? params.serverMaxWindowBits : params.clientMaxWindowBits);
        try {
          for (const m of messages) {
            const data = message(m.size, m.seed, m.random);
            const compressed = await sender.compress(data);
            same(await inflateFrames(receiver, compressed, m.cuts), data);
            same(await classic.inflate(compressed), data);
            if (m.release) sender.release();
          }
        } finally {
          classic.close();
        }
      },
    ), { numRuns: 60 });
  }, 120_000);

  it('inflates what a sender holding one deflater for the connection sends', async () => {
    await fc.assert(fc.asyncProperty(
      paramsArb, fc.constantFrom<'server' | 'client'>('server', 'client'), fc.array(messageArb, { minLength: 1, maxLength: 8 }),
      async (params, receiverRole, messages) => {
        const receiver = new PerMessageDeflate(receiverRole, params);
        const peerBits = receiverRole === 'server' ? params.clientMaxWindowBits : params.serverMaxWindowBits;
        const peerResets = receiverRole === 'server' ? params.clientNoContextTakeover : params.serverNoContextTakeover;
        let peer = new ClassicDeflater(peerBits);
        try {
          for (const m of messages) {
            const data = message(m.size, m.seed, m.random);
            const compressed = await peer.deflate(data);
            same(await inflateFrames(receiver, compressed, m.cuts), data);
            if (peerResets) {
              peer.close();
              peer = new ClassicDeflater(peerBits);
            }
          }
        } finally {
          peer.close();
        }
      },
    ), { numRuns: 60 });
  }, 120_000);

  it('window bits 8 are honoured: what is compressed decodes with a 256-byte window', async () => {
    const params = { ...DEFAULT_PARAMS, serverMaxWindowBits: 8 };
    const sender = new PerMessageDeflate('server', params, { takeoverBytes: 32768 });
    const classic = new ClassicInflater(8, 64);
    try {
      for (let i = 0; i < 20; i++) {
        // Repeats at distances just above 250 and 256: zlib must not refer to them.
        const unit = randomBytes(251 + (i % 12));
        const data = Buffer.concat(Array.from({ length: 40 }, () => unit));
        same(await classic.inflate(await sender.compress(data)), data);
      }
    } finally {
      classic.close();
    }
  });

  it('compressions finish in call order, inline and in the background mixed', async () => {
    const sender = new PerMessageDeflate('server', DEFAULT_PARAMS);
    const sizes = [100, 50_000, 200, 3000, 120_000, 10, 9000, 64];
    const messages = sizes.map((s, i) => message(s, i, i % 3 === 0));
    const results = messages.map((m) => sender.compress(m));
    expect(Buffer.isBuffer(results[0])).toBe(true); // nothing pending yet: inline
    expect(results[1]).toBeInstanceOf(Promise); // large: background
    expect(results[2]).toBeInstanceOf(Promise); // small, but behind a pending one
    expect(sender.compressing).toBe(true);
    const classic = new ClassicInflater(15);
    try {
      for (let i = 0; i < messages.length; i++) same(await classic.inflate(await results[i]!), messages[i]!);
    } finally {
      classic.close();
    }
    await Promise.resolve();
    expect(sender.compressing).toBe(false);
    // Large messages with context takeover left a compressor kept for what follows, small
    // messages included, until it is released; then small messages are inline again.
    expect(sender.retainedBytes).toBeGreaterThan(256 * 1024);
    expect(sender.compress(messages[0]!)).toBeInstanceOf(Promise);
    await sender.compress(messages[0]!);
    sender.release();
    expect(sender.retainedBytes).toBe(0);
    expect(Buffer.isBuffer(sender.compress(messages[0]!))).toBe(true);
    sender.close();
  });

  it('the kept compressor: any mix of sizes decodes with one inflater; dropped after releaseAfterIdle; close() ends a job in flight', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    try {
      const sender = new PerMessageDeflate('server', DEFAULT_PARAMS, { releaseAfterIdle: 1000 });
      const classic = new ClassicInflater(15);
      try {
        const sizes = [60_000, 10, 20_000, 500, 100_000, 3];
        for (let i = 0; i < sizes.length; i++) {
          const m = message(sizes[i]!, i, i % 2 === 0);
          same(await classic.inflate(await sender.compress(m)), m);
        }
        expect(sender.retainedBytes).toBeGreaterThan(256 * 1024);
        vi.advanceTimersByTime(1001);
        expect(sender.retainedBytes).toBe(0);
        // After the release, inline again, and the peer (which kept its window) still decodes.
        const after = message(2000, 9, false);
        const out = sender.compress(after);
        expect(Buffer.isBuffer(out)).toBe(true);
        same(await classic.inflate(out as Buffer), after);
      } finally {
        classic.close();
      }
      const limiter = zlibLimiter(DEFLATE_DEFAULTS.concurrency);
      const busy = limiter.running;
      const closing = new PerMessageDeflate('server', DEFAULT_PARAMS);
      const first = closing.compress(message(50_000, 1, false));
      const second = closing.compress(message(50_000, 2, false));
      await first;
      closing.close();
      await expect(second).rejects.toMatchObject({ code: DeflateErrorCode.Closed });
      expect(limiter.running).toBe(busy);
    } finally {
      vi.useRealTimers();
    }
  });

  it('inflations queue in call order when called back to back', async () => {
    const sender = new PerMessageDeflate('client', DEFAULT_PARAMS);
    const receiver = new PerMessageDeflate('server', DEFAULT_PARAMS);
    const messages = [message(100_000, 1, false), message(3000, 2, false), message(50, 3, false)];
    const compressed: Buffer[] = [];
    for (const m of messages) compressed.push(await sender.compress(m));
    const results = compressed.map((c) => receiver.decompress(c, true, 1 << 20));
    expect(results[0]).toBeInstanceOf(Promise);
    expect(results[1]).toBeInstanceOf(Promise);
    expect(receiver.decompressing).toBe(true);
    for (let i = 0; i < messages.length; i++) same(await results[i], messages[i]!);
  });

  it('the threshold decides which messages to compress', () => {
    expect(new PerMessageDeflate('server', DEFAULT_PARAMS).shouldCompress(1023)).toBe(false);
    expect(new PerMessageDeflate('server', DEFAULT_PARAMS).shouldCompress(1024)).toBe(true);
    expect(new PerMessageDeflate('server', DEFAULT_PARAMS, { threshold: 0 }).shouldCompress(0)).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------
// Errors and closing
// ---------------------------------------------------------------------------------------------

describe('invalid data and closing', () => {
  it('corrupt data fails with 1007, inline and in the background, and gives back its zlib place', async () => {
    const a = new PerMessageDeflate('server', DEFAULT_PARAMS);
    expect((await violation(() => a.decompress(hex('ff ff ff ff'), true, 1000))).closeCode).toBe(1007);
    expect(() => a.decompress(hex('f2 48 cd c9 c9 07 00'), true, 1000)).toThrow(ProtocolViolation);

    const limiter = zlibLimiter();
    const b = new PerMessageDeflate('server', DEFAULT_PARAMS);
    const good = await new PerMessageDeflate('client', DEFAULT_PARAMS).compress(message(100_000, 5, false));
    // Valid data, then a block header with BTYPE 11 (reserved): an error after 100 KB of output.
    const bad = Buffer.concat([good, TRAILER, hex('ff ff ff')]);
    const err = await violation(inflateFrames(b, bad, [10_000, 30_000]));
    expect(err.closeCode).toBe(1007);
    expect(limiter.running).toBe(0);
    expect(limiter.queued).toBe(0);
  });

  it('close() rejects what is pending and refuses later calls', async () => {
    const codec = new PerMessageDeflate('server', DEFAULT_PARAMS);
    const pendingOut = codec.compress(message(200_000, 1, true));
    const pendingIn = codec.decompress(makeBomb(4), true, 64 << 20);
    codec.close();
    await expect(pendingOut).rejects.toMatchObject({ code: DeflateErrorCode.Closed });
    await expect(pendingIn).rejects.toMatchObject({ code: DeflateErrorCode.Closed });
    expect(() => codec.compress(Buffer.from('x'))).toThrow(/closed/);
    expect(() => codec.decompress(Buffer.from([0]), true, 10)).toThrow(/closed/);
    expect(codec.retainedBytes).toBe(0);
    expect(zlibLimiter().running).toBe(0);
  });
});

// ---------------------------------------------------------------------------------------------
// Memory between messages
// ---------------------------------------------------------------------------------------------

describe('windows kept between messages', () => {
  it('keeps the sending window with takeover, drops it on release(), and the peer still decodes', async () => {
    const server = new PerMessageDeflate('server', DEFAULT_PARAMS);
    const classic = new ClassicInflater(15);
    try {
      const hello = Buffer.from('Hello');
      expect(await classic.inflate(server.compress(hello) as Buffer)).toEqual(hello);
      // The window grows with what it holds: 5 bytes take the smallest buffer.
      expect(server.retainedBytes).toBe(1024);
      server.release();
      expect(server.retainedBytes).toBe(0);
      // Compressed afresh (no reference back), which the peer's kept window does not mind.
      const again = server.compress(hello) as Buffer;
      expect(again).toEqual(hex('f2 48 cd c9 c9 07 00'));
      expect(await classic.inflate(again)).toEqual(hello);
      expect(await classic.inflate(server.compress(hello) as Buffer)).toEqual(hello);
    } finally {
      classic.close();
    }
  });

  it('keeps the receiving window only while the peer may use context takeover', () => {
    const data = message(5000, 1, false);
    const peer = new PerMessageDeflate('client', DEFAULT_PARAMS, { takeoverBytes: 0 });
    const compressed = peer.compress(data) as Buffer;
    const takeover = new PerMessageDeflate('server', DEFAULT_PARAMS, { takeoverBytes: 0 });
    takeover.decompress(compressed, true, 1 << 20);
    expect(takeover.retainedBytes).toBe(8192); // 5000 bytes held, in a buffer grown by doubling
    takeover.release();
    expect(takeover.retainedBytes).toBe(8192);
    for (let i = 0; i < 10; i++) takeover.decompress(peer.compress(data) as Buffer, true, 1 << 20);
    expect(takeover.retainedBytes).toBe(32768); // never more than the window
    const small = new PerMessageDeflate('server', { ...DEFAULT_PARAMS, clientMaxWindowBits: 10 }, { takeoverBytes: 0 });
    small.decompress(compressed, true, 1 << 20);
    expect(small.retainedBytes).toBe(1024);
    const none = new PerMessageDeflate('server', { ...DEFAULT_PARAMS, clientNoContextTakeover: true });
    none.decompress(compressed, true, 1 << 20);
    expect(none.retainedBytes).toBe(0);
  });

  it('drops the sending window after releaseAfterIdle without compressed messages', () => {
    vi.useFakeTimers();
    const server = new PerMessageDeflate('server', DEFAULT_PARAMS, { releaseAfterIdle: 1000 });
    server.compress(Buffer.from('Hello'));
    vi.advanceTimersByTime(600);
    server.compress(Buffer.from('Hello'));
    vi.advanceTimersByTime(600);
    expect(server.retainedBytes).toBe(1024); // 600 ms since the last message
    vi.advanceTimersByTime(399);
    expect(server.retainedBytes).toBe(1024);
    vi.advanceTimersByTime(2);
    expect(server.retainedBytes).toBe(0);
    // Lazily back on the next message, which is compressed afresh.
    expect(server.compress(Buffer.from('Hello'))).toEqual(hex('f2 48 cd c9 c9 07 00'));
    expect(server.retainedBytes).toBe(1024);
    server.close();
    expect(vi.getTimerCount()).toBe(0);
  });

  it('10,000 idle connections hold no zlib state: only the windows, and none when configured', async () => {
    const count = 10_000;
    const data = message(2048, 9, false);
    const fromClient = new PerMessageDeflate('client', DEFAULT_PARAMS).compress(data) as Buffer;
    gc();
    const before = process.memoryUsage();
    const codecs: PerMessageDeflate[] = [];
    const params = { ...DEFAULT_PARAMS, clientNoContextTakeover: true };
    for (let i = 0; i < count; i++) {
      const c = new PerMessageDeflate('server', params, { releaseAfterIdle: Infinity });
      c.compress(data);
      same(c.decompress(fromClient, true, 1 << 20) as Buffer, data);
      c.release();
      codecs.push(c);
    }
    expect(codecs.reduce((n, c) => n + c.retainedBytes, 0)).toBe(0);
    // Closed zlib handles give their memory back once collected; let finalizers run.
    for (let i = 0; i < 3; i++) {
      gc();
      await new Promise(setImmediate);
    }
    const after = process.memoryUsage();
    // A live zlib compressor is about 262 KiB: 10,000 of them would be 2.5 GiB. A tenth of that
    // leaves room for a collector that is behind under a loaded machine, and still fails if any
    // context were kept.
    expect(after.external + after.arrayBuffers - before.external - before.arrayBuffers).toBeLessThan(256 << 20);
    // With the client's context takeover: the window, as much of it as was filled (one 2 KiB
    // message here), still no zlib contexts.
    const kept = new PerMessageDeflate('server', DEFAULT_PARAMS);
    kept.decompress(fromClient, true, 1 << 20);
    kept.release();
    expect(kept.retainedBytes).toBe(2048);
  }, 60_000);
});

// ---------------------------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------------------------

describe('process-wide zlib job limit', () => {
  it('ZlibLimiter runs at most `limit` jobs, in order, and ignores a second done()', () => {
    const limiter = new ZlibLimiter(2);
    const started: number[] = [];
    const dones: (() => void)[] = [];
    for (let i = 0; i < 5; i++) {
      limiter.schedule((done) => {
        started.push(i);
        dones.push(done);
      });
    }
    expect(started).toEqual([0, 1]);
    expect(limiter.running).toBe(2);
    expect(limiter.queued).toBe(3);
    dones[0]!();
    dones[0]!();
    expect(started).toEqual([0, 1, 2]);
    expect(limiter.running).toBe(2);
    dones[1]!();
    dones[2]!();
    dones[3]!();
    dones[4]!();
    expect(started).toEqual([0, 1, 2, 3, 4]);
    expect(limiter.running).toBe(0);
    expect(limiter.peak).toBe(2);
  });

  it('jobs that end at once do not recurse', () => {
    const limiter = new ZlibLimiter(1);
    let ran = 0;
    for (let i = 0; i < 100_000; i++) {
      limiter.schedule((done) => {
        ran++;
        done();
      });
    }
    expect(ran).toBe(100_000);
  });

  it('many connections compressing and inflating at once never run more than `concurrency` zlib jobs', async () => {
    const concurrency = 3;
    const limiter = zlibLimiter(concurrency);
    expect(zlibLimiter(concurrency)).toBe(limiter);
    limiter.resetPeak();
    let observed = 0;
    const sample = setInterval(() => {
      observed = Math.max(observed, limiter.running);
    }, 1);
    const big = message(300_000, 4, false);
    const compressed = await new PerMessageDeflate('client', DEFAULT_PARAMS).compress(big);
    const work: Promise<unknown>[] = [];
    for (let i = 0; i < 40; i++) {
      const codec = new PerMessageDeflate('server', DEFAULT_PARAMS, { concurrency });
      work.push(Promise.resolve(codec.compress(message(100_000, i, true))));
      work.push(Promise.resolve(codec.decompress(compressed, true, 1 << 20)).then((out) => same(out, big)));
    }
    expect(limiter.running).toBe(concurrency);
    expect(limiter.queued).toBeGreaterThan(0);
    await Promise.all(work);
    clearInterval(sample);
    expect(limiter.peak).toBe(concurrency);
    expect(observed).toBeLessThanOrEqual(concurrency);
    expect(limiter.running).toBe(0);
    expect(limiter.queued).toBe(0);
  }, 60_000);
});
