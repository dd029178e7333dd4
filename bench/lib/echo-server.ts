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
 * on stdout; server-child.ts answers the load generator's questions over IPC and handles SIGTERM.
 */

import * as net from 'node:net';
import type { Connection } from '@corral/listener';
import { listenOn, serve, type RunningServer } from './server-child.js';

export type ServerKind = 'corral' | 'raw';

const HOST = '127.0.0.1';

/** The protocol: the same as examples/tcp-echo. */
async function echo(conn: Connection<net.Socket, undefined, never>): Promise<void> {
  const socket = await conn.handshake();
  socket.pipe(socket);
  await new Promise((resolve) => socket.once('close', resolve));
}

function ignore(): void {}

async function startCorral(): Promise<RunningServer> {
  // Loaded here so the raw server never loads Corral at all.
  const { startListener, tcp } = await import('@corral/listener');
  const listener = await startListener('bench-echo', tcp, { socketOpts: { port: 0, host: HOST } }, echo, undefined);
  const port = listener.getPort();
  if (port === undefined) throw new Error('the listener has no port');
  return { port, stop: () => listener.stop() };
}

async function startRaw(): Promise<RunningServer> {
  const server = net.createServer({ noDelay: true }, (socket) => {
    socket.on('error', ignore);
    socket.pipe(socket);
  });
  return listenOn(server, HOST);
}

await serve('echo-server.ts', 'tcp', HOST, { corral: startCorral, raw: startRaw });
