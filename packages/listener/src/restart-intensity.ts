/**
 * OTP's restart intensity: a supervisor restarts crashed children, but more than `maxRestarts`
 * restarts within `periodMs` means something is wrong that restarting will not fix, and it
 * gives up.
 */

import type { RestartIntensity } from './options.js';

export class RestartLimiter {
  #limits: () => RestartIntensity;
  // Times of the restarts still within the period, oldest first.
  #times: number[] = [];

  constructor(limits: () => RestartIntensity) {
    this.#limits = limits;
  }

  /** Count a restart now. False when it is one too many: give up instead. */
  allow(now = performance.now()): boolean {
    const { maxRestarts, periodMs } = this.#limits();
    this.#times.push(now);
    while (this.#times.length > 0 && this.#times[0]! <= now - periodMs) this.#times.shift();
    return this.#times.length <= maxRestarts;
  }
}
