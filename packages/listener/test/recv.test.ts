import * as net from 'node:net';
import { once } from 'node:events';
import { PassThrough } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { BadArgumentError, SocketError } from '../src/errors.js';
import { MAX_RECV_LENGTH, recv } from '../src/recv.js';
import { tcp } from '../src/tcp.js';
import type { ListenSocket } from '../src/types.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

/** A connected pair on loopback: `server` is the accepted (paused) socket, `client` the connected one (paused too). */
async function pair(): Promise<{ server: net.Socket; client: net.Socket }> {
  let accept!: (s: net.Socket) => void;
  const accepted = new Promise<net.Socket>((resolve) => (accept = resolve));
  const ls: ListenSocket = await tcp.listen(tcp.normalizeOptions({ host: '127.0.0.1' }), {
    onConnection: (s) => accept(s),
    onError: () => {},
  });
  cleanups.push(() => ls.close());
  const addr = ls.address();
  if (addr.family === 'local') throw new Error('unexpected');
  const client = await tcp.connect('127.0.0.1', addr.port);
  const server = await accepted;
  for (const s of [server, client]) {
    s.on('error', () => {});
    cleanups.push(() => s.destroy());
  }
  return { server, client };
}

/** The listeners recv may add, to check none is left behind. */
function listenerCounts(s: net.Socket | PassThrough): number[] {
  return ['readable', 'end', 'close', 'error', 'data'].map((e) => s.listenerCount(e));
}

function nextTick(): Promise<void> {
  return new Promise((resolve) => process.nextTick(resolve));
}

describe('recv', () => {
  it('reads exactly the requested length across several writes', async () => {
    const { server, client } = await pair();
    const before = listenerCounts(server);
    const pending = recv(server, 9, Infinity);
    for (const part of ['abc', 'def', 'ghi', 'jkl']) await tcp.send(client, part);
    expect((await pending).toString()).toBe('abcdefghi');
    expect(listenerCounts(server)).toEqual(before);
    // The rest is still there.
    expect((await recv(server, 3, Infinity)).toString()).toBe('jkl');
  });

  it('with length 0 returns what is buffered, or waits for the next data', async () => {
    const { server, client } = await pair();
    const first = recv(server, 0, Infinity);
    await tcp.send(client, 'hello');
    expect((await first).toString()).toBe('hello');
    await tcp.send(client, 'one');
    await tcp.send(client, 'two');
    // Wait until both are buffered, then put them back unconsumed.
    server.unshift(await recv(server, 6, Infinity));
    expect((await recv(server, 0, 0)).toString()).toBe('onetwo');
  });

  it('times out without losing the bytes already received', async () => {
    const { server, client } = await pair();
    await tcp.send(client, '12345');
    const before = listenerCounts(server);
    await expect(recv(server, 10, 20)).rejects.toMatchObject({ name: 'SocketError', reason: 'timeout', code: 'ERR_CORRAL_TIMEOUT' });
    expect(listenerCounts(server)).toEqual(before);
    await tcp.send(client, '67890');
    expect((await recv(server, 10, Infinity)).toString()).toBe('1234567890');
  });

  it('fails at once with timeout 0 unless the data is buffered', async () => {
    const { server, client } = await pair();
    await expect(recv(server, 1, 0)).rejects.toMatchObject({ reason: 'timeout' });
    await tcp.send(client, 'xy');
    expect((await recv(server, 2, Infinity)).toString()).toBe('xy');
    await tcp.send(client, 'z');
    await recv(server, 1, Infinity).then((b) => server.unshift(b));
    expect((await recv(server, 1, 0)).toString()).toBe('z');
  });

  it('rejects with closed when the peer ends early, keeping the partial bytes', async () => {
    const { server, client } = await pair();
    const before = listenerCounts(server);
    const pending = recv(server, 5, Infinity);
    client.end('abc');
    const err = await pending.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SocketError);
    expect(err).toMatchObject({ reason: 'closed', code: 'ERR_CORRAL_SOCKET' });
    expect(listenerCounts(server)).toEqual(before);
    expect((await recv(server, 0, Infinity)).toString()).toBe('abc');
    await expect(recv(server, 0, Infinity)).rejects.toMatchObject({ reason: 'closed' });
  });

  it('rejects with closed when the socket is destroyed while waiting, or already', async () => {
    const { server } = await pair();
    const pending = recv(server, 1, Infinity);
    server.destroy();
    await expect(pending).rejects.toMatchObject({ reason: 'closed' });
    await expect(recv(server, 1, Infinity)).rejects.toMatchObject({ reason: 'closed' });
  });

  it('rejects with closed when the peer closes with nothing buffered', async () => {
    const { server, client } = await pair();
    const pending = recv(server, 0, Infinity);
    client.end();
    await expect(pending).rejects.toMatchObject({ reason: 'closed' });
  });

  it('reads a length far above the high-water mark', async () => {
    const { server, client } = await pair();
    const size = 4 * 1024 * 1024 + 3;
    const data = Buffer.alloc(size);
    for (let i = 0; i < size; i++) data[i] = i % 251;
    const pending = recv(server, size, Infinity);
    await tcp.send(client, data);
    const got = await pending;
    expect(got.length).toBe(size);
    expect(got.equals(data)).toBe(true);
  });

  it('leaves the socket paused and usable in flowing mode afterwards', async () => {
    const { server, client } = await pair();
    expect(server.readableFlowing).toBe(false);
    const pending = recv(server, 2, Infinity);
    await tcp.send(client, 'ok');
    await pending;
    await nextTick();
    expect(server.readableFlowing).toBe(false);
    // A 'data' listener alone does not start the flow of an explicitly paused socket.
    const chunks: Buffer[] = [];
    server.on('data', (c: Buffer) => chunks.push(c));
    expect(server.readableFlowing).toBe(false);
    server.resume();
    await tcp.send(client, 'flow');
    while (Buffer.concat(chunks).length < 4) await once(server, 'data');
    expect(Buffer.concat(chunks).toString()).toBe('flow');
  });

  it('refuses a second concurrent recv and a flowing socket', async () => {
    const { server, client } = await pair();
    const first = recv(server, 1, Infinity);
    await expect(recv(server, 1, Infinity)).rejects.toMatchObject({ reason: 'error' });
    await tcp.send(client, 'a');
    expect((await first).toString()).toBe('a');
    server.resume();
    await expect(recv(server, 1, Infinity)).rejects.toMatchObject({ reason: 'error' });
  });

  it('checks its arguments', async () => {
    const s = new PassThrough();
    for (const length of [-1, 1.5, Number.NaN, MAX_RECV_LENGTH + 1, '1' as unknown as number]) {
      await expect(recv(s, length, 10)).rejects.toBeInstanceOf(BadArgumentError);
    }
    for (const timeout of [-1, Number.NaN, '5' as unknown as number]) {
      await expect(recv(s, 1, timeout)).rejects.toBeInstanceOf(BadArgumentError);
    }
    s.setEncoding('utf8');
    await expect(recv(s, 1, 10)).rejects.toBeInstanceOf(BadArgumentError);
  });

  it('works on any paused byte stream', async () => {
    const s = new PassThrough();
    s.pause();
    const before = listenerCounts(s);
    const pending = recv(s, 4, Infinity);
    s.write('ab');
    s.write('cdef');
    expect((await pending).toString()).toBe('abcd');
    expect(listenerCounts(s)).toEqual(before);
    expect((await recv(s, 0, Infinity)).toString()).toBe('ef');
    s.end();
    await expect(recv(s, 1, Infinity)).rejects.toMatchObject({ reason: 'closed' });
  });

  it('reports a stream error as a SocketError with the cause', async () => {
    const s = new PassThrough();
    const pending = recv(s, 1, Infinity);
    const boom = new Error('boom');
    s.destroy(boom);
    await expect(pending).rejects.toMatchObject({ reason: 'error', cause: boom });
  });
});
