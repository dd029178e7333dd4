/**
 * Acceptors across cores: the same Corral listener with `numAcceptors` 1 (this process accepts)
 * and 2 (two acceptor worker processes), on TCP and on TLS.
 *
 *   pnpm bench acceptors [--rounds 5] [--scenarios tcp-echo,tcp-connect,tls-handshake] [--json]
 *   node_modules/.bin/tsx bench/acceptors.ts [flags]
 *
 * Each server runs in its own child process (bench/lib/acceptor-server.ts), which reports its CPU
 * time, its workers' included, over IPC; the load generator runs here, in one process. Scenarios:
 *
 * - `tcp-echo`: `--connections` connections, each doing `--messages` round trips of a
 *   `--size`-byte message;
 * - `tcp-connect`: `--connects` short connections (connect, 1 byte echoed, close),
 *   `--concurrency` at a time;
 * - `tls-handshake`: `--handshakes` full TLS handshakes (no session resumed; the client verifies
 *   the certificate), 1 byte echoed, close, `--concurrency` at a time.
 *
 * For each scenario both servers get an unmeasured warm-up pass (a quarter of the work), then
 * `--rounds` measured passes each, the order alternating from round to round. The table shows
 * medians, and ratios (2 acceptors over 1) that are the median of the per-round ratios. The load
 * generator is one process: its CPU share shows when it, not the server, sets the pace. With two
 * acceptors the last column is the busier worker's share of the pass's connections (50%: even).
 */

import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import * as tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import type { AcceptorServerKind, AcceptorUsage } from './lib/acceptor-server.js';
import { benchMain, RUN_FLAGS, intFlag, listFlag, parseFlags, runIfMain } from './lib/cli.js';
import { loadAverage, log, machineMeta, num, pct, ratio, table as markdownTable } from './lib/report.js';
import { byRound, cpuShare, measureRounds, median, pairedRatios, perSecond, rotation, timePass, warmupOf, type Ratio } from './lib/rounds.js';
import { runBounded, ServerProcess } from './lib/server-process.js';
import { concurrently, endAll, HOST, openConnections, pingPong, shortConnection } from './lib/tcp-load.js';

const SERVER_SCRIPT = fileURLToPath(new URL('./lib/acceptor-server.ts', import.meta.url));
const CA_FILE = new URL('../packages/listener/test/fixtures/tls/ca.crt', import.meta.url);

const SCENARIOS = ['tcp-echo', 'tcp-connect', 'tls-handshake'] as const;
type Scenario = (typeof SCENARIOS)[number];

export interface Options {
  connections: number;
  size: number;
  messages: number;
  connects: number;
  handshakes: number;
  concurrency: number;
  rounds: number;
  scenarios: Scenario[];
  timeoutS: number;
  json: boolean;
}

const USAGE = `Usage: pnpm bench acceptors [flags]

  --connections N   concurrent connections in tcp-echo (default 50)
  --size N          tcp-echo message size in bytes (default 64)
  --messages N      tcp-echo round trips per connection (default 1000)
  --connects N      short connections per pass in tcp-connect (default 2000)
  --handshakes N    TLS handshakes per pass in tls-handshake (default 400)
  --concurrency N   connections or handshakes at a time in tcp-connect and tls-handshake (default 16)
  --rounds N        measured passes per server and scenario, at least 3 (default 5)
  --scenarios LIST  comma-separated subset of ${SCENARIOS.join(',')} (default: all)
  --timeout S       abort the whole run after S seconds (default 300)
  --json            also print the results as one line of JSON after the table
`;

export function parseOptions(args: string[]): Options {
  const v = parseFlags(args, {
    ...RUN_FLAGS,
    connections: { type: 'string' },
    size: { type: 'string' },
    messages: { type: 'string' },
    connects: { type: 'string' },
    handshakes: { type: 'string' },
    concurrency: { type: 'string' },
  });
  const scenarios = listFlag(v.scenarios, 'scenario', SCENARIOS);
  return {
    connections: intFlag(v, 'connections', 50, 1, 5_000),
    size: intFlag(v, 'size', 64, 1, 1024 * 1024),
    messages: intFlag(v, 'messages', 1_000, 1, 1_000_000),
    connects: intFlag(v, 'connects', 2_000, 1, 50_000),
    handshakes: intFlag(v, 'handshakes', 400, 1, 50_000),
    concurrency: intFlag(v, 'concurrency', 16, 1, 1_000),
    rounds: intFlag(v, 'rounds', 5, 3, 50),
    scenarios,
    timeoutS: intFlag(v, 'timeout', 300, 1, 3_600),
    json: v.json,
  };
}

// ---------------------------------------------------------------------------------------------
// Load

const ONE_BYTE = Buffer.from('x');

/** A full TLS handshake (no session offered), one byte echoed, close first. */
function handshake(port: number, context: tls.SecureContext): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: HOST, port, servername: 'localhost', secureContext: context });
    socket.setNoDelay(true);
    let echoed = false;
    let failure: Error | undefined;
    socket.once('secureConnect', () => {
      if (socket.isSessionReused()) {
        failure = new Error('the session was resumed: not a full handshake');
        socket.destroy();
        return;
      }
      socket.write(ONE_BYTE);
    });
    socket.once('data', () => {
      echoed = true;
      socket.end();
    });
    socket.on('error', (err) => {
      failure ??= err;
    });
    socket.once('close', () => (failure !== undefined ? reject(failure) : echoed ? resolve() : reject(new Error('closed before the echo'))));
  });
}

// ---------------------------------------------------------------------------------------------
// Measurement

interface ScenarioSpec {
  name: Scenario;
  label: string;
  unit: string;
  cpuUnit: string;
  transport: 'tcp' | 'tls';
  units: number;
  /** Set up (untimed), run (timed), tear down (untimed). */
  prepare(port: number, warmup: boolean): Promise<{ run(): Promise<void>; close(): Promise<void> }>;
}

function scenarioSpecs(o: Options): ScenarioSpec[] {
  const payload = Buffer.alloc(o.size, 'p');
  const context = tls.createSecureContext({ ca: readFileSync(CA_FILE) });
  const specs: Record<Scenario, ScenarioSpec> = {
    'tcp-echo': {
      name: 'tcp-echo',
      label: `tcp echo, ${o.connections} conns x ${o.messages} msgs x ${o.size} B`,
      unit: 'msg/s',
      cpuUnit: 'µs/msg',
      transport: 'tcp',
      units: o.connections * o.messages,
      async prepare(port, warmup) {
        const sockets = await openConnections(port, o.connections);
        // One round trip each first: every connection is served before the clock starts.
        await pingPong(sockets, payload, 1);
        return { run: () => pingPong(sockets, payload, warmup ? warmupOf(o.messages) : o.messages), close: () => endAll(sockets) };
      },
    },
    'tcp-connect': {
      name: 'tcp-connect',
      label: `tcp connect, ${o.connects} conns, ${o.concurrency} at a time`,
      unit: 'conn/s',
      cpuUnit: 'µs/conn',
      transport: 'tcp',
      units: o.connects,
      async prepare(port, warmup) {
        return { run: () => concurrently(warmup ? warmupOf(o.connects) : o.connects, o.concurrency, () => shortConnection(port)), close: async () => {} };
      },
    },
    'tls-handshake': {
      name: 'tls-handshake',
      label: `tls handshake, ${o.handshakes} full handshakes, ${o.concurrency} at a time`,
      unit: 'handshakes/s',
      cpuUnit: 'µs/handshake',
      transport: 'tls',
      units: o.handshakes,
      async prepare(port, warmup) {
        return { run: () => concurrently(warmup ? warmupOf(o.handshakes) : o.handshakes, o.concurrency, () => handshake(port, context)), close: async () => {} };
      },
    },
  };
  return o.scenarios.map((s) => specs[s]);
}

interface Pass {
  scenario: Scenario;
  acceptors: 1 | 2;
  round: number;
  units: number;
  wallMs: number;
  serverCpuUs: number;
  loadCpuUs: number;
  /** With two acceptors: the share of the pass's connections the busier worker accepted. */
  busiestShare: number | undefined;
}

/** The busier worker's share of the connections accepted between two usage reports. */
function busiestShare(before: AcceptorUsage, after: AcceptorUsage): number | undefined {
  if (after.accepted.length < 2 || before.accepted.length !== after.accepted.length) return undefined;
  const counts = after.accepted.map((n, i) => n - before.accepted[i]!);
  const total = counts.reduce((a, b) => a + b, 0);
  return total === 0 ? undefined : Math.max(...counts) / total;
}

async function measure(spec: ScenarioSpec, server: ServerProcess<AcceptorServerKind>, acceptors: 1 | 2, round: number): Promise<Pass> {
  // Counted from before the connections of the pass are opened.
  const opened = await server.usage() as AcceptorUsage;
  const { run, close } = await spec.prepare(server.port, false);
  try {
    const t = await timePass(server, run);
    return {
      scenario: spec.name, acceptors, round, units: spec.units,
      wallMs: t.wallMs,
      serverCpuUs: t.serverCpuUs,
      loadCpuUs: t.loadCpuUs,
      busiestShare: busiestShare(opened, t.after as AcceptorUsage),
    };
  } finally {
    await close();
  }
}

// ---------------------------------------------------------------------------------------------
// Report

interface Summary {
  rate: number;
  cpuPerUnit: number;
  serverCpuShare: number;
  loadCpuShare: number;
  /** Median share of the connections on the busier worker (two acceptors only). */
  busiestShare: number | undefined;
}

interface ScenarioResult {
  scenario: Scenario;
  label: string;
  unit: string;
  cpuUnit: string;
  one: Summary;
  two: Summary;
  /** Per-round ratios, 2 acceptors over 1. */
  rateRatio: Ratio;
  cpuRatio: Ratio;
  passes: Pass[];
}

const rate = (p: Pass): number => perSecond(p.units, p.wallMs);
const cpuPerUnit = (p: Pass): number => p.serverCpuUs / p.units;

function summarize(spec: ScenarioSpec, passes: Pass[]): ScenarioResult {
  const of = (n: 1 | 2): Pass[] => byRound(passes, (p) => p.acceptors === n);
  const summary = (ps: Pass[]): Summary => ({
    rate: median(ps.map(rate)),
    cpuPerUnit: median(ps.map(cpuPerUnit)),
    serverCpuShare: median(ps.map((p) => cpuShare(p.serverCpuUs, p.wallMs))),
    loadCpuShare: median(ps.map((p) => cpuShare(p.loadCpuUs, p.wallMs))),
    busiestShare: ps.every((p) => p.busiestShare !== undefined) ? median(ps.map((p) => p.busiestShare!)) : undefined,
  });
  const one = of(1);
  const two = of(2);
  return {
    scenario: spec.name, label: spec.label, unit: spec.unit, cpuUnit: spec.cpuUnit,
    one: summary(one), two: summary(two), rateRatio: pairedRatios(two, one, rate), cpuRatio: pairedRatios(two, one, cpuPerUnit), passes,
  };
}

export function table(results: ScenarioResult[]): string {
  const header = ['scenario', 'numAcceptors 1', 'numAcceptors 2', '2 / 1', 'server CPU 1', 'server CPU 2', '2 / 1', 'server CPU share 1 / 2', 'load gen CPU share 1 / 2', 'busier worker\'s connections'];
  const rows = results.map((s) => [
    s.label,
    `${num(s.one.rate)} ${s.unit}`,
    `${num(s.two.rate)} ${s.unit}`,
    ratio(s.rateRatio),
    `${num(s.one.cpuPerUnit)} ${s.cpuUnit}`,
    `${num(s.two.cpuPerUnit)} ${s.cpuUnit}`,
    ratio(s.cpuRatio),
    `${pct(s.one.serverCpuShare)} / ${pct(s.two.serverCpuShare)}`,
    `${pct(s.one.loadCpuShare)} / ${pct(s.two.loadCpuShare)}`,
    s.two.busiestShare === undefined ? '' : pct(s.two.busiestShare),
  ]);
  return markdownTable(header, rows);
}

// ---------------------------------------------------------------------------------------------

export async function run(o: Options): Promise<{ results: ScenarioResult[]; meta: Record<string, unknown> }> {
  const meta = {
    ...machineMeta({ openssl: true }),
    options: { ...o },
  };
  const servers = new Map<AcceptorServerKind, ServerProcess<AcceptorServerKind>>();
  const server = async (kind: AcceptorServerKind): Promise<ServerProcess<AcceptorServerKind>> => {
    let s = servers.get(kind);
    if (s === undefined) {
      s = await ServerProcess.start(SERVER_SCRIPT, kind, { cpuProf: undefined, cpuProfIntervalUs: 1000 });
      servers.set(kind, s);
    }
    return s;
  };
  try {
    const results: ScenarioResult[] = [];
    for (const spec of scenarioSpecs(o)) {
      const pair: [1 | 2, ServerProcess<AcceptorServerKind>][] = [
        [1, await server(`${spec.transport}-1`)],
        [2, await server(`${spec.transport}-2`)],
      ];
      for (const [, s] of pair) {
        const { run: warm, close } = await spec.prepare(s.port, true);
        await warm();
        await close();
      }
      const passes = await measureRounds(o.rounds, pair, ([n, s], round) => measure(spec, s, n, round), {
        order: (xs, round) => rotation(xs, round - 1),
        each: (p, [n], round) => {
          const spread = p.busiestShare === undefined ? '' : `, busier worker ${pct(p.busiestShare)} of the connections`;
          log(`${spec.name} round ${round} numAcceptors ${n}: ${num(rate(p))} ${spec.unit}, ${num(cpuPerUnit(p))} ${spec.cpuUnit} server CPU, load gen ${pct(cpuShare(p.loadCpuUs, p.wallMs))}${spread}, ${p.wallMs.toFixed(0)} ms`);
        },
      });
      results.push(summarize(spec, passes));
    }
    return { results, meta };
  } finally {
    await Promise.all([...servers.values()].map((s) => s.stop().catch(() => s.kill())));
  }
}

/** Run with command-line flags; resolves to the exit code. */
export const main = benchMain(USAGE, parseOptions, (o) => runBounded('acceptors', o.timeoutS, async () => {
  log(`acceptors: Node ${process.version}, ${availableParallelism()} cores, load average ${loadAverage()}`);
  const { results, meta } = await run(o);
  process.stdout.write(`\nNode ${process.version}, OpenSSL ${process.versions.openssl}, ${availableParallelism()} cores, ${o.rounds} rounds, ${new Date().toISOString()}\n\n`);
  process.stdout.write(`${table(results)}\n`);
  if (o.json) process.stdout.write(`${JSON.stringify({ meta, results })}\n`);
  return 0;
}));

runIfMain(import.meta.url, 'acceptors', main);
