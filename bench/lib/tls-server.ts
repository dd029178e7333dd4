/**
 * One TLS server of the TLS handshake bench, run as a child process so its CPU time is its own:
 *
 *   node --import tsx bench/lib/tls-server.ts corral|corral-hello|raw
 *
 * Every kind serves the same certificate (the `localhost` test fixture, RSA 2048) with Node's
 * TLS defaults (TLS 1.2 to 1.3, session tickets issued), and echoes what a client sends once its
 * handshake is done.
 *
 * - `corral`: a Corral listener on the `tls` transport, the certificate in `socketOpts`, every
 *   other option at its default; the protocol takes the TLS socket from `conn.handshake()` and
 *   pipes it to itself (examples/tcp-echo's protocol).
 * - `corral-hello`: the same with the paused handshake (`handshake: 'hello'`): the protocol looks
 *   the client's server name up in a map of secure contexts made once with
 *   `tls.createSecureContext`, calls `conn.handshakeContinue({ secureContext })` (or cancels with
 *   `unrecognized_name`), then echoes.
 * - `raw`: the peer, a bare `tls.createServer({ key, cert, noDelay: true })` piping each secure
 *   socket to itself, with an `'error'` listener on each socket as Corral adds one. `noDelay` is
 *   what Corral's transport sets on accepted sockets.
 *
 * All listen on 127.0.0.1, port 0, and print `listening tls://127.0.0.1:<port>` first;
 * server-child.ts answers the load generator over IPC and handles SIGTERM.
 */

import { readFileSync } from 'node:fs';
import * as nodeTls from 'node:tls';
import type { ConnectionOf, tls as TlsTransport } from '@corral/listener';
import { listenOn, serve, type RunningServer } from './server-child.js';

export type TlsServerKind = 'corral' | 'corral-hello' | 'raw';

const HOST = '127.0.0.1';
/** The name the certificate is for, and the one clients ask for. */
const SERVER_NAME = 'localhost';
const fixtures = new URL('../../packages/listener/test/fixtures/tls/', import.meta.url);

/** The certificate every server presents. */
function fixtureFiles(): { key: Buffer; cert: Buffer } {
  return {
    key: readFileSync(new URL('localhost.key', fixtures)),
    cert: readFileSync(new URL('localhost.crt', fixtures)),
  };
}

type TlsConn = ConnectionOf<typeof TlsTransport>;

function ignore(): void {}

function closed(socket: nodeTls.TLSSocket): Promise<void> {
  return new Promise((resolve) => socket.once('close', () => resolve()));
}

/** The protocol of `corral`: the full handshake, then echo. */
async function echo(conn: TlsConn): Promise<void> {
  const result = await conn.handshake();
  if ('continue' in result) throw new Error('unexpected paused handshake');
  result.pipe(result);
  await closed(result);
}

/** The protocol of `corral-hello`: pick the context by SNI, finish the handshake, then echo. */
async function helloEcho(conn: TlsConn, _transport: unknown, opts: { contexts: ReadonlyMap<string, nodeTls.SecureContext> }): Promise<void> {
  const result = await conn.handshake();
  if (!('continue' in result)) throw new Error('expected a paused handshake');
  const secureContext = opts.contexts.get(result.continue.serverName?.toLowerCase() ?? '');
  if (secureContext === undefined) {
    await conn.handshakeCancel({ alert: 'unrecognized_name' });
    return;
  }
  const socket = await conn.handshakeContinue({ secureContext });
  socket.pipe(socket);
  await closed(socket);
}

async function startCorral(paused: boolean): Promise<RunningServer> {
  // Loaded here so the raw server never loads Corral at all.
  const { startListener, tls } = await import('@corral/listener');
  const { key, cert } = fixtureFiles();
  const listener = paused
    ? await startListener('bench-tls-hello', tls, { socketOpts: { port: 0, host: HOST, handshake: 'hello' } }, helloEcho, {
      contexts: new Map([[SERVER_NAME, nodeTls.createSecureContext({ key, cert })]]),
    })
    : await startListener('bench-tls', tls, { socketOpts: { port: 0, host: HOST, key, cert } }, echo, undefined);
  const port = listener.getPort();
  if (port === undefined) throw new Error('the listener has no port');
  return { port, stop: () => listener.stop() };
}

async function startRaw(): Promise<RunningServer> {
  const { key, cert } = fixtureFiles();
  const server = nodeTls.createServer({ key, cert, noDelay: true }, (socket) => {
    socket.on('error', ignore);
    socket.pipe(socket);
  });
  return listenOn(server, HOST);
}

await serve('tls-server.ts', 'tls', HOST, {
  corral: () => startCorral(false),
  'corral-hello': () => startCorral(true),
  raw: startRaw,
});
