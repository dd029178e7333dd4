/**
 * What can be sent to a worker process: values the structured clone algorithm copies (the
 * serialization of Node's `advanced` IPC channel). Functions, symbols, class instances holding
 * native state (a TLS `SecureContext`, a logger's stream...) cannot.
 */

import { serialize } from 'node:v8';

/** Where in `value` the first value that cannot be cloned is, and what it is; undefined when it all clones. */
export function findUncloneable(value: unknown, path: string): { path: string; what: string } | undefined {
  try {
    serialize(value);
    return undefined;
  } catch {
    return locate(value, path, new Set()) ?? { path, what: describe(value) };
  }
}

function describe(value: unknown): string {
  if (typeof value === 'function') return `a function${value.name ? ` (${value.name})` : ''}`;
  if (typeof value === 'symbol') return 'a symbol';
  if (typeof value === 'object' && value !== null) {
    const name = (value as object).constructor?.name;
    return name && name !== 'Object' ? `a ${name}` : 'an object';
  }
  return String(value);
}

function isPlain(value: object): boolean {
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === Object.prototype || proto === null || Array.isArray(value) || value instanceof Map || value instanceof Set;
}

function locate(value: unknown, path: string, seen: Set<object>): { path: string; what: string } | undefined {
  if (typeof value === 'function' || typeof value === 'symbol') return { path, what: describe(value) };
  if (typeof value !== 'object' || value === null || seen.has(value)) return undefined;
  seen.add(value);
  if (!isPlain(value)) {
    // A class instance (a Buffer, a Date, a SecureContext...): it clones as a whole or not at all.
    try {
      serialize(value);
      return undefined;
    } catch {
      return { path, what: describe(value) };
    }
  }
  const entries: [string, unknown][] = value instanceof Map
    ? [...value.entries()].map(([k, v], i) => [`${path}[${typeof k === 'string' ? JSON.stringify(k) : i}]`, v])
    : value instanceof Set
      ? [...value].map((v, i) => [`${path}[${i}]`, v])
      : Array.isArray(value)
        ? value.map((v, i) => [`${path}[${i}]`, v])
        : Object.entries(value).map(([k, v]) => [`${path}.${k}`, v]);
  for (const [p, v] of entries) {
    const found = locate(v, p, seen);
    if (found !== undefined) return found;
  }
  return undefined;
}
