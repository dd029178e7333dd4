/** WebSocket frames built by hand (RFC 6455, section 5.2), for the benchmarks' clients and inputs. */

/** A frame header: `first` is its first byte (FIN, RSV1, opcode), `length` the payload's; with `masked`, the mask bit set (the key follows). */
export function frameHeader(first: number, length: number, masked: boolean): Buffer {
  const m = masked ? 0x80 : 0;
  if (length < 126) return Buffer.from([first, m | length]);
  if (length < 65536) return Buffer.from([first, m | 126, length >> 8, length & 0xff]);
  const h = Buffer.alloc(10);
  h[0] = first;
  h[1] = m | 127;
  h.writeBigUInt64BE(BigInt(length), 2);
  return h;
}

/** A client frame: the header, `key`, and `payload` masked under it. */
export function maskedFrame(first: number, payload: Buffer, key: Buffer): Buffer {
  const header = frameHeader(first, payload.length, true);
  const at = header.length + 4;
  const frame = Buffer.allocUnsafe(at + payload.length);
  header.copy(frame);
  key.copy(frame, header.length);
  for (let i = 0; i < payload.length; i++) frame[at + i] = payload[i]! ^ key[i & 3]!;
  return frame;
}
