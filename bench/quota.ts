/**
 * Quota decisions against the local Redis (issue 5's targets: >= 20,000 decisions/s, <= 0.2 ms p50 added
 * per request). A decision is what a tools/call costs at the HTTP layer: user, client app and global
 * counters plus a concurrency lease in one script (the lease given back afterwards, pipelined), through
 * QuotaGuard as the gateway runs it.
 *
 * 1. Throughput: `--concurrency` decisions outstanding for `--duration` seconds.
 * 2. Added latency: decisions one after another; p50 and p99 of each decision's time.
 * The same on the memory store for comparison. Keys go under a fresh prefix and are deleted afterwards.
 *
 *   node dist/bench/quota.js [--duration 3] [--concurrency 64] [--samples 3000] [--redis-url URL] [--json FILE]
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { QuotaPolicy } from '../edge/quota/policy.js';
import { QuotaGuard } from '../edge/quota/quota-guard.js';
import { MemoryQuotaStore } from '../shared/adapters/memory/quota-store.js';
import { RedisQuotaStore } from '../shared/adapters/redis/quota-store.js';
import { configSchema } from '../shared/config/schema.js';
import type { Principal } from '../shared/identity/principal.js';
import { createLogger } from '../shared/log.js';
import type { QuotaStore } from '../shared/ports/quota-store.js';

const { values } = parseArgs({
  options: {
    duration: { type: 'string', default: '3' },
    concurrency: { type: 'string', default: '64' },
    samples: { type: 'string', default: '3000' },
    'redis-url': { type: 'string', default: process.env.MCPGW_BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379' },
    json: { type: 'string' },
  },
});
const durationMs = Number(values.duration) * 1000;
const concurrency = Number(values.concurrency);
const samples = Number(values.samples);
const redisUrl = values['redis-url']!;
const prefix = `mcpgw-bench-${randomBytes(4).toString('hex')}`;

// Limits high enough that nothing is refused: the bench measures the decision, not refusals.
const quotas = configSchema.parse({
  quotas: {
    enabled: true,
    user: { limit: 1e9, windowMs: 3_600_000 },
    clientApp: { limit: 1e9, windowMs: 3_600_000 },
    global: { limit: 1e9, windowMs: 60_000 },
    concurrency: { perUser: 1_000_000 },
  },
}).quotas;
const policy = new QuotaPolicy(quotas);
const users: Principal[] = Array.from({ length: 1000 }, (_, i) => ({
  subject: `user${i}`,
  tenant: 'default',
  roles: [],
  scopes: [],
  clientApp: `app${i % 10}`,
  authMethod: 'api-key',
}));

async function oneDecision(guard: QuotaGuard, i: number): Promise<void> {
  const p = users[i % users.length]!;
  const v = await guard.decide(policy.callerDimensions(p), policy.concurrency(p));
  if (!v.allowed) throw new Error(`refused: ${JSON.stringify(v.refusal)}`);
  if (v.lease) guard.release(v.lease);
}

interface Measured {
  perSecond: number;
  p50: number;
  p99: number;
  storeFailures: number;
}
const r3 = (x: number) => Math.round(x * 1000) / 1000;
const results: Record<string, unknown> = { concurrency, durationMs, samples, users: users.length };

async function measure(name: string, store: QuotaStore): Promise<Measured> {
  const guard = new QuotaGuard({ store, log: createLogger('warn'), expectedReplicas: 1 });
  for (let i = 0; i < 500; i++) await oneDecision(guard, i); // warm-up: scripts loaded, JIT
  let done = 0;
  const end = performance.now() + durationMs;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async (_, w) => {
      let i = w;
      while (performance.now() < end) {
        await oneDecision(guard, i);
        i += concurrency;
        done++;
      }
    }),
  );
  const perSecond = done / ((performance.now() - started) / 1000);
  const times: number[] = [];
  for (let i = 0; i < samples; i++) {
    const t = performance.now();
    await oneDecision(guard, i);
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  const q = (x: number) => times[Math.min(times.length - 1, Math.floor(x * times.length))]!;
  const s = guard.stats;
  console.log(
    `${name.padEnd(6)} ${Math.round(perSecond).toString().padStart(8)} decisions/s at concurrency ${concurrency}; ` +
      `sequential p50 ${q(0.5).toFixed(3)} ms, p99 ${q(0.99).toFixed(3)} ms; store failures ${s.storeFailures}`,
  );
  await guard.close();
  return {
    perSecond: Math.round(perSecond),
    p50: r3(q(0.5)),
    p99: r3(q(0.99)),
    storeFailures: s.storeFailures,
  };
}

const redisStore = new RedisQuotaStore(redisUrl, { keyPrefix: prefix, commandTimeoutMs: 1000 });
if (!(await redisStore.ready())) {
  console.error(`no Redis at ${redisUrl}`);
  process.exit(1);
}
console.log(`quota decisions: user + clientApp + global + concurrency lease (released), 1000 users`);
{
  // The floor: a bare PING round trip on the same kind of client, at the same concurrency.
  const bare = new Redis(redisUrl);
  let done = 0;
  const end = performance.now() + durationMs;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < end) {
        await bare.ping();
        done++;
      }
    }),
  );
  const t: number[] = [];
  for (let i = 0; i < samples; i++) {
    const s0 = performance.now();
    await bare.ping();
    t.push(performance.now() - s0);
  }
  t.sort((a, b) => a - b);
  results.ping = {
    perSecond: Math.round(done / ((performance.now() - started) / 1000)),
    p50: r3(t[Math.floor(t.length / 2)]!),
  };
  console.log(
    `ping   ${Math.round(done / ((performance.now() - started) / 1000))
      .toString()
      .padStart(
        8,
      )} round trips/s at concurrency ${concurrency}; sequential p50 ${t[Math.floor(t.length / 2)]!.toFixed(3)} ms (the floor)`,
  );
  await bare.quit();
}
const info = new Redis(redisUrl);
const scriptStats = async () => {
  const line = (await info.info('commandstats')).split('\n').find((l) => l.startsWith('cmdstat_evalsha:'));
  const m = /calls=(\d+),usec=(\d+)/.exec(line ?? '');
  return m ? { calls: Number(m[1]), usec: Number(m[2]) } : { calls: 0, usec: 0 };
};
const before = await scriptStats();
results.redis = await measure('redis', redisStore);
const afterStats = await scriptStats();
const perCall = (afterStats.usec - before.usec) / Math.max(1, afterStats.calls - before.calls);
// Redis's own CPU per script call (INFO commandstats; other clients' scripts count too): the ceiling one
// Redis core sets, whatever the client machine does.
console.log(
  `redis  script cost ${perCall.toFixed(1)} us of Redis CPU per decision: ceiling ~${Math.round(1e6 / perCall)} decisions/s per Redis core`,
);
results.redisScriptUsPerDecision = Math.round(perCall * 10) / 10;
await info.quit();
results.memory = await measure('memory', new MemoryQuotaStore());

const cleanup = new Redis(redisUrl);
let cursor = '0';
do {
  const [next, keys] = await cleanup.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
  cursor = next;
  if (keys.length > 0) await cleanup.del(...keys);
} while (cursor !== '0');
await cleanup.quit();
if (values.json) writeFileSync(values.json, `${JSON.stringify(results, null, 2)}\n`);
