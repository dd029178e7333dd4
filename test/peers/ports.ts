/**
 * Loopback ports for the peers: pick a free one, and wait until a peer serves one.
 */

import * as net from 'node:net';
import type { PeerProcess } from './process.js';

/** A port that was free on `host` a moment ago: bound to port 0, read, closed. */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port: 0, exclusive: true }, () => resolve());
  });
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

type Attempt = 'answered' | 'refused';

/**
 * One connection attempt: `refused`, or `answered` once the server, having accepted, acted on the
 * connection (sent data, closed or reset it), which shows its event loop runs. Other errors reject.
 */
function tryConnect(host: string, port: number): Promise<Attempt> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port });
    let connected = false;
    const answered = (): void => {
      socket.destroy();
      resolve('answered');
    };
    socket.once('connect', () => {
      connected = true;
    });
    socket.once('data', answered);
    socket.once('end', answered);
    socket.once('close', answered);
    socket.once('error', (err: NodeJS.ErrnoException) => {
      socket.destroy();
      // A reset can beat the connect callback: the server accepted, then dropped the connection.
      if (connected || err.code === 'ECONNRESET' || err.code === 'EPIPE') resolve('answered');
      else if (err.code === 'ECONNREFUSED') resolve('refused');
      else reject(err);
    });
  });
}

export interface WaitOptions {
  /** Give up after this many milliseconds (default 15000). */
  timeoutMs?: number;
  /** Give up after this many refused attempts (default 1000). */
  maxAttempts?: number;
  /** Pause between refused attempts, in milliseconds (default 20). */
  retryDelayMs?: number;
}

/**
 * Resolve once `proc` serves `host:port`, a port it answers on its own (it writes and closes, or
 * closes): connect, and on ECONNREFUSED try again after a short pause, within a bounded number of
 * attempts and time. Rejects at once, with the peer's output, when the process exits first.
 *
 * Peers open every listening socket before they serve any, so once one answers, all accept.
 * Probing a dedicated port keeps the probes away from the backend under test.
 */
export async function waitUntilServing(proc: PeerProcess, host: string, port: number, opts: WaitOptions = {}): Promise<void> {
  const timeoutMs = opts.timeoutMs ?? 15_000;
  const maxAttempts = opts.maxAttempts ?? 1000;
  const retryDelayMs = opts.retryDelayMs ?? 20;
  const started = Date.now();
  const exited = proc.exited.then((status) => ({ exited: status }) as const);
  let deadlineTimer: NodeJS.Timeout | undefined;
  const deadline = new Promise<'timeout'>((resolve) => {
    deadlineTimer = setTimeout(() => resolve('timeout'), timeoutMs);
  });
  try {
    for (let attempt = 1; ; attempt++) {
      const outcome = await Promise.race([tryConnect(host, port), exited, deadline]);
      if (typeof outcome === 'object') {
        throw new Error(`${proc.name} exited (${outcome.exited.describe}) before serving ${host}:${port}:\n${proc.output()}`);
      }
      if (outcome === 'answered') return;
      if (outcome === 'timeout' || attempt >= maxAttempts || Date.now() - started >= timeoutMs) {
        throw new Error(
          `${proc.name} (pid ${proc.pid}) did not serve ${host}:${port} after ${attempt} attempts in ${Date.now() - started} ms:\n${proc.output()}`,
        );
      }
      let timer: NodeJS.Timeout | undefined;
      const pause = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, retryDelayMs);
      });
      await Promise.race([pause, exited]);
      clearTimeout(timer);
    }
  } finally {
    clearTimeout(deadlineTimer);
  }
}
