/**
 * Ranch's `num_connections` alarms: when the active connections reach an alarm's threshold,
 * call it, then keep it quiet for its cooldown, after which it checks again.
 */

import type { Connection } from './connection.js';
import type { ListenerConfig } from './options.js';
import type { Ref } from './types.js';

export interface AlarmSource {
  readonly ref: Ref;
  config(): ListenerConfig;
  /** Connections counted towards `maxConnections`. */
  activeConnections(): number;
  /** Those connections, for the callback (empty where they live in other processes). */
  activeList(): Connection[];
}

export class AlarmMonitor {
  #source: AlarmSource;
  #cooling = new Map<string, NodeJS.Timeout>();
  #closed = false;

  constructor(source: AlarmSource) {
    this.#source = source;
  }

  /** Check every alarm (a connection started). */
  check(): void {
    const alarms = this.#source.config().alarms;
    for (const name in alarms) this.#check(name);
  }

  /** The alarms were replaced: forget removed ones' cooldowns, then check (Ranch does so when options are set). */
  changed(): void {
    const alarms = this.#source.config().alarms;
    for (const [name, timer] of this.#cooling) {
      if (!(name in alarms)) {
        clearTimeout(timer);
        this.#cooling.delete(name);
      }
    }
    this.check();
  }

  /** No alarm fires from now on. */
  close(): void {
    this.#closed = true;
    for (const timer of this.#cooling.values()) clearTimeout(timer);
    this.#cooling.clear();
  }

  #check(name: string): void {
    const source = this.#source;
    const alarm = source.config().alarms[name];
    if (alarm === undefined || this.#closed || source.activeConnections() < alarm.threshold || this.#cooling.has(name)) return;
    if (alarm.cooldown > 0) {
      const timer = setTimeout(() => {
        this.#cooling.delete(name);
        this.#check(name);
      }, alarm.cooldown);
      timer.unref();
      this.#cooling.set(name, timer);
    }
    try {
      alarm.callback(source.ref, name, source.activeList());
    } catch (err) {
      source.config().logger.error({ listener: String(source.ref), alarm: name, err }, 'alarm callback failed');
    }
  }
}
