/**
 * The load generator's side of a benchmark server run as a child process (see server-child.ts
 * for the other side): start it, learn its port from its first line, ask it for its CPU time over
 * IPC, stop it. Every child still running is killed when this process exits, whatever the cause.
 */

import { execFileSync, fork, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { UsageError } from './cli.js';
import type { UsageMessage } from './server-child.js';

const SERVER_START_TIMEOUT_MS = 20_000;
const SERVER_STOP_TIMEOUT_MS = 5_000;

/** Every child still running, killed on any exit of this process. */
const liveChildren = new Set<ChildProcess>();
let exitHookInstalled = false;

/** Kill the servers when this process exits; turn SIGINT, SIGTERM and SIGHUP into such an exit. */
export function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of liveChildren) child.kill('SIGKILL');
  });
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      process.stderr.write(`\n${signal}: stopping the servers\n`);
      process.exit(130);
    });
  }
}

/**
 * Run `body` with the exit hook installed, bounded in time: past `timeoutS`, give up and exit 1
 * (the exit hook kills the child processes).
 */
export async function runBounded<T>(name: string, timeoutS: number, body: () => Promise<T>): Promise<T> {
  installExitHook();
  const deadline = setTimeout(() => {
    process.stderr.write(`${name}: aborted after ${timeoutS} s\n`);
    process.exit(1);
  }, timeoutS * 1000);
  try {
    return await body();
  } finally {
    clearTimeout(deadline);
  }
}

/** User plus system time, in microseconds. */
export function cpuMicros(u: NodeJS.CpuUsage): number {
  return u.user + u.system;
}

export interface ServerProcessOptions {
  /** Run the server under `node --cpu-prof`, writing its profiles to `<cpuProf>/<kind>/`. */
  cpuProf: string | undefined;
  /** The sampling interval of `--cpu-prof`, in microseconds. */
  cpuProfIntervalUs: number;
  /** More `node` flags, e.g. `--expose-gc` for memory figures taken after a full collection. */
  execArgv?: readonly string[];
  /** Raise the open-file limit (`ulimit -n`) of the child to this many descriptors. */
  fdLimit?: number | undefined;
}

/** This process's open-file limits (`ulimit -Sn`, `ulimit -Hn`), which children inherit. */
export function fileLimits(): { soft: number; hard: number } {
  const [soft = '', hard = ''] = execFileSync('sh', ['-c', 'ulimit -Sn; ulimit -Hn'], { encoding: 'utf8' }).trim().split('\n');
  const parse = (s: string): number => (s.trim() === 'unlimited' ? Infinity : Number(s));
  return { soft: parse(soft), hard: parse(hard) };
}

/** Descriptors a process needs beside its connections. */
const FD_MARGIN = 256;

/** The descriptors a process holding `connections` sockets needs, and the `ulimit -n` to ask for if the current one is short. */
export function fdLimitFor(connections: number): number | undefined {
  const need = connections + FD_MARGIN;
  const { soft, hard } = fileLimits();
  if (soft >= need) return undefined;
  // Above the hard limit only a privileged process may go: ask the shell whether this one can.
  if (hard < need && spawnSync('sh', ['-c', `ulimit -n ${need}`], { stdio: 'ignore' }).status !== 0) {
    throw new UsageError(`${connections} connections need ${need} descriptors per process; ulimit -Hn is ${hard}: lower --idle or raise the hard limit`);
  }
  return need;
}

export interface SpawnNodeOptions {
  /** `node` flags; `--import tsx` is always added. */
  execArgv?: readonly string[];
  /** Raise the child's open-file limit to this many descriptors (through `sh -c 'ulimit -n N; exec node ...'`). */
  fdLimit?: number | undefined;
  stdio: 'ignore' | 'pipe' | 'inherit';
}

/**
 * Run `node --import tsx <script> <args>` with an IPC channel (stdin ignored, stderr inherited).
 * The child is killed when this process exits (see {@link installExitHook}).
 */
export function spawnNode(script: string, args: readonly string[], o: SpawnNodeOptions): ChildProcess {
  installExitHook();
  const execArgv = ['--import', import.meta.resolve('tsx'), ...(o.execArgv ?? [])];
  const stdio = ['ignore', o.stdio, 'inherit', 'ipc'] as const;
  const child = o.fdLimit === undefined
    ? fork(script, [...args], { execArgv, stdio: [...stdio] })
    // The IPC channel is an inherited descriptor, which survives the shell's exec.
    : spawn('sh', ['-c', 'ulimit -n "$1" && shift && exec "$@"', 'sh', String(o.fdLimit), process.execPath, ...execArgv, script, ...args], { stdio: [...stdio] });
  liveChildren.add(child);
  child.once('exit', () => liveChildren.delete(child));
  return child;
}

/** Ask `child` to stop with `ask` (unless it has exited), and SIGKILL it if it has not exited within `timeoutMs`. */
export async function stopChild(child: ChildProcess, exited: Promise<void>, timeoutMs: number, ask: () => void): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  ask();
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((resolve) => {
    timer = setTimeout(() => resolve('late'), timeoutMs);
  });
  const outcome = await Promise.race([exited, late]);
  clearTimeout(timer);
  if (outcome === 'late') {
    child.kill('SIGKILL');
    await exited;
  }
}

/** One server, run as `node --import tsx <script> <kind>`. */
export class ServerProcess<K extends string = string> {
  readonly kind: K;
  readonly port: number;
  #child: ChildProcess;
  #pending: ((m: UsageMessage) => void) | undefined;
  #exited: Promise<void>;
  /** The usage the server reported as it stopped. */
  finalUsage: UsageMessage | undefined;

  private constructor(kind: K, port: number, child: ChildProcess, exited: Promise<void>) {
    this.kind = kind;
    this.port = port;
    this.#child = child;
    this.#exited = exited;
    child.on('message', (m: UsageMessage) => {
      if (m?.type !== 'usage') return;
      if (m.final) this.finalUsage = m;
      const pending = this.#pending;
      this.#pending = undefined;
      pending?.(m);
    });
  }

  /** Start `script kind` and resolve once it printed `listening <scheme>://<host>:<port>`. */
  static async start<K extends string>(script: string, kind: K, o: ServerProcessOptions): Promise<ServerProcess<K>> {
    const execArgv = [...(o.execArgv ?? [])];
    if (o.cpuProf !== undefined) {
      // One directory per server: every thread (the module loader's too) writes its own profile.
      execArgv.unshift('--cpu-prof', '--cpu-prof-dir', join(o.cpuProf, kind), '--cpu-prof-interval', String(o.cpuProfIntervalUs));
    }
    const child = spawnNode(script, [kind], { execArgv, fdLimit: o.fdLimit, stdio: 'pipe' });
    const exited = new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve();
      else child.once('exit', () => resolve());
    });
    try {
      const port = await new Promise<number>((resolve, reject) => {
        let out = '';
        const timer = setTimeout(() => reject(new Error(`${kind} server: no port within ${SERVER_START_TIMEOUT_MS} ms`)), SERVER_START_TIMEOUT_MS);
        const onData = (chunk: Buffer): void => {
          out += chunk.toString('utf8');
          const newline = out.indexOf('\n');
          if (newline === -1) return;
          const match = /^listening [a-z]+:\/\/[^:]+:(\d+)$/.exec(out.slice(0, newline).trim());
          cleanup();
          if (match === null) reject(new Error(`${kind} server: unexpected first line ${JSON.stringify(out.slice(0, newline))}`));
          else resolve(Number(match[1]));
        };
        const onExit = (code: number | null, signal: string | null): void => {
          cleanup();
          reject(new Error(`${kind} server exited before listening (code ${code}, signal ${signal})`));
        };
        const cleanup = (): void => {
          clearTimeout(timer);
          child.stdout?.off('data', onData);
          child.off('exit', onExit);
          // Keep draining stdout so the child can never block on it.
          child.stdout?.resume();
        };
        child.stdout?.on('data', onData);
        child.once('exit', onExit);
      });
      return new ServerProcess(kind, port, child, exited);
    } catch (err) {
      child.kill('SIGKILL');
      throw err;
    }
  }

  /** The server's process id (for tools that attach to it, such as `perf stat -p`). */
  get pid(): number | undefined {
    return this.#child.pid;
  }

  /** The server's CPU and resource usage now; with `memory`, its memory usage too (see server-child.ts). */
  usage(what: { memory?: boolean } = {}): Promise<UsageMessage> {
    if (this.#pending !== undefined) return Promise.reject(new Error('a usage request is already pending'));
    return new Promise((resolve, reject) => {
      const onExit = (): void => reject(new Error(`${this.kind} server exited`));
      this.#child.once('exit', onExit);
      this.#pending = (m) => {
        this.#child.off('exit', onExit);
        resolve(m);
      };
      this.#child.send(what.memory === true ? { type: 'usage', memory: true } : { type: 'usage' });
    });
  }

  /** SIGTERM, then SIGKILL if the server has not exited in time. */
  stop(): Promise<void> {
    return stopChild(this.#child, this.#exited, SERVER_STOP_TIMEOUT_MS, () => this.#child.kill('SIGTERM'));
  }

  kill(): void {
    this.#child.kill('SIGKILL');
  }
}

/** The memory figures of a usage report asked for with `{ memory: true }`. */
export function memoryOf(u: UsageMessage): NodeJS.MemoryUsage {
  if (u.memory === undefined) throw new Error('the server sent no memory figures');
  return u.memory;
}
