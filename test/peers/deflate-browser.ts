/**
 * The page headless Chromium loads for test/websocket-deflate-interop.test.ts. It defines
 * `runDeflate(args)`, which the test calls with `page.evaluate`: it opens a WebSocket to a Corral
 * server (Chromium offers `permessage-deflate; client_max_window_bits` by itself), echoes the
 * messages described by `args.battery` and a repeated incompressible one, asks the server for its
 * socket's byte counts around each echo (`!wire`), and reads a message the server sends in
 * 1000-byte frames. Data is made from `{ kind, size }` descriptions as in test/peers/deflate-python.ts.
 */

export const DEFLATE_PAGE = String.raw`<!doctype html>
<meta charset="utf-8">
<title>Corral permessage-deflate interop</title>
<script>
const ASCII = '{"corral": "permessage-deflate", "id": 12345, "ok": true}\n';
const UNICODE = 'interop \u2713 \u00fcn\u00efc\u00f6d\u00e9 \u{1F40D} \u2014 ';
const TIMEOUT = 10000;

function repeatText(unit, size) {
  return unit.repeat(Math.ceil(size / unit.length) + 1).slice(0, size);
}

function randomBytes(size) {
  const out = new Uint8Array(size);
  for (let at = 0; at < size; at += 65536) crypto.getRandomValues(out.subarray(at, Math.min(size, at + 65536)));
  return out;
}

function make(kind, size) {
  switch (kind) {
    case 'ascii': return repeatText(ASCII, size);
    // Whole units: a cut could split a surrogate pair.
    case 'unicode': return UNICODE.repeat(Math.max(1, Math.round(size / UNICODE.length)));
    case 'random-text': {
      const bytes = randomBytes(size);
      let s = '';
      for (let i = 0; i < size; i++) s += String.fromCharCode(bytes[i]);
      return btoa(s).slice(0, size);
    }
    case 'pattern': {
      const out = new Uint8Array(size);
      for (let i = 0; i < size; i++) out[i] = i % 251;
      return out;
    }
    case 'random': return randomBytes(size);
  }
  throw new Error('unknown kind ' + kind);
}

function same(a, b) {
  if (typeof a === 'string') return a === b;
  if (!(b instanceof ArrayBuffer)) return false;
  const v = new Uint8Array(b);
  if (v.length !== a.length) return false;
  for (let i = 0; i < v.length; i++) if (v[i] !== a[i]) return false;
  return true;
}

function open(url) {
  const ws = new WebSocket(url);
  ws.binaryType = 'arraybuffer';
  const queue = [];
  const waiting = [];
  let closed;
  ws.onmessage = (e) => {
    const w = waiting.shift();
    if (w) w.resolve(e.data); else queue.push(e.data);
  };
  const done = new Promise((resolve) => {
    ws.onclose = (e) => {
      closed = { code: e.code, reason: e.reason, wasClean: e.wasClean };
      for (const w of waiting.splice(0)) w.reject(new Error('closed (' + e.code + ') while a message was awaited'));
      resolve(closed);
    };
  });
  const next = () => {
    if (queue.length > 0) return Promise.resolve(queue.shift());
    if (closed) return Promise.reject(new Error('closed (' + closed.code + ')'));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no message within ' + TIMEOUT + ' ms')), TIMEOUT);
      waiting.push({ resolve: (d) => { clearTimeout(timer); resolve(d); }, reject: (e) => { clearTimeout(timer); reject(e); } });
    });
  };
  const echo = (data) => { ws.send(data); return next(); };
  const opened = new Promise((resolve, reject) => {
    ws.onopen = () => resolve();
    ws.onerror = () => reject(new Error('could not open ' + url));
  });
  return { ws, opened, next, echo, done };
}

async function wire(c) {
  return JSON.parse(await c.echo('!wire'));
}

async function runDeflate(args) {
  const out = {};
  const c = open(args.url);
  await c.opened;
  out.extensions = c.ws.extensions;
  out.serverExt = JSON.parse(await c.echo('!ext')).extensions;
  out.messages = [];
  for (const m of args.battery) {
    const data = make(m.kind, m.size);
    const before = await wire(c);
    const back = await c.echo(data);
    const after = await wire(c);
    out.messages.push({
      label: m.label, same: same(data, back), type: typeof back === 'string' ? 'text' : 'binary',
      up: after.read - before.read, down: after.written - before.written,
    });
  }
  const unit = make('random', 2048);
  out.repeats = [];
  for (let i = 0; i < 4; i++) {
    const before = await wire(c);
    const back = await c.echo(unit);
    const after = await wire(c);
    out.repeats.push({ same: same(unit, back), down: after.written - before.written });
  }
  out.probes = [];
  for (const { block, copies } of args.probes) {
    const unit = randomBytes(block);
    const data = new Uint8Array(block * copies);
    for (let i = 0; i < copies; i++) data.set(unit, i * block);
    const before = await wire(c);
    const back = await c.echo(data);
    const after = await wire(c);
    out.probes.push({ block, size: data.length, same: same(data, back), down: after.written - before.written });
  }
  c.ws.close(1000, 'done');
  out.close = await c.done;

  const f = open(args.url + '&frag=1000');
  await f.opened;
  const before = await wire(f);
  const back = await f.echo('!big 65536');
  const after = await wire(f);
  out.serverFragments = { same: same(make('pattern', 65536), back), down: after.written - before.written };
  f.ws.close(1000);
  await f.done;
  return out;
}
window.runDeflate = runDeflate;
window.ready = true;
</script>
`;
