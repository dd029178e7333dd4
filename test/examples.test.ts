/**
 * The examples run as a user runs them: `tsx examples/run.ts <name> --port 0`, spoken to over
 * real sockets, and stopped with a signal. Every wait is on an event (a line on stdout, a reply,
 * a close, the process's exit), bounded by the test's timeout.
 */

import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { createInterface } from 'node:readline';
import * as tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import type { Page } from 'playwright-core';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { execute } from '../examples/line-protocol/kv.js';
import { launchChromium } from './peers/chromium.js';
import { requirePeer } from './peers/process.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const RUNNER = 'examples/run.ts';
const listening = (scheme: string): RegExp => new RegExp(`^listening ${scheme}://127\\.0\\.0\\.1:(\\d+)$`);
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
  // The runner is this Node process's own child (tsx as a loader, not a CLI relaying signals),
  // so SIGTERM and SIGINT reach it directly.
  const child = spawn(process.execPath, ['--import', 'tsx', RUNNER, ...args], {
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

/** Start an example and return its port, checking the `listening <scheme>://` line. */
async function startExample(name: string, extra: string[] = [], scheme = 'tcp'): Promise<RunningExample & { port: number }> {
  const running = runExample([name, '--port', '0', ...extra]);
  const line = await running.firstLine;
  const pattern = listening(scheme);
  const match = pattern.exec(line);
  expect(line).toMatch(pattern);
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

describe('tls-sni', () => {
  const certs = new URL('../examples/tls-sni/certs/', import.meta.url);
  const ca = readFileSync(new URL('ca.crt', certs));

  interface TlsClient {
    socket: tls.TLSSocket;
    /** The server certificate's common name. */
    commonName: string;
    next(): Promise<string | undefined>;
    closed: Promise<void>;
  }

  /** A TLS client that trusts the example's CA, asking for `servername` (no SNI when undefined). */
  function tlsConnect(port: number, servername: string | undefined): tls.TLSSocket {
    return tls.connect({ host: '127.0.0.1', port, ca, ...(servername === undefined ? {} : { servername }) });
  }

  /** Completes the handshake (or rejects with the client's error) and reads replies line by line. */
  async function tlsClient(port: number, servername: string): Promise<TlsClient> {
    const socket = tlsConnect(port, servername);
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    await once(socket, 'secureConnect');
    socket.on('error', () => {});
    const lines = createInterface({ input: socket, crlfDelay: Infinity })[Symbol.asyncIterator]();
    return {
      socket,
      commonName: String(socket.getPeerCertificate().subject?.CN),
      next: async () => {
        const r = await lines.next();
        return r.done === true ? undefined : r.value;
      },
      closed,
    };
  }

  /** The error a client gets when the server refuses its hello. */
  async function refusal(port: number, servername: string | undefined): Promise<NodeJS.ErrnoException> {
    const socket = tlsConnect(port, servername);
    const outcome = await new Promise<NodeJS.ErrnoException | undefined>((resolve) => {
      socket.once('secureConnect', () => resolve(undefined));
      socket.once('error', (err: NodeJS.ErrnoException) => resolve(err));
    });
    socket.destroy();
    if (outcome === undefined) throw new Error(`the handshake for ${servername ?? '(no SNI)'} succeeded`);
    return outcome;
  }

  it('serves a.test and b.test, each with its own certificate, and exits 0 on SIGTERM', async () => {
    const running = await startExample('tls-sni', [], 'tls');
    for (const name of ['a.test', 'b.test']) {
      const c = await tlsClient(running.port, name);
      expect(c.socket.authorized).toBe(true);
      expect(c.commonName).toBe(name);
      expect(await c.next()).toBe(`hello from ${name}`);
      c.socket.write('ping\n');
      expect(await c.next()).toBe('ping');
      c.socket.write(`two lines\nfrom ${name}\n`);
      expect([await c.next(), await c.next()]).toEqual(['two lines', `from ${name}`]);
      c.socket.end();
      expect(await c.next()).toBeUndefined();
      await c.closed;
    }
    await stopWith(running, 'SIGTERM');
  }, TIMEOUT);

  it('refuses an unknown name, and a hello without one, with an unrecognized_name alert', async () => {
    const running = await startExample('tls-sni', [], 'tls');
    const unknown = await refusal(running.port, 'nope.test');
    expect(unknown.message).toMatch(/unrecognized name/i);
    expect(unknown.code).toBe('ERR_SSL_TLSV1_UNRECOGNIZED_NAME');
    // Node sends no SNI when connecting to an IP address without a servername.
    const anonymous = await refusal(running.port, undefined);
    expect(anonymous.message).toMatch(/unrecognized name/i);

    // Host names compare case-insensitively; the server is unharmed by the refusals.
    const c = await tlsClient(running.port, 'A.Test');
    expect(c.commonName).toBe('a.test');
    expect(await c.next()).toBe('hello from a.test');
    c.socket.end();
    await c.closed;
    await stopWith(running, 'SIGTERM');
  }, TIMEOUT);

  it('ends live connections on SIGTERM, then exits 0', async () => {
    const running = await startExample('tls-sni', [], 'tls');
    const c = await tlsClient(running.port, 'b.test');
    expect(await c.next()).toBe('hello from b.test');
    running.child.kill('SIGTERM');
    expect(await c.next()).toBeUndefined();
    await c.closed;
    const exit = await running.exited;
    expect({ ...exit, stderr: running.stderr() }).toEqual({ code: 0, signal: null, stderr: '' });
  }, TIMEOUT);

  it('talks to openssl s_client: verified, CN a.test, greeted', async () => {
    const openssl = requirePeer('openssl');
    const running = await startExample('tls-sni', [], 'tls');
    const client = spawn(openssl, [
      's_client', '-servername', 'a.test', '-CAfile', fileURLToPath(new URL('ca.crt', certs)), '-verify_return_error',
      '-connect', `127.0.0.1:${running.port}`,
    ], { stdio: ['pipe', 'pipe', 'pipe'] });
    children.add(client);
    let stdout = '';
    let stderr = '';
    client.stderr!.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    const exited = new Promise<number | null>((resolve) => client.once('close', (code) => resolve(code)));
    // Keep stdin open until the greeting is in: s_client quits when its input ends.
    await new Promise<void>((resolve, reject) => {
      client.stdout!.setEncoding('utf8').on('data', (d: string) => {
        stdout += d;
        if (stdout.includes('hello from a.test\n')) resolve();
      });
      void exited.then((code) => reject(new Error(`openssl exited (${code}) before the greeting; stdout: ${stdout}\nstderr: ${stderr}`)));
    });
    client.stdin!.end();
    expect(await exited).toBe(0);
    expect(stdout).toContain('Verify return code: 0 (ok)');
    expect(stdout).toMatch(/^subject=\s*CN\s*=\s*a\.test$/m);
    expect(stderr).toMatch(/depth=0 CN = a\.test/);
    await stopWith(running, 'SIGTERM');
  }, TIMEOUT);
});

/** A `ws` client that queues what it receives, for tests that read one message at a time. */
interface WsClient {
  ws: WebSocket;
  /** The next message, or undefined once the connection is closed. */
  next(): Promise<{ data: Buffer; binary: boolean } | undefined>;
  /** The next message, a text one, parsed as JSON. */
  nextJson(): Promise<unknown>;
  /** The close code and reason the client saw. */
  closed: Promise<{ code: number; reason: string }>;
}

/** Open a WebSocket; rejects with the HTTP status when the server refuses the upgrade. */
async function wsClient(url: string, opts: WebSocket.ClientOptions = {}): Promise<WsClient> {
  const ws = new WebSocket(url, opts);
  const queue: { data: Buffer; binary: boolean }[] = [];
  const waiting: ((m: { data: Buffer; binary: boolean } | undefined) => void)[] = [];
  ws.on('message', (data: Buffer, binary: boolean) => {
    const m = { data, binary };
    const w = waiting.shift();
    if (w !== undefined) w(m);
    else queue.push(m);
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) => {
    ws.once('close', (code: number, reason: Buffer) => {
      for (const w of waiting.splice(0)) w(undefined);
      resolve({ code, reason: reason.toString() });
    });
  });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('unexpected-response', (_req, res) => {
      reject(new Error(`HTTP ${res.statusCode}`));
      res.resume();
      ws.terminate();
    });
    ws.once('error', reject);
  });
  const next = (): Promise<{ data: Buffer; binary: boolean } | undefined> => {
    const m = queue.shift();
    if (m !== undefined) return Promise.resolve(m);
    if (ws.readyState === WebSocket.CLOSED) return Promise.resolve(undefined);
    return new Promise((resolve) => waiting.push(resolve));
  };
  return {
    ws,
    next,
    nextJson: async () => {
      const m = await next();
      if (m === undefined) throw new Error('closed before a message');
      expect(m.binary).toBe(false);
      return JSON.parse(m.data.toString('utf8'));
    },
    closed,
  };
}

describe('ws-echo', () => {
  it('echoes text and binary messages, in order', async () => {
    const running = await startExample('ws-echo', [], 'ws');
    const c = await wsClient(`ws://127.0.0.1:${running.port}/`);
    c.ws.send('hello, echo');
    c.ws.send(Buffer.from([0, 1, 2, 254, 255]));
    c.ws.send('ünïcödé ✓');
    c.ws.send(Buffer.alloc(100_000, 7));
    expect(await c.next()).toEqual({ data: Buffer.from('hello, echo'), binary: false });
    expect(await c.next()).toEqual({ data: Buffer.from([0, 1, 2, 254, 255]), binary: true });
    expect(await c.next()).toEqual({ data: Buffer.from('ünïcödé ✓'), binary: false });
    expect(await c.next()).toEqual({ data: Buffer.alloc(100_000, 7), binary: true });
    // A ping is answered by the session with a pong carrying the same payload.
    c.ws.ping('are you there');
    const [pong] = (await once(c.ws, 'pong')) as [Buffer];
    expect(pong.toString()).toBe('are you there');
    // The client closes: the server echoes its close frame.
    c.ws.close(1000, 'bye');
    expect(await c.closed).toEqual({ code: 1000, reason: '' });
    await stopWith(running, 'SIGTERM');
  }, TIMEOUT);

  it('answers a plain HTTP request with 426', async () => {
    const running = await startExample('ws-echo', [], 'ws');
    const res = await fetch(`http://127.0.0.1:${running.port}/`);
    expect(res.status).toBe(426);
    expect(res.headers.get('upgrade')).toBe('websocket');
    await res.body?.cancel();
    await stopWith(running, 'SIGTERM');
  }, TIMEOUT);

  it('closes connected clients with 1001 on SIGTERM, then exits 0', async () => {
    const running = await startExample('ws-echo', [], 'ws');
    const clients = await Promise.all([1, 2, 3].map(() => wsClient(`ws://127.0.0.1:${running.port}/`)));
    for (const [i, c] of clients.entries()) {
      c.ws.send(`client ${i}`);
      expect((await c.next())?.data.toString()).toBe(`client ${i}`);
    }
    running.child.kill('SIGTERM');
    for (const c of clients) expect(await c.closed).toEqual({ code: 1001, reason: 'server shutting down' });
    const exit = await running.exited;
    expect({ ...exit, stderr: running.stderr() }).toEqual({ code: 0, signal: null, stderr: '' });
  }, TIMEOUT);
});

describe('ws-chat', () => {
  it('fans a message out to every member as { from, text }, with join and leave notices', async () => {
    const running = await startExample('ws-chat', [], 'ws');
    const url = `ws://127.0.0.1:${running.port}`;
    const alice = await wsClient(`${url}/?name=alice`);
    expect(await alice.nextJson()).toEqual({ event: 'welcome', name: 'alice', members: ['alice'] });
    const bob = await wsClient(`${url}/?name=bob`);
    expect(await bob.nextJson()).toEqual({ event: 'welcome', name: 'bob', members: ['alice', 'bob'] });
    expect(await alice.nextJson()).toEqual({ event: 'join', name: 'bob' });

    bob.ws.send('hello, alice');
    expect(await alice.nextJson()).toEqual({ from: 'bob', text: 'hello, alice' });
    expect(await bob.nextJson()).toEqual({ from: 'bob', text: 'hello, alice' });
    alice.ws.send('  hi bob  ');
    alice.ws.send('   ');
    alice.ws.send('two messages, in order');
    for (const c of [alice, bob]) {
      expect(await c.nextJson()).toEqual({ from: 'alice', text: 'hi bob' });
      expect(await c.nextJson()).toEqual({ from: 'alice', text: 'two messages, in order' });
    }

    // Without a name: a guest name.
    const guest = await wsClient(`${url}/`);
    expect(await guest.nextJson()).toEqual({ event: 'welcome', name: 'guest-1', members: ['alice', 'bob', 'guest-1'] });
    expect(await alice.nextJson()).toEqual({ event: 'join', name: 'guest-1' });
    expect(await bob.nextJson()).toEqual({ event: 'join', name: 'guest-1' });

    bob.ws.close();
    expect(await bob.closed).toEqual({ code: 1005, reason: '' });
    expect(await alice.nextJson()).toEqual({ event: 'leave', name: 'bob' });
    expect(await guest.nextJson()).toEqual({ event: 'leave', name: 'bob' });

    // A client that vanishes without a close frame leaves too.
    guest.ws.terminate();
    expect(await alice.nextJson()).toEqual({ event: 'leave', name: 'guest-1' });

    // The name is free again once its owner has left.
    const bob2 = await wsClient(`${url}/?name=bob`);
    expect(await bob2.nextJson()).toEqual({ event: 'welcome', name: 'bob', members: ['alice', 'bob'] });
    expect(await alice.nextJson()).toEqual({ event: 'join', name: 'bob' });

    running.child.kill('SIGTERM');
    for (const c of [alice, bob2]) expect(await c.closed).toEqual({ code: 1001, reason: 'server shutting down' });
    const exit = await running.exited;
    expect({ ...exit, stderr: running.stderr() }).toEqual({ code: 0, signal: null, stderr: '' });
  }, TIMEOUT);

  it('refuses bad names, taken names, other paths and foreign origins', async () => {
    const running = await startExample('ws-chat', [], 'ws');
    const url = `ws://127.0.0.1:${running.port}`;
    const carol = await wsClient(`${url}/?name=carol`);
    expect(await carol.nextJson()).toMatchObject({ event: 'welcome', name: 'carol' });

    await expect(wsClient(`${url}/?name=carol`)).rejects.toThrow('HTTP 409');
    await expect(wsClient(`${url}/?name=${encodeURIComponent('no spaces')}`)).rejects.toThrow('HTTP 400');
    await expect(wsClient(`${url}/?name=${'x'.repeat(25)}`)).rejects.toThrow('HTTP 400');
    await expect(wsClient(`${url}/elsewhere?name=dave`)).rejects.toThrow('HTTP 404');
    await expect(wsClient(`${url}/?name=eve`, { origin: 'http://evil.test' })).rejects.toThrow('HTTP 403');

    // A page from this host may join; names may be any letters.
    const zoe = await wsClient(`${url}/?name=${encodeURIComponent('zoë_2.0')}`, { origin: `http://127.0.0.1:${running.port}` });
    expect(await zoe.nextJson()).toEqual({ event: 'welcome', name: 'zoë_2.0', members: ['carol', 'zoë_2.0'] });
    expect(await carol.nextJson()).toEqual({ event: 'join', name: 'zoë_2.0' });
    zoe.ws.close(1000);
    await zoe.closed;
    expect(await carol.nextJson()).toEqual({ event: 'leave', name: 'zoë_2.0' });
    carol.ws.close(1000);
    await carol.closed;
    await stopWith(running, 'SIGTERM');
  }, TIMEOUT);

  it('closes with 1009 on a message over 4 KiB, and 1003 on a binary one', async () => {
    const running = await startExample('ws-chat', [], 'ws');
    const url = `ws://127.0.0.1:${running.port}`;
    const watcher = await wsClient(`${url}/?name=watcher`);
    expect(await watcher.nextJson()).toMatchObject({ event: 'welcome' });
    const big = await wsClient(`${url}/?name=big`);
    expect(await big.nextJson()).toMatchObject({ event: 'welcome' });
    expect(await watcher.nextJson()).toEqual({ event: 'join', name: 'big' });

    // 4096 bytes of UTF-8 (2048 two-byte characters) is the limit, and passes.
    big.ws.send('é'.repeat(2048));
    expect(await watcher.nextJson()).toEqual({ from: 'big', text: 'é'.repeat(2048) });
    big.ws.send('x'.repeat(4097));
    expect((await big.closed).code).toBe(1009);
    expect(await watcher.nextJson()).toEqual({ event: 'leave', name: 'big' });

    const binary = await wsClient(`${url}/?name=binary`);
    expect(await binary.nextJson()).toMatchObject({ event: 'welcome' });
    expect(await watcher.nextJson()).toEqual({ event: 'join', name: 'binary' });
    binary.ws.send(Buffer.from('not text'));
    expect(await binary.closed).toEqual({ code: 1003, reason: 'text messages only' });
    expect(await watcher.nextJson()).toEqual({ event: 'leave', name: 'binary' });

    // The one that stayed saw nothing else.
    watcher.ws.close(1000);
    expect(await watcher.next()).toBeUndefined();
    await watcher.closed;
    await stopWith(running, 'SIGTERM');
  }, TIMEOUT);

  it('serves its page at /, ok at /healthz, 404 elsewhere', async () => {
    const running = await startExample('ws-chat', [], 'ws');
    const http = `http://127.0.0.1:${running.port}`;

    const page = await fetch(`${http}/?name=alice`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toBe('text/html; charset=utf-8');
    const html = await page.text();
    expect(html).toMatch(/^<!doctype html>/i);
    expect(html).toContain('<title>Corral chat</title>');
    expect(html).toContain('<style>');
    expect(html).toContain('new WebSocket(');
    // Self-contained: nothing loaded from elsewhere (the icon is an empty data: URL, so the
    // browser does not ask for /favicon.ico).
    expect(html).not.toMatch(/\b(?:src|href)\s*=\s*(?!["']?data:)|@import|url\(/i);
    expect(html).toContain('<link rel="icon" href="data:,">');

    const head = await fetch(`${http}/`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(Number(head.headers.get('content-length'))).toBe(Buffer.byteLength(html));

    const health = await fetch(`${http}/healthz`);
    expect([health.status, await health.text()]).toEqual([200, 'ok\n']);

    for (const path of ['/nope', '/index.html', '/healthz/x']) {
      const res = await fetch(`${http}${path}`);
      expect([path, res.status]).toEqual([path, 404]);
      await res.body?.cancel();
    }
    const post = await fetch(`${http}/`, { method: 'POST', body: 'x' });
    expect(post.status).toBe(405);
    await post.body?.cancel();

    // The page's server is the chat's: a WebSocket on the same port still works.
    const c = await wsClient(`ws://127.0.0.1:${running.port}/`);
    expect(await c.nextJson()).toMatchObject({ event: 'welcome' });
    c.ws.close(1000);
    await c.closed;
    await stopWith(running, 'SIGTERM');
  }, TIMEOUT);

  it('works in a browser: two pages join, talk, and see each other leave', async () => {
    const running = await startExample('ws-chat', [], 'ws');
    const origin = `http://127.0.0.1:${running.port}`;
    const browser = await launchChromium();
    const problems: string[] = [];
    try {
      const open = async (path: string) => {
        const page = await browser.newPage();
        page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
        page.on('console', (msg) => {
          if (msg.type() === 'error') problems.push(`console: ${msg.text()}`);
        });
        // Self-contained: the page asks for nothing but itself.
        page.on('request', (req) => {
          if (!req.url().startsWith(`${origin}/`)) problems.push(`request: ${req.url()}`);
        });
        await page.goto(`${origin}${path}`, { timeout: 20_000 });
        return page;
      };
      const log = (page: Page) => page.locator('#log li');

      // The name from the page's query string, then typed into the form.
      const alice = await open('/?name=alice');
      expect(await alice.locator('#name').inputValue()).toBe('alice');
      await alice.click('#join button');
      await alice.getByText('connected as alice').waitFor();
      const bob = await open('/');
      await bob.fill('#name', 'bob');
      await bob.click('#join button');
      await bob.getByText('connected as bob').waitFor();
      await log(alice).getByText('bob joined').waitFor();

      await bob.fill('#text', 'hello from a browser');
      await bob.press('#text', 'Enter');
      for (const page of [alice, bob]) {
        await log(page).filter({ hasText: 'hello from a browser' }).waitFor();
        expect(await log(page).last().innerText()).toMatch(/^bob\s*hello from a browser$/);
      }
      expect(await bob.locator('#text').inputValue()).toBe('');

      // A taken name: refused, and the page says so.
      const other = await open('/?name=alice');
      await other.click('#join button');
      await log(other).getByText(/could not join/i).waitFor();
      await other.close();

      await bob.close();
      await log(alice).getByText('bob left').waitFor();
      await alice.close();
    } finally {
      await browser.close();
    }
    // The refused upgrade is the only thing the browser reports.
    expect(problems.filter((p) => !/WebSocket connection to .* failed/.test(p))).toEqual([]);
    await stopWith(running, 'SIGTERM');
  }, 90_000);
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
