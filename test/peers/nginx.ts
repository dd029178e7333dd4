/**
 * nginx's stream proxy in front of a backend, for interop tests: `proxy_protocol on` (nginx sends
 * a v1 header). The configuration, pid file and logs live in a temporary directory; nginx runs in
 * the foreground as a single process (`daemon off`, `master_process off`), so its pid is all
 * there is to stop.
 */

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findStreamModule } from './ensure.mjs';
import { freePort, waitUntilServing } from './ports.js';
import { requirePeer, spawnPeer, type PeerProcess } from './process.js';

export interface NginxOptions {
  /** Where `proxy_pass` points. */
  backend: { host: string; port: number };
}

export interface Nginx {
  /** The stream server's port on 127.0.0.1. */
  readonly port: number;
  readonly process: PeerProcess;
  readonly config: string;
  /** Stop nginx (SIGTERM, then SIGKILL) and remove its directory. */
  stop(): Promise<void>;
}

const HOST = '127.0.0.1';

/** Start nginx and resolve once it accepts connections. */
export async function startNginx(opts: NginxOptions): Promise<Nginx> {
  const binary = requirePeer('nginx'); // also requires the stream module
  const module = findStreamModule(binary);
  const dir = await mkdtemp(join(tmpdir(), 'corral-nginx-'));
  let proc: PeerProcess | undefined;
  try {
    const port = await freePort(HOST);
    const readyPort = await freePort(HOST);
    const config = [
      ...(module !== undefined && 'path' in module ? [`load_module ${module.path};`] : []),
      'master_process off;',
      `pid ${join(dir, 'nginx.pid')};`,
      'error_log stderr notice;',
      'events { worker_connections 256; }',
      'stream {',
      '  server {',
      `    listen ${HOST}:${port};`,
      `    proxy_pass ${opts.backend.host}:${opts.backend.port};`,
      '    proxy_protocol on;',
      '  }',
      '  # Answers readiness probes itself, so that no probe reaches the backend.',
      '  server {',
      `    listen ${HOST}:${readyPort};`,
      '    return "ready\\n";',
      '  }',
      '}',
      '',
    ].join('\n');
    const file = join(dir, 'nginx.conf');
    await writeFile(file, config);
    // -p: relative paths resolve inside dir; -e: no attempt at the system error log before the config is read.
    proc = await spawnPeer('nginx', binary, ['-p', dir, '-e', 'stderr', '-c', file, '-g', 'daemon off;'], { cwd: dir });
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
