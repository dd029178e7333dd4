/**
 * The smallest Corral server: every byte a client sends comes back.
 *
 *   pnpm example tcp-echo --port 5555
 *   nc 127.0.0.1 5555
 */

import type * as net from 'node:net';
import { startListener, tcp, type Connection } from '@corral/listener';
import { urlOf, type ExampleOptions, type RunningExample } from '../example.js';

/**
 * The protocol: take the socket from the handshake, pipe it to itself, live until it closes;
 * when the listener stops, end the connection instead of waiting to be cut off.
 */
export async function echo(conn: Connection<net.Socket, undefined, never>): Promise<void> {
  const socket = await conn.handshake();
  conn.signal.addEventListener('abort', () => socket.end(), { once: true });
  socket.pipe(socket);
  await new Promise((resolve) => socket.once('close', resolve));
}

export async function start({ port, host }: ExampleOptions): Promise<RunningExample> {
  const listener = await startListener('tcp-echo', tcp, { socketOpts: { port, host } }, echo, undefined);
  return {
    url: urlOf('tcp', host, listener.getPort()),
    stop: () => listener.stop(),
  };
}
