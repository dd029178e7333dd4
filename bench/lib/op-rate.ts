/**
 * Operations per second of in-process functions (the codec benchmarks): each side sampled in
 * batches for a fixed time, in rounds that alternate which side goes first.
 */

import { median } from './rounds.js';

/** Everything the sampled functions return, kept so that no call can be optimised away. */
let sink = 0;

/** Operations per second of `fn`, run in batches of `batch` for at least `ms` milliseconds. */
export function sample(fn: () => number, ms: number, batch: number): number {
  const budget = BigInt(ms) * 1_000_000n;
  const start = process.hrtime.bigint();
  let ops = 0;
  let elapsed = 0n;
  let acc = 0;
  do {
    for (let i = 0; i < batch; i++) acc += fn();
    ops += batch;
    elapsed = process.hrtime.bigint() - start;
  } while (elapsed < budget);
  sink += acc;
  return ops / (Number(elapsed) / 1e9);
}

/**
 * One unmeasured warm-up sample per side, then `rounds` rounds of one sample each, the first side
 * alternating. Medians of each side's ops/s and of the per-round ratios corral/peer.
 */
export function compareOps(
  corral: () => number, peer: () => number, o: { rounds: number; sampleMs: number }, batch: number,
): { corralOps: number; peerOps: number; ratio: number } {
  sample(corral, o.sampleMs, batch);
  sample(peer, o.sampleMs, batch);
  const mine: number[] = [];
  const theirs: number[] = [];
  const ratios: number[] = [];
  for (let r = 0; r < o.rounds; r++) {
    let a: number;
    let b: number;
    if (r % 2 === 0) {
      a = sample(corral, o.sampleMs, batch);
      b = sample(peer, o.sampleMs, batch);
    } else {
      b = sample(peer, o.sampleMs, batch);
      a = sample(corral, o.sampleMs, batch);
    }
    mine.push(a);
    theirs.push(b);
    ratios.push(a / b);
  }
  return { corralOps: median(mine), peerOps: median(theirs), ratio: median(ratios) };
}

/** Call once at the end: the sink is read, so the results of every call stay alive. */
export function keepSink(): void {
  if (sink === Number.MIN_VALUE) process.stdout.write('\n');
}
