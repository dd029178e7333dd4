/**
 * One echo server of the TCP echo bench, run as a child process so its CPU time is its own:
 *
 *   node --import tsx bench/lib/echo-server.ts corral|raw
 *
 * - `corral`: a Corral listener (`startListener(..., tcp, ...)`, default options) whose protocol
 *   takes its socket from `conn.handshake()` and pipes it to itself.
 * - `raw`: the peer, a bare `node:net` server piping each socket to itself, with the socket
 *   options Corral's TCP transport applies by default (`noDelay: true`) and, like Corral, an
 *   `'error'` listener on each socket so a reset cannot take the process down.
 *
 * Both listen on 127.0.0.1, port 0, and print `listening tcp://127.0.0.1:<port>` as the first line
 * on stdout. Over the IPC channel, a `{ type: 'usage' }` message is answered with
 * `process.cpuUsage()` and `process.resourceUsage()`. SIGTERM stops the server, sends a final
 * usage message (`final: true`) and exits, which also writes a `--cpu-prof` profile if asked
 * for. The process exits as soon as its parent goes away (the IPC channel closes).
 */

import * as net from 'node:net';
import type { Connection } from '@corral/listener';

/** The message a server sends back on the IPC channel. */
export interface UsageMessage {
  type: 'usage';
  cpu: NodeJS.CpuUsage;
  ru: NodeJS.ResourceUsage;
  final: boolean;
}

export type ServerKind = 'corral' | 'raw';

const HOST = '127.0.0.1';
const STOP_TIMEOUT_MS = 3000;

/** The protocol: the same as examples/tcp-echo. */
async function echo(conn: Connection<net.Socket, undefined, never>): Promise<void> {
  const socket = await conn.handshake();
  socket.pipe(socket);
  await new Promise((resolve) => socket.once('close', resolve));
}

function ignore(): void {}

async function startCorral(): Promise<{ port: number; stop(): Promise<void> }> {
  // Loaded here so the raw server never loads Corral at all.
  const { startListener, tcp } = await import('@corral/listener');
  const listener = await startListener('bench-echo', tcp, { socketOpts: { port: 0, host: HOST } }, echo, undefined);
  const port = listener.getPort();
  if (port === undefined) throw new Error('the listener has no port');
  return { port, stop: () => listener.stop() };
}

async function startRaw(): Promise<{ port: number; stop(): Promise<void> }> {
  const server = net.createServer({ noDelay: true }, (socket) => {
    socket.on('error', ignore);
    socket.pipe(socket);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port: 0, host: HOST }, () => {
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

function usage(final: boolean): UsageMessage {
  return { type: 'usage', cpu: process.cpuUsage(), ru: process.resourceUsage(), final };
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

async function main(): Promise<void> {
  const kind = process.argv[2];
  if (kind !== 'corral' && kind !== 'raw') {
    process.stderr.write('usage: echo-server.ts corral|raw\n');
    process.exit(2);
  }
  if (process.send === undefined) {
    process.stderr.write('echo-server.ts runs as a child process with an IPC channel\n');
    process.exit(2);
  }
  const server = kind === 'corral' ? await startCorral() : await startRaw();

  process.on('message', (message: unknown) => {
    if ((message as { type?: unknown } | null)?.type === 'usage') void send(usage(false));
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

  process.stdout.write(`listening tcp://${HOST}:${server.port}\n`);
}

await main();
