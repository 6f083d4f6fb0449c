/**
 * BreakerStateStore on Redis: an `open` verdict is a key with a TTL that ends with the verdict
 * (`<prefix>:breaker:<server>:<replica>`), so an instance that starts later reads what is in force, and
 * every verdict is also published on `<prefix>:breakers` so that running instances learn it at once.
 */
import type { BreakerStateStore, ReplicaVerdict } from '../../ports/breaker-state.js';
import { encodeKeyPart, keyPrefixOf, RedisConnection, type RedisAdapterOptions } from './connection.js';

export class RedisBreakerState implements BreakerStateStore {
  private readonly conn: RedisConnection;
  /** A subscribed connection can do nothing else: watching takes one of its own, opened on demand. */
  private sub: RedisConnection | undefined;
  private readonly prefix: string;
  private readonly listeners = new Set<(v: ReplicaVerdict) => void>();

  constructor(
    private readonly url: string,
    options: RedisAdapterOptions = {},
  ) {
    this.prefix = keyPrefixOf(options);
    this.conn = new RedisConnection(url);
  }

  private key(v: { server: string; replica: string }): string {
    return `${this.prefix}:breaker:${encodeKeyPart(v.server)}:${encodeKeyPart(v.replica)}`;
  }

  private get channel(): string {
    return `${this.prefix}:breakers`;
  }

  async publish(v: ReplicaVerdict): Promise<void> {
    const c = this.conn.client;
    const ttl = Math.ceil(v.untilMs - Date.now());
    if (v.state === 'open' && ttl > 0) await c.set(this.key(v), JSON.stringify(v), 'PX', ttl);
    else await c.del(this.key(v));
    await c.publish(this.channel, JSON.stringify(v));
  }

  async current(): Promise<ReplicaVerdict[]> {
    const c = this.conn.client;
    const keys: string[] = [];
    let cursor = '0';
    do {
      const [next, batch] = await c.scan(cursor, 'MATCH', `${this.prefix}:breaker:*`, 'COUNT', 500);
      cursor = next;
      keys.push(...batch);
    } while (cursor !== '0');
    if (keys.length === 0) return [];
    const now = Date.now();
    return (await c.mget(...keys))
      .flatMap((raw) => (raw === null ? [] : parseVerdict(raw)))
      .filter((v) => v.untilMs > now);
  }

  async watch(listener: (v: ReplicaVerdict) => void): Promise<() => void> {
    if (!this.sub) {
      this.sub = new RedisConnection(this.url);
      this.sub.client.on('message', (channel: string, data: string) => {
        if (channel !== this.channel) return;
        for (const v of parseVerdict(data)) for (const l of this.listeners) l(v);
      });
      await this.sub.client.subscribe(this.channel);
    }
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async close(): Promise<void> {
    this.listeners.clear();
    await Promise.all([this.sub?.release(), this.conn.release()]);
  }
}

/** A verdict read back from Redis; anything malformed (someone else's key) is skipped. */
function parseVerdict(raw: string): ReplicaVerdict[] {
  try {
    const v = JSON.parse(raw) as ReplicaVerdict;
    return typeof v.server === 'string' &&
      typeof v.replica === 'string' &&
      (v.state === 'open' || v.state === 'closed') &&
      typeof v.untilMs === 'number'
      ? [v]
      : [];
  } catch {
    return [];
  }
}
