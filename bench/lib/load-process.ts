/**
 * The driver's side of a load generator run as a child process (see load-child.ts for the other
 * side): start it, send it requests over IPC one at a time and await their replies, stop it.
 */

import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { LoadReply, LoadRequest } from './load-child.js';
import { spawnNode, stopChild } from './server-process.js';

const WS_LOAD_SCRIPT = fileURLToPath(new URL('./ws-load.ts', import.meta.url));
const LOAD_START_TIMEOUT_MS = 20_000;
const LOAD_STOP_TIMEOUT_MS = 5_000;

/** A request without its `id`, which LoadProcess assigns. */
export type RequestBody = LoadRequest extends infer R ? (R extends LoadRequest ? Omit<R, 'id'> : never) : never;

/** One load generator process (bench/lib/ws-load.ts, or another script speaking its protocol), answering one request at a time. */
export class LoadProcess {
  #child: ChildProcess;
  #nextId = 1;
  #pending = new Map<number, { resolve: (r: LoadReply) => void; reject: (err: Error) => void }>();
  #exited: Promise<void>;

  private constructor(child: ChildProcess, exited: Promise<void>) {
    this.#child = child;
    this.#exited = exited;
    child.on('message', (m: LoadReply | { type: 'ready' }) => {
      if (m.type !== 'done') return;
      const p = this.#pending.get(m.id);
      this.#pending.delete(m.id);
      if (m.error !== undefined) p?.reject(new Error(`load generator: ${m.error}`));
      else p?.resolve(m);
    });
    child.once('exit', (code, signal) => {
      for (const p of this.#pending.values()) p.reject(new Error(`a load generator exited (code ${code}, signal ${signal})`));
      this.#pending.clear();
    });
  }

  static async start(fdLimit: number | undefined, script = WS_LOAD_SCRIPT, args: readonly string[] = []): Promise<LoadProcess> {
    const child = spawnNode(script, args, { stdio: 'ignore', fdLimit });
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`load generator: not ready within ${LOAD_START_TIMEOUT_MS} ms`)), LOAD_START_TIMEOUT_MS);
        const onExit = (code: number | null): void => {
          clearTimeout(timer);
          reject(new Error(`load generator exited before it was ready (code ${code})`));
        };
        child.once('exit', onExit);
        child.once('message', () => {
          clearTimeout(timer);
          child.off('exit', onExit);
          resolve();
        });
      });
    } catch (err) {
      child.kill('SIGKILL');
      throw err;
    }
    return new LoadProcess(child, exited);
  }

  request(body: RequestBody): Promise<LoadReply> {
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      if (!this.#child.connected) {
        reject(new Error('the load generator is gone'));
        return;
      }
      this.#pending.set(id, { resolve, reject });
      this.#child.send({ ...body, id } as LoadRequest);
    });
  }

  /** Close the IPC channel (the generator exits), SIGKILL if it has not exited in time. */
  stop(): Promise<void> {
    return stopChild(this.#child, this.#exited, LOAD_STOP_TIMEOUT_MS, () => {
      if (this.#child.connected) this.#child.disconnect();
    });
  }
}
