/**
 * A WebSocket echo server: every text and binary message a client sends comes back as it came.
 * The handler is the whole program; `websocketProtocol` runs it on a Corral listener.
 *
 *   pnpm example ws-echo --port 8080
 *   node -e "const ws = new WebSocket('ws://127.0.0.1:8080'); ws.onopen = () => ws.send('hi'); ws.onmessage = (m) => { console.log(m.data); ws.close(); }"
 *
 * (Node 22 and newer have `WebSocket` built in.)
 *
 * On Ctrl-C or SIGTERM the listener stops, and every session closes its connection with 1001
 * (going away), waiting for the client's close frame before it goes.
 */

import { startListener, tcp } from '@corral/listener';
import { websocketProtocol, type WebSocketHandler } from '@corral/websocket';
import { urlOf, type ExampleOptions, type RunningExample } from '../example.js';

/**
 * The handler: reply to each message with itself. Pings are answered by the session before the
 * handler hears of them; pings and pongs get no reply here. Returning nothing carries on.
 */
export const echoHandler: WebSocketHandler<undefined> = {
  websocketHandle(frame) {
    if (frame.type === 'text' || frame.type === 'binary') return { reply: frame };
    return undefined;
  },
};

export async function start({ port, host }: ExampleOptions): Promise<RunningExample> {
  const listener = await startListener(
    'ws-echo',
    tcp,
    { socketOpts: { port, host }, maxConnections: 10_000 },
    websocketProtocol(echoHandler),
    undefined,
  );
  return {
    url: urlOf('ws', host, listener.getPort()),
    stop: () => listener.stop(),
  };
}
