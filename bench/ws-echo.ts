/**
 * WebSocket echo: a Corral WebSocket listener against the `ws` package's WebSocketServer, the peer.
 *
 *   pnpm bench ws-echo [--connections 100] [--rounds 3] [--scenarios LIST] [--json]
 *   node_modules/.bin/tsx bench/ws-echo.ts [flags]
 *
 * Each server runs in its own child process (bench/lib/ws-echo-server.ts) and reports its CPU time
 * and memory over IPC; the load runs in `--generators` more child processes (bench/lib/ws-load.ts),
 * so this process only directs and measures. Scenarios:
 *
 * - `binary-64`, `text-64`, `binary-16k`, `binary-1m`: ping-pong. `--connections` WebSocket
 *   connections, each doing `--messages` (64 B), `--messages-16k` or `--messages-1m` round trips
 *   of one message (`--window` messages in flight per connection, 1 by default);
 * - `idle`: `--idle` connections opened and left idle, the server's RSS and heap measured before
 *   and after (each after a full garbage collection), in a fresh pair of servers every round.
 *
 * For each ping-pong scenario both servers get an unmeasured warm-up pass (a quarter of the
 * work), then `--rounds` measured passes each, alternating corral, ws, corral, ws... The table
 * shows medians, and ratios corral/ws that are the median of the per-round ratios (each round's
 * two passes ran back to back). Besides messages/s and server CPU time per message, it gives the
 * server's instructions per message, counted with `perf stat -p` where perf works (`--perf`):
 * on a shared machine the steadiest of the three. The machine is shared and noisy: only the
 * ratios mean anything.
 *
 * The corral server runs Corral compiled to JavaScript as it ships (bench/lib/corral-build.ts),
 * unless `--corral src` asks for its TypeScript sources through tsx.
 */

import { mkdirSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { benchMain, RUN_FLAGS, choiceFlag, intFlag, listFlag, parseFlags, runIfMain, UsageError } from './lib/cli.js';
import { buildCorral } from './lib/corral-build.js';
import { collectProfile, CPU_PROF_FLAGS, cpuProfOptions, profilesHint, writeWindows } from './lib/cpu-prof.js';
import type { ClientKind } from './lib/load-child.js';
import { LoadProcess, type RequestBody } from './lib/load-process.js';
import { perfAvailable, PerfCounter, type InstructionCounts } from './lib/perf-counter.js';
import { bytes, instr, loadAverage, log, machineMeta, num, pct, ratio, table } from './lib/report.js';
import { byRound, cpuShare, measureRounds, median, pairedRatios, perSecond, timePass, warmupOf, type Ratio } from './lib/rounds.js';
import {
  cpuMicros, fdLimitFor, fileLimits, memoryOf, runBounded, ServerProcess, type ServerProcessOptions,
} from './lib/server-process.js';
import type { WsServerKind } from './lib/ws-echo-server.js';

const SERVER_SCRIPT = fileURLToPath(new URL('./lib/ws-echo-server.ts', import.meta.url));
const KIB = 1024;
const MIB = 1024 * 1024;
/** Upgrades in flight per load generator while opening connections. */
const OPEN_CONCURRENCY = 128;

const PING_PONG = ['binary-64', 'text-64', 'binary-16k', 'binary-1m'] as const;
const SCENARIOS = [...PING_PONG, 'idle'] as const;
type Scenario = (typeof SCENARIOS)[number];
type PingPongScenario = (typeof PING_PONG)[number];
const PEERS: readonly WsServerKind[] = ['corral', 'ws'];

/** The issue's targets: messages/s at least `min` times ws's; idle memory per connection at most 0.8 times. */
const RATE_TARGETS: Record<PingPongScenario, number> = { 'binary-64': 1.3, 'text-64': 1.3, 'binary-16k': 1.0, 'binary-1m': 1.0 };
const IDLE_RSS_TARGET = 0.8;

export interface Options {
  connections: number;
  window: number;
  messages: number;
  messages16k: number;
  messages1m: number;
  idle: number;
  generators: number;
  client: ClientKind;
  /** `built`: Corral compiled to JavaScript as it ships; `src`: its TypeScript sources through tsx. */
  corral: 'built' | 'src';
  /** Count the servers' instructions with `perf stat` (`auto`: when it works here). */
  perf: 'auto' | 'on' | 'off';
  rounds: number;
  scenarios: Scenario[];
  timeoutS: number;
  json: boolean;
  cpuProf: string | undefined;
  cpuProfIntervalUs: number;
}

const USAGE = `Usage: pnpm bench ws-echo [flags]

  --connections N   connections in the ping-pong scenarios (default 100)
  --window N        messages in flight per connection (default 1)
  --messages N      round trips per connection at 64 B (default 500)
  --messages-16k N  round trips per connection at 16 KiB (default 100)
  --messages-1m N   round trips per connection at 1 MiB (default 5)
  --idle N          connections held open in the idle scenario (default 10000)
  --generators N    load generator processes (default 1)
  --client KIND     the load generator's client: raw (default) or ws
  --corral FROM     built (default): Corral compiled to JavaScript, as published; src: its
                    TypeScript sources through the tsx loader (whose keepNames costs memory)
  --perf MODE       count each ping-pong server's instructions with perf stat: auto (default:
                    when perf works here), on or off
  --rounds N        measured passes per server and scenario, at least 3 (default 3)
  --scenarios LIST  comma-separated subset of ${SCENARIOS.join(',')} (default: all)
  --timeout S       abort the whole run after S seconds (default 600)
  --cpu-prof DIR    run the ping-pong servers under node --cpu-prof; DIR/corral.cpuprofile, DIR/ws.cpuprofile
  --cpu-prof-interval US  sampling interval of --cpu-prof in microseconds (default 1000)
  --json            also print the results as one line of JSON after the tables
`;

export function parseOptions(args: string[]): Options {
  const v = parseFlags(args, {
    ...RUN_FLAGS,
    connections: { type: 'string' },
    window: { type: 'string' },
    messages: { type: 'string' },
    'messages-16k': { type: 'string' },
    'messages-1m': { type: 'string' },
    idle: { type: 'string' },
    generators: { type: 'string' },
    client: { type: 'string' },
    corral: { type: 'string' },
    perf: { type: 'string' },
    ...CPU_PROF_FLAGS,
  });
  const scenarios = listFlag(v.scenarios, 'scenario', SCENARIOS);
  const client = choiceFlag(v, 'client', ['raw', 'ws'], 'raw');
  const corral = choiceFlag(v, 'corral', ['built', 'src'], 'built');
  const perf = choiceFlag(v, 'perf', ['auto', 'on', 'off'], 'auto');
  return {
    connections: intFlag(v, 'connections', 100, 1, 5_000),
    window: intFlag(v, 'window', 1, 1, 64),
    messages: intFlag(v, 'messages', 500, 1, 1_000_000),
    messages16k: intFlag(v, 'messages-16k', 100, 1, 100_000),
    messages1m: intFlag(v, 'messages-1m', 5, 1, 1_000),
    idle: intFlag(v, 'idle', 10_000, 1, 50_000),
    generators: intFlag(v, 'generators', 1, 1, 16),
    client,
    corral,
    perf,
    rounds: intFlag(v, 'rounds', 3, 3, 50),
    scenarios,
    timeoutS: intFlag(v, 'timeout', 600, 1, 3_600),
    json: v.json,
    ...cpuProfOptions(v),
  };
}

// ---------------------------------------------------------------------------------------------
// Load generators

/** `total` split into `parts` near-equal shares. */
function shares(total: number, parts: number): number[] {
  return Array.from({ length: parts }, (_, i) => Math.floor(total / parts) + (i < total % parts ? 1 : 0));
}

/** Run one request on every generator (the `i`-th gets `body(i)`), all at once; their CPU time, each. */
async function onAll(gens: LoadProcess[], body: (i: number) => RequestBody | undefined): Promise<number[]> {
  const replies = await Promise.all(gens.map((g, i) => {
    const b = body(i);
    return b === undefined ? undefined : g.request(b);
  }));
  return replies.map((r) => (r === undefined ? 0 : cpuMicros(r.cpu)));
}

async function openAll(gens: LoadProcess[], o: Options, port: number, count: number): Promise<void> {
  const share = shares(count, gens.length);
  try {
    await onAll(gens, (i) => (share[i] === 0 ? undefined : { type: 'open', port, count: share[i]!, concurrency: OPEN_CONCURRENCY, client: o.client }));
  } catch (err) {
    await closeAll(gens).catch(() => {});
    throw err;
  }
}

async function closeAll(gens: LoadProcess[]): Promise<void> {
  await onAll(gens, () => ({ type: 'close' }));
}

// ---------------------------------------------------------------------------------------------
// Ping-pong

interface Pass {
  scenario: Scenario;
  peer: WsServerKind;
  round: number;
  messages: number;
  wallMs: number;
  serverCpuUs: number;
  /** Every generator's CPU time over the pass, summed. */
  loadCpuUs: number;
  /** The busiest generator's CPU time over the pass. */
  loadMaxCpuUs: number;
  /** The server's instructions over the pass (with perf). */
  instructions: InstructionCounts | undefined;
  /** Start and end of the pass on the system's monotonic clock, in µs (the clock of V8's CPU profiles). */
  startUs: number;
  endUs: number;
}

interface PingPongSpec {
  name: PingPongScenario;
  label: string;
  text: boolean;
  size: number;
  /** Round trips per connection in a measured pass. */
  messages: number;
}

function sizeLabel(size: number): string {
  if (size >= MIB && size % MIB === 0) return `${size / MIB} MiB`;
  if (size >= KIB && size % KIB === 0) return `${size / KIB} KiB`;
  return `${size} B`;
}

function pingPongSpecs(o: Options): PingPongSpec[] {
  const all: Record<PingPongScenario, { text: boolean; size: number; messages: number }> = {
    'binary-64': { text: false, size: 64, messages: o.messages },
    'text-64': { text: true, size: 64, messages: o.messages },
    'binary-16k': { text: false, size: 16 * KIB, messages: o.messages16k },
    'binary-1m': { text: false, size: MIB, messages: o.messages1m },
  };
  return o.scenarios.filter((s): s is PingPongScenario => s !== 'idle').map((name) => {
    const s = all[name];
    const window = o.window === 1 ? '' : `, window ${o.window}`;
    return { name, ...s, label: `${s.text ? 'text' : 'binary'} ${sizeLabel(s.size)}, ${o.connections} conns x ${s.messages} msgs${window}` };
  });
}

/** Open the connections, check one round trip on each, run `messages` round trips (timed when `measure`), close. */
async function pingPongPass(
  spec: PingPongSpec, o: Options, server: ServerProcess<WsServerKind>, gens: LoadProcess[], messages: number, round: number, perf: boolean,
): Promise<Pass> {
  await openAll(gens, o, server.port, o.connections);
  try {
    await onAll(gens, () => ({ type: 'ping-pong', text: spec.text, size: spec.size, messages: 1, window: 1, check: true }));
    const counter = perf ? await PerfCounter.attach(server.pid!) : undefined;
    const t = await timePass(server, () => onAll(gens, () => ({ type: 'ping-pong', text: spec.text, size: spec.size, messages, window: o.window, check: false })));
    const instructions = await counter?.stop();
    return {
      scenario: spec.name,
      peer: server.kind,
      round,
      messages: messages * o.connections,
      wallMs: t.wallMs,
      serverCpuUs: t.serverCpuUs,
      loadCpuUs: t.result.reduce((a, b) => a + b, 0),
      loadMaxCpuUs: Math.max(...t.result),
      instructions,
      startUs: t.startUs,
      endUs: t.endUs,
    };
  } finally {
    await closeAll(gens);
  }
}

interface PeerSummary {
  /** Median messages per second. */
  rate: number;
  /** Median server CPU microseconds per message. */
  cpuPerMessage: number;
  /** Median server CPU time over wall time (1 = one core busy). */
  serverCpuShare: number;
  /** Median CPU time of all generators together over wall time. */
  loadCpuShare: number;
  /** Median CPU time of the busiest generator over wall time. */
  loadMaxCpuShare: number;
  /** Median server instructions (user + kernel) per message, with perf. */
  instrPerMessage: number | undefined;
}

interface PingPongResult {
  scenario: PingPongScenario;
  label: string;
  corral: PeerSummary;
  ws: PeerSummary;
  /** Median of the per-round ratios corral/ws, and their range. */
  rateRatio: Ratio;
  cpuRatio: Ratio;
  instrRatio: Ratio | undefined;
  target: number;
  passes: Pass[];
}

const rate = (p: Pass): number => perSecond(p.messages, p.wallMs);
const cpuPerMessage = (p: Pass): number => p.serverCpuUs / p.messages;
const instrPerMessage = (p: Pass): number => (p.instructions === undefined ? NaN : (p.instructions.user + p.instructions.kernel) / p.messages);

function summarize(spec: PingPongSpec, passes: Pass[]): PingPongResult {
  const of = (peer: WsServerKind): Pass[] => byRound(passes, (p) => p.peer === peer);
  const peer = (ps: Pass[]): PeerSummary => ({
    rate: median(ps.map(rate)),
    cpuPerMessage: median(ps.map(cpuPerMessage)),
    serverCpuShare: median(ps.map((p) => cpuShare(p.serverCpuUs, p.wallMs))),
    loadCpuShare: median(ps.map((p) => cpuShare(p.loadCpuUs, p.wallMs))),
    loadMaxCpuShare: median(ps.map((p) => cpuShare(p.loadMaxCpuUs, p.wallMs))),
    instrPerMessage: ps.every((p) => p.instructions !== undefined) ? median(ps.map(instrPerMessage)) : undefined,
  });
  const c = of('corral');
  const w = of('ws');
  const counted = passes.every((p) => p.instructions !== undefined);
  return {
    scenario: spec.name,
    label: spec.label,
    corral: peer(c),
    ws: peer(w),
    rateRatio: pairedRatios(c, w, rate),
    cpuRatio: pairedRatios(c, w, cpuPerMessage),
    instrRatio: counted ? pairedRatios(c, w, instrPerMessage) : undefined,
    target: RATE_TARGETS[spec.name],
    passes,
  };
}

// ---------------------------------------------------------------------------------------------
// Idle connections

interface IdleRound {
  peer: WsServerKind;
  round: number;
  connections: number;
  before: NodeJS.MemoryUsage;
  after: NodeJS.MemoryUsage;
  /** Opening the connections: wall time and the server's CPU time (TCP connect, HTTP upgrade, session). */
  openMs: number;
  openServerCpuUs: number;
}

interface IdlePeerSummary {
  rssPerConn: number;
  heapPerConn: number;
  externalPerConn: number;
  upgradesPerS: number;
  cpuPerUpgrade: number;
}

interface IdleResult {
  scenario: 'idle';
  label: string;
  corral: IdlePeerSummary;
  ws: IdlePeerSummary;
  rssRatio: Ratio;
  heapRatio: Ratio;
  cpuPerUpgradeRatio: Ratio;
  target: number;
  rounds: IdleRound[];
}

const perConn = (r: IdleRound, f: (m: NodeJS.MemoryUsage) => number): number => (f(r.after) - f(r.before)) / r.connections;
const rssPerConn = (r: IdleRound): number => perConn(r, (m) => m.rss);
const heapPerConn = (r: IdleRound): number => perConn(r, (m) => m.heapUsed);
const externalPerConn = (r: IdleRound): number => perConn(r, (m) => m.external);
const cpuPerUpgrade = (r: IdleRound): number => r.openServerCpuUs / r.connections;
const upgradesPerS = (r: IdleRound): number => perSecond(r.connections, r.openMs);

/** A fresh server: warm it up, measure, open `o.idle` connections, measure again, close them. */
async function idleRound(kind: WsServerKind, o: Options, gens: LoadProcess[], round: number, fdLimit: number | undefined): Promise<IdleRound> {
  const serverOpts: ServerProcessOptions = { cpuProf: undefined, cpuProfIntervalUs: o.cpuProfIntervalUs, execArgv: ['--expose-gc'], fdLimit };
  const server = await ServerProcess.start(SERVER_SCRIPT, kind, serverOpts);
  try {
    // Everything a connection uses is loaded and compiled before the first measurement.
    const warm = Math.min(100, o.idle);
    await openAll(gens, o, server.port, warm);
    try {
      await onAll(gens, () => ({ type: 'ping-pong', text: false, size: 64, messages: 10, window: 1, check: true }));
    } finally {
      await closeAll(gens);
    }
    const before = memoryOf(await server.usage({ memory: true }));
    const cpu0 = await server.usage();
    const t0 = process.hrtime.bigint();
    await openAll(gens, o, server.port, o.idle);
    try {
      const t1 = process.hrtime.bigint();
      const cpu1 = await server.usage();
      const after = memoryOf(await server.usage({ memory: true }));
      return {
        peer: kind,
        round,
        connections: o.idle,
        before,
        after,
        openMs: Number(t1 - t0) / 1e6,
        openServerCpuUs: cpuMicros(cpu1.cpu) - cpuMicros(cpu0.cpu),
      };
    } finally {
      await closeAll(gens);
    }
  } finally {
    await server.stop().catch(() => server.kill());
  }
}

function summarizeIdle(o: Options, rounds: IdleRound[]): IdleResult {
  const of = (peer: WsServerKind): IdleRound[] => byRound(rounds, (r) => r.peer === peer);
  const peer = (rs: IdleRound[]): IdlePeerSummary => ({
    rssPerConn: median(rs.map(rssPerConn)),
    heapPerConn: median(rs.map(heapPerConn)),
    externalPerConn: median(rs.map(externalPerConn)),
    upgradesPerS: median(rs.map(upgradesPerS)),
    cpuPerUpgrade: median(rs.map(cpuPerUpgrade)),
  });
  const c = of('corral');
  const w = of('ws');
  return {
    scenario: 'idle',
    label: `idle ${o.idle} conns`,
    corral: peer(c),
    ws: peer(w),
    rssRatio: pairedRatios(c, w, rssPerConn),
    heapRatio: pairedRatios(c, w, heapPerConn),
    cpuPerUpgradeRatio: pairedRatios(c, w, cpuPerUpgrade),
    target: IDLE_RSS_TARGET,
    rounds,
  };
}

// ---------------------------------------------------------------------------------------------
// Report

function loadShare(s: PeerSummary, generators: number): string {
  return generators === 1 ? pct(s.loadCpuShare) : `${pct(s.loadCpuShare)} (max ${pct(s.loadMaxCpuShare)})`;
}

export function pingPongTable(results: PingPongResult[], generators: number): string {
  const counted = results.every((s) => s.instrRatio !== undefined);
  const header = ['scenario', 'corral', 'ws', 'corral/ws', 'server CPU corral', 'server CPU ws', 'corral/ws', 'server CPU share c / w', 'load gen CPU share c / w'];
  if (counted) header.push('server instructions/msg c / w', 'corral/ws');
  const rows = results.map((s) => [
    s.label,
    `${num(s.corral.rate)} msg/s`,
    `${num(s.ws.rate)} msg/s`,
    ratio(s.rateRatio),
    `${num(s.corral.cpuPerMessage)} µs/msg`,
    `${num(s.ws.cpuPerMessage)} µs/msg`,
    ratio(s.cpuRatio),
    `${pct(s.corral.serverCpuShare)} / ${pct(s.ws.serverCpuShare)}`,
    `${loadShare(s.corral, generators)} / ${loadShare(s.ws, generators)}`,
    ...(counted ? [`${instr(s.corral.instrPerMessage!)} / ${instr(s.ws.instrPerMessage!)}`, ratio(s.instrRatio!)] : []),
  ]);
  return table(header, rows);
}

export function idleTable(r: IdleResult): string {
  const header = ['scenario', 'RSS/conn corral', 'RSS/conn ws', 'corral/ws', 'heapUsed/conn corral', 'heapUsed/conn ws', 'corral/ws', 'upgrades/s c / w', 'server CPU per upgrade c / w', 'corral/ws'];
  const row = [
    r.label,
    bytes(r.corral.rssPerConn),
    bytes(r.ws.rssPerConn),
    ratio(r.rssRatio),
    bytes(r.corral.heapPerConn),
    bytes(r.ws.heapPerConn),
    ratio(r.heapRatio),
    `${num(r.corral.upgradesPerS)} / ${num(r.ws.upgradesPerS)}`,
    `${num(r.corral.cpuPerUpgrade)} / ${num(r.ws.cpuPerUpgrade)} µs`,
    ratio(r.cpuPerUpgradeRatio),
  ];
  return table(header, [row]);
}

export function targetLines(pingPong: PingPongResult[], idle: IdleResult | undefined): string {
  const out: string[] = [];
  for (const r of pingPong) {
    const met = r.rateRatio.median >= r.target;
    // ws's CPU per message over Corral's: the throughput ratio the servers would reach, each on a core of its own.
    const capacity = 1 / r.cpuRatio.median;
    const instructions = r.instrRatio === undefined ? '' : `, instructions ${(1 / r.instrRatio.median).toFixed(2)}x`;
    out.push(`- ${r.label.split(',')[0]}: messages/s ${r.rateRatio.median.toFixed(2)}x ws, target >= ${r.target.toFixed(1)}x: ${met ? 'met' : 'NOT met'}`
      + ` (ws's server cost per message over Corral's: CPU time ${capacity.toFixed(2)}x${instructions})`);
  }
  if (idle !== undefined) {
    const met = idle.rssRatio.median <= idle.target;
    out.push(`- idle ${idle.rounds[0]?.connections ?? ''} conns: RSS per connection ${idle.rssRatio.median.toFixed(2)}x ws, target <= ${idle.target.toFixed(1)}x: ${met ? 'met' : 'NOT met'}`
      + ` (heapUsed per connection ${idle.heapRatio.median.toFixed(2)}x ws)`);
  }
  return out.join('\n');
}

// ---------------------------------------------------------------------------------------------

export async function run(o: Options): Promise<{ pingPong: PingPongResult[]; idle: IdleResult | undefined; meta: Record<string, unknown> }> {
  const meta = {
    ...machineMeta(),
    fileLimits: fileLimits(),
    perf: false,
    options: { ...o },
    /** Each ping-pong server's CPU time over its whole life (start-up and warm-up included), from its exit message. */
    serverLifetimeCpuUs: {} as Partial<Record<WsServerKind, number>>,
  };
  const specs = pingPongSpecs(o);
  const perf = o.perf === 'on' || (o.perf === 'auto' && specs.length > 0 && perfAvailable());
  if (o.perf === 'on' && !perfAvailable()) throw new UsageError('--perf on: perf stat cannot count instructions here');
  const withIdle = o.scenarios.includes('idle');
  const genFdLimit = withIdle ? fdLimitFor(Math.ceil(o.idle / o.generators)) : undefined;
  const serverFdLimit = withIdle ? fdLimitFor(o.idle) : undefined;
  if (o.cpuProf !== undefined) mkdirSync(o.cpuProf, { recursive: true });
  let build: { dir: string; remove(): void } | undefined;
  if (o.corral === 'built') {
    build = await buildCorral();
    const { remove } = build;
    process.once('exit', remove);
    // The corral server (bench/lib/ws-echo-server.ts) loads the compiled modules from there.
    process.env.WS_ECHO_CORRAL_DIR = build.dir;
  }
  meta.perf = perf;
  const gens: LoadProcess[] = [];
  const servers: ServerProcess<WsServerKind>[] = [];
  try {
    for (let i = 0; i < o.generators; i++) gens.push(await LoadProcess.start(genFdLimit));
    const pingPong: PingPongResult[] = [];
    if (specs.length > 0) {
      for (const kind of PEERS) servers.push(await ServerProcess.start(SERVER_SCRIPT, kind, o));
      for (const spec of specs) {
        for (const server of servers) await pingPongPass(spec, o, server, gens, warmupOf(spec.messages), 0, false);
        const passes = await measureRounds(o.rounds, servers, (server, round) => pingPongPass(spec, o, server, gens, spec.messages, round, perf), {
          each: (p, _, round) => log(`${spec.name} round ${round} ${p.peer}: ${num(rate(p))} msg/s, ${num(cpuPerMessage(p))} µs/msg server CPU, `
            + `${num(p.loadCpuUs / p.messages)} µs/msg load gen CPU, server ${pct(cpuShare(p.serverCpuUs, p.wallMs))}, `
            + `load gen ${pct(cpuShare(p.loadCpuUs, p.wallMs))}, ${p.wallMs.toFixed(0)} ms`
            + `${p.instructions === undefined ? '' : `, ${instr(instrPerMessage(p))} instructions/msg`}`),
        });
        pingPong.push(summarize(spec, passes));
      }
      if (o.cpuProf !== undefined) writeWindows(o.cpuProf, pingPong.flatMap((r) => r.passes));
      await Promise.all(servers.map((s) => s.stop().catch(() => s.kill())));
    }
    let idle: IdleResult | undefined;
    if (withIdle) {
      const rounds = await measureRounds(o.rounds, PEERS, (kind, round) => idleRound(kind, o, gens, round, serverFdLimit), {
        each: (r, kind, round) => log(`idle round ${round} ${kind}: RSS ${bytes(rssPerConn(r))}/conn, heapUsed ${bytes(heapPerConn(r))}/conn, `
          + `${num(upgradesPerS(r))} upgrades/s, ${num(cpuPerUpgrade(r))} µs server CPU per upgrade`),
      });
      idle = summarizeIdle(o, rounds);
    }
    return { pingPong, idle, meta };
  } finally {
    await Promise.all([...servers.map((s) => s.stop().catch(() => s.kill())), ...gens.map((g) => g.stop())]);
    for (const s of servers) if (s.finalUsage !== undefined) meta.serverLifetimeCpuUs[s.kind] = cpuMicros(s.finalUsage.cpu);
    if (o.cpuProf !== undefined && specs.length > 0) for (const kind of PEERS) collectProfile(o.cpuProf, kind);
    if (build !== undefined) {
      build.remove();
      process.off('exit', build.remove);
      delete process.env.WS_ECHO_CORRAL_DIR;
    }
  }
}

/** Run with command-line flags; resolves to the exit code. */
export const main = benchMain(USAGE, parseOptions, (o) => runBounded('ws-echo', o.timeoutS, async () => {
  const setup = `${o.generators} load generator process${o.generators === 1 ? '' : 'es'} (${o.client} client), Corral ${o.corral === 'built' ? 'compiled' : 'from its sources'}`;
  log(`ws-echo: Node ${process.version}, ${availableParallelism()} cores, load average ${loadAverage()}, ${setup}`);
  const { pingPong, idle, meta } = await run(o);
  process.stdout.write(`\nNode ${process.version}, ${availableParallelism()} cores, ${o.rounds} rounds, ${setup}, ${new Date().toISOString()}\n\n`);
  if (pingPong.length > 0) process.stdout.write(`${pingPongTable(pingPong, o.generators)}\n\n`);
  if (idle !== undefined) process.stdout.write(`${idleTable(idle)}\n\n`);
  process.stdout.write(`Targets:\n${targetLines(pingPong, idle)}\n`);
  if (o.cpuProf !== undefined && pingPong.length > 0) process.stdout.write(profilesHint(o.cpuProf, PEERS));
  if (o.json) process.stdout.write(`${JSON.stringify({ meta, pingPong, idle })}\n`);
  return 0;
}));

runIfMain(import.meta.url, 'ws-echo', main);
