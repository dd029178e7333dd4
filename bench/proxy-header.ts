/**
 * PROXY protocol header parsing and building: Corral's codec against `proxy-protocol-js`, the peer.
 *
 *   pnpm bench proxy-header [--rounds 7] [--sample-ms 200] [--json]
 *   node_modules/.bin/tsx bench/proxy-header.ts [flags]
 *
 * Both parse the same bytes: a v1 TCP4 line, a v1 TCP6 line, a v2 IPv4 header without TLVs, a v2
 * IPv6 header with TLVs (ALPN, authority, unique id, SSL with version and cipher), and the same
 * with a CRC32C; each followed by a short payload, as a first read from a socket would hold.
 * Corral's `parseProxyHeader` is timed against the peer's `V1BinaryProxyProtocol.parse` and
 * `V2ProxyProtocol.parse` (the byte-input parsers). Building is timed the same way, from models
 * built once: `buildProxyHeader` against the peer's `build()`.
 *
 * The two do not do the same work, and the table should be read with that in mind: Corral
 * validates every field, formats addresses as strings, decodes the TLVs, checks the CRC32C and
 * tells where the header ends; the peer's v2 parser returns the address bytes as arrays and
 * everything after the address block (TLVs and payload together) as one slice, and its builder
 * takes address bytes where Corral's takes address strings.
 *
 * Each measurement runs the operation in batches until `--sample-ms` have passed. Every case
 * first gets an unmeasured warm-up sample per side, then `--rounds` measured rounds alternating
 * which side goes first. The table shows median ops/s per side and the median of the per-round
 * ratios corral/peer (above 1: Corral is faster). The machine is shared and noisy: only the
 * ratios mean anything.
 */

import { availableParallelism } from 'node:os';
import { buildProxyHeader, parseProxyHeader, type ProxyHeaderInput } from '@corral/listener';
import peer from 'proxy-protocol-js';
import { benchMain, intFlag, parseFlags, runIfMain } from './lib/cli.js';
import { compareOps, keepSink } from './lib/op-rate.js';
import { alignedTable, loadAverage, log, ops } from './lib/report.js';

const BATCH = 256;

export interface Options {
  rounds: number;
  sampleMs: number;
  json: boolean;
}

const USAGE = `Usage: pnpm bench proxy-header [flags]

  --rounds N      measured rounds per case, at least 3 (default 7)
  --sample-ms N   length of one measurement in milliseconds (default 200)
  --json          also print the results as one line of JSON after the table
`;

export function parseOptions(args: string[]): Options {
  const v = parseFlags(args, {
    rounds: { type: 'string' },
    'sample-ms': { type: 'string' },
    json: { type: 'boolean' },
  });
  return {
    rounds: intFlag(v, 'rounds', 7, 3, 1000),
    sampleMs: intFlag(v, 'sample-ms', 200, 10, 60_000),
    json: v.json === true,
  };
}

// ---------------------------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------------------------

/** One operation on one input, done by each side; each returns a number so nothing is optimised away. */
interface Case {
  operation: 'parse' | 'build';
  input: string;
  corral: () => number;
  peer: () => number;
  /** Throws unless both sides produce the expected result. */
  check(): void;
}

const PAYLOAD = Buffer.from('GET / HTTP/1.1\r\nHost: example.com\r\n\r\n');

const V4 = { source: { address: '192.0.2.10', port: 40000 }, destination: { address: '198.51.100.1', port: 443 } };
const V6 = { source: { address: '2001:db8::7', port: 51000 }, destination: { address: '2001:db8::1', port: 8443 } };
const TLVS = {
  alpn: 'h2',
  authority: 'example.com',
  uniqueId: Buffer.from('0123456789abcdef0123456789abcdef'),
  ssl: { verified: true, client: { ssl: true }, version: 'TLSv1.3', cipher: 'TLS_AES_256_GCM_SHA384' },
  raw: [],
};

const V4_BYTES = [192, 0, 2, 10, 198, 51, 100, 1];
const V6_SRC = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7];
const V6_DST = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

function withPayload(header: Uint8Array): Buffer {
  return Buffer.concat([header, PAYLOAD]);
}

function fail(what: string): never {
  throw new Error(`proxy-header bench: ${what}`);
}

function parseCase(input: string, bytes: Buffer, version: 1 | 2, expected: { address: string; port: number; peerAddress: readonly number[] }): Case {
  const corral = (): number => {
    const r = parseProxyHeader(bytes);
    return r.status === 'done' ? r.length : -1;
  };
  const peerParse =
    version === 1
      ? (): number => peer.V1BinaryProxyProtocol.parse(bytes).source.port
      : (): number => (peer.V2ProxyProtocol.parse(bytes).data?.length ?? 0);
  return {
    operation: 'parse',
    input,
    corral,
    peer: peerParse,
    check() {
      const r = parseProxyHeader(bytes);
      if (r.status !== 'done' || r.header.family === undefined || r.header.family === 'unix') fail(`corral did not parse ${input}`);
      if (r.header.source.address !== expected.address || r.header.source.port !== expected.port) fail(`corral misread ${input}`);
      if (!bytes.subarray(r.length).equals(PAYLOAD)) fail(`corral misplaced the end of ${input}`);
      if (version === 1) {
        const p = peer.V1BinaryProxyProtocol.parse(bytes);
        if (p.source.ipAddress !== expected.address || p.source.port !== expected.port) fail(`the peer misread ${input}`);
      } else {
        const p = peer.V2ProxyProtocol.parse(bytes);
        const a = p.proxyAddress;
        if (!(a instanceof peer.IPv4ProxyAddress || a instanceof peer.IPv6ProxyAddress)) fail(`the peer misread ${input}`);
        if (a.sourcePort !== expected.port || a.sourceAddress.address.join('.') !== expected.peerAddress.join('.')) fail(`the peer misread ${input}`);
      }
    },
  };
}

function buildCase(input: string, header: ProxyHeaderInput, peerModel: { build(): Uint8Array | string }): Case {
  const expected = buildProxyHeader(header);
  return {
    operation: 'build',
    input,
    corral: () => buildProxyHeader(header).length,
    peer: () => peerModel.build().length,
    check() {
      const mine = buildProxyHeader(header);
      const theirs = Buffer.from(peerModel.build());
      if (!mine.equals(expected)) fail(`corral built ${input} inconsistently`);
      if (!mine.equals(theirs)) fail(`the two sides built different bytes for ${input}`);
    },
  };
}

export function cases(): Case[] {
  const v1Tcp4 = buildProxyHeader({ version: 1, command: 'proxy', family: 'ipv4', ...V4 });
  const v1Tcp6 = buildProxyHeader({ version: 1, command: 'proxy', family: 'ipv6', ...V6 });
  const v2Ipv4 = buildProxyHeader({ version: 2, command: 'proxy', family: 'ipv4', ...V4 });
  const v2Ipv6Tlvs = buildProxyHeader({ version: 2, command: 'proxy', family: 'ipv6', ...V6, tlvs: TLVS });
  const v2Ipv6TlvsCrc = buildProxyHeader({ version: 2, command: 'proxy', family: 'ipv6', ...V6, tlvs: TLVS }, { checksum: true });
  const v4Expect = { address: V4.source.address, port: V4.source.port, peerAddress: V4_BYTES.slice(0, 4) };
  const v6Expect = { address: V6.source.address, port: V6.source.port, peerAddress: V6_SRC };

  const peerV4 = new peer.IPv4ProxyAddress(
    peer.IPv4Address.createFrom(V4_BYTES.slice(0, 4)), V4.source.port,
    peer.IPv4Address.createFrom(V4_BYTES.slice(4)), V4.destination.port,
  );
  const peerV6 = new peer.IPv6ProxyAddress(
    peer.IPv6Address.createFrom(V6_SRC), V6.source.port, peer.IPv6Address.createFrom(V6_DST), V6.destination.port,
  );
  const peerPeer = (a: { address: string; port: number }) => new peer.Peer(a.address, a.port);

  return [
    parseCase('v1 TCP4', withPayload(v1Tcp4), 1, v4Expect),
    parseCase('v1 TCP6', withPayload(v1Tcp6), 1, v6Expect),
    parseCase('v2 IPv4, no TLV', withPayload(v2Ipv4), 2, v4Expect),
    parseCase(`v2 IPv6 + 4 TLVs (${v2Ipv6Tlvs.length} B)`, withPayload(v2Ipv6Tlvs), 2, v6Expect),
    parseCase(`v2 IPv6 + 4 TLVs + CRC32C (${v2Ipv6TlvsCrc.length} B)`, withPayload(v2Ipv6TlvsCrc), 2, v6Expect),
    buildCase(
      'v1 TCP4',
      { version: 1, command: 'proxy', family: 'ipv4', ...V4 },
      new peer.V1BinaryProxyProtocol(peer.INETProtocol.TCP4, peerPeer(V4.source), peerPeer(V4.destination)),
    ),
    buildCase(
      'v1 TCP6',
      { version: 1, command: 'proxy', family: 'ipv6', ...V6 },
      new peer.V1BinaryProxyProtocol(peer.INETProtocol.TCP6, peerPeer(V6.source), peerPeer(V6.destination)),
    ),
    buildCase(
      'v2 IPv4, no TLV',
      { version: 2, command: 'proxy', family: 'ipv4', ...V4 },
      new peer.V2ProxyProtocol(peer.Command.PROXY, peer.TransportProtocol.STREAM, peerV4),
    ),
    buildCase(
      'v2 IPv6, no TLV',
      { version: 2, command: 'proxy', family: 'ipv6', ...V6 },
      new peer.V2ProxyProtocol(peer.Command.PROXY, peer.TransportProtocol.STREAM, peerV6),
    ),
  ];
}

// ---------------------------------------------------------------------------------------------
// Measuring
// ---------------------------------------------------------------------------------------------

export interface Result {
  operation: string;
  input: string;
  corralOps: number;
  peerOps: number;
  /** Median of the per-round ratios corral/peer. */
  ratio: number;
}

export function measure(c: Case, o: Options): Result {
  c.check();
  return { operation: c.operation, input: c.input, ...compareOps(c.corral, c.peer, o, BATCH) };
}

export function table(results: readonly Result[]): string {
  return alignedTable([
    ['operation', 'input', 'corral ops/s', 'proxy-protocol-js ops/s', 'corral/peer'],
    ...results.map((r) => [r.operation, r.input, ops(r.corralOps), ops(r.peerOps), `${r.ratio.toFixed(2)}x`]),
  ], 2);
}

export const main = benchMain(USAGE, parseOptions, async (o) => {
  log(`proxy-header: Node ${process.version}, ${availableParallelism()} cores, load average ${loadAverage()}`);
  const results: Result[] = [];
  for (const c of cases()) {
    const r = measure(c, o);
    log(`  ${r.operation} ${r.input}: corral ${ops(r.corralOps)}, peer ${ops(r.peerOps)}, ratio ${r.ratio.toFixed(2)}`);
    results.push(r);
  }
  process.stdout.write(`\nNode ${process.version}, ${availableParallelism()} cores, ${o.rounds} rounds of ${o.sampleMs} ms, ${new Date().toISOString()}\n\n`);
  process.stdout.write(`${table(results)}\n`);
  if (o.json) process.stdout.write(`${JSON.stringify({ node: process.version, options: o, results })}\n`);
  keepSink();
  return 0;
});

runIfMain(import.meta.url, 'proxy-header', main);
