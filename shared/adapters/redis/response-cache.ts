/**
 * ResponseCache on Redis: one string key per entry (`<prefix>:rcache:<key>`), JSON, with a TTL equal to
 * its keep time, so Redis itself drops what nobody may serve any more.
 */
import type { CachedResponse, ResponseCache } from '../../ports/response-cache.js';
import { keyPrefixOf, RedisConnection, type RedisAdapterOptions, type RedisTarget } from './connection.js';

export class RedisResponseCache implements ResponseCache {
  private readonly conn: RedisConnection;
  private readonly prefix: string;

  constructor(target: RedisTarget, options: RedisAdapterOptions = {}) {
    this.prefix = keyPrefixOf(options);
    this.conn = new RedisConnection(target);
  }

  private key(k: string): string {
    return `${this.prefix}:rcache:${k}`;
  }

  async get(key: string): Promise<CachedResponse | undefined> {
    const raw = await this.conn.client.get(this.key(key));
    if (raw === null) return undefined;
    try {
      const v = JSON.parse(raw) as CachedResponse;
      return typeof v.result === 'object' && v.result !== null && typeof v.freshUntil === 'number'
        ? v
        : undefined;
    } catch {
      return undefined;
    }
  }

  async set(key: string, value: CachedResponse, keepMs: number): Promise<void> {
    const ttl = Math.ceil(keepMs);
    if (!(ttl > 0)) return;
    await this.conn.client.set(this.key(key), JSON.stringify(value), 'PX', ttl);
  }

  async delete(key: string): Promise<void> {
    await this.conn.client.del(this.key(key));
  }

  async close(): Promise<void> {
    await this.conn.release();
  }
}
