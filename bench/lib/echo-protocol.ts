/**
 * The echo protocol of the acceptors bench, as a module, so that acceptor worker processes can
 * import it (`numAcceptors` > 1): examples/tcp-echo's protocol, on TCP or TLS alike.
 */

import type { ConnectionOf, tcp } from '@corral/listener';

export async function start(conn: ConnectionOf<typeof tcp>): Promise<void> {
  const socket = await conn.handshake();
  socket.pipe(socket);
  await new Promise((resolve) => socket.once('close', resolve));
}
