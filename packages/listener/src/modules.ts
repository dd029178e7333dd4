/**
 * Protocols and transports, given as objects in this process or named by module specifier
 * (the analogue of Ranch's module atoms): a name that another process, an acceptor worker, can
 * import. The built-in transports travel by name.
 */

import { existsSync } from 'node:fs';
import { basename, extname, isAbsolute, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { BadProtocolError, BadTransportError } from './errors.js';
import { tcp } from './tcp.js';
import { tlsTransport } from './tls.js';
import type { AnyTransport } from './types.js';

/**
 * A module named by a file URL (`new URL('./echo.js', import.meta.url)` or its `href`), an absolute
 * path, a path relative to the current directory (`./protocols/echo.js`), or a package name.
 */
export type ModuleSpecifier = string | URL;

/** The protocol as the supervisor calls it. */
export type StartFn = (conn: unknown, transport: unknown, opts: unknown) => unknown;

/** A protocol ready to run, and its name for `info()`. */
export interface LoadedProtocol {
  start: StartFn;
  name: string;
}

/** How a transport is named to a worker process. */
export type TransportRef = { builtin: 'tcp' | 'tls' } | { module: string };

export function isModuleSpecifier(value: unknown): value is ModuleSpecifier {
  return typeof value === 'string' || value instanceof URL;
}

/**
 * The URL a specifier names (a bare package name is kept as it is: it resolves from this
 * package, in this process and in the workers alike). Throws what `fail` makes.
 */
export function specifierHref(spec: ModuleSpecifier, fail: (message: string) => Error): string {
  if (spec instanceof URL) return spec.href;
  if (spec === '') throw fail('The module specifier is empty');
  // A scheme of two letters or more: `C:\\...` is a Windows path, not a URL.
  if (/^[a-z][a-z0-9+.-]+:/i.test(spec)) {
    try {
      return new URL(spec).href;
    } catch {
      throw fail(`${JSON.stringify(spec)} is not a valid URL`);
    }
  }
  if (isAbsolute(spec)) return pathToFileURL(spec).href;
  if (spec.startsWith('./') || spec.startsWith('../') || spec === '.' || spec === '..') {
    return pathToFileURL(resolve(process.cwd(), spec)).href;
  }
  return spec;
}

/** Fail early, in this process, on a file that does not exist. */
export function checkModuleExists(href: string, fail: (message: string) => Error): void {
  if (!href.startsWith('file:')) return;
  if (!existsSync(fileURLToPath(href))) throw fail(`${href}: no such file`);
}

/** The name of a module, as Ranch names a protocol by its module: the file name without its extension. */
export function moduleName(href: string): string {
  const path = href.startsWith('file:') ? fileURLToPath(href) : href;
  const base = basename(path);
  return base.slice(0, base.length - extname(base).length) || base;
}

/** The protocol a function or an object with `start()` is. Throws `BadProtocolError`. */
export function protocolFunction(protocol: unknown): LoadedProtocol {
  if (typeof protocol === 'function') return { start: protocol as StartFn, name: protocol.name || 'anonymous' };
  if (typeof protocol === 'object' && protocol !== null && typeof (protocol as { start?: unknown }).start === 'function') {
    const p = protocol as { start: StartFn; name?: unknown };
    return { start: p.start.bind(p), name: typeof p.name === 'string' ? p.name : p.start.name || 'anonymous' };
  }
  throw new BadProtocolError('The protocol must be a function or an object with a start() function');
}

/** The module at `href`, or `Failure` saying that the `kind` module could not be imported. */
async function importModule(
  href: string,
  kind: 'protocol' | 'transport',
  Failure: new (message: string, options?: ErrorOptions) => Error,
): Promise<Record<string, unknown>> {
  try {
    return (await import(href)) as Record<string, unknown>;
  } catch (err) {
    throw new Failure(`Cannot import the ${kind} module ${href}: ${(err as Error)?.message ?? String(err)}`, { cause: err });
  }
}

/**
 * Import a protocol module: its `start` export, or its default export (a function or an object
 * with `start`). Rejects with `BadProtocolError`.
 */
export async function importProtocol(href: string): Promise<LoadedProtocol> {
  const mod = await importModule(href, 'protocol', BadProtocolError);
  const candidate = typeof mod.start === 'function' ? mod.start : mod.default;
  let loaded: LoadedProtocol;
  try {
    loaded = protocolFunction(candidate);
  } catch {
    throw new BadProtocolError(`The protocol module ${href} exports neither a start() function nor a default protocol`);
  }
  return { start: loaded.start, name: moduleName(href) };
}

/** Check a transport object up front, so a wrong one fails at start rather than on the first connection. */
export function checkTransport(transport: unknown): asserts transport is AnyTransport {
  if (typeof transport !== 'object' || transport === null) throw new BadTransportError('The transport must be an object');
  const t = transport as Record<string, unknown>;
  if (typeof t.name !== 'string') throw new BadTransportError('The transport has no name');
  for (const fn of ['normalizeOptions', 'listen', 'cleanup', 'handshake', 'handshakeContinue', 'handshakeCancel', 'close']) {
    if (typeof t[fn] !== 'function') throw new BadTransportError(`Transport ${t.name} does not implement ${fn}()`);
  }
}

/**
 * Import a transport module: its default export, or its `transport` export. Rejects with
 * `BadTransportError`.
 */
export async function importTransport(href: string): Promise<AnyTransport> {
  const mod = await importModule(href, 'transport', BadTransportError);
  const transport = mod.default ?? mod.transport;
  if (transport === undefined) throw new BadTransportError(`The transport module ${href} has neither a default nor a transport export`);
  checkTransport(transport);
  return transport;
}

/** The name a built-in transport travels by, or undefined for any other. */
export function builtinTransportName(transport: unknown): 'tcp' | 'tls' | undefined {
  if (transport === tcp) return 'tcp';
  if (transport === tlsTransport) return 'tls';
  return undefined;
}

/** The transport a worker process runs. */
export async function loadTransport(ref: TransportRef): Promise<AnyTransport> {
  if ('builtin' in ref) return (ref.builtin === 'tcp' ? tcp : tlsTransport) as unknown as AnyTransport;
  return importTransport(ref.module);
}
