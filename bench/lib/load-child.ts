/**
 * The load generator's side of a load process (see load-process.ts for the driver's side): the
 * requests and replies, and the loop that answers them over IPC for a set of client connections.
 *
 * Requests (each answered with a {@link LoadReply} carrying the same `id`):
 *
 * - `open`: open `count` connections to 127.0.0.1:`port`, at most `concurrency` opening at a
 *   time; they are added to the ones already open.
 * - `ping-pong`: on every open connection, `messages` round trips of a `size`-byte message,
 *   `window` in flight per connection.
 * - `close`: close every connection.
 *
 * The process sends `{ type: 'ready' }` once it listens for requests, and exits when the driver
 * goes away. Every reply carries this process's CPU time over the request.
 */

export type ClientKind = 'raw' | 'ws';

export type OpenRequest = { type: 'open'; id: number; port: number; count: number; concurrency: number; client: ClientKind };
export type PingPongRequest = { type: 'ping-pong'; id: number; text: boolean; size: number; messages: number; window: number; check: boolean };
export type LoadRequest = OpenRequest | PingPongRequest | { type: 'close'; id: number };

export interface LoadReply {
  type: 'done';
  id: number;
  /** Set when the request failed. */
  error?: string;
  /** This process's CPU time over the request. */
  cpu: NodeJS.CpuUsage;
  /** Connections open after the request. */
  open: number;
}

export interface LoadClient {
  close(): Promise<void>;
}

/** What a load generator does with each request; serveLoad does the rest. */
export interface LoadGenerator<C extends LoadClient> {
  /** One connection of an `open` request, resolved once it is ready for messages. */
  connect(req: OpenRequest): Promise<C>;
  /** Made once per `ping-pong` request: starts one connection's share, which calls `done` once (with an error if it failed). */
  start(req: PingPongRequest): (client: C, done: (err?: Error) => void) => void;
  /** Called before the request's CPU time starts; returns what to add to its reply. */
  begin?(req: LoadRequest): (reply: LoadReply, clients: readonly C[]) => LoadReply;
}

/** A client whose constructor reports, once, whether it opened: resolves to it, or rejects. */
export function opened<C>(make: (opened: (err?: Error) => void) => C): Promise<C> {
  return new Promise((resolve, reject) => {
    const client: C = make((err) => (err === undefined ? resolve(client) : reject(err)));
  });
}

/**
 * Answer the driver's requests with `gen`; `script` and `parent` name this process and the
 * benchmark that forks it, for the message when it is run by hand (exit 2).
 */
export function serveLoad<C extends LoadClient>(script: string, parent: string, gen: LoadGenerator<C>): void {
  let clients: C[] = [];

  /** `count` more connections, `concurrency` opening at a time; the lanes in flight finish before the first failure is thrown. */
  const open = async (req: OpenRequest): Promise<void> => {
    let next = 0;
    let failure: Error | undefined;
    const lane = async (): Promise<void> => {
      while (next < req.count && failure === undefined) {
        next++;
        try {
          clients.push(await gen.connect(req));
        } catch (err) {
          failure ??= err as Error;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(req.concurrency, req.count) }, lane));
    if (failure !== undefined) throw failure;
  };

  /** Every connection runs its share at once; rejects on the first failure. */
  const pingPong = (req: PingPongRequest): Promise<void> => {
    const start = gen.start(req);
    return new Promise((resolve, reject) => {
      let left = clients.length;
      if (left === 0) {
        resolve();
        return;
      }
      let failed = false;
      for (const c of clients) {
        start(c, (err) => {
          if (failed) return;
          if (err !== undefined) {
            failed = true;
            reject(err);
          } else if (--left === 0) {
            resolve();
          }
        });
      }
    });
  };

  const closeAll = async (): Promise<void> => {
    const all = clients;
    clients = [];
    await Promise.all(all.map((c) => c.close()));
  };

  const handle = async (req: LoadRequest): Promise<void> => {
    const finish = gen.begin?.(req);
    const cpu0 = process.cpuUsage();
    let error: string | undefined;
    try {
      if (req.type === 'open') await open(req);
      else if (req.type === 'ping-pong') await pingPong(req);
      else await closeAll();
    } catch (err) {
      error = err instanceof Error ? err.message : String(err);
    }
    let reply: LoadReply = { type: 'done', id: req.id, cpu: process.cpuUsage(cpu0), open: clients.length };
    if (finish !== undefined) reply = finish(reply, clients);
    if (error !== undefined) reply.error = error;
    process.send?.(reply);
  };

  if (process.send === undefined) {
    process.stderr.write(`${script} runs as a child process of ${parent}\n`);
    process.exit(2);
  }
  process.on('message', (m: LoadRequest) => void handle(m));
  process.on('disconnect', () => process.exit(0));
  process.send({ type: 'ready' });
}
