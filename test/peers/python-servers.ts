/**
 * WebSocket servers on Python's `websockets` library (its asyncio API, which Debian bookworm's
 * 10.4 has) and on `aiohttp`, for the client interop tests. Each script is written to a
 * temporary directory and run with the Python that can import its library; it binds port 0 on
 * 127.0.0.1 and prints `{"port": N}` as its first line on stdout.
 *
 * Both servers obey the same text commands as the other servers of the tests: `!count N`,
 * `!countclose N` (then close 4001 "enough"), `!big N` (N bytes of "a"), `!frag N SIZE` (a
 * message of N bytes sent in SIZE-byte frames; aiohttp has no API for that and answers
 * "unsupported"), `!ping P` (a ping; `got pong P` once the pong came), `!close CODE REASON`;
 * anything else is echoed.
 */

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkPeers, installCommand } from './ensure.mjs';
import { requirePython } from './process.js';

export const WEBSOCKETS_SERVER = String.raw`
import asyncio
import json
import ssl
import sys

import websockets

SUBPROTOCOLS = ['corral.echo.v2', 'corral.echo.v1']


async def handler(ws, *_):
    async for message in ws:
        if isinstance(message, bytes) or not message.startswith('!'):
            await ws.send(message)
            continue
        name, *args = message[1:].split(' ')
        if name == 'count':
            for i in range(int(args[0])):
                await ws.send(str(i))
        elif name == 'countclose':
            for i in range(int(args[0])):
                await ws.send(str(i))
            await ws.close(4001, 'enough')
        elif name == 'big':
            await ws.send(b'a' * int(args[0]))
        elif name == 'frag':
            total, size = int(args[0]), int(args[1])
            data = b'a' * total
            # An iterable is sent as one fragmented message, a frame per item.
            await ws.send([data[i:i + size] for i in range(0, total, size)])
        elif name == 'ping':
            payload = ' '.join(args)
            waiter = await ws.ping(payload.encode())
            await waiter
            await ws.send('got pong ' + payload)
        elif name == 'close':
            await ws.close(int(args[0]), ' '.join(args[1:]))
        else:
            await ws.send('unknown command ' + name)


async def main(certfile, keyfile):
    context = None
    if certfile is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certfile, keyfile)
    server = await websockets.serve(
        handler, '127.0.0.1', 0, subprotocols=SUBPROTOCOLS, max_size=None, ping_interval=None, ssl=context,
    )
    port = server.sockets[0].getsockname()[1]
    print(json.dumps({'port': port, 'websockets': websockets.__version__}), flush=True)
    await asyncio.Future()


if __name__ == '__main__':
    asyncio.run(main(*(sys.argv[1:3] if len(sys.argv) >= 3 else (None, None))))
`;

export const AIOHTTP_SERVER = String.raw`
import asyncio
import json

import aiohttp
from aiohttp import WSMsgType, web

SUBPROTOCOLS = ('corral.echo.v2', 'corral.echo.v1')


async def handler(request):
    ws = web.WebSocketResponse(protocols=SUBPROTOCOLS, autoping=False, max_msg_size=0)
    await ws.prepare(request)
    async for msg in ws:
        if msg.type == WSMsgType.PING:
            await ws.pong(msg.data)
        elif msg.type == WSMsgType.PONG:
            await ws.send_str('got pong ' + msg.data.decode())
        elif msg.type == WSMsgType.BINARY:
            await ws.send_bytes(msg.data)
        elif msg.type == WSMsgType.TEXT:
            text = msg.data
            if not text.startswith('!'):
                await ws.send_str(text)
                continue
            name, *args = text[1:].split(' ')
            if name == 'count':
                for i in range(int(args[0])):
                    await ws.send_str(str(i))
            elif name == 'countclose':
                for i in range(int(args[0])):
                    await ws.send_str(str(i))
                await ws.close(code=4001, message=b'enough')
            elif name == 'big':
                await ws.send_bytes(b'a' * int(args[0]))
            elif name == 'ping':
                await ws.ping(' '.join(args).encode())
            elif name == 'close':
                await ws.close(code=int(args[0]), message=' '.join(args[1:]).encode())
            else:
                await ws.send_str('unsupported' if name == 'frag' else 'unknown command ' + name)
    return ws


async def main():
    app = web.Application()
    app.router.add_get('/{tail:.*}', handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, '127.0.0.1', 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    print(json.dumps({'port': port, 'aiohttp': aiohttp.__version__}), flush=True)
    await asyncio.Event().wait()


if __name__ == '__main__':
    asyncio.run(main())
`;

/** A Python that can `import aiohttp`, or an error that says how to install it (the tests then fail, they are not skipped). */
export function requireAiohttp(): { python: string; version: string } {
  const found = checkPeers();
  if (found.aiohttp !== undefined) return found.aiohttp;
  throw new Error(
    "Python's aiohttp library (python3-aiohttp) is not installed, and the interop tests need it. " +
      `Run \`node test/peers/ensure.mjs\` (as root it installs what is missing), or: ${installCommand(found.packages)}`,
  );
}

export interface PythonServer {
  port: number;
  /** The first line's other fields (library versions). */
  info: Record<string, unknown>;
  /** Everything the process wrote on stderr so far. */
  stderr(): string;
  /** SIGTERM, then SIGKILL if it has not exited within `graceMs`; removes the script. */
  stop(graceMs?: number): Promise<void>;
}

const live = new Set<ChildProcess>();
let hooked = false;

/** Run `script` with `python` and the extra arguments; resolves once it printed its port. */
export async function startPythonServer(name: string, python: string, script: string, args: readonly string[] = []): Promise<PythonServer> {
  if (!hooked) {
    hooked = true;
    // Should the test process go away first, the servers go with it.
    process.on('exit', () => {
      for (const child of live) child.kill('SIGKILL');
    });
  }
  const dir = await mkdtemp(join(tmpdir(), 'corral-python-server-'));
  const file = join(dir, 'server.py');
  await writeFile(file, script);
  const child = spawn(python, [file, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, PYTHONUNBUFFERED: '1', PYTHONDONTWRITEBYTECODE: '1' },
  });
  live.add(child);
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    stderr = (stderr + d).slice(-64 * 1024);
  });
  const exited = new Promise<string>((resolve) => {
    child.once('error', (err) => resolve(`could not start: ${err.message}`));
    child.once('exit', (code, signal) => {
      live.delete(child);
      resolve(signal !== null ? `signal ${signal}` : `code ${String(code)}`);
    });
  });
  const remove = (): Promise<void> => rm(dir, { recursive: true, force: true });

  let stdout = '';
  const first = await new Promise<string | Error>((resolve) => {
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
      const nl = stdout.indexOf('\n');
      if (nl !== -1) resolve(stdout.slice(0, nl));
    });
    void exited.then((how) => resolve(new Error(`the ${name} exited (${how}) before printing its port; stderr:\n${stderr}`)));
  });
  if (first instanceof Error) {
    await remove();
    throw first;
  }
  const { port, ...info } = JSON.parse(first) as { port: number } & Record<string, unknown>;

  return {
    port,
    info,
    stderr: () => stderr,
    async stop(graceMs = 5000): Promise<void> {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        let timer: NodeJS.Timeout | undefined;
        const late = new Promise<'late'>((resolve) => {
          timer = setTimeout(() => resolve('late'), graceMs);
        });
        if ((await Promise.race([exited, late])) === 'late') child.kill('SIGKILL');
        clearTimeout(timer);
        await exited;
      }
      await remove();
    },
  };
}

/** The Python server on `websockets` (TLS with `cert` and `key` files when given). */
export function startWebsocketsServer(tls?: { certFile: string; keyFile: string }): Promise<PythonServer> {
  const { python } = requirePython();
  return startPythonServer('Python websockets server', python, WEBSOCKETS_SERVER, tls === undefined ? [] : [tls.certFile, tls.keyFile]);
}

/** The Python server on `aiohttp`. */
export function startAiohttpServer(): Promise<PythonServer> {
  const { python } = requireAiohttp();
  return startPythonServer('Python aiohttp server', python, AIOHTTP_SERVER);
}
