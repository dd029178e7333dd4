/**
 * A chat room over WebSocket, with its page: open the URL in a browser (http:// in place of
 * ws://), in two tabs, and talk.
 *
 *   pnpm example ws-chat --port 8080
 *   open http://127.0.0.1:8080/?name=alice
 *
 * One listener serves both: upgrade requests to `/` become chat sessions (room.ts), and the
 * protocol's `http` option answers the plain requests: the page at `/`, `ok` at `/healthz`, 404
 * elsewhere. A nickname comes from the query string (`ws://host:port/?name=alice`), a `guest-N`
 * without one; a malformed name is refused with 400, a taken one with 409. Messages over 4 KiB
 * close the connection with 1009. On Ctrl-C or SIGTERM every member is closed with 1001.
 */

import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { startListener, tcp } from '@corral/listener';
import { websocketProtocol } from '@corral/websocket';
import { urlOf, type ExampleOptions, type RunningExample } from '../example.js';
import { MAX_MESSAGE_BYTES, Room, chatHandler } from './room.js';

/** The chat page: HTML, CSS and script in one file, nothing loaded from elsewhere. */
const page = readFileSync(new URL('./page.html', import.meta.url));

/** The plain HTTP side of the listener: everything that is not an upgrade comes here. */
export function serveHttp(req: IncomingMessage, res: ServerResponse): void {
  const path = new URL(req.url ?? '/', 'http://localhost').pathname;
  if (path !== '/' && path !== '/healthz') {
    res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' }).end('not found\n');
    return;
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { Allow: 'GET, HEAD', 'Content-Type': 'text/plain; charset=utf-8' }).end('method not allowed\n');
    return;
  }
  if (path === '/healthz') {
    res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8', 'Cache-Control': 'no-store' }).end('ok\n');
    return;
  }
  res.writeHead(200, {
    'Content-Type': 'text/html; charset=utf-8',
    'Content-Length': page.length,
    'Cache-Control': 'no-cache',
    'X-Content-Type-Options': 'nosniff',
  });
  res.end(req.method === 'HEAD' ? undefined : page);
}

/**
 * Browsers send `Origin` with every WebSocket upgrade, and any page may open one to any host: only
 * pages served from this host may join. Clients that are not browsers send no `Origin`.
 */
export function sameOrigin(origin: string | undefined, host: string | undefined): boolean {
  if (origin === undefined) return true;
  try {
    return new URL(origin).host === host;
  } catch {
    return false;
  }
}

export async function start({ port, host }: ExampleOptions): Promise<RunningExample> {
  const room = new Room();
  const listener = await startListener(
    'ws-chat',
    tcp,
    { socketOpts: { port, host }, maxConnections: 10_000 },
    websocketProtocol(chatHandler, {
      handlerOpts: room,
      http: serveHttp,
      origins: (origin, req) => sameOrigin(origin, req.headers.host),
      // A ping every 30 s keeps an idle browser tab within the 60 s idle timeout.
      session: { maxMessageSize: MAX_MESSAGE_BYTES, pingInterval: 30_000 },
    }),
    undefined,
  );
  return {
    url: urlOf('ws', host, listener.getPort()),
    stop: () => listener.stop(),
  };
}
