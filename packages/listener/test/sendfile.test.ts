import * as fs from 'node:fs';
import { open } from 'node:fs/promises';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BadArgumentError, SocketError } from '../src/errors.js';
import { DEFAULT_SENDFILE_CHUNK_SIZE, sendfile } from '../src/sendfile.js';
import { tcp } from '../src/tcp.js';

let dir: string;
let file: string;
let content: Buffer;
const SIZE = 200_003;

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'corral-sendfile-'));
  file = path.join(dir, 'data.bin');
  content = Buffer.alloc(SIZE);
  for (let i = 0; i < SIZE; i++) content[i] = (i * 7 + 3) % 256;
  fs.writeFileSync(file, content);
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

/**
 * A loopback pair. `writes` records the size of every write() call made on the sending
 * (accepted) socket, which is where sendfile's chunking shows.
 */
async function pair(): Promise<{ server: net.Socket; client: net.Socket; writes: number[] }> {
  let accept!: (s: net.Socket) => void;
  const accepted = new Promise<net.Socket>((resolve) => (accept = resolve));
  const ls = await tcp.listen(tcp.normalizeOptions({ host: '127.0.0.1' }), { onConnection: (s) => accept(s), onError: () => {} });
  cleanups.push(() => ls.close());
  const addr = ls.address();
  if (addr.family === 'local') throw new Error('unexpected');
  const client = await tcp.connect('127.0.0.1', addr.port);
  const server = await accepted;
  for (const s of [server, client]) {
    s.on('error', () => {});
    cleanups.push(() => s.destroy());
  }
  const writes: number[] = [];
  const write = server.write.bind(server) as (chunk: Buffer, cb?: (err?: Error | null) => void) => boolean;
  server.write = ((chunk: Buffer, cb?: (err?: Error | null) => void) => {
    writes.push(chunk.length);
    return write(chunk, cb);
  }) as typeof server.write;
  return { server, client, writes };
}

/** Collect exactly `expected` bytes on the client, and check nothing more is buffered. */
async function received(client: net.Socket, expected: number): Promise<Buffer> {
  const data = expected === 0 ? Buffer.alloc(0) : await tcp.recv(client, expected, Infinity);
  await expect(tcp.recv(client, 1, 0)).rejects.toMatchObject({ reason: 'timeout' });
  return data;
}

describe('sendfile', () => {
  it('sends a whole file given by path (bytes 0 = to the end)', async () => {
    const { server, client, writes } = await pair();
    expect(await tcp.sendfile(server, file)).toBe(SIZE);
    expect((await received(client, SIZE)).equals(content)).toBe(true);
    expect(writes.every((n) => n <= DEFAULT_SENDFILE_CHUNK_SIZE)).toBe(true);
    expect(writes.reduce((a, b) => a + b, 0)).toBe(SIZE);
  });

  it('sends from a raw fd without moving its position', async () => {
    const { server, client } = await pair();
    const fd = fs.openSync(file, 'r');
    cleanups.push(() => fs.closeSync(fd));
    const head = Buffer.alloc(10);
    expect(fs.readSync(fd, head, 0, 10, null)).toBe(10);
    expect(await tcp.sendfile(server, fd, 0, 0)).toBe(SIZE);
    expect((await received(client, SIZE)).equals(content)).toBe(true);
    const next = Buffer.alloc(5);
    expect(fs.readSync(fd, next, 0, 5, null)).toBe(5);
    expect(next.equals(content.subarray(10, 15))).toBe(true);
  });

  it('sends from a FileHandle without moving its position or closing it', async () => {
    const { server, client } = await pair();
    const handle = await open(file, 'r');
    cleanups.push(() => handle.close());
    await handle.read(Buffer.alloc(20), 0, 20, null);
    expect(await tcp.sendfile(server, handle, 1000, 5000)).toBe(5000);
    expect((await received(client, 5000)).equals(content.subarray(1000, 6000))).toBe(true);
    const { bytesRead, buffer } = await handle.read(Buffer.alloc(4), 0, 4, null);
    expect(bytesRead).toBe(4);
    expect(buffer.equals(content.subarray(20, 24))).toBe(true);
  });

  it('stops at the end of the file when bytes go beyond it', async () => {
    const { server, client } = await pair();
    expect(await tcp.sendfile(server, file, 0, SIZE + 100_000)).toBe(SIZE);
    expect((await received(client, SIZE)).equals(content)).toBe(true);
    expect(await tcp.sendfile(server, file, SIZE - 10, 1000)).toBe(10);
    expect((await received(client, 10)).equals(content.subarray(SIZE - 10))).toBe(true);
  });

  it('sends nothing and resolves 0 for an offset beyond the end', async () => {
    const { server, client, writes } = await pair();
    expect(await tcp.sendfile(server, file, SIZE + 1)).toBe(0);
    expect(await tcp.sendfile(server, file, SIZE, 10)).toBe(0);
    await received(client, 0);
    expect(writes).toEqual([]);
  });

  it.each([75, 50, 7])('sends a range at offset %i from a positioned fd', async (offset) => {
    const { server, client } = await pair();
    const fd = fs.openSync(file, 'r');
    cleanups.push(() => fs.closeSync(fd));
    const initial = 499;
    fs.readSync(fd, Buffer.alloc(initial), 0, initial, null);
    const bytes = 1000 - offset;
    expect(await tcp.sendfile(server, fd, offset, bytes)).toBe(bytes);
    expect((await received(client, bytes)).equals(content.subarray(offset, offset + bytes))).toBe(true);
    const next = Buffer.alloc(8);
    fs.readSync(fd, next, 0, 8, null);
    expect(next.equals(content.subarray(initial, initial + 8))).toBe(true);
  });

  it('writes chunks of exactly chunkSize bytes', async () => {
    const { server, client, writes } = await pair();
    expect(await tcp.sendfile(server, file, 0, 5500, { chunkSize: 1000 })).toBe(5500);
    expect((await received(client, 5500)).equals(content.subarray(0, 5500))).toBe(true);
    expect(writes).toEqual([1000, 1000, 1000, 1000, 1000, 500]);
  });

  it('uses 65536-byte chunks by default and for chunkSize 0', async () => {
    const { server, client, writes } = await pair();
    expect(await tcp.sendfile(server, file, 0, 0, { chunkSize: 0 })).toBe(SIZE);
    await received(client, SIZE);
    expect(writes).toEqual([65536, 65536, 65536, SIZE - 3 * 65536]);
  });

  it('uses a chunk size larger than the file', async () => {
    const { server, client, writes } = await pair();
    expect(await tcp.sendfile(server, file, 0, 0, { chunkSize: 1 << 20 })).toBe(SIZE);
    await received(client, SIZE);
    expect(writes).toEqual([SIZE]);
  });

  it('writes through a function target, one awaited chunk at a time', async () => {
    const chunks: Buffer[] = [];
    let inFlight = 0;
    const write = async (chunk: Buffer): Promise<void> => {
      inFlight++;
      expect(inFlight).toBe(1);
      chunks.push(Buffer.from(chunk));
      await new Promise((resolve) => setImmediate(resolve));
      inFlight--;
    };
    expect(await sendfile(write, file, 10, 3000, { chunkSize: 1024 })).toBe(3000);
    expect(chunks.map((c) => c.length)).toEqual([1024, 1024, 952]);
    expect(Buffer.concat(chunks).equals(content.subarray(10, 3010))).toBe(true);
  });

  it('rejects with closed when the socket closes midway', async () => {
    const { server } = await pair();
    const write = server.write;
    let calls = 0;
    server.write = ((...args: Parameters<typeof server.write>) => {
      if (++calls === 3) server.destroy();
      return write.apply(server, args);
    }) as typeof server.write;
    const err = await tcp.sendfile(server, file, 0, 0, { chunkSize: 1000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SocketError);
    expect(err).toMatchObject({ reason: 'closed' });
    expect(calls).toBeLessThan(5);
  });

  it('rejects with closed on a socket already closed', async () => {
    const { server } = await pair();
    server.destroy();
    await expect(tcp.sendfile(server, file)).rejects.toMatchObject({ reason: 'closed' });
    await expect(tcp.sendfile(server, path.join(dir, 'missing'))).rejects.toMatchObject({ reason: 'closed' });
  });

  it('reports a missing file as a SocketError with the fs error as cause', async () => {
    const { server } = await pair();
    const err = await tcp.sendfile(server, path.join(dir, 'missing')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SocketError);
    expect(err).toMatchObject({ reason: 'error', cause: { code: 'ENOENT' } });
  });

  it('checks its arguments', async () => {
    const { server } = await pair();
    const bad: [unknown, unknown, unknown, unknown][] = [
      [file, -1, 0, {}],
      [file, 1.5, 0, {}],
      [file, 0, -1, {}],
      [file, 0, Number.NaN, {}],
      [file, 0, 0, { chunkSize: -1 }],
      [file, 0, 0, { chunkSize: 2.5 }],
      [file, 0, 0, null],
      ['', 0, 0, {}],
      [-3, 0, 0, {}],
      [{}, 0, 0, {}],
      [null, 0, 0, {}],
    ];
    for (const [f, offset, bytes, opts] of bad) {
      await expect(sendfile(server, f as string, offset as number, bytes as number, opts as object)).rejects.toBeInstanceOf(BadArgumentError);
    }
    await expect(sendfile({} as net.Socket, file)).rejects.toBeInstanceOf(BadArgumentError);
  });
});
