/**
 * The examples run as a user runs them: `tsx examples/run.ts <name> --port 0`, spoken to over
 * real sockets, and stopped with a signal. Every wait is on an event (a line on stdout, a reply,
 * a close, the process's exit), bounded by the test's timeout.
 */

import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { execute } from '../examples/line-protocol/kv.js';

const root = fileURLToPath(new URL('..', import.meta.url));
// The tsx CLI run by the current Node, so the examples run on whichever Node runs the tests.
const TSX = 'node_modules/tsx/dist/cli.mjs';
const RUNNER = 'examples/run.ts';
const LISTENING = /^listening tcp:\/\/127\.0\.0\.1:(\d+)$/;
const TIMEOUT = 30_000;

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

interface RunningExample {
  child: ChildProcess;
  /** The first line on stdout; rejects if the process exits before printing one. */
  firstLine: Promise<string>;
  /** Resolves when the process has exited and its output is closed. */
  exited: Promise<Exit>;
  stderr(): string;
}

const children = new Set<ChildProcess>();

afterEach(() => {
  // A failed test may leave its server running. tsx runs the example in a child process of its
  // own, so the whole process group goes.
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
    }
  }
  children.clear();
});

function runExample(args: string[]): RunningExample {
  const child = spawn(process.execPath, [TSX, RUNNER, ...args], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  children.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8');
  child.stderr!.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
  const exited = new Promise<Exit>((resolve) => {
    child.once('close', (code, signal) => resolve({ code, signal }));
  });
  const firstLine = new Promise<string>((resolve, reject) => {
    child.stdout!.on('data', (d: string) => {
      stdout += d;
      const nl = stdout.indexOf('\n');
      if (nl !== -1) resolve(stdout.slice(0, nl));
    });
    void exited.then(({ code, signal }) => {
      // 13 is Node's exit code for a top-level await that can never settle.
      const hint = code === 13 ? ' (a top-level await never settled: an import cycle?)' : '';
      reject(new Error(`exited (${code ?? signal}${hint}) before printing a line; stderr: ${stderr}`));
    });
  });
  firstLine.catch(() => {});
  return { child, firstLine, exited, stderr: () => stderr };
}

/** Start an example and return its port, checking the `listening` line. */
async function startExample(name: string, extra: string[] = []): Promise<RunningExample & { port: number }> {
  const running = runExample([name, '--port', '0', ...extra]);
  const line = await running.firstLine;
  const match = LISTENING.exec(line);
  expect(line).toMatch(LISTENING);
  const port = Number(match![1]);
  expect(port).toBeGreaterThan(0);
  return { ...running, port };
}

/** A client reading the server's replies line by line. */
async function lineClient(port: number): Promise<{
  socket: Socket;
  send(text: string): void;
  next(): Promise<string | undefined>;
  closed: Promise<void>;
}> {
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => {});
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  await once(socket, 'connect');
  const lines = createInterface({ input: socket, crlfDelay: Infinity })[Symbol.asyncIterator]();
  return {
    socket,
    send: (text) => socket.write(text),
    next: async () => {
      const r = await lines.next();
      return r.done === true ? undefined : r.value;
    },
    closed,
  };
}

async function stopWith(running: RunningExample, signal: NodeJS.Signals): Promise<void> {
  running.child.kill(signal);
  const exit = await running.exited;
  expect({ ...exit, stderr: running.stderr() }).toEqual({ code: 0, signal: null, stderr: '' });
}

describe('examples/run.ts', () => {
  it('rejects an unknown example with exit code 2 and a usage message', async () => {
    const running = runExample(['no-such-example']);
    const exit = await running.exited;
    expect(exit.code).toBe(2);
    expect(running.stderr()).toContain('No example named no-such-example.');
    expect(running.stderr()).toMatch(/Usage: pnpm example <name>/);
    expect(running.stderr()).toMatch(/Examples: .*line-protocol.*tcp-echo/);
  }, TIMEOUT);

  it('rejects a bad port with exit code 2', async () => {
    const running = runExample(['tcp-echo', '--port', 'http']);
    expect((await running.exited).code).toBe(2);
    expect(running.stderr()).toContain('Bad port http.');
  }, TIMEOUT);
});

describe('tcp-echo', () => {
  it('echoes over a real socket and exits 0 on SIGTERM', async () => {
    const running = await startExample('tcp-echo');
    const client = connect(running.port, '127.0.0.1');
    const received = client.setEncoding('utf8').toArray();
    client.write('hello, ');
    client.end('echo\n');
    expect((await received).join('')).toBe('hello, echo\n');
    await stopWith(running, 'SIGTERM');
  }, TIMEOUT);

  it('binds the host given with --host and exits 0 on SIGINT', async () => {
    const running = await startExample('tcp-echo', ['--host', '127.0.0.1']);
    const client = connect(running.port, '127.0.0.1');
    const received = client.setEncoding('utf8').toArray();
    client.end('via --host');
    expect((await received).join('')).toBe('via --host');
    await stopWith(running, 'SIGINT');
  }, TIMEOUT);
});

describe('line-protocol', () => {
  it('speaks the key-value protocol', async () => {
    const running = await startExample('line-protocol');
    const c = await lineClient(running.port);
    const ask = async (line: string) => {
      c.send(`${line}\n`);
      return c.next();
    };
    expect(await ask('PING')).toBe('PONG');
    expect(await ask('KEYS')).toBe('KEYS');
    expect(await ask('SET greeting hello world')).toBe('OK');
    expect(await ask('SET b 2')).toBe('OK');
    expect(await ask('GET greeting')).toBe('VALUE hello world');
    expect(await ask('get b')).toBe('VALUE 2');
    expect(await ask('KEYS')).toBe('KEYS greeting b');
    expect(await ask('DEL b')).toBe('DELETED 1');
    expect(await ask('DEL b')).toBe('DELETED 0');
    expect(await ask('GET b')).toBe('NIL');
    expect(await ask('FLY me')).toBe('ERR unknown command "FLY"');
    expect(await ask('GET')).toBe('ERR usage: GET <key>');
    c.send('PING\r\n');
    expect(await c.next()).toBe('PONG');
    // Two commands in one write, answered in order.
    c.send('SET x 1\nGET x\n');
    expect([await c.next(), await c.next()]).toEqual(['OK', 'VALUE 1']);

    // The store is shared by every connection of the listener.
    const other = await lineClient(running.port);
    other.send('GET greeting\n');
    expect(await other.next()).toBe('VALUE hello world');
    other.send('QUIT\n');
    expect(await other.next()).toBe('BYE');
    expect(await other.next()).toBeUndefined();
    await other.closed;

    c.send('QUIT\n');
    expect(await c.next()).toBe('BYE');
    expect(await c.next()).toBeUndefined();
    await c.closed;
    await stopWith(running, 'SIGTERM');
  }, TIMEOUT);

  it('closes the connection on a line that is too long', async () => {
    const running = await startExample('line-protocol');
    const long = await lineClient(running.port);
    long.send(`SET k ${'v'.repeat(5000)}\n`);
    expect(await long.next()).toBe('ERR line too long');
    expect(await long.next()).toBeUndefined();
    await long.closed;

    // Also without a newline: the server does not wait for the end of the line.
    const endless = await lineClient(running.port);
    endless.send('x'.repeat(5000));
    expect(await endless.next()).toBe('ERR line too long');
    await endless.closed;

    // The server is unharmed.
    const c = await lineClient(running.port);
    c.send('PING\n');
    expect(await c.next()).toBe('PONG');
    c.socket.end();
    await c.closed;
    await stopWith(running, 'SIGTERM');
  }, TIMEOUT);

  it('says goodbye to connected clients and exits 0 on SIGTERM', async () => {
    const running = await startExample('line-protocol');
    const c = await lineClient(running.port);
    c.send('PING\n');
    expect(await c.next()).toBe('PONG');
    running.child.kill('SIGTERM');
    expect(await c.next()).toBe('BYE shutting down');
    await c.closed;
    const exit = await running.exited;
    expect({ ...exit, stderr: running.stderr() }).toEqual({ code: 0, signal: null, stderr: '' });
  }, TIMEOUT);
});

describe('the key-value protocol: execute()', () => {
  it('answers commands', () => {
    const store = new Map<string, string>();
    expect(execute(store, 'SET k a value with spaces')).toBe('OK');
    expect(store.get('k')).toBe('a value with spaces');
    expect(execute(store, 'set k2 v')).toBe('OK');
    expect(execute(store, 'GET k')).toBe('VALUE a value with spaces');
    expect(execute(store, 'GET nothing')).toBe('NIL');
    expect(execute(store, 'KEYS')).toBe('KEYS k k2');
    expect(execute(store, 'DEL k')).toBe('DELETED 1');
    expect(execute(store, 'DEL k')).toBe('DELETED 0');
    expect(execute(store, 'PING')).toBe('PONG');
    expect(execute(store, 'QUIT')).toBeUndefined();
    expect(execute(store, 'quit')).toBeUndefined();
  });

  it.each([
    ['', 'ERR empty line'],
    ['SET', 'ERR usage: SET <key> <value>'],
    ['SET k', 'ERR usage: SET <key> <value>'],
    ['SET  v', 'ERR usage: SET <key> <value>'],
    ['GET', 'ERR usage: GET <key>'],
    ['GET a b', 'ERR usage: GET <key>'],
    ['DEL', 'ERR usage: DEL <key>'],
    ['DEL a b', 'ERR usage: DEL <key>'],
    ['HELLO there', 'ERR unknown command "HELLO"'],
    ['PING extra', 'PONG'],
  ])('%j -> %j', (line, reply) => {
    const store = new Map<string, string>();
    expect(execute(store, line)).toBe(reply);
    expect(store.size).toBe(0);
  });

  it('quotes and truncates an unknown verb', () => {
    const verb = 'x'.repeat(100);
    expect(execute(new Map(), verb)).toBe(`ERR unknown command ${JSON.stringify('X'.repeat(32))}`);
    expect(execute(new Map(), 'a"b')).toBe('ERR unknown command "A\\"B"');
  });
});
