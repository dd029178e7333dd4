/**
 * One server of the acceptors bench, run as a child process:
 *
 *   node --import tsx bench/lib/acceptor-server.ts tcp-1|tcp-2|tls-1|tls-2
 *
 * A Corral listener on the `tcp` or `tls` transport (the `localhost` test certificate), every
 * option at its default but `numAcceptors`, the number after the dash: 1 accepts in this process,
 * 2 in two acceptor worker processes. The protocol is bench/lib/echo-protocol.ts (echo, named by
 * module specifier so the workers can import it).
 *
 * It speaks the protocol of server-child.ts (first line `listening <scheme>://<host>:<port>`,
 * `{ type: 'usage' }` answered over IPC, SIGTERM stops it), except that the CPU time it reports
 * is its own plus its worker processes' (read from /proc: Linux only, 10 ms resolution).
 */

import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { UsageMessage } from './server-child.js';

export type AcceptorServerKind = 'tcp-1' | 'tcp-2' | 'tls-1' | 'tls-2';

/** The usage message, with the connections each worker has accepted so far (none with one acceptor). */
export interface AcceptorUsage extends UsageMessage {
  accepted: number[];
}

const HOST = '127.0.0.1';
const PROTOCOL = new URL('./echo-protocol.ts', import.meta.url);
const fixtures = new URL('../../packages/listener/test/fixtures/tls/', import.meta.url);
const STOP_TIMEOUT_MS = 10_000;

const kind = process.argv[2];
const match = /^(tcp|tls)-(\d+)$/.exec(kind ?? '');
if (match === null || process.send === undefined) {
  process.stderr.write('usage: acceptor-server.ts tcp-1|tcp-2|tls-1|tls-2 (as a child process with an IPC channel)\n');
  process.exit(2);
}
const secure = match[1] === 'tls';
const numAcceptors = Number(match[2]);

function clockTicks(): number {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
}
const TICK_US = 1e6 / clockTicks();

/** A process's user and system time from /proc, in µs (0 when it cannot be read). */
function procCpu(pid: number): NodeJS.CpuUsage {
  try {
    // The command name (field 2) may hold spaces: count from the closing parenthesis.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { user: Number(fields[11]) * TICK_US, system: Number(fields[12]) * TICK_US };
  } catch {
    return { user: 0, system: 0 };
  }
}

const { startListener, tcp, tls } = await import('@corral/listener');
const listener = secure
  ? await startListener('bench-acceptors', tls, {
    socketOpts: {
      port: 0, host: HOST,
      key: readFileSync(new URL('localhost.key', fixtures)),
      cert: readFileSync(new URL('localhost.crt', fixtures)),
    },
    numAcceptors,
  }, PROTOCOL, undefined)
  : await startListener('bench-acceptors', tcp, { socketOpts: { port: 0, host: HOST }, numAcceptors }, PROTOCOL, undefined);

// Workers are only replaced on a crash, which would void the measurement anyway.
const workers = listener.info().workers?.map((w) => w.pid) ?? [];

function usage(final: boolean): AcceptorUsage {
  const cpu = process.cpuUsage();
  for (const pid of workers) {
    const w = procCpu(pid);
    cpu.user += w.user;
    cpu.system += w.system;
  }
  const accepted = listener.stopped ? [] : (listener.info().workers ?? []).map((w) => w.metrics.accepted);
  return { type: 'usage', cpu, ru: process.resourceUsage(), final, accepted };
}

function send(message: AcceptorUsage): Promise<void> {
  return new Promise((resolve) => {
    if (!process.connected) resolve();
    else process.send!(message, undefined, {}, () => resolve());
  });
}

process.on('message', (m: unknown) => {
  if ((m as { type?: unknown } | null)?.type === 'usage') void send(usage(false));
});
process.on('disconnect', () => {
  void listener.stop().finally(() => process.exit(0));
});
let stopping = false;
process.on('SIGTERM', () => {
  if (stopping) return;
  stopping = true;
  const final = usage(true);
  const deadline = new Promise<void>((resolve) => setTimeout(resolve, STOP_TIMEOUT_MS).unref());
  void Promise.race([listener.stop(), deadline])
    .then(() => send(final))
    .finally(() => process.exit(0));
});

process.stdout.write(`listening ${secure ? 'tls' : 'tcp'}://${HOST}:${listener.getPort()}\n`);
