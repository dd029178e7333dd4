/**
 * examples/ws-client run as a user runs it: `tsx examples/ws-client/client.ts <url>` as a child
 * process with stdin piped, against Corral servers in this process (the ws-echo example's echo
 * server, and a TLS one with a subprotocol). Every wait is on an event: the process's exit.
 */

import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import * as net from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startListener, tls, type Listener } from '@corral/listener';
import { websocketProtocol } from '@corral/websocket';
import { start as startEcho } from '../examples/ws-echo/main.js';
import type { RunningExample } from '../examples/example.js';

const root = fileURLToPath(new URL('..', import.meta.url));
// The tsx CLI run by the current Node, so the example runs on whichever Node runs the tests.
const TSX = 'node_modules/tsx/dist/cli.mjs';
const CLIENT = 'examples/ws-client/client.ts';
const FIXTURES = fileURLToPath(new URL('../packages/listener/test/fixtures/tls/', import.meta.url));
const TIMEOUT = 30_000;

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

const children = new Set<ChildProcess>();

afterEach(() => {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
  children.clear();
});

/** Run the client with `args`, write `input` to its stdin and end it; resolves once it exited. */
async function runClient(args: string[], input: string): Promise<Run> {
  const child = spawn(process.execPath, [TSX, CLIENT, ...args], { cwd: root, stdio: ['pipe', 'pipe', 'pipe'] });
  children.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    stdout += d;
  });
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
  });
  child.stdin!.on('error', () => {});
  child.stdin!.end(input);
  const [code, signal] = (await once(child, 'close')) as [number | null, NodeJS.Signals | null];
  return { code, signal, stdout, stderr };
}

let echo: RunningExample;
let secure: Listener;

beforeAll(async () => {
  echo = await startEcho({ port: 0, host: '127.0.0.1' });
  secure = await startListener(
    `ws-client-example-tls-${process.pid}`,
    tls,
    { socketOpts: { host: '127.0.0.1', port: 0, key: readFileSync(`${FIXTURES}localhost.key`), cert: readFileSync(`${FIXTURES}localhost.crt`) } },
    websocketProtocol<undefined, undefined>(
      {
        websocketHandle(frame) {
          if (frame.type !== 'text') return undefined;
          if (frame.data === 'bye') return { reply: 'leaving', stop: { code: 4000, reason: 'asked to leave' } };
          return { reply: frame.data.toUpperCase() };
        },
      },
      { subprotocols: ['shout.v1'] },
    ),
    undefined,
  );
});

afterAll(async () => {
  await echo?.stop();
  await secure?.stop();
});

describe('examples/ws-client', () => {
  it('sends each stdin line and prints each reply, then closes and exits 0 when stdin ends', async () => {
    const url = `${echo.url}/`;
    const lines = ['hello', 'ünïcödé ✓ 🐍', '', 'a longer line '.repeat(100).trim()];
    const run = await runClient([url], `${lines.join('\n')}\n`);
    expect(run).toEqual({ code: 0, signal: null, stdout: `${lines.join('\n')}\n`, stderr: '' });
  }, TIMEOUT);

  it('with no input: connects, closes, exits 0', async () => {
    const run = await runClient([`${echo.url}/`], '');
    expect(run).toEqual({ code: 0, signal: null, stdout: '', stderr: '' });
  }, TIMEOUT);

  it('wss:// with --ca and --subprotocol; a server close with an error code exits 1', async () => {
    const url = `wss://localhost:${secure.getPort()!}/`;
    const run = await runClient([url, '--subprotocol', 'other', '--subprotocol', 'shout.v1', '--ca', `${FIXTURES}ca.crt`], 'quiet\nbye\nnever sent\n');
    expect(run.stdout).toBe('QUIET\nleaving\n');
    expect(run.stderr).toContain('connected, subprotocol shout.v1');
    expect(run.stderr).toContain('the server closed the connection (4000 asked to leave)');
    expect(run.code).toBe(1);
  }, TIMEOUT);

  it('fails with exit 1 and the reason when it cannot connect', async () => {
    const probe = net.createServer();
    probe.listen(0, '127.0.0.1');
    await once(probe, 'listening');
    const port = (probe.address() as net.AddressInfo).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const refused = await runClient([`ws://127.0.0.1:${port}/`], 'hello\n');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^cannot connect to ws:\/\/127\.0\.0\.1:\d+\/ \(refused\)/);

    // The test CA is not trusted without --ca.
    const untrusted = await runClient([`wss://localhost:${secure.getPort()!}/`], '');
    expect(untrusted.code).toBe(1);
    expect(untrusted.stderr).toContain('(tls)');
  }, TIMEOUT);

  it('a usage error exits 2', async () => {
    const none = await runClient([], '');
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('Usage:');
    const notWs = await runClient(['http://127.0.0.1/'], '');
    expect(notWs.code).toBe(2);
    expect(notWs.stderr).toContain('Not a ws:// or wss:// URL');
  }, TIMEOUT);
});
