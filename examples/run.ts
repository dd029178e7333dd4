/**
 * Runs one example: `pnpm example <name> [--port N] [--host H]`.
 *
 * Every example (a folder with a `main.ts`) exports `start({ port, host })`, resolving to its URL and a `stop` function.
 * This runner prints `listening <url>` as the first line on stdout and stops the example
 * cleanly on SIGINT or SIGTERM.
 */

import { existsSync, readdirSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { ExampleOptions, RunningExample } from './example.js';

const examplesDir = new URL('.', import.meta.url);

/** The servers: folders with a `main.ts` (a client example such as ws-client runs on its own). */
function available(): string[] {
  return readdirSync(examplesDir, { withFileTypes: true })
    .filter((d) => d.isDirectory() && d.name !== 'node_modules' && existsSync(new URL(`./${d.name}/main.ts`, examplesDir)))
    .map((d) => d.name)
    .sort();
}

function fail(message: string): never {
  process.stderr.write(`${message}\nUsage: pnpm example <name> [--port N] [--host H]\nExamples: ${available().join(', ')}\n`);
  process.exit(2);
}

async function main(): Promise<void> {
  let parsed;
  try {
    parsed = parseArgs({
      allowPositionals: true,
      options: { port: { type: 'string', default: '0' }, host: { type: 'string', default: '127.0.0.1' } },
    });
  } catch (err) {
    fail((err as Error).message);
  }
  const name = parsed.positionals[0];
  if (name === undefined) fail('Which example?');
  if (!available().includes(name)) fail(`No example named ${name}.`);
  const port = Number(parsed.values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`Bad port ${parsed.values.port}.`);

  const mod = (await import(new URL(`./${name}/main.ts`, examplesDir).href)) as {
    start(opts: ExampleOptions): Promise<RunningExample>;
  };
  const running = await mod.start({ port, host: parsed.values.host });
  process.stdout.write(`listening ${running.url}\n`);

  let stopping = false;
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) return;
    stopping = true;
    running.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        process.stderr.write(`error while stopping on ${signal}: ${String(err)}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
