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

function notInstalled(what: string, packages: readonly string[]): Error {
  return new Error(
    `${what} is not installed, and the interop tests need it. ` +
      `Run \`node test/peers/ensure.mjs\` (as root it installs what is missing), or: ${installCommand(packages)}`,
  );
}

/** Path of a peer binary, or an error that says how to install it (the test then fails, it is not skipped). */
export function requirePeer(what: 'haproxy' | 'nginx' | 'openssl' | 'chromium'): string {
  const found = checkPeers();
  const file = found[what];
  if (file !== undefined && !(what === 'nginx' && found.streamModule === undefined)) return file;
  throw notInstalled(what === 'nginx' && file !== undefined ? 'the nginx stream module' : what, found.packages);
}

/** A Python 3 that can `import websockets`, and the library's version; or an error that says how to install it. */
export function requirePython(): { python: string; version: string } {
  const found = checkPeers();
  if (found.python !== undefined) return found.python;
  throw notInstalled("Python's websockets library (python3-websockets)", found.packages);
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

/** How a process that ran to completion ended, and what it wrote. */
export interface RunResult extends ExitStatus {
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  cwd?: string;
  /** Added to this process's environment. */
  env?: Record<string, string>;
  /** Kill it (SIGKILL) if it has not exited within this many milliseconds (default 60000). */
  timeoutMs?: number;
}

/**
 * Run a client program to completion with stdout and stderr kept apart; resolves (never rejects)
 * once it has exited, killed if it outlives `timeoutMs`. A process the test leaves running is
 * killed when the test process exits.
 */
export async function runPeer(name: string, file: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  installExitHook();
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const child = spawn(file, args, {
    cwd: opts.cwd,
    env: opts.env === undefined ? process.env : { ...process.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (child.pid !== undefined) live.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
  });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    stderr = (stderr + chunk).slice(-OUTPUT_LIMIT);
  });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, timeoutMs);
  const status = await new Promise<ExitStatus>((resolve) => {
    child.once('error', (error) => {
      if (child.pid === undefined) resolve({ code: null, signal: null, error, describe: `could not start ${name} (${file}): ${error.message}` });
    });
    // 'close' rather than 'exit': all of its output has been read by then.
    child.once('close', (code, signal) => {
      resolve({
        code,
        signal,
        describe: timedOut ? `killed after ${timeoutMs} ms` : signal !== null ? `signal ${signal}` : `code ${String(code)}`,
      });
    });
  });
  clearTimeout(timer);
  live.delete(child);
  return { ...status, stdout, stderr };
}
