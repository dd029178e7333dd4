/**
 * A WebSocket client on the command line: it connects to a URL, sends every line it reads on
 * stdin as a text message, and prints every message it receives on stdout, one per line (binary
 * ones as `[binary N bytes]`). When stdin ends it waits until the server has answered a ping,
 * so the replies to what it sent have arrived, then closes with 1000 and exits 0.
 *
 * It is a client, not a server, so it runs on its own rather than through `pnpm example`:
 *
 *   pnpm example ws-echo --port 8080
 *   node_modules/.bin/tsx examples/ws-client/client.ts ws://127.0.0.1:8080/
 *   printf 'hello\nworld\n' | node_modules/.bin/tsx examples/ws-client/client.ts ws://127.0.0.1:8080/
 *
 * Options: `--subprotocol NAME` (repeatable) to offer subprotocols, `--ca FILE` to trust a
 * private CA for wss://. It exits 1 when the connection fails or the server closes with an error
 * code, 2 on a usage error. Ctrl-C closes the connection (1000) and exits.
 */

import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { WebSocketConnectError, connect, type TerminateReason, type WebSocketClient } from '@corral/websocket';

function usage(message: string): never {
  process.stderr.write(`${message}\nUsage: tsx examples/ws-client/client.ts <ws://host:port/path> [--subprotocol NAME]... [--ca FILE]\n`);
  process.exit(2);
}

/** Print the messages as they come; resolves when the server answered the ping `flush`, or the connection closed. */
async function printMessages(client: WebSocketClient, flushed: (payload: Buffer) => boolean): Promise<void> {
  for await (const message of client) {
    switch (message.type) {
      case 'text':
        process.stdout.write(`${message.data}\n`);
        break;
      case 'binary':
        process.stdout.write(`[binary ${message.data.length} bytes]\n`);
        break;
      case 'pong':
        if (flushed(message.data)) return;
        break;
      case 'ping':
        // Answered by the session already.
        break;
    }
  }
}

function describeEnd(reason: TerminateReason): { text: string; ok: boolean } {
  switch (reason.type) {
    case 'stop':
      return { text: 'closed', ok: true };
    case 'remote': {
      const ok = reason.code === undefined || reason.code === 1000 || reason.code === 1001;
      return { text: `the server closed the connection (${reason.code ?? 'no code'}${reason.reason === '' ? '' : ` ${reason.reason}`})`, ok };
    }
    case 'error':
      return { text: `the connection failed (${reason.error})`, ok: false };
    default:
      return { text: `the connection ended (${reason.type})`, ok: false };
  }
}

async function main(): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      allowPositionals: true,
      options: { subprotocol: { type: 'string', multiple: true }, ca: { type: 'string' } },
    });
  } catch (err) {
    usage((err as Error).message);
  }
  const url = parsed.positionals[0];
  if (url === undefined || parsed.positionals.length > 1) usage('Which URL?');
  if (!/^wss?:\/\//i.test(url)) usage(`Not a ws:// or wss:// URL: ${url}`);

  let client: WebSocketClient;
  try {
    client = await connect(url, {
      subprotocols: parsed.values.subprotocol ?? [],
      ...(parsed.values.ca !== undefined ? { tls: { ca: readFileSync(parsed.values.ca) } } : {}),
    });
  } catch (err) {
    const why = err instanceof WebSocketConnectError ? ` (${err.reason})` : '';
    process.stderr.write(`cannot connect to ${url}${why}: ${(err as Error).message}\n`);
    return 1;
  }
  if (client.protocol !== undefined) process.stderr.write(`connected, subprotocol ${client.protocol}\n`);

  // A ping of our own marks the end of what we sent: its pong comes after the replies to it.
  const flush = randomBytes(8);
  let flushSent = false;
  const printing = printMessages(client, (payload) => flushSent && payload.equals(flush));

  const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
  lines.on('line', (line) => client.send(line));
  process.once('SIGINT', () => {
    lines.close();
    void client.close(1000, '');
  });
  const stdinDone = new Promise<void>((resolve) => lines.once('close', () => resolve()));

  // Whichever comes first: stdin ends, or the server closes.
  await Promise.race([stdinDone, client.closed]);
  if (client.state === 'connected') {
    client.send({ type: 'ping', data: flush });
    flushSent = true;
    await printing;
    await client.close(1000, '');
  } else {
    await printing;
  }
  lines.close();
  const end = describeEnd(await client.closed);
  if (!end.ok || end.text !== 'closed') process.stderr.write(`${end.text}\n`);
  return end.ok ? 0 : 1;
}

main().then(
  (code) => {
    // stdin may still hold the event loop open (a terminal): leave once stdout is written.
    process.stdout.write('', () => process.exit(code));
  },
  (err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
