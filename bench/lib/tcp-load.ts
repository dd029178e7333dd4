/**
 * The TCP echo clients of the benchmarks whose load generator runs in the benchmark's own
 * process (tcp-echo.ts, acceptors.ts): connections opened and closed as a client does, round
 * trips of a message, and short connections.
 */

import * as net from 'node:net';

export const HOST = '127.0.0.1';
const CLOSE_TIMEOUT_MS = 5_000;
const ONE_BYTE = Buffer.from('x');

function connectOne(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: HOST, noDelay: true });
    const onError = (err: Error): void => reject(err);
    socket.once('error', onError);
    socket.once('connect', () => {
      socket.off('error', onError);
      resolve(socket);
    });
  });
}

/** `n` connections at once; if one fails, the others are destroyed. */
export async function openConnections(port: number, n: number): Promise<net.Socket[]> {
  const settled = await Promise.allSettled(Array.from({ length: n }, () => connectOne(port)));
  const sockets = settled.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed !== undefined) {
    closeAll(sockets);
    throw failed.reason;
  }
  return sockets;
}

export function closeAll(sockets: net.Socket[]): void {
  for (const s of sockets) s.destroy();
}

/**
 * Close the sockets the way a client does (FIN, then wait for the server's), so a server's
 * teardown work is over before the next pass starts; whatever is still open after a while is
 * destroyed.
 */
export async function endAll(sockets: net.Socket[]): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, CLOSE_TIMEOUT_MS);
  });
  const closed = Promise.all(sockets.map((s) => new Promise<void>((resolve) => {
    if (s.closed) {
      resolve();
      return;
    }
    s.once('close', () => resolve());
    s.on('error', () => {});
    s.resume();
    s.end();
  })));
  await Promise.race([closed, late]);
  clearTimeout(timer);
  closeAll(sockets);
}

/**
 * Run one exchange on `socket`: `body` starts it and returns the data handler, which calls `done`
 * when the exchange is complete or throws if the data is wrong. Fails if the socket errors or
 * closes first. The socket is paused again afterwards, ready for the next exchange.
 */
export function exchange(socket: net.Socket, body: (done: () => void) => (chunk: Buffer) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    let handler: (chunk: Buffer) => void = () => {};
    const onData = (chunk: Buffer): void => {
      try {
        handler(chunk);
      } catch (err) {
        finish(err as Error);
      }
    };
    const onError = (err: Error): void => finish(err);
    const onClose = (): void => finish(new Error('the server closed the connection'));
    const finish = (err?: Error): void => {
      socket.off('data', onData);
      socket.off('error', onError);
      socket.off('close', onClose);
      socket.pause();
      if (err === undefined) resolve();
      else reject(err);
    };
    socket.on('error', onError);
    socket.on('close', onClose);
    socket.on('data', onData);
    socket.resume();
    handler = body(() => finish());
  });
}

/** `count` round trips of `payload` on each socket, all sockets at once; with `check`, each echo compared with the message. */
export function pingPong(sockets: net.Socket[], payload: Buffer, count: number, check = false): Promise<void> {
  const size = payload.length;
  return Promise.all(sockets.map((socket) => exchange(socket, (done) => {
    let left = count;
    let got = 0;
    const received: Buffer[] = [];
    socket.write(payload);
    return (chunk) => {
      got += chunk.length;
      if (check) received.push(chunk);
      if (got < size) return;
      if (got > size) throw new Error(`received ${got} bytes for a ${size}-byte message`);
      if (check && !Buffer.concat(received).equals(payload)) throw new Error('the echo differs from the message');
      got = 0;
      received.length = 0;
      if (--left === 0) done();
      else socket.write(payload);
    };
  }))).then(() => undefined);
}

/** Connect, send one byte, read it back, close first. */
export function shortConnection(port: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const socket = net.connect({ port, host: HOST, noDelay: true });
    let echoed = false;
    socket.once('error', reject);
    socket.once('connect', () => socket.write(ONE_BYTE));
    socket.once('data', () => {
      echoed = true;
      socket.end();
    });
    socket.once('close', () => (echoed ? resolve() : reject(new Error('closed before the echo'))));
  });
}

/** `total` runs of `one` (given its index), `concurrency` at a time. */
export async function concurrently(total: number, concurrency: number, one: (i: number) => Promise<void>): Promise<void> {
  let started = 0;
  const worker = async (): Promise<void> => {
    while (started < total) await one(started++);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, total) }, worker));
}
