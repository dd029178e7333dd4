/**
 * `--cpu-prof DIR` for the server benchmarks: the flags, each server's main-thread profile
 * gathered as `DIR/<kind>.cpuprofile`, and the windows of the measured passes, so that
 * bench/lib/cpuprofile-top.ts can cut the profiles down to them (start-up and warm-up excluded).
 */

import { readdirSync, renameSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { intFlag } from './cli.js';

export const CPU_PROF_FLAGS = {
  'cpu-prof': { type: 'string' },
  'cpu-prof-interval': { type: 'string' },
} as const;

/** The options `--cpu-prof` and `--cpu-prof-interval` set (see ServerProcessOptions). */
export function cpuProfOptions(
  values: { 'cpu-prof'?: string | undefined; 'cpu-prof-interval'?: string | undefined },
): { cpuProf: string | undefined; cpuProfIntervalUs: number } {
  return {
    cpuProf: values['cpu-prof'] === undefined ? undefined : resolve(values['cpu-prof']),
    cpuProfIntervalUs: intFlag(values, 'cpu-prof-interval', 1000, 10, 1_000_000),
  };
}

/**
 * Move the main thread's profile (thread id 0 in Node's default file name) of a server to
 * `<dir>/<kind>.cpuprofile`; the other threads' stay in `<dir>/<kind>/`.
 */
export function collectProfile(dir: string, kind: string): void {
  const sub = join(dir, kind);
  let files: string[];
  try {
    files = readdirSync(sub);
  } catch {
    return;
  }
  const main = files.filter((f) => /^CPU\.\d+\.\d+\.\d+\.0\.\d+\.cpuprofile$/.test(f)).sort().at(-1);
  if (main !== undefined) renameSync(join(sub, main), join(dir, `${kind}.cpuprofile`));
}

export interface PassWindow {
  scenario: string;
  peer: string;
  round: number;
  /** On the system's monotonic clock, in µs (the clock of V8's CPU profiles). */
  startUs: number;
  endUs: number;
}

/** `<dir>/windows.json`: when each measured pass ran (cpuprofile-top.ts --windows). */
export function writeWindows(dir: string, passes: readonly PassWindow[]): void {
  const windows = passes.map(({ scenario, peer, round, startUs, endUs }) => ({ scenario, peer, round, startUs, endUs }));
  writeFileSync(join(dir, 'windows.json'), `${JSON.stringify(windows, null, 1)}\n`);
}

/** What to print after the tables: the command that summarises the profiles of `kinds`. */
export function profilesHint(dir: string, kinds: readonly string[]): string {
  const files = kinds.map((k) => join(dir, `${k}.cpuprofile`)).join(' ');
  return `\nCPU profiles of the measured passes:\n  node_modules/.bin/tsx bench/lib/cpuprofile-top.ts --windows ${join(dir, 'windows.json')} ${files}\n`;
}
