/** What every benchmark's command line shares: flag checks and running as a script. */

import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

/** A bad command line: the benchmark prints the message and its usage, and exits 2. */
export class UsageError extends Error {}

/** An integer flag between `min` and `max`, or `fallback` when absent. */
export function intFlag(values: Record<string, unknown>, name: string, fallback: number, min: number, max: number): number {
  const raw = values[name];
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`--${name} must be an integer between ${min} and ${max}, got ${String(raw)}`);
  return n;
}

function isMain(moduleUrl: string): boolean {
  const script = process.argv[1];
  if (script === undefined) return false;
  try {
    return pathToFileURL(realpathSync(script)).href === moduleUrl;
  } catch {
    return false;
  }
}

/**
 * Run `main` with the command line when the module at `moduleUrl` is the script Node was started
 * with (not when `bench/run.ts` imports it), and exit with its code.
 */
export function runIfMain(moduleUrl: string, name: string, main: (args: string[]) => Promise<number>): void {
  if (!isMain(moduleUrl)) return;
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`${name}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exit(1);
    },
  );
}

/** `--scenarios a,b`: the named subset of `all`, in `all`'s order (all of them when absent). */
export function scenariosFlag<T extends string>(value: string | undefined, all: readonly T[]): T[] {
  if (value === undefined) return [...all];
  const names = value.split(',').map((s) => s.trim()).filter((s) => s !== '');
  for (const name of names) {
    if (!(all as readonly string[]).includes(name)) throw new UsageError(`unknown scenario ${name}; choose from ${all.join(', ')}`);
  }
  if (names.length === 0) throw new UsageError('--scenarios is empty');
  return all.filter((s) => names.includes(s));
}
