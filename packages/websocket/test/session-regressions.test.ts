import { once } from 'node:events';
import { afterAll, beforeAll, expect, it } from 'vitest';
import WebSocket from 'ws';
import { startListener, tcp, type Listener } from '@corral/listener';
import { connect, websocketProtocol, type TerminateReason } from '../src/index.js';

// A session that fails the connection keeps reading (without interpreting), so the peer's close
// echo and FIN are seen and the connection ends at once, not at closeTimeout.
it('a server session that fails a client closes its socket when the client echoes the close and closes', async () => {
  let ended!: (r: TerminateReason) => void;
  const terminated = new Promise<TerminateReason>((r) => { ended = r; });
  const l = await startListener('ws-regression-fail-close', tcp, { socketOpts: { host: '127.0.0.1', port: 0 } }, websocketProtocol(
    { websocketHandle: () => undefined, terminate: (reason: TerminateReason) => ended(reason) },
    { session: { closeTimeout: 60_000 } },
  ), undefined);
  try {
    const ws = new WebSocket(`ws://127.0.0.1:${l.getPort()}/`);
    await once(ws, 'open');
    ws.send(Buffer.from([0xff]), { binary: false }); // invalid UTF-8 in a text frame
    const [code] = await once(ws, 'close'); // ws echoed the 1007 and closed its socket
    expect(code).toBe(1007);
    expect(await terminated).toMatchObject({ type: 'error', error: 'badencoding' });
  } finally {
    await l.stop();
  }
}, 10_000);

// A close frame waits its turn behind the messages that arrived before it, even while an async
// callback holds them: every one is handled, in order, before the close is answered.
it('messages received before the close frame are all handled, in order, even behind an async callback', async () => {
  const handled: string[] = [];
  let release!: () => void;
  const gate = new Promise<void>((r) => { release = r; });
  let ended!: () => void;
  const terminated = new Promise<void>((r) => { ended = r; });
  const l = await startListener('ws-regression-close-order', tcp, { socketOpts: { host: '127.0.0.1', port: 0 } }, websocketProtocol({
    async websocketHandle(f: { type: string; data?: unknown }) {
      if (f.type !== 'text') return;
      handled.push(f.data as string);
      if (f.data === 'a') await gate;
    },
    terminate: () => ended(),
  }), undefined);
  try {
    const c = await connect(`ws://127.0.0.1:${l.getPort()}/`);
    c.send(['a', 'b']);
    const closing = c.close();
    await expect.poll(() => handled.length).toBe(1);
    release();
    expect(await closing).toEqual({ type: 'stop' });
    await terminated;
    expect(handled).toEqual(['a', 'b']);
  } finally {
    await l.stop();
  }
});

// Text sent again as received goes out as the bytes that came (no fresh encoding), but only when
// those bytes were checked as UTF-8: unchecked invalid bytes are sent as their decoded string.
it('echoed text is the UTF-8 of the string the handler saw, whether or not the bytes were validated', async () => {
  const l = await startListener('ws-regression-text-echo', tcp, { socketOpts: { host: '127.0.0.1', port: 0 } }, websocketProtocol(
    { websocketHandle: (f: { type: string; data?: unknown }) => (f.type === 'text' ? { reply: f.data as string } : undefined) },
    { session: { validateUtf8: false } },
  ), undefined);
  const checked = await startListener('ws-regression-text-echo-checked', tcp, { socketOpts: { host: '127.0.0.1', port: 0 } }, websocketProtocol(
    { websocketHandle: (f: { type: string; data?: unknown }) => (f.type === 'text' ? { reply: [f.data as string, `${f.data as string}!`] } : undefined) },
  ), undefined);
  try {
    const ws = new WebSocket(`ws://127.0.0.1:${l.getPort()}/`);
    await once(ws, 'open');
    ws.send(Buffer.from([0xff, 0x41]), { binary: false });
    const [data] = await once(ws, 'message');
    expect((data as Buffer).toString('hex')).toBe('efbfbd41');
    ws.close();
    const good = new WebSocket(`ws://127.0.0.1:${checked.getPort()}/`);
    await once(good, 'open');
    const messages: string[] = [];
    good.on('message', (d: Buffer) => messages.push(d.toString('utf8')));
    good.send('héllo ✓');
    await expect.poll(() => messages.length).toBe(2);
    expect(messages).toEqual(['héllo ✓', 'héllo ✓!']);
    good.close();
  } finally {
    await l.stop();
    await checked.stop();
  }
}, 10_000);
