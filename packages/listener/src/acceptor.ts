/**
 * The acceptor (Ranch's `ranch_acceptor`): opens a listen socket through the transport and
 * hands every accepted socket to the connection supervisor. In Node the kernel accept loop
 * runs inside libuv, so the acceptor is the glue between the two.
 */

import type { ListenerConfig } from './options.js';
import type { ConnectionSupervisor } from './supervisor.js';
import type { ListenSocket, Transport } from './types.js';

export async function openAcceptor(
  transport: Transport<unknown, unknown, unknown, object>,
  socketOpts: object,
  config: ListenerConfig,
  sup: ConnectionSupervisor,
): Promise<ListenSocket> {
  const socket = await transport.listen(socketOpts, {
    onConnection: (raw) => sup.accept(raw),
    onError: (err) => sup.acceptError(err),
  });
  if (config.postListenCallback !== undefined) {
    try {
      await config.postListenCallback(socket.server);
    } catch (err) {
      await socket.close();
      await transport.cleanup(socketOpts);
      throw err;
    }
  }
  return socket;
}
