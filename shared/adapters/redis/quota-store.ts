/**
 * QuotaStore on Redis: Lua scripts decide a request for all of its dimensions (GCRA counters and
 * concurrency leases), all or nothing, on Redis's own clock (TIME), so that replicas with skewed clocks
 * still agree.
 *
 * Keys: `<prefix>:{q:<slot>}:<key>`. The caller chooses the slot per dimension; the user-scoped dimensions
 * (the user's rate, the user's concurrency, the user's per-tool rate) share the user's slot.
 * - A single Redis (or Sentinel): every key of a request goes in one script call (one round trip, atomic).
 * - Redis Cluster: one script may only touch one slot, so the keys are grouped by slot and each group is
 *   decided by its own script, all sent at once (one round trip of latency, one call per slot). When every
 *   group admits, that is the decision. When one refuses, the groups that admitted are refunded (counters
 *   given back, leases removed) before the refusal is returned: a refusal by one dimension consumes none of
 *   the others. See docs/quotas.md, "Redis Cluster", for what that design gives up.
 */
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';
import type {
  ConcurrencyDimension,
  ConcurrencyOutcome,
  LeaseRef,
  QuotaDecision,
  QuotaRequest,
  QuotaStore,
  RateDimension,
  RateOutcome,
} from '../../ports/quota-store.js';
import {
  encodeKeyPart,
  keyPrefixOf,
  LuaScript,
  RedisConnection,
  TickWrites,
  type RedisClient,
  type RedisTarget,
} from './connection.js';

// KEYS: rate keys, then concurrency keys. ARGV: nRates, whether to return the states (1 on Cluster, else 0),
// then limit, windowMs, burst, cost per rate, then limit, leaseId, leaseMs per concurrency key. Returns
// {allowed, per rate: ok, remaining, retryMs, resetMs, per lease: ok, inUse, then (admitted, when asked) per
// rate the counter's state before the charge as a string}: a refund on Cluster needs it (Lua numbers would
// reach the client truncated to integers); a single Redis never refunds, so it skips the formatting. Times are float ms kept at full precision (numbers go to Redis as %.17g) so that
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
local before = {}
local cur = {}
if nr > 0 then cur = redis.call('MGET', unpack(KEYS, 1, nr)) end
for i = 1, nr do
  local a = 3 + (i - 1) * 4
  local limit, window, burst, cost = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local interval = window / limit
  local capacity = burst * interval
  local tat = tonumber(cur[i]) or now
  if tat < now then tat = now end
  local newtat = tat + cost * interval
  tats[i] = newtat
  before[i] = tat
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
local base = 3 + nr * 4
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
if ARGV[2] == '1' then for i = 1, nr do out[n + i] = string.format('%.17g', before[i]) end end
return out
`);

// Cluster only: gives back what CONSUME charged in one slot group when another group refused the request.
// KEYS: rate keys, then concurrency keys. ARGV: nRates, then per rate the counter's state before the charge
// and the amount charged (cost * interval), then a leaseId per concurrency key.
// A counter is refunded exactly when nothing touched it since the charge (it still holds before + amount),
// or while it is still busy with units charged before this one (now < before): then no later request can
// have found it idle and restarted it from "now" (GCRA's clamp), so taking the amount off gives back this
// request's unit and no other. Otherwise (the counter was idle when charged and others charged it since)
// the unit stays: stricter by one unit until it drains (one emission interval), never looser.
const REFUND = new LuaScript(`
local t = redis.call('TIME')
local now = t[1] * 1000 + t[2] / 1000
local nr = tonumber(ARGV[1])
for i = 1, nr do
  local before = tonumber(ARGV[i * 2])
  local amount = tonumber(ARGV[i * 2 + 1])
  local tat = tonumber(redis.call('GET', KEYS[i]))
  if tat and (tat == before + amount or now < before) then
    local back = tat - amount
    if back <= now then redis.call('DEL', KEYS[i]) else redis.call('SET', KEYS[i], back, 'PX', math.ceil(back - now)) end
  end
end
for j = nr + 1, #KEYS do redis.call('ZREM', KEYS[j], ARGV[nr * 2 + 1 + j - nr]) end
return 1
`);

// A single Redis only: the releases of one tick in one call. KEYS: concurrency keys; ARGV: a leaseId per key.
const RELEASE = new LuaScript(`
for i = 1, #KEYS do redis.call('ZREM', KEYS[i], ARGV[i]) end
return 1
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
   * Only applies to a store that builds its own client from URLs. Default 100 ms.
   */
  commandTimeoutMs?: number;
}

/** One slot's share of a request on Cluster: its keys in one script call, and where its answers go. */
interface SlotGroup {
  rates: { d: RateDimension; at: number }[];
  leases: { d: ConcurrencyDimension; at: number }[];
}

type Reply = (number | string)[];

/** Redis keys kept built (see keyOf). */
const KEY_CACHE_SIZE = 10_000;

export class RedisQuotaStore implements QuotaStore {
  private readonly conn: RedisConnection;
  private readonly prefix: string;
  /** Keys of different slots go to different script calls (see the module header). */
  private readonly cluster: boolean;
  /** A client built here from URLs (with quota-specific options) is quit on close. */
  private ownsClient = false;
  private readonly pending = new Set<Promise<void>>();
  /** Standalone (or Sentinel) client: the commands of one tick leave in one write. */
  private readonly writes: TickWrites | undefined;
  /** Leases given back during this tick (single Redis), sent together at its end. */
  private releasing: { keys: string[]; ids: string[]; sent: Promise<void>; send: () => void } | undefined;
  /** Redis keys already built, per slot and key (encoding them is on every decision's path). */
  private readonly keys = new Map<string, string>();

  /**
   * @param target a client (standalone, Sentinel or Cluster) the caller owns; a `redis://` URL; or the
   *   seed nodes of a Redis Cluster as an array of `redis://` URLs (the client finds the other nodes).
   */
  constructor(target: RedisTarget | readonly string[], options: RedisQuotaStoreOptions = {}) {
    this.prefix = keyPrefixOf(options);
    if (typeof target !== 'string' && !Array.isArray(target)) {
      this.conn = new RedisConnection(target as RedisClient);
      this.cluster = target instanceof Cluster;
      this.writes = target instanceof Redis ? new TickWrites(target) : undefined;
      return;
    }
    // A quota decision must never wait on a Redis that is down: fail at once (no offline queue) and
    // after commandTimeoutMs on one that hangs, so that the fallback answers instead.
    const own: RedisOptions = {
      maxRetriesPerRequest: 0,
      commandTimeout: options.commandTimeoutMs ?? 100,
      connectTimeout: 2000,
      retryStrategy: (times) => Math.min(times * 100, 1000),
    };
    let client: RedisClient;
    if (Array.isArray(target)) {
      if (target.length === 0) throw new RangeError('a Redis Cluster needs at least one seed node URL');
      const nodes = target.map((u: string) => {
        const url = new URL(u);
        if (url.protocol !== 'redis:' && url.protocol !== 'rediss:')
          throw new RangeError(`not a redis:// or rediss:// URL: ${u}`);
        return { host: url.hostname, port: Number(url.port || 6379) };
      });
      const first = new URL(target[0]!);
      const clusterOptions: ClusterOptions = {
        enableOfflineQueue: false,
        enableAutoPipelining: true,
        clusterRetryStrategy: (times) => Math.min(times * 100, 1000),
        redisOptions: {
          ...own,
          ...(first.username && { username: decodeURIComponent(first.username) }),
          ...(first.password && { password: decodeURIComponent(first.password) }),
          ...(first.protocol === 'rediss:' && { tls: {} }),
        },
      };
      client = new Cluster(nodes, clusterOptions);
      this.cluster = true;
    } else {
      // Decisions of concurrent requests issued in one tick share one write (fewer syscalls under load):
      // TickWrites, not the client's auto-pipelining, which holds a tick's commands back while the previous
      // batch is still waiting for its replies (and costs more CPU per command).
      const standalone = new Redis(target, { ...own, enableOfflineQueue: false });
      this.writes = new TickWrites(standalone);
      client = standalone;
      this.cluster = false;
    }
    this.conn = new RedisConnection(client);
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
    // The slot's length first: no two (slot, key) pairs share a cache entry.
    const id = `${slot.length}:${slot}${key}`;
    let k = this.keys.get(id);
    if (k === undefined) {
      k = `${this.prefix}:{q:${encodeKeyPart(slot)}}:${encodeKeyPart(key)}`;
      // Bounded: a gateway with many callers rebuilds some keys now and then.
      if (this.keys.size >= KEY_CACHE_SIZE) this.keys.clear();
      this.keys.set(id, k);
    }
    return k;
  }

  async consume(request: QuotaRequest): Promise<QuotaDecision> {
    const conc = request.concurrency ?? [];
    if (!this.cluster) return this.consumeWhole(request.rates, conc);
    const groups = new Map<string, SlotGroup>();
    const groupOf = (slot: string) => {
      let g = groups.get(slot);
      if (!g) groups.set(slot, (g = { rates: [], leases: [] }));
      return g;
    };
    request.rates.forEach((d, at) => groupOf(d.slot).rates.push({ d, at }));
    conc.forEach((d, at) => groupOf(d.slot).leases.push({ d, at }));
    const list = [...groups.values()];
    // Every slot at once: the latency of one round trip, whatever the number of slots.
    const settled = await Promise.allSettled(list.map((g) => this.consumeGroup(g)));
    const admitted = list.flatMap((g, i) => {
      const s = settled[i]!;
      return s.status === 'fulfilled' && s.value[0] === 1 ? [[g, s.value] as const] : [];
    });
    const failure = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (admitted.length === list.length) return { allowed: true, ...this.outcomes(request, admitted) };
    // Refused somewhere (or a slot failed): give back what the others charged, then answer.
    await Promise.all(admitted.map(([g, out]) => this.refund(g, out))).catch((err: unknown) => {
      // A refund that fails leaves units charged and leases held until they expire: stricter, not looser.
      if (!failure) throw err;
    });
    if (failure) throw failure.reason;
    const answered = list.map((g, i) => [g, (settled[i] as PromiseFulfilledResult<Reply>).value] as const);
    return { allowed: false, ...this.outcomes(request, answered, true) };
  }

  /** A single Redis: every key of the request in one script call, the reply read in request order. */
  private async consumeWhole(
    rateDims: readonly RateDimension[],
    conc: readonly ConcurrencyDimension[],
  ): Promise<QuotaDecision> {
    const nr = rateDims.length;
    const keys: string[] = new Array<string>(nr + conc.length);
    const args: (string | number)[] = [nr, 0];
    for (let i = 0; i < nr; i++) {
      const d = rateDims[i]!;
      keys[i] = this.keyOf(d.slot, `r:${d.key}`);
      args.push(d.limit, d.windowMs, d.burst, d.cost ?? 1);
    }
    for (let j = 0; j < conc.length; j++) {
      const d = conc[j]!;
      keys[nr + j] = this.keyOf(d.slot, `c:${d.key}`);
      args.push(d.limit, d.leaseId, d.leaseMs);
    }
    this.writes?.hold();
    // Leases given back earlier in this tick go first, as they were given back: this decision sees them free.
    this.releasing?.send();
    const out = (await CONSUME.run(this.conn.client, keys, args)) as Reply;
    const rates: RateOutcome[] = new Array<RateOutcome>(nr);
    for (let i = 0, a = 1; i < nr; i++, a += 4)
      rates[i] = {
        allowed: out[a] === 1,
        remaining: out[a + 1] as number,
        retryAfterMs: out[a + 2] as number,
        resetMs: out[a + 3] as number,
      };
    const concurrency: ConcurrencyOutcome[] = new Array<ConcurrencyOutcome>(conc.length);
    for (let j = 0, a = 1 + nr * 4; j < conc.length; j++, a += 2)
      concurrency[j] = { allowed: out[a] === 1, inUse: out[a + 1] as number };
    return { allowed: out[0] === 1, rates, concurrency };
  }

  /** The group's counter keys, then its lease keys: the KEYS of both CONSUME and REFUND. */
  private keysOf(g: SlotGroup): string[] {
    return [
      ...g.rates.map(({ d }) => this.keyOf(d.slot, `r:${d.key}`)),
      ...g.leases.map(({ d }) => this.keyOf(d.slot, `c:${d.key}`)),
    ];
  }

  /** One script call for the keys of one group (on a single Redis: the whole request). */
  private async consumeGroup(g: SlotGroup): Promise<Reply> {
    const keys = this.keysOf(g);
    // Cluster: the reply carries the counters' states, for a refund.
    const args: (string | number)[] = [g.rates.length, 1];
    for (const { d } of g.rates) args.push(d.limit, d.windowMs, d.burst, d.cost ?? 1);
    for (const { d } of g.leases) args.push(d.limit, d.leaseId, d.leaseMs);
    return (await CONSUME.run(this.conn.client, keys, args)) as Reply;
  }

  /** Gives back what CONSUME charged and leased for group `g` (whose reply was `out`). */
  private async refund(g: SlotGroup, out: Reply): Promise<void> {
    const keys = this.keysOf(g);
    const tail = 1 + g.rates.length * 4 + g.leases.length * 2;
    const args: (string | number)[] = [g.rates.length];
    g.rates.forEach(({ d }, i) =>
      args.push(String(out[tail + i]), String((d.windowMs / d.limit) * (d.cost ?? 1))),
    );
    for (const { d } of g.leases) args.push(d.leaseId);
    await REFUND.run(this.conn.client, keys, args);
  }

  /**
   * The per-dimension outcomes, in request order, from each group's reply. A lease of a group that
   * admitted a request refused elsewhere was given back: it reports the count before it.
   */
  private outcomes(
    request: QuotaRequest,
    replies: readonly (readonly [SlotGroup, Reply])[],
    refunded = false,
  ): Pick<QuotaDecision, 'rates' | 'concurrency'> {
    const rates: RateOutcome[] = new Array<RateOutcome>(request.rates.length);
    const concurrency: ConcurrencyOutcome[] = new Array<ConcurrencyOutcome>(request.concurrency?.length ?? 0);
    for (const [g, out] of replies) {
      g.rates.forEach(({ at }, i) => {
        const a = 1 + i * 4;
        rates[at] = {
          allowed: out[a] === 1,
          remaining: out[a + 1] as number,
          retryAfterMs: out[a + 2] as number,
          resetMs: out[a + 3] as number,
        };
      });
      const base = 1 + g.rates.length * 4;
      g.leases.forEach(({ at }, j) => {
        const ok = out[base + j * 2] === 1;
        const inUse = out[base + j * 2 + 1] as number;
        concurrency[at] = { allowed: ok, inUse: ok && refunded ? inUse - 1 : inUse };
      });
    }
    return { rates, concurrency };
  }

  async release(leases: readonly LeaseRef[]): Promise<void> {
    // Cluster: one ZREM per lease (the keys may sit in different slots), auto-pipelined with the other
    // commands of this tick. A single Redis: the leases given back during a tick go in one command (a
    // ZREM for one lease, a script for several) in the same write as the tick's decisions.
    const sent: Promise<unknown> =
      this.writes === undefined
        ? Promise.all(leases.map((l) => this.conn.client.zrem(this.keyOf(l.slot, `c:${l.key}`), l.leaseId)))
        : this.releaseInTick(leases);
    // close() waits for these: a held or auto-pipelined ZREM goes out later in the tick (or the next one),
    // after a QUIT sent now.
    const settled = sent.then(
      () => {},
      () => {},
    );
    this.pending.add(settled);
    void settled.finally(() => this.pending.delete(settled));
    await sent;
  }

  private releaseInTick(leases: readonly LeaseRef[]): Promise<void> {
    if (leases.length === 0) return Promise.resolve();
    let batch = this.releasing;
    if (!batch) {
      const keys: string[] = [];
      const ids: string[] = [];
      let go!: () => Promise<unknown>;
      const sent = new Promise<void>((resolve, reject) => {
        go = () =>
          (keys.length === 1
            ? this.conn.client.zrem(keys[0]!, ids[0]!)
            : RELEASE.run(this.conn.client, keys, ids)
          ).then(() => resolve(), reject);
      });
      let gone = false;
      const send = () => {
        if (gone) return;
        gone = true;
        if (this.releasing === batch) this.releasing = undefined;
        void go();
      };
      batch = { keys, ids, sent, send };
      // Not connected: sent now (and refused at once, there is no offline queue).
      if (this.writes!.atEnd(send)) this.releasing = batch;
      else queueMicrotask(send);
    }
    for (const l of leases) {
      batch.keys.push(this.keyOf(l.slot, `c:${l.key}`));
      batch.ids.push(l.leaseId);
    }
    return batch.sent;
  }

  async renew(leases: readonly LeaseRef[]): Promise<void> {
    for (const l of leases) {
      this.writes?.hold();
      this.releasing?.send();
      await RENEW.run(this.conn.client, [this.keyOf(l.slot, `c:${l.key}`)], [l.leaseId, l.leaseMs]);
    }
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
