/**
 * Listen sockets that a listener binds in its own process and hands to its acceptor worker
 * processes over IPC (as Node's cluster does with shared handles): bound here, never polled
 * here, so this process accepts nothing; each worker listens on its copy and accepts straight
 * from the kernel. The kernel socket lives as long as any process holds it, so a worker that
 * exits, crashes or is replaced leaves the port open.
 */

import { lookup } from 'node:dns/promises';
import * as net from 'node:net';
import { getSystemErrorName } from 'node:util';
import { ListenError, NotSupportedError } from './errors.js';
import type { SocketAddress } from './types.js';

/** The address part of a transport's socket options (the TCP transport's, which TLS shares). */
export interface BindOptions {
  port?: number;
  host?: string;
  path?: string;
  ipv6Only?: boolean;
  reusePort?: boolean;
  readableAll?: boolean;
  writableAll?: boolean;
}

/** A socket bound by this process, for workers to listen on. */
export interface BoundSocket {
  /** Node's handle, sent to workers with `child.send(message, handle)`. */
  readonly handle: object;
  readonly address: SocketAddress;
  /** Release this process's copy (a UNIX socket's file goes with it). */
  close(): void;
}

interface NativeHandle {
  getsockname?(out: Record<string, unknown>): number;
  fchmod?(mode: number): number;
  close(): void;
}

type CreateServerHandle = (address: string | null, port: number, addressType: number, fd: undefined, flags: number) => NativeHandle | number;

// libuv's uv_tcp_flags and the modes of uv_pipe_chmod.
const UV_TCP_IPV6ONLY = 1;
const UV_TCP_REUSEPORT = 2;
const UV_READABLE = 1;
const UV_WRITABLE = 2;

function createServerHandle(): CreateServerHandle {
  // The function Node's cluster uses to bind a shared handle without listening on it.
  const create = (net as unknown as { _createServerHandle?: CreateServerHandle })._createServerHandle;
  if (typeof create !== 'function') {
    throw new NotSupportedError(`Node ${process.version} cannot bind a socket for worker processes (net._createServerHandle is missing)`);
  }
  return create;
}

/** Whether this Node binds several sockets to one port (`SO_REUSEPORT`): 22.12+ or 23.1+, on Linux and the BSDs. */
export function supportsReusePort(): boolean {
  if (!['linux', 'freebsd', 'openbsd', 'netbsd', 'dragonfly'].includes(process.platform)) return false;
  const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
  return major > 23 || (major === 23 && minor >= 1) || (major === 22 && minor >= 12);
}

function describe(opts: BindOptions, port = opts.port ?? 0): string {
  if (opts.path !== undefined) return opts.path;
  const host = opts.host ?? '*';
  return `${host.includes(':') ? `[${host}]` : host}:${port}`;
}

function errnoError(errno: number, where: string): NodeJS.ErrnoException {
  let code: string;
  try {
    code = getSystemErrorName(errno);
  } catch {
    code = 'EINVAL';
  }
  const err: NodeJS.ErrnoException = new Error(`bind ${code} ${where}`);
  err.code = code;
  err.errno = errno;
  err.syscall = 'bind';
  return err;
}

/**
 * Bind a socket as `net.Server.listen` would (host names looked up, no host: `::` where IPv6 is
 * available, else `0.0.0.0`), without listening. `port` overrides `opts.port` (the later sockets
 * of a `SO_REUSEPORT` group take the first one's port). Rejects with `ListenError`.
 */
export async function bindSocket(opts: BindOptions, port = opts.port ?? 0): Promise<BoundSocket> {
  const create = createServerHandle();
  const where = describe(opts, port);
  if (opts.path !== undefined) {
    const path = opts.path;
    const handle = create(path, -1, -1, undefined, 0);
    if (typeof handle === 'number') throw new ListenError(where, errnoError(handle, where));
    const mode = (opts.readableAll === true ? UV_READABLE : 0) | (opts.writableAll === true ? UV_WRITABLE : 0);
    if (mode !== 0) {
      const err = handle.fchmod?.(mode) ?? 0;
      if (err !== 0) {
        handle.close();
        throw new ListenError(where, errnoError(err, where));
      }
    }
    return { handle, address: { family: 'local', path }, close: () => handle.close() };
  }

  let address: string | null = null;
  let addressType = 4;
  if (opts.host !== undefined) {
    try {
      const found = await lookup(opts.host);
      address = found.address;
      addressType = found.family;
    } catch (err) {
      throw new ListenError(where, err);
    }
  }
  const flags = (opts.ipv6Only === true ? UV_TCP_IPV6ONLY : 0) | (opts.reusePort === true ? UV_TCP_REUSEPORT : 0);
  const handle = create(address, port, addressType, undefined, flags);
  if (typeof handle === 'number') throw new ListenError(where, errnoError(handle, where));
  const out: Record<string, unknown> = {};
  const err = handle.getsockname?.(out) ?? 0;
  if (err !== 0) {
    handle.close();
    throw new ListenError(where, errnoError(err, where));
  }
  const bound: SocketAddress = {
    family: out.family === 'IPv6' ? 'IPv6' : 'IPv4',
    address: String(out.address),
    port: Number(out.port),
  };
  return { handle, address: bound, close: () => handle.close() };
}

/**
 * Bind `count` sockets to one address: one socket, or (`count` > 1) a `SO_REUSEPORT` group on
 * the port the first one got, among which the kernel spreads new connections.
 */
export async function bindSockets(opts: BindOptions, count: number): Promise<BoundSocket[]> {
  if (count === 1) return [await bindSocket(opts)];
  const group = { ...opts, reusePort: true };
  const first = await bindSocket(group);
  const sockets = [first];
  try {
    const port = first.address.family === 'local' ? 0 : first.address.port;
    for (let i = 1; i < count; i++) sockets.push(await bindSocket(group, port));
  } catch (err) {
    for (const s of sockets) s.close();
    throw err;
  }
  return sockets;
}
