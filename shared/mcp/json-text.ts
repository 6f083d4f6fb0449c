/**
 * The JSON text a message object was parsed from (or was serialised to), kept beside it so that a tier
 * which only passes the message on sends that text instead of serialising the object again: the edge
 * forwards a client's request to its core as the client sent it, and the core's answer to the client as
 * the core wrote it. Only a message nothing changes after it was recorded may be recorded: whoever
 * changes one must make a new object.
 */
import { ObjectSlot } from '../object-slot.js';

const texts = new ObjectSlot<object, string | Buffer>('mcpgw.jsonText');

/**
 * Records `text` as the JSON of `message` (which JSON.parse(text) gave, or which serialises to text): a
 * string, or its UTF-8 bytes as they arrived (written on as they are, never decoded and encoded again).
 */
export function keepJsonText<T extends object>(message: T, text: string | Buffer): T {
  texts.set(message, text);
  return message;
}

/** The recorded JSON text of `message`, else its serialisation. */
export function jsonTextOf(message: object): string {
  const t = texts.get(message);
  return t === undefined ? JSON.stringify(message) : typeof t === 'string' ? t : t.toString('utf8');
}

/** What to write for `message`: its recorded text or bytes, else its serialisation. */
export function jsonBytesOf(message: object): string | Buffer {
  return texts.get(message) ?? JSON.stringify(message);
}
