/**
 * The server's side of a benchmark child process (see server-process.ts for the load
 * generator's side).
 *
 * `serve` prints `listening <scheme>://<host>:<port>` as the first line on stdout. Over the IPC
 * channel, a `{ type: 'usage' }` message is answered with `process.cpuUsage()` and
 * `process.resourceUsage()`; `{ type: 'usage', memory: true }` adds `process.memoryUsage()`, taken
 * after a full garbage collection when the server runs with `--expose-gc`. SIGTERM stops the server, sends a final usage message
 * (`final: true`) and exits, which also writes a `--cpu-prof` profile if asked for. The process
 * exits as soon as its parent goes away (the IPC channel closes).
 */

import type { Server } from 'node:net';

/** The message a server sends back on the IPC channel. */
export interface UsageMessage {
  type: 'usage';
  cpu: NodeJS.CpuUsage;
  ru: NodeJS.ResourceUsage;
  /** Only when asked for: after a full garbage collection if `gc` is exposed. */
  memory?: NodeJS.MemoryUsage;
  final: boolean;
}

export interface RunningServer {
  port: number;
  stop(): Promise<void>;
}

const STOP_TIMEOUT_MS = 3000;

function ignore(): void {}

function usage(final: boolean, withMemory = false): UsageMessage {
  if (!withMemory) return { type: 'usage', cpu: process.cpuUsage(), ru: process.resourceUsage(), final };
  const gc = (globalThis as { gc?: () => void }).gc;
  // Twice: the first collection can leave objects that only the second frees (weak references, finalizers).
  gc?.();
  gc?.();
  const memory = process.memoryUsage();
  return { type: 'usage', cpu: process.cpuUsage(), ru: process.resourceUsage(), memory, final };
}

function send(message: UsageMessage): Promise<void> {
  return new Promise((resolve) => {
    if (process.send === undefined || !process.connected) {
      resolve();
      return;
    }
    process.send(message, undefined, {}, () => resolve());
  });
}

/** Start `server` (a bare `node:net` or `node:tls` peer) on `host`, port 0. */
export async function listenOn(server: Server, host: string): Promise<RunningServer> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port: 0, host }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('the server has no port');
  return {
    port: address.port,
    // Resolves once every connection has ended; the caller bounds the wait.
    stop: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/**
 * Start the server of kind `process.argv[2]` (one of `starters`) and serve the load generator.
 * Exits 2 on a bad kind or without an IPC channel.
 */
export async function serve(script: string, scheme: string, host: string, starters: Record<string, () => Promise<RunningServer>>): Promise<void> {
  const kind = process.argv[2];
  const start = kind === undefined || !Object.hasOwn(starters, kind) ? undefined : starters[kind];
  if (start === undefined) {
    process.stderr.write(`usage: ${script} ${Object.keys(starters).join('|')}\n`);
    process.exit(2);
  }
  if (process.send === undefined) {
    process.stderr.write(`${script} runs as a child process with an IPC channel\n`);
    process.exit(2);
  }
  const server = await start();

  process.on('message', (message: unknown) => {
    const m = message as { type?: unknown; memory?: unknown } | null;
    if (m?.type === 'usage') void send(usage(false, m.memory === true));
  });
  // The parent went away: nothing is left to serve.
  process.on('disconnect', () => process.exit(0));

  let stopping = false;
  process.on('SIGTERM', () => {
    if (stopping) return;
    stopping = true;
    const deadline = new Promise<void>((resolve) => setTimeout(resolve, STOP_TIMEOUT_MS).unref());
    void Promise.race([server.stop().catch(ignore), deadline])
      .then(() => send(usage(true)))
      .finally(() => process.exit(0));
  });

  process.stdout.write(`listening ${scheme}://${host}:${server.port}\n`);
}
