/**
 * A client on Python's `websockets` library (its asyncio API, which every version from 10 on
 * has, Debian bookworm's 10.4 included). The script is written to a temporary file and run with
 * the Python that can import the library; it prints one JSON object per step on stdout.
 */

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requirePython, runPeer } from './process.js';

/** The client: `python3 client.py <base-url> <tag> [ca-file]`. */
export const PYTHON_CLIENT = String.raw`
import asyncio
import json
import random
import ssl
import sys

import websockets
from websockets.exceptions import ConnectionClosed

TIMEOUT = 10
TEXT = 'hello from Python: \u00fcn\u00efc\u00f6d\u00e9 \u2713 \U0001F40D'
FRAGMENTS = ['frag', 'mented ', 't\u00ebxt \u2713']
LARGE = random.Random(7).randbytes(1024 * 1024)


def emit(step, **fields):
    print(json.dumps({'step': step, **fields}), flush=True)


async def echo(ws, message):
    await ws.send(message)
    return await asyncio.wait_for(ws.recv(), TIMEOUT)


async def main(base, tag, cafile):
    context = ssl.create_default_context(cafile=cafile) if base.startswith('wss:') else None
    common = dict(ssl=context, max_size=None, ping_interval=None, open_timeout=TIMEOUT, close_timeout=TIMEOUT)
    emit('version', websockets=websockets.__version__, python=sys.version.split()[0])

    async with websockets.connect(f'{base}/echo?client={tag}', subprotocols=['corral.echo.v1'], **common) as ws:
        emit('open', subprotocol=ws.subprotocol)
        emit('text', data=await echo(ws, TEXT))
        data = await echo(ws, bytes(range(256)))
        emit('binary', type=type(data).__name__, hex=data.hex() if isinstance(data, bytes) else None)
        data = await echo(ws, LARGE)
        emit('large', type=type(data).__name__, length=len(data), same=data == LARGE)
        # An iterable is sent as one fragmented message, a frame per item.
        emit('fragmented', data=await echo(ws, FRAGMENTS))
        pong = await ws.ping(b'python ping')
        await asyncio.wait_for(pong, TIMEOUT)
        emit('ping', pong=True)
        emit('info', info=json.loads(await echo(ws, '!info')))
        await ws.close(code=4002, reason='python says bye')
        emit('close', code=ws.close_code, reason=ws.close_reason)

    async with websockets.connect(f'{base}/server-close?client={tag}', **common) as ws:
        await ws.send('!close 4003 the server closes \u2713')
        try:
            data = await asyncio.wait_for(ws.recv(), TIMEOUT)
            emit('server-close', error=f'a message came instead of the close: {data!r}')
        except ConnectionClosed:
            await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
            emit('server-close', code=ws.close_code, reason=ws.close_reason)


if __name__ == '__main__':
    base, tag = sys.argv[1], sys.argv[2]
    cafile = sys.argv[3] if len(sys.argv) > 3 else None
    asyncio.run(asyncio.wait_for(main(base, tag, cafile), 60))
`;

/** One line of the client's output. */
export interface PythonStep {
  step: string;
  [field: string]: unknown;
}

export interface PythonRun {
  /** The steps, keyed by name. */
  steps: Map<string, PythonStep>;
  /** The interpreter that ran the script. */
  python: string;
}

/**
 * Run the client against `baseUrl` (`ws://` or `wss://`, trusting `caFile`). Rejects, with the
 * script's stderr, when it does not exit 0.
 */
export async function runPythonClient(baseUrl: string, tag: string, caFile?: string): Promise<PythonRun> {
  const { python } = requirePython();
  const dir = await mkdtemp(join(tmpdir(), 'corral-python-ws-'));
  try {
    const script = join(dir, 'client.py');
    await writeFile(script, PYTHON_CLIENT);
    const r = await runPeer('python websockets client', python, [script, baseUrl, tag, ...(caFile === undefined ? [] : [caFile])], {
      timeoutMs: 90_000,
      env: { PYTHONUNBUFFERED: '1', PYTHONDONTWRITEBYTECODE: '1' },
    });
    const steps = new Map<string, PythonStep>();
    for (const line of r.stdout.split('\n')) {
      if (line.trim() === '') continue;
      let step: PythonStep;
      try {
        step = JSON.parse(line) as PythonStep;
      } catch {
        throw new Error(`the Python client printed a line that is not JSON: ${line}\nstderr:\n${r.stderr}`);
      }
      steps.set(step.step, step);
    }
    if (r.code !== 0) {
      throw new Error(`the Python client failed (${r.describe}) after steps ${[...steps.keys()].join(', ') || 'none'}:\n${r.stderr}`);
    }
    return { steps, python };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
