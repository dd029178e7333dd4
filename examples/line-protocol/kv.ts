/**
 * A tiny key-value protocol over lines of text, written as a Corral protocol module.
 *
 *   SET <key> <value>   -> OK
 *   GET <key>           -> VALUE <value> | NIL
 *   DEL <key>           -> DELETED 1 | DELETED 0
 *   KEYS                -> KEYS <key> <key> ...
 *   PING                -> PONG
 *   QUIT                -> BYE, then the server closes
 *
 * Lines end with LF (CRLF accepted). A line longer than `maxLineLength` gets
 * `ERR line too long` and the connection is closed; an idle client is closed after
 * `idleTimeout` ms; when the listener stops, clients get `BYE shutting down`.
 */

import type * as net from 'node:net';
import type { Connection } from '@corral/listener';

export interface KvOptions {
  /** Shared by every connection of the listener. */
  store: Map<string, string>;
  /** Bytes in one line, default 1024. */
  maxLineLength?: number;
  /** Milliseconds without a byte from the client before closing, default 60000. */
  idleTimeout?: number;
}

/** Answer one command line. `undefined` means the client asked to quit. */
export function execute(store: Map<string, string>, line: string): string | undefined {
  const space = line.indexOf(' ');
  const verb = (space === -1 ? line : line.slice(0, space)).toUpperCase();
  const rest = space === -1 ? '' : line.slice(space + 1);
  switch (verb) {
    case 'SET': {
      const sep = rest.indexOf(' ');
      if (sep <= 0) return 'ERR usage: SET <key> <value>';
      store.set(rest.slice(0, sep), rest.slice(sep + 1));
      return 'OK';
    }
    case 'GET': {
      if (rest === '' || rest.includes(' ')) return 'ERR usage: GET <key>';
      const value = store.get(rest);
      return value === undefined ? 'NIL' : `VALUE ${value}`;
    }
    case 'DEL':
      if (rest === '' || rest.includes(' ')) return 'ERR usage: DEL <key>';
      return `DELETED ${store.delete(rest) ? 1 : 0}`;
    case 'KEYS':
      return ['KEYS', ...store.keys()].join(' ');
    case 'PING':
      return 'PONG';
    case 'QUIT':
      return undefined;
    case '':
      return 'ERR empty line';
    default:
      return `ERR unknown command ${JSON.stringify(verb.slice(0, 32))}`;
  }
}

/** The protocol's entry point, as the listener calls it. */
export async function start(conn: Connection<net.Socket, undefined, never>, _transport: unknown, opts: KvOptions): Promise<void> {
  const socket = await conn.handshake();
  const maxLine = opts.maxLineLength ?? 1024;
  socket.setEncoding('utf8');
  socket.setTimeout(opts.idleTimeout ?? 60_000);
  let pending = '';

  const finish = (last: string): void => {
    socket.off('data', onData);
    socket.end(`${last}\n`);
  };
  const onData = (chunk: string): void => {
    pending += chunk;
    let nl: number;
    while ((nl = pending.indexOf('\n')) !== -1) {
      const line = pending.slice(0, pending.charCodeAt(nl - 1) === 13 ? nl - 1 : nl);
      pending = pending.slice(nl + 1);
      if (line.length > maxLine) return finish('ERR line too long');
      const reply = execute(opts.store, line);
      if (reply === undefined) return finish('BYE');
      socket.write(`${reply}\n`);
    }
    if (pending.length > maxLine) finish('ERR line too long');
  };
  const onAbort = (): void => finish('BYE shutting down');

  socket.on('data', onData);
  socket.on('timeout', () => finish('ERR idle timeout'));
  conn.signal.addEventListener('abort', onAbort, { once: true });
  socket.resume();
  try {
    await new Promise((resolve) => socket.once('close', resolve));
  } finally {
    conn.signal.removeEventListener('abort', onAbort);
  }
}
