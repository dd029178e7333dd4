/**
 * The chat room: a set of sessions, and the WebSocket handler that joins them to it.
 *
 * Fan-out goes through `session.info`: a message from one client is handed to every member with
 * `member.info(event)`, and each member's `websocketInfo` turns the event into a frame for its own
 * client. No session writes to another's socket; each one sends in order with its own replies,
 * under its own backpressure.
 *
 * The wire protocol, server to client, one JSON object per text message:
 *
 *   { "event": "welcome", "name": "alice", "members": ["alice", "bob"] }   first, to the new member
 *   { "event": "join", "name": "bob" }                                     to everyone else
 *   { "from": "alice", "text": "hi" }                                      a chat message, to everyone
 *   { "event": "leave", "name": "bob" }                                    to those who stay
 *
 * Client to server: text messages, each one a chat message. A binary message closes the
 * connection with 1003 (unsupported data); one over {@link MAX_MESSAGE_BYTES} with 1009 (message
 * too big), which the session enforces from the frame header before buffering the payload.
 */

import type { InitAccept, InitReject, Session, UpgradeRequest, WebSocketHandler } from '@corral/websocket';

/** The largest chat message accepted, in bytes of UTF-8: 4 KiB. */
export const MAX_MESSAGE_BYTES = 4096;

/** Nicknames: 1 to 24 letters, digits, `_`, `-` or `.`. */
export const NAME_PATTERN = /^[\p{L}\p{N}_.-]{1,24}$/u;

/** What the room delivers to a member through `session.info`, and the member sends as JSON. */
export type ChatEvent =
  | { from: string; text: string }
  | { event: 'join' | 'leave'; name: string }
  | { event: 'welcome'; name: string; members: string[] };

/** A member's state: its room, its name, and (once joined) its session. */
export interface ChatState {
  room: Room;
  name: string;
  session?: Session<ChatState>;
}

export class Room {
  readonly members = new Set<Session<ChatState>>();
  #guests = 0;

  /** The next free `guest-N` name. */
  guestName(): string {
    let name: string;
    do name = `guest-${++this.#guests}`; while (this.has(name));
    return name;
  }

  has(name: string): boolean {
    for (const member of this.members) if (member.handlerState.name === name) return true;
    return false;
  }

  names(): string[] {
    return [...this.members].map((member) => member.handlerState.name);
  }

  /** Deliver `event` to every member, through its `websocketInfo`. */
  broadcast(event: ChatEvent): void {
    for (const member of this.members) member.info(event);
  }
}

/**
 * The name asked for in the query string (`/?name=alice`), or a fresh `guest-N`; a refusal with
 * its HTTP status when the path is not `/`, the name is malformed, or a member already has it.
 */
export function chooseName(url: string, room: Room): string | InitReject {
  const parsed = new URL(url, 'http://localhost');
  if (parsed.pathname !== '/') return { reject: 404 };
  const asked = parsed.searchParams.get('name');
  if (asked === null || asked === '') return room.guestName();
  if (!NAME_PATTERN.test(asked)) {
    return { reject: { status: 400, body: 'A name is 1 to 24 letters, digits, "_", "-" or ".".\n' } };
  }
  if (room.has(asked)) return { reject: { status: 409, body: `The name ${asked} is taken.\n` } };
  return asked;
}

export const chatHandler: WebSocketHandler<ChatState, Room> = {
  // The only callback that sees the HTTP request: choose the name here, or refuse the upgrade.
  init(req: UpgradeRequest, room: Room): InitAccept<ChatState> | InitReject {
    const name = chooseName(req.url, room);
    if (typeof name !== 'string') return name;
    return { state: { room, name } };
  },

  // Now a WebSocket: join, tell the others, welcome the newcomer.
  websocketInit(state, session) {
    const { room, name } = state;
    // Two upgrades asking for one name can both pass `init` before either joins.
    if (room.has(name)) return { stop: { code: 4409, reason: 'name taken' } };
    room.broadcast({ event: 'join', name });
    room.members.add(session);
    const welcome: ChatEvent = { event: 'welcome', name, members: room.names() };
    return { state: { ...state, session }, reply: JSON.stringify(welcome) };
  },

  websocketHandle(frame, state) {
    if (frame.type === 'binary') return { stop: { code: 1003, reason: 'text messages only' } };
    if (frame.type !== 'text') return undefined;
    const text = frame.data.trim();
    if (text !== '') state.room.broadcast({ from: state.name, text });
    return undefined;
  },

  // Every event the room delivers becomes one frame for this member's client.
  websocketInfo(event) {
    return { reply: JSON.stringify(event) };
  },

  // Called once however the connection ended: leave, and tell those who stay.
  terminate(_reason, _req, state) {
    const { room, session, name } = state;
    if (session === undefined || !room.members.delete(session)) return;
    room.broadcast({ event: 'leave', name });
  },
};
