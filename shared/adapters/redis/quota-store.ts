/**
 * QuotaStore on Redis: one Lua script decides a request for all of its dimensions (GCRA counters and
 * concurrency leases), all or nothing, in one round trip, on Redis's own clock (TIME), so that replicas
 * with skewed clocks still agree.
 *
 * Keys: `<prefix>:{q:<slot>}:<key>`. The caller chooses the slot per dimension; the user-scoped dimensions
 * (the user's rate, the user's concurrency, the user's per-tool rate) share the user's slot. On a single
 * Redis (or Sentinel) every key of a request goes in the one script call. Redis Cluster is refused for
 * now: the app, tenant, server and global counters live in other slots, and one script may only touch one
 * slot (see docs/quotas.md, "Redis Cluster").
 */
import { Redis, type RedisOptions } from 'ioredis';
import type {
  ConcurrencyOutcome,
  LeaseRef,
  QuotaDecision,
  QuotaRequest,
  QuotaStore,
  RateOutcome,
} from '../../ports/quota-store.js';
import { encodeKeyPart, keyPrefixOf, LuaScript, RedisConnection, type RedisTarget } from './connection.js';

// KEYS: rate keys, then concurrency keys. ARGV: nRates, then limit, windowMs, burst, cost per rate, then
// limit, leaseId, leaseMs per concurrency key. Returns {allowed, per rate: ok, remaining, retryMs, resetMs,
// per lease: ok, inUse}. Times are float ms kept at full precision (numbers go to Redis as %.17g) so that
// long runs do not drift. Cost kept low (Redis CPU per call, INFO commandstats): one MGET for every rate
// counter, one SET PX per counter charged; leases counted with ZCOUNT over the live scores (no purge on the
// hot path: a set without live leases is dropped before the new one goes in, RENEW purges the others), and
// one PEXPIRE (GT) instead of PTTL + PEXPIRE.
const CONSUME = new LuaScript(`
local t = redis.call('TIME')
local now = t[1] * 1000 + t[2] / 1000
local nr = tonumber(ARGV[1])
local nc = #KEYS - nr
local out = {1}
local n = 1
local ok = true
local tats = {}
local cur = {}
if nr > 0 then cur = redis.call('MGET', unpack(KEYS, 1, nr)) end
for i = 1, nr do
  local a = 2 + (i - 1) * 4
  local limit, window, burst, cost = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local interval = window / limit
  local capacity = burst * interval
  local tat = tonumber(cur[i]) or now
  if tat < now then tat = now end
  local newtat = tat + cost * interval
  tats[i] = newtat
  if newtat - now <= capacity then
    out[n + 1] = 1
    out[n + 2] = math.floor((capacity - (newtat - now)) / interval + 1e-9)
    out[n + 3] = 0
    out[n + 4] = math.ceil(newtat - now)
  else
    ok = false
    local rem = math.floor((capacity - (tat - now)) / interval + 1e-9)
    if rem < 0 then rem = 0 end
    out[n + 1] = 0
    out[n + 2] = rem
    out[n + 3] = math.ceil(newtat - now - capacity)
    out[n + 4] = math.ceil(tat - now)
  end
  n = n + 4
end
local base = 2 + nr * 4
local held = {}
local since = '(' .. string.format('%.17g', now)
for j = 1, nc do
  local c = redis.call('ZCOUNT', KEYS[nr + j], since, '+inf')
  held[j] = c
  if c >= tonumber(ARGV[base + (j - 1) * 3]) then ok = false end
end
if not ok then
  out[1] = 0
  for j = 1, nc do out[n + 1] = 0; out[n + 2] = held[j]; n = n + 2 end
  return out
end
for i = 1, nr do
  local ttl = math.ceil(tats[i] - now)
  if ttl < 1 then ttl = 1 end
  redis.call('SET', KEYS[i], tats[i], 'PX', ttl)
end
for j = 1, nc do
  local key = KEYS[nr + j]
  local a = base + (j - 1) * 3
  local lease = tonumber(ARGV[a + 2])
  -- No live lease: whatever the set still holds expired (a dead holder's), so it goes at once.
  if held[j] == 0 then redis.call('DEL', key) end
  redis.call('ZADD', key, now + lease, ARGV[a + 1])
  -- The set lives as long as its longest lease: GT only ever extends it (it has a TTL once it exists).
  if held[j] == 0 then redis.call('PEXPIRE', key, math.ceil(lease)) else redis.call('PEXPIRE', key, math.ceil(lease), 'GT') end
  out[n + 1] = 1
  out[n + 2] = held[j] + 1
  n = n + 2
end
return out
`);

// KEYS: concurrency keys; ARGV: leaseId, leaseMs per key. Extends only leases still held (expired ones are
// purged first, so a lease that lapsed is not brought back), off the hot path (every leaseMs/3).
const RENEW = new LuaScript(`
local t = redis.call('TIME')
local now = t[1] * 1000 + t[2] / 1000
for i = 1, #KEYS do
  local lease = tonumber(ARGV[i * 2])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
  if redis.call('ZSCORE', KEYS[i], ARGV[i * 2 - 1]) then
    redis.call('ZADD', KEYS[i], 'XX', now + lease, ARGV[i * 2 - 1])
    redis.call('PEXPIRE', KEYS[i], math.ceil(lease), 'GT')
  end
end
return 1
`);

export interface RedisQuotaStoreOptions {
  keyPrefix?: string;
  /**
   * How long one decision may wait for Redis before it counts as a failure (the caller then falls back).
   * Only applies to a store that builds its own client from a URL. Default 100 ms.
   */
  commandTimeoutMs?: number;
}

export class RedisQuotaStore implements QuotaStore {
  private readonly conn: RedisConnection;
  private readonly prefix: string;
  /** A client built here from a URL (with quota-specific options) is quit on close. */
  private ownsClient = false;
  private readonly pending = new Set<Promise<void>>();

  constructor(target: RedisTarget, options: RedisQuotaStoreOptions = {}) {
    this.prefix = keyPrefixOf(options);
    if (typeof target !== 'string') {
      if (!(target instanceof Redis))
        throw new RangeError('RedisQuotaStore does not support Redis Cluster yet (see docs/quotas.md)');
      this.conn = new RedisConnection(target);
      return;
    }
    // A quota decision must never wait on a Redis that is down: fail at once (no offline queue) and
    // after commandTimeoutMs on one that hangs, so that the fallback answers instead.
    const own: RedisOptions = {
      enableOfflineQueue: false,
      // Decisions of concurrent requests issued in one tick share one write (fewer syscalls under load).
      enableAutoPipelining: true,
      maxRetriesPerRequest: 0,
      commandTimeout: options.commandTimeoutMs ?? 100,
      connectTimeout: 2000,
      retryStrategy: (times) => Math.min(times * 100, 1000),
    };
    this.conn = new RedisConnection(new Redis(target, own));
    this.conn.client.on('error', () => {});
    this.ownsClient = true;
  }

  /**
   * Resolves once the client is connected, or after `timeoutMs` (false): decisions made before that fail
   * at once (there is no offline queue), so a composition root waits here briefly at start-up.
   */
  async ready(timeoutMs = 2000): Promise<boolean> {
    const c = this.conn.client;
    if (c.status === 'ready') return true;
    return new Promise<boolean>((resolve) => {
      const done = (ok: boolean) => {
        clearTimeout(timer);
        c.off('ready', onReady);
        resolve(ok);
      };
      const onReady = () => done(true);
      const timer = setTimeout(() => done(false), timeoutMs);
      c.on('ready', onReady);
    });
  }

  /** The Redis key of a dimension: its slot in the hash tag, so Cluster routing follows the slot. */
  keyOf(slot: string, key: string): string {
    return `${this.prefix}:{q:${encodeKeyPart(slot)}}:${encodeKeyPart(key)}`;
  }

  async consume(request: QuotaRequest): Promise<QuotaDecision> {
    const conc = request.concurrency ?? [];
    const keys = [
      ...request.rates.map((d) => this.keyOf(d.slot, `r:${d.key}`)),
      ...conc.map((d) => this.keyOf(d.slot, `c:${d.key}`)),
    ];
    const args: (string | number)[] = [request.rates.length];
    for (const d of request.rates) args.push(d.limit, d.windowMs, d.burst, d.cost ?? 1);
    for (const d of conc) args.push(d.limit, d.leaseId, d.leaseMs);
    const out = (await CONSUME.run(this.conn.client, keys, args)) as number[];
    const rates: RateOutcome[] = request.rates.map((_d, i) => {
      const a = 1 + i * 4;
      return {
        allowed: out[a] === 1,
        remaining: out[a + 1]!,
        retryAfterMs: out[a + 2]!,
        resetMs: out[a + 3]!,
      };
    });
    const base = 1 + request.rates.length * 4;
    const concurrency: ConcurrencyOutcome[] = conc.map((_d, j) => ({
      allowed: out[base + j * 2] === 1,
      inUse: out[base + j * 2 + 1]!,
    }));
    return { allowed: out[0] === 1, rates, concurrency };
  }

  async release(leases: readonly LeaseRef[]): Promise<void> {
    // One ZREM per lease (the keys may sit in different slots), sent as plain commands so that the
    // client's auto-pipelining puts them in the same write as the other decisions of this tick.
    const sent = Promise.all(
      leases.map((l) => this.conn.client.zrem(this.keyOf(l.slot, `c:${l.key}`), l.leaseId)),
    );
    // close() waits for these: an auto-pipelined ZREM goes out on the next tick, after a QUIT sent now.
    const settled = sent.then(
      () => {},
      () => {},
    );
    this.pending.add(settled);
    void settled.finally(() => this.pending.delete(settled));
    await sent;
  }

  async renew(leases: readonly LeaseRef[]): Promise<void> {
    for (const l of leases)
      await RENEW.run(this.conn.client, [this.keyOf(l.slot, `c:${l.key}`)], [l.leaseId, l.leaseMs]);
  }

  async close(): Promise<void> {
    await Promise.all(this.pending);
    if (this.ownsClient) {
      const c = this.conn.client;
      if (c.status === 'end') return;
      await c.quit().catch(() => c.disconnect());
      return;
    }
    await this.conn.release();
  }
}
