/**
 * SessionStore on Redis, so that any gateway replica can pick up a session another one opened.
 *
 * One hash per session at `<prefix>:{sess:<id>}:session`: field `record` holds the record as JSON and field
 * `lastSeenAt` the time of the last touch. Keeping lastSeenAt apart lets touch update it without decoding
 * and re-encoding the JSON inside Lua (cjson would turn `{}` into `[]` and round long numbers). Expiry is the
 * key's own PEXPIRE, so Redis forgets idle sessions without a sweeper.
 */
import type { SessionRecord, SessionStore } from '../../ports/session-store.js';
import {
  keyPrefixOf,
  LuaScript,
  RedisConnection,
  sessionKeyBase,
  wholeMs,
  type RedisAdapterOptions,
  type RedisTarget,
} from './connection.js';

export interface RedisSessionStoreOptions extends RedisAdapterOptions {
  /** The clock that stamps lastSeenAt on touch. Expiry itself runs on the Redis server's clock. */
  now?: () => number;
}

// EXISTS first: touching an expired session must not bring a record-less hash back to life.
const touchScript = new LuaScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'lastSeenAt', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
`);

/** Redis-backed {@link SessionStore}: one hash per session, expired by Redis after its ttl. */
export class RedisSessionStore implements SessionStore {
  private readonly connection: RedisConnection;
  private readonly prefix: string;
  private readonly now: () => number;

  /** `target` is a client that stays the caller's, or a URL for a client this store owns and closes. */
  constructor(target: RedisTarget, options: RedisSessionStoreOptions = {}) {
    this.prefix = keyPrefixOf(options);
    this.now = options.now ?? Date.now;
    this.connection = new RedisConnection(target);
  }

  async put(record: SessionRecord, ttlMs: number): Promise<void> {
    const key = this.key(record.id);
    const ms = wholeMs('ttlMs', ttlMs);
    // One MULTI so that a record never exists without its expiry. A ttl <= 0 makes PEXPIRE delete the key,
    // which is what an already-expired record should look like.
    const results = await this.connection.client
      .multi()
      .hset(key, 'record', JSON.stringify(record), 'lastSeenAt', String(record.lastSeenAt))
      .pexpire(key, ms)
      .exec();
    for (const [err] of results ?? []) if (err) throw err;
  }

  async get(id: string): Promise<SessionRecord | undefined> {
    const [json, lastSeenAt] = await this.connection.client.hmget(this.key(id), 'record', 'lastSeenAt');
    if (json == null) return undefined;
    const record = JSON.parse(json) as SessionRecord;
    if (lastSeenAt != null) record.lastSeenAt = Number(lastSeenAt);
    return record;
  }

  async touch(id: string, ttlMs: number): Promise<boolean> {
    const ms = wholeMs('ttlMs', ttlMs);
    const touched = await touchScript.run(this.connection.client, [this.key(id)], [this.now(), ms]);
    return touched === 1;
  }

  async delete(id: string): Promise<void> {
    await this.connection.client.del(this.key(id));
  }

  async close(): Promise<void> {
    await this.connection.release();
  }

  private key(id: string): string {
    return `${sessionKeyBase(this.prefix, id)}session`;
  }
}
