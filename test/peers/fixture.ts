/**
 * Shared state for a describe block (or a whole file), set up once and torn down after, with the
 * setup's failure rethrown by every test that asks for the state: a peer that is not installed
 * fails each test with the reason instead of skipping it.
 */

import { afterAll, beforeAll } from 'vitest';

/** Registers a teardown step; a fixture runs them in reverse order, also after a setup that failed half way. */
export type Cleanup = (fn: () => Promise<unknown> | unknown) => void;

export interface FixtureOptions {
  /** Bound on the setup and on the teardown, each, in milliseconds (default: the hook timeout). */
  timeoutMs?: number;
}

/** `setup` runs in beforeAll, the cleanups in afterAll; the returned function gives the state to tests. */
export function fixture<T>(setup: (cleanup: Cleanup) => Promise<T>, opts: FixtureOptions = {}): () => T {
  const fns: (() => Promise<unknown> | unknown)[] = [];
  let state: { ok: true; value: T } | { ok: false; error: unknown } | undefined;
  beforeAll(async () => {
    try {
      state = { ok: true, value: await setup((fn) => fns.push(fn)) };
    } catch (error) {
      state = { ok: false, error };
    }
  }, opts.timeoutMs);
  afterAll(async () => {
    const errors: unknown[] = [];
    for (const fn of fns.splice(0).reverse()) {
      try {
        await fn();
      } catch (err) {
        errors.push(err);
      }
    }
    if (errors.length > 0) throw new AggregateError(errors, 'cleanup failed');
  }, opts.timeoutMs);
  return () => {
    if (state === undefined) throw new Error('the fixture was not set up');
    if (!state.ok) throw state.error;
    return state.value;
  };
}
