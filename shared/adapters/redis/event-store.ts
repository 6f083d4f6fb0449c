/**
 * EventStore on Redis streams, so that a client can resume an SSE stream on any gateway replica.
 *
 * Keys of session S (all under S's hash tag, so one slot on Cluster):
 * - `<prefix>:{sess:S}:stream:<streamId>`: a Redis stream, one entry per event, field `m` = message JSON;
 * - `<prefix>:{sess:S}:streams`: a sorted set of the session's stream ids, scored by last append time, so
 *   deleteSession can find every stream without SCAN.
 *
 * An event id is `<streamId>_<entry id>`: the part after the last `_` is the Redis entry id (`ms-seq`, which
 * has no `_`), so the id names its stream whatever characters the stream id holds.
 *
 * Retention: each append trims its stream to `maxEventsPerStream` (XADD MAXLEN) and drops entries older
 * than `maxAgeMs` (XTRIM MINID, entry ids start with the server time). Exact trimming rather than `~`,
 * because a replay must never hand out an event the bounds say is gone. Both keys get a TTL refreshed on
 * every append, so the streams of an abandoned session vanish on their own.
 */
import type { EventStore, StoredEvent } from '../../ports/event-store.js';
import {
  keyPrefixOf,
  LuaScript,
  RedisConnection,
  sessionKeyBase,
  encodeKeyPart,
  type RedisAdapterOptions,
  type RedisTarget,
} from './connection.js';

export interface RedisEventStoreOptions extends RedisAdapterOptions {
  /** Events kept per stream; older ones are dropped and can no longer be replayed. Default 1000. */
  maxEventsPerStream?: number;
  /** Events older than this are dropped. Default 15 minutes. */
  maxAgeMs?: number;
  /**
   * How long a session's stream keys outlive its last append: set it to the session idle timeout
   * (`sessions.idleTimeoutMs`). Never shorter than `maxAgeMs`, so an event is replayable for its whole age.
   * Default 30 minutes.
   */
  sessionTtlMs?: number;
}

// Redis time, not the caller's: entry ids carry the server's clock, and MINID compares against them.
const NOW_MS = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`;

// KEYS: stream, index. ARGV: message JSON, max events, max age ms, key ttl ms, index member.
const appendScript = new LuaScript(`${NOW_MS}
local id = redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[2], '*', 'm', ARGV[1])
redis.call('XTRIM', KEYS[1], 'MINID', string.format('%.0f', now - tonumber(ARGV[3])))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('ZADD', KEYS[2], now, ARGV[5])
-- Members last appended longer than a ttl ago name stream keys Redis has already expired.
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. string.format('%.0f', now - tonumber(ARGV[4])))
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return id
`);

// KEYS: stream. ARGV: canonical entry id of the last event seen, max age ms.
// False when the id was never issued on this stream: a forged or future id must not replay anything.
const replayScript = new LuaScript(`${NOW_MS}
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local info = redis.call('XINFO', 'STREAM', KEYS[1])
local last
for i = 1, #info, 2 do
  if info[i] == 'last-generated-id' then last = info[i + 1] end
end
if last == nil then return false end
-- Both ids are canonical decimals, so longer means larger and equal lengths compare as strings.
local function greater(a, b)
  if #a ~= #b then return #a > #b end
  return a > b
end
local am, as = string.match(ARGV[1], '^(%d+)-(%d+)$')
local lm, ls = string.match(last, '^(%d+)-(%d+)$')
if greater(am, lm) or (am == lm and greater(as, ls)) then return false end
-- Trimming here too, because a stream nobody appends to would otherwise keep replaying aged events.
redis.call('XTRIM', KEYS[1], 'MINID', string.format('%.0f', now - tonumber(ARGV[2])))
return redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+')
`);

// KEYS: index. Stream keys are derived from the index key (not passed in) so that one call removes streams
// created concurrently; they share its hash tag, hence its slot, which keeps this correct on Cluster.
const deleteScript = new LuaScript(`
local base = string.sub(KEYS[1], 1, -8)
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  redis.call('DEL', base .. 'stream:' .. member)
end
return redis.call('DEL', KEYS[1])
`);

const MAX_U64 = 2n ** 64n - 1n;

/** Redis-backed {@link EventStore}: one Redis stream per SSE stream, bounded by count and age. */
export class RedisEventStore implements EventStore {
  private readonly connection: RedisConnection;
  private readonly prefix: string;
  private readonly maxEvents: number;
  private readonly maxAgeMs: number;
  private readonly keyTtlMs: number;

  /** `target` is a client that stays the caller's, or a URL for a client this store owns and closes. */
  constructor(target: RedisTarget, options: RedisEventStoreOptions = {}) {
    this.prefix = keyPrefixOf(options);
    this.maxEvents = positiveInteger('maxEventsPerStream', options.maxEventsPerStream ?? 1000);
    this.maxAgeMs = positiveInteger('maxAgeMs', Math.ceil(options.maxAgeMs ?? 15 * 60_000));
    const sessionTtlMs = positiveInteger('sessionTtlMs', Math.ceil(options.sessionTtlMs ?? 30 * 60_000));
    this.keyTtlMs = Math.max(sessionTtlMs, this.maxAgeMs);
    this.connection = new RedisConnection(target);
  }

  async append(sessionId: string, streamId: string, message: unknown): Promise<string> {
    const json = JSON.stringify(message);
    if (json === undefined) throw new TypeError('an event message must be a JSON value');
    const base = sessionKeyBase(this.prefix, sessionId);
    const member = encodeKeyPart(streamId);
    const entryId = await appendScript.run(
      this.connection.client,
      [`${base}stream:${member}`, `${base}streams`],
      [json, this.maxEvents, this.maxAgeMs, this.keyTtlMs, member],
    );
    return `${streamId}_${String(entryId)}`;
  }

  async replayAfter(
    sessionId: string,
    lastEventId: string,
  ): Promise<{ streamId: string; events: StoredEvent[] } | undefined> {
    const cut = lastEventId.lastIndexOf('_');
    if (cut < 0) return undefined;
    const streamId = lastEventId.slice(0, cut);
    const entryId = canonicalEntryId(lastEventId.slice(cut + 1));
    if (!entryId) return undefined;
    const key = `${sessionKeyBase(this.prefix, sessionId)}stream:${encodeKeyPart(streamId)}`;
    const entries = (await replayScript.run(this.connection.client, [key], [entryId, this.maxAgeMs])) as
      [string, string[]][] | null;
    if (!entries) return undefined;
    return {
      streamId,
      events: entries.map(([id, fields]) => ({
        id: `${streamId}_${id}`,
        // Entries hold exactly one field, `m`, written by append.
        message: JSON.parse(fields[1] ?? 'null') as unknown,
      })),
    };
  }

  async deleteSession(sessionId: string): Promise<void> {
    await deleteScript.run(this.connection.client, [`${sessionKeyBase(this.prefix, sessionId)}streams`], []);
  }

  async close(): Promise<void> {
    await this.connection.release();
  }
}

/**
 * The entry id in the form Redis prints it, or undefined for anything Redis never issues from XADD `*`
 * (leading zeros, out of range, 0-0); the replay script compares ids as canonical decimal strings.
 */
function canonicalEntryId(text: string): string | undefined {
  const m = /^(0|[1-9]\d{0,19})-(0|[1-9]\d{0,19})$/.exec(text);
  const ms = m?.[1];
  const seq = m?.[2];
  if (ms === undefined || seq === undefined) return undefined;
  if (BigInt(ms) > MAX_U64 || BigInt(seq) > MAX_U64 || text === '0-0') return undefined;
  return text;
}

function positiveInteger(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value <= 0) throw new RangeError(`${name} must be a positive integer`);
  return value;
}
