/**
 * TLS handshakes: Corral's TLS listener, with and without the paused handshake, against a bare
 * `tls.createServer`, the peer.
 *
 *   pnpm bench tls-handshake [--handshakes 500] [--concurrency 16] [--rounds 9] [--json]
 *   node_modules/.bin/tsx bench/tls-handshake.ts [flags]
 *
 * Each server runs in its own child process (bench/lib/tls-server.ts) and reports its CPU time
 * over IPC; the client runs here. Servers:
 *
 * - `corral`: a Corral listener, `tls` transport, the certificate in `socketOpts`;
 * - `corral-hello`: the same with `handshake: 'hello'`, the protocol finishing each handshake
 *   with `conn.handshakeContinue({ secureContext })`, the context picked by SNI from a map;
 * - `raw`: `tls.createServer({ key, cert })`.
 *
 * One unit is one full handshake: TCP connect, a TLS handshake with a fresh session (the client
 * never offers a session or a ticket, so nothing is resumed: every handshake signs with the
 * server's RSA key and runs a fresh key exchange), then one byte echoed by the server's
 * connection handler, and the close (the client closes first). The client verifies the server's
 * certificate against the test CA, as a client should. Scenarios:
 *
 * - `sequential`: `--handshakes` handshakes one after the other;
 * - `concurrent`: the same number, `--concurrency` at a time.
 *
 * For each scenario every server gets an unmeasured warm-up pass (a quarter of the work), then
 * `--rounds` measured passes each. Within a round the servers run back to back, and the order
 * rotates from round to round (corral, corral-hello, raw; then corral-hello, raw, corral; ...) so
 * that no server always runs first. The table shows medians, and ratios to raw that are the
 * median of the per-round ratios. The machine is shared and noisy: only the ratios mean anything.
 */

import { mkdirSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import * as tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { benchMain, RUN_FLAGS, choiceFlag, intFlag, listFlag, parseFlags, runIfMain, UsageError } from './lib/cli.js';
import { collectProfile, CPU_PROF_FLAGS, cpuProfOptions, profilesHint, writeWindows } from './lib/cpu-prof.js';
import { loadAverage, log, machineMeta, num, pct, ratio as ratioCell, table as markdownTable } from './lib/report.js';
import { byRound, cpuShare, measureRounds, median, pairedRatios, perSecond, rotation, timePass, warmupOf, type Ratio } from './lib/rounds.js';
import { cpuMicros, runBounded, ServerProcess } from './lib/server-process.js';
import { concurrently, HOST } from './lib/tcp-load.js';
import type { TlsServerKind } from './lib/tls-server.js';

const SERVER_NAME = 'localhost';
const SERVER_SCRIPT = fileURLToPath(new URL('./lib/tls-server.ts', import.meta.url));
const CA_FILE = new URL('../packages/listener/test/fixtures/tls/ca.crt', import.meta.url);

const SCENARIOS = ['sequential', 'concurrent'] as const;
type Scenario = (typeof SCENARIOS)[number];
const SERVERS: readonly TlsServerKind[] = ['corral', 'corral-hello', 'raw'];
const SERVER_LABELS: Record<TlsServerKind, string> = {
  corral: 'corral',
  'corral-hello': 'corral, paused (hello + continue)',
  raw: 'raw tls.createServer',
};
const VERSIONS = ['TLSv1.3', 'TLSv1.2'] as const;
type Version = (typeof VERSIONS)[number];

export interface Options {
  handshakes: number;
  concurrency: number;
  rounds: number;
  scenarios: Scenario[];
  servers: TlsServerKind[];
  version: Version;
  timeoutS: number;
  json: boolean;
  cpuProf: string | undefined;
  cpuProfIntervalUs: number;
}

const USAGE = `Usage: pnpm bench tls-handshake [flags]

  --handshakes N    handshakes per measured pass (default 500)
  --concurrency N   handshakes at a time in the concurrent scenario (default 16)
  --rounds N        measured passes per server and scenario, at least 3 (default 9)
  --scenarios LIST  comma-separated subset of ${SCENARIOS.join(',')} (default: all)
  --servers LIST    comma-separated subset of ${SERVERS.join(',')}, raw included (default: all)
  --tls VERSION     the TLS version the client asks for at most: ${VERSIONS.join(' or ')} (default TLSv1.3)
  --timeout S       abort the whole run after S seconds (default 300)
  --cpu-prof DIR    run the servers under node --cpu-prof; DIR/<server>.cpuprofile
  --cpu-prof-interval US  sampling interval of --cpu-prof in microseconds (default 1000)
  --json            also print the results as one line of JSON after the table
`;

export function parseOptions(args: string[]): Options {
  const v = parseFlags(args, {
    ...RUN_FLAGS,
    handshakes: { type: 'string' },
    concurrency: { type: 'string' },
    servers: { type: 'string' },
    tls: { type: 'string' },
    ...CPU_PROF_FLAGS,
  });
  const servers = listFlag(v.servers, 'server', SERVERS);
  if (!servers.includes('raw') || servers.length < 2) throw new UsageError('--servers must include raw (the peer) and at least one other server');
  const version = choiceFlag(v, 'tls', VERSIONS, 'TLSv1.3');
  return {
    handshakes: intFlag(v, 'handshakes', 500, 1, 100_000),
    concurrency: intFlag(v, 'concurrency', 16, 1, 1_000),
    rounds: intFlag(v, 'rounds', 9, 3, 50),
    scenarios: listFlag(v.scenarios, 'scenario', SCENARIOS),
    servers,
    version,
    timeoutS: intFlag(v, 'timeout', 300, 1, 3_600),
    json: v.json,
    ...cpuProfOptions(v),
  };
}

// ---------------------------------------------------------------------------------------------
// Load

const ONE_BYTE = Buffer.from('x');

interface Client {
  /** Made once: the client's trust store is not parsed again for every connection. */
  context: tls.SecureContext;
  version: Version;
}

/**
 * One full handshake: connect, handshake (no session offered), write one byte, read it back,
 * close first. With `check`, also make sure of what was negotiated.
 */
function handshakeOnce(port: number, client: Client, check: boolean): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const socket = tls.connect({ host: HOST, port, servername: SERVER_NAME, secureContext: client.context, maxVersion: client.version });
    // As the servers do: no write waits for an acknowledgement.
    socket.setNoDelay(true);
    let echoed = false;
    let failure: Error | undefined;
    const fail = (err: Error): void => {
      failure ??= err;
      socket.destroy();
    };
    socket.once('secureConnect', () => {
      if (socket.isSessionReused()) return fail(new Error('the session was resumed: not a full handshake'));
      if (check) {
        const cn = socket.getPeerCertificate().subject?.CN;
        if (socket.getProtocol() !== client.version) return fail(new Error(`negotiated ${socket.getProtocol()}, expected ${client.version}`));
        if (cn !== SERVER_NAME) return fail(new Error(`the server presented ${String(cn)}, expected ${SERVER_NAME}`));
      }
      socket.write(ONE_BYTE);
    });
    socket.once('data', (data: Buffer) => {
      if (!data.equals(ONE_BYTE)) return fail(new Error(`echoed ${JSON.stringify(data.toString())}`));
      echoed = true;
      socket.end();
    });
    socket.on('error', fail);
    socket.once('close', () => {
      if (failure !== undefined) reject(failure);
      else if (echoed) resolve();
      else reject(new Error('closed before the echo'));
    });
  });
}

/** `total` handshakes, `concurrency` at a time; the first one of the pass is checked. */
function handshakes(port: number, client: Client, total: number, concurrency: number): Promise<void> {
  return concurrently(total, concurrency, (i) => handshakeOnce(port, client, i === 0));
}

// ---------------------------------------------------------------------------------------------
// Measurement

interface Pass {
  scenario: Scenario;
  peer: TlsServerKind;
  round: number;
  handshakes: number;
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
  concurrency: number;
}

function scenarioSpecs(o: Options): ScenarioSpec[] {
  const specs: Record<Scenario, ScenarioSpec> = {
    sequential: { name: 'sequential', label: `sequential, ${o.handshakes} handshakes`, concurrency: 1 },
    concurrent: { name: 'concurrent', label: `${o.concurrency} at a time, ${o.handshakes} handshakes`, concurrency: o.concurrency },
  };
  return o.scenarios.map((s) => specs[s]);
}

async function measure(spec: ScenarioSpec, server: ServerProcess<TlsServerKind>, client: Client, total: number, round: number): Promise<Pass> {
  const t = await timePass(server, () => handshakes(server.port, client, total, spec.concurrency));
  return {
    scenario: spec.name,
    peer: server.kind,
    round,
    handshakes: total,
    wallMs: t.wallMs,
    serverCpuUs: t.serverCpuUs,
    loadCpuUs: t.loadCpuUs,
    startUs: t.startUs,
    endUs: t.endUs,
  };
}

// ---------------------------------------------------------------------------------------------
// Report

interface ServerResult {
  server: TlsServerKind;
  /** Median handshakes per second. */
  rate: number;
  /** Median server CPU microseconds per handshake. */
  cpuPerHandshake: number;
  /** Median server CPU time as a share of wall time (1 = one core busy). */
  serverCpuShare: number;
  /** Median client CPU time as a share of wall time. */
  loadCpuShare: number;
  /** Median of the per-round ratios to raw, and their range (undefined for raw itself). */
  rateRatio: Ratio | undefined;
  cpuRatio: Ratio | undefined;
}

interface ScenarioResult {
  scenario: Scenario;
  label: string;
  servers: ServerResult[];
  passes: Pass[];
}

const rateOf = (p: Pass): number => perSecond(p.handshakes, p.wallMs);
const cpuOf = (p: Pass): number => p.serverCpuUs / p.handshakes;

function summarize(spec: ScenarioSpec, servers: readonly TlsServerKind[], passes: Pass[]): ScenarioResult {
  const of = (kind: TlsServerKind): Pass[] => byRound(passes, (p) => p.peer === kind);
  const raw = of('raw');
  return {
    scenario: spec.name,
    label: spec.label,
    servers: servers.map((server) => {
      const ps = of(server);
      return {
        server,
        rate: median(ps.map(rateOf)),
        cpuPerHandshake: median(ps.map(cpuOf)),
        serverCpuShare: median(ps.map((p) => cpuShare(p.serverCpuUs, p.wallMs))),
        loadCpuShare: median(ps.map((p) => cpuShare(p.loadCpuUs, p.wallMs))),
        rateRatio: server === 'raw' ? undefined : pairedRatios(ps, raw, rateOf),
        cpuRatio: server === 'raw' ? undefined : pairedRatios(ps, raw, cpuOf),
      };
    }),
    passes,
  };
}

/** Raw's own ratio to itself is 1. */
const ratio = (r: Ratio | undefined): string => (r === undefined ? '1' : ratioCell(r));

export function table(results: ScenarioResult[]): string {
  const header = ['scenario', 'server', 'handshakes/s', '/raw', 'server CPU per handshake', '/raw', 'server CPU share', 'client CPU share'];
  const rows = results.flatMap((s) => s.servers.map((r) => [
    s.label,
    SERVER_LABELS[r.server],
    num(r.rate),
    ratio(r.rateRatio),
    `${num(r.cpuPerHandshake)} µs`,
    ratio(r.cpuRatio),
    pct(r.serverCpuShare),
    pct(r.loadCpuShare),
  ]));
  return markdownTable(header, rows);
}

// ---------------------------------------------------------------------------------------------

export async function run(o: Options): Promise<{ results: ScenarioResult[]; meta: Record<string, unknown> }> {
  const meta = {
    ...machineMeta({ openssl: true }),
    options: { ...o },
    /** Each server's CPU time over its whole life (start-up and warm-up included), from its exit message. */
    serverLifetimeCpuUs: {} as Partial<Record<TlsServerKind, number>>,
  };
  const client: Client = { context: tls.createSecureContext({ ca: readFileSync(CA_FILE) }), version: o.version };
  if (o.cpuProf !== undefined) mkdirSync(o.cpuProf, { recursive: true });
  const servers: ServerProcess<TlsServerKind>[] = [];
  try {
    for (const kind of o.servers) servers.push(await ServerProcess.start(SERVER_SCRIPT, kind, o));
    const warmup = warmupOf(o.handshakes);
    const results: ScenarioResult[] = [];
    for (const spec of scenarioSpecs(o)) {
      for (const server of servers) await handshakes(server.port, client, warmup, spec.concurrency);
      const passes = await measureRounds(o.rounds, servers, (server, round) => measure(spec, server, client, o.handshakes, round), {
        order: (xs, round) => rotation(xs, round - 1),
        each: (p, _, round) => log(`${spec.name} round ${round} ${p.peer}: ${num(rateOf(p))} handshakes/s, ${num(cpuOf(p))} µs server CPU each, ${p.wallMs.toFixed(0)} ms`),
      });
      results.push(summarize(spec, o.servers, passes));
    }
    if (o.cpuProf !== undefined) writeWindows(o.cpuProf, results.flatMap((r) => r.passes));
    return { results, meta };
  } finally {
    await Promise.all(servers.map((s) => s.stop().catch(() => s.kill())));
    for (const s of servers) if (s.finalUsage !== undefined) meta.serverLifetimeCpuUs[s.kind] = cpuMicros(s.finalUsage.cpu);
    if (o.cpuProf !== undefined) for (const kind of o.servers) collectProfile(o.cpuProf, kind);
  }
}

/** Run with command-line flags; resolves to the exit code. */
export const main = benchMain(USAGE, parseOptions, (o) => runBounded('tls-handshake', o.timeoutS, async () => {
  log(`tls-handshake: Node ${process.version} (OpenSSL ${process.versions.openssl}), ${availableParallelism()} cores, load average ${loadAverage()}`);
  const { results, meta } = await run(o);
  process.stdout.write(`\nNode ${process.version}, OpenSSL ${process.versions.openssl}, ${o.version}, ${availableParallelism()} cores, ${o.rounds} rounds, ${new Date().toISOString()}\n\n`);
  process.stdout.write(`${table(results)}\n`);
  if (o.cpuProf !== undefined) process.stdout.write(profilesHint(o.cpuProf, o.servers));
  if (o.json) process.stdout.write(`${JSON.stringify({ meta, results })}\n`);
  return 0;
}));

runIfMain(import.meta.url, 'tls-handshake', main);
