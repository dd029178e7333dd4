/**
 * Sending a file over a socket: `ranch_transport:sendfile/6`, the read-and-send fallback.
 *
 * Node has no zero-copy sendfile for sockets, so the file is read with positional reads
 * (`pread`: an fd's or FileHandle's file position never moves) into two buffers used in turn:
 * the next chunk is read while the previous one is written. Each chunk is awaited until the
 * socket has taken it, so at most one chunk is queued at a time (backpressure for free), no
 * write is ever larger than `chunkSize`, and nothing is allocated per chunk.
 */

import * as fs from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import type { Writable } from 'node:stream';
import { BadArgumentError, SocketError } from './errors.js';
import { send } from './socket-ops.js';
import type { SendfileOptions } from './types.js';

/** Chunk size when none (or 0) is given. */
export const DEFAULT_SENDFILE_CHUNK_SIZE = 65536;

/** Largest chunk size accepted: a single buffer of 1 GiB. */
const MAX_CHUNK_SIZE = 0x4000_0000;

/**
 * Where the file goes: a writable stream (a socket), or a function that writes one chunk and
 * resolves once it no longer needs it (the buffer is reused for a later chunk after that).
 */
export type SendfileTarget = Writable | ((chunk: Buffer) => Promise<void>);

/** The file: a path (opened and closed here), a raw fd, or a `FileHandle` (both left open). */
export type SendfileSource = string | number | FileHandle;

type ReadAt = (buffer: Buffer, length: number, position: number) => Promise<number>;

/**
 * Send `bytes` bytes of `file`, starting at `offset`, to `target`, and resolve with the number
 * of bytes sent. As in Ranch: `bytes` 0 sends up to the end of the file; `bytes` past the end
 * sends up to the end and reports the real count; an `offset` past the end sends nothing and
 * resolves 0.
 *
 * Rejects with `BadArgumentError` for bad arguments; with `SocketError('closed')` if the socket is
 * closed before or while sending; with `SocketError('error')` (the fs error as `cause`) if the
 * file cannot be opened or read. Errors of a function target are passed on as they are. A file
 * given by path is closed on every path; an fd or FileHandle is left open at its position.
 */
export async function sendfile(
  target: SendfileTarget,
  file: SendfileSource,
  offset = 0,
  bytes = 0,
  opts: SendfileOptions = {},
): Promise<number> {
  const chunkSize = checkArgs(target, file, offset, bytes, opts);
  const write =
    typeof target === 'function' ? target : (chunk: Buffer): Promise<void> => send(target, chunk);
  if (typeof target !== 'function' && (target.destroyed || target.writableEnded)) {
    throw new SocketError('closed', 'sendfile: the socket is closed');
  }

  if (typeof file === 'number') return pump(readFd(file), write, chunkSize, offset, bytes);
  if (typeof file !== 'string') return pump(readHandle(file), write, chunkSize, offset, bytes);

  let handle: FileHandle;
  try {
    handle = await open(file, 'r');
  } catch (err) {
    throw fileError(err);
  }
  try {
    return await pump(readHandle(handle), write, chunkSize, offset, bytes);
  } finally {
    await handle.close().catch(ignore);
  }
}

function checkArgs(target: unknown, file: unknown, offset: unknown, bytes: unknown, opts: unknown): number {
  if (
    typeof target !== 'function' &&
    (typeof target !== 'object' || target === null || typeof (target as Writable).write !== 'function')
  ) {
    throw new BadArgumentError('sendfile: target must be a writable stream or a write function');
  }
  if (typeof file === 'string') {
    if (file === '') throw new BadArgumentError('sendfile: the file path is empty');
  } else if (typeof file === 'number') {
    if (!Number.isInteger(file) || file < 0 || file > 0x7fff_ffff) {
      throw new BadArgumentError(`sendfile: ${String(file)} is not a file descriptor`);
    }
  } else if (
    typeof file !== 'object' ||
    file === null ||
    typeof (file as FileHandle).read !== 'function' ||
    typeof (file as FileHandle).fd !== 'number'
  ) {
    throw new BadArgumentError('sendfile: file must be a path, a file descriptor or a FileHandle');
  }
  if (!Number.isSafeInteger(offset) || (offset as number) < 0) {
    throw new BadArgumentError(`sendfile: offset must be a non-negative integer, got ${String(offset)}`);
  }
  if (!Number.isSafeInteger(bytes) || (bytes as number) < 0) {
    throw new BadArgumentError(`sendfile: bytes must be a non-negative integer, got ${String(bytes)}`);
  }
  if (typeof opts !== 'object' || opts === null) throw new BadArgumentError('sendfile: options must be an object');
  const chunkSize = (opts as SendfileOptions).chunkSize;
  if (chunkSize === undefined || chunkSize === 0) return DEFAULT_SENDFILE_CHUNK_SIZE;
  if (!Number.isInteger(chunkSize) || chunkSize < 0 || chunkSize > MAX_CHUNK_SIZE) {
    throw new BadArgumentError(`sendfile: chunkSize must be an integer between 0 and ${MAX_CHUNK_SIZE}, got ${String(chunkSize)}`);
  }
  return chunkSize;
}

async function pump(
  read: ReadAt,
  write: (chunk: Buffer) => Promise<void>,
  chunkSize: number,
  offset: number,
  bytes: number,
): Promise<number> {
  const limit = bytes === 0 ? Infinity : bytes;
  // The amount asked for never grows (chunkSize, then what is left), so buffers sized by the
  // first request are large enough for all later ones.
  let want = Math.min(chunkSize, limit);
  let current: Buffer = Buffer.allocUnsafe(want);
  let spare: Buffer | undefined;
  let sent = 0;
  let n = await read(current, want, offset);
  while (n > 0) {
    const chunk = n === current.length ? current : current.subarray(0, n);
    sent += n;
    want = Math.min(chunkSize, limit - sent);
    if (want === 0) {
      await write(chunk);
      break;
    }
    spare ??= Buffer.allocUnsafe(want);
    const next = spare;
    const nextRead = read(next, want, offset + sent);
    try {
      await write(chunk);
    } catch (err) {
      // Let the read in flight finish before the caller may close the file under it.
      await nextRead.catch(ignore);
      throw err;
    }
    n = await nextRead;
    spare = current;
    current = next;
  }
  return sent;
}

function readFd(fd: number): ReadAt {
  return (buffer, length, position) =>
    new Promise<number>((resolve, reject) => {
      fs.read(fd, buffer, 0, length, position, (err, n) => {
        if (err === null) resolve(n);
        else reject(fileError(err));
      });
    });
}

function readHandle(handle: FileHandle): ReadAt {
  return async (buffer, length, position) => {
    try {
      return (await handle.read(buffer, 0, length, position)).bytesRead;
    } catch (err) {
      throw fileError(err);
    }
  };
}

function fileError(err: unknown): SocketError {
  const detail = err instanceof Error ? err.message : String(err);
  return new SocketError('error', `sendfile: ${detail}`, err);
}

function ignore(): void {}
