/**
 * The WebSocket codec: Corral's frame parser, frame builder, masking and UTF-8 validation against
 * the `ws` package's Receiver, Sender and helpers, on the same inputs.
 *
 *   pnpm bench ws-codec [--rounds 5] [--sample-ms 200] [--only parse,build,mask,utf8] [--match STR] [--json]
 *   node_modules/.bin/tsx bench/ws-codec.ts [flags]
 *
 * - parse: masked client frames (a server's input) pushed chunk by chunk into a `FrameParser`
 *   (server role, UTF-8 validation on) and written into a `ws` `Receiver` (server, UTF-8
 *   validation on). Every message is a single frame, so both deliver the same thing: one payload
 *   per message, unmasked, text validated. Both unmask in place, so each operation first copies
 *   the pristine chunks into the buffers it parses (the same copies for both sides).
 * - build: `encodeFrame(opcode, payload, { mask })` against `Sender.frame(payload, { mask,
 *   readOnly: true, ... })`, what `ws` does for a Buffer given to `send()`. Unmasked, Corral copies
 *   payloads up to 1 KiB behind the header (one buffer, one write later) where `ws` returns the
 *   header and the payload apart: the small unmasked rows count that copy against Corral.
 * - mask: `mask()` / `unmask()` against the `mask` / `unmask` of `ws`'s buffer-util (bufferutil
 *   from 48 / 32 bytes up when it is installed, a JavaScript loop below). A second table gives the
 *   throughput of each of Corral's masking implementations alone.
 * - utf8: `isValidUtf8()` against `ws`'s `isValidUTF8()` (both `buffer.isUtf8` underneath, with a
 *   JavaScript path for short inputs), and `Utf8Validator` fed 1460-byte pieces of a 64 KiB text
 *   against `ws` validating the whole text once (what each does for a text message received in
 *   TCP segments: Corral validates as the bytes arrive, `ws` when the message is complete).
 *
 * Each measurement runs the operation in batches until `--sample-ms` have passed. Every case
 * first gets an unmeasured warm-up sample per side, then `--rounds` measured rounds alternating
 * which side goes first. The table shows median ops/s per side, Corral's throughput in MB/s
 * (10^6 bytes of input per second), and the median of the per-round ratios corral/ws (above 1:
 * Corral is faster). The machine is shared and noisy: only the ratios mean much.
 */

import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { FrameParser, Opcode, encodeFrame } from '../packages/websocket/src/frame.js';
import { mask, maskBackend, maskImplementations, unmask } from '../packages/websocket/src/mask.js';
import { Utf8Validator, isValidUtf8 } from '../packages/websocket/src/utf8.js';
import { benchMain, intFlag, parseFlags, runIfMain, UsageError } from './lib/cli.js';
import { maskedFrame } from './lib/ws-frame.js';
import { compareOps, keepSink, sample } from './lib/op-rate.js';
import { alignedTable, loadAverage, log, ops as opsCell } from './lib/report.js';
import { median } from './lib/rounds.js';

const require = createRequire(import.meta.url);
const wsDir = dirname(require.resolve('ws'));

interface WsReceiver {
  on(event: 'message', fn: (data: Buffer, isBinary: boolean) => void): void;
  on(event: 'error', fn: (err: Error) => void): void;
  write(chunk: Buffer): boolean;
}
interface WsSenderStatic {
  frame(data: Buffer, options: { fin: boolean; mask: boolean; opcode: number; readOnly: boolean; rsv1: boolean }): Buffer[];
}
// ws's internals, loaded by path: its package exports only the public API.
const Receiver = require(join(wsDir, 'lib/receiver.js')) as new (options: object) => WsReceiver;
const Sender = require(join(wsDir, 'lib/sender.js')) as WsSenderStatic;
const wsBufferUtil = require(join(wsDir, 'lib/buffer-util.js')) as {
  mask(source: Buffer, mask: Buffer, output: Buffer, offset: number, length: number): void;
  unmask(buffer: Buffer, mask: Buffer): void;
};
const wsValidation = require(join(wsDir, 'lib/validation.js')) as { isValidUTF8(buf: Buffer): boolean };

const wsHasBufferutil = (() => {
  try {
    require.resolve('bufferutil');
    return !process.env.WS_NO_BUFFER_UTIL;
  } catch {
    return false;
  }
})();

export interface Options {
  rounds: number;
  sampleMs: number;
  only: Set<string>;
  /** Only the cases whose input contains this string. */
  match: string;
  json: boolean;
}

const GROUPS = ['parse', 'build', 'mask', 'utf8'];

const USAGE = `Usage: pnpm bench ws-codec [flags]

  --rounds N      measured rounds per case, at least 3 (default 5)
  --sample-ms N   length of one measurement in milliseconds (default 200)
  --only LIST     comma-separated groups among ${GROUPS.join(', ')} (default: all)
  --match STR     only the cases whose input contains STR
  --json          also print the results as one line of JSON after the tables
`;

export function parseOptions(args: string[]): Options {
  const v = parseFlags(args, {
    rounds: { type: 'string' },
    'sample-ms': { type: 'string' },
    only: { type: 'string' },
    match: { type: 'string' },
    json: { type: 'boolean' },
  });
  const only = new Set((v.only ?? GROUPS.join(',')).split(',').map((s) => s.trim()).filter((s) => s !== ''));
  for (const g of only) if (!GROUPS.includes(g)) throw new UsageError(`--only: unknown group ${g}`);
  return {
    rounds: intFlag(v, 'rounds', 5, 3, 1000),
    sampleMs: intFlag(v, 'sample-ms', 200, 10, 60_000),
    only,
    match: v.match ?? '',
    json: v.json === true,
  };
}

// ---------------------------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------------------------

function fail(what: string): never {
  throw new Error(`ws-codec bench: ${what}`);
}

/** Deterministic bytes. */
function bytes(n: number, seed = 1): Buffer {
  const b = Buffer.allocUnsafe(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (x * 1664525 + 1013904223) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

/** Text of exactly `n` bytes of UTF-8: ASCII with some 2-, 3- and 4-byte characters. */
function text(n: number): Buffer {
  const unit = 'WebSocket frames, Grüße, 世界, 😀. ';
  let s = '';
  while (Buffer.byteLength(s) < n) s += unit;
  const b = Buffer.from(s);
  let end = n;
  while ((b[end]! & 0xc0) === 0x80) end--;
  return Buffer.concat([b.subarray(0, end), Buffer.alloc(n - end, 0x20)]);
}

const ascii = (n: number): Buffer => Buffer.alloc(n, 0x61);

const KEY = Buffer.from([0x37, 0xfa, 0x21, 0x3d]);

/** A masked client frame, built by hand. */
const clientFrame = (opcode: number, payload: Buffer): Buffer => maskedFrame(0x80 | opcode, payload, KEY);

// ---------------------------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------------------------

/** One operation on one input, done by each side; each returns a number so nothing is optimised away. */
interface Case {
  group: string;
  input: string;
  /** Input bytes one operation handles, for MB/s. */
  bytes: number;
  corral: () => number;
  peer: () => number;
  /** Throws unless both sides produce the expected result. */
  check(): void;
}

function parseCase(input: string, opcode: number, payload: Buffer, count: number, chunkSize: number): Case {
  const stream = Buffer.concat(Array.from({ length: count }, () => clientFrame(opcode, payload)));
  const pristine: Buffer[] = [];
  for (let i = 0; i < stream.length; i += chunkSize) pristine.push(Buffer.from(stream.subarray(i, i + chunkSize)));
  // Separate work buffers per side, so one side's views never alias the other's input.
  const workA = pristine.map((c) => Buffer.allocUnsafeSlow(c.length));
  const workB = pristine.map((c) => Buffer.allocUnsafeSlow(c.length));

  let frames = 0;
  let payloadBytes = 0;
  let last: Buffer = Buffer.alloc(0);
  const parser = new FrameParser({
    role: 'server',
    onFrame: (_fin, _rsv1, _opcode, p) => {
      frames++;
      payloadBytes += p.length;
      last = p;
    },
    onError: (err) => fail(`corral parser: ${err.message}`),
  });
  let messages = 0;
  let wsBytes = 0;
  let wsLast: Buffer = Buffer.alloc(0);
  const receiver = new Receiver({ isServer: true, maxPayload: 100 * 1024 * 1024, binaryType: 'nodebuffer', skipUTF8Validation: false });
  receiver.on('message', (data) => {
    messages++;
    wsBytes += data.length;
    wsLast = data;
  });
  receiver.on('error', (err) => fail(`ws receiver: ${err.message}`));

  const corral = (): number => {
    for (let i = 0; i < pristine.length; i++) {
      const w = workA[i]!;
      pristine[i]!.copy(w);
      parser.push(w);
    }
    return frames;
  };
  const peer = (): number => {
    for (let i = 0; i < pristine.length; i++) {
      const w = workB[i]!;
      pristine[i]!.copy(w);
      receiver.write(w);
    }
    return messages;
  };
  return {
    group: 'parse',
    input,
    bytes: stream.length,
    corral,
    peer,
    check() {
      const f0 = frames;
      const m0 = messages;
      const b0 = payloadBytes;
      const w0 = wsBytes;
      corral();
      peer();
      if (frames - f0 !== count || payloadBytes - b0 !== count * payload.length) fail(`corral parsed ${input} wrong`);
      if (messages - m0 !== count || wsBytes - w0 !== count * payload.length) fail(`ws parsed ${input} wrong`);
      if (!last.equals(payload)) fail(`corral unmasked ${input} wrong`);
      if (!wsLast.equals(payload)) fail(`ws unmasked ${input} wrong`);
    },
  };
}

function buildCase(input: string, opcode: number, payload: Buffer, masked: boolean): Case {
  const corralOpts = { fin: true, rsv1: false, mask: masked };
  const wsOpts = { fin: true, mask: masked, opcode, readOnly: true, rsv1: false };
  const total = (bufs: Buffer[]): number => {
    let n = 0;
    for (let i = 0; i < bufs.length; i++) n += bufs[i]!.length;
    return n;
  };
  return {
    group: 'build',
    input,
    bytes: payload.length,
    corral: () => total(encodeFrame(opcode, payload, corralOpts)),
    peer: () => total(Sender.frame(payload, wsOpts)),
    check() {
      const mine = Buffer.concat(encodeFrame(opcode, payload, corralOpts));
      const theirs = Buffer.concat(Sender.frame(payload, wsOpts));
      if (mine.length !== theirs.length) fail(`${input}: different frame sizes`);
      if (!masked && !mine.equals(theirs)) fail(`${input}: different bytes`);
      if (masked) {
        // Different random keys: compare after unmasking.
        const hl = mine.length - payload.length;
        if (!mine.subarray(0, hl - 4).equals(theirs.subarray(0, hl - 4))) fail(`${input}: different headers`);
        const a = Buffer.from(mine.subarray(hl));
        unmask(a, mine.subarray(hl - 4, hl));
        if (!a.equals(payload)) fail(`${input}: corral masked wrong`);
      }
    },
  };
}

function maskCase(n: number): Case[] {
  const source = bytes(n, n);
  const outA = Buffer.allocUnsafeSlow(n);
  const outB = Buffer.allocUnsafeSlow(n);
  const bufA = bytes(n, n + 1);
  const bufB = Buffer.from(bufA);
  const label = n >= 1 << 20 ? `${n >> 20} MiB` : n >= 1024 ? `${n >> 10} KiB` : `${n} B`;
  return [
    {
      group: 'mask',
      input: `mask ${label}`,
      bytes: n,
      corral: () => {
        mask(source, KEY, outA, 0, n);
        return outA[0] ?? 0;
      },
      peer: () => {
        wsBufferUtil.mask(source, KEY, outB, 0, n);
        return outB[0] ?? 0;
      },
      check() {
        mask(source, KEY, outA, 0, n);
        wsBufferUtil.mask(source, KEY, outB, 0, n);
        if (!outA.equals(outB)) fail(`mask ${label} differs`);
      },
    },
    {
      group: 'mask',
      input: `unmask in place ${label}`,
      bytes: n,
      corral: () => {
        unmask(bufA, KEY);
        return bufA[0] ?? 0;
      },
      peer: () => {
        wsBufferUtil.unmask(bufB, KEY);
        return bufB[0] ?? 0;
      },
      check() {
        // Both sides apply the mask an equal number of times in check(); compare states.
        if (!bufA.equals(bufB)) fail(`unmask ${label} differs`);
      },
    },
  ];
}

function utf8Cases(): Case[] {
  const inputs: [string, Buffer][] = [
    ['16 B ASCII', ascii(16)],
    ['125 B mixed', text(125)],
    ['1 KiB mixed', text(1024)],
    ['64 KiB mixed', text(65536)],
  ];
  const out: Case[] = inputs.map(([label, buf]) => ({
    group: 'utf8',
    input: `validate ${label}`,
    bytes: buf.length,
    corral: () => (isValidUtf8(buf) ? 1 : 0),
    peer: () => (wsValidation.isValidUTF8(buf) ? 1 : 0),
    check() {
      if (!isValidUtf8(buf) || !wsValidation.isValidUTF8(buf)) fail(`${label} not valid`);
    },
  }));
  const big = text(65536);
  const pieces: Buffer[] = [];
  for (let i = 0; i < big.length; i += 1460) pieces.push(big.subarray(i, i + 1460));
  const v = new Utf8Validator();
  const incremental = (): number => {
    for (let i = 0; i < pieces.length; i++) v.push(pieces[i]!);
    return v.end() ? 1 : 0;
  };
  out.push({
    group: 'utf8',
    input: '64 KiB mixed: corral in 1460 B pieces, ws whole',
    bytes: big.length,
    corral: incremental,
    peer: () => (wsValidation.isValidUTF8(big) ? 1 : 0),
    check() {
      if (incremental() !== 1) fail('incremental validation failed');
    },
  });
  return out;
}

export function cases(only: Set<string>): Case[] {
  const out: Case[] = [];
  if (only.has('parse')) {
    out.push(
      parseCase('text 16 B x1024, one chunk', Opcode.Text, text(16), 1024, 1 << 30),
      parseCase('text 16 B x1024, 1460 B chunks', Opcode.Text, text(16), 1024, 1460),
      parseCase('binary 125 B x512, 1460 B chunks', Opcode.Binary, bytes(125), 512, 1460),
      parseCase('text 1 KiB x128, 16 KiB chunks', Opcode.Text, text(1024), 128, 16384),
      parseCase('binary 64 KiB x8, one chunk', Opcode.Binary, bytes(65536), 8, 1 << 30),
      parseCase('binary 64 KiB x8, 16 KiB chunks', Opcode.Binary, bytes(65536), 8, 16384),
      parseCase('text 64 KiB x8, 16 KiB chunks', Opcode.Text, text(65536), 8, 16384),
      parseCase('binary 1 MiB x2, 64 KiB chunks', Opcode.Binary, bytes(1 << 20), 2, 65536),
    );
  }
  if (only.has('build')) {
    for (const [label, n] of [
      ['16 B', 16],
      ['125 B', 125],
      ['1 KiB', 1024],
      ['64 KiB', 65536],
    ] as const) {
      out.push(buildCase(`unmasked ${label}`, Opcode.Binary, bytes(n), false));
    }
    for (const [label, n] of [
      ['16 B', 16],
      ['125 B', 125],
      ['1 KiB', 1024],
      ['64 KiB', 65536],
      ['1 MiB', 1 << 20],
    ] as const) {
      out.push(buildCase(`masked ${label}`, Opcode.Binary, bytes(n), true));
    }
  }
  if (only.has('mask')) for (const n of [16, 64, 1024, 16384, 1 << 20]) out.push(...maskCase(n));
  if (only.has('utf8')) out.push(...utf8Cases());
  return out;
}

// ---------------------------------------------------------------------------------------------
// Measuring
// ---------------------------------------------------------------------------------------------

export interface Result {
  group: string;
  input: string;
  bytes: number;
  corralOps: number;
  peerOps: number;
  /** Median of the per-round ratios corral/ws. */
  ratio: number;
}

/** Batch size giving roughly 1 ms per batch at 1 GB/s, at least 1. */
function batchFor(bytesPerOp: number): number {
  return Math.max(1, Math.min(256, Math.floor(1_000_000 / Math.max(bytesPerOp, 1))));
}

export function measure(c: Case, o: Options): Result {
  c.check();
  return { group: c.group, input: c.input, bytes: c.bytes, ...compareOps(c.corral, c.peer, o, batchFor(c.bytes)) };
}

export interface BackendResult {
  size: number;
  /** GB/s per implementation (10^9 bytes per second), undefined where it did not load. */
  gbps: Record<string, number | undefined>;
}

/** Throughput of each masking implementation alone, unmasking in place a view at an odd offset. */
export function measureBackends(o: Options): BackendResult[] {
  const out: BackendResult[] = [];
  for (const n of [64, 1024, 16384, 1 << 20]) {
    const buf = bytes(n + 1, 7).subarray(1);
    const gbps: Record<string, number | undefined> = {};
    for (const [name, impl] of Object.entries(maskImplementations)) {
      if (impl === undefined) {
        gbps[name] = undefined;
        continue;
      }
      const fn = (): number => {
        impl(buf, KEY, buf, 0, n);
        return buf[0]!;
      };
      sample(fn, o.sampleMs, batchFor(n));
      const ops = median(Array.from({ length: 3 }, () => sample(fn, o.sampleMs, batchFor(n))));
      gbps[name] = (ops * n) / 1e9;
    }
    out.push({ size: n, gbps });
  }
  return out;
}

const ops = (n: number): string => opsCell(n, 1);

export function table(results: readonly Result[]): string {
  return alignedTable(
    [
      ['group', 'input', 'corral ops/s', 'ws ops/s', 'corral MB/s', 'ws MB/s', 'corral/ws'],
      ...results.map((r) => [
        r.group,
        r.input,
        ops(r.corralOps),
        ops(r.peerOps),
        ((r.corralOps * r.bytes) / 1e6).toFixed(0),
        ((r.peerOps * r.bytes) / 1e6).toFixed(0),
        `${r.ratio.toFixed(2)}x`,
      ]),
    ],
    2,
  );
}

export function backendTable(results: readonly BackendResult[]): string {
  const names = Object.keys(results[0]?.gbps ?? {});
  return alignedTable(
    [
      ['bytes', ...names.map((n) => `${n} GB/s`)],
      ...results.map((r) => [String(r.size), ...names.map((n) => (r.gbps[n] === undefined ? '-' : r.gbps[n]!.toFixed(2)))]),
    ],
    1,
  );
}

export const main = benchMain(USAGE, parseOptions, async (o) => {
  const env = `Node ${process.version}, ${availableParallelism()} cores, corral masking: ${maskBackend}, ws bufferutil: ${wsHasBufferutil ? 'yes' : 'no'}`;
  log(`ws-codec: ${env}, load average ${loadAverage()}`);
  const results: Result[] = [];
  for (const c of cases(o.only).filter((k) => k.input.includes(o.match))) {
    const r = measure(c, o);
    log(`  ${r.group} ${r.input}: corral ${ops(r.corralOps)}, ws ${ops(r.peerOps)}, ratio ${r.ratio.toFixed(2)}`);
    results.push(r);
  }
  const backends = o.only.has('mask') && o.match === '' ? measureBackends(o) : [];
  process.stdout.write(`\n${env}, ${o.rounds} rounds of ${o.sampleMs} ms, ${new Date().toISOString()}\n\n`);
  process.stdout.write(`${table(results)}\n`);
  if (backends.length > 0) {
    process.stdout.write(`\nCorral's masking implementations alone (in place, odd offset):\n\n${backendTable(backends)}\n`);
  }
  if (o.json) process.stdout.write(`${JSON.stringify({ node: process.version, maskBackend, options: { ...o, only: [...o.only] }, results, backends })}\n`);
  keepSink();
  return 0;
});

runIfMain(import.meta.url, 'ws-codec', main);
