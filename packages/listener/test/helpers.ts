import * as net from 'node:net';
import { once } from 'node:events';

/** Connect a plain client to a TCP port on 127.0.0.1 or a UNIX socket path. */
export async function connect(target: number | string): Promise<net.Socket> {
  const socket = typeof target === 'number' ? net.connect(target, '127.0.0.1') : net.connect(target);
  await once(socket, 'connect');
  return socket;
}

/** Collects everything a socket receives, with promises for "n bytes arrived" and "closed". */
export class Reader {
  #chunks: Buffer[] = [];
  #length = 0;
  #waiters: { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void }[] = [];
  readonly closed: Promise<boolean>;
  ended = false;

  constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.#chunks.push(chunk);
      this.#length += chunk.length;
      this.#flush();
    });
    socket.on('error', () => {});
    this.closed = new Promise((resolve) => {
      socket.on('close', (hadError) => {
        this.ended = true;
        for (const w of this.#waiters) w.reject(new Error(`closed with ${this.#length} bytes buffered`));
        this.#waiters = [];
        resolve(hadError);
      });
    });
  }

  get length(): number {
    return this.#length;
  }

  text(): string {
    return Buffer.concat(this.#chunks).toString();
  }

  /** Resolves with the first `n` bytes (consuming them) once they arrived. */
  read(n: number): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      if (this.ended && this.#length < n) {
        reject(new Error('closed'));
        return;
      }
      this.#waiters.push({ n, resolve, reject });
      this.#flush();
    });
  }

  #flush(): void {
    while (this.#waiters.length > 0 && this.#length >= this.#waiters[0]!.n) {
      const w = this.#waiters.shift()!;
      const all = Buffer.concat(this.#chunks);
      this.#chunks = [all.subarray(w.n)];
      this.#length -= w.n;
      w.resolve(all.subarray(0, w.n));
    }
  }
}

/** A client that is connected and reads into a {@link Reader}. */
export async function client(target: number | string): Promise<Reader> {
  return new Reader(await connect(target));
}

/** Send `text` and wait for it to come back (echo servers). */
export async function roundTrip(reader: Reader, text: string): Promise<string> {
  reader.socket.write(text);
  return (await reader.read(Buffer.byteLength(text))).toString();
}

/** A promise with its resolve function exposed. */
export function deferred<T = void>(): { promise: Promise<T>; resolve: (v: T) => void; reject: (e: unknown) => void } {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Try to connect; resolves with the error code, or undefined when the connection was accepted. */
export async function connectRefused(port: number): Promise<string | undefined> {
  const socket = net.connect(port, '127.0.0.1');
  try {
    await once(socket, 'connect');
    socket.destroy();
    return undefined;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code;
  }
}

let refCounter = 0;
/** A fresh listener ref per test. */
export function ref(name = 'test'): string {
  return `${name}-${process.pid}-${++refCounter}`;
}

/** Resolves when the socket closes (never rejects, unlike `once(socket, 'close')`). */
export function closed(socket: net.Socket): Promise<void> {
  return socket.closed ? Promise.resolve() : new Promise((resolve) => socket.once('close', () => resolve()));
}
