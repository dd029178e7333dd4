/**
 * WebSocket echo with permessage-deflate (RFC 7692): a Corral WebSocket listener with `compress`
 * on against the `ws` package's WebSocketServer with `perMessageDeflate` on, each at its defaults.
 *
 *   pnpm bench ws-deflate [--offer default] [--rounds 3] [--scenarios LIST] [--json]
 *   node_modules/.bin/tsx bench/ws-deflate.ts [flags]
 *
 * The servers are ws-echo's (bench/lib/ws-echo-server.ts, compression switched on through
 * `WS_ECHO_COMPRESS`), each in its own child process; the load comes from child processes
 * running bench/lib/ws-deflate-load.ts, driven with bench/lib/load-process.ts. The client offers
 * one set of parameters (`--offer`) and checks that both servers accept exactly those. Scenarios:
 *
 * - `json-1k`, `json-16k`, `json-64k`: ping-pong of JSON-like text messages of 1, 16 and 64 KiB
 *   (bench/lib/ws-deflate-messages.ts), sent compressed and echoed compressed, over
 *   `--connections` connections; messages/s, server CPU time, instructions and context switches
 *   per message, and the bytes of each echo (what each server's compressor achieves). The
 *   warm-up pass inflates and checks every echo;
 * - `idle`: `--idle` connections that have each exchanged one compressed message and then sit
 *   idle: the server's RSS, heap and external memory per connection, measured at once and again
 *   after `--idle-wait` seconds (Corral drops its sending window after 30 s idle).
 *
 * Warm-up, rounds, ratios and bounds are ws-echo's: an unmeasured warm-up pass per server, then
 * `--rounds` passes each, alternating; medians of per-round ratios corral/ws. Targets (from the
 * issue): messages/s at least 1.0 times ws's, idle memory per compressed connection at most 0.5
 * times ws's.
 */

import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { benchMain, RUN_FLAGS, choiceFlag, intFlag, listFlag, parseFlags, runIfMain, UsageError } from './lib/cli.js';
import { buildCorral } from './lib/corral-build.js';
import { LoadProcess, type RequestBody } from './lib/load-process.js';
import { perfAvailable, PerfCounter, type InstructionCounts } from './lib/perf-counter.js';
import { bytes, instr, loadAverage, log, machineMeta, num, pct, ratio, table } from './lib/report.js';
import { byRound, cpuShare, measureRounds, median, pairedRatios, perSecond, rotation, timePass, warmupOf, type Ratio } from './lib/rounds.js';
import type { UsageMessage } from './lib/server-child.js';
import { cpuMicros, fdLimitFor, memoryOf, runBounded, ServerProcess, type ServerProcessOptions } from './lib/server-process.js';
import type { DeflateLoadReply } from './lib/ws-deflate-load.js';
import { OFFER, OFFERS, poolSize, buildPool, type OfferKind } from './lib/ws-deflate-messages.js';
import type { WsServerKind } from './lib/ws-echo-server.js';

const SERVER_SCRIPT = fileURLToPath(new URL('./lib/ws-echo-server.ts', import.meta.url));
const LOAD_SCRIPT = fileURLToPath(new URL('./lib/ws-deflate-load.ts', import.meta.url));
const KIB = 1024;
const OPEN_CONCURRENCY = 128;
/** Connections opened, used and closed on a fresh idle server before its first measurement. */
const IDLE_WARM = 50;

const PING_PONG = ['json-1k', 'json-16k', 'json-64k'] as const;
const SCENARIOS = [...PING_PONG, 'idle'] as const;
type Scenario = (typeof SCENARIOS)[number];
type PingPongScenario = (typeof PING_PONG)[number];
const PEERS: readonly WsServerKind[] = ['corral', 'ws'];
const SIZES: Record<PingPongScenario, number> = { 'json-1k': KIB, 'json-16k': 16 * KIB, 'json-64k': 64 * KIB };

const RATE_TARGET = 1.0;
const IDLE_TARGET = 0.5;

export interface Options {
  connections: number;
  window: number;
  messages: Record<PingPongScenario, number>;
  idle: number;
  idleWaitS: number;
  offer: OfferKind;
  /** `default`: each server's own default level (Corral 1, ws zlib's 6); a number: both at that level. */
  level: 'default' | number;
  corral: 'built' | 'src';
  perf: 'auto' | 'on' | 'off';
  rounds: number;
  scenarios: Scenario[];
  timeoutS: number;
  json: boolean;
}

const USAGE = `Usage: pnpm bench ws-deflate [flags]

  --connections N   connections in the ping-pong scenarios (default 100)
  --window N        messages in flight per connection (default 1)
  --messages-1k N   round trips per connection at 1 KiB (default 100)
  --messages-16k N  round trips per connection at 16 KiB (default 20)
  --messages-64k N  round trips per connection at 64 KiB (default 8)
  --idle N          connections held open in the idle scenario (default 5000)
  --idle-wait S     measure the idle connections again after S seconds (default 35; 0: not)
  --offer KIND      what the client offers, and both servers must accept (default: default):
${OFFERS.map((k) => `                      ${k}: ${OFFER[k].describe}`).join('\n')}
  --level L         compression level of both servers: default (each its own: Corral 1, ws 6) or 0-9
  --corral FROM     built (default): Corral compiled to JavaScript; src: its sources through tsx
  --perf MODE       count each server's instructions with perf stat: auto (default), on or off
  --rounds N        measured passes per server and scenario, at least 3 (default 3)
  --scenarios LIST  comma-separated subset of ${SCENARIOS.join(',')} (default: all)
  --timeout S       abort the whole run after S seconds (default 900)
  --json            also print the results as one line of JSON after the tables
`;

export function parseOptions(args: string[]): Options {
  const v = parseFlags(args, {
    ...RUN_FLAGS,
    connections: { type: 'string' },
    window: { type: 'string' },
    'messages-1k': { type: 'string' },
    'messages-16k': { type: 'string' },
    'messages-64k': { type: 'string' },
    idle: { type: 'string' },
    'idle-wait': { type: 'string' },
    offer: { type: 'string' },
    level: { type: 'string' },
    corral: { type: 'string' },
    perf: { type: 'string' },
  });
  const offer = (v.offer ?? 'default') as OfferKind;
  if (!OFFERS.includes(offer)) throw new UsageError(`--offer must be one of ${OFFERS.join(', ')}, got ${offer}`);
  const level = v.level === undefined || v.level === 'default' ? 'default' : intFlag(v, 'level', 1, 0, 9);
  const corral = choiceFlag(v, 'corral', ['built', 'src'], 'built');
  const perf = choiceFlag(v, 'perf', ['auto', 'on', 'off'], 'auto');
  return {
    connections: intFlag(v, 'connections', 100, 1, 5_000),
    window: intFlag(v, 'window', 1, 1, 64),
    messages: {
      'json-1k': intFlag(v, 'messages-1k', 100, 1, 1_000_000),
      'json-16k': intFlag(v, 'messages-16k', 20, 1, 100_000),
      'json-64k': intFlag(v, 'messages-64k', 8, 1, 10_000),
    },
    idle: intFlag(v, 'idle', 5_000, 1, 20_000),
    idleWaitS: intFlag(v, 'idle-wait', 35, 0, 600),
    offer,
    level,
    corral,
    perf,
    rounds: intFlag(v, 'rounds', 3, 3, 50),
    scenarios: listFlag(v.scenarios, 'scenario', SCENARIOS),
    timeoutS: intFlag(v, 'timeout', 900, 1, 3_600),
    json: v.json,
  };
}

/** `WS_ECHO_COMPRESS` for ws-echo-server.ts: each server's own option. */
function compressionEnv(level: Options['level']): string {
  if (level === 'default') return JSON.stringify({ corral: true, ws: true });
  return JSON.stringify({ corral: { level }, ws: { zlibDeflateOptions: { level } } });
}

async function request(gen: LoadProcess, body: RequestBody): Promise<DeflateLoadReply> {
  return (await gen.request(body)) as DeflateLoadReply;
}

/** Open `count` connections on `gen` to `port`; on failure close what opened and rethrow. Returns the extensions agreed. */
async function openOn(gen: LoadProcess, port: number, count: number): Promise<string | undefined> {
  try {
    return (await request(gen, { type: 'open', port, count, concurrency: OPEN_CONCURRENCY, client: 'raw' })).extensions;
  } catch (err) {
    await request(gen, { type: 'close' }).catch(() => undefined);
    throw err;
  }
}

const exchange = (size: number, messages: number, window: number, check: boolean): RequestBody =>
  ({ type: 'ping-pong', text: true, size, messages, window, check });

// ---------------------------------------------------------------------------------------------
// Ping-pong

interface Pass {
  scenario: PingPongScenario;
  peer: WsServerKind;
  round: number;
  messages: number;
  wallMs: number;
  serverCpuUs: number;
  loadCpuUs: number;
  instructions: InstructionCounts | undefined;
  /** Bytes the generator read (the echoes, headers included) and wrote over the pass. */
  wireIn: number;
  wireOut: number;
  /** The server's context switches (voluntary and involuntary, every thread) over the pass. */
  contextSwitches: number;
}

interface Metric {
  corral: number;
  ws: number;
  /** Median of the per-round ratios corral/ws, and their range. */
  ratio: Ratio;
}

interface PingPongResult {
  scenario: PingPongScenario;
  label: string;
  extensions: Partial<Record<WsServerKind, string>>;
  rate: Metric;
  cpuPerMessage: Metric;
  instrPerMessage: Metric | undefined;
  echoBytes: Metric;
  /** The server's context switches per message. */
  contextSwitches: Metric;
  serverCpuShare: Metric;
  loadCpuShare: Metric;
  /** What the client sends per message (compressed by the generator, the same for both servers). */
  sentBytes: number;
  passes: Pass[];
}

/** The medians of `f` for each server and the median of its per-round ratios. */
function compare<P extends { peer: WsServerKind; round: number }>(items: P[], f: (p: P) => number): Metric {
  const c = byRound(items, (p) => p.peer === 'corral');
  const w = byRound(items, (p) => p.peer === 'ws');
  return { corral: median(c.map(f)), ws: median(w.map(f)), ratio: pairedRatios(c, w, f) };
}

async function pingPongPass(
  scenario: PingPongScenario, o: Options, server: ServerProcess<WsServerKind>, gen: LoadProcess, messages: number, round: number, perf: boolean,
): Promise<Pass & { extensions: string | undefined }> {
  const size = SIZES[scenario];
  const extensions = await openOn(gen, server.port, o.connections);
  try {
    // Checked: every connection's first echo is inflated and compared with the message.
    await request(gen, exchange(size, 1, 1, true));
    if (round === 0) {
      // The warm-up pass checks every echo (the client's CPU time is not measured then).
      await request(gen, exchange(size, messages, o.window, true));
      return { scenario, peer: server.kind, round, messages: 0, wallMs: 0, serverCpuUs: 0, loadCpuUs: 0, instructions: undefined, wireIn: 0, wireOut: 0, contextSwitches: 0, extensions };
    }
    const counter = perf ? await PerfCounter.attach(server.pid!) : undefined;
    const t = await timePass(server, () => request(gen, exchange(size, messages, o.window, false)));
    const instructions = await counter?.stop();
    return {
      scenario,
      peer: server.kind,
      round,
      messages: messages * o.connections,
      wallMs: t.wallMs,
      serverCpuUs: t.serverCpuUs,
      loadCpuUs: cpuMicros(t.result.cpu),
      instructions,
      wireIn: t.result.wireIn,
      wireOut: t.result.wireOut,
      contextSwitches: switches(t.after) - switches(t.before),
      extensions,
    };
  } finally {
    await request(gen, { type: 'close' });
  }
}

const switches = (u: UsageMessage): number => u.ru.voluntaryContextSwitches + u.ru.involuntaryContextSwitches;
const rate = (p: Pass): number => perSecond(p.messages, p.wallMs);
const cpuPerMessage = (p: Pass): number => p.serverCpuUs / p.messages;
const instrPerMessage = (p: Pass): number => (p.instructions!.user + p.instructions!.kernel) / p.messages;

function summarize(scenario: PingPongScenario, o: Options, passes: Pass[], extensions: PingPongResult['extensions']): PingPongResult {
  const size = SIZES[scenario];
  const window = o.window === 1 ? '' : `, window ${o.window}`;
  const counted = passes.every((p) => p.instructions !== undefined);
  return {
    scenario,
    label: `JSON ${size / KIB} KiB, ${o.connections} conns x ${o.messages[scenario]} msgs${window}`,
    extensions,
    rate: compare(passes, rate),
    cpuPerMessage: compare(passes, cpuPerMessage),
    instrPerMessage: counted ? compare(passes, instrPerMessage) : undefined,
    echoBytes: compare(passes, (p) => p.wireIn / p.messages),
    contextSwitches: compare(passes, (p) => p.contextSwitches / p.messages),
    serverCpuShare: compare(passes, (p) => cpuShare(p.serverCpuUs, p.wallMs)),
    loadCpuShare: compare(passes, (p) => cpuShare(p.loadCpuUs, p.wallMs)),
    sentBytes: median(passes.map((p) => p.wireOut / p.messages)),
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
  /** Right after every connection exchanged its message. */
  after: NodeJS.MemoryUsage;
  /** After `--idle-wait` more seconds, when asked for. */
  later: NodeJS.MemoryUsage | undefined;
  /** Opening the connections and one compressed round trip on each: wall time and the server's CPU time. */
  openMs: number;
  openServerCpuUs: number;
  extensions: string | undefined;
}

interface IdleResult {
  scenario: 'idle';
  label: string;
  extensions: Partial<Record<WsServerKind, string>>;
  rss: Metric;
  heapUsed: Metric;
  external: Metric;
  rssLater: Metric | undefined;
  heapUsedLater: Metric | undefined;
  cpuPerConnection: Metric;
  idleWaitS: number;
  rounds: IdleRound[];
}

const perConn = (r: IdleRound, m: NodeJS.MemoryUsage | undefined, f: (m: NodeJS.MemoryUsage) => number): number =>
  (m === undefined ? NaN : f(m) - f(r.before)) / r.connections;

/**
 * One round: a fresh pair of servers, each warmed up (`IDLE_WARM` connections opened, used and
 * closed), measured, given `--idle` connections that each exchange one checked compressed
 * message, measured again; then, after `--idle-wait` s, measured a third time. Each server has a
 * generator of its own, so both sets of connections are open at once and share the wait.
 */
async function idleRound(o: Options, gens: Record<WsServerKind, LoadProcess>, round: number, fdLimit: number | undefined): Promise<IdleRound[]> {
  const serverOpts: ServerProcessOptions = { cpuProf: undefined, cpuProfIntervalUs: 1000, execArgv: ['--expose-gc'], fdLimit };
  const order = rotation(PEERS, round - 1);
  const servers: ServerProcess<WsServerKind>[] = [];
  const size = SIZES['json-1k'];
  try {
    for (const kind of order) servers.push(await ServerProcess.start(SERVER_SCRIPT, kind, serverOpts));
    const results: IdleRound[] = [];
    for (const server of servers) {
      const gen = gens[server.kind];
      await openOn(gen, server.port, Math.min(IDLE_WARM, o.idle));
      try {
        await request(gen, exchange(size, 10, 1, true));
      } finally {
        await request(gen, { type: 'close' });
      }
      const before = memoryOf(await server.usage({ memory: true }));
      const cpu0 = await server.usage();
      const t0 = process.hrtime.bigint();
      const extensions = await openOn(gen, server.port, o.idle);
      await request(gen, exchange(size, 1, 1, true));
      const t1 = process.hrtime.bigint();
      const cpu1 = await server.usage();
      const after = memoryOf(await server.usage({ memory: true }));
      results.push({
        peer: server.kind, round, connections: o.idle, before, after, later: undefined,
        openMs: Number(t1 - t0) / 1e6, openServerCpuUs: cpuMicros(cpu1.cpu) - cpuMicros(cpu0.cpu), extensions,
      });
    }
    if (o.idleWaitS > 0) {
      log(`idle round ${round}: waiting ${o.idleWaitS} s`);
      await new Promise((resolve) => setTimeout(resolve, o.idleWaitS * 1000));
      for (const [i, server] of servers.entries()) results[i]!.later = memoryOf(await server.usage({ memory: true }));
    }
    return results;
  } finally {
    await Promise.all(PEERS.map((k) => request(gens[k], { type: 'close' }).catch(() => undefined)));
    await Promise.all(servers.map((s) => s.stop().catch(() => s.kill())));
  }
}

function summarizeIdle(o: Options, rounds: IdleRound[]): IdleResult {
  const waited = o.idleWaitS > 0;
  return {
    scenario: 'idle',
    label: `idle ${o.idle} conns, one 1 KiB message each`,
    extensions: Object.fromEntries(PEERS.map((k) => [k, rounds.find((r) => r.peer === k)?.extensions])),
    rss: compare(rounds, (r) => perConn(r, r.after, (m) => m.rss)),
    heapUsed: compare(rounds, (r) => perConn(r, r.after, (m) => m.heapUsed)),
    external: compare(rounds, (r) => perConn(r, r.after, (m) => m.external)),
    rssLater: waited ? compare(rounds, (r) => perConn(r, r.later, (m) => m.rss)) : undefined,
    heapUsedLater: waited ? compare(rounds, (r) => perConn(r, r.later, (m) => m.heapUsed)) : undefined,
    cpuPerConnection: compare(rounds, (r) => r.openServerCpuUs / r.connections),
    idleWaitS: o.idleWaitS,
    rounds,
  };
}

// ---------------------------------------------------------------------------------------------
// Report

const both = (m: Metric, f: (x: number) => string): string => `${f(m.corral)} / ${f(m.ws)}`;

export function pingPongTable(results: PingPongResult[]): string {
  const counted = results.every((r) => r.instrPerMessage !== undefined);
  const header = ['scenario', 'corral', 'ws', 'corral/ws', 'server CPU corral', 'server CPU ws', 'corral/ws'];
  if (counted) header.push('server instructions/msg c / w', 'corral/ws');
  header.push('server context switches/msg c / w', 'echo bytes/msg c / w (sent)', 'server CPU share c / w', 'load gen CPU share c / w');
  const rows = results.map((r) => [
    r.label,
    `${num(r.rate.corral)} msg/s`,
    `${num(r.rate.ws)} msg/s`,
    ratio(r.rate.ratio),
    `${num(r.cpuPerMessage.corral)} µs/msg`,
    `${num(r.cpuPerMessage.ws)} µs/msg`,
    ratio(r.cpuPerMessage.ratio),
    ...(counted ? [both(r.instrPerMessage!, instr), ratio(r.instrPerMessage!.ratio)] : []),
    both(r.contextSwitches, num),
    `${both(r.echoBytes, (x) => Math.round(x).toLocaleString('en-US'))} (${Math.round(r.sentBytes).toLocaleString('en-US')})`,
    both(r.serverCpuShare, pct),
    both(r.loadCpuShare, pct),
  ]);
  return table(header, rows);
}

export function idleTable(r: IdleResult): string {
  const header = ['scenario', 'RSS/conn corral', 'RSS/conn ws', 'corral/ws', 'heapUsed/conn c / w', 'corral/ws', 'external/conn c / w'];
  if (r.rssLater !== undefined) header.push(`after ${r.idleWaitS} s: RSS/conn c / w`, 'corral/ws', `heapUsed/conn c / w`);
  header.push('server CPU per conn (upgrade + 1 msg) c / w', 'corral/ws');
  const row = [
    r.label,
    bytes(r.rss.corral),
    bytes(r.rss.ws),
    ratio(r.rss.ratio),
    both(r.heapUsed, bytes),
    ratio(r.heapUsed.ratio),
    both(r.external, bytes),
    ...(r.rssLater !== undefined ? [both(r.rssLater, bytes), ratio(r.rssLater.ratio), both(r.heapUsedLater!, bytes)] : []),
    both(r.cpuPerConnection, (x) => `${num(x)} µs`),
    ratio(r.cpuPerConnection.ratio),
  ];
  return table(header, [row]);
}

export function targetLines(pingPong: PingPongResult[], idle: IdleResult | undefined): string {
  const met = (ok: boolean): string => (ok ? 'met' : 'NOT met');
  const out = pingPong.map((r) => {
    const instructions = r.instrPerMessage === undefined ? '' : `, instructions ${(1 / r.instrPerMessage.ratio.median).toFixed(2)}x`;
    return `- ${r.label.split(',')[0]}: messages/s ${r.rate.ratio.median.toFixed(2)}x ws, target >= ${RATE_TARGET.toFixed(1)}x: ${met(r.rate.ratio.median >= RATE_TARGET)}`
      + ` (ws's server cost per message over Corral's: CPU time ${(1 / r.cpuPerMessage.ratio.median).toFixed(2)}x${instructions})`;
  });
  if (idle !== undefined) {
    out.push(`- idle: RSS per compressed connection ${idle.rss.ratio.median.toFixed(2)}x ws right after its message, target <= ${IDLE_TARGET.toFixed(1)}x: ${met(idle.rss.ratio.median <= IDLE_TARGET)}`
      + ` (heapUsed ${idle.heapUsed.ratio.median.toFixed(2)}x)`);
    if (idle.rssLater !== undefined) {
      out.push(`- idle after ${idle.idleWaitS} s: RSS per compressed connection ${idle.rssLater.ratio.median.toFixed(2)}x ws, target <= ${IDLE_TARGET.toFixed(1)}x: ${met(idle.rssLater.ratio.median <= IDLE_TARGET)}`);
    }
  }
  return out.join('\n');
}

// ---------------------------------------------------------------------------------------------

export async function run(o: Options): Promise<{ pingPong: PingPongResult[]; idle: IdleResult | undefined; meta: Record<string, unknown> }> {
  const specs = o.scenarios.filter((s): s is PingPongScenario => s !== 'idle');
  const withIdle = o.scenarios.includes('idle');
  if (o.perf === 'on' && !perfAvailable()) throw new UsageError('--perf on: perf stat cannot count instructions here');
  const perf = o.perf === 'on' || (o.perf === 'auto' && specs.length > 0 && perfAvailable());
  const genFdLimit = withIdle ? fdLimitFor(o.idle) : undefined;
  const serverFdLimit = withIdle ? fdLimitFor(o.idle) : undefined;
  const meta = {
    ...machineMeta(),
    perf,
    offer: OFFER[o.offer].header,
    compression: JSON.parse(compressionEnv(o.level)) as unknown,
    messages: Object.fromEntries(specs.map((s) => {
      const pool = buildPool(SIZES[s], !OFFER[o.offer].clientNoContextTakeover, Buffer.from([1, 2, 3, 4]));
      return [s, { size: SIZES[s], distinct: poolSize(SIZES[s]), clientCompressedBytes: pool.compressedBytes / pool.payloads.length }];
    })),
    options: { ...o },
  };
  let build: { dir: string; remove(): void } | undefined;
  if (o.corral === 'built') {
    build = await buildCorral();
    process.once('exit', build.remove);
    process.env.WS_ECHO_CORRAL_DIR = build.dir;
  }
  process.env.WS_ECHO_COMPRESS = compressionEnv(o.level);
  const gens: LoadProcess[] = [];
  const servers: ServerProcess<WsServerKind>[] = [];
  try {
    // One generator per server for the idle scenario (both sets of connections open at once); the first drives every ping-pong pass.
    for (const _ of PEERS) gens.push(await LoadProcess.start(genFdLimit, LOAD_SCRIPT, [o.offer]));
    const pingPong: PingPongResult[] = [];
    if (specs.length > 0) {
      for (const kind of PEERS) servers.push(await ServerProcess.start(SERVER_SCRIPT, kind, { cpuProf: undefined, cpuProfIntervalUs: 1000 }));
      for (const scenario of specs) {
        const messages = o.messages[scenario];
        const extensions: PingPongResult['extensions'] = {};
        for (const server of servers) {
          extensions[server.kind] = (await pingPongPass(scenario, o, server, gens[0]!, warmupOf(messages), 0, false)).extensions;
        }
        const passes = await measureRounds(o.rounds, servers, async (server, round): Promise<Pass> => {
          const { extensions: _, ...p } = await pingPongPass(scenario, o, server, gens[0]!, messages, round, perf);
          return p;
        }, {
          each: (p, _, round) => log(`${scenario} round ${round} ${p.peer}: ${num(rate(p))} msg/s, ${num(cpuPerMessage(p))} µs/msg server CPU, `
            + `${num(p.wireIn / p.messages)} B/echo, ${num(p.contextSwitches / p.messages)} server context switches/msg, server ${pct(cpuShare(p.serverCpuUs, p.wallMs))}, load gen ${pct(cpuShare(p.loadCpuUs, p.wallMs))}, `
            + `${p.wallMs.toFixed(0)} ms${p.instructions === undefined ? '' : `, ${instr(instrPerMessage(p))} instructions/msg`}`),
        });
        pingPong.push(summarize(scenario, o, passes, extensions));
      }
      await Promise.all(servers.map((s) => s.stop().catch(() => s.kill())));
    }
    let idle: IdleResult | undefined;
    if (withIdle) {
      const rounds: IdleRound[] = [];
      const byPeer = { corral: gens[0]!, ws: gens[1]! };
      for (let round = 1; round <= o.rounds; round++) {
        for (const r of await idleRound(o, byPeer, round, serverFdLimit)) {
          rounds.push(r);
          log(`idle round ${round} ${r.peer}: RSS ${bytes(perConn(r, r.after, (m) => m.rss))}/conn, heapUsed ${bytes(perConn(r, r.after, (m) => m.heapUsed))}/conn, `
            + `external ${bytes(perConn(r, r.after, (m) => m.external))}/conn`
            + `${r.later === undefined ? '' : `; after ${o.idleWaitS} s: RSS ${bytes(perConn(r, r.later, (m) => m.rss))}/conn, heapUsed ${bytes(perConn(r, r.later, (m) => m.heapUsed))}/conn`}`);
        }
      }
      idle = summarizeIdle(o, rounds);
    }
    return { pingPong, idle, meta };
  } finally {
    await Promise.all([...servers.map((s) => s.stop().catch(() => s.kill())), ...gens.map((g) => g.stop())]);
    delete process.env.WS_ECHO_COMPRESS;
    if (build !== undefined) {
      build.remove();
      process.off('exit', build.remove);
      delete process.env.WS_ECHO_CORRAL_DIR;
    }
  }
}

/** Run with command-line flags; resolves to the exit code. */
export const main = benchMain(USAGE, parseOptions, (o) => runBounded('ws-deflate', o.timeoutS, async () => {
  const levels = o.level === 'default' ? 'each server\'s default level (Corral 1, ws 6)' : `level ${o.level} on both servers`;
  const heading = `Node ${process.version}, ${availableParallelism()} cores, ${o.rounds} rounds, offer ${JSON.stringify(OFFER[o.offer].header)}, `
    + `${levels}, Corral ${o.corral === 'built' ? 'compiled' : 'from its sources'}`;
  log(`ws-deflate: ${heading}, load average ${loadAverage()}`);
  const { pingPong, idle, meta } = await run(o);
  process.stdout.write(`\n${heading}, ${new Date().toISOString()}\n`);
  const agreed = [...pingPong.map((r) => r.extensions), ...(idle === undefined ? [] : [idle.extensions])][0];
  if (agreed !== undefined) process.stdout.write(`Agreed: corral ${JSON.stringify(agreed.corral)}, ws ${JSON.stringify(agreed.ws)}\n`);
  process.stdout.write('\n');
  if (pingPong.length > 0) process.stdout.write(`${pingPongTable(pingPong)}\n\n`);
  if (idle !== undefined) process.stdout.write(`${idleTable(idle)}\n\n`);
  process.stdout.write(`Targets:\n${targetLines(pingPong, idle)}\n`);
  if (o.json) process.stdout.write(`${JSON.stringify({ meta, pingPong, idle })}\n`);
  return 0;
}));

runIfMain(import.meta.url, 'ws-deflate', main);
