/**
 * A key-value store spoken over lines of text: a custom protocol on a Corral listener.
 *
 *   pnpm example line-protocol --port 6380
 *   printf 'SET greeting hello\nGET greeting\nQUIT\n' | nc 127.0.0.1 6380
 */

import { startListener, tcp } from '@corral/listener';
import { urlOf, type ExampleOptions, type RunningExample } from '../example.js';
import * as kv from './kv.js';

export async function start({ port, host }: ExampleOptions): Promise<RunningExample> {
  const listener = await startListener(
    'line-protocol',
    tcp,
    { socketOpts: { port, host }, maxConnections: 10_000, shutdown: 2000 },
    kv,
    { store: new Map<string, string>(), maxLineLength: 4096 },
  );
  return {
    url: urlOf('tcp', host, listener.getPort()),
    stop: () => listener.stop(),
  };
}
