/**
 * The pool ports on every adapter: BreakerStateStore (memory hub, Redis keys + pub/sub) and ResponseCache
 * (memory LRU, Redis), on the machine's real Redis (`redis://127.0.0.1:6379`, or MCPGW_TEST_REDIS_URL),
 * each run under its own key prefix, removed afterwards.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { MemoryBreakerHub, MemoryBreakerState } from '../../shared/adapters/memory/breaker-state.js';
import { MemoryResponseCache } from '../../shared/adapters/memory/response-cache.js';
import { RedisBreakerState } from '../../shared/adapters/redis/breaker-state.js';
import { RedisResponseCache } from '../../shared/adapters/redis/response-cache.js';
import { breakerStateContract } from './breaker-state.contract.js';
import { responseCacheContract } from './response-cache.contract.js';

const REDIS_URL = process.env.MCPGW_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const keyPrefix = `mcpgw-test-${randomBytes(6).toString('hex')}`;

async function cleanup(): Promise<void> {
  const c = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await c.connect();
    const keys: string[] = [];
    for await (const batch of c.scanStream({ match: `${keyPrefix}*`, count: 500 }))
      keys.push(...(batch as string[]));
    if (keys.length > 0) await c.del(...keys);
  } finally {
    c.disconnect();
  }
}
after(cleanup);

breakerStateContract('memory', async () => {
  const hub = new MemoryBreakerHub();
  return [new MemoryBreakerState(hub), new MemoryBreakerState(hub)];
});

let run = 0;
breakerStateContract('redis', async () => {
  // A prefix per test: the verdicts of one test must not show up in another's `current()`.
  const prefix = `${keyPrefix}-b${++run}`;
  return [
    new RedisBreakerState(REDIS_URL, { keyPrefix: prefix }),
    new RedisBreakerState(REDIS_URL, { keyPrefix: prefix }),
  ];
});

responseCacheContract('memory', async () => new MemoryResponseCache(100));
responseCacheContract(
  'redis',
  async () => new RedisResponseCache(REDIS_URL, { keyPrefix: `${keyPrefix}-c` }),
);

describe('MemoryResponseCache beyond the contract', () => {
  test('evicts the least recently used entry past maxEntries', async () => {
    const c = new MemoryResponseCache(2);
    const e = { result: {}, storedAt: 0, freshUntil: Date.now() + 1000 };
    await c.set('a', e, 1000);
    await c.set('b', e, 1000);
    await c.get('a'); // a is now the most recent
    await c.set('c', e, 1000);
    assert.ok(await c.get('a'));
    assert.equal(await c.get('b'), undefined);
    assert.equal(c.size, 2);
  });
});
