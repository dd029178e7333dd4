/**
 * The machinery every server benchmark shares to compare two servers on a noisy machine: passes
 * timed against the server's own CPU time, rounds whose order alternates, and ratios taken per
 * round (two passes run back to back see the same noise) and then summarised by their median.
 */

import type { UsageMessage } from './server-child.js';
import { cpuMicros } from './server-process.js';

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** The median of per-round ratios, and their range. */
export interface Ratio {
  median: number;
  min: number;
  max: number;
}

export function ratios(xs: number[]): Ratio {
  return { median: median(xs), min: Math.min(...xs), max: Math.max(...xs) };
}

/** `f(a[i]) / f(b[i])` for each round `i` (both sorted by round, see {@link byRound}). */
export function pairedRatios<P>(a: readonly P[], b: readonly P[], f: (p: P) => number): Ratio {
  return ratios(a.map((p, i) => f(p) / f(b[i]!)));
}

/** The items `which` picks, in round order, to pair with another list's. */
export function byRound<P extends { round: number }>(items: readonly P[], which: (p: P) => boolean): P[] {
  return items.filter(which).sort((a, b) => a.round - b.round);
}

/** The work of a warm-up pass: a quarter of a measured one, at least 1. */
export const warmupOf = (n: number): number => Math.max(1, Math.ceil(n / 4));

/** `xs` in round `round`'s order: rotated by one place per round, so that none always goes first. */
export function rotation<T>(xs: readonly T[], round: number): T[] {
  const k = round % xs.length;
  return [...xs.slice(k), ...xs.slice(0, k)];
}

export const perSecond = (n: number, wallMs: number): number => n / (wallMs / 1000);
/** CPU time over wall time (1: one core busy). */
export const cpuShare = (cpuUs: number, wallMs: number): number => cpuUs / 1000 / wallMs;

export interface Timed<T> {
  result: T;
  wallMs: number;
  serverCpuUs: number;
  /** This process's CPU time over the pass (the load generator's, when it runs here). */
  loadCpuUs: number;
  /** Start and end of the pass on the system's monotonic clock, in µs (the clock of V8's CPU profiles). */
  startUs: number;
  endUs: number;
  /** The server's usage reports around the pass. */
  before: UsageMessage;
  after: UsageMessage;
}

/** Run `run` as one measured pass: wall time, and the server's CPU time from its own reports just around it. */
export async function timePass<T>(server: { usage(): Promise<UsageMessage> }, run: () => Promise<T>): Promise<Timed<T>> {
  const before = await server.usage();
  const load0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const result = await run();
  const t1 = process.hrtime.bigint();
  const load = process.cpuUsage(load0);
  const after = await server.usage();
  return {
    result,
    wallMs: Number(t1 - t0) / 1e6,
    serverCpuUs: cpuMicros(after.cpu) - cpuMicros(before.cpu),
    loadCpuUs: cpuMicros(load),
    startUs: Number(t0 / 1000n),
    endUs: Number(t1 / 1000n),
    before,
    after,
  };
}

/**
 * `rounds` measured rounds (numbered from 1), each measuring every one of `peers`, back to back, in
 * `order(peers, round)` (as listed by default); `each` sees every pass as it ends (to log it).
 */
export async function measureRounds<S, P>(
  rounds: number,
  peers: readonly S[],
  measure: (peer: S, round: number) => Promise<P>,
  o: { order?: (peers: readonly S[], round: number) => readonly S[]; each?: (pass: P, peer: S, round: number) => void } = {},
): Promise<P[]> {
  const passes: P[] = [];
  for (let round = 1; round <= rounds; round++) {
    for (const peer of o.order?.(peers, round) ?? peers) {
      const p = await measure(peer, round);
      passes.push(p);
      o.each?.(p, peer, round);
    }
  }
  return passes;
}
