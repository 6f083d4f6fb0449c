/**
 * A secret every replica sharing one Redis agrees on without configuration: the first replica to start
 * writes a random one (SET NX), every later one reads it. Used for what replicas must verify of each
 * other's output (pagination cursors).
 */
import { randomBytes } from 'node:crypto';
import { keyPrefixOf, RedisConnection, type RedisAdapterOptions } from './connection.js';

export async function sharedSecret(
  url: string,
  name: string,
  options: RedisAdapterOptions = {},
): Promise<Buffer> {
  const key = `${keyPrefixOf(options)}:secret:${name}`;
  const connection = new RedisConnection(url);
  try {
    await connection.client.set(key, randomBytes(32).toString('base64'), 'NX');
    const value = await connection.client.get(key);
    if (!value) throw new Error(`the shared secret ${key} could not be read back`);
    return Buffer.from(value, 'base64');
  } finally {
    await connection.release();
  }
}
