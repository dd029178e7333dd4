/**
 * TCP echo: a Corral listener against a bare `node:net` echo server, the peer.
 *
 *   pnpm bench tcp-echo [--connections 50] [--size 64] [--messages 2000] [--rounds 3] [--json]
 *   node_modules/.bin/tsx bench/tcp-echo.ts [flags]
 *
 * Each server runs in its own child process (bench/lib/echo-server.ts) and reports its CPU time
 * over IPC; the load generator runs here. Scenarios:
 *
 * - `ping-pong`: `--connections` connections, each doing `--messages` round trips of a
 *   `--size`-byte message (write it, wait for all of it to come back, repeat);
 * - `stream`: the same number of connections, each writing `--stream-mib` MiB (in 64 KiB writes)
 *   and reading it back;
 * - `connect`: `--connects` sequential short connections (connect, send 1 byte, read it back, close).
 *
 * For each scenario both servers get an unmeasured warm-up pass (a quarter of the work), then
 * `--rounds` measured passes each, alternating corral, raw, corral, raw... The table shows medians,
 * and ratios corral/raw that are the median of the per-round ratios (each round's two passes ran
 * back to back). The machine is shared and noisy: only the ratios mean anything.
 */

import { mkdirSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { availableParallelism, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { ServerKind } from './lib/echo-server.js';
import { collectProfile, cpuMicros, installExitHook, median, ServerProcess } from './lib/server-process.js';
import { UsageError, intFlag, runIfMain, scenariosFlag } from './lib/cli.js';

const HOST = '127.0.0.1';
const SERVER_SCRIPT = fileURLToPath(new URL('./lib/echo-server.ts', import.meta.url));
const STREAM_CHUNK = 64 * 1024;
const MIB = 1024 * 1024;

const SCENARIOS = ['ping-pong', 'stream', 'connect'] as const;
type Scenario = (typeof SCENARIOS)[number];
const PEERS: readonly ServerKind[] = ['corral', 'raw'];

export interface Options {
  connections: number;
  size: number;
  messages: number;
  streamMib: number;
  connects: number;
  rounds: number;
  scenarios: Scenario[];
  timeoutS: number;
  json: boolean;
  cpuProf: string | undefined;
  cpuProfIntervalUs: number;
}

const USAGE = `Usage: pnpm bench tcp-echo [flags]

  --connections N   concurrent connections in ping-pong and stream (default 50)
  --size N          ping-pong message size in bytes (default 64)
  --messages N      ping-pong round trips per connection (default 2000)
  --stream-mib N    MiB each connection writes and reads back in stream (default 16)
  --connects N      sequential short connections in connect (default 2000)
  --rounds N        measured passes per server and scenario, at least 3 (default 3)
  --scenarios LIST  comma-separated subset of ${SCENARIOS.join(',')} (default: all)
  --timeout S       abort the whole run after S seconds (default 120)
  --cpu-prof DIR    run both servers under node --cpu-prof; DIR/corral.cpuprofile, DIR/raw.cpuprofile
  --cpu-prof-interval US  sampling interval of --cpu-prof in microseconds (default 1000)
  --json            also print the results as one line of JSON after the table
`;

export function parseOptions(args: string[]): Options {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: {
        connections: { type: 'string' },
        size: { type: 'string' },
        messages: { type: 'string' },
        'stream-mib': { type: 'string' },
        connects: { type: 'string' },
        rounds: { type: 'string' },
        scenarios: { type: 'string' },
        timeout: { type: 'string' },
        'cpu-prof': { type: 'string' },
        'cpu-prof-interval': { type: 'string' },
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const v = parsed.values;
  if (v.help) throw new UsageError('');
  const scenarios = scenariosFlag(v.scenarios, SCENARIOS);
  return {
    connections: intFlag(v, 'connections', 50, 1, 5_000),
    size: intFlag(v, 'size', 64, 1, 16 * MIB),
    messages: intFlag(v, 'messages', 2_000, 1, 1_000_000),
    streamMib: intFlag(v, 'stream-mib', 16, 1, 1_024),
    connects: intFlag(v, 'connects', 2_000, 1, 20_000),
    rounds: intFlag(v, 'rounds', 3, 3, 50),
    scenarios,
    timeoutS: intFlag(v, 'timeout', 120, 1, 3_600),
    json: v.json,
    cpuProf: v['cpu-prof'] === undefined ? undefined : resolve(v['cpu-prof']),
    cpuProfIntervalUs: intFlag(v, 'cpu-prof-interval', 1000, 10, 1_000_000),
  };
}

// ---------------------------------------------------------------------------------------------
// Load

function connectOne(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: HOST, noDelay: true });
    const onError = (err: Error): void => reject(err);
    socket.once('error', onError);
    socket.once('connect', () => {
      socket.off('error', onError);
      resolve(socket);
    });
  });
}

async function openConnections(port: number, n: number): Promise<net.Socket[]> {
  const settled = await Promise.allSettled(Array.from({ length: n }, () => connectOne(port)));
  const sockets = settled.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed !== undefined) {
    closeAll(sockets);
    throw failed.reason;
  }
  return sockets;
}

function closeAll(sockets: net.Socket[]): void {
  for (const s of sockets) s.destroy();
}

const CLOSE_TIMEOUT_MS = 5_000;

/**
 * Close the sockets the way a client does (FIN, then wait for the server's), so a server's
 * teardown work is over before the next pass starts; whatever is still open after a while is
 * destroyed.
 */
async function endAll(sockets: net.Socket[]): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, CLOSE_TIMEOUT_MS);
  });
  const closed = Promise.all(sockets.map((s) => new Promise<void>((resolve) => {
    if (s.closed) {
      resolve();
      return;
    }
    s.once('close', () => resolve());
    s.on('error', () => {});
    s.resume();
    s.end();
  })));
  await Promise.race([closed, late]);
  clearTimeout(timer);
  closeAll(sockets);
}

/**
 * Run one exchange on `socket`: `body` starts it and returns the data handler, which calls `done`
 * when the exchange is complete or throws if the data is wrong. Fails if the socket errors or
 * closes first. The socket is paused again afterwards, ready for the next exchange.
 */
function exchange(socket: net.Socket, body: (done: () => void) => (chunk: Buffer) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    let handler: (chunk: Buffer) => void = () => {};
    const onData = (chunk: Buffer): void => {
      try {
        handler(chunk);
      } catch (err) {
        finish(err as Error);
      }
    };
    const onError = (err: Error): void => finish(err);
    const onClose = (): void => finish(new Error('the server closed the connection'));
    const finish = (err?: Error): void => {
      socket.off('data', onData);
      socket.off('error', onError);
      socket.off('close', onClose);
      socket.pause();
      if (err === undefined) resolve();
      else reject(err);
    };
    socket.on('error', onError);
    socket.on('close', onClose);
    socket.on('data', onData);
    socket.resume();
    handler = body(() => finish());
  });
}

/** `count` round trips of `payload` on each socket, all sockets at once. */
function pingPong(sockets: net.Socket[], payload: Buffer, count: number, check = false): Promise<void> {
  const size = payload.length;
  return Promise.all(sockets.map((socket) => exchange(socket, (done) => {
    let left = count;
    let got = 0;
    const received: Buffer[] = [];
    socket.write(payload);
    return (chunk) => {
      got += chunk.length;
      if (check) received.push(chunk);
      if (got < size) return;
      if (got > size) throw new Error(`received ${got} bytes for a ${size}-byte message`);
      if (check && !Buffer.concat(received).equals(payload)) throw new Error('the echo differs from the message');
      got = 0;
      received.length = 0;
      if (--left === 0) done();
      else socket.write(payload);
    };
  }))).then(() => undefined);
}

/** Each socket writes `total` bytes (in 64 KiB chunks, with backpressure) and reads them back. */
function stream(sockets: net.Socket[], chunk: Buffer, total: number): Promise<void> {
  return Promise.all(sockets.map((socket) => exchange(socket, (done) => {
    let sent = 0;
    let received = 0;
    const pump = (): void => {
      while (sent < total) {
        const n = Math.min(chunk.length, total - sent);
        sent += n;
        if (!socket.write(n === chunk.length ? chunk : chunk.subarray(0, n))) {
          socket.once('drain', pump);
          return;
        }
      }
    };
    pump();
    return (data) => {
      received += data.length;
      if (received > total) throw new Error(`received ${received} bytes of ${total}`);
      if (received === total) done();
    };
  }))).then(() => undefined);
}

const ONE_BYTE = Buffer.from('x');

/** Connect, send one byte, read it back, close; `count` times, one after the other. */
async function shortConnections(port: number, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    await new Promise<void>((resolve, reject) => {
      const socket = net.connect({ port, host: HOST, noDelay: true });
      let echoed = false;
      socket.once('error', reject);
      socket.once('connect', () => socket.write(ONE_BYTE));
      socket.once('data', () => {
        echoed = true;
        socket.end();
      });
      socket.once('close', () => (echoed ? resolve() : reject(new Error('closed before the echo'))));
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Measurement

interface Pass {
  scenario: Scenario;
  peer: ServerKind;
  round: number;
  /** Messages, MiB or connections. */
  units: number;
  wallMs: number;
  serverCpuUs: number;
  loadCpuUs: number;
  /** Start and end of the pass on the system's monotonic clock, in µs (the clock of V8's CPU profiles). */
  startUs: number;
  endUs: number;
}

interface ScenarioSpec {
  name: Scenario;
  label: string;
  unit: string;
  cpuUnit: string;
  /** Units of work per measured pass. */
  units: number;
  /** Set up (untimed), run (timed), tear down (untimed). */
  prepare(port: number, warmup: boolean): Promise<{ run(): Promise<void>; close(): Promise<void> }>;
}

function scenarioSpecs(o: Options): ScenarioSpec[] {
  const payload = Buffer.alloc(o.size, 'p');
  const chunk = Buffer.alloc(STREAM_CHUNK, 's');
  const warmupMessages = Math.max(1, Math.ceil(o.messages / 4));
  const warmupConnects = Math.max(1, Math.ceil(o.connects / 4));
  const warmupMib = Math.max(1, Math.ceil(o.streamMib / 4));
  const specs: Record<Scenario, ScenarioSpec> = {
    'ping-pong': {
      name: 'ping-pong',
      label: `ping-pong ${o.connections} conns x ${o.messages} msgs x ${o.size} B`,
      unit: 'msg/s',
      cpuUnit: 'µs/msg',
      units: o.connections * o.messages,
      async prepare(port, warmup) {
        const sockets = await openConnections(port, o.connections);
        try {
          // One checked round trip each: every connection is set up on the server before the clock starts.
          await pingPong(sockets, payload, 1, true);
        } catch (err) {
          closeAll(sockets);
          throw err;
        }
        return { run: () => pingPong(sockets, payload, warmup ? warmupMessages : o.messages), close: () => endAll(sockets) };
      },
    },
    stream: {
      name: 'stream',
      label: `stream ${o.connections} conns x ${o.streamMib} MiB`,
      unit: 'MiB/s',
      cpuUnit: 'µs/MiB',
      units: o.connections * o.streamMib,
      async prepare(port, warmup) {
        const sockets = await openConnections(port, o.connections);
        try {
          await pingPong(sockets, payload, 1, true);
        } catch (err) {
          closeAll(sockets);
          throw err;
        }
        const total = (warmup ? warmupMib : o.streamMib) * MIB;
        return { run: () => stream(sockets, chunk, total), close: () => endAll(sockets) };
      },
    },
    connect: {
      name: 'connect',
      label: `connect ${o.connects} sequential`,
      unit: 'conn/s',
      cpuUnit: 'µs/conn',
      units: o.connects,
      async prepare(port, warmup) {
        return { run: () => shortConnections(port, warmup ? warmupConnects : o.connects), close: async () => {} };
      },
    },
  };
  return o.scenarios.map((s) => specs[s]);
}

async function measure(spec: ScenarioSpec, server: ServerProcess<ServerKind>, round: number): Promise<Pass> {
  const { run, close } = await spec.prepare(server.port, false);
  try {
    const before = await server.usage();
    const load0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    await run();
    const t1 = process.hrtime.bigint();
    const load = process.cpuUsage(load0);
    const after = await server.usage();
    return {
      scenario: spec.name,
      peer: server.kind,
      round,
      units: spec.units,
      wallMs: Number(t1 - t0) / 1e6,
      serverCpuUs: cpuMicros(after.cpu) - cpuMicros(before.cpu),
      loadCpuUs: cpuMicros(load),
      startUs: Number(t0 / 1000n),
      endUs: Number(t1 / 1000n),
    };
  } finally {
    await close();
  }
}

async function warmUp(spec: ScenarioSpec, server: ServerProcess): Promise<void> {
  const { run, close } = await spec.prepare(server.port, true);
  try {
    await run();
  } finally {
    await close();
  }
}

// ---------------------------------------------------------------------------------------------
// Report

interface PeerSummary {
  /** Median units per second. */
  rate: number;
  /** Median server CPU microseconds per unit. */
  cpuPerUnit: number;
  /** Median server CPU time as a share of wall time (1 = one core busy). */
  serverCpuShare: number;
  /** Median load generator CPU time as a share of wall time (1 = one core busy). */
  loadCpuShare: number;
}

interface ScenarioResult {
  scenario: Scenario;
  label: string;
  unit: string;
  cpuUnit: string;
  corral: PeerSummary;
  raw: PeerSummary;
  /** Median of the per-round ratios corral/raw, and their range. */
  rateRatio: { median: number; min: number; max: number };
  cpuRatio: { median: number; min: number; max: number };
  passes: Pass[];
}

const rate = (p: Pass): number => p.units / (p.wallMs / 1000);
const cpuPerUnit = (p: Pass): number => p.serverCpuUs / p.units;

function summarize(spec: ScenarioSpec, passes: Pass[]): ScenarioResult {
  const of = (peer: ServerKind): Pass[] => passes.filter((p) => p.peer === peer).sort((a, b) => a.round - b.round);
  const peer = (ps: Pass[]): PeerSummary => ({
    rate: median(ps.map(rate)),
    cpuPerUnit: median(ps.map(cpuPerUnit)),
    serverCpuShare: median(ps.map((p) => p.serverCpuUs / 1000 / p.wallMs)),
    loadCpuShare: median(ps.map((p) => p.loadCpuUs / 1000 / p.wallMs)),
  });
  const c = of('corral');
  const r = of('raw');
  const ratios = (f: (p: Pass) => number): { median: number; min: number; max: number } => {
    const xs = c.map((p, i) => f(p) / f(r[i]!));
    return { median: median(xs), min: Math.min(...xs), max: Math.max(...xs) };
  };
  return {
    scenario: spec.name, label: spec.label, unit: spec.unit, cpuUnit: spec.cpuUnit,
    corral: peer(c), raw: peer(r),
    rateRatio: ratios(rate), cpuRatio: ratios(cpuPerUnit),
    passes,
  };
}

function num(x: number): string {
  if (x >= 100) return Math.round(x).toLocaleString('en-US');
  if (x >= 10) return x.toFixed(1);
  return x.toFixed(2);
}

const pct = (x: number): string => `${Math.round(x * 100)}%`;
const ratio = (r: { median: number; min: number; max: number }): string =>
  `${r.median.toFixed(3)} (${r.min.toFixed(2)}–${r.max.toFixed(2)})`;

export function table(results: ScenarioResult[]): string {
  const header = ['scenario', 'corral', 'raw', 'corral/raw', 'server CPU corral', 'server CPU raw', 'corral/raw', 'server CPU share c / r', 'load gen CPU share c / r'];
  const rows = results.map((s) => [
    s.label,
    `${num(s.corral.rate)} ${s.unit}`,
    `${num(s.raw.rate)} ${s.unit}`,
    ratio(s.rateRatio),
    `${num(s.corral.cpuPerUnit)} ${s.cpuUnit}`,
    `${num(s.raw.cpuPerUnit)} ${s.cpuUnit}`,
    ratio(s.cpuRatio),
    `${pct(s.corral.serverCpuShare)} / ${pct(s.raw.serverCpuShare)}`,
    `${pct(s.corral.loadCpuShare)} / ${pct(s.raw.loadCpuShare)}`,
  ]);
  const line = (cells: string[]): string => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

// ---------------------------------------------------------------------------------------------

function log(message: string): void {
  process.stderr.write(`${message}\n`);
}

export async function run(o: Options): Promise<{ results: ScenarioResult[]; meta: Record<string, unknown> }> {
  const meta = {
    date: new Date().toISOString(),
    node: process.version,
    platform: `${process.platform} ${process.arch}`,
    cores: availableParallelism(),
    loadavgAtStart: loadavg().map((x) => Number(x.toFixed(2))),
    options: { ...o },
    /** Each server's CPU time over its whole life (start-up and warm-up included), from its exit message. */
    serverLifetimeCpuUs: {} as Partial<Record<ServerKind, number>>,
  };
  if (o.cpuProf !== undefined) mkdirSync(o.cpuProf, { recursive: true });
  const servers: ServerProcess<ServerKind>[] = [];
  try {
    for (const kind of PEERS) servers.push(await ServerProcess.start(SERVER_SCRIPT, kind, o));
    const results: ScenarioResult[] = [];
    for (const spec of scenarioSpecs(o)) {
      for (const server of servers) await warmUp(spec, server);
      const passes: Pass[] = [];
      for (let round = 1; round <= o.rounds; round++) {
        for (const server of servers) {
          const p = await measure(spec, server, round);
          passes.push(p);
          log(`${spec.name} round ${round} ${p.peer}: ${num(rate(p))} ${spec.unit}, ${num(cpuPerUnit(p))} ${spec.cpuUnit} server CPU, ${p.wallMs.toFixed(0)} ms`);
        }
      }
      results.push(summarize(spec, passes));
    }
    if (o.cpuProf !== undefined) {
      // The measured passes, so a profile can be cut down to them (bench/lib/cpuprofile-top.ts --windows).
      const windows = results.flatMap((r) => r.passes.map(({ scenario, peer, round, startUs, endUs }) => ({ scenario, peer, round, startUs, endUs })));
      writeFileSync(join(o.cpuProf, 'windows.json'), `${JSON.stringify(windows, null, 1)}\n`);
    }
    return { results, meta };
  } finally {
    await Promise.all(servers.map((s) => s.stop().catch(() => s.kill())));
    for (const s of servers) if (s.finalUsage !== undefined) meta.serverLifetimeCpuUs[s.kind] = cpuMicros(s.finalUsage.cpu);
    if (o.cpuProf !== undefined) for (const kind of PEERS) collectProfile(o.cpuProf, kind);
  }
}

/** Run with command-line flags; resolves to the exit code. */
export async function main(args: string[]): Promise<number> {
  let o: Options;
  try {
    o = parseOptions(args);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    if (err.message !== '') process.stderr.write(`${err.message}\n\n`);
    process.stderr.write(USAGE);
    return err.message === '' ? 0 : 2;
  }
  installExitHook();
  // Bounded in time: past the deadline, give up (the exit hook kills the servers).
  const deadline = setTimeout(() => {
    log(`tcp-echo: aborted after ${o.timeoutS} s`);
    process.exit(1);
  }, o.timeoutS * 1000);
  try {
    log(`tcp-echo: Node ${process.version}, ${availableParallelism()} cores, load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
    const { results, meta } = await run(o);
    process.stdout.write(`\nNode ${process.version}, ${availableParallelism()} cores, ${o.rounds} rounds, ${new Date().toISOString()}\n\n`);
    process.stdout.write(`${table(results)}\n`);
    if (o.cpuProf !== undefined) {
      const files = ['corral.cpuprofile', 'raw.cpuprofile'].map((f) => join(o.cpuProf!, f)).join(' ');
      process.stdout.write(`\nCPU profiles of the measured passes:\n  node_modules/.bin/tsx bench/lib/cpuprofile-top.ts --windows ${join(o.cpuProf, 'windows.json')} ${files}\n`);
    }
    if (o.json) process.stdout.write(`${JSON.stringify({ meta, results })}\n`);
    return 0;
  } finally {
    clearTimeout(deadline);
  }
}

runIfMain(import.meta.url, 'tcp-echo', main);
