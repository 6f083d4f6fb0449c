/**
 * SessionStore on Redis, so that any gateway replica can pick up a session another one opened.
 *
 * One hash per session at `<prefix>:{sess:<id>}:session`: field `record` holds the record as JSON, field
 * `lastSeenAt` the time of the last touch, and one field `backend:<server>` per backend session (so that
 * replicas opening backend sessions for one client session at once never overwrite each other). Keeping lastSeenAt apart lets touch update it without decoding
 * and re-encoding the JSON inside Lua (cjson would turn `{}` into `[]` and round long numbers). Expiry is the
 * key's own PEXPIRE, so Redis forgets idle sessions without a sweeper.
 */
import type { BackendSessionRecord, SessionRecord, SessionStore } from '../../ports/session-store.js';
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

// Only an existing session gets backend fields: a late write must not resurrect an ended session.
const setBackendScript = new LuaScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[2] == '' then redis.call('HDEL', KEYS[1], ARGV[1]) else redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
return 1
`);

const BACKEND_FIELD = 'backend:';

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
    const fields = await this.connection.client.hgetall(this.key(id));
    const json = fields.record;
    if (json === undefined) return undefined;
    const record = JSON.parse(json) as SessionRecord;
    if (fields.lastSeenAt !== undefined) record.lastSeenAt = Number(fields.lastSeenAt);
    for (const [field, value] of Object.entries(fields))
      if (field.startsWith(BACKEND_FIELD))
        record.backendSessions[field.slice(BACKEND_FIELD.length)] = JSON.parse(value) as BackendSessionRecord;
    return record;
  }

  async setBackendSession(
    id: string,
    server: string,
    backend: BackendSessionRecord | undefined,
  ): Promise<void> {
    await setBackendScript.run(
      this.connection.client,
      [this.key(id)],
      [`${BACKEND_FIELD}${server}`, backend ? JSON.stringify(backend) : ''],
    );
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
