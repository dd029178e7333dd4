/**
 * Runs one benchmark: `pnpm bench <name> [flags]`.
 *
 * Every `bench/<name>.ts` other than this file is a benchmark exporting
 * `main(args): Promise<number>` (the exit code); it also runs on its own with
 * `node_modules/.bin/tsx bench/<name>.ts [flags]`.
 */

import { readdirSync } from 'node:fs';

const benchDir = new URL('.', import.meta.url);

function available(): string[] {
  return readdirSync(benchDir, { withFileTypes: true })
    .filter((d) => d.isFile() && d.name.endsWith('.ts') && d.name !== 'run.ts')
    .map((d) => d.name.slice(0, -'.ts'.length))
    .sort();
}

async function runBench(argv: string[]): Promise<number> {
  const args = argv[0] === '--' ? argv.slice(1) : argv;
  const [name, ...rest] = args;
  if (name === undefined || !available().includes(name)) {
    if (name !== undefined) process.stderr.write(`No benchmark named ${name}.\n`);
    process.stderr.write(`Usage: pnpm bench <name> [flags]  (--help for a benchmark's flags)\nBenchmarks: ${available().join(', ')}\n`);
    return 2;
  }
  const mod = (await import(new URL(`./${name}.ts`, benchDir).href)) as { main?: (args: string[]) => Promise<number> };
  if (typeof mod.main !== 'function') {
    process.stderr.write(`bench/${name}.ts does not export main(args).\n`);
    return 2;
  }
  return mod.main(rest[0] === '--' ? rest.slice(1) : rest);
}

runBench(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
