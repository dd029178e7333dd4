/**
 * HAProxy in front of a backend, for interop tests: a `mode tcp` frontend on a free loopback
 * port, one server that gets a PROXY header (v1 or v2). The configuration is written to a
 * temporary directory and HAProxy runs in the foreground (`-db`), needing no system directory.
 */

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, waitUntilServing } from './ports.js';
import { requirePeer, spawnPeer, type PeerProcess } from './process.js';

export interface HaproxyOptions {
  /** Where the server line points. */
  backend: { host: string; port: number };
  /** `send-proxy` (v1) or `send-proxy-v2`. */
  sendProxy: 'v1' | 'v2';
  /** `proxy-v2-options` of the server line, e.g. `['crc32c', 'authority']`. */
  proxyV2Options?: readonly string[];
  /**
   * Terminate TLS on the frontend with this PEM (certificate and key), offering these ALPN ids;
   * `extraBind` adds bind keywords (client certificate verification, for instance).
   */
  tls?: { pem: string; alpn?: readonly string[]; extraBind?: readonly string[] };
  /** The frontend's `unique-id-format` (log-format syntax). */
  uniqueIdFormat?: string;
  /** Health-check the server every `interMs`, sending the PROXY header on checks too. */
  check?: { interMs: number };
}

export interface Haproxy {
  /** The frontend's port on 127.0.0.1. */
  readonly port: number;
  readonly process: PeerProcess;
  /** The generated configuration, for failure messages. */
  readonly config: string;
  /** Stop HAProxy (SIGTERM, then SIGKILL) and remove its directory. */
  stop(): Promise<void>;
}

const HOST = '127.0.0.1';

function render(o: HaproxyOptions, port: number, readyPort: number): string {
  const bind = [`${HOST}:${port}`];
  if (o.tls !== undefined) {
    bind.push('ssl', 'crt', o.tls.pem);
    if (o.tls.alpn !== undefined) bind.push('alpn', o.tls.alpn.join(','));
    if (o.tls.extraBind !== undefined) bind.push(...o.tls.extraBind);
  }
  const server = ['s1', `${o.backend.host}:${o.backend.port}`, o.sendProxy === 'v1' ? 'send-proxy' : 'send-proxy-v2'];
  if (o.proxyV2Options !== undefined && o.proxyV2Options.length > 0) server.push('proxy-v2-options', o.proxyV2Options.join(','));
  if (o.check !== undefined) server.push('check', 'check-send-proxy', 'inter', `${o.check.interMs}`, 'rise', '1', 'fall', '3');
  return [
    'global',
    '  maxconn 256',
    '  nbthread 1',
    '',
    'defaults',
    '  mode tcp',
    '  timeout connect 5s',
    '  timeout client 60s',
    '  timeout server 60s',
    '',
    'frontend fe',
    `  bind ${bind.join(' ')}`,
    ...(o.uniqueIdFormat !== undefined ? [`  unique-id-format ${o.uniqueIdFormat}`] : []),
    '  default_backend be',
    '',
    'backend be',
    `  server ${server.join(' ')}`,
    '',
    '# Answers readiness probes by closing them, so that no probe reaches the backend.',
    'frontend ready',
    `  bind ${HOST}:${readyPort}`,
    '  tcp-request connection reject',
    '',
  ].join('\n');
}

/** Start HAProxy and resolve once its frontend accepts connections. */
export async function startHaproxy(opts: HaproxyOptions): Promise<Haproxy> {
  const binary = requirePeer('haproxy');
  const dir = await mkdtemp(join(tmpdir(), 'corral-haproxy-'));
  let proc: PeerProcess | undefined;
  try {
    const port = await freePort(HOST);
    const readyPort = await freePort(HOST);
    const config = render(opts, port, readyPort);
    const file = join(dir, 'haproxy.cfg');
    await writeFile(file, config);
    proc = await spawnPeer('haproxy', binary, ['-f', file, '-db'], { cwd: dir });
    await waitUntilServing(proc, HOST, readyPort).catch((err: Error) => {
      throw new Error(`${err.message}\nconfiguration:\n${config}`);
    });
    const started = proc;
    return {
      port,
      process: started,
      config,
      async stop() {
        await started.stop();
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await proc?.stop();
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}
