/**
 * Two host names on one TLS port, each with its own certificate. The handshake pauses after the
 * client's hello; the protocol reads the name the client asked for (SNI), then finishes the
 * handshake with that name's certificate, or refuses it with an `unrecognized_name` alert.
 * Each connection is greeted with `hello from <name>`, then echoed.
 *
 *   pnpm example tls-sni --port 8443
 *   openssl s_client -servername a.test -CAfile examples/tls-sni/certs/ca.crt -connect 127.0.0.1:8443
 *
 * The certificates in certs/ are test-only: signed by a test CA whose key is public.
 */

import { readFileSync } from 'node:fs';
import * as nodeTls from 'node:tls';
import { startListener, tls, type ConnectionOf } from '@corral/listener';
import { urlOf, type ExampleOptions, type RunningExample } from '../example.js';

export interface SniOptions {
  /** Secure contexts by lower-case host name, each made once. */
  hosts: ReadonlyMap<string, nodeTls.SecureContext>;
}

const certs = new URL('./certs/', import.meta.url);

/** A secure context for `name` from certs/<name>.crt and certs/<name>.key. */
function contextFor(name: string): nodeTls.SecureContext {
  return nodeTls.createSecureContext({
    cert: readFileSync(new URL(`${name}.crt`, certs)),
    key: readFileSync(new URL(`${name}.key`, certs)),
    minVersion: 'TLSv1.2',
  });
}

/** The host names served, and their contexts: made once, shared by every connection. */
export function loadHosts(names: readonly string[] = ['a.test', 'b.test']): Map<string, nodeTls.SecureContext> {
  return new Map(names.map((name) => [name, contextFor(name)]));
}

/**
 * The protocol: choose the certificate by SNI, greet, echo until the client or the listener ends
 * the connection.
 */
export async function sniGreeter(conn: ConnectionOf<typeof tls>, _transport: typeof tls, opts: SniOptions): Promise<void> {
  const result = await conn.handshake();
  // With `handshake: 'hello'` the transport always pauses; this is only a guard.
  if (!('continue' in result)) throw new Error('expected a paused TLS handshake');

  // DNS names compare case-insensitively, and a trailing dot names the same host.
  const name = result.continue.serverName?.toLowerCase().replace(/\.$/, '');
  const secureContext = name === undefined ? undefined : opts.hosts.get(name);
  if (name === undefined || secureContext === undefined) {
    await conn.handshakeCancel({ alert: 'unrecognized_name' });
    return;
  }

  const socket = await conn.handshakeContinue({ secureContext });
  socket.write(`hello from ${name}\n`);
  socket.pipe(socket);
  // When the listener stops, end the connection rather than wait to be cut off.
  if (conn.signal.aborted) socket.end();
  else conn.signal.addEventListener('abort', () => socket.end(), { once: true });
  // An error (a reset) also ends in 'close': the connection is over either way.
  await new Promise((resolve) => socket.once('close', resolve));
}

export async function start({ port, host }: ExampleOptions): Promise<RunningExample> {
  const listener = await startListener(
    'tls-sni',
    tls,
    // No certificate here: each connection gets its own in handshakeContinue.
    { socketOpts: { port, host, handshake: 'hello' } },
    sniGreeter,
    { hosts: loadHosts() },
  );
  return {
    url: urlOf('tls', host, listener.getPort()),
    stop: () => listener.stop(),
  };
}
