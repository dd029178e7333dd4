/**
 * Python's `websockets` (10.4 on Debian bookworm, its legacy asyncio API) as a permessage-deflate
 * peer for test/websocket-deflate-interop.test.ts: a client that runs a batch of cases against
 * Corral servers in one process, and a process of several servers, one per deflate setting.
 *
 * Both sides count what crosses the wire: their PerMessageDeflate extension object is swapped for
 * a subclass that records, for every data frame, whether it was a continuation, its RSV1 bit and
 * its payload length as sent on the wire (compressed when RSV1 is set on its message's first
 * frame). That tells the tests whether Corral compressed, and how well.
 *
 * The data of a message is made from a `{ kind, size }` description (see `make` below), the same
 * descriptions the TypeScript side makes its own data from, so Python and Node agree on what is
 * compressible without sharing bytes.
 */

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requirePython, runPeer } from './process.js';
import { startPythonServer, type PythonServer } from './python-servers.js';

/** Shared by both scripts: the counting extension and the message makers. */
const COMMON = String.raw`
import asyncio
import base64
import json
import random
import sys

import websockets
from websockets.exceptions import ConnectionClosed
from websockets.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory, PerMessageDeflate, ServerPerMessageDeflateFactory,
)
from websockets.frames import OP_BINARY, OP_CONT, OP_TEXT

TIMEOUT = 10
DATA_OPCODES = (OP_TEXT, OP_BINARY, OP_CONT)
ASCII = '{"corral": "permessage-deflate", "id": 12345, "ok": true}\n'
UNICODE = 'interop \u2713 \u00fcn\u00efc\u00f6d\u00e9 \U0001F40D \u2014 '


class CountingDeflate(PerMessageDeflate):
    """Records [continuation, rsv1, wire length] of every data frame, both ways."""

    def decode(self, frame, *, max_size=None):
        if frame.opcode in DATA_OPCODES:
            self.received.append([frame.opcode == OP_CONT, bool(frame.rsv1), len(frame.data)])
        return super().decode(frame, max_size=max_size)

    def encode(self, frame):
        out = super().encode(frame)
        if out.opcode in DATA_OPCODES:
            self.sent.append([out.opcode == OP_CONT, bool(out.rsv1), len(out.data)])
        return out


def counting(ext):
    ext.__class__ = CountingDeflate
    ext.received = []
    ext.sent = []
    return ext


class CountingClientFactory(ClientPerMessageDeflateFactory):
    def process_response_params(self, params, accepted_extensions):
        return counting(super().process_response_params(params, accepted_extensions))


class CountingServerFactory(ServerPerMessageDeflateFactory):
    def process_request_params(self, params, accepted_extensions):
        response, ext = super().process_request_params(params, accepted_extensions)
        return response, counting(ext)


def counter(ws):
    for ext in ws.extensions:
        if isinstance(ext, CountingDeflate):
            return ext
    return None


def repeat(unit, size):
    return (unit * (size // len(unit) + 1))[:size]


def make(kind, size, seed=1):
    """The message a { kind, size } description stands for (size in bytes; in characters for unicode)."""
    rng = random.Random(seed * 1000003 + size)
    if kind == 'ascii':
        return repeat(ASCII, size)
    if kind == 'unicode':
        return UNICODE * max(1, round(size / len(UNICODE)))
    if kind == 'random-text':
        return base64.b64encode(rng.randbytes(size))[:size].decode('ascii')
    if kind == 'pattern':
        return repeat(bytes(range(251)), size)
    if kind == 'random':
        return rng.randbytes(size)
    raise ValueError(kind)


def emit(**fields):
    print(json.dumps(fields), flush=True)
`;

/** The client: `python3 client.py <cases.json>`; one JSON line per case. */
export const DEFLATE_PYTHON_CLIENT = String.raw`${COMMON}

async def recv(ws):
    return await asyncio.wait_for(ws.recv(), TIMEOUT)


async def echo(ws, message):
    ext = counter(ws)
    if ext is not None:
        ext.received.clear()
    await ws.send(message)
    back = await recv(ws)
    frames = list(ext.received) if ext is not None else None
    return back, frames


def factory(spec):
    if spec is None:
        return []
    kwargs = dict(spec)
    kwargs.setdefault('compress_settings', {'memLevel': 5})
    return [CountingClientFactory(**kwargs)]


async def run_case(case):
    url = case['url']
    common = dict(max_size=None, ping_interval=None, open_timeout=TIMEOUT, close_timeout=TIMEOUT, compression=None)
    result = {'case': case['name']}
    async with websockets.connect(url, extensions=factory(case['offer']), **common) as ws:
        result['header'] = ws.response_headers.get('Sec-WebSocket-Extensions')
        ext = counter(ws)
        result['local'] = None if ext is None else {
            'serverNoContextTakeover': ext.remote_no_context_takeover,
            'clientNoContextTakeover': ext.local_no_context_takeover,
            'serverMaxWindowBits': ext.remote_max_window_bits,
            'clientMaxWindowBits': ext.local_max_window_bits,
        }
        back, _ = await echo(ws, '!ext')
        result['serverExt'] = json.loads(back)['extensions']

        messages = []
        for m in case['battery']:
            data = make(m['kind'], m['size'])
            back, frames = await echo(ws, data)
            messages.append({
                'label': m['label'], 'same': back == data, 'type': type(back).__name__, 'frames': frames,
                'length': len(back), 'bytes': len(data.encode('utf-8')) if isinstance(data, str) else len(data),
            })
        result['messages'] = messages

        # Context takeover: the same incompressible message, several times in a row.
        unit = make('random', 2048, seed=99)
        repeats = []
        for _ in range(4):
            back, frames = await echo(ws, unit)
            repeats.append({'same': back == unit, 'frames': frames})
        result['repeats'] = repeats

        # Window probes (see the test): a random block, several copies of it.
        probes = []
        for probe in case['probes']:
            data = make('random', probe['block'], seed=7) * probe['copies']
            back, frames = await echo(ws, data)
            probes.append({'block': probe['block'], 'size': len(data), 'same': back == data, 'frames': frames})
        result['probes'] = probes

        # A compressed message in fragments, a ping between them: small (inflated in one go) and large.
        pongs = []
        fragmented = []
        for parts in (
            [make('pattern', 3000), make('random', 1), make('ascii', 500).encode()],
            [make('pattern', 100_000), make('random', 20_000, seed=5), make('pattern', 150_000)],
        ):
            async def fragments():
                yield parts[0]
                pongs.append(await ws.ping(b'between fragments'))
                for p in parts[1:]:
                    yield p
            await ws.send(fragments())
            back = await recv(ws)
            fragmented.append({'same': back == b''.join(parts), 'length': len(back)})
        text_parts = [make('unicode', 2000), make('ascii', 10), make('unicode', 30_000)]
        await ws.send(iter(text_parts))
        back = await recv(ws)
        fragmented.append({'same': back == ''.join(text_parts), 'length': len(back)})
        for pong in pongs:
            await asyncio.wait_for(pong, TIMEOUT)
        result['fragmented'] = fragmented
        result['pongs'] = len(pongs)

        await ws.close(1000, 'done')
        result['close'] = ws.close_code

    # The server sends its messages in 1000-byte frames.
    sep = '&' if '?' in url else '?'
    async with websockets.connect(url + sep + 'frag=1000', extensions=factory(case['offer']), **common) as ws:
        back, frames = await echo(ws, '!big 65536')
        result['serverFragments'] = [{'same': back == make('pattern', 65536), 'frames': frames}]
        data = make('random', 8192, seed=3)
        back, frames = await echo(ws, data)
        result['serverFragments'].append({'same': back == data, 'frames': frames})
        await ws.close()
    return result


async def run_bomb(case):
    # max_size is this client's limit: unlimited, the server's limit is what is tested.
    common = dict(max_size=None, ping_interval=None, open_timeout=TIMEOUT, close_timeout=TIMEOUT, compression=None)
    result = {'case': case['name']}
    async with websockets.connect(case['url'], extensions=factory(case['offer']), **common) as ws:
        result['header'] = ws.response_headers.get('Sec-WebSocket-Extensions')
        limit = case['limit']
        back, _ = await echo(ws, bytes(limit))
        result['atLimit'] = back == bytes(limit)
        ext = counter(ws)
        ext.sent.clear()
        await ws.send(bytes(case['bomb']))
        result['bombWire'] = sum(f[2] for f in ext.sent)
        try:
            data = await recv(ws)
            result['error'] = f'a message came back instead of a close: {len(data)} bytes'
        except ConnectionClosed:
            await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
        result['close'] = ws.close_code
    return result


async def main(path):
    with open(path) as f:
        cases = json.load(f)
    emit(case='version', websockets=websockets.__version__, python=sys.version.split()[0])
    for case in cases:
        try:
            result = await asyncio.wait_for(run_bomb(case) if case.get('bomb') else run_case(case), 60)
        except BaseException as exc:  # reported per case; the next one still runs
            result = {'case': case['name'], 'error': f'{type(exc).__name__}: {exc}'}
        emit(**result)


if __name__ == '__main__':
    asyncio.run(main(sys.argv[1]))
`;

/** The servers: `python3 server.py <configs.json>`; prints `{"port": first, "ports": {name: port}}`. */
export const DEFLATE_PYTHON_SERVERS = String.raw`${COMMON}

closed = {}


def closed_event(path):
    if path not in closed:
        closed[path] = [asyncio.Event(), None]
    return closed[path]


async def handler(ws, *_):
    path = ws.path
    try:
        async for message in ws:
            if isinstance(message, bytes) or not message.startswith('!'):
                await ws.send(message)
                continue
            name, *args = message[1:].split(' ')
            if name == 'ext':
                await ws.send(json.dumps({'extensions': ws.response_headers.get('Sec-WebSocket-Extensions', '')}))
            elif name == 'stats':
                ext = counter(ws)
                if ext is None:
                    await ws.send(json.dumps({'received': None, 'sent': None}))
                    continue
                # The last frame received is this command's.
                stats = {'received': ext.received[:-1], 'sent': ext.sent}
                ext.received = []
                ext.sent = []
                await ws.send(json.dumps(stats))
            elif name == 'fragping':
                total, size = int(args[0]), int(args[1])
                data = make('pattern', total)

                async def fragments():
                    for at in range(0, total, size):
                        yield data[at:at + size]
                        if at == 0:
                            await ws.ping(b'between fragments')
                await ws.send(fragments())
            elif name == 'zeros':
                await ws.send(bytes(int(args[0])))
            elif name == 'closed':
                entry = closed_event(args[0])
                await asyncio.wait_for(entry[0].wait(), TIMEOUT)
                await ws.send(json.dumps({'code': entry[1]}))
            else:
                await ws.send('unknown command ' + name)
    except ConnectionClosed:
        pass
    finally:
        try:
            await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
        finally:
            entry = closed_event(path)
            entry[1] = ws.close_code
            entry[0].set()


async def main(configs):
    ports = {}
    for name, config in configs.items():
        if config is None:
            kwargs = dict(compression=None)
        elif config == 'builtin':
            kwargs = dict(compression='deflate')
        else:
            factory_args = dict(config)
            factory_args.setdefault('compress_settings', {'memLevel': 5})
            kwargs = dict(compression=None, extensions=[CountingServerFactory(**factory_args)])
        server = await websockets.serve(handler, '127.0.0.1', 0, max_size=None, ping_interval=None, **kwargs)
        ports[name] = server.sockets[0].getsockname()[1]
    first = next(iter(ports.values()))
    print(json.dumps({'port': first, 'ports': ports, 'websockets': websockets.__version__}), flush=True)
    await asyncio.Future()


if __name__ == '__main__':
    asyncio.run(main(json.loads(sys.argv[1])))
`;

/** A message, as the Python scripts (and the tests' own makers) build it. */
export interface MessageSpec {
  label: string;
  kind: 'ascii' | 'unicode' | 'random-text' | 'pattern' | 'random';
  size: number;
}

/** ClientPerMessageDeflateFactory's keyword arguments (`compress_settings` defaults to memLevel 5). */
export interface PythonOffer {
  server_no_context_takeover?: boolean;
  client_no_context_takeover?: boolean;
  server_max_window_bits?: number;
  client_max_window_bits?: number | boolean | null;
  compress_settings?: Record<string, number>;
}

/** One connection's worth of work for the Python client. */
export type PythonClientCase =
  | { name: string; url: string; offer: PythonOffer | null; battery: readonly MessageSpec[]; probes: readonly { block: number; copies: number }[]; bomb?: undefined }
  | { name: string; url: string; offer: PythonOffer | null; bomb: number; limit: number };

/** [continuation, rsv1, wire length] of each data frame. */
export type WireFrame = [boolean, boolean, number];

/** What the Python client reports for a case (fields per scenario; `error` when it failed). */
export interface PythonClientResult {
  case: string;
  error?: string;
  header?: string | null;
  local?: Record<string, unknown> | null;
  serverExt?: string;
  messages?: { label: string; same: boolean; type: string; frames: WireFrame[] | null; length: number; bytes: number }[];
  repeats?: { same: boolean; frames: WireFrame[] | null }[];
  probes?: { block: number; size: number; same: boolean; frames: WireFrame[] | null }[];
  fragmented?: { same: boolean; length: number }[];
  pongs?: number;
  close?: number | null;
  serverFragments?: { same: boolean; frames: WireFrame[] | null }[];
  atLimit?: boolean;
  bombWire?: number;
  [field: string]: unknown;
}

/**
 * Run the cases in one Python process, in order. Resolves with each case's result by name and
 * the library's version; rejects (with stderr) when the process fails as a whole.
 */
export async function runDeflatePythonClient(cases: readonly PythonClientCase[]): Promise<{ results: Map<string, PythonClientResult>; version: string }> {
  const { python } = requirePython();
  const dir = await mkdtemp(join(tmpdir(), 'corral-deflate-py-'));
  try {
    const script = join(dir, 'client.py');
    const input = join(dir, 'cases.json');
    await writeFile(script, DEFLATE_PYTHON_CLIENT);
    await writeFile(input, JSON.stringify(cases));
    const r = await runPeer('python websockets deflate client', python, [script, input], {
      timeoutMs: 120_000,
      env: { PYTHONUNBUFFERED: '1', PYTHONDONTWRITEBYTECODE: '1' },
    });
    const results = new Map<string, PythonClientResult>();
    let version = '';
    for (const line of r.stdout.split('\n')) {
      if (line.trim() === '') continue;
      let parsed: PythonClientResult;
      try {
        parsed = JSON.parse(line) as PythonClientResult;
      } catch {
        throw new Error(`the Python client printed a line that is not JSON: ${line}\nstderr:\n${r.stderr}`);
      }
      if (parsed.case === 'version') version = String(parsed.websockets);
      else results.set(parsed.case, parsed);
    }
    if (r.code !== 0) {
      throw new Error(`the Python client failed (${r.describe}) after cases ${[...results.keys()].join(', ') || 'none'}:\n${r.stderr}`);
    }
    return { results, version };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** A server setting: null (no compression), 'builtin' (`compression='deflate'`), or ServerPerMessageDeflateFactory's keyword arguments. */
export type PythonServerConfig = null | 'builtin' | {
  server_no_context_takeover?: boolean;
  client_no_context_takeover?: boolean;
  server_max_window_bits?: number;
  client_max_window_bits?: number;
  require_client_max_window_bits?: boolean;
  compress_settings?: Record<string, number>;
};

export interface DeflatePythonServers extends PythonServer {
  /** Port of each named server. */
  ports: Record<string, number>;
}

/** Start one Python process serving every config on a port of its own. */
export async function startDeflatePythonServers(configs: Record<string, PythonServerConfig>): Promise<DeflatePythonServers> {
  const { python } = requirePython();
  const server = await startPythonServer('Python websockets deflate servers', python, DEFLATE_PYTHON_SERVERS, [JSON.stringify(configs)]);
  return { ...server, ports: server.info.ports as Record<string, number> };
}
