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

import { mkdirSync } from 'node:fs';
import * as net from 'node:net';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { benchMain, RUN_FLAGS, intFlag, listFlag, parseFlags, runIfMain } from './lib/cli.js';
import { collectProfile, CPU_PROF_FLAGS, cpuProfOptions, profilesHint, writeWindows } from './lib/cpu-prof.js';
import type { ServerKind } from './lib/echo-server.js';
import { loadAverage, log, machineMeta, num, pct, ratio, table as markdownTable } from './lib/report.js';
import { byRound, cpuShare, measureRounds, median, pairedRatios, perSecond, timePass, warmupOf, type Ratio } from './lib/rounds.js';
import { cpuMicros, runBounded, ServerProcess } from './lib/server-process.js';
import { closeAll, endAll, exchange, openConnections, pingPong, shortConnection } from './lib/tcp-load.js';

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
  const v = parseFlags(args, {
    ...RUN_FLAGS,
    connections: { type: 'string' },
    size: { type: 'string' },
    messages: { type: 'string' },
    'stream-mib': { type: 'string' },
    connects: { type: 'string' },
    ...CPU_PROF_FLAGS,
  });
  const scenarios = listFlag(v.scenarios, 'scenario', SCENARIOS);
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
    ...cpuProfOptions(v),
  };
}

// ---------------------------------------------------------------------------------------------
// Load

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

/** `n` connections, each checked with one round trip: every connection is set up on the server before the clock starts. */
async function openChecked(port: number, n: number, payload: Buffer): Promise<net.Socket[]> {
  const sockets = await openConnections(port, n);
  try {
    await pingPong(sockets, payload, 1, true);
  } catch (err) {
    closeAll(sockets);
    throw err;
  }
  return sockets;
}

/** Connect, send one byte, read it back, close; `count` times, one after the other. */
async function shortConnections(port: number, count: number): Promise<void> {
  for (let i = 0; i < count; i++) await shortConnection(port);
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
  const warmupMessages = warmupOf(o.messages);
  const warmupConnects = warmupOf(o.connects);
  const warmupMib = warmupOf(o.streamMib);
  const specs: Record<Scenario, ScenarioSpec> = {
    'ping-pong': {
      name: 'ping-pong',
      label: `ping-pong ${o.connections} conns x ${o.messages} msgs x ${o.size} B`,
      unit: 'msg/s',
      cpuUnit: 'µs/msg',
      units: o.connections * o.messages,
      async prepare(port, warmup) {
        const sockets = await openChecked(port, o.connections, payload);
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
        const sockets = await openChecked(port, o.connections, payload);
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
    const t = await timePass(server, run);
    return {
      scenario: spec.name,
      peer: server.kind,
      round,
      units: spec.units,
      wallMs: t.wallMs,
      serverCpuUs: t.serverCpuUs,
      loadCpuUs: t.loadCpuUs,
      startUs: t.startUs,
      endUs: t.endUs,
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
  rateRatio: Ratio;
  cpuRatio: Ratio;
  passes: Pass[];
}

const rate = (p: Pass): number => perSecond(p.units, p.wallMs);
const cpuPerUnit = (p: Pass): number => p.serverCpuUs / p.units;

function summarize(spec: ScenarioSpec, passes: Pass[]): ScenarioResult {
  const peer = (ps: Pass[]): PeerSummary => ({
    rate: median(ps.map(rate)),
    cpuPerUnit: median(ps.map(cpuPerUnit)),
    serverCpuShare: median(ps.map((p) => cpuShare(p.serverCpuUs, p.wallMs))),
    loadCpuShare: median(ps.map((p) => cpuShare(p.loadCpuUs, p.wallMs))),
  });
  const c = byRound(passes, (p) => p.peer === 'corral');
  const r = byRound(passes, (p) => p.peer === 'raw');
  return {
    scenario: spec.name, label: spec.label, unit: spec.unit, cpuUnit: spec.cpuUnit,
    corral: peer(c), raw: peer(r),
    rateRatio: pairedRatios(c, r, rate), cpuRatio: pairedRatios(c, r, cpuPerUnit),
    passes,
  };
}

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
  return markdownTable(header, rows);
}

// ---------------------------------------------------------------------------------------------

export async function run(o: Options): Promise<{ results: ScenarioResult[]; meta: Record<string, unknown> }> {
  const meta = {
    ...machineMeta(),
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
      const passes = await measureRounds(o.rounds, servers, (server, round) => measure(spec, server, round), {
        each: (p, _, round) => log(`${spec.name} round ${round} ${p.peer}: ${num(rate(p))} ${spec.unit}, ${num(cpuPerUnit(p))} ${spec.cpuUnit} server CPU, ${p.wallMs.toFixed(0)} ms`),
      });
      results.push(summarize(spec, passes));
    }
    if (o.cpuProf !== undefined) writeWindows(o.cpuProf, results.flatMap((r) => r.passes));
    return { results, meta };
  } finally {
    await Promise.all(servers.map((s) => s.stop().catch(() => s.kill())));
    for (const s of servers) if (s.finalUsage !== undefined) meta.serverLifetimeCpuUs[s.kind] = cpuMicros(s.finalUsage.cpu);
    if (o.cpuProf !== undefined) for (const kind of PEERS) collectProfile(o.cpuProf, kind);
  }
}

/** Run with command-line flags; resolves to the exit code. */
export const main = benchMain(USAGE, parseOptions, (o) => runBounded('tcp-echo', o.timeoutS, async () => {
  log(`tcp-echo: Node ${process.version}, ${availableParallelism()} cores, load average ${loadAverage()}`);
  const { results, meta } = await run(o);
  process.stdout.write(`\nNode ${process.version}, ${availableParallelism()} cores, ${o.rounds} rounds, ${new Date().toISOString()}\n\n`);
  process.stdout.write(`${table(results)}\n`);
  if (o.cpuProf !== undefined) process.stdout.write(profilesHint(o.cpuProf, PEERS));
  if (o.json) process.stdout.write(`${JSON.stringify({ meta, results })}\n`);
  return 0;
}));

runIfMain(import.meta.url, 'tcp-echo', main);
