/**
 * One WebSocket echo server of the ws-echo bench, run as a child process so its CPU time and its
 * memory are its own:
 *
 *   node --import tsx bench/lib/ws-echo-server.ts corral|ws
 *
 * - `corral`: a Corral listener on the TCP transport speaking WebSocket,
 *   `startListener(..., tcp, { socketOpts: { port: 0, host }, maxConnections: Infinity }, websocketProtocol(echo))`,
 *   whose handler replies to every text or binary message with the same frame. Every other
 *   option is at its default (session idle timeout 60 s, 16 MiB frames, UTF-8 validation on);
 *   `maxConnections` is lifted from its default of 1024 for the 10,000 idle connections.
 * - `ws`: the peer, `new WebSocketServer({ port: 0, host, perMessageDeflate: false })` from the
 *   `ws` package, with `bufferutil` and `utf-8-validate` installed, echoing every message with
 *   `ws.send(data, { binary: isBinary })`; an `'error'` listener on each client, as Corral handles
 *   socket errors itself.
 *
 * With `WS_ECHO_CORRAL_DIR` set (see corral-build.ts), `corral` loads Corral compiled to
 * JavaScript from that directory instead of the workspace's TypeScript sources. With
 * `WS_ECHO_COMPRESS` set to JSON `{ "corral": ..., "ws": ... }` (bench/ws-deflate.ts), each server
 * compresses: the value is corral's `compress` option and ws's `perMessageDeflate` (off when absent).
 *
 * Both listen on 127.0.0.1, port 0, and print `listening ws://127.0.0.1:<port>` first;
 * server-child.ts answers the load generator over IPC (CPU time, and memory after a full garbage
 * collection when run with `--expose-gc`) and handles SIGTERM.
 */

import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { CompressOptions, WebSocketHandler } from '@corral/websocket';
import { serve, type RunningServer } from './server-child.js';

export type WsServerKind = 'corral' | 'ws';

const HOST = '127.0.0.1';

/** The echo handler: the same frame back, for text and binary messages (pings are answered by the session). */
const echo: WebSocketHandler<undefined> = {
  websocketHandle(frame) {
    if (frame.type === 'text' || frame.type === 'binary') return { reply: frame };
    return undefined;
  },
};

function ignore(): void {}

/** This server's permessage-deflate setting from `WS_ECHO_COMPRESS`; undefined when off. */
function compressionOf(kind: WsServerKind): unknown {
  const env = process.env.WS_ECHO_COMPRESS;
  return env ? (JSON.parse(env) as Partial<Record<WsServerKind, unknown>>)[kind] : undefined;
}

type ListenerModule = typeof import('@corral/listener');
type WebSocketModule = typeof import('@corral/websocket');

async function startCorral(): Promise<RunningServer> {
  // Loaded here so the ws server never loads Corral at all.
  const built = process.env.WS_ECHO_CORRAL_DIR;
  const from = (pkg: string): string => pathToFileURL(join(built!, 'packages', pkg, 'src', 'index.js')).href;
  const { startListener, tcp } = (built ? await import(from('listener')) : await import('@corral/listener')) as ListenerModule;
  const { websocketProtocol } = (built ? await import(from('websocket')) : await import('@corral/websocket')) as WebSocketModule;
  const listener = await startListener(
    'bench-ws-echo',
    tcp,
    { socketOpts: { port: 0, host: HOST }, maxConnections: Infinity },
    websocketProtocol(echo, { compress: compressionOf('corral') as CompressOptions['compress'] }),
    undefined,
  );
  const port = listener.getPort();
  if (port === undefined) throw new Error('the listener has no port');
  return { port, stop: () => listener.stop() };
}

async function startWs(): Promise<RunningServer> {
  const { WebSocketServer } = await import('ws');
  const wss = new WebSocketServer({ port: 0, host: HOST, perMessageDeflate: (compressionOf('ws') ?? false) as boolean | object });
  await new Promise<void>((resolve, reject) => {
    wss.once('error', reject);
    wss.once('listening', () => {
      wss.off('error', reject);
      resolve();
    });
  });
  wss.on('connection', (ws) => {
    ws.on('error', ignore);
    ws.on('message', (data, isBinary) => ws.send(data as Buffer, { binary: isBinary }));
  });
  const { port } = wss.address() as AddressInfo;
  return {
    port,
    stop: () => new Promise<void>((resolve) => {
      for (const ws of wss.clients) ws.terminate();
      wss.close(() => resolve());
    }),
  };
}

await serve('ws-echo-server.ts', 'ws', HOST, { corral: startCorral, ws: startWs });
