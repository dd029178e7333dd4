/**
 * A peer server (HAProxy, nginx) run in the foreground as a child process: its output is kept
 * for error messages, and it is stopped by pid, politely first.
 */

import { spawn, type ChildProcess } from 'node:child_process';
import { checkPeers, installCommand } from './ensure.mjs';

/** How a process ended. */
export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Set when the process could not be started at all. */
  error?: Error;
  /** For messages: `code 1`, `signal SIGTERM`, or the spawn error. */
  describe: string;
}

export interface PeerProcess {
  readonly name: string;
  readonly pid: number;
  /** Everything the process wrote so far (stdout and stderr interleaved, the last 64 KiB). */
  output(): string;
  /** Resolves (never rejects) when the process has exited. */
  readonly exited: Promise<ExitStatus>;
  /** Whether it has exited. */
  readonly running: boolean;
  /**
   * SIGTERM, wait for the exit; SIGKILL if it has not exited within `graceMs`.
   * Resolves once the process is gone.
   */
  stop(graceMs?: number): Promise<ExitStatus>;
}

const OUTPUT_LIMIT = 64 * 1024;
const live = new Set<ChildProcess>();
let exitHookInstalled = false;

/** Should the test process go away with peers still running, take them along. */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of live) {
      try {
        child.kill('SIGKILL');
      } catch {
        // Already gone.
      }
    }
  });
}

/** Path of a peer binary, or an error that says how to install it (the test then fails, it is not skipped). */
export function requirePeer(what: 'haproxy' | 'nginx' | 'openssl'): string {
  const found = checkPeers();
  const file = found[what];
  if (file !== undefined && !(what === 'nginx' && found.streamModule === undefined)) return file;
  throw new Error(
    `${what === 'nginx' && file !== undefined ? 'the nginx stream module' : what} is not installed, and the interop tests need it. ` +
      `Run \`node test/peers/ensure.mjs\` (as root it installs what is missing), or: ${installCommand(found.packages)}`,
  );
}

/** Start `file args` with its output captured. Resolves once the process has been spawned. */
export async function spawnPeer(name: string, file: string, args: readonly string[], opts: { cwd?: string } = {}): Promise<PeerProcess> {
  installExitHook();
  const child = spawn(file, args, { cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const collect = (chunk: Buffer): void => {
    output += chunk.toString('utf8');
    if (output.length > OUTPUT_LIMIT) output = output.slice(-OUTPUT_LIMIT);
  };
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);

  let running = true;
  const exited = new Promise<ExitStatus>((resolve) => {
    child.once('error', (error) => {
      // A spawn failure ('exit' does not follow), or a failed kill (the process may still run).
      if (child.pid === undefined) {
        running = false;
        resolve({ code: null, signal: null, error, describe: error.message });
      }
    });
    child.once('exit', (code, signal) => {
      running = false;
      live.delete(child);
      resolve({ code, signal, describe: signal !== null ? `signal ${signal}` : `code ${String(code)}` });
    });
  });
  await new Promise<void>((resolve) => {
    child.once('spawn', () => resolve());
    void exited.then(() => resolve());
  });
  if (child.pid === undefined) {
    const status = await exited;
    throw new Error(`could not start ${name} (${file}): ${status.describe}`);
  }
  live.add(child);
  const pid = child.pid;

  return {
    name,
    pid,
    output: () => output,
    exited,
    get running() {
      return running;
    },
    async stop(graceMs = 5000): Promise<ExitStatus> {
      if (!running) return exited;
      // Through the child handle: once the process has been reaped it signals nothing, so a reused pid is never hit.
      child.kill('SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<'late'>((resolve) => {
        timer = setTimeout(() => resolve('late'), graceMs);
      });
      const first = await Promise.race([exited, late]);
      clearTimeout(timer);
      if (first === 'late') child.kill('SIGKILL');
      return exited;
    },
  };
}
