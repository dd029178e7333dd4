/**
 * The client side of the WebSocket interop tests, for clients with the standard (WHATWG)
 * WebSocket API: a browser, Node's global WebSocket, undici. Plain JavaScript with no imports,
 * so that each of them runs this very file:
 *
 *   in a page:   import { runScenarios } from '/websocket-client.mjs'
 *   with Node:   node websocket-client.mjs <base-url> <tag>   (one JSON line per scenario)
 *   in a test:   import { runScenarios } from './peers/websocket-client.mjs'
 *
 * Each scenario opens its own connection to `<base-url>/<scenario>?client=<tag>` and reports
 * what it saw; it never throws (an error becomes `{ scenario, error }`), and every wait is
 * bounded, so a caller always gets a result to assert on. The server the tests run echoes every
 * message and obeys a few commands sent as text: `!info`, `!close <code> <reason>`.
 */

/** Subprotocols the echo scenario offers: the server knows only the second. */
export const OFFERED_SUBPROTOCOLS = ['corral.unknown', 'corral.echo.v1'];

/** Text with characters of every UTF-8 length. */
export const TEXT = 'hello, Corral: \u00fcn\u00efc\u00f6d\u00e9 \u2713 \u{1F389}';

/** The 256 byte values in order. */
export const ALL_BYTES_HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0')).join('');

/** Size of the large message of the echo scenario. */
export const LARGE_BYTES = 1024 * 1024;

/** The server's `outgoingFrameSize` in the fragmented scenario: it sends its echoes in frames this small. */
export const SERVER_FRAGMENT_BYTES = 100;

/** Text of the fragmented scenario: 3-byte characters across 100-byte frames, so some are split between frames. */
export const FRAGMENTED_TEXT = 'fragments \u2713 '.repeat(60);

/** A deterministic pattern of `n` bytes. */
export function pattern(n, seed = 7) {
  const bytes = new Uint8Array(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    bytes[i] = x >>> 24;
  }
  return bytes;
}

function hex(buffer) {
  return Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, '0')).join('');
}

function sameBytes(a, b) {
  const x = new Uint8Array(a);
  const y = new Uint8Array(b);
  if (x.length !== y.length) return false;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

function kind(data) {
  return Object.prototype.toString.call(data).slice(8, -1);
}

function within(promise, ms, what) {
  let timer;
  const late = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

/** A connection whose messages are read one at a time, in order. */
function connection(ws, timeoutMs) {
  ws.binaryType = 'arraybuffer';
  const queued = [];
  const waiting = [];
  let closeEvent;
  const opened = new Promise((resolve, reject) => {
    ws.addEventListener('open', () => resolve(), { once: true });
    ws.addEventListener('close', (ev) => reject(new Error(`the connection closed (${ev.code}) before it opened`)), { once: true });
  });
  opened.catch(() => {});
  const closed = new Promise((resolve) => {
    ws.addEventListener('close', (ev) => {
      closeEvent = { code: ev.code, reason: ev.reason, wasClean: ev.wasClean };
      for (const w of waiting.splice(0)) w.reject(new Error(`the connection closed (${ev.code} ${ev.reason}) while a message was awaited`));
      resolve(closeEvent);
    });
  });
  ws.addEventListener('message', (ev) => {
    const w = waiting.shift();
    if (w !== undefined) w.resolve(ev.data);
    else queued.push(ev.data);
  });
  return {
    ws,
    open: () => within(opened, timeoutMs, 'open event'),
    next() {
      if (queued.length > 0) return Promise.resolve(queued.shift());
      if (closeEvent !== undefined) return Promise.reject(new Error(`the connection is closed (${closeEvent.code})`));
      return within(new Promise((resolve, reject) => waiting.push({ resolve, reject })), timeoutMs, 'message');
    },
    closed: () => within(closed, timeoutMs, 'close event'),
    /** Send, then read the next message. */
    async echo(data) {
      ws.send(data);
      return this.next();
    },
    abort() {
      if (closeEvent === undefined) ws.close();
    },
  };
}

/**
 * Run every scenario against `baseUrl` (`ws://host:port` or `wss://...`), one after the other.
 * `open(url, protocols)` makes the client's WebSocket.
 */
export async function runScenarios(open, baseUrl, tag, options = {}) {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const results = [];
  for (const [scenario, run] of Object.entries(SCENARIOS)) {
    let path = `/${scenario}?client=${encodeURIComponent(tag)}`;
    let conn;
    try {
      const result = await run((query = '', protocols = []) => {
        path += query;
        conn = connection(open(`${baseUrl}${path}`, protocols), timeoutMs);
        return conn;
      });
      results.push({ scenario, path, ...result });
    } catch (err) {
      results.push({ scenario, path, error: String(err?.stack ?? err) });
      conn?.abort();
    }
  }
  return results;
}

const SCENARIOS = {
  /** Subprotocol, text, binary, a large message and the server's view; the client closes with 4000 'done'. */
  async echo(connect) {
    const c = connect('', OFFERED_SUBPROTOCOLS);
    await c.open();
    const protocol = c.ws.protocol;
    const text = await c.echo(TEXT);
    const bytes = Uint8Array.from({ length: 256 }, (_, i) => i);
    const binary = await c.echo(bytes.buffer);
    const large = pattern(LARGE_BYTES);
    const largeEcho = await c.echo(large);
    const info = JSON.parse(await c.echo('!info'));
    c.ws.close(4000, 'done');
    const close = await c.closed();
    return {
      protocol,
      text,
      binary: { kind: kind(binary), hex: typeof binary === 'string' ? binary : hex(binary) },
      large: { kind: kind(largeEcho), length: largeEcho.byteLength, same: sameBytes(largeEcho, large) },
      info,
      close,
    };
  },

  /** The server closes with a code and reason when asked. */
  async 'server-close'(connect) {
    const c = connect();
    await c.open();
    const protocol = c.ws.protocol;
    c.ws.send('!close 4001 server says bye \u2713');
    const close = await c.closed();
    return { protocol, close };
  },

  /** The server sends its echoes in small frames: the client puts them back together. */
  async fragmented(connect) {
    const c = connect(`&frag=${SERVER_FRAGMENT_BYTES}`);
    await c.open();
    const text = await c.echo(FRAGMENTED_TEXT);
    const bytes = pattern(1000, 11);
    const binary = await c.echo(bytes);
    c.ws.close(1000);
    const close = await c.closed();
    return {
      textSame: text === FRAGMENTED_TEXT,
      textLength: typeof text === 'string' ? text.length : -1,
      binary: { kind: kind(binary), length: binary.byteLength, same: sameBytes(binary, bytes) },
      close,
    };
  },
};

async function main() {
  const [baseUrl, tag] = process.argv.slice(2);
  if (baseUrl === undefined || tag === undefined) throw new Error('usage: websocket-client.mjs <base-url> <tag>');
  process.stdout.write(`${JSON.stringify({ runtime: `node ${process.version}`, webSocket: typeof WebSocket })}\n`);
  const results = await runScenarios((url, protocols) => new WebSocket(url, protocols), baseUrl, tag);
  for (const r of results) process.stdout.write(`${JSON.stringify(r)}\n`);
}

// Run as a program (not imported, not in a page).
if (typeof process !== 'undefined' && process.argv?.[1] !== undefined && decodeURIComponent(new URL(import.meta.url).pathname) === process.argv[1]) {
  main().then(
    () => process.exit(0),
    (err) => {
      process.stderr.write(`${err?.stack ?? err}\n`);
      process.exit(1);
    },
  );
}
