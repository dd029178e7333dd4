/** What every benchmark's command line shares: flag checks, `main(args)` and running as a script. */

import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { parseArgs, type ParseArgsConfig } from 'node:util';

/** A bad command line: the benchmark prints the message and its usage, and exits 2. */
export class UsageError extends Error {}

type FlagConfig = NonNullable<ParseArgsConfig['options']>;

/** The flags every server benchmark takes: `--rounds`, `--scenarios`, `--timeout` and `--json`. */
export const RUN_FLAGS = {
  rounds: { type: 'string' },
  scenarios: { type: 'string' },
  timeout: { type: 'string' },
  json: { type: 'boolean', default: false },
} as const;

/** The flags in `options`, plus `--help`/`-h` (thrown as an empty UsageError); parse errors are UsageErrors. */
export function parseFlags<const O extends FlagConfig>(args: string[], options: O): ReturnType<typeof parseArgs<{ args: string[]; options: O }>>['values'] {
  let parsed;
  try {
    parsed = parseArgs({ args, options: { ...options, help: { type: 'boolean', short: 'h' } } });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if ((parsed.values as { help?: boolean }).help === true) throw new UsageError('');
  return parsed.values as ReturnType<typeof parseArgs<{ args: string[]; options: O }>>['values'];
}

/**
 * A benchmark's `main(args)`, resolving to the exit code: on a UsageError from `parse` its message
 * and `usage` (exit 0 for `--help`, else 2); on one from `run` (a setting this machine cannot
 * honour) its message alone, exit 2.
 */
export function benchMain<O>(usage: string, parse: (args: string[]) => O, run: (o: O) => Promise<number>): (args: string[]) => Promise<number> {
  return async (args) => {
    let o: O;
    try {
      o = parse(args);
    } catch (err) {
      if (!(err instanceof UsageError)) throw err;
      if (err.message !== '') process.stderr.write(`${err.message}\n\n`);
      process.stderr.write(usage);
      return err.message === '' ? 0 : 2;
    }
    try {
      return await run(o);
    } catch (err) {
      if (!(err instanceof UsageError)) throw err;
      process.stderr.write(`${err.message}\n`);
      return 2;
    }
  };
}

/** `a`, `a or b`, `a, b or c`. */
const alternatives = (xs: readonly string[]): string => (xs.length < 2 ? xs.join('') : `${xs.slice(0, -1).join(', ')} or ${xs.at(-1)!}`);

/** A flag that takes one of `choices`, or `fallback` when absent. */
export function choiceFlag<T extends string>(values: Record<string, unknown>, name: string, choices: readonly T[], fallback: T): T {
  const raw = values[name] ?? fallback;
  if (!(choices as readonly unknown[]).includes(raw)) throw new UsageError(`--${name} must be ${alternatives(choices)}, got ${String(raw)}`);
  return raw as T;
}

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

/** `--<name>s a,b`: the named subset of `all`, in `all`'s order (all of them when absent). */
export function listFlag<T extends string>(value: string | undefined, name: string, all: readonly T[]): T[] {
  if (value === undefined) return [...all];
  const names = value.split(',').map((s) => s.trim()).filter((s) => s !== '');
  for (const n of names) {
    if (!(all as readonly string[]).includes(n)) throw new UsageError(`unknown ${name} ${n}; choose from ${all.join(', ')}`);
  }
  if (names.length === 0) throw new UsageError(`--${name}s is empty`);
  return all.filter((s) => names.includes(s));
}
