/**
 * Instructions retired by another process over an interval, counted by the CPU and read with
 * `perf stat -p PID` (Linux). On a shared machine CPU time per operation moves with whatever
 * else runs (cache misses, frequency, a hypervisor's steal); the number of instructions a server
 * executes for the same work barely does, so it compares two implementations of the same job more
 * steadily, though not their speed on memory-bound work.
 */

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';

/** User-space and kernel instructions. */
export interface InstructionCounts {
  user: number;
  kernel: number;
}

const EVENTS = 'instructions:u,instructions:k';
/** `perf stat` prints nothing once attached: give it this long before the interval starts. */
const ATTACH_MS = 300;
const STOP_TIMEOUT_MS = 5_000;

const live = new Set<ChildProcess>();
let hooked = false;

/** Whether `perf stat` can count instructions here (installed, allowed, hardware counters exposed). */
export function perfAvailable(): boolean {
  const r = spawnSync('perf', ['stat', '-x', ',', '-e', EVENTS, '--', 'true'], { encoding: 'utf8', stdio: ['ignore', 'ignore', 'pipe'] });
  if (r.error !== undefined || r.status !== 0) return false;
  try {
    parse(r.stderr);
    return true;
  } catch {
    return false;
  }
}

function parse(text: string): InstructionCounts {
  const counts: InstructionCounts = { user: NaN, kernel: NaN };
  for (const line of text.split('\n')) {
    const [value = '', , event = ''] = line.split(',');
    const n = Number(value);
    if (event.startsWith('instructions:u')) counts.user = n;
    else if (event.startsWith('instructions:k')) counts.kernel = n;
  }
  if (!Number.isFinite(counts.user) || !Number.isFinite(counts.kernel)) throw new Error(`perf stat: no instruction counts in ${JSON.stringify(text.trim())}`);
  return counts;
}

/** One `perf stat -p` attached to a process until {@link PerfCounter.stop}. */
export class PerfCounter {
  #child: ChildProcess;
  #stderr = '';
  #exited: Promise<void>;

  private constructor(child: ChildProcess) {
    this.#child = child;
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (s: string) => {
      this.#stderr += s;
    });
    this.#exited = new Promise((resolve) => child.once('exit', () => resolve()));
  }

  /** Attach to `pid` and resolve once counting has (very probably) begun. */
  static async attach(pid: number): Promise<PerfCounter> {
    if (!hooked) {
      hooked = true;
      process.on('exit', () => {
        for (const c of live) c.kill('SIGKILL');
      });
    }
    const child = spawn('perf', ['stat', '-x', ',', '-e', EVENTS, '-p', String(pid)], { stdio: ['ignore', 'ignore', 'pipe'] });
    live.add(child);
    child.once('exit', () => live.delete(child));
    const counter = new PerfCounter(child);
    await new Promise((resolve) => setTimeout(resolve, ATTACH_MS));
    if (child.exitCode !== null) throw new Error(`perf stat exited: ${counter.#stderr.trim()}`);
    return counter;
  }

  /** Stop counting (SIGINT makes `perf stat` print its totals) and return them. */
  async stop(): Promise<InstructionCounts> {
    this.#child.kill('SIGINT');
    const timer = setTimeout(() => this.#child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await this.#exited;
    clearTimeout(timer);
    return parse(this.#stderr);
  }
}
