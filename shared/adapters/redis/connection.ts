/**
 * What the Redis adapters share: how they get a client, where a session's keys live, and how they run Lua.
 *
 * Every key of one session carries the same hash tag, `{sess:<id>}`, so on Redis Cluster they sit in one
 * slot and a single script or MULTI may touch all of them. See docs/adr/0003-redis-session-and-event-stores.md.
 */
import { createHash } from 'node:crypto';
import { Redis, type Cluster } from 'ioredis';

/** A standalone, Sentinel or Cluster client from ioredis. */
export type RedisClient = Redis | Cluster;

/** Either a client the caller owns or a `redis://` / `rediss://` URL the adapter connects to itself. */
export type RedisTarget = RedisClient | string;

export interface RedisAdapterOptions {
  /**
   * Prepended to every key, so several gateways (or test runs) can share one Redis. It must not contain
   * `{` or `}`: the session hash tag has to be the first braced part of each key. Default `mcpgw`.
   */
  keyPrefix?: string;
}

/** A client plus the knowledge of whether closing the adapter should also close the client. */
export class RedisConnection {
  readonly client: RedisClient;
  private readonly owned: boolean;

  constructor(target: RedisTarget) {
    this.owned = typeof target === 'string';
    this.client =
      typeof target === 'string'
        ? // Fail a command after a couple of reconnection attempts instead of queueing it for long: a
          // request must get an answer, not wait on a Redis that is down.
          new Redis(target, { maxRetriesPerRequest: 2, connectTimeout: 2000 })
        : target;
    // Connection errors surface on the commands that fail; the event itself only needs a listener so that
    // ioredis does not report it as unhandled.
    if (this.owned) this.client.on('error', () => {});
  }

  /** Quits a client this connection created; a client passed in belongs to its caller and stays open. */
  async release(): Promise<void> {
    if (!this.owned || this.client.status === 'end') return;
    try {
      await this.client.quit();
    } catch {
      // A client that never connected cannot say QUIT; dropping the socket is all that is left to do.
      this.client.disconnect();
    }
  }
}

/** The validated key prefix; adapters call this once, in their constructor. */
export function keyPrefixOf(options: RedisAdapterOptions): string {
  const prefix = options.keyPrefix ?? 'mcpgw';
  if (/[{}]/.test(prefix)) throw new RangeError(`keyPrefix must not contain "{" or "}": ${prefix}`);
  return prefix;
}

/** The common start of every key of one session, ending in `:`. */
export function sessionKeyBase(prefix: string, sessionId: string): string {
  return `${prefix}:{sess:${encodeKeyPart(sessionId)}}:`;
}

/**
 * Escapes the characters that give a key its structure. Without it a session id like `a}:stream:b` would
 * end the hash tag early and could name another session's key.
 */
export function encodeKeyPart(part: string): string {
  return part.replace(/[%:{}]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/**
 * A Lua script run by its SHA, so the body crosses the wire only when a Redis node has not seen it yet
 * (after a restart, a failover or on a fresh cluster node). Keys go in KEYS so that Cluster routes the call.
 */
export class LuaScript {
  private readonly sha: string;

  constructor(private readonly source: string) {
    this.sha = createHash('sha1').update(source).digest('hex');
  }

  async run(client: RedisClient, keys: string[], args: (string | number)[]): Promise<unknown> {
    try {
      return await client.evalsha(this.sha, keys.length, ...keys, ...args);
    } catch (err) {
      if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err;
      return client.eval(this.source, keys.length, ...keys, ...args);
    }
  }
}

/**
 * Holds a standalone client's writes until the current tick's work is done, so that the commands that
 * concurrent requests issue together (replies to one read resume many of them) leave in one write
 * (`writev`), each still a command of its own. Unlike the client's auto-pipelining, which keeps one batch
 * in flight at a time and holds the next one until every reply of the previous has come back, nothing
 * waits: a command issued alone goes out at the end of its tick.
 */
export class TickWrites {
  private corked = false;
  private last: (() => void)[] = [];

  constructor(private readonly client: Redis) {}

  /**
   * Call before issuing a command; the writes held go out once this tick's callbacks have run. False
   * when the client is not connected (nothing is held: a command fails or goes out at once).
   */
  hold(): boolean {
    if (this.corked) return true;
    // Before the first connection there is no stream yet.
    const stream = this.client.stream as Redis['stream'] | undefined;
    if (!stream?.writable || this.client.status !== 'ready') return false;
    this.corked = true;
    stream.cork();
    process.nextTick(() => {
      // Commands gathered over the tick are issued last, into the same write.
      for (const fn of this.last.splice(0)) fn();
      this.corked = false;
      stream.uncork();
    });
    return true;
  }

  /** Runs `fn` at the end of this tick, just before the held writes go out; false if nothing is held. */
  atEnd(fn: () => void): boolean {
    if (!this.hold()) return false;
    this.last.push(fn);
    return true;
  }
}

/** Redis takes whole milliseconds; a ttl that is not a finite number is a caller's bug, not "forever". */
export function wholeMs(name: string, ms: number): number {
  if (!Number.isFinite(ms)) throw new RangeError(`${name} must be a finite number of milliseconds: ${ms}`);
  return Math.ceil(ms);
}
